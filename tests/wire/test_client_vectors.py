"""user_edit_ops.json (request cases) and bulk_users.json, reproduced by our client.

Each case is sent to a recording server on 127.0.0.1 that answers as the
capture's did; the client carries the capture's credentials, ``Date``,
``$time``, ``$insert_id`` sequence and user agents, and does not retry (the
SDK never does), so requests must match byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

import pytest

from django_suprsend.wire.bulk import BulkResponse
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.operations import ProfileEdit
from django_suprsend.wire.records import dumps
from tests.capture import Recorded, RecordingServer, sdk_headers, user_of, vector_client
from tests.local import closed_port_url
from tests.vectors import FIXED_TIME_MS, cases, fixed_insert_id


def assert_same_request(sent: Recorded, captured: dict) -> None:
    assert (sent.method, sent.path) == (captured["method"], captured["path"])
    assert sent.body == captured["body_text"].encode("utf-8")
    assert sdk_headers(sent.headers) == sdk_headers(captured["headers"])


def record(client: SuprsendClient, edit_or_id, operations=None, *, n: int = 1) -> dict:
    return client.build_record(
        edit_or_id, operations, insert_id=fixed_insert_id(n), time_ms=FIXED_TIME_MS
    )


# -- user_edit_ops.json -------------------------------------------------------------


def big_edit(distinct_id: str) -> ProfileEdit:
    return ProfileEdit(distinct_id).set("blob", "x" * 11000)


@pytest.mark.parametrize("case", cases("user_edit_ops", kind="request"))
def test_user_edit_request(case, recording_server: RecordingServer):
    captured = case.get("request")
    with vector_client(case["client"], recording_server.url) as client:
        if captured is None:  # oversize: never goes on the wire
            distinct_id = re.search(r'get_(?:edit_)?instance\("([^"]+)"', case["sdk_calls"])[1]
            response = client.send_records([record(client, big_edit(distinct_id))])
            assert recording_server.requests == []
            assert_oversize_failure(response, case["sdk_result"] or case["sdk_exception"])
            return
        body = captured["body_json"]
        if captured["path"].endswith("/event/"):
            ops = case.get("expected_operations") or body["$user_operations"]
            client.request("POST", "event/", record(client, body["distinct_id"], ops))
        else:
            distinct_id, tenant_id = user_of(client, captured["path"])
            ops = case.get("expected_operations") or body["operations"]
            client.edit_user(distinct_id, ops, tenant_id=tenant_id)
    (sent,) = recording_server.requests
    assert_same_request(sent, captured)


def assert_oversize_failure(response: BulkResponse, sdk_outcome: dict) -> None:
    size = re.search(r"(\d+) Bytes", sdk_outcome["message"])[1]
    assert (response.status, response.total, response.failure) == ("fail", 1, 1)
    (failed,) = response.failed_records
    assert failed["code"] == 500
    assert f"{size} bytes" in failed["error"]
    assert "10240" in failed["error"]
    assert response.retryable == []


# -- bulk_users.json -----------------------------------------------------------------


def small_users(count: int) -> list[ProfileEdit]:
    return [
        ProfileEdit(f"bulk-{i:04d}").set("n", i).add_email(f"bulk-{i:04d}@example.com")
        for i in range(count)
    ]


def five_users() -> list[ProfileEdit]:
    return [
        ProfileEdit("user-101")
        .set({"first_name": "Ada", "last_name": "Lovelace"})
        .add_email("ada@example.com"),
        ProfileEdit("user-102")
        .set({"first_name": "José", "last_name": "Núñez"})
        .add_sms("+15555550102")
        .set_timezone("America/Mexico_City"),
        ProfileEdit("user 103/ä")
        .add_email("u3@example.com")
        .add_androidpush("fcm-token-103", provider="fcm"),
        ProfileEdit("user-104", tenant_id="acme")
        .set("name", "田中 太郎")
        .set_preferred_language("ja"),
        ProfileEdit("user-105").remove_email("old105@example.com").unset(["nickname"]),
    ]


def legacy_five() -> list[ProfileEdit]:
    people = [
        ("Ada", "ada@example.com"),
        ("José", "jose@example.com"),
        ("Grace", "grace@example.com"),
        ("田中", "tanaka@example.com"),
        ("Linus", "linus@example.com"),
    ]
    return [
        ProfileEdit(f"legacy-{i + 1}").set("name", name).add_email(email)
        for i, (name, email) in enumerate(people)
    ]


def oversize_plus_small() -> list[ProfileEdit]:
    small = [ProfileEdit(f"small-{i}").add_email(f"small-{i}@example.com") for i in range(4)]
    return [big_edit("big-user"), *small]


def size_boundary() -> list[ProfileEdit]:
    return [
        ProfileEdit("edge-user").set("blob", "x" * 9954),  # exactly 10240 bytes
        ProfileEdit("edge-user").set("blob", "x" * 9955),  # 10241 bytes
    ]


def with_warnings() -> list[ProfileEdit]:
    # The SDK drops set("nickname"), set(123) and set({"  ": ...}) with warnings;
    # ProfileEdit refuses them (SuprsendValidationError), so only add_email remains.
    return [ProfileEdit("warn-user").add_email("warn@example.com")]


def dead_users() -> list[ProfileEdit]:
    return [ProfileEdit(f"dead-{i}").add_email(f"dead-{i}@example.com") for i in range(3)]


BULK_EDITS: dict[str, Callable[[], list[ProfileEdit]]] = {
    "bulk_5_users_users_api": five_users,
    "bulk_5_users_legacy_api": legacy_five,
    "bulk_1000_small_all_202": lambda: small_users(1000),
    "bulk_1000_small_second_chunk_500": lambda: small_users(1000),
    "bulk_1000_small_all_500": lambda: small_users(1000),
    "bulk_1000_small_legacy_api_all_202": lambda: small_users(1000),
    "bulk_400_exact": lambda: small_users(400),
    "bulk_oversize_user_plus_small": oversize_plus_small,
    "bulk_oversize_only": lambda: [big_edit("big-user")],
    "bulk_size_boundary_10240_vs_10241": size_boundary,
    "bulk_with_warnings": with_warnings,
    "bulk_empty": list,
    "bulk_connection_error": dead_users,
}


def chunk_summary(sent: Recorded) -> dict:
    records = json.loads(sent.body)
    return {
        "method": sent.method,
        "path": sent.path,
        "records": len(records),
        "body_length_bytes": len(sent.body),
        "sum_of_record_apparent_sizes": sum(len(dumps(r).encode()) for r in records),
        "first_distinct_id": records[0]["distinct_id"],
        "last_distinct_id": records[-1]["distinct_id"],
        "body_md5": hashlib.md5(sent.body).hexdigest(),
    }


@pytest.mark.parametrize("case", cases("bulk_users"))
def test_bulk_case(case, recording_server: RecordingServer):
    recording_server.behave(case["server_behaviour"])
    dead = case["client"] == "hmac_dead"
    url = closed_port_url() if dead else recording_server.url
    with vector_client(case["client"], url) as client:
        edits = BULK_EDITS[case["name"]]()
        records = [record(client, edit, n=i + 1) for i, edit in enumerate(edits)]
        response = client.send_records(records)
    sent = recording_server.requests
    assert len(sent) == case["http_requests"]
    assert [chunk_summary(s) for s in sent] == case["chunks"]
    for one, captured in zip(sent, case.get("requests") or [], strict=False):
        assert_same_request(one, captured)
    if "first_request_headers" in case:
        assert sdk_headers(sent[0].headers) == sdk_headers(case["first_request_headers"])
    assert_same_outcome(response, case["bulk_response"], compare_errors=not dead)


def assert_same_outcome(response: BulkResponse, expected: dict, *, compare_errors: bool) -> None:
    assert (response.status, response.total, response.success, response.failure) == (
        expected["status"],
        expected["total"],
        expected["success"],
        expected["failure"],
    )
    failed = response.failed_records
    assert len(failed) == expected["failed_records_count"]
    assert sorted({f["code"] for f in failed}) == expected["failed_records_codes"]
    assert (sorted(failed[0]) if failed else []) == expected["failed_record_keys"]
    ids = [f["record"]["distinct_id"] for f in failed]
    assert ([ids[0], ids[-1]] if ids else None) == expected["failed_records_distinct_id_range"]
    for ours, theirs in zip(failed, expected["failed_records_first"], strict=False):
        assert_same_failure(ours, theirs, compare_errors=compare_errors)
    # The SDK turns dropped calls into warnings; ProfileEdit refuses them instead.
    assert response.warnings == []
    warnings = f"warnings: {len(expected['warnings'])}>"
    assert str(response) == expected["str"].replace(warnings, "warnings: 0>")
    # Without retries, what failed on the wire (5xx, connection) may succeed later;
    # a record too big to send never will.
    on_the_wire = [f for f in failed if not f["error"].startswith("record too big")]
    assert [id(f) for f in response.retryable] == [id(f) for f in on_the_wire]


def assert_same_failure(ours: dict, theirs: dict, *, compare_errors: bool) -> None:
    assert ours["code"] == theirs["code"]
    if "$insert_id" in theirs["record"]:  # it went on the wire: the same record, the hub's text
        assert ours["record"] == theirs["record"]
        if compare_errors:
            assert ours["error"] == theirs["error"]
        return
    # Never sent: the SDK keeps {distinct_id, $user_operations, warnings}; we keep the record.
    for key in ("distinct_id", "$user_operations"):
        assert ours["record"][key] == theirs["record"][key]
    size = re.search(r"(\d+) Bytes", theirs["error"])[1]
    assert f"{size} bytes" in ours["error"]
