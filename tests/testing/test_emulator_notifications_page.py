"""The emulator's page for people shows notifications, after the profiles they were sent to."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from django_suprsend.testing import HubEmulator
from tests.emulator_http import KEY, SECRET, event, post, profile_edit, trigger

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def hub() -> Iterator[HubEmulator]:
    with HubEmulator(KEY, SECRET, serve_page=True) as emulator:
        yield emulator


def get(hub: HubEmulator, path: str = "") -> requests.Response:
    response = requests.get(hub.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response


def state(hub: HubEmulator) -> dict[str, Any]:
    return get(hub, "_emulator/state.json").json()


def test_the_page_shows_the_profile_arriving_then_the_notification(hub):
    post(hub, "event/", profile_edit("u1"))
    post(hub, "trigger/", trigger("welcome", "u1", "u2", tenant_id="acme"))
    shown = state(hub)
    (notification,) = shown["notifications"]["items"]
    assert notification["kind"] == "workflow"
    assert notification["name"] == "welcome"
    assert notification["tenant_id"] == "acme"
    assert notification["recipients"] == [
        {"distinct_id": "u1", "profile_before": True},
        {"distinct_id": "u2", "profile_before": False},
    ]
    assert shown["notifications"]["total"] == 1
    # newest first: the trigger, then the profile edit before it
    assert [r["path"] for r in shown["requests"]["items"]] == ["/trigger/", "/event/"]
    text = get(hub).text
    assert "Notifications" in text
    row = text[text.index("<code>welcome</code>") :]
    assert row.index("u1") < row.index("profile first") < row.index("u2") < row.index("no profile")
    assert '<span class="muted">tenant</span> <code>acme</code>' in row


def test_notifications_are_newest_first_and_carry_no_data_values(hub):
    post(hub, "v2/event/", event("u1", "first", properties={"secret_value": "s3cr3t"}))
    post(hub, "trigger/", trigger("second", data={"secret_value": "s3cr3t"}))
    shown = state(hub)
    assert [n["name"] for n in shown["notifications"]["items"]] == ["second", "first"]
    assert [n["sequence"] for n in shown["notifications"]["items"]] == [2, 1]
    assert "s3cr3t" not in get(hub, "_emulator/state.json").text
    assert "s3cr3t" not in get(hub).text


def test_a_207_shows_as_partial_with_the_failed_record(hub):
    hub.reject_notifications({"event": "gone"}, status=404, error="workflow not found")
    post(hub, "v2/bulk/event/", [event("a"), event("b", "gone"), event("c")])
    (request,) = state(hub)["requests"]["items"]
    assert (request["status"], request["outcome"]) == (207, "partial")
    assert (request["records"], request["succeeded"], request["failed"]) == (3, 2, 1)
    assert request["errors"] == [{"index": 1, "distinct_id": None, "error": "workflow not found"}]
    text = get(hub).text
    assert "record 1: workflow not found" in text
    assert "2 succeeded" in text


def test_a_refused_trigger_is_an_error_and_a_fault_still_counts_its_records(hub):
    post(hub, "trigger/", {"workflow": "w"})
    hub.fail_next(1, 503)
    post(hub, "trigger/", [trigger(), trigger()])
    failed, refused = state(hub)["requests"]["items"]
    assert (refused["outcome"], refused["failed"]) == ("error", 1)
    assert "'recipients' is a required property" in refused["message"]
    assert (failed["status"], failed["records"], failed["failed"]) == (503, 2, 2)
    assert state(hub)["notifications"]["items"] == []


def test_hostile_names_are_escaped(hub):
    post(hub, "trigger/", trigger(HOSTILE, HOSTILE))
    text = get(hub).text
    assert HOSTILE not in text
    assert html.escape(HOSTILE) in text
