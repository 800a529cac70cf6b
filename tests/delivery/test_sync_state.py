"""``sync_state``: the SyncState upserts, on each database."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from django_suprsend.delivery import sync_state
from django_suprsend.delivery.outbox import Entry
from django_suprsend.delivery.sync_state import Outcome
from django_suprsend.models import SyncState, SyncStatus
from tests.testapp.models import User

pytestmark = pytest.mark.django_db

COLUMNS = [name for name, _ in sync_state._PG_COLUMNS]


def entry(distinct_id: str, content_type_id: int, object_id: str) -> Entry:
    return Entry(0, distinct_id, "edit", [], [], content_type_id, object_id, 0, "")


def test_record_synced_writes_what_record_writes_for_a_synced_outcome():
    content_type_id = ContentType.objects.get_for_model(User).pk
    sync_state.record(
        [Outcome([entry("a", content_type_id, "1")], SyncStatus.SYNCED, delivered=True)],
        using="default",
    )
    sync_state.record_synced([("b", content_type_id, "2")], using="default")

    a, b = (SyncState.objects.filter(distinct_id=d).values(*COLUMNS).get() for d in ("a", "b"))
    for row in (a, b):
        assert row.pop("last_synced_at") == row.pop("last_attempt_at") == row.pop("updated_at")
    assert (a.pop("distinct_id"), a.pop("object_id")) == ("a", "1")
    assert (b.pop("distinct_id"), b.pop("object_id")) == ("b", "2")
    assert a == b
    assert a["status"] == SyncStatus.SYNCED


def test_upsert_keeps_every_value_whether_shared_by_the_rows_or_not():
    content_type_id = ContentType.objects.get_for_model(User).pk
    then = timezone.now() - datetime.timedelta(days=3)
    rows = [
        {
            "distinct_id": f"p{i}",
            "content_type_id": content_type_id if i else None,
            "object_id": str(i),
            "status": SyncStatus.FAILED if i else SyncStatus.SYNCED,
            "attempts": i,
            "last_synced_at": None if i else then,
            "last_attempt_at": then + datetime.timedelta(seconds=i),
            "last_error": f'"quoted" \\ é ☃ {i}' if i else "",
            "last_error_code": 400 + i if i else None,
            "last_failed_record": {"record": {"k": [i, None, "é"]}, "error": "x"} if i else None,
            "updated_at": then,
        }
        for i in range(3)
    ]
    SyncState.objects.create(distinct_id="p1", status=SyncStatus.PENDING)  # updated in place

    sync_state._upsert(rows, sync_state._UPDATED_FIELDS, "default")

    stored = {s["distinct_id"]: s for s in SyncState.objects.values(*COLUMNS)}
    assert stored == {row["distinct_id"]: row for row in rows}


def test_a_deleted_content_type_leaves_its_states_without_one():
    """No database constraint on the content type (it cost a third of each inserted
    state): Django's own SET_NULL still runs when a content type is deleted."""
    from django.db import connection

    gone = ContentType.objects.create(app_label="gone", model="gone")
    sync_state.record_synced([("g-1", gone.pk, "1")], using="default")
    table = SyncState._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    assert not [c for c in constraints.values() if c["foreign_key"]]

    gone.delete()

    state = SyncState.objects.get(distinct_id="g-1")
    assert (state.content_type_id, state.object_id) == (None, "1")
