"""Pruning the outbox: sent entries after ``KEEP_SENT_DAYS``, failed ones after
``KEEP_FAILED_DAYS`` (days since they were sent, or failed for good).

Run by the sweep. A failed entry takes nothing with it that the admin needs: the
profile's ``SyncState`` keeps the last error, its code and the failed record,
and the "Retry failed profiles" action queues a fresh full push rather than the
old entries. Pending entries are never pruned.

Rows go in batches of :data:`BATCH` by primary key, so that a first sweep over a
large backlog neither holds one long lock nor loads the rows into memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from django_suprsend.conf import suprsend_settings
from django_suprsend.models import OutboxEntry

BATCH = 5000

Status = OutboxEntry.Status


@dataclass(frozen=True)
class Pruned:
    sent: int = 0
    failed: int = 0


def prune(*, using: str = "default", now: datetime | None = None) -> Pruned:
    """Delete the sent and failed entries older than their retention; returns how many."""
    now = now or timezone.now()
    manager = OutboxEntry.objects.using(using)
    sent = failed = 0
    if (days := suprsend_settings.KEEP_SENT_DAYS) is not None:
        cutoff = now - timedelta(days=days)
        sent = _delete(manager.filter(status=Status.SENT, sent_at__lt=cutoff))
    if (days := suprsend_settings.KEEP_FAILED_DAYS) is not None:
        # A failed entry's next_attempt_at is when it failed for good (see mark_failed).
        cutoff = now - timedelta(days=days)
        failed = _delete(manager.filter(status=Status.FAILED, next_attempt_at__lt=cutoff))
    return Pruned(sent=sent, failed=failed)


def _delete(rows: QuerySet[OutboxEntry]) -> int:
    deleted = 0
    while ids := list(rows.order_by("id").values_list("id", flat=True)[:BATCH]):
        deleted += rows.model._base_manager.using(rows.db).filter(id__in=ids).delete()[0]
        if len(ids) < BATCH:
            break
    return deleted
