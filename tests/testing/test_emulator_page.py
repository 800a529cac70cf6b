"""The emulator's read-only page (``/``, ``_emulator/``, ``_emulator/state.json``), over HTTP."""

from __future__ import annotations

import html
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import urlsplit

import pytest
import requests

from django_suprsend.testing import HubEmulator
from django_suprsend.testing.__main__ import parse_args, settings_to_paste
from django_suprsend.testing.page import PROFILE_LIMIT, REQUEST_LIMIT
from django_suprsend.wire import signing
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.operations import ProfileEdit

KEY = "ws_page_key"
SECRET = "ws-page-secret-never-shown"
API_KEY = "api-page-key-never-shown"

HOSTILE = "<script>alert(1)</script>"


# -- helpers ------------------------------------------------------------------


def send(
    hub_url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    secret: str = SECRET,
    key: str = KEY,
) -> requests.Response:
    """A request signed as the SDK signs it (HMAC of method, body MD5, type, date, URI)."""
    data = b"" if body is None else json.dumps(body).encode()
    date = signing.http_date()
    uri = urlsplit(hub_url).path + path
    signature = signing.signature(secret, method, data, date=date, request_uri=uri)
    headers = {
        "Content-Type": signing.CONTENT_TYPE,
        "Date": date,
        "Authorization": f"{key}:{signature}",
    }
    return requests.request(method, hub_url + path, data=data, headers=headers, timeout=10)


def record(distinct_id: str, *operations: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "$schema": "2",
        "$insert_id": str(uuid.uuid4()),
        "$time": 1705314600500,
        "env": KEY,
        "distinct_id": distinct_id,
        "$user_operations": list(operations),
        "properties": {"$ss_sdk_version": "tests"},
        **fields,
    }


def page(hub: HubEmulator, path: str = "") -> requests.Response:
    response = requests.get(hub.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response


def state(hub: HubEmulator) -> dict[str, Any]:
    response = page(hub, "_emulator/state.json")
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


@pytest.fixture
def hub() -> Iterator[HubEmulator]:
    with HubEmulator(KEY, SECRET, api_key=API_KEY, serve_page=True) as emulator:
        yield emulator


# -- what the page shows ------------------------------------------------------


def test_page_lists_a_profile_after_a_signed_bulk_request(hub):
    response = send(
        hub.url,
        "POST",
        "event/",
        [
            record(
                "user-42",
                {
                    "$set": {
                        "name": "Jane Doe",
                        "$preferred_language": "fr",
                        "$timezone": "Europe/Paris",
                        "plan": "gold",
                    }
                },
                {"$append": {"$email": "jane@example.com"}},
                {"$append": {"$sms": "+33612345678"}},
                {"$append": {"$androidpush": "fcm-token-123", "$id_provider": "fcm"}},
            ),
            record("user-43", {"$set": {"name": "Bob"}}),
        ],
    )
    assert response.status_code == 202

    first = page(hub)
    assert first.headers["Content-Type"] == "text/html; charset=utf-8"
    assert first.headers["Cache-Control"] == "no-store"
    text = first.text
    assert '<meta http-equiv="refresh" content="2">' in text
    for shown in (
        "user-42",
        "jane@example.com",
        "+33612345678",
        "fcm-token-123",
        "fcm",
        "$preferred_language",
        "fr",
        "Europe/Paris",
        "plan",
        "gold",
        "Jane Doe",
        "user-43",
        "POST /event/",
        "202 Accepted",
        "2 succeeded",
    ):
        assert html.escape(shown) in text, shown
    assert "<link" not in text
    assert "<script" not in text  # self-contained and script-free
    assert page(hub, "_emulator/").text.count("user-42") == text.count("user-42")

    data = state(hub)
    assert data["profiles"]["total"] == 2
    profile = next(p for p in data["profiles"]["items"] if p["distinct_id"] == "user-42")
    assert profile == hub.profile("user-42")  # the REST shape of GET v1/user/{id}/
    assert profile["$email"][0]["value"] == "jane@example.com"
    assert profile["properties"]["$timezone"] == "Europe/Paris"
    (event,) = data["requests"]["items"]
    assert (event["method"], event["path"], event["status"], event["records"]) == (
        "POST",
        "/event/",
        202,
        2,
    )
    assert (event["outcome"], event["succeeded"], event["failed"]) == ("ok", 2, 0)


def test_profiles_are_newest_updated_first_and_capped(hub):
    batches = [
        [record(f"bulk-{n:03}", {"$set": {"n": n}}) for n in range(start, start + 400)]
        for start in (0, 400)
    ]
    for batch in batches:
        assert send(hub.url, "POST", "event/", batch).status_code == 202
    assert send(hub.url, "POST", "event/", record("bulk-000", {"$set": {"n": -1}})).ok

    data = state(hub)
    assert data["profiles"]["total"] == 800
    items = data["profiles"]["items"]
    assert len(items) == PROFILE_LIMIT
    assert items[0]["distinct_id"] == "bulk-000"  # updated last
    assert items[1]["distinct_id"].startswith("bulk-4")  # then the second batch
    assert all(a["updated_at"] >= b["updated_at"] for a, b in itertools.pairwise(items))
    text = page(hub).text
    assert f"showing the {PROFILE_LIMIT} most recent of 800 profiles" in text
    assert text.count('<td class="id">') == PROFILE_LIMIT


def test_recent_requests_are_newest_first_and_capped(hub):
    for n in range(REQUEST_LIMIT + 5):
        assert send(hub.url, "GET", f"v1/user/nobody-{n}/").status_code == 404
    data = state(hub)
    assert data["requests"]["total"] == REQUEST_LIMIT + 5
    paths = [item["path"] for item in data["requests"]["items"]]
    assert paths == [f"/v1/user/nobody-{n}/" for n in range(REQUEST_LIMIT + 4, 4, -1)]
    assert data["requests"]["items"][0]["message"] == "user 'nobody-54' not found"
    text = page(hub).text
    assert f"showing the {REQUEST_LIMIT} most recent of {REQUEST_LIMIT + 5} requests" in text
    assert html.escape("user 'nobody-54' not found") in text
    assert "404 Not Found" in text


def test_failed_records_show_their_error(hub):
    response = send(
        hub.url,
        "POST",
        "event/",
        [
            record("good", {"$set": {"a": 1}}),
            record("bad-schema", {"$set": {"a": 1}}, **{"$schema": "1"}),
            record("bad-op", {"$bogus": {}}),
        ],
    )
    assert response.status_code == 400

    (item,) = state(hub)["requests"]["items"]
    assert (item["outcome"], item["status"], item["succeeded"], item["failed"]) == (
        "error",
        400,
        0,
        3,
    )
    assert [(e["index"], e["distinct_id"]) for e in item["errors"]] == [
        (1, "bad-schema"),
        (2, "bad-op"),
    ]
    assert item["errors"][0]["error"] == '"$schema" must be "2", not \'1\''
    assert "unknown operator '$bogus'" in item["errors"][1]["error"]

    text = page(hub).text
    assert "3 failed" in text
    assert "400 Bad Request" in text
    assert html.escape("record 1 ('bad-schema'): \"$schema\" must be \"2\", not '1'") in text
    assert html.escape("unknown operator '$bogus'") in text


def test_faults_and_rejections_show_as_outcomes(hub):
    hub.fail_next(1, 503)
    assert send(hub.url, "POST", "event/", record("u1", {"$set": {"a": 1}})).status_code == 503
    hub.reject_records(lambda r: r["distinct_id"] == "u2", error="u2 is blocked")
    assert send(hub.url, "POST", "event/", record("u2", {"$set": {"a": 1}})).status_code == 400
    hub.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        send(hub.url, "POST", "event/", record("u3", {"$set": {"a": 1}}))

    dropped, rejected, failed = state(hub)["requests"]["items"]
    assert (dropped["outcome"], dropped["status"], dropped["failed"]) == ("dropped", None, 1)
    assert rejected["message"] == "u2 is blocked: record 0 (distinct_id 'u2')"
    assert rejected["errors"] == [{"index": 0, "distinct_id": "u2", "error": None}]
    assert failed["message"] == "injected fault: 503 Service Unavailable"
    text = page(hub).text
    assert '<span class="badge grey">dropped</span>' in text
    assert "503 Service Unavailable" in text
    assert html.escape("u2 is blocked: record 0 (distinct_id 'u2')") in text


# -- safety -------------------------------------------------------------------


def test_hostile_values_are_escaped(hub):
    hostile_id = '<img src=x onerror="alert(2)">'
    response = send(
        hub.url,
        "POST",
        "event/",
        record(
            hostile_id,
            {"$set": {HOSTILE: HOSTILE, "$timezone": "</td></tr><b>bold</b>"}},
            {"$append": {"$email": '"><script>alert(3)</script>@example.com'}},
        ),
    )
    assert response.status_code == 202
    assert send(hub.url, "POST", "event/", record(HOSTILE, {"$oops": 1})).status_code == 400

    text = page(hub).text
    assert "<script" not in text
    assert "<img" not in text
    assert "<b>bold" not in text
    assert html.escape(HOSTILE) in text
    assert html.escape(hostile_id) in text
    assert html.escape("</td></tr><b>bold</b>") in text
    assert html.escape('"><script>alert(3)</script>@example.com') in text
    assert html.escape(f"record 0 ({HOSTILE!r})") in text  # in an error message too
    csp = page(hub).headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp  # and were one missed, no script could run
    assert state(hub)["profiles"]["items"][0]["properties"][HOSTILE] == HOSTILE


def test_no_secret_on_the_page_or_in_the_json(hub):
    date = signing.http_date()
    data = json.dumps(record("u1", {"$set": {"a": 1}})).encode()
    signature = signing.signature(SECRET, "POST", data, date=date, request_uri="/event/")
    authorization = f"{KEY}:{signature}"
    signed = requests.post(
        hub.url + "event/",
        data=data,
        headers={
            "Content-Type": signing.CONTENT_TYPE,
            "Date": date,
            "Authorization": authorization,
        },
        timeout=10,
    )
    assert signed.status_code == 202
    bearer = requests.get(
        hub.url + "v1/user/u1/", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    assert bearer.status_code == 200
    wrong = send(hub.url, "GET", "v1/user/u1/", secret="another-secret")
    assert wrong.status_code == 401
    wrong_bearer = requests.get(
        hub.url + "v1/user/u1/", headers={"Authorization": "Bearer guessed-key"}, timeout=10
    )
    assert wrong_bearer.status_code == 401

    for shown in (
        page(hub).text,
        page(hub, "_emulator/").text,
        page(hub, "_emulator/state.json").text,
    ):
        assert "u1" in shown
        assert "401 Unauthorized" in shown or '"status": 401' in shown
        for secret in (SECRET, API_KEY, authorization, signature, "guessed-key", "another-secret"):
            assert secret not in shown
        assert "Authorization" not in shown


def test_page_requests_are_not_logged_and_use_no_fault(hub):
    hub.fail_next(1, 503)
    for path in ("", "_emulator/", "_emulator/state.json", "?x=1"):
        page(hub, path)
    assert hub.requests == []
    assert send(hub.url, "GET", "v1/user/nobody/").status_code == 503  # the fault is still queued
    assert [(r.path, r.status) for r in hub.requests] == [("/v1/user/nobody/", 503)]
    assert state(hub)["requests"]["total"] == 1
    assert len(hub.requests) == 1


def test_api_routes_and_auth_are_unchanged_with_the_page_on(hub):
    unsigned = requests.get(hub.url + "v1/user/u1/", timeout=10)
    assert unsigned.status_code == 401
    assert requests.post(hub.url, data=b"{}", timeout=10).status_code == 404
    assert requests.get(hub.url + "_emulator/other", timeout=10).status_code == 404
    assert send(hub.url, "GET", "v1/user/u1/").status_code == 404
    assert [(r.method, r.path, r.status) for r in hub.requests] == [
        ("GET", "/v1/user/u1/", 401),
        ("POST", "/", 404),
        ("GET", "/_emulator/other", 404),
        ("GET", "/v1/user/u1/", 404),
    ]


def test_the_page_is_off_by_default(suprsend_hub):
    response = requests.get(suprsend_hub.url, timeout=10)
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert requests.get(suprsend_hub.url + "_emulator/state.json", timeout=10).status_code == 404
    assert len(suprsend_hub.requests) == 2  # answered by the hub's routes, as before


def test_page_under_a_path_prefix():
    with HubEmulator(KEY, SECRET, path_prefix="proxy/suprsend/", serve_page=True) as hub:
        assert send(hub.url, "POST", "event/", record("u1", {"$set": {"a": 1}})).ok
        text = page(hub).text
        assert "u1" in text
        assert 'href="/proxy/suprsend/_emulator/state.json"' in text
        assert state(hub)["hub"]["path_prefix"] == "/proxy/suprsend"
        root = hub.url.removesuffix("proxy/suprsend/")
        assert requests.get(root, timeout=10).status_code == 404
        assert requests.get(root + "_emulator/state.json", timeout=10).status_code == 404


def test_page_reads_are_safe_while_records_arrive(hub):
    errors: list[BaseException] = []

    def post(worker: int) -> None:
        try:
            for n in range(15):
                batch = [record(f"w{worker}-{n}-{i}", {"$set": {"i": i}}) for i in range(20)]
                assert send(hub.url, "POST", "event/", batch).status_code == 202
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    pages = 0
    while any(thread.is_alive() for thread in threads) or pages < 5:
        assert "Profiles" in page(hub).text
        pages += 1
    for thread in threads:
        thread.join()
    assert errors == []
    data = state(hub)
    assert data["profiles"]["total"] == 4 * 15 * 20
    assert data["requests"]["total"] == 4 * 15


# -- in a browser -------------------------------------------------------------


@pytest.mark.browser
def test_the_page_in_a_browser_refreshes_itself_and_runs_no_injected_script(hub):
    from playwright.sync_api import expect

    from tests.browser import open_page, require_browser

    executable_path = require_browser()
    email = {"$append": {"$email": "jane@example.com"}}
    assert send(hub.url, "POST", "event/", record("user-1", {"$set": {"name": "Jane"}}, email)).ok
    with open_page(hub.url, executable_path=executable_path) as tab:
        dialogs: list[str] = []
        tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        tab.set_viewport_size({"width": 1280, "height": 800})
        tab.goto(hub.url)
        first_row = tab.locator("tr", has=tab.locator("td.id"))
        expect(first_row).to_have_count(1)
        expect(first_row).to_contain_text("jane@example.com")

        # sent after the page loaded: it shows up by itself (meta refresh), as plain text
        hostile = record("user-2", {"$set": {"note": HOSTILE}}, {"$append": {"$sms": "+15550100"}})
        assert send(hub.url, "POST", "event/", hostile).ok
        newest = tab.locator("tr", has=tab.locator("td.id")).first
        expect(newest).to_contain_text("user-2")  # polls until the reload, up to 10 s
        expect(newest).to_contain_text(HOSTILE)
        expect(tab.locator("td script")).to_have_count(0)
        assert dialogs == []
    assert [r.path for r in hub.requests] == ["/event/", "/event/"]  # page loads not logged


# -- the CLI ------------------------------------------------------------------


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    """The lines of a stream as they come, then None at its end (readline cannot time out)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _next_line(lines: queue.Queue[str | None], deadline: float) -> str | None:
    """The next line (None: the output ended); fails the test past the deadline."""
    try:
        return lines.get(timeout=max(deadline - time.monotonic(), 0))
    except queue.Empty:
        pytest.fail("the emulator printed no further line in time")


@pytest.fixture
def cli() -> Iterator[Callable[..., tuple[subprocess.Popen[str], queue.Queue[str | None]]]]:
    """Start ``python -m django_suprsend.testing --port 0 *args``; killed if still running."""
    processes: list[subprocess.Popen[str]] = []

    def start(
        *args: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
        process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "django_suprsend.testing", "--port", "0", *args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        processes.append(process)
        return process, _lines(process.stdout)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_cli_prints_and_serves_the_page(cli):
    process, lines = cli("--workspace-key", KEY, "--workspace-secret", SECRET)
    deadline = time.monotonic() + 30
    first = _next_line(lines, deadline)
    assert first is not None
    assert first.startswith("SuprSend hub emulator listening on http://127.0.0.1:")
    url = first.rsplit(" ", 1)[1].strip()
    assert _next_line(lines, deadline).strip() == f"Profiles page: {url}"

    assert send(url, "POST", "event/", record("cli-user", {"$set": {"$timezone": "UTC"}})).ok
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert "cli-user" in response.text
    assert "SuprSend hub emulator" in response.text
    data = requests.get(url + "_emulator/state.json", timeout=10).json()
    assert [p["distinct_id"] for p in data["profiles"]["items"]] == ["cli-user"]
    assert data["requests"]["total"] == 1  # the page GETs were not logged

    process.terminate()
    assert process.wait(timeout=30) == 0


def _pasted_settings(lines: queue.Queue[str | None]) -> tuple[str, str, dict[str, Any]]:
    """The emulator's URL, the settings it printed to paste, and what they evaluate to."""
    deadline = time.monotonic() + 30
    url = _next_line(lines, deadline).rsplit(" ", 1)[1].strip()
    banner: list[str] = []
    while not banner or banner[-1] != "}":
        line = _next_line(lines, deadline)
        assert line is not None, f"the output ended before the settings: {banner}"
        banner.append(line.rstrip("\n"))
    source = "\n".join(banner[banner.index("To send to it, put in your project's settings:") + 1 :])
    namespace: dict[str, Any] = {"os": os}
    exec(source, namespace)  # noqa: S102 - what a user pastes into settings.py
    return url, source, namespace["SUPRSEND"]


def test_cli_prints_the_settings_that_send_to_it(cli):
    process, lines = cli("--workspace-key", KEY, "--workspace-secret", SECRET)
    url, source, pasted = _pasted_settings(lines)
    assert source.startswith("SUPRSEND = {\n")
    assert pasted == {"WORKSPACE_KEY": KEY, "WORKSPACE_SECRET": SECRET, "BASE_URL": url}
    client = SuprsendClient(
        pasted["WORKSPACE_KEY"], pasted["WORKSPACE_SECRET"], base_url=pasted["BASE_URL"]
    )
    edit = ProfileEdit("pasted-user").set({"plan": "pro"})
    assert client.send_records([client.build_record(edit)]).status == "success"
    process.terminate()
    assert process.wait(timeout=30) == 0


def test_cli_prints_a_secret_of_the_environment_as_a_reading_of_it(cli, monkeypatch):
    secret = "ws-secret-from-the-environment"
    env = {**os.environ, "SUPRSEND_WORKSPACE_SECRET": secret}
    process, lines = cli(env=env)
    monkeypatch.setenv("SUPRSEND_WORKSPACE_SECRET", secret)
    url, source, pasted = _pasted_settings(lines)
    assert secret not in source
    assert '"WORKSPACE_SECRET": os.environ["SUPRSEND_WORKSPACE_SECRET"],' in source
    assert pasted == {"WORKSPACE_KEY": "ws_test_key", "WORKSPACE_SECRET": secret, "BASE_URL": url}
    process.terminate()
    assert process.wait(timeout=30) == 0


def test_the_settings_to_paste_with_an_api_key() -> None:
    args = parse_args(["--api-key", 'key"with-quote', "--workspace-uid", "uid", "--no-auth"])
    source = settings_to_paste(args, "http://127.0.0.1:1/")
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102
    assert namespace["SUPRSEND"] == {
        "WORKSPACE_KEY": "uid",
        "API_KEY": 'key"with-quote',
        "BASE_URL": "http://127.0.0.1:1/",
    }
    assert source.splitlines()[0] == "SUPRSEND = {  # --no-auth: any credentials are accepted"


def test_cli_no_page(cli):
    process, lines = cli("--no-page")
    deadline = time.monotonic() + 30
    first = _next_line(lines, deadline)
    assert first is not None
    assert first.startswith("SuprSend hub emulator listening on http://127.0.0.1:")
    url = first.rsplit(" ", 1)[1].strip()
    assert requests.get(url, timeout=10).status_code == 404
    process.terminate()
    assert process.wait(timeout=30) == 0
    rest = iter(lambda: _next_line(lines, deadline), None)  # to the end of the output
    assert not [line for line in rest if line.startswith("Profiles page:")]
