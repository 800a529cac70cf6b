"""signatures.json: signing parts, and the same requests sent by our client."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from django_suprsend.wire import signing
from django_suprsend.wire.client import SuprsendClient
from tests.capture import RecordingServer, sdk_headers, user_of, vector_client
from tests.vectors import cases


def select(predicate):
    """The signature cases the predicate accepts (or the 'no vectors' skip)."""
    return [p for p in cases("signatures") if p.values[0] is None or predicate(p.values[0])]


HMAC_CASES = select(lambda case: "secret" in case["inputs"])
REQUEST_CASES = select(lambda case: case.get("request") is not None)


@pytest.mark.parametrize("case", HMAC_CASES)
def test_signature_parts(case):
    given, expected = case["inputs"], case["expected"]
    body = given["body_text"].encode("utf-8")
    md5 = signing.content_md5(given["method"], body)
    assert md5 == expected["content_md5"]
    assert (
        signing.string_to_sign(
            given["method"], md5, given["content_type"], given["date"], given["request_uri"]
        )
        == expected["string_to_sign"]
    )
    sig = signing.signature(
        given["secret"],
        given["method"],
        body,
        date=given["date"],
        request_uri=given["request_uri"],
        content_type=given["content_type"],
    )
    assert sig == expected["signature"]
    assert f"{given['workspace_key']}:{sig}" == expected["authorization_header"]


def replay(client: SuprsendClient, method: str, path: str, body: object) -> None:
    """Make the captured call through the client's public API."""
    distinct_id, tenant_id = user_of(client, path)
    if method == "GET":
        client.get_user(distinct_id)
    elif method == "DELETE":
        client.delete_user(distinct_id)
    elif method == "PATCH" and isinstance(body, dict) and "operations" in body:
        client.edit_user(distinct_id, body["operations"], tenant_id=tenant_id)
    else:
        client.request(method, path.removeprefix(urlsplit(client.base_url).path), body)


@pytest.mark.parametrize("case", REQUEST_CASES)
def test_request_is_reproduced(case, recording_server: RecordingServer):
    captured = case["request"]
    with vector_client(case["client"], recording_server.url) as client:
        replay(client, captured["method"], captured["path"], captured["body_json"])
    (sent,) = recording_server.requests
    assert (sent.method, sent.path) == (captured["method"], captured["path"])
    assert sent.header("Authorization") == case["expected"]["authorization_header"]
    assert sent.body == captured["body_text"].encode("utf-8")
    assert sdk_headers(sent.headers) == sdk_headers(captured["headers"])
    if case["client"] == "bearer":
        assert sent.header("Date") is None
