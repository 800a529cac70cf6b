"""The sweep prunes sent entries after KEEP_SENT_DAYS and failed ones after KEEP_FAILED_DAYS;
the admin keeps what it shows of a failure in the SyncState."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_suprsend.delivery import retention, tasks
from django_suprsend.delivery.enqueue import enqueue
from django_suprsend.delivery.flush import flush
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.wire.operations import ProfileEdit

pytestmark = pytest.mark.django_db

Status = OutboxEntry.Status


@pytest.fixture(autouse=True)
def no_tasks(monkeypatch):
    """The sweep's flush task goes nowhere: these tests run the pruning only."""
    monkeypatch.setattr(tasks, "_apply", lambda task, using, **options: None)


def entry(status: str, age_days: float, distinct_id: str = "p") -> OutboxEntry:
    """An outbox row sent or failed for good ``age_days`` ago (as mark_sent/mark_failed write)."""
    at = timezone.now() - timedelta(days=age_days)
    return OutboxEntry.objects.create(
        distinct_id=distinct_id,
        status=status,
        sent_at=at if status == Status.SENT else None,
        next_attempt_at=at,
        created_at=at - timedelta(hours=1),
        last_error="hub said no" if status == Status.FAILED else "",
    )


def remaining() -> list[tuple[str, int]]:
    return sorted(OutboxEntry.objects.values_list("status", "id"))


def test_the_sweep_prunes_sent_entries_after_7_days_and_failed_ones_after_30():
    kept = [
        entry(Status.SENT, 6),
        entry(Status.FAILED, 29),
        entry(Status.PENDING, 60),  # never pruned, however old
    ]
    entry(Status.SENT, 8)
    entry(Status.FAILED, 31)

    result = tasks.sweep()

    assert (result["pruned_sent"], result["pruned_failed"], result["pruned"]) == (1, 1, 2)
    assert remaining() == sorted((e.status, e.id) for e in kept)


def test_retention_settings_change_what_is_kept(settings):
    old_failed = entry(Status.FAILED, 400)
    entry(Status.SENT, 2)
    settings.SUPRSEND = {**settings.SUPRSEND, "KEEP_SENT_DAYS": 1, "KEEP_FAILED_DAYS": None}

    assert retention.prune() == retention.Pruned(sent=1, failed=0)
    assert remaining() == [(Status.FAILED, old_failed.id)]

    settings.SUPRSEND = {**settings.SUPRSEND, "KEEP_FAILED_DAYS": 0}
    assert retention.prune() == retention.Pruned(sent=0, failed=1)
    assert remaining() == []


def test_pruning_goes_in_batches_and_takes_every_old_row(monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 3)
    for _ in range(7):
        entry(Status.FAILED, 40)
    young = entry(Status.FAILED, 1)

    assert retention.prune() == retention.Pruned(sent=0, failed=7)
    assert remaining() == [(Status.FAILED, young.id)]


def test_a_failure_stays_in_the_admin_after_its_entries_are_pruned(hub, admin_client, settings):
    """What the admin shows of a failure is read from the SyncState, not the pruned rows.

    (The admin user is a profile too: its own entry is sent, not failed.)"""
    settings.SUPRSEND = {**settings.SUPRSEND, "KEEP_FAILED_DAYS": 0}
    hub.reject_records(lambda record: record["distinct_id"] == "poison")
    enqueue("poison", ProfileEdit("poison").add_email("p@example.com").operations)
    flush()
    enqueue("gone", [], kind=OutboxEntry.Kind.DELETE)
    hub.fail_next(1, status=400)
    flush()
    failed = OutboxEntry.objects.filter(distinct_id__in=["poison", "gone"])
    assert set(failed.values_list("status", flat=True)) == {Status.FAILED}

    assert retention.prune().failed == 2
    assert not failed.exists()

    poisoned = SyncState.objects.get(distinct_id="poison")
    assert poisoned.status == SyncStatus.FAILED
    assert poisoned.last_failed_record["record"]["distinct_id"] == "poison"
    deleted = SyncState.objects.get(distinct_id="gone")
    assert deleted.status == SyncStatus.FAILED
    assert deleted.last_error_code == 400
    assert deleted.last_failed_record["record"] == {"distinct_ids": ["gone"]}
    assert deleted.last_failed_record["code"] == 400
    for state in (poisoned, deleted):
        url = reverse("admin:django_suprsend_syncstate_change", args=[state.pk])
        page = admin_client.get(url).content.decode()
        assert f"{state.last_error_code}" in page
        assert "distinct_id" in page  # the failed record, as the hub returned it
