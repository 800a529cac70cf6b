"""The hub refusing the credentials (``401``/``403``): an outage, not a verdict on the records.

A secret rotated in the dashboard and not yet deployed everywhere, a proxy
that answers for the hub, or a worker whose clock is far enough off that the
hub refuses the signed ``Date`` all look the same: every request is refused,
whatever it holds. So the records of a refused request are not failed: the
flush gives their entries back to pending (:func:`retry_wait` seconds later,
their attempts as they were), and the outage is kept in one
:class:`~django_suprsend.models.CredentialsOutage` row that

- the admin's summary shows, with what to check;
- lets the workers log one ERROR per ``CREDENTIALS_LOG_INTERVAL`` seconds
  between them all (:func:`report`), not one per flush or record;
- the first request the hub accepts again deletes (:func:`accepted`), which
  also makes the entries that wait for it due at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.timesince import timesince

from django_suprsend.conf import suprsend_settings
from django_suprsend.models import CredentialsOutage, OutboxEntry
from django_suprsend.wire.answers import AUTH_ERRORS

logger = logging.getLogger("django_suprsend.delivery.outage")

#: The longest wait (seconds) between two tries while the hub refuses the credentials: once
#: the settings or the clock are fixed, the queue moves again within this time at most.
RETRY_MAX = 300.0

#: What to check when the hub refuses the credentials (logs, the admin, the backfill).
WHAT_TO_CHECK = (
    "Check SUPRSEND['WORKSPACE_KEY'] and SUPRSEND['WORKSPACE_SECRET'] (or "
    "SUPRSEND['API_KEY']) against the SuprSend dashboard (a secret rotated there but not "
    "yet deployed to every worker?), any proxy between the workers and the hub, and the "
    "workers' clocks: the hub refuses a signed request whose Date is far from its own "
    "clock (run NTP)."
)


def current(*, using: str = "default") -> CredentialsOutage | None:
    """The outage going on, or None."""
    return CredentialsOutage.objects.using(using).filter(pk=CredentialsOutage.ID).first()


def refused(status: int, error: str, *, using: str = "default") -> datetime:
    """The hub refused a request's credentials: start or extend the outage; returns when it
    began. ``error`` must have its credentials masked (the client's errors do)."""
    now = timezone.now()
    manager = CredentialsOutage.objects.using(using)
    row = manager.filter(pk=CredentialsOutage.ID)
    seen = {"status_code": status, "error": error[:4000], "last_seen_at": now}
    if not row.update(refusals=F("refusals") + 1, **seen):
        try:
            with transaction.atomic(using=using):
                manager.create(pk=CredentialsOutage.ID, first_seen_at=now, refusals=1, **seen)
        except IntegrityError:  # another worker started it meanwhile
            row.update(refusals=F("refusals") + 1, **seen)
    return row.values_list("first_seen_at", flat=True).first() or now


def retry_wait(first_seen_at: datetime, now: datetime | None = None) -> float:
    """Seconds before the refused entries are tried again: as long as the outage has lasted
    (the waits double while it lasts), at least ``RETRY_BACKOFF``, at most ``RETRY_BACKOFF_MAX``
    and :data:`RETRY_MAX`."""
    lasted = ((now or timezone.now()) - first_seen_at).total_seconds()
    wait = max(suprsend_settings.RETRY_BACKOFF, lasted)
    return min(wait, suprsend_settings.RETRY_BACKOFF_MAX, RETRY_MAX)


def report(held: int, wait: float, *, using: str = "default") -> None:
    """Log the outage: as an ERROR if no worker has done so in the last
    ``CREDENTIALS_LOG_INTERVAL`` seconds, else at DEBUG. ``held``: the profiles this flush
    gave back; ``wait``: the seconds until they are tried again."""
    now = timezone.now()
    interval = suprsend_settings.CREDENTIALS_LOG_INTERVAL
    due = Q(logged_at__isnull=True) | Q(logged_at__lte=now - timedelta(seconds=interval))
    rows = CredentialsOutage.objects.using(using).filter(pk=CredentialsOutage.ID)
    turn = rows.filter(due).update(logged_at=now) == 1  # one worker wins each period
    outage = rows.first()
    if outage is None:  # a request was accepted meanwhile
        return
    level = logging.ERROR if turn else logging.DEBUG
    logger.log(
        level,
        "SuprSend: the hub refused the credentials (HTTP %d) on every request for %s "
        "(%d refused requests); nothing is delivered until it accepts them again. The changes "
        "stay queued, none is marked failed: %d profiles of this flush are tried again in "
        "%.0fs. %s The hub answered: %s. (Logged once every %.0f minutes while it lasts.)",
        outage.status_code,
        lasted(outage.first_seen_at, now),
        outage.refusals,
        held,
        wait,
        WHAT_TO_CHECK,
        outage.error,
        interval / 60,
    )


def accepted(*, using: str = "default") -> None:
    """The hub accepted a request: end the outage, if there was one, and make the entries
    that wait for it due now. One SELECT when there was none."""
    outage = current(using=using)
    if outage is None:
        return
    now = timezone.now()
    # Unless another worker was refused since we looked: the newest answer wins.
    ended, _ = (
        CredentialsOutage.objects.using(using)
        .filter(pk=outage.pk, last_seen_at=outage.last_seen_at)
        .delete()
    )
    if not ended:
        return
    due = (
        OutboxEntry.objects.using(using)
        .filter(
            status=OutboxEntry.Status.PENDING,
            last_error_code__in=AUTH_ERRORS,
            next_attempt_at__gt=now,
        )
        .update(next_attempt_at=now)
    )
    logger.warning(
        "SuprSend: the hub accepts the credentials again, after refusing them (HTTP %d) for "
        "%s; %d queued entries that waited for it are due now.",
        outage.status_code,
        lasted(outage.first_seen_at, now),
        due,
    )


def lasted(since: datetime, now: datetime) -> str:
    """How long since ``since``: in seconds under a minute, else as ``timesince`` says."""
    seconds = (now - since).total_seconds()
    return f"{seconds:.0f} seconds" if seconds < 60 else timesince(since, now)
