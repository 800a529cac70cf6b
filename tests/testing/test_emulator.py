"""The hub emulator over real HTTP: auth, limits, validation, faults, REST shapes, CLI."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from django_suprsend.testing import HubEmulator, RecordedRequest, page, profile_endpoints
from django_suprsend.testing import records as records_module
from django_suprsend.testing.__main__ import build_hub, parse_args
from django_suprsend.testing.profiles import ProfileStore
from django_suprsend.testing.records import (
    MAX_BATCH_BYTES,
    MAX_RECORD_BYTES,
    HubError,
    check_limits,
    parse_event_body,
    record_size,
    size_bound,
)
from django_suprsend.wire import signing
from tests import vectors

KEY = "ws_test_key"
SECRET = "ws_test_secret"
API_KEY = "api_test_key"


# -- helpers ------------------------------------------------------------------


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def send(
    hub: HubEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    secret: str = SECRET,
    key: str = KEY,
    sign_data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    session: requests.Session | None = None,
    date: str | None = None,
) -> requests.Response:
    """A request signed as the SDK signs it (``sign_data`` signs other bytes than sent),
    dated now or ``date``."""
    if data is None:
        data = b"" if body is None else encode(body)
    date = date or signing.http_date()
    uri = urlsplit(hub.url).path + path
    sig = signing.signature(
        secret, method, data if sign_data is None else sign_data, date=date, request_uri=uri
    )
    all_headers = {
        "Content-Type": signing.CONTENT_TYPE,
        "Date": date,
        "Authorization": f"{key}:{sig}",
        **(headers or {}),
    }
    return (session or requests).request(
        method, hub.url + path, data=data, headers=all_headers, timeout=timeout
    )


def bearer(hub: HubEmulator, method: str, path: str, body: Any = None, token: str = API_KEY):
    data = b"" if body is None else encode(body)
    headers = {"Content-Type": signing.CONTENT_TYPE, "Authorization": f"Bearer {token}"}
    return requests.request(method, hub.url + path, data=data, headers=headers, timeout=10)


def record(distinct_id: str = "u1", *operations: dict, **fields: Any) -> dict[str, Any]:
    built = {
        "$schema": "2",
        "$insert_id": str(uuid.uuid4()),
        "$time": 1705314600500,
        "env": KEY,
        "distinct_id": distinct_id,
        "$user_operations": list(operations) or [{"$set": {"name": "Jane"}}],
        "properties": {"$ss_sdk_version": "tests"},
    }
    built.update(fields)
    return built


def padded(distinct_id: str, size: int) -> dict[str, Any]:
    """A record whose SDK-counted size is exactly ``size`` bytes."""
    built = record(distinct_id, {"$set": {"pad": ""}})
    built["$user_operations"][0]["$set"]["pad"] = "x" * (size - record_size(built))
    assert record_size(built) == size
    return built


def post_event(hub: HubEmulator, body: Any, **kwargs: Any) -> requests.Response:
    return send(hub, "POST", "event/", body, **kwargs)


@pytest.fixture
def hub(suprsend_hub: HubEmulator) -> HubEmulator:
    return suprsend_hub


# -- the fixture and lifecycle ------------------------------------------------


def test_fixture_gives_a_running_hub(suprsend_hub):
    assert suprsend_hub.url.startswith("http://127.0.0.1:")
    assert suprsend_hub.url.endswith("/")
    assert send(suprsend_hub, "GET", "v1/user/nobody/").status_code == 404


def test_stop_closes_open_connections_and_the_port():
    hub = HubEmulator(KEY, SECRET).start()
    session = requests.Session()
    assert send(hub, "GET", "v1/user/x/", session=session).status_code == 404
    url = hub.url
    hub.stop()
    hub.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        session.get(url + "v1/user/x/", timeout=5)
    with pytest.raises(RuntimeError, match="not running"):
        _ = hub.url


def test_repr_never_shows_the_secret(hub):
    assert SECRET not in repr(hub)
    assert API_KEY not in repr(hub)


# -- authentication -----------------------------------------------------------


def assert_401(response: requests.Response, fragment: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["code"] == 401
    assert fragment in body["message"]
    assert SECRET not in response.text


def test_signed_requests_are_accepted(hub):
    assert post_event(hub, record()).status_code == 202


def test_wrong_secret_is_401(hub):
    assert_401(post_event(hub, record(), secret="not-the-secret"), "signature does not match")


def test_tampered_body_is_401(hub):
    signed = encode(record())
    sent = encode(record("intruder"))
    assert_401(post_event(hub, None, data=sent, sign_data=signed), "MD5 of the body")
    assert hub.profiles() == {}


def test_missing_date_is_401(hub):
    response = send(hub, "GET", "v1/user/u1/", headers={"Date": ""})
    assert_401(response, "missing Date header")


@pytest.mark.parametrize(("offset", "where"), [(400, "ahead of"), (-400, "behind")])
def test_a_date_further_than_max_clock_skew_from_the_hubs_clock_is_401(hub, offset, where):
    hub.max_clock_skew = 300
    response = post_event(hub, record(), date=signing.http_date(time.time() + offset))
    assert_401(response, "request expired")
    # An HTTP-date counts whole seconds: the skew it shows is off by up to one
    assert re.search(rf"is (399|400|401)s {where} the hub.s clock", response.json()["message"])
    assert "more than the 300s allowed" in response.json()["message"]
    assert hub.profiles() == {}
    # Within the allowance it is accepted; the check can be lifted while serving.
    assert post_event(hub, record(), date=signing.http_date(time.time() + offset / 2)).ok
    hub.max_clock_skew = None
    assert post_event(hub, record(), date=signing.http_date(time.time() + offset)).ok


def test_any_date_is_accepted_without_max_clock_skew(hub):
    assert post_event(hub, record(), date=signing.http_date(time.time() - 86_400)).ok
    assert "Date within" not in hub.page_state()["hub"]["auth"]


def test_an_unreadable_date_is_401_with_max_clock_skew(hub):
    hub.max_clock_skew = 300
    assert_401(post_event(hub, record(), date="yesterday"), "is not an HTTP-date")
    assert hub.page_state()["hub"]["auth"] == "HMAC signature (Date within 300s) or Bearer API key"


def test_max_clock_skew_does_not_apply_to_bearer_requests():
    with HubEmulator(KEY, SECRET, api_key=API_KEY, max_clock_skew=1) as hub:
        assert bearer(hub, "GET", "v1/user/u1/").status_code == 404


def test_missing_authorization_is_401(hub):
    response = requests.get(hub.url + "v1/user/u1/", timeout=10)
    assert_401(response, "missing Authorization header")


def test_unknown_workspace_key_is_401(hub):
    assert_401(send(hub, "GET", "v1/user/u1/", key="other_key"), "unknown workspace key")


def test_malformed_authorization_is_401(hub):
    headers = {"Authorization": "nonsense"}
    response = requests.get(hub.url + "v1/user/u1/", headers=headers, timeout=10)
    assert_401(response, "'<workspace_key>:<signature>'")


def test_bearer_api_key(hub):
    assert bearer(hub, "POST", "event/", record()).status_code == 202
    assert_401(bearer(hub, "GET", "v1/user/u1/", token="wrong"), "Bearer API key")


def test_bearer_is_refused_without_an_api_key():
    with HubEmulator(KEY, SECRET) as hub:
        assert_401(bearer(hub, "GET", "v1/user/u1/"), "Bearer authentication is not enabled")


def test_env_must_match_the_auth_mode():
    with HubEmulator(KEY, SECRET, api_key=API_KEY, workspace_uid="ws_uid") as hub:
        assert post_event(hub, record()).status_code == 202
        assert bearer(hub, "POST", "event/", record(env="ws_uid")).status_code == 202
        assert post_event(hub, record(env="ws_uid")).status_code == 400
        assert bearer(hub, "POST", "event/", record()).status_code == 400


def test_signature_covers_the_raw_quoted_uri(hub):
    distinct_id = "john doe/42@example.com"
    path = f"v1/user/{quote(distinct_id, safe='')}/?x=1"
    response = send(hub, "PATCH", path, {"operations": [{"$set": {"a": 1}}]})
    assert response.status_code == 200, response.text
    assert response.json()["distinct_id"] == distinct_id
    assert hub.requests[-1].path == "/v1/user/john%20doe%2F42%40example.com/?x=1"
    assert send(hub, "GET", path.removesuffix("?x=1")).status_code == 200


def test_check_auth_false_accepts_unsigned_requests():
    with HubEmulator(KEY, SECRET, check_auth=False) as hub:
        response = requests.post(hub.url + "event/", data=encode(record()), timeout=10)
        assert response.status_code == 202


def test_path_prefix():
    with HubEmulator(KEY, SECRET, path_prefix="proxy/suprsend/") as hub:
        assert hub.url.endswith("/proxy/suprsend/")
        assert post_event(hub, record()).status_code == 202
        outside = requests.get(hub.url.replace("/proxy/suprsend/", "/event/"), timeout=10)
        assert outside.status_code == 404


def _vector_requests() -> Iterator[Any]:
    """Requests the official SDK sent to the endpoints the emulator serves."""
    for name in ("signatures", "user_edit_ops", "bulk_users"):
        for param in vectors.cases(name):
            case = param.values[0]
            if case is None:  # the vectors folder is absent: one skipped param says so
                yield pytest.param(None, None, id=param.id, marks=param.marks)
                return
            captured = [case["request"]] if case.get("request") else case.get("requests", [])
            for index, request in enumerate(captured):
                if "body_text" in request and "/tenant/" not in request["path"]:
                    yield pytest.param(case, request, id=f"{case['name']}-{index}")


@pytest.mark.parametrize(("case", "captured"), list(_vector_requests()))
def test_requests_captured_from_the_sdk_are_accepted(case, captured):
    credentials = vectors.CREDENTIALS
    prefix = "/proxy/suprsend" if case["client"] == "hmac_prefixed" else ""
    with HubEmulator(
        credentials["workspace_key"],
        credentials["workspace_secret"],
        api_key=credentials["api_key"],
        workspace_uid=credentials["workspace_uid"],
        path_prefix=prefix,
    ) as hub:
        headers = {
            k: v for k, v in captured["headers"].items() if k not in ("Host", "Content-Length")
        }
        base = hub.url.removesuffix(prefix + "/")
        response = requests.request(
            captured["method"],
            base + captured["path"],
            data=captured["body_text"].encode(),
            headers=headers,
            timeout=10,
        )
    expected = 404 if captured["method"] in ("GET", "DELETE") else (200, 202)
    assert response.status_code in ((expected,) if isinstance(expected, int) else expected), (
        response.text
    )


# -- event/ -------------------------------------------------------------------


def test_event_single_record(hub):
    response = post_event(hub, record("u1", {"$set": {"name": "Jane"}}))
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True
    assert uuid.UUID(body["message_id"])
    assert hub.properties("u1") == {"name": "Jane"}


def test_event_array_applies_records_in_order(hub):
    records = [
        record("u1", {"$append": {"$email": "old@example.com"}}),
        record("u2", {"$set": {"plan": "pro"}}),
        record(
            "u1", {"$remove": {"$email": "old@example.com"}}, {"$append": {"$email": "n@ex.com"}}
        ),
    ]
    assert post_event(hub, records).status_code == 202
    assert hub.channel_values("u1", "$email") == ["n@ex.com"]
    assert hub.properties("u2") == {"plan": "pro"}
    assert hub.applied_insert_ids == {r["$insert_id"] for r in records}
    assert hub.requests[-1].record_count == 3


def test_event_deduplicates_by_insert_id(hub):
    first = record("u1", {"$add": {"visits": 1}})
    again = dict(first)
    assert post_event(hub, [first, again]).status_code == 202
    assert post_event(hub, first).status_code == 202
    assert hub.properties("u1") == {"visits": 1}
    assert hub.insert_id_counts[first["$insert_id"]] == 3
    assert hub.applied_insert_ids == {first["$insert_id"]}


def test_event_400_records_are_accepted_and_401_are_413(hub):
    assert post_event(hub, [record(f"u{i}") for i in range(400)]).status_code == 202
    response = post_event(hub, [record(f"v{i}") for i in range(401)])
    assert response.status_code == 413
    assert "401 records" in response.json()["message"]
    assert len(hub.profiles()) == 400


def test_event_record_size_limit_is_exact(hub):
    assert post_event(hub, padded("fits", MAX_RECORD_BYTES)).status_code == 202
    response = post_event(hub, [record("ok"), padded("big", MAX_RECORD_BYTES + 1)])
    assert response.status_code == 413
    body = response.json()
    assert body["message"].startswith("record 1 (distinct_id 'big') is 10241 bytes")
    assert body["records"][0]["index"] == 1
    assert hub.profile("ok") is None


def test_event_record_size_counts_the_sdk_serialisation_not_the_wire(hub):
    # Sent compact, the record is under 10,240 bytes; json.dumps(...) makes it bigger.
    big = padded("compact", MAX_RECORD_BYTES + 1)
    compact = json.dumps([big], ensure_ascii=False, separators=(",", ":")).encode()
    assert len(compact) < MAX_RECORD_BYTES
    assert post_event(hub, None, data=compact).status_code == 413


def test_event_request_size_limit(hub):
    per_record = MAX_BATCH_BYTES // 100
    fits = [padded(f"a{i}", per_record) for i in range(100)]
    assert post_event(hub, fits).status_code == 202
    over = [padded(f"b{i}", per_record) for i in range(99)] + [padded("b99", per_record + 1)]
    response = post_event(hub, over)
    assert response.status_code == 413
    assert "819201 bytes" in response.json()["message"]


def test_check_limits_uses_raw_texts_only_as_a_safe_bound():
    text = json.dumps([padded("a", 2000)], ensure_ascii=False, separators=(",", ":")).encode()
    records, texts = parse_event_body(text)
    assert texts is not None
    check_limits(records, texts)  # well within the record limit
    records, texts = parse_event_body(encode([padded("b", MAX_RECORD_BYTES + 1)]))
    with pytest.raises(HubError, match="10241 bytes"):
        check_limits(records, texts)


def test_numbers_that_grow_when_reserialised_are_sized_exactly():
    # 1e15 is 4 characters as sent and 18 bytes as the SDK counts it.
    numbers = record("n", {"$add": {f"k{i}": 1e15 for i in range(400)}})
    text = json.dumps([numbers], separators=(",", ":")).replace("1000000000000000.0", "1e15")
    assert len(text) < MAX_RECORD_BYTES < record_size(numbers)
    records, texts = parse_event_body(text.encode())
    assert texts is not None
    assert size_bound(texts[0]) >= record_size(numbers)
    with pytest.raises(HubError, match=f"{record_size(numbers)} bytes"):
        check_limits(records, texts)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    value=_json_values,
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]),
    ensure_ascii=st.booleans(),
)
def test_size_bound_is_never_below_the_sdk_size(value, separators, ensure_ascii):
    text = json.dumps(value, separators=separators, ensure_ascii=ensure_ascii)
    # Exponents as short as they can be written, the worst case of growth.
    text = re.sub(r"(\d)\.0e", r"\1e", text)
    assert size_bound(text) >= record_size(json.loads(text))


def test_parse_event_body_shapes():
    records, texts = parse_event_body(b' [ {"a": 1} , 2 ] ')
    assert (records, list(texts or [])) == ([{"a": 1}, 2], ['{"a": 1}', "2"])
    records, texts = parse_event_body(b'[{"a": [1, 2]}, "x",  3]')  # white space after ", "
    assert records == [{"a": [1, 2]}, "x", 3]
    assert parse_event_body(b'{"a": 1}') == ([{"a": 1}], None)
    assert parse_event_body(b"[]") == ([], None)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(_json_values, max_size=5),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]),
    ensure_ascii=st.booleans(),
)
def test_raw_texts_are_each_records_text(values, separators, ensure_ascii):
    text = json.dumps(values, separators=separators, ensure_ascii=ensure_ascii)
    records, texts = parse_event_body(text.encode())
    assert records == json.loads(text)
    if texts is not None:
        assert [json.loads(t) for t in texts] == records
        # what RawTexts.within_limits relies on: the body bounds the sum, a length each text
        bounds = [size_bound(t) for t in texts]
        assert records_module._loose_size_bound(text.encode()) >= size_bound(text) >= sum(bounds)
        for t, bound in zip(texts, bounds, strict=True):
            assert bound * 2 <= len(t.encode("utf-8", "surrogatepass")) * 23


@pytest.mark.parametrize("distinct_id", ["ascii", "\u00e9"])
def test_check_limits_bounds_long_records_on_their_own(distinct_id):
    # Over 890 bytes a record's length alone does not show it within the limit.
    fits = padded(distinct_id, 5000)
    grows = record(distinct_id, {"$add": {f"k{i}": 1e15 for i in range(400)}})
    text = encode([fits, grows]).decode().replace("1000000000000000.0", "1e15")
    records, texts = parse_event_body(text.encode())
    assert texts is not None
    assert len(texts[1].encode()) < MAX_RECORD_BYTES < record_size(grows)
    with pytest.raises(HubError, match=rf"^record 1 .* is {record_size(grows)} bytes"):
        check_limits(records, texts)
    check_limits(*parse_event_body(encode([fits, fits])))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[1, 2",
        b"[1 2]",
        b"[1,]",
        b"[1] x",
        b"[NaN]",
        b'{"a": Infinity}',
        b"[1e999]",
        b'{"a": -1e999}',
        b"\xff",
    ],
)
def test_event_invalid_json_is_400(hub, body):
    response = post_event(hub, None, data=body)
    assert response.status_code == 400
    assert response.json()["message"].startswith("body is not valid JSON")


def test_event_empty_array_is_400(hub):
    response = post_event(hub, [])
    assert response.status_code == 400
    assert response.json()["message"] == "the request holds no records"


def without(key: str):
    return lambda r: {k: v for k, v in r.items() if k != key}


def replaced(key: str, value: Any):
    return lambda r: {**r, key: value}


def operations(*ops: Any):
    return replaced("$user_operations", list(ops))


MALFORMED = {
    "not an object": (lambda r: "text", "must be a JSON object, not string"),
    "no $schema": (without("$schema"), '"$schema" must be "2"'),
    "wrong $schema": (replaced("$schema", "1"), '"$schema" must be "2"'),
    "no $insert_id": (without("$insert_id"), '"$insert_id" must be a non-empty string'),
    "empty $insert_id": (replaced("$insert_id", ""), '"$insert_id" must be'),
    "numeric $insert_id": (replaced("$insert_id", 7), '"$insert_id" must be'),
    "no $time": (without("$time"), '"$time" must be an integer'),
    "float $time": (replaced("$time", 1.5), '"$time" must be an integer'),
    "string $time": (replaced("$time", "1"), '"$time" must be an integer'),
    "bool $time": (replaced("$time", True), '"$time" must be an integer'),
    "wrong env": (replaced("env", "other"), "\"env\" 'other' is not this workspace"),
    "no distinct_id": (without("distinct_id"), '"distinct_id" must be a non-empty'),
    "empty distinct_id": (replaced("distinct_id", ""), '"distinct_id" must be'),
    "properties not object": (replaced("properties", []), '"properties" must be'),
    "empty tenant_id": (replaced("tenant_id", ""), '"tenant_id" must be'),
    "no operations": (without("$user_operations"), '"$user_operations" must be a list'),
    "operations not list": (
        replaced("$user_operations", {"$set": {}}),
        '"$user_operations" must be a list',
    ),
    "operation not object": (
        operations("$set"),
        "operation 0 must be an object with exactly one operator key",
    ),
    "two operators": (operations({"$set": {}, "$unset": []}), "exactly one operator key"),
    "unknown operator": (
        operations({"$set": {}}, {"$inc": {"a": 1}}),
        "operation 1: unknown operator '$inc'",
    ),
    "$set not object": (
        operations({"$set": ["a"]}),
        "operation 0 ($set): value must be a JSON object, not array",
    ),
    "$set_once not object": (
        operations({"$set_once": "a"}),
        "($set_once): value must be a JSON object",
    ),
    "$add not number": (operations({"$add": {"n": "1"}}), "($add): 'n' must be a number"),
    "$add bool": (operations({"$add": {"n": True}}), "($add): 'n' must be a number"),
    "$append not object": (operations({"$append": "x"}), "($append): value must be a JSON"),
    "$append email not string": (
        operations({"$append": {"$email": ["a@x.com"]}}),
        "($append): $email must be a non-empty string",
    ),
    "$remove slack not object": (
        operations({"$remove": {"$slack": "U1"}}),
        "($remove): $slack must be a JSON object",
    ),
    "$id_provider not string": (
        operations({"$append": {"$androidpush": "t", "$id_provider": 1}}),
        "$id_provider must be a string or null",
    ),
    "$unset not list": (
        operations({"$unset": "age"}),
        "($unset): value must be a list of key strings",
    ),
    "$unset non-string key": (
        operations({"$unset": ["age", 1]}),
        "($unset): value must be a list of key strings",
    ),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_event_malformed_record_rejects_the_whole_request(hub, kind):
    malform, message = MALFORMED[kind]
    response = post_event(hub, [record("good"), malform(record("bad"))])
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 400
    assert body["message"].startswith("record 1 (distinct_id ")
    assert message in body["message"]
    assert [r["index"] for r in body["records"]] == [1]
    assert hub.profiles() == {}
    assert hub.insert_id_counts == {}


def test_event_400_names_every_bad_record(hub):
    records = [record("a"), record("b", env="x"), record("c"), record("d", **{"$time": "now"})]
    body = post_event(hub, records).json()
    assert [(r["index"], r["distinct_id"]) for r in body["records"]] == [(1, "b"), (3, "d")]
    assert body["records"][0]["$insert_id"] == records[1]["$insert_id"]
    assert "error" in body["records"][0]


# -- faults -------------------------------------------------------------------


def test_fail_next_answers_the_status_and_applies_nothing(hub):
    hub.fail_next(2)
    first, second = record("u1"), record("u2")
    assert post_event(hub, first).status_code == 503
    response = post_event(hub, second)
    assert response.status_code == 503
    assert response.json() == {"code": 503, "message": "injected fault: 503 Service Unavailable"}
    assert hub.profiles() == {}
    assert hub.insert_id_counts == {}
    assert post_event(hub, first).status_code == 202
    assert hub.insert_id_counts == {first["$insert_id"]: 1}


def test_fail_next_429_with_retry_after(hub):
    hub.fail_next(1, 429, retry_after=7)
    hub.fail_next(1, 429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")
    assert post_event(hub, record()).headers["Retry-After"] == "7"
    response = post_event(hub, record())
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "Wed, 21 Oct 2026 07:28:00 GMT"
    assert "Retry-After" not in post_event(hub, record()).headers


def test_fail_next_with_a_custom_body(hub):
    hub.fail_next(1, 500, body="internal server error (chunk 2)")
    hub.fail_next(1, 500, body={"error": {"message": "boom"}})
    response = post_event(hub, record())
    assert response.text == "internal server error (chunk 2)"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert post_event(hub, record()).json() == {"error": {"message": "boom"}}


def test_delay_next_still_applies_after_the_client_gave_up(hub):
    hub.delay_next(1, 0.5)
    with pytest.raises(requests.Timeout):
        post_event(hub, record("slow", {"$set": {"a": 1}}), timeout=0.1)
    hub.wait_for(lambda h: h.properties("slow") == {"a": 1})
    hub.wait_for(lambda h: h.requests[0].status == 202)
    logged = hub.requests[0]
    assert logged.answered_at - logged.received_at >= 0.5


def test_latency_is_added_to_every_request(hub):
    hub.latency = 0.2
    assert post_event(hub, record()).status_code == 202
    logged = hub.requests[-1]
    assert logged.answered_at - logged.received_at >= 0.2


def test_drop_next_closes_the_connection_without_an_answer(hub):
    hub.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        post_event(hub, record("dropped"))
    assert hub.profile("dropped") is None
    assert hub.requests[0].status is None
    assert hub.requests[0].body  # it read the request before dropping
    assert post_event(hub, record("next")).status_code == 202


def test_faults_are_used_in_the_order_they_were_queued(hub):
    hub.fail_next(1, 500)
    hub.drop_next(1)
    hub.fail_next(1, 502)
    assert post_event(hub, record()).status_code == 500
    with pytest.raises(requests.ConnectionError):
        post_event(hub, record())
    assert post_event(hub, record()).status_code == 502
    assert post_event(hub, record()).status_code == 202


def test_faults_are_shared_by_concurrent_connections(hub):
    hub.fail_next(5, 503)
    statuses: list[int] = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(5):
                statuses.append(post_event(hub, record(), session=session).status_code)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses).count(503) == 5
    assert statuses.count(202) == 15
    assert len(hub.applied_insert_ids) == 15


def test_reject_records_fails_the_whole_request_naming_the_record(hub):
    hub.reject_records(lambda r: r["distinct_id"] == "bad")
    records = [record("good"), record("bad")]
    response = post_event(hub, records)
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "rejected by test: record 1 (distinct_id 'bad')"
    assert body["records"] == [
        {"index": 1, "distinct_id": "bad", "$insert_id": records[1]["$insert_id"]}
    ]
    assert hub.profile("good") is None
    assert post_event(hub, records[0]).status_code == 202


def test_reject_records_with_a_custom_status_and_error(hub):
    hub.reject_records(lambda r: "$sms" in json.dumps(r), status=422, error="invalid phone")
    response = post_event(hub, record("x", {"$append": {"$sms": "+1"}}))
    assert response.status_code == 422
    assert response.json()["message"].startswith("invalid phone: record 0")


def test_clear_faults_and_reset(hub):
    hub.fail_next(3)
    hub.reject_records(lambda r: True)
    hub.latency = 5
    hub.clear_faults()
    assert hub.latency == 0
    assert post_event(hub, record("u1")).status_code == 202
    hub.fail_next(1)
    hub.reset()
    assert hub.profiles() == {}
    assert hub.requests == []
    assert hub.insert_id_counts == {}
    assert post_event(hub, record("u2")).status_code == 202


# -- REST ---------------------------------------------------------------------


def test_patch_applies_operations_and_returns_the_profile(hub):
    operations = [
        {"$set": {"name": "Jane"}},
        {"$append": {"$email": "jane@example.com"}},
        {"$append": {"$androidpush": "t1", "$id_provider": "fcm"}},
    ]
    response = send(hub, "PATCH", "v1/user/42/", {"operations": operations})
    assert response.status_code == 200
    profile = response.json()
    assert profile == hub.profile("42")
    assert profile["properties"] == {"name": "Jane"}
    assert profile["$email"] == [
        {"value": "jane@example.com", "status": "active", "perma_status": "active"}
    ]
    assert profile["$androidpush"][0]["id_provider"] == "fcm"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"operations": None}, '"operations" must be a list'),
        ([], '"operations" must be a list'),
        ({"operations": [{"$push": {}}]}, "unknown operator '$push'"),
    ],
)
def test_patch_rejects_a_bad_body(hub, body, message):
    response = send(hub, "PATCH", "v1/user/42/", body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert hub.profile("42") is None


def test_post_upserts_with_channel_lists(hub):
    body = {
        "$email": ["user@example.com"],
        "$sms": ["+1234567890"],
        "$iospush": [{"value": "apns-1", "id_provider": "apns"}],
        "$slack": [{"email_id": "user@example.com", "access_token": "xoxb-..."}],
        "$timezone": "America/New_York",
        "$preferred_language": "en",
        "plan": "pro",
    }
    created = send(hub, "POST", "v1/user/user123/", body)
    assert created.status_code == 201
    profile = created.json()
    assert profile["properties"] == {
        "$timezone": "America/New_York",
        "$preferred_language": "en",
        "plan": "pro",
    }
    assert profile["$slack"] == [
        {
            "value": {"email_id": "user@example.com", "access_token": "xoxb-..."},
            "status": "active",
            "perma_status": "active",
        }
    ]
    assert profile["$iospush"][0]["id_provider"] == "apns"
    again = send(hub, "POST", "v1/user/user123/", {"$email": ["two@example.com"]})
    assert again.status_code == 200
    assert hub.channel_values("user123", "$email") == ["user@example.com", "two@example.com"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body must be a JSON object"),
        ({"$email": "a@example.com"}, "$email must be a list"),
        ({"$email": [1]}, "$email must be a non-empty string"),
        ({"$slack": ["U1"]}, "$slack must be a JSON object"),
    ],
)
def test_post_rejects_a_bad_body(hub, body, message):
    response = send(hub, "POST", "v1/user/u1/", body)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_get_and_delete_a_user(hub):
    assert post_event(hub, record("u1")).status_code == 202
    assert send(hub, "GET", "v1/user/u1/").json() == hub.profile("u1")
    deleted = send(hub, "DELETE", "v1/user/u1/")
    assert deleted.status_code == 204
    assert deleted.content == b""
    missing = send(hub, "GET", "v1/user/u1/")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": "user 'u1' not found"}
    assert send(hub, "DELETE", "v1/user/u1/").status_code == 404


def test_bulk_delete(hub):
    post_event(hub, [record("a"), record("b"), record("c")])
    response = send(hub, "DELETE", "v1/bulk/user/", {"distinct_ids": ["a", "c", "zz"]})
    assert response.status_code == 202
    assert response.json() == {"success": True}
    assert list(hub.profiles()) == ["b"]
    assert send(hub, "DELETE", "v1/bulk/user/", {"ids": ["b"]}).status_code == 400


def test_unknown_path_and_method(hub):
    response = send(hub, "GET", "v1/unknown/")
    assert response.status_code == 404
    assert response.json()["code"] == 404
    wrong_method = send(hub, "GET", "event/")
    assert wrong_method.status_code == 405
    assert "use POST" in wrong_method.json()["message"]


# -- deferred edits (applied when the store is next used) ----------------------


def without_timestamps(profiles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    skip = {"created_at", "updated_at"}
    return {i: {k: v for k, v in p.items() if k not in skip} for i, p in profiles.items()}


def test_event_edits_carry_the_time_of_their_request(hub, monkeypatch):
    times = iter(f"2030-01-01T00:00:0{n}+00:00" for n in range(1, 10))
    monkeypatch.setattr(profile_endpoints, "utc_now", lambda: next(times))
    post_event(hub, [record("a"), record("b", {"$set": {"plan": "free"}})])  # at :01
    post_event(hub, [record("b", {"$set": {"plan": "pro"}}), record("c")])  # at :02
    post_event(hub, record("d"))  # at :03, a single record (no text kept)
    profiles = hub.profiles()
    assert list(profiles) == ["a", "b", "c", "d"]
    assert [(p["created_at"][-11:-6], p["updated_at"][-11:-6]) for p in profiles.values()] == [
        ("00:01", "00:01"),
        ("00:01", "00:02"),
        ("00:02", "00:02"),
        ("00:03", "00:03"),
    ]
    assert profiles["b"]["properties"] == {"plan": "pro"}


def test_rest_calls_after_event_edits_see_them_first(hub):
    post_event(
        hub,
        [
            record(f"u{i}", {"$append": {"$email": f"{i}@ex.com"}}, {"$add": {"n": 1}})
            for i in range(5)
        ],
    )
    assert send(hub, "DELETE", "v1/user/u0/").status_code == 204
    patched = send(hub, "PATCH", "v1/user/u1/", {"operations": [{"$add": {"n": 1}}]})
    assert patched.json()["properties"] == {"n": 2}
    upserted = send(hub, "POST", "v1/user/u2/", {"$email": ["x@ex.com"]})
    assert upserted.status_code == 200  # the deferred edit made it
    assert [e["value"] for e in upserted.json()["$email"]] == ["2@ex.com", "x@ex.com"]
    send(hub, "DELETE", "v1/bulk/user/", {"distinct_ids": ["u3"]})
    assert send(hub, "GET", "v1/user/u4/").json()["properties"] == {"n": 1}
    post_event(hub, record("u0", {"$set": {"back": True}}))
    assert list(hub.profiles()) == ["u1", "u2", "u4", "u0"]
    assert hub.properties("u0") == {"back": True}


@pytest.mark.parametrize("indent", [None, 1], ids=["as-the-sdk-sends", "indented"])
def test_event_values_read_the_same_when_applied_later(hub, indent):
    # the SDK's format is parsed again from its text when applied; others are kept parsed
    operation = (
        '{"$set": {"dup": 1, "dup": 2, "float": 1.50, "exp": 1E3, "big": 123456789012345678901, '
        '"esc": "\\u00e9\\ud83d\\ude00\\n", "raw": "é😀", "null": null, "nested": [{}, []]}}'
    )
    records = [
        record("u1", "OPERATION", {"$append": {"$email": "é@ex.com"}}),
        record("u1", {"$add": {"float": 1}}),
    ]
    body = json.dumps(records, ensure_ascii=False, indent=indent)
    body = body.replace('"OPERATION"', operation)
    assert body.startswith("[{") is (indent is None)  # the SDK's format, or not
    assert post_event(hub, None, data=body.encode()).status_code == 202
    assert hub.properties("u1") == {**json.loads(operation)["$set"], "float": 2.5}
    assert hub.properties("u1")["esc"] == "é😀\n"
    assert hub.channel_values("u1", "$email") == ["é@ex.com"]


def test_concurrent_posts_and_reads_end_as_serial_posts_do(hub):
    writers, requests_each, records_each = 4, 8, 25

    def batch(writer: int, n: int) -> list[dict[str, Any]]:
        return [
            record(
                f"w{writer}-{i % 7}",
                {"$set": {"last": f"{n}.{i}"}},
                {"$append": {"$email": f"{n}.{i}@ex.com", "tags": i}},
                {"$remove": {"$email": f"{n - 1}.{i}@ex.com"}},
            )
            for i in range(records_each)
        ] + [record("shared", {"$add": {"hits": 1}}, {"$append": {"$sms": f"+1555{writer}"}})]

    batches = {w: [batch(w, n) for n in range(requests_each)] for w in range(writers)}
    reads: list[list[int]] = [[], []]  # each reader's profile counts
    statuses: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        with requests.Session() as session:
            for body in batches[writer]:
                statuses.append(post_event(hub, body, session=session).status_code)

    def read(counts: list[int]) -> None:
        try:
            while not stop.is_set():
                counts.append(len(hub.profiles()))
                hub.channel_values("shared", "$sms")
                hub.page_state()
        except BaseException as error:  # a thread's own exception would go unseen
            errors.append(error)

    readers = [threading.Thread(target=read, args=(counts,)) for counts in reads]
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in readers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors
    assert statuses == [202] * writers * requests_each
    assert all(reads)
    assert all(counts == sorted(counts) for counts in reads)  # profiles only ever appear

    serial = ProfileStore()  # each writer's profiles are its own: their order is its own
    for writer in range(writers):
        for body in batches[writer]:
            for r in body:
                serial.apply(r["distinct_id"], r["$user_operations"])
    final = without_timestamps(hub.profiles())
    expected = without_timestamps(serial.all())
    assert final.pop("shared")["properties"] == {"hits": writers * requests_each}
    assert sorted(hub.channel_values("shared", "$sms")) == [f"+1555{w}" for w in range(writers)]
    expected.pop("shared")
    assert final == expected
    for w in range(writers):
        assert [i for i in final if i[1] == str(w)] == [i for i in expected if i[1] == str(w)]
    assert len(hub.applied_insert_ids) == writers * requests_each * (records_each + 1)


# -- request log and wait_for ---------------------------------------------------


def test_request_log(hub):
    records = [record("a"), record("b")]
    post_event(hub, records)
    send(hub, "GET", "v1/user/a/?fields=all")
    logged = hub.requests
    assert [(r.method, r.path, r.status) for r in logged] == [
        ("POST", "/event/", 202),
        ("GET", "/v1/user/a/?fields=all", 200),
    ]
    event = logged[0]
    assert isinstance(event, RecordedRequest)
    assert next(iter(event.headers)) == "Host"
    assert event.header("content-type") == signing.CONTENT_TYPE
    assert event.body == encode(records)
    assert event.json() == records
    assert event.record_count == 2
    assert event.received_at <= event.answered_at
    assert logged[1].json() is None
    assert logged[1].record_count is None


def test_keep_bodies_forgets_older_bodies_but_not_their_requests():
    with HubEmulator(KEY, SECRET, keep_bodies=2) as hub:
        bodies = [encode([record(f"u{i}")]) for i in range(4)]
        for body in bodies:
            assert post_event(hub, None, data=body).status_code == 202
        logged = hub.requests
        assert [r.body for r in logged] == [b"", b"", bodies[2], bodies[3]]
        assert [r.record_count for r in logged] == [1, 1, 1, 1]
        assert len(hub.profiles()) == 4


def test_the_cli_sets_max_clock_skew():
    assert build_hub(parse_args(["--max-clock-skew", "90"])).max_clock_skew == 90
    assert build_hub(parse_args([])).max_clock_skew is None


def test_the_cli_keeps_the_bodies_its_page_shows():
    assert build_hub(parse_args([])).keep_bodies == page.REQUEST_LIMIT
    assert HubEmulator().keep_bodies is None


def test_unauthenticated_requests_are_logged_too(hub):
    send(hub, "GET", "v1/user/a/", secret="wrong")
    assert [r.status for r in hub.requests] == [401]


def test_wait_for_returns_as_soon_as_true_and_explains_a_timeout(hub):
    post_event(hub, record("u1"))
    hub.wait_for(lambda h: h.profile("u1") is not None, timeout=0)

    def never(h: HubEmulator) -> bool:
        return False

    with pytest.raises(AssertionError, match=r"wait_for\(.*never\) still false after 0.05s") as e:
        hub.wait_for(never, timeout=0.05)
    assert "received 1 request " in str(e.value)
    assert "holds 1 profile," in str(e.value)
    assert "has 0 queued faults" in str(e.value)


# -- standalone CLI -------------------------------------------------------------


def _read_line(stream: Any, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"the emulator printed nothing within {timeout}s")


def test_cli_serves_until_sigterm():
    env = {**os.environ, "SUPRSEND_WORKSPACE_KEY": "cli_key", "SUPRSEND_WORKSPACE_SECRET": "cli_s"}
    process = subprocess.Popen(
        [sys.executable, "-m", "django_suprsend.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = _read_line(process.stdout, timeout=30)
        assert line.startswith("SuprSend hub emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        date = signing.http_date()
        sig = signing.signature("cli_s", "GET", b"", date=date, request_uri="/v1/user/u1/")
        response = requests.get(
            url + "v1/user/u1/",
            headers={
                "Content-Type": signing.CONTENT_TYPE,
                "Date": date,
                "Authorization": f"cli_key:{sig}",
            },
            timeout=10,
        )
        assert response.status_code == 404
        assert response.json()["message"] == "user 'u1' not found"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
