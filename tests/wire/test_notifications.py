"""Workflow triggers and events: builders, attachments, chunking, retries and outcomes.

The server is a :class:`RecordingServer` on 127.0.0.1 answering from a script;
the client retries fast (no real waits: ``sleep`` is replaced).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire.attachments import (
    MAX_BODY_BYTES,
    attachment_from_bytes,
    attachment_from_file,
    attachment_from_url,
)
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.events import build_event
from django_suprsend.wire.notification_bulk import (
    FAILED_PERMANENT,
    FAILED_TRANSIENT,
    SENT,
    NotificationResponse,
)
from django_suprsend.wire.notifications import (
    build_legacy_workflow,
    build_workflow_trigger,
    check_workflow_trigger,
    idempotency_key,
)
from django_suprsend.wire.records import dumps
from django_suprsend.wire.retry import RetryPolicy
from tests.capture import Answer, RecordingServer
from tests.local import closed_port_url

KEY, SECRET = "ws_key_for_notifications", "ws_secret_for_notifications_0123"
FAST = RetryPolicy(max_attempts=3, max_elapsed=10.0, backoff_base=0.0, backoff_max=0.0)
JSON = "application/json"


def make_client(url: str, **options: Any) -> SuprsendClient:
    client = SuprsendClient(KEY, SECRET, base_url=url, retry=options.pop("retry", FAST), **options)
    client.sleep = lambda seconds: None
    return client


def wf(i: int, *, key: bool = True, workflow: str = "digest", **data: Any) -> dict[str, Any]:
    return build_workflow_trigger(
        {"workflow": workflow, "recipients": [f"user-{i:04d}"], "data": {"i": i, **data}},
        idempotency_key=idempotency_key("tests", i) if key else None,
    )


def all_success(server: RecordingServer) -> None:
    server.answer = lambda n: per_record(server, n)


def per_record(server: RecordingServer, n: int, status: int = 202) -> Answer:
    records = json.loads(server.requests[n - 1].body)
    results = [
        {"status": "success", "message_id": f"m{n}-{i}", "status_code": 202}
        for i in range(len(records))
    ]
    return status, JSON, json.dumps({"records": results})


def statuses(response: NotificationResponse) -> list[str]:
    return [r.status for r in response]


# -- builders ------------------------------------------------------------------------


def test_a_trigger_is_built_in_the_sdk_s_key_order_from_a_copy():
    body: dict[str, Any] = {"workflow": "w", "recipients": ["u"], "actor": "a"}
    record = build_workflow_trigger(body, idempotency_key="k", tenant_id="t", cancellation_key="c")
    assert dumps(record) == (
        '{"workflow": "w", "recipients": ["u"], "actor": "a", "$idempotency_key": "k", '
        '"tenant_id": "t", "cancellation_key": "c", "data": {}}'
    )
    body["recipients"].append("other")
    assert record["recipients"] == ["u"]


@pytest.mark.parametrize(
    ("body", "options", "field"),
    [
        ({"recipients": ["u"]}, {}, "workflow"),
        ({"workflow": "", "recipients": ["u"]}, {}, "workflow"),
        ({"workflow": "w", "recipients": []}, {}, "recipients"),
        ({"workflow": "w"}, {}, "recipients"),
        ({"workflow": "w", "recipients": [""]}, {}, "recipients[0]"),
        ({"workflow": "w", "recipients": [3]}, {}, "recipients[0]"),
        ({"workflow": "w", "recipients": ["u"], "extra": 1}, {}, "extra"),
        ({"workflow": "w", "recipients": ["u"], "data": []}, {}, "data"),
        ({"workflow": "w", "recipients": ["u"], "metadata": "m"}, {}, "metadata"),
        ({"workflow": "w", "recipients": ["u"]}, {"tenant_id": "t" * 65}, "tenant_id"),
        (
            {"workflow": "w", "recipients": ["u"]},
            {"cancellation_key": "c" * 256},
            "cancellation_key",
        ),
        ({"workflow": "w", "recipients": ["u"], "actor": {"$email": "nope"}}, {}, "actor.$email"),
        (
            {"workflow": "w", "recipients": [{"distinct_id": "u", "$sms": ["+1555"]}]},
            {},
            "recipients[0].$sms[0]",
        ),
        (
            {"workflow": "w", "recipients": [{"distinct_id": "u", "$email": ["a@b.co"] * 11}]},
            {},
            "recipients[0].$email",
        ),
        (
            {"workflow": "w", "recipients": [{"distinct_id": "u", "$channels": ["fax"]}]},
            {},
            "recipients[0].$channels",
        ),
        (
            {"workflow": "w", "recipients": [{"$iospush": {"token": "t", "provider": "fcm"}}]},
            {},
            "recipients[0].$iospush.provider",
        ),
        (
            {"workflow": "w", "recipients": [{"$slack": {"channel_id": "C1"}}]},
            {},
            "recipients[0].$slack",
        ),
        (
            {"workflow": "w", "recipients": [{"$preferred_language": "english"}]},
            {},
            "recipients[0].$preferred_language",
        ),
        (
            {"workflow": "w", "recipients": [{"$timezone": "Mars/Olympus"}]},
            {},
            "recipients[0].$timezone",
        ),
    ],
)
def test_invalid_triggers_are_refused_naming_the_field(body, options, field):
    with pytest.raises(SuprsendValidationError) as refused:
        build_workflow_trigger(body, **options)
    assert refused.value.field == field


def test_inline_recipients_take_every_channel_the_profile_values_take():
    recipient = {
        "distinct_id": "u",
        "$email": "a@example.com",
        "$whatsapp": ["+15555550100"],
        "$iospush": {"token": "t", "provider": "apns", "bundle_id": "com.x"},
        "$webpush": {"endpoint": "https://e", "keys": {"p256dh": "p", "auth": "a"}},
        "$slack": {"email": "a@example.com", "access_token": "xoxb-1"},
        "$ms_teams": {"incoming_webhook": {"url": "https://x.webhook.office.com/y"}},
        "$inbox": "inbox-id",
        "$locale": "en_GB",
        "is_transient": False,
        "custom": {"anything": 1},
    }
    record = build_workflow_trigger({"workflow": "w", "recipients": [recipient]})
    assert record["recipients"] == [recipient]


def test_a_trigger_over_800kb_is_refused_and_one_at_the_limit_is_not():
    empty = len(dumps({"workflow": "w", "recipients": ["u"], "data": {"b": ""}})) + 200
    body = {"workflow": "w", "recipients": ["u"], "data": {"b": "x" * (MAX_BODY_BYTES - empty)}}
    assert check_workflow_trigger(build_workflow_trigger(body)) == MAX_BODY_BYTES
    body["data"]["b"] += "x"
    with pytest.raises(SuprsendValidationError, match="819201 bytes"):
        build_workflow_trigger(body)


def test_event_is_built_as_the_sdk_builds_it():
    record = build_event(
        " u-1 ",
        " signed_up ",
        {"plan": "pro"},
        env="ws_key_0123456789ABCDEF",
        sdk_version="sdk/1",
        idempotency_key="i-1",
        tenant_id="t",
        brand_id="b",
        attachments=[attachment_from_bytes(b"x", "x.txt")],
        insert_id="00000000-0000-4000-8000-000000000009",
        time_ms=1705314600500,
    )
    assert list(record) == [
        "$insert_id",
        "$time",
        "event",
        "env",
        "distinct_id",
        "properties",
        "$idempotency_key",
        "tenant_id",
        "brand_id",
    ]
    assert (record["distinct_id"], record["event"]) == ("u-1", "signed_up")
    assert list(record["properties"]) == ["plan", "$attachments", "$ss_sdk_version"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "e1"), "distinct_id"),
        ((None, "e1"), "distinct_id"),
        (("u", "$custom"), "event"),
        (("u", "SS_x"), "event"),
        (("u", " "), "event"),
        (("u", "e1", ["not", "a", "dict"]), "properties"),
    ],
)
def test_invalid_events_are_refused_naming_the_field(args, field):
    with pytest.raises(SuprsendValidationError) as refused:
        build_event(*args, env="e" * 20, sdk_version="s")
    assert refused.value.field == field


def test_reserved_event_names_are_allowed():
    for name in ("$identify", "$user_login", "$notification_clicked"):
        assert build_event("u", name, env="e" * 20, sdk_version="s")["event"] == name


def test_legacy_workflow_needs_its_keys():
    body = {"name": "n1", "template": "t1", "notification_category": "transactional"}
    with pytest.raises(SuprsendValidationError) as refused:
        build_legacy_workflow(body)
    assert refused.value.field == "users"
    record = build_legacy_workflow({**body, "users": [{"distinct_id": "u"}]}, brand_id="b")
    assert list(record)[-2:] == ["brand_id", "data"]


def test_idempotency_keys_are_stable_and_distinct():
    assert idempotency_key("orders", 7) == idempotency_key("orders", "7")
    assert idempotency_key("orders", 7) != idempotency_key("orders", 8)
    assert idempotency_key("orders", 7) != idempotency_key("invoices", 7)
    namespace = uuid.uuid4()
    assert idempotency_key(namespace, "a") == str(uuid.uuid5(namespace, "a"))
    assert len(idempotency_key("x" * 300, "y" * 300)) == 36
    with pytest.raises(SuprsendValidationError):
        idempotency_key(" ", 1)


# -- attachments ---------------------------------------------------------------------


def test_attachments_capture_the_content_at_call_time(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1")
    attachment = attachment_from_file(path)
    path.write_bytes(b"changed")
    assert attachment == {
        "filename": "report.pdf",
        "contentType": "application/pdf",
        "data": base64.b64encode(b"%PDF-1").decode(),
        "url": None,
        "ignore_if_error": False,
    }
    assert json.loads(json.dumps(attachment)) == attachment  # storable as it is
    record = build_workflow_trigger(
        {"workflow": "w", "recipients": ["u"]}, attachments=[attachment]
    )
    assert record["data"]["$attachments"] == [attachment]


def test_attachment_from_bytes_name_and_mime_type():
    a = attachment_from_bytes(b"a,b", "  rows.csv ", ignore_if_error=True)
    assert (a["filename"], a["contentType"], a["ignore_if_error"]) == ("rows.csv", "text/csv", True)
    assert attachment_from_bytes(b"", "blob", mime_type="image/png")["contentType"] == "image/png"
    assert attachment_from_bytes(b"", "blob.zzz")["contentType"] == "application/octet-stream"
    with pytest.raises(SuprsendValidationError):
        attachment_from_bytes(b"x", " ")
    with pytest.raises(SuprsendValidationError):
        attachment_from_bytes("text", "a.txt")  # type: ignore[arg-type]


def test_missing_file_raises_or_is_ignored(tmp_path):
    missing = tmp_path / "nope.pdf"
    with pytest.raises(SuprsendValidationError) as refused:
        attachment_from_file(missing)
    assert refused.value.field == "$attachments"
    assert attachment_from_file(missing, ignore_if_error=True) is None
    record = build_workflow_trigger({"workflow": "w", "recipients": ["u"]}, attachments=[None])
    assert record["data"] == {}


def test_url_attachment_as_the_sdk_builds_it():
    assert attachment_from_file("https://example.com/a.pdf", "a.pdf") == {
        "filename": "a.pdf",
        "contentType": None,
        "data": None,
        "url": "https://example.com/a.pdf",
        "ignore_if_error": False,
    }
    with pytest.raises(SuprsendValidationError):
        attachment_from_url("ftp://example.com/a")


def test_an_attachment_too_big_for_any_body_is_refused():
    with pytest.raises(SuprsendValidationError, match="800KB"):
        attachment_from_bytes(b"x" * (MAX_BODY_BYTES * 3 // 4 + 3), "big.bin")


# -- sending -------------------------------------------------------------------------


@pytest.fixture
def server():
    with RecordingServer() as server:
        yield server


def test_250_triggers_go_in_100_100_50(server):
    all_success(server)
    with make_client(server.url) as client:
        response = client.trigger_workflows([wf(i) for i in range(250)])
    assert [len(json.loads(r.body)) for r in server.requests] == [100, 100, 50]
    assert (response.total, response.sent, response.status) == (250, 250, "success")
    assert response[249].message_id == "m3-49"


def test_chunks_close_on_the_byte_budget_with_the_200_byte_allowance(server):
    all_success(server)
    blob = "y" * 200_000
    with make_client(server.url) as client:
        response = client.trigger_workflows([wf(i, blob=blob) for i in range(10)])
    sizes = [len(json.loads(r.body)) for r in server.requests]
    assert sizes == [4, 4, 2]
    for request in server.requests:
        records = json.loads(request.body)
        assert sum(len(dumps(r).encode()) + 200 for r in records) <= MAX_BODY_BYTES
    assert response.sent == 10


def test_an_oversize_record_is_refused_alone_and_never_sent(server):
    all_success(server)
    big = {"workflow": "w", "recipients": ["u"], "data": {"b": "x" * MAX_BODY_BYTES}}
    with make_client(server.url) as client:
        response = client.trigger_workflows([("a", wf(1)), ("big", big), ("b", wf(2))])
    assert statuses(response) == [SENT, FAILED_PERMANENT, SENT]
    assert "not sent" in response["big"].error
    (request,) = server.requests
    assert [r["$idempotency_key"] for r in json.loads(request.body)] == [
        idempotency_key("tests", 1),
        idempotency_key("tests", 2),
    ]


def test_a_503_then_207_retries_the_same_bytes_and_maps_each_record(server):
    def answer(n: int) -> Answer:
        if n == 1:
            return 503, "text/plain", "busy"
        results = [
            {"status": "success", "message_id": "m-0", "status_code": 202},
            {"status": "error", "status_code": 404, "error": {"message": "workflow not found"}},
            {"status": "error", "status_code": 500, "error": {"message": "try later"}},
        ]
        return 207, JSON, json.dumps({"records": results})

    server.answer = answer
    records = [("x", wf(0)), ("y", wf(1, workflow="missing")), ("z", wf(2))]
    with make_client(server.url) as client:
        response = client.trigger_workflows(records)
    first, second = server.requests
    assert first.body == second.body
    assert first.header("Authorization") == second.header("Authorization")
    assert [(r.key, r.status, r.http_status) for r in response] == [
        ("x", SENT, 202),
        ("y", FAILED_PERMANENT, 404),
        ("z", FAILED_TRANSIENT, 500),
    ]
    assert response["x"].message_id == "m-0"
    assert response["y"].error == "workflow not found"
    assert repr(response) == (
        "NotificationResponse<status: partial | total: 3 | sent: 1 | failed_permanent: 1 | "
        "failed_transient: 1>"
    )


def test_records_without_idempotency_key_are_not_retried(server):
    server.answer = lambda n: (503, "text/plain", "busy")
    with make_client(server.url) as client:
        response = client.trigger_workflows([wf(1, key=False)])
    assert len(server.requests) == 1
    assert statuses(response) == [FAILED_TRANSIENT]


def test_exhausted_retries_are_transient_with_retry_after(server):
    server.answer = lambda n: (429, JSON, '{"error": {"message": "slow down"}}')
    with make_client(server.url) as client:
        response = client.send_events([client.build_event("u", "e1", idempotency_key="k")])
    assert len(server.requests) == FAST.max_attempts
    (result,) = response
    assert (result.status, result.http_status, result.error) == (FAILED_TRANSIENT, 429, "slow down")


def test_a_4xx_for_the_whole_request_fails_its_records_permanently(server):
    server.answer = lambda n: (400, JSON, '{"error": {"message": "bad request"}}')
    with make_client(server.url) as client:
        response = client.trigger_workflows([wf(1), wf(2)])
    assert len(server.requests) == 1
    assert [(r.status, r.http_status, r.error) for r in response] == [
        (FAILED_PERMANENT, 400, "bad request")
    ] * 2


def test_refused_credentials_stop_the_send_and_stay_transient(server):
    server.answer = lambda n: (401, JSON, f'{{"error": {{"message": "bad key {SECRET}"}}}}')
    with make_client(server.url) as client:
        response = client.trigger_workflows([wf(i) for i in range(150)])
    assert len(server.requests) == 1
    assert set(statuses(response)) == {FAILED_TRANSIENT}
    assert all(SECRET not in (r.error or "") for r in response)
    assert SECRET not in repr(response)


def test_no_answer_is_transient_and_retried(server):
    with make_client(closed_port_url(), retry=RetryPolicy(max_attempts=2)) as client:
        client.sleep = lambda seconds: None
        response = client.trigger_workflows([wf(1)])
    (result,) = response
    assert (result.status, result.http_status) == (FAILED_TRANSIENT, None)
    assert "2 attempt(s)" in (result.error or "")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (202, '{"success": true}', SENT),  # an unambiguous 202: all accepted
        (207, '{"success": true}', FAILED_TRANSIENT),  # 207 without per-record results
        (202, '{"records": "?"}', FAILED_TRANSIENT),
        (200, "<html>portal</html>", FAILED_TRANSIENT),
    ],
)
def test_2xx_without_per_record_results(server, status, body, expected):
    server.answer = lambda n: (status, JSON, body)
    with make_client(server.url) as client:
        response = client.trigger_workflows([wf(1), wf(2)])
    assert statuses(response) == [expected, expected]


def test_single_forms_and_the_legacy_path(server):
    with make_client(server.url) as client:
        one = client.trigger_workflow(wf(1))
        event = client.track_event(client.build_event("u", "e1"))
        legacy = build_legacy_workflow(
            {"name": "n1", "template": "t1", "notification_category": "c1", "users": [{}]}
        )
        client.trigger_legacy_workflow(legacy)
        client.trigger_legacy_workflows([legacy, legacy])
        refused = client.trigger_workflow({"workflow": "w"})
    assert [r.path for r in server.requests] == [
        "/trigger/",
        "/v2/event/",
        f"/{KEY}/trigger/",
        f"/{KEY}/trigger/",
    ]
    assert json.loads(server.requests[0].body)["workflow"] == "digest"  # an object
    assert isinstance(json.loads(server.requests[3].body), list)
    assert (one[0].message_id, event[0].message_id) == ("msg-1", "msg-1")
    assert len(server.requests) == 4
    assert (refused[0].status, refused[0].http_status) == (FAILED_PERMANENT, None)
    assert refused[0].error == "recipients: None must be a non-empty list; not sent"


def test_keys_map_results_back_and_empty_sends_nothing(server):
    all_success(server)
    with make_client(server.url) as client:
        assert client.send_events([]).status == "success"
        events = [(f"entry-{i}", client.build_event(f"u{i}", "e1")) for i in range(3)]
        response = client.send_events(events)
    assert len(server.requests) == 1
    assert list(response.by_key()) == ["entry-0", "entry-1", "entry-2"]
    assert response["entry-2"].message_id == "m1-2"
    with pytest.raises(KeyError):
        response["entry-9"]


def test_a_stored_record_sends_the_same_bytes_again(server):
    record = wf(7)
    stored = json.loads(dumps(record))  # as an outbox row keeps it (JSON keeps key order)
    with make_client(server.url) as client:
        client.trigger_workflows([record])
        client.trigger_workflows([stored])
    first, second = server.requests
    assert first.body == second.body


def test_a_stored_attachment_is_checked_when_built_in(tmp_path):
    attachment = json.loads(json.dumps(attachment_from_bytes(b"abc", "a.txt")))
    body = {"workflow": "w", "recipients": ["u"]}
    assert build_workflow_trigger(body, attachments=[attachment])["data"]["$attachments"] == [
        attachment
    ]
    for broken in ({**attachment, "data": "not base64!"}, {"filename": "a.txt"}):
        with pytest.raises(SuprsendValidationError):
            build_workflow_trigger(body, attachments=[broken])
