"""Celery tasks: flush the outbox, sweep it. All idempotent: running one twice,
or on several workers at once, sends each entry once.

The sweep sends entries whose flush task was never enqueued (broker down at
save time) or whose retry is due, and prunes old entries. Celery beat runs it
every ``SWEEP_INTERVAL`` seconds: the app adds it to beat's schedule (see
:mod:`django_suprsend.delivery.beat`).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db.models import Min, Q
from django.utils import timezone

from django_suprsend.conf import suprsend_settings
from django_suprsend.delivery.flush import flush
from django_suprsend.delivery.outbox import claimable
from django_suprsend.delivery.retention import prune
from django_suprsend.models import OutboxEntry

# A flush task gives its worker back after this many seconds and queues a successor.
FLUSH_TIME_BUDGET = 60.0
MIN_RESCHEDULE_SECONDS = 1.0


@shared_task(name="django_suprsend.flush_outbox", ignore_result=True)
def flush_outbox(using: str = "default") -> dict[str, int]:
    """Send every due entry; then queue itself again for the earliest retry, if any.

    Also when the flush fails (a database deadlock, say): its leased entries
    must be flushed again once the lease expires.
    """
    try:
        result = flush(using=using, time_budget=FLUSH_TIME_BUDGET)
    finally:
        _schedule_next(using)
    return vars(result)


@shared_task(name="django_suprsend.sweep", ignore_result=True)
def sweep(using: str = "default") -> dict[str, Any]:
    """Periodic: prune old sent and failed entries (see :mod:`django_suprsend.delivery.retention`),
    and flush what is due (lost tasks, expired leases)."""
    pruned = prune(using=using)
    due = OutboxEntry.objects.using(using).filter(claimable(timezone.now())).exists()
    if due:
        _apply(flush_outbox, using)
    return {
        "pruned": pruned.sent + pruned.failed,
        "pruned_sent": pruned.sent,
        "pruned_failed": pruned.failed,
        "flush_queued": due,
    }


def _schedule_next(using: str) -> None:
    """Queue a flush for the earliest pending retry, so retries need no beat to happen."""
    now = timezone.now()
    pending = OutboxEntry.objects.using(using).filter(status=OutboxEntry.Status.PENDING)
    bounds = pending.aggregate(
        free=Min(
            "next_attempt_at", filter=Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        ),
        # Entries leased to a worker that may have died: due when the lease ends.
        leased=Min("claimed_until", filter=Q(claimed_until__gte=now)),
    )
    due = [at for at in (bounds["free"], bounds["leased"]) if at is not None]
    earliest = min(due) if due else None
    if earliest is not None:
        # At least a second: entries held back behind another worker are due "now".
        delay = max(MIN_RESCHEDULE_SECONDS, (earliest - now).total_seconds())
        _apply(flush_outbox, using, countdown=delay)


def _apply(task: Any, using: str, **options: Any) -> None:
    if suprsend_settings.QUEUE:
        options["queue"] = suprsend_settings.QUEUE
    task.apply_async(kwargs={"using": using}, **options)
