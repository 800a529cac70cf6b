"""Every case of user_edit_ops.json and bulk_users.json, reproduced with ProfileEdit.

Each captured SDK snippet runs against ``tests/sdk_shim.py``; what it would
send must match the capture byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire.records import MAX_RECORD_BYTES, check_record_size, dumps, record_size
from tests.sdk_shim import Recorder, ShimClient, namespace
from tests.vectors import CREDENTIALS, cases, load


def run(case: dict) -> tuple[Recorder, dict[str, Any]]:
    recorder = Recorder()
    names = namespace(recorder)
    exec(case["sdk_calls"], names)  # noqa: S102 (the snippets are the captured SDK calls)
    return recorder, names


def sdk_message_count(case: dict) -> int:
    """How many calls the SDK dropped with an error or warning."""
    if "sdk_errors" in case:
        return len(case["sdk_errors"]) + len(case["sdk_warnings"])
    warnings = case.get("bulk_response", {}).get("warnings", [])
    return sum(len(warning.split("\n")) for warning in warnings)


def sdk_size(message: str) -> str:
    """The size in an SDK 'size too big' message, as our messages write it."""
    size = int(re.search(r"(\d+) Bytes", message).group(1))
    return f"{size:,} bytes"


@pytest.mark.parametrize("case", cases("user_edit_ops"))
def test_user_edit_case(case: dict) -> None:
    request = case.get("request")
    if not request:  # the SDK refused an oversize edit before sending anything
        recorder = Recorder()
        sdk_message = (case.get("sdk_exception") or case["sdk_result"])["message"]
        with pytest.raises(SuprsendValidationError, match=sdk_size(sdk_message)):
            exec(case["sdk_calls"], namespace(recorder))  # noqa: S102
        assert recorder.sent == []
        if case.get("expected_operations") is not None:
            assert recorder.edits[0].edit.operations == case["expected_operations"]
        return

    recorder, _ = run(case)
    assert len(recorder.errors) == sdk_message_count(case)
    if case.get("expected_operations") is not None:
        assert [shim.edit.operations for shim in recorder.edits] == [case["expected_operations"]]
    if case.get("expected_operation_json_text") is not None:
        [operation] = recorder.edits[0].edit.operations
        assert dumps(operation) == case["expected_operation_json_text"]

    [sent] = recorder.sent
    assert (sent.method, sent.path) == (request["method"], request["path"])
    assert sent.body == request["body_json"]
    assert sent.text.encode("utf-8") == request["body_text"].encode("utf-8")


def test_dropped_calls_raise_naming_field_and_value() -> None:
    [case] = [c for c in load("user_edit_ops")["cases"] if c["name"] == "op_invalid_calls_dropped"]
    recorder, _ = run(case)
    assert [(error.field, repr(error.value)) for error in recorder.errors] == [
        ("nickname", "<missing>"),
        ("$set", "123"),
        ("$set", "'   '"),
    ]


@pytest.mark.parametrize("case", cases("bulk_users"))
def test_bulk_case(case: dict) -> None:
    recorder, names = run(case)
    result, response = names["result"], case["bulk_response"]
    assert len(recorder.errors) == sdk_message_count(case)
    assert result.total == response["total"]

    # Records the SDK refused as oversize carry no event keys in failed_records.
    refused = [f for f in response["failed_records_first"] if "$schema" not in f["record"]]
    assert len(result.oversize) == len(refused)
    for (record, error), failed in zip(result.oversize, refused, strict=True):
        assert record["distinct_id"] == failed["record"]["distinct_id"]
        assert record["$user_operations"] == failed["record"]["$user_operations"]
        assert sdk_size(failed["error"]) in str(error)

    # Records the SDK did try to send (then failed by the server or the
    # connection) are the very records we would send.
    sent_records = {r["$insert_id"]: r for sent in recorder.sent for r in sent.body}
    for failed in response["failed_records_first"]:
        if "$schema" in failed["record"]:
            assert sent_records[failed["record"]["$insert_id"]] == failed["record"]

    if case["client"] == "hmac_dead":  # the capture server saw nothing
        assert [r["distinct_id"] for r in sent_records.values()] == ["dead-0", "dead-1", "dead-2"]
        return
    assert len(recorder.sent) == len(case["chunks"]) == case["http_requests"]
    for sent, chunk in zip(recorder.sent, case["chunks"], strict=True):
        body = sent.text.encode("utf-8")
        assert (sent.method, sent.path) == (chunk["method"], chunk["path"])
        assert len(sent.body) == chunk["records"]
        assert sent.body[0]["distinct_id"] == chunk["first_distinct_id"]
        assert sent.body[-1]["distinct_id"] == chunk["last_distinct_id"]
        assert sum(record_size(r) for r in sent.body) == chunk["sum_of_record_apparent_sizes"]
        assert len(body) == chunk["body_length_bytes"]
        assert hashlib.md5(body).hexdigest() == chunk["body_md5"]
        assert sent.text == dumps(sent.body)
    for sent, request in zip(recorder.sent, case.get("requests", []), strict=False):
        assert sent.text.encode("utf-8") == request["body_text"].encode("utf-8")


def test_size_boundary_10240_vs_10241() -> None:
    client = ShimClient(Recorder(), CREDENTIALS["workspace_key"])
    ok = client.users.get_edit_instance("edge-user").set("blob", "x" * 9954)
    too_big = client.users.get_edit_instance("edge-user").set("blob", "x" * 9955)
    assert check_record_size(ok.record()[0]) == MAX_RECORD_BYTES
    with pytest.raises(SuprsendValidationError, match="10,241 bytes, over SuprSend's 10,240"):
        check_record_size(too_big.record()[0])
