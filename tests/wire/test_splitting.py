"""A profile edit over the record limit goes in several records; only a value that fits in
no record is refused, alone."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from django_suprsend import queue_operations
from django_suprsend.delivery.flush import flush
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.profiles.mapping import mapping_for
from django_suprsend.profiles.tracking import paused
from django_suprsend.wire.operations import ProfileEdit
from django_suprsend.wire.records import MAX_RECORD_BYTES, build_record, record_size
from django_suprsend.wire.splitting import part_insert_id, split_record
from tests.testapp.factories import make_user
from tests.testapp.models import User

MANY = {f"p{i:02}": "v" * 500 for i in range(40)}  # 40 values of 500 bytes: ~21 KB in all


def record_of(edit: ProfileEdit) -> dict[str, Any]:
    return build_record(
        edit.distinct_id, edit.operations, env="ws", sdk_version="x", insert_id="i" * 36
    )


# -- split_record ---------------------------------------------------------------------


def test_a_record_that_fits_is_itself() -> None:
    record = record_of(ProfileEdit("a").set("x", 1))
    assert split_record(record) == ([record], [])


def test_a_big_edit_is_split_in_order_into_records_that_fit() -> None:
    edit = (
        ProfileEdit("a")
        .set(MANY)
        .append("tags", "t")
        .add_email("a@example.com")
        .unset(["gone1", "gone2"])
    )
    record = record_of(edit)
    assert record_size(record) > MAX_RECORD_BYTES
    parts, refused = split_record(record)
    assert refused == []
    assert len(parts) >= 3
    assert all(record_size(part) <= MAX_RECORD_BYTES for part in parts)
    assert [p["$insert_id"] for p in parts] == [
        part_insert_id("i" * 36, i) for i in range(len(parts))
    ]
    assert len({p["$insert_id"] for p in parts}) == len(parts)
    # The same operations, in the same order, once the parts' are put end to end.
    sets = {
        k: v for p in parts for op in p["$user_operations"] for k, v in op.get("$set", {}).items()
    }
    assert sets == MANY
    tail = [op for p in parts for op in p["$user_operations"] if "$set" not in op]
    assert tail == [
        {"$append": {"tags": "t"}},
        {"$append": {"$email": "a@example.com"}},
        {"$unset": ["gone1", "gone2"]},
    ]
    assert split_record(record) == (parts, [])  # deterministic: a retry is the same records
    for part in parts:
        assert {k: v for k, v in part.items() if k not in ("$insert_id", "$user_operations")} == {
            k: v for k, v in record.items() if k not in ("$insert_id", "$user_operations")
        }


def test_only_a_value_that_fits_in_no_record_is_refused() -> None:
    record = record_of(
        ProfileEdit("a").set({"big": "b" * 12_000, "small": 1}).add_sms("+15555550100")
    )
    parts, refused = split_record(record)
    assert [exc.field for exc in refused] == ["big"]
    assert "is 12,002 bytes as JSON, too big for any record" in str(refused[0])
    assert [p["$user_operations"] for p in parts] == [
        [{"$set": {"small": 1}}, {"$append": {"$sms": "+15555550100"}}]
    ]


def test_a_push_token_goes_whole_with_its_provider() -> None:
    edit = ProfileEdit("a").set(MANY).add_androidpush("tok", "fcm")
    parts, _ = split_record(record_of(edit))
    push = [
        op for p in parts for op in p["$user_operations"] if "$androidpush" in op.get("$append", {})
    ]
    assert push == [{"$append": {"$androidpush": "tok", "$id_provider": "fcm"}}]


# -- through the flush and the backfill -------------------------------------------------


@pytest.fixture
def many_properties(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(User, "get_suprsend_properties", lambda self: dict(MANY))
    mapping_for.cache_clear()
    yield
    monkeypatch.undo()
    mapping_for.cache_clear()


@pytest.mark.django_db
@pytest.mark.usefixtures("many_properties")
def test_a_full_push_over_the_limit_arrives_whole_in_several_records(hub: Any) -> None:
    user = make_user(email="many@example.com")
    hub.fail_next(1, 503)  # the first request fails: the retry is the same records
    flush()
    OutboxEntry.objects.update(
        next_attempt_at=OutboxEntry._meta.get_field("next_attempt_at").default()
    )
    flush()
    state = SyncState.objects.get(distinct_id=str(user.pk))
    assert state.status == SyncStatus.SYNCED
    properties = hub.properties(str(user.pk))
    assert {k: properties[k] for k in MANY} == MANY
    assert hub.channel_values(str(user.pk), "$email") == ["many@example.com"]
    sent = [[r["$insert_id"] for r in request.json()] for request in hub.requests]
    assert [request.status for request in hub.requests] == [503, 202]
    assert sent[0] == sent[1]  # the retry is the same records, under the same $insert_ids
    assert len(sent[1]) >= 3  # several records
    assert all(count == 1 for count in hub.insert_id_counts.values())  # each applied once


@pytest.mark.django_db
def test_a_save_refuses_an_oversize_value_alone_and_sends_the_rest(
    hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user(email="first@example.com")
    flush()
    monkeypatch.setattr(User, "get_full_name", lambda self: "p" * 20_000)  # the "name" source
    user.email = "second@example.com"
    user.save()
    assert OutboxEntry.objects.filter(errors__0__field="name").exists()  # refused at save
    flush()
    assert hub.channel_values(str(user.pk), "$email") == ["second@example.com"]
    state = SyncState.objects.get(distinct_id=str(user.pk))
    assert state.status == SyncStatus.FAILED
    assert state.last_error.startswith("name: 'ppp")
    assert "is 20,002 bytes as JSON, too big for any record" in state.last_error


@pytest.mark.django_db
def test_queued_operations_over_the_limit_are_split_by_the_client(hub: Any) -> None:
    user = make_user()
    flush()
    queue_operations(user, ProfileEdit("x").set(MANY).set("huge", "h" * 11_000).operations)
    flush()
    properties = hub.properties(str(user.pk))
    assert {k: properties[k] for k in MANY} == MANY
    assert "huge" not in properties
    assert "huge: 'hhh" in SyncState.objects.get(distinct_id=str(user.pk)).last_error


@pytest.mark.django_db
@pytest.mark.usefixtures("many_properties")
def test_a_backfill_sends_a_big_profile_in_several_records(hub: Any) -> None:
    with paused():
        user = make_user(email="backfill@example.com")
    call_command("suprsend_backfill", "testapp.User", stdout=StringIO(), stderr=StringIO())
    assert SyncState.objects.get(distinct_id=str(user.pk)).status == SyncStatus.SYNCED
    properties = hub.properties(str(user.pk))
    assert {k: properties[k] for k in MANY} == MANY
