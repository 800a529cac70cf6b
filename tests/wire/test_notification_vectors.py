"""notifications.json (workflow and event areas) and events_and_workflows.json, by our client.

Each case's ``sdk_calls`` snippet runs against our client through
:mod:`tests.notification_shim`, which sends to a recording server on 127.0.0.1
answering as the capture's did; requests must match the capture byte for byte
(method, path, SDK headers in wire order, body, so the signature too), chunks
must match the capture's chunks, and each record's outcome is what
``docs/notifications_wire.rst`` says of that answer (where it differs from the
SDK's, the case says so below).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire.notification_bulk import (
    FAILED_PERMANENT,
    FAILED_TRANSIENT,
    SENT,
    NotificationResponse,
)
from django_suprsend.wire.notifications import WORKFLOW_ALLOWANCE
from tests.capture import Answer, Recorded, RecordingServer, sdk_headers, vector_client
from tests.local import closed_port_url
from tests.notification_shim import namespace
from tests.vectors import cases

AREAS = ("workflows", "bulk_workflows", "legacy_workflows", "events", "bulk_events")
NOTIFICATION_CASES = [
    case
    for area in AREAS
    for case in cases("notifications", area=area)
    if case.values[0] is not None or area == AREAS[0]
]


# -- the server's answers -----------------------------------------------------------


def per_record(
    sent: Recorded, n: int, *, all_success: bool = False, drop_last: bool = False
) -> Answer:
    """One result per element, an error where the workflow (or event) is 'missing-workflow'."""
    results: list[dict[str, Any]] = []
    for index, record in enumerate(json.loads(sent.body), start=1):
        name = record.get("workflow", record.get("event"))
        if name == "missing-workflow" and not all_success:
            error = {"message": "workflow not found", "type": "NotFound"}
            results.append({"status": "error", "status_code": 404, "error": error})
        else:
            results.append({"status": "success", "message_id": f"m{n}-{index}", "status_code": 202})
    status = 207 if any(r["status"] == "error" for r in results) else 202
    if drop_last:
        results.pop()
    return status, "application/json", json.dumps({"records": results})


def legacy_207(sent: Recorded, n: int) -> Answer:
    results = [
        {"status": "success", "message_id": f"m{n}-{index}", "status_code": 202}
        for index in range(1, len(json.loads(sent.body)) + 1)
    ]
    results[1] = {"status": "error", "status_code": 400, "error": {"message": "bad user"}}
    return 207, "application/json", json.dumps({"records": results})


_FIXED = re.compile(r"(\d{3}) (\S+) '?(.*?)'?")


def answer_for(case: dict[str, Any]) -> Callable[[Recorded, int], Answer]:
    behaviour = case.get("server_behaviour") or "202 application/json " + (
        '{"success": true, "message_id": "msg-1"}'
    )
    if "last record is dropped" in behaviour:
        return lambda sent, n: per_record(sent, n, drop_last=True)
    if behaviour.startswith(("array POST -> one record", "as bulk_wf_3_mixed", "per-record")):
        return per_record
    if "all records success" in behaviour or behaviour.startswith("array POST -> 202"):
        return lambda sent, n: per_record(sent, n, all_success=True)
    if "ignored by the legacy SDK path" in behaviour:
        return legacy_207
    if behaviour.startswith("no server"):  # the snippet uses dead_client: nothing arrives
        return per_record
    match = _FIXED.fullmatch(behaviour)
    assert match is not None, behaviour
    fixed = (int(match[1]), match[2], match[3])
    return lambda sent, n: fixed


def serve(server: RecordingServer, answer: Callable[[Recorded, int], Answer]) -> None:
    # The server records a request before it asks for the answer, so the n-th is there.
    server.answer = lambda n: answer(server.requests[n - 1], n)


# -- running a snippet --------------------------------------------------------------


def run(case: dict[str, Any], server: RecordingServer, tmp: Path) -> dict[str, Any]:
    clients = {
        "hmac": vector_client("hmac", server.url),
        "bearer": vector_client("bearer", server.url),
        "dead": vector_client("hmac_dead", closed_port_url()),
    }
    names = namespace(clients, tmp)
    try:
        exec(case["sdk_calls"], names)  # noqa: S102 - the snippet, as captured
    finally:
        for client in clients.values():
            client.close()
    return names


def assert_same_request(sent: Recorded, captured: dict[str, Any]) -> None:
    assert (sent.method, sent.path) == (captured["method"], captured["path"])
    assert hashlib.md5(sent.body).hexdigest() == captured["body_md5"]
    if captured.get("body_text") is not None:
        assert sent.body == captured["body_text"].encode("utf-8")
    if "headers" in captured:
        assert sdk_headers(sent.headers) == sdk_headers(captured["headers"])


def chunk_summary(sent: Recorded, captured: dict[str, Any]) -> dict[str, Any]:
    records = json.loads(sent.body)
    label = captured["label_key"]
    extra = WORKFLOW_ALLOWANCE if "trigger/" in sent.path else 0
    return {
        "method": sent.method,
        "path": sent.path,
        "records": len(records),
        "body_length_bytes": len(sent.body),
        "sum_of_sdk_apparent_sizes": sum(
            len(json.dumps(r, ensure_ascii=False).encode()) + extra for r in records
        ),
        "label_key": label,
        "first_label": records[0][label],
        "last_label": records[-1][label],
        "body_md5": hashlib.md5(sent.body).hexdigest(),
    }


# -- what each record's outcome must be ---------------------------------------------

Expected = tuple[str, int | None, str | None]  # status, http_status, error (or message_id)

#: Where the SDK raised out of the call or mis-counted, what we report instead.
DIFFERENT_FROM_SDK: dict[str, list[Expected]] = {
    # 202 without 'records' (the SDK: KeyError): an unambiguous 202 accepted them all.
    "bulk_wf_3_response_without_records": [(SENT, 202, None)] * 3,
    # A 2xx that is not JSON (the SDK: TypeError): outcome unknown, to be sent again.
    "bulk_wf_3_non_json_2xx": [(FAILED_TRANSIENT, 202, None)] * 3,
    # Two results for three records (the SDK counts 2 in all): the third is unknown.
    "bulk_wf_3_short_records_207": [
        (SENT, 202, "m1-1"),
        (FAILED_PERMANENT, 404, "workflow not found"),
        (FAILED_TRANSIENT, 207, None),
    ],
    # 500 without 'records' (the SDK: KeyError): retries ran out, to be sent again.
    "bulk_events_3_server_500_no_records_key": [(FAILED_TRANSIENT, 500, "internal error")] * 3,
    # The legacy SDK ignores per-record results; we report the refused one.
    "legacy_bulk_workflows_3": [
        (SENT, 202, "m1-1"),
        (FAILED_PERMANENT, 400, "bad user"),
        (SENT, 202, "m1-3"),
    ],
    # Records refused before sending (invalid, too big) and the one sent, in the order given.
    "bulk_wf_invalid_and_oversize_records": [
        (FAILED_PERMANENT, None, None),
        (FAILED_PERMANENT, None, None),
        (SENT, 202, "m1-1"),
    ],
    # No answer (the SDK: code 500): to be sent again.
    "bulk_wf_3_connection_error": [(FAILED_TRANSIENT, None, None)] * 3,
    # A non-JSON 202 to one event (the SDK: JSONDecodeError): outcome unknown.
    "event_non_json_response_raises": [(FAILED_TRANSIENT, 202, None)],
}


def expected_single(result: dict[str, Any], legacy: bool) -> list[Expected]:
    if result["success"]:
        return [(SENT, result["status_code"], "msg-1" if legacy else result["message"])]
    if result["raw_response"] is None:  # no answer: a connection error
        return [(FAILED_TRANSIENT, None, None)]
    return [(FAILED_PERMANENT, result["status_code"], result["message"])]


def expected_bulk(server: RecordingServer) -> list[Expected]:
    """Each record as the answer to its request says: per-record results by position, or
    the whole request's status (5xx: to be sent again)."""
    out: list[Expected] = []
    for request in server.requests:
        status, _, text = server.answer_log[id(request)]  # type: ignore[attr-defined]
        if status >= 500:
            out += [(FAILED_TRANSIENT, status, text)] * len(json.loads(request.body))
            continue
        for record in json.loads(text)["records"]:
            if record["status"] == "success":
                out.append((SENT, record["status_code"], record["message_id"]))
            else:
                out.append((FAILED_PERMANENT, record["status_code"], record["error"]["message"]))
    return out


def assert_same_hub_failures(response: NotificationResponse, case: dict[str, Any]) -> None:
    """The records the hub failed are those the SDK lists, with the same error and code."""
    sdk = [(f["error"], f["code"]) for f in case["bulk_response"]["failed_records"]]
    ours = [(r.error, r.http_status) for r in response if r.status != SENT]
    assert ours == sdk
    assert (response.status, response.total, response.sent) == tuple(
        case["bulk_response"][k] for k in ("status", "total", "success")
    )


def assert_results(response: NotificationResponse, expected: list[Expected]) -> None:
    got = [(r.status, r.http_status) for r in response]
    assert got == [(status, code) for status, code, _ in expected]
    for result, (status, _, text) in zip(response, expected, strict=True):
        if text is None:
            continue
        if status == SENT:
            assert result.message_id == text
        else:
            assert result.error == text


# -- the tests -----------------------------------------------------------------------

#: The field each refused snippet's error names (and a text it holds).
REFUSED: dict[str, tuple[str, str]] = {
    "wf_trigger_attachment_missing_raises": ("$attachments", "does-not-exist.pdf"),
    "wf_trigger_missing_workflow": ("workflow", "required"),
    "wf_trigger_idempotency_key_too_long": ("$idempotency_key", "256 characters"),
    "wf_trigger_unknown_top_level_key": ("brand_id", "not a workflow trigger key"),
    "wf_trigger_bad_inline_recipient": ("recipients[0].$androidpush[0].provider", "'apns'"),
    "wf_trigger_body_not_dict": ("body", "must be a dict"),
    "wf_trigger_body_too_big": ("workflow", "819269 bytes"),
    "legacy_trigger_workflow_missing_template": ("template", "required"),
    "event_reserved_prefix_rejected": ("event", "reserves"),
    "event_idempotency_key_too_long": ("$idempotency_key", "256 characters"),
    "event_missing_distinct_id": ("distinct_id", "missing"),
    "event_too_big": ("event", "819451 bytes"),
}


@pytest.mark.parametrize("case", NOTIFICATION_CASES)
def test_notification_case(case: dict[str, Any], recording_server: RecordingServer, tmp_path):
    if case is None:
        pytest.skip("no vectors")
    run_case(case, recording_server, tmp_path)


@pytest.mark.parametrize("case", cases("events_and_workflows"))
def test_events_and_workflows_case(case, recording_server: RecordingServer, tmp_path):
    run_case(case, recording_server, tmp_path)


def run_case(case: dict[str, Any], server: RecordingServer, tmp_path: Path) -> None:
    answer = answer_for(case)
    server.answer_log = {}  # type: ignore[attr-defined]

    def logged(sent: Recorded, n: int) -> Answer:
        reply = answer(sent, n)
        server.answer_log[id(sent)] = reply  # type: ignore[attr-defined]
        return reply

    serve(server, logged)
    exception = case.get("sdk_exception")
    if exception and exception["type"] in REFUSED_TYPES:
        with pytest.raises(SuprsendValidationError) as refused:
            run(case, server, tmp_path)
        assert server.requests == []
        field, text = REFUSED[case["name"]]
        assert refused.value.field == field
        assert text in str(refused.value)
        return
    names = run(case, server, tmp_path)
    response: NotificationResponse = names["result"]
    sent = server.requests
    captured = case.get("requests") or ([case["request"]] if case.get("request") else [])
    assert len(sent) == case.get("http_requests", len(captured))
    for one, theirs in zip(sent, captured, strict=True):
        assert_same_request(one, theirs)
    if "chunks" in case:
        assert [chunk_summary(s, c) for s, c in zip(sent, case["chunks"], strict=True)] == case[
            "chunks"
        ]
    if case["name"] in DIFFERENT_FROM_SDK:
        expected = DIFFERENT_FROM_SDK[case["name"]]
    elif "bulk_response" in case:
        expected = expected_bulk(server)
        assert_same_hub_failures(response, case)
    else:
        expected = expected_single(case["sdk_result"], "legacy" in case.get("area", "legacy"))
    assert_results(response, expected)


REFUSED_TYPES = ("SuprsendValidationError", "InputValueError", "FileNotFoundError")
