"""The emulator's notification endpoints over real HTTP: what they keep, refuse and answer."""

from __future__ import annotations

import threading

import pytest
import requests

from django_suprsend.testing import Arrival, HubEmulator, Notification
from tests.emulator_http import API_KEY, KEY, encode, event, post, profile_edit, trigger


@pytest.fixture
def hub(suprsend_hub: HubEmulator) -> HubEmulator:
    return suprsend_hub


# -- what is kept ------------------------------------------------------------------------------


def test_a_trigger_is_kept_as_a_notification_with_its_message_id(hub):
    attachment = {"filename": "a.txt", "contentType": "text/plain", "data": "YQ==", "url": None}
    body = trigger(
        "invoice",
        "u1",
        {"distinct_id": "u2", "$email": ["u2@example.com"], "$channels": ["email"]},
        {"is_transient": True, "$email": "guest@example.com"},
        actor={"distinct_id": "admin", "name": "Admin"},
        tenant_id="acme",
        **{"$idempotency_key": "inv-1"},
    )
    body["data"] = {"n": 1, "$attachments": [attachment]}
    answer = post(hub, "trigger/", body)
    assert answer.status_code == 202
    assert answer.json()["success"] is True
    (kept,) = hub.notifications()
    assert isinstance(kept, Notification)
    assert (kept.kind, kept.workflow, kept.event, kept.path) == (
        "workflow",
        "invoice",
        None,
        "trigger/",
    )
    assert kept.recipients == ("u1", "u2")  # the transient guest has no distinct_id
    assert (kept.actor, kept.tenant_id, kept.idempotency_key) == ("admin", "acme", "inv-1")
    assert kept.attachments == (attachment,)
    assert kept.data["n"] == 1
    assert kept.message_id == answer.json()["message_id"]
    assert kept.body == body


def test_an_event_is_kept_with_its_properties(hub):
    answer = post(hub, "v2/event/", event("u7", "order_placed", properties={"total": 12.5}))
    assert answer.status_code == 202
    (kept,) = hub.notifications(event="order_placed")
    assert (kept.kind, kept.name, kept.distinct_id, kept.path) == (
        "event",
        "order_placed",
        "u7",
        "v2/event/",
    )
    assert kept.data == {"total": 12.5}


def test_notifications_filter_by_recipient_workflow_event_and_kind(hub):
    post(hub, "trigger/", trigger("welcome", "a", "b"))
    post(hub, "trigger/", trigger("digest", "b"))
    post(hub, "v2/event/", event("a", "clicked"))
    assert [n.name for n in hub.notifications("b")] == ["welcome", "digest"]
    assert [n.name for n in hub.notifications("a")] == ["welcome", "clicked"]
    assert [n.recipients for n in hub.notifications(workflow="welcome")] == [("a", "b")]
    assert [n.name for n in hub.notifications(kind="event")] == ["clicked"]
    assert hub.notifications("a", workflow="digest") == []
    assert [n.sequence for n in hub.notifications()] == [1, 2, 3]


def test_a_legacy_trigger_names_the_workspace_in_its_path(hub):
    body = {
        "name": "legacy-wf",
        "template": "welcome",
        "notification_category": "transactional",
        "users": [{"distinct_id": "u1"}],
        "data": {},
    }
    assert post(hub, f"{KEY}/trigger/", body).status_code == 202
    assert post(hub, f"{KEY}/trigger/", [body, {**body, "users": []}]).status_code == 207
    other = post(hub, "ws_other/trigger/", body)
    assert other.status_code == 404
    assert "ws_other" in other.json()["error"]["message"]
    assert [(n.name, n.path) for n in hub.notifications()] == [("legacy-wf", f"{KEY}/trigger/")] * 2


def test_bearer_requests_use_the_workspace_uid():
    with HubEmulator(KEY, "secret", api_key=API_KEY, workspace_uid="ws_uid_1") as hub:
        assert post(hub, "v2/event/", event(env="ws_uid_1"), bearer=API_KEY).status_code == 202
        wrong_env = post(hub, "v2/event/", event(), bearer=API_KEY)
        assert wrong_env.status_code == 400
        assert "'ws_uid_1'" in wrong_env.json()["message"]
        assert post(hub, "trigger/", trigger(), bearer="nope").status_code == 401
        assert len(hub.notifications()) == 1


def test_unsigned_and_badly_signed_requests_are_refused(hub):
    unsigned = requests.post(hub.url + "trigger/", json=trigger(), timeout=10)
    assert unsigned.status_code == 401
    assert post(hub, "trigger/", trigger(), secret="wrong").status_code == 401
    assert hub.notifications() == []


# -- bulk ------------------------------------------------------------------------------------


def test_a_bulk_trigger_answers_each_record_and_keeps_the_good_ones(hub):
    answer = post(hub, "trigger/", [trigger("a"), {"workflow": "b"}, trigger("c")])
    assert answer.status_code == 207
    records = answer.json()["records"]
    assert [(r["status"], r["status_code"]) for r in records] == [
        ("success", 202),
        ("error", 400),
        ("success", 202),
    ]
    assert records[1]["error"] == {
        "message": "'recipients' is a required property",
        "type": "ValidationError",
    }
    assert [n.message_id for n in hub.notifications()] == [
        records[0]["message_id"],
        records[2]["message_id"],
    ]
    assert post(hub, "trigger/", [trigger("d")]).status_code == 202


def test_bulk_events_answer_each_record(hub):
    answer = post(hub, "v2/bulk/event/", [event("a"), event("b", "ss_private"), event("c")])
    assert answer.status_code == 207
    assert [r["status"] for r in answer.json()["records"]] == ["success", "error", "success"]
    assert [n.distinct_id for n in hub.notifications()] == ["a", "c"]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("trigger/", [trigger() for _ in range(101)], 413, "at most 100"),
        ("v2/bulk/event/", [event() for _ in range(101)], 413, "at most 100"),
        # 4 records of 205,000 bytes: over 819,200 (the SDK counts 200 more per workflow)
        ("trigger/", [trigger(data={"x": "y" * 205_000}) for _ in range(4)], 413, "819200"),
        (
            "v2/bulk/event/",
            [event(properties={"x": "y" * 205_000}) for _ in range(4)],
            413,
            "819200",
        ),
        ("v2/bulk/event/", event(), 400, "JSON array"),
        ("v2/event/", [event()], 400, "v2/bulk/event/"),
        ("trigger/", [], 400, "no records"),
    ],
    ids=[
        "101-workflows",
        "101-events",
        "workflow-bytes",
        "event-bytes",
        "bulk-object",
        "single-array",
        "empty",
    ],
)
def test_a_bulk_over_the_limits_is_refused_whole(hub, path, body, status, says):
    answer = post(hub, path, body)
    assert answer.status_code == status
    assert says in answer.json()["error"]["message"]
    assert hub.notifications() == []


def test_a_bulk_just_within_the_byte_budget_is_accepted(hub):
    # 4 x (json + 200) = 819,200 exactly: the SDK sends this as one chunk
    size = len(encode(trigger(data={"x": ""}))) + 200
    records = [trigger(data={"x": "y" * (204_800 - size)}) for _ in range(4)]
    assert post(hub, "trigger/", records).status_code == 202
    assert len(hub.notifications()) == 4


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (trigger(""), "too short"),
        ({**trigger(), "recipients": []}, "at least 1 item"),
        ({**trigger(), "recipients": [""]}, "too short"),
        ({**trigger(), "data": []}, "JSON object"),
        ({**trigger(), "tenant_id": "t" * 65}, "at most 64"),
        ({**trigger(), "cancellation_key": "c" * 256}, "at most 255"),
        (
            trigger("w", {"distinct_id": "u", "$email": [f"{i}@x.io" for i in range(11)]}),
            "at most 10",
        ),
        (trigger("w", {"distinct_id": "u", "$channels": ["pigeon"]}), "'pigeon' is not one of"),
        (trigger("w", {"$iospush": {"token": "t", "provider": "fcm"}}), "'fcm' is not one of apns"),
        (trigger("w", {"$androidpush": {"token": "t"}}), "'provider' is a required"),
        (trigger("w", {"$webpush": {}}), "non-empty JSON object"),
        (trigger("w", {"$slack": {"access_token": "abc"}}), "Slack token"),
        (trigger("w", {"$slack": {"incoming_webhook": {"url": "https://x.io/"}}}), "Slack webhook"),
        (trigger("w", {"$ms_teams": {"service_url": "http://a/"}}), "Teams service URL"),
        (trigger("w", {"is_transient": "yes"}), "boolean"),
        ({**trigger(), "actor": 42}, "a distinct_id or a user object"),
    ],
)
def test_a_trigger_the_sdk_schema_refuses_is_refused(hub, body, says):
    answer = post(hub, "trigger/", body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "ValidationError"
    assert says in answer.json()["error"]["message"]
    assert says in answer.json()["message"]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"event": "$custom"}, "reserved"),
        ({"event": "SS_shout"}, "reserved"),
        ({"event": "x"}, "too short"),
        ({"$insert_id": "short"}, "too short"),
        ({"$time": 1.5}, "epoch milliseconds"),
        ({"$time": 1_600_000_000_000}, "epoch milliseconds"),
        ({"properties": None}, "JSON object"),
        ({"tenant_id": 7}, "string or null"),
        ({"brand_id": "b" * 65}, "at most 64"),
    ],
)
def test_an_event_the_sdk_refuses_is_refused(hub, changes, says):
    answer = post(hub, "v2/event/", {**event(), **changes})
    assert answer.status_code == 400
    assert says in answer.json()["error"]["message"]


def test_reserved_event_names_of_suprsend_are_accepted(hub):
    assert post(hub, "v2/event/", event(name="$app_launched")).status_code == 202
    assert [n.name for n in hub.notifications()] == ["$app_launched"]


# -- idempotency -----------------------------------------------------------------------------


def test_a_repeated_idempotency_key_is_answered_but_not_applied_for_24_hours(hub):
    now = [1_000_000.0]
    hub.clock = lambda: now[0]
    body = trigger(**{"$idempotency_key": "k-1"})
    first = post(hub, "trigger/", body).json()
    assert post(hub, "trigger/", body).json() == first  # the same message_id
    now[0] += 24 * 3600 - 1
    assert post(hub, "trigger/", [body]).json()["records"][0]["message_id"] == first["message_id"]
    assert len(hub.notifications()) == 1
    assert hub.notifications()[0].received_at == 1_000_000.0
    now[0] += 1  # a day after the first: applied again
    assert post(hub, "trigger/", body).json()["message_id"] != first["message_id"]
    assert len(hub.notifications()) == 2
    assert hub.idempotency_key_counts[("workflow", "k-1")] == 4


def test_idempotency_keys_are_per_kind_and_within_one_bulk(hub):
    key = {"$idempotency_key": "same"}
    assert post(hub, "trigger/", trigger(**key)).status_code == 202
    answer = post(hub, "v2/bulk/event/", [event(**key), event(**key)])
    ids = [r["message_id"] for r in answer.json()["records"]]
    assert ids[0] == ids[1]
    assert [n.kind for n in hub.notifications()] == ["workflow", "event"]


def test_a_refused_record_does_not_take_its_idempotency_key(hub):
    hub.reject_notifications({"workflow": "welcome"}, status=503, error="busy")
    assert post(hub, "trigger/", trigger(**{"$idempotency_key": "k"})).status_code == 503
    hub.clear_faults()
    assert post(hub, "trigger/", trigger(**{"$idempotency_key": "k"})).status_code == 202
    assert len(hub.notifications()) == 1


# -- faults ----------------------------------------------------------------------------------


def test_queued_faults_apply_to_notification_requests(hub):
    hub.fail_next(1, 429, retry_after=3)
    refused = post(hub, "trigger/", trigger())
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "3")
    hub.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        post(hub, "v2/event/", event())
    assert hub.notifications() == []
    hub.delay_next(1, 0.05)
    assert post(hub, "v2/bulk/event/", [event("late")]).status_code == 202
    assert [n.distinct_id for n in hub.notifications()] == ["late"]
    assert [r.status for r in hub.requests] == [429, None, 202]


def test_reject_notifications_by_match_or_predicate_until_clear_faults(hub):
    hub.reject_notifications({"workflow": "gone"}, status=404, error="workflow not found")
    hub.reject_notifications(lambda record: record.get("distinct_id") == "banned", status=422)
    single = post(hub, "trigger/", trigger("gone"))
    assert single.status_code == 404
    assert single.json()["error"] == {"message": "workflow not found", "type": "NotFound"}
    bulk = post(hub, "v2/bulk/event/", [event("ok"), event("banned")])
    assert bulk.status_code == 207
    assert bulk.json()["records"][1] == {
        "status": "error",
        "status_code": 422,
        "error": {"message": "rejected by test", "type": "ValidationError"},
    }
    assert [n.distinct_id for n in hub.notifications()] == ["ok"]
    hub.clear_faults()
    assert post(hub, "trigger/", trigger("gone")).status_code == 202


def test_a_predicate_that_raises_is_answered_500_not_a_dropped_connection(hub):
    hub.reject_notifications(lambda record: 1 / 0)
    answer = post(hub, "trigger/", trigger())
    assert answer.status_code == 500
    assert "ZeroDivisionError" in answer.json()["message"]


# -- arrival order ---------------------------------------------------------------------------


def test_arrivals_order_profile_edits_and_notifications_per_distinct_id(hub):
    edit = profile_edit("u1")
    assert post(hub, "event/", [edit, profile_edit("u2")]).status_code == 202
    post(hub, "trigger/", trigger("welcome", "u1", "u2"))
    post(hub, "v2/event/", event("u1", "clicked"))
    assert hub.arrivals("u1") == [
        ("profile", edit["$insert_id"]),
        ("workflow", "welcome"),
        ("event", "clicked"),
    ]
    assert all(isinstance(a, Arrival) for a in hub.arrivals("u1"))
    assert [a.kind for a in hub.arrivals("u2")] == ["profile", "workflow"]
    assert hub.profile_arrived_before("u1", workflow="welcome")
    assert hub.profile_arrived_before("u1", event="clicked")
    assert not hub.profile_arrived_before("u1", workflow="never-sent")
    (welcome,) = hub.notifications(workflow="welcome")
    assert welcome.sequence == 3  # after the two profile records


def test_a_notification_ahead_of_its_profile_is_seen_as_such(hub):
    post(hub, "trigger/", trigger("welcome", "u9"))
    requests.patch(hub.url + "v1/user/u9/", timeout=10)  # unsigned: refused, not an arrival
    post(hub, "event/", profile_edit("u9"))
    assert [a.kind for a in hub.arrivals("u9")] == ["workflow", "profile"]
    assert not hub.profile_arrived_before("u9")
    assert hub.arrivals("nobody") == []


def test_rest_profile_calls_are_arrivals_without_an_insert_id(hub):
    answer = post(hub, "v1/user/u3/", {"$email": ["u3@example.com"]})
    assert answer.status_code == 201
    post(hub, "trigger/", trigger("welcome", "u3"))
    assert hub.arrivals("u3") == [("profile", None), ("workflow", "welcome")]


def test_wait_for_a_notification_sent_from_another_thread(hub):
    sender = threading.Thread(target=post, args=(hub, "trigger/", trigger("later", "w1")))
    sender.start()
    hub.wait_for(lambda h: h.notifications("w1", workflow="later") != [], timeout=10)
    sender.join()
    with pytest.raises(AssertionError, match="1 notification"):
        hub.wait_for(lambda h: len(h.notifications()) > 1, timeout=0.05)


def test_reset_forgets_notifications_arrivals_keys_and_rules(hub):
    hub.reject_notifications({"workflow": "gone"})
    post(hub, "event/", profile_edit("u1"))
    post(hub, "trigger/", trigger(**{"$idempotency_key": "k"}))
    hub.reset()
    assert (hub.notifications(), hub.arrivals("u1"), hub.idempotency_key_counts) == ([], [], {})
    post(hub, "trigger/", trigger("gone", **{"$idempotency_key": "k"}))
    assert [(n.name, n.sequence) for n in hub.notifications()] == [("gone", 1)]
