"""SuprsendClient against the hub emulator: delivery, faults, retries, bisection, secrets."""

from __future__ import annotations

import http.server
import json
import logging
import multiprocessing
import re
import threading

import pytest
import requests

from django_suprsend import __version__
from django_suprsend.exceptions import (
    SuprsendAPIError,
    SuprsendAuthenticationError,
    SuprsendConfigurationError,
    SuprsendNotFound,
    SuprsendTransportError,
    SuprsendValidationError,
)
from django_suprsend.testing import HubEmulator
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.operations import ProfileEdit
from django_suprsend.wire.retry import RetryPolicy
from tests.local import FORK_BESIDE_THREADS, closed_port_url

KEY, SECRET, API_KEY = "ws_test_key", "ws_test_secret", "api_test_key"
FAST = RetryPolicy(max_attempts=4, max_elapsed=10.0, backoff_base=0.01, backoff_max=0.05)


def make_client(hub: HubEmulator, secret: str = SECRET, **options) -> SuprsendClient:
    options = {"retry": FAST, "connect_timeout": 2.0, "read_timeout": 5.0, **options}
    return SuprsendClient(KEY, secret, base_url=hub.url, **options)


@pytest.fixture
def client(suprsend_hub: HubEmulator):
    with make_client(suprsend_hub) as client:
        yield client


def users(client: SuprsendClient, count: int, prefix: str = "u") -> list[dict]:
    return [
        client.build_record(
            ProfileEdit(f"{prefix}-{i:04d}").set("n", i).add_email(f"{prefix}-{i:04d}@example.com")
        )
        for i in range(count)
    ]


def insert_ids(records: list[dict]) -> list[str]:
    return [r["$insert_id"] for r in records]


def failed_ids(response) -> list[str]:
    return [f["record"]["distinct_id"] for f in response.failed_records]


def assert_statuses(hub: HubEmulator, expected: list[int | None]) -> None:
    """The hub answered these statuses, in order (it notes each just after answering)."""
    hub.wait_for(lambda h: [r.status for r in h.requests] == expected, timeout=5)


# -- delivery ------------------------------------------------------------------------


def test_records_are_delivered_and_applied(client, suprsend_hub):
    edit = ProfileEdit("42").set({"name": "Jane", "plan": "pro"}).add_email("jane@example.com")
    records = [client.build_record(edit), *users(client, 2)]
    response = client.send_records(records)
    assert (response.status, response.total, response.success, response.failure) == (
        "success",
        3,
        3,
        0,
    )
    assert response.succeeded_insert_ids == insert_ids(records)
    assert suprsend_hub.channel_values("42", "$email") == ["jane@example.com"]
    assert suprsend_hub.properties("42") == {"name": "Jane", "plan": "pro"}
    assert suprsend_hub.properties("u-0001") == {"n": 1}


def test_empty_input_sends_nothing(client, suprsend_hub):
    response = client.send_records(iter([]))
    assert str(response) == (
        "BulkResponse<status: success | total: 0 | success: 0 | failure: 0 | warnings: 0>"
    )
    assert suprsend_hub.requests == []


def test_records_are_chunked_and_sent_in_order(client, suprsend_hub):
    records = users(client, 1000)
    response = client.send_records(r for r in records)  # any iterable
    assert response.success == 1000
    assert [r.record_count for r in suprsend_hub.requests] == [400, 400, 200]
    assert suprsend_hub.applied_insert_ids == set(insert_ids(records))


def test_default_headers_name_this_package(client, suprsend_hub):
    client.send_records(users(client, 1))
    (request,) = suprsend_hub.requests
    assert re.fullmatch(
        rf"django-suprsend/{re.escape(__version__)} \(python/\d+\.\d+\.\d+; \w*\)",
        request.header("User-Agent"),
    )
    agent = json.loads(request.header("X-Suprsend-Client-User-Agent"))
    assert (agent["sdk"], agent["sdk_version"], agent["platform"]) == (
        "django-suprsend",
        __version__,
        "server",
    )
    assert request.json()[0]["properties"]["$ss_sdk_version"] == request.header("User-Agent")


def test_bearer_mode(suprsend_hub):
    with SuprsendClient(KEY, api_key=API_KEY, base_url=suprsend_hub.url, retry=FAST) as client:
        assert client.send_records(users(client, 2)).status == "success"
        client.edit_user("u-0000", [{"$set": {"plan": "team"}}])
    request = suprsend_hub.requests[-1]
    assert request.header("Authorization") == f"Bearer {API_KEY}"
    assert request.header("Date") is None
    assert suprsend_hub.properties("u-0000") == {"n": 0, "plan": "team"}


# -- failures of single records ------------------------------------------------------


def test_partial_failure_reports_only_the_rejected_record(client, suprsend_hub):
    suprsend_hub.reject_records(lambda r: r["distinct_id"] == "u-0003", status=422)
    records = users(client, 6)
    response = client.send_records(records)
    assert (response.status, response.success, response.failure) == ("partial", 5, 1)
    (failed,) = response.failed_records
    assert failed["record"] is records[3]
    assert failed["code"] == 422
    assert "rejected by test" in failed["error"]
    assert response.retryable == []
    assert suprsend_hub.profile("u-0003") is None
    assert suprsend_hub.profile("u-0005") is not None


def test_poisoned_record_among_400_is_isolated_by_bisection(client, suprsend_hub):
    suprsend_hub.reject_records(lambda r: r["distinct_id"] == "u-0137")
    records = users(client, 400)
    response = client.send_records(records)
    assert (response.status, response.success, response.failure) == ("partial", 399, 1)
    assert failed_ids(response) == ["u-0137"]
    assert response.failed_records[0]["code"] == 400
    assert json.loads(response.failed_records[0]["error"])["code"] == 400  # the hub's answer
    assert response.succeeded_insert_ids == [
        i for i in insert_ids(records) if i != records[137]["$insert_id"]
    ]
    assert len(suprsend_hub.profiles()) == 399
    assert len(suprsend_hub.requests) <= 2 * 9 + 1  # log2(400) levels, two halves each


def test_oversize_record_is_not_sent_and_the_rest_are(client, suprsend_hub):
    records = users(client, 5)
    big = client.build_record("big-user", [{"$set": {"blob": "x" * 11_000}}])
    records.insert(2, big)
    response = client.send_records(records)
    assert (response.status, response.success, response.failure) == ("partial", 5, 1)
    (failed,) = response.failed_records
    assert failed["record"] is big
    assert failed["code"] == 500
    assert re.search(r"\b11\d\d\d bytes\b.*\b10240\b", failed["error"])
    assert response.retryable == []
    (request,) = suprsend_hub.requests
    assert [r["distinct_id"] for r in request.json()] == [
        r["distinct_id"] for r in records if r is not big
    ]


def test_a_chunk_refused_whole_is_split_and_delivered(client, suprsend_hub):
    suprsend_hub.fail_next(1, status=413)
    records = users(client, 400)
    response = client.send_records(records)
    assert (response.status, response.success) == ("success", 400)
    assert_statuses(suprsend_hub, [413, 202, 202])
    assert [r.record_count for r in suprsend_hub.requests[1:]] == [200, 200]


def test_an_error_in_the_records_iterable_propagates(client, suprsend_hub):
    def records():
        yield from users(client, 450)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        client.send_records(records())
    assert [r.record_count for r in suprsend_hub.requests] == [400]


def test_unserialisable_record_fails_alone(client, suprsend_hub):
    bad = client.build_record("bad", [{"$set": {"when": object()}}])
    response = client.send_records([bad, *users(client, 2)])
    assert (response.success, failed_ids(response)) == (2, ["bad"])
    assert "not JSON serialisable" in response.failed_records[0]["error"]


# -- retries -------------------------------------------------------------------------


def test_server_errors_are_retried_until_success(client, suprsend_hub):
    suprsend_hub.fail_next(2, status=503)
    records = users(client, 3)
    response = client.send_records(records)
    assert response.status == "success"
    assert_statuses(suprsend_hub, [503, 503, 202])
    assert suprsend_hub.applied_insert_ids == set(insert_ids(records))


def test_retry_after_is_honoured(suprsend_hub):
    suprsend_hub.fail_next(1, status=429, retry_after=1)
    with make_client(
        suprsend_hub, retry=RetryPolicy(max_elapsed=10.0, backoff_base=0.01)
    ) as client:
        assert client.send_records(users(client, 1)).status == "success"
    assert_statuses(suprsend_hub, [429, 202])
    first, second = suprsend_hub.requests
    assert second.received_at - first.received_at >= 1.0


def test_retry_after_beyond_the_time_budget_is_not_waited_for(suprsend_hub):
    suprsend_hub.fail_next(1, status=429, retry_after=120)
    policy = RetryPolicy(max_elapsed=5.0, backoff_base=0.01)
    with make_client(suprsend_hub, retry=policy) as client:
        client.sleep = lambda seconds: pytest.fail(f"slept {seconds}s")
        response = client.send_records(users(client, 2))
    assert (response.status, len(response.retryable)) == ("fail", 2)
    assert {f["code"] for f in response.failed_records} == {429}
    assert len(suprsend_hub.requests) == 1


def test_read_timeout_is_retried_and_applied_once(suprsend_hub):
    suprsend_hub.delay_next(1, 1.5)
    with make_client(suprsend_hub, read_timeout=0.3) as client:
        records = users(client, 1)
        response = client.send_records(records)
    assert response.status == "success"
    (insert_id,) = insert_ids(records)
    # The slow first attempt is still applied by the hub, later: $insert_id keeps it single.
    suprsend_hub.wait_for(lambda hub: hub.insert_id_counts[insert_id] == 2, timeout=5)
    assert suprsend_hub.channel_values("u-0000", "$email") == ["u-0000@example.com"]


def test_dropped_connection_is_retried(client, suprsend_hub):
    suprsend_hub.drop_next(1)
    response = client.send_records(users(client, 2))
    assert response.status == "success"
    assert_statuses(suprsend_hub, [None, 202])


def test_exhausted_retries_are_reported_failed_and_retryable(suprsend_hub, caplog):
    suprsend_hub.fail_next(10, status=503)
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    with make_client(suprsend_hub, retry=policy) as client, caplog.at_level(logging.WARNING):
        response = client.send_records(users(client, 3))
    assert (response.status, response.failure) == ("fail", 3)
    assert {f["code"] for f in response.failed_records} == {503}
    assert response.retryable == response.failed_records
    assert len(suprsend_hub.requests) == 3
    retries = [r for r in caplog.records if r.name == "django_suprsend.wire.client"]
    assert "POST /event/: HTTP 503 on attempt 1 of 3; retrying in" in retries[0].getMessage()
    assert "giving up after 3 attempt(s)" in retries[-1].getMessage()


def test_after_exhausted_retries_next_chunks_get_one_attempt(suprsend_hub):
    suprsend_hub.fail_next(3, status=500)
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    with make_client(suprsend_hub, retry=policy) as client:
        records = users(client, 1200)
        response = client.send_records(records)
    # chunk 1: 3 attempts, all 500; chunk 2: one attempt, accepted; chunk 3: back to normal.
    assert_statuses(suprsend_hub, [500, 500, 500, 202, 202])
    assert (response.status, response.success, len(response.retryable)) == ("partial", 800, 400)


def test_connection_refused_is_a_retryable_failure(suprsend_hub):
    policy = RetryPolicy(max_attempts=2, backoff_base=0.01)
    with SuprsendClient(KEY, SECRET, base_url=closed_port_url(), retry=policy) as client:
        response = client.send_records(users(client, 900))
        assert (response.status, len(response.retryable)) == ("fail", 900)
        assert "ConnectionError" in response.failed_records[0]["error"]
        with pytest.raises(SuprsendTransportError, match="after 2 attempt"):
            client.get_user("42")


# -- authentication and secrets ------------------------------------------------------


def test_wrong_secret_fails_everything_with_a_clear_error(suprsend_hub):
    with make_client(suprsend_hub, secret="not-the-secret") as client:
        response = client.send_records(users(client, 900))
        with pytest.raises(SuprsendAuthenticationError) as raised:
            client.get_user("42")
    assert (response.status, response.failure) == ("fail", 900)
    assert {f["code"] for f in response.failed_records} == {401}
    assert "WORKSPACE_KEY and WORKSPACE_SECRET" in response.failed_records[0]["error"]
    assert response.retryable == []
    assert len(suprsend_hub.requests) == 2  # one chunk, then the get: nothing more was sent
    assert "WORKSPACE_KEY" in str(raised.value)
    for text in (str(raised.value), response.failed_records[-1]["error"]):
        assert "not-the-secret" not in text


def test_forbidden_stops_the_send(client, suprsend_hub):
    suprsend_hub.fail_next(1, status=403)
    response = client.send_records(users(client, 900))
    assert (response.status, response.failure) == ("fail", 900)
    assert {f["code"] for f in response.failed_records} == {403}
    assert "refused the credentials (403)" in response.failed_records[-1]["error"]
    assert len(suprsend_hub.requests) == 1


def test_secrets_never_show(suprsend_hub, caplog):
    clients = [
        make_client(suprsend_hub),
        SuprsendClient(KEY, api_key=API_KEY, base_url=suprsend_hub.url, retry=FAST),
    ]
    suprsend_hub.fail_next(2, status=503)
    messages = []
    with caplog.at_level(logging.DEBUG, logger="django_suprsend"):
        for client in clients:
            client.send_records(users(client, 1))
            with pytest.raises(SuprsendNotFound) as raised:
                client.get_user("nobody")
            messages.append(str(raised.value))
            messages += [repr(client), str(client), repr(vars(client))]
            client.close()
    assert any("retrying" in r.getMessage() for r in caplog.records)
    for text in [*messages, caplog.text]:
        assert SECRET not in text
        assert API_KEY not in text
    assert repr(clients[0]) == (
        f"SuprsendClient(base_url={suprsend_hub.url!r}, workspace_key='ws_test_key', "
        "auth_mode='hmac')"
    )


def test_secret_echoed_by_the_hub_is_masked(client, suprsend_hub):
    suprsend_hub.fail_next(1, status=400, body=f"bad secret {SECRET}")
    with pytest.raises(SuprsendAPIError) as raised:
        client.get_user("42")
    assert SECRET not in str(raised.value)
    assert "bad secret ********" in str(raised.value)


@pytest.mark.parametrize("secret", ["s", "e", "ws_", "0"])
def test_a_short_secret_is_masked_as_a_token_not_as_letters(secret):
    """A secret too short to be real masks only where it stands whole: the transport's
    error text (full of the letters of "s") stays readable."""
    with HubEmulator(KEY, secret) as hub:
        hub.fail_next(1, status=400, body=f'{{"message": "bad secret {secret}"}}')
        client = SuprsendClient(KEY, secret, base_url=hub.url, retry=FAST)
        with pytest.raises(SuprsendAPIError) as raised:
            client.get_user("42")
        client.close()
    echoed = str(raised.value)
    assert f"bad secret {secret}" not in echoed
    assert '{"message": "bad secret ********"}' in echoed
    dead = SuprsendClient(KEY, secret, base_url=closed_port_url(), retry=FAST)
    with pytest.raises(SuprsendTransportError) as raised:
        dead.get_user("42")
    dead.close()
    text = str(raised.value)
    assert "********" not in text
    assert "ConnectionError" in text
    assert "Connection refused" in text or "Max retries" in text


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ((KEY,), {}, "no credentials"),
        ((KEY, SECRET), {"api_key": API_KEY}, "not both"),
        (("",), {"api_key": API_KEY}, "workspace key"),
        ((KEY, SECRET), {"base_url": "ftp://hub.example.com/"}, "base_url"),
        ((KEY, SECRET), {"read_timeout": 0}, "read_timeout"),
    ],
)
def test_configuration_errors(args, options, message):
    with pytest.raises(SuprsendConfigurationError, match=message) as raised:
        SuprsendClient(*args, **options)
    assert SECRET not in str(raised.value)
    assert API_KEY not in str(raised.value)


# -- users API -----------------------------------------------------------------------


def test_upsert_get_edit_delete(client, suprsend_hub):
    created = client.upsert_user("7", {"$email": ["seven@example.com"], "name": "Seven"})
    assert created["distinct_id"] == "7"
    edit = ProfileEdit("7").set("plan", "pro").add_email("7@example.com")
    edited = client.edit_user("7", edit)
    assert edited == client.get_user("7")
    assert suprsend_hub.channel_values("7", "$email") == ["seven@example.com", "7@example.com"]
    assert suprsend_hub.properties("7") == {"name": "Seven", "plan": "pro"}
    assert client.delete_user("7") is None
    with pytest.raises(SuprsendNotFound) as raised:
        client.get_user("7")
    assert raised.value.status_code == 404
    assert "/v1/user/7/" in str(raised.value)


def test_profile_edit_must_match_the_call(client):
    with pytest.raises(SuprsendValidationError, match="differs"):
        client.edit_user("8", ProfileEdit("9").set("a", 1))
    with pytest.raises(SuprsendValidationError, match="tenant_id"):
        client.build_record(ProfileEdit("9"), tenant_id="acme")


def test_a_session_given_by_the_caller_is_used_and_left_open(suprsend_hub):
    class Session(requests.Session):
        closed = 0

        def close(self) -> None:
            self.closed += 1
            super().close()

    session = Session()
    session.headers["X-Test"] = "mine"
    with make_client(suprsend_hub, session=session) as client:
        client.send_records(users(client, 1))
    assert suprsend_hub.requests[0].header("X-Test") == "mine"
    assert session.closed == 0
    session.close()


def test_bulk_delete(client, suprsend_hub):
    client.send_records(users(client, 3))
    client.bulk_delete_users(["u-0000", " u-0002 "])
    assert set(suprsend_hub.profiles()) == {"u-0001"}
    assert suprsend_hub.requests[-1].json() == {"distinct_ids": ["u-0000", "u-0002"]}


def test_distinct_id_is_stripped_and_quoted(client, suprsend_hub):
    client.edit_user("  john doe/42@example.com ", [{"$set": {"plan": "pro"}}])
    assert suprsend_hub.requests[-1].path == "/v1/user/john%20doe%2F42%40example.com/"
    assert suprsend_hub.properties("john doe/42@example.com") == {"plan": "pro"}
    with pytest.raises(SuprsendValidationError, match="distinct_id"):
        client.get_user("   ")


def test_permanent_errors_are_not_retried(client, suprsend_hub):
    with pytest.raises(SuprsendAPIError) as raised:
        client.request("PATCH", "v1/user/42/", {"operations": "not a list"})
    assert raised.value.status_code == 400
    assert len(suprsend_hub.requests) == 1


def test_path_prefix():
    with HubEmulator(KEY, SECRET, path_prefix="proxy/suprsend") as hub:
        assert hub.url.endswith("/proxy/suprsend/")
        with make_client(hub) as client:
            client.edit_user("1", [{"$set": {"a": 1}}])
        assert hub.requests[0].path == "/proxy/suprsend/v1/user/1/"
        assert hub.properties("1") == {"a": 1}


def test_a_patch_that_timed_out_is_not_sent_again(suprsend_hub):
    suprsend_hub.delay_next(1, 1.0)
    with (
        make_client(suprsend_hub, read_timeout=0.3) as client,
        pytest.raises(SuprsendTransportError, match="may or may not have been applied"),
    ):
        client.edit_user("counter", [{"$add": {"logins": 1}}])
    # The hub applied it after the client gave up; a second PATCH would have counted twice.
    suprsend_hub.wait_for(lambda hub: hub.properties("counter") == {"logins": 1}, timeout=5)
    assert [r.method for r in suprsend_hub.requests] == ["PATCH"]


@FORK_BESIDE_THREADS
def test_a_forked_process_sends_over_a_connection_pool_of_its_own(client, suprsend_hub):
    client.send_records([ProfileEdit("parent").set("n", 1).to_record(env=KEY, sdk_version="t")])
    inherited = id(client._session)
    context = multiprocessing.get_context("fork")
    results = context.SimpleQueue()

    def child() -> None:
        record = ProfileEdit("child").set("n", 2).to_record(env=KEY, sdk_version="t")
        response = client.send_records([record])
        results.put((id(client._session) != inherited, response.success))

    process = context.Process(target=child)
    process.start()
    process.join(timeout=30)

    assert process.exitcode == 0
    assert results.get() == (True, 1)  # a new pool there, and it delivered
    assert id(client._session) == inherited  # the parent's pool is untouched...
    client.send_records([ProfileEdit("parent").set("n", 3).to_record(env=KEY, sdk_version="t")])
    assert suprsend_hub.properties("parent")["n"] == 3  # ...and still works
    assert suprsend_hub.properties("child")["n"] == 2


class _RecordingProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy stand-in on 127.0.0.1: records each request line, answers 202."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _RecordingProxy

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.request_lines.append(self.requestline)
        body = b'{"success": true}'
        self.send_response(202)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_proxy():
    proxy = _RecordingProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_the_environment_s_proxy_is_used(recording_proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", recording_proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    hub_url = closed_port_url()  # nothing listens there: only the proxy can answer
    with SuprsendClient(KEY, SECRET, base_url=hub_url, retry=FAST) as client:
        response = client.send_records([client.build_record(ProfileEdit("p-1").set("n", 1))])
    assert (response.success, response.failure) == (1, 0)
    assert recording_proxy.request_lines == [f"POST {hub_url}event/ HTTP/1.1"]


def test_no_proxy_sends_to_the_hub_directly(recording_proxy, suprsend_hub, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", recording_proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with make_client(suprsend_hub) as client:
        client.send_records(users(client, 2))
    assert recording_proxy.request_lines == []
    assert [r.record_count for r in suprsend_hub.requests] == [2]


def test_a_netrc_entry_for_the_hub_does_not_replace_the_signature(
    client, suprsend_hub, tmp_path, monkeypatch
):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with make_client(suprsend_hub) as fresh:
        response = fresh.send_records(users(fresh, 3))
    assert (response.success, response.failure) == (3, 0)
    assert_statuses(suprsend_hub, [202])
