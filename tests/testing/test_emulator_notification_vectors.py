"""The SDK's captured notification requests, replayed byte for byte against the emulator.

Every workflow, bulk workflow, legacy workflow, event and bulk event request
that ``suprsend-py-sdk`` 0.20.0 sent (``vectors/notifications.json`` and
``events_and_workflows.json``) goes to the emulator with its captured headers,
signature included, and must be accepted with the outcome the capture's answer
gave the SDK; what the SDK refused to send must be refused by the emulator too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_suprsend.testing import HubEmulator
from tests import vectors
from tests.emulator_http import encode, post, replay

AREAS = ("workflows", "bulk_workflows", "legacy_workflows", "events", "bulk_events")
WS_KEY = vectors.CREDENTIALS["workspace_key"]
# Answers of the capture server that no hub gives for a valid request (a 503, a 500 without
# records, a text 2xx, a 207 missing a record): the emulator must accept those requests.
NOT_HUB_ANSWERS = {
    "bulk_wf_3_response_without_records",
    "bulk_wf_3_non_json_2xx",
    "bulk_wf_3_server_503_text",
    "bulk_wf_3_short_records_207",
    "bulk_events_3_server_500_no_records_key",
    "event_non_json_response_raises",
}
# The capture server's stand-in for a hub that knows no such workflow, reproduced with a rule.
MISSING = "missing-workflow"


def notification_cases() -> list[Any]:
    sent = [
        *[c for c in vectors.cases("notifications") if _sent(c)],
        *vectors.cases("events_and_workflows"),
    ]
    return sent


def _sent(param: Any) -> bool:
    case = param.values[0]
    if case is None:  # the vectors are missing: the skipped param stays
        return True
    return case["area"] in AREAS and bool(case.get("request") or case.get("requests"))


@pytest.fixture
def vector_hub() -> Iterator[HubEmulator]:
    credentials = vectors.CREDENTIALS
    with HubEmulator(
        credentials["workspace_key"],
        credentials["workspace_secret"],
        api_key=credentials["api_key"],
        workspace_uid=credentials["workspace_uid"],
    ) as hub:
        yield hub


# -- bodies the capture left out (large chunks), rebuilt from the case's sdk_calls -------------


def _workflows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "workflow": MISSING if i % 50 == 49 else "digest",
            "recipients": [f"user-{i:04d}"],
            "data": {"i": i},
            "$idempotency_key": f"bwf-{i:04d}",
        }
        for i in range(count)
    ]


def _events(
    count: int,
    distinct_id: Callable[[int], str],
    name: Callable[[int], str],
    props: Callable[[int], dict[str, Any]],
) -> list[dict[str, Any]]:
    return [
        {
            "$insert_id": vectors.fixed_insert_id(i + 1),
            "$time": vectors.FIXED_TIME_MS,
            "event": name(i),
            "env": WS_KEY,
            "distinct_id": distinct_id(i),
            "properties": {**props(i), "$ss_sdk_version": vectors.SDK_USER_AGENT},
        }
        for i in range(count)
    ]


REBUILT: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "bulk_wf_250_count_chunking_207": lambda: _workflows(250),
    "bulk_wf_100_exact": lambda: _workflows(100),
    "bulk_events_250_count_chunking_207": lambda: _events(
        250,
        lambda i: f"user-{i:04d}",
        lambda i: MISSING if i % 50 == 49 else "page_viewed",
        lambda i: {"i": i},
    ),
    "bulk_events_size_chunking": lambda: _events(
        10, lambda i: f"heavy-{i:02d}", lambda i: "big_event", lambda i: {"blob": "y" * 200000}
    ),
}


def bodies(case: dict[str, Any]) -> list[bytes]:
    """Each captured request's body as sent; a left-out one rebuilt and checked by its MD5."""
    captured = case.get("requests") or [case["request"]]
    if all(request["body_text"] is not None for request in captured):
        return [request["body_text"].encode("utf-8") for request in captured]
    records, start, rebuilt = REBUILT[case["name"]](), 0, []
    for chunk in case["chunks"]:
        rebuilt.append(encode(records[start : start + chunk["records"]]))
        start += chunk["records"]
    for body, request in zip(rebuilt, captured, strict=True):
        assert hashlib.md5(body).hexdigest() == request["body_md5"], "rebuilt body differs"
    return rebuilt


# -- what the SDK makes of an answer ---------------------------------------------------------


def sdk_view(status: int, payload: bytes) -> dict[str, Any]:
    """A bulk answer as the SDK reads it (``bulk_response_handling``)."""
    answers = json.loads(payload)["records"]
    success = sum(1 for answer in answers if answer["status"] == "success")
    return {
        "status_code": status,
        "status": "success" if success == len(answers) else "partial" if success else "fail",
        "total": len(answers),
        "success": success,
        "failure": len(answers) - success,
        "failed_records_count": len(answers) - success,
    }


def without_message_ids(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in answer.items() if k != "message_id"} for answer in answers]


def configure(hub: HubEmulator, case: dict[str, Any]) -> None:
    """Make the emulator give the answers the capture server gave, where a hub would."""
    behaviour = case.get("server_behaviour", "")
    if MISSING in behaviour or "bulk_wf_3_mixed_207" in behaviour:
        for key in ("workflow", "event"):
            hub.reject_notifications(
                {key: MISSING}, status=404, error="workflow not found", error_type="NotFound"
            )
    if behaviour.startswith("400 application/json"):
        error = json.loads(behaviour.split(" ", 2)[2])["error"]
        hub.reject_notifications(lambda record: True, status=400, error=error["message"])


@pytest.mark.parametrize("case", notification_cases())
def test_a_request_the_sdk_sent_is_accepted_as_the_capture_answered(vector_hub, case):
    hub = vector_hub
    captured = case.get("requests") or [case["request"]]
    if case["name"] not in NOT_HUB_ANSWERS:
        configure(hub, case)
    answers = [
        replay(hub, request, body) for request, body in zip(captured, bodies(case), strict=True)
    ]
    assert [r.status for r in hub.requests] == [status for status, _ in answers]
    if case["name"] in NOT_HUB_ANSWERS:
        assert all(200 <= status < 300 for status, _ in answers), answers
        return
    if case.get("area") == "legacy_workflows" and "chunk_responses" in case:
        # the legacy bulk path takes any 2xx as every record's success
        assert case["bulk_response"]["status"] == "success"
        assert all(200 <= status < 300 for status, _ in answers), answers
        return
    if "chunk_responses" in case:
        for (status, payload), expected in zip(answers, case["chunk_responses"], strict=True):
            wanted = {k: v for k, v in expected.items() if k != "raw_response"}
            assert sdk_view(status, payload) == wanted
            raw = expected["raw_response"]
            if isinstance(raw, dict) and "records" in raw:  # given in full: same answers
                got = json.loads(payload)["records"]
                assert without_message_ids(got) == without_message_ids(raw["records"])
        return
    result = case["sdk_result"]
    for status, payload in answers:
        assert status == result["status_code"], payload
        body = json.loads(payload)
        if result["success"]:
            assert result["status_code"] // 100 == 2
            if "records" not in body:
                assert body["success"] is True
                assert body["message_id"]
        else:
            assert body["error"]["message"] == result["message"]


def test_every_applied_notification_is_kept_with_its_message_id(vector_hub):
    """The first single trigger of the capture, replayed: one notification, its answer's id."""
    (case,) = [
        c
        for c in vectors.load("notifications")["cases"]
        if c["name"] == "wf_trigger_string_recipients"
    ]
    status, payload = replay(vector_hub, case["request"], case["request"]["body_text"].encode())
    assert status == 202
    (notification,) = vector_hub.notifications()
    assert notification.message_id == json.loads(payload)["message_id"]
    assert notification.recipients == ("user-001", "user-002", "user 003/ä")
    assert notification.data["city"] == "東京"


# -- what the SDK refused to send ------------------------------------------------------------

# Calls the SDK refused before sending anything, and what they would have sent: the emulator
# answers each with a 4xx naming the fault (``None``: every record of the bulk refused).
_TRIGGER = {"workflow": "welcome", "recipients": ["user-001"], "data": {}}
_EVENT = {
    "$insert_id": vectors.fixed_insert_id(1),
    "$time": vectors.FIXED_TIME_MS,
    "event": "order_placed",
    "env": WS_KEY,
    "distinct_id": "user-001",
    "properties": {"$ss_sdk_version": vectors.SDK_USER_AGENT},
}
REFUSED: dict[str, tuple[str, Any, int, str | None]] = {
    "wf_trigger_missing_workflow": (
        "trigger/",
        {"recipients": ["user-001"], "data": {}},
        400,
        "'workflow' is a required",
    ),
    "wf_trigger_idempotency_key_too_long": (
        "trigger/",
        {**_TRIGGER, "$idempotency_key": "k" * 256},
        400,
        "too long",
    ),
    "wf_trigger_unknown_top_level_key": (
        "trigger/",
        {**_TRIGGER, "brand_id": "b1"},
        400,
        "brand_id",
    ),
    "wf_trigger_bad_inline_recipient": (
        "trigger/",
        {
            **_TRIGGER,
            "recipients": [
                {"distinct_id": "u1", "$androidpush": [{"token": "t", "provider": "apns"}]}
            ],
        },
        400,
        "'apns' is not one of fcm",
    ),
    "wf_trigger_body_not_dict": ("trigger/", ["not", "a", "dict"], 207, None),
    "wf_trigger_body_too_big": (
        "trigger/",
        {**_TRIGGER, "workflow": "big", "data": {"blob": "x" * 819000}},
        413,
        "819269 Bytes",
    ),
    "legacy_trigger_workflow_missing_template": (
        f"{WS_KEY}/trigger/",
        {
            "name": "legacy-wf",
            "notification_category": "transactional",
            "users": [{"distinct_id": "user-001"}],
            "data": {},
        },
        400,
        "'template' is a required",
    ),
    "event_reserved_prefix_rejected": (
        "v2/event/",
        {**_EVENT, "event": "ss_internal"},
        400,
        "reserved",
    ),
    "event_idempotency_key_too_long": (
        "v2/event/",
        {**_EVENT, "$idempotency_key": "k" * 256},
        400,
        "too long",
    ),
    "event_missing_distinct_id": (
        "v2/event/",
        {**_EVENT, "distinct_id": "   "},
        400,
        "distinct_id",
    ),
    "event_too_big": (
        "v2/event/",
        {**_EVENT, "event": "big", "properties": {"blob": "x" * 819200, **_EVENT["properties"]}},
        413,
        "Event size too big - 819451 Bytes",
    ),
    "bulk_events_empty": ("v2/bulk/event/", [], 400, "no records"),
}
# Refusals that have nothing to send: a missing attachment file, a closed port.
CLIENT_SIDE = {"wf_trigger_attachment_missing_raises", "wf_trigger_connection_error"}


def send(hub: HubEmulator, path: str, body: Any) -> Any:
    """A request signed with the vectors' workspace key and secret."""
    credentials = vectors.CREDENTIALS
    return post(
        hub, path, body, key=credentials["workspace_key"], secret=credentials["workspace_secret"]
    )


def refused_cases() -> list[Any]:
    return [
        p for p in vectors.cases("notifications") if p.values[0] is None or _refused(p.values[0])
    ]


def _refused(case: dict[str, Any]) -> bool:
    return case["area"] in AREAS and case.get("request", False) is None


@pytest.mark.parametrize("case", refused_cases())
def test_what_the_sdk_refused_to_send_the_emulator_refuses(vector_hub, case):
    if case["name"] in CLIENT_SIDE:
        assert case["http_requests"] == 0
        return
    path, body, status, says = REFUSED[case["name"]]
    answer = send(vector_hub, path, body)
    assert answer.status_code == status, answer.text
    if says is None:  # a bulk: each record refused alone
        assert [r["status_code"] for r in answer.json()["records"]] == [400, 400, 400]
    else:
        assert says in answer.json()["error"]["message"]
    assert vector_hub.notifications() == []


def test_the_invalid_records_the_sdk_kept_out_of_a_bulk_are_refused_alone(vector_hub):
    """bulk_wf_invalid_and_oversize_records: the SDK sent only ok-3; sent together, the one
    missing its workflow is refused in the 207, and the oversize one makes the bulk a 413."""
    missing = {"recipients": ["user-001"], "$idempotency_key": "inv-1", "data": {}}
    big = {"workflow": "big", "recipients": ["user-002"], "data": {"blob": "x" * 819000}}
    ok = {"workflow": "welcome", "recipients": ["user-003"], "$idempotency_key": "ok-3", "data": {}}
    answer = send(vector_hub, "trigger/", [missing, ok])
    assert answer.status_code == 207
    assert [r["status"] for r in answer.json()["records"]] == ["error", "success"]
    assert "'workflow' is a required" in answer.json()["records"][0]["error"]["message"]
    assert send(vector_hub, "trigger/", [big, ok]).status_code == 413
    assert [n.idempotency_key for n in vector_hub.notifications()] == ["ok-3"]
