"""The outbox, read by workers: claim due entries under a lease, record their outcomes.

Entries are written by :mod:`django_suprsend.delivery.enqueue`, in the
caller's transaction.

Reading (workers): :func:`claim` takes due entries under a lease. On
PostgreSQL and MySQL/MariaDB the rows are locked with
``select_for_update(skip_locked=True)`` while the lease is written, so two
workers never claim the same row; on other databases (SQLite) one
``UPDATE ... WHERE id IN (SELECT ... LIMIT n)`` statement claims them, which
the database runs atomically. A worker killed mid-batch leaves a lease that
expires after ``LEASE_SECONDS``; its entries are then claimable again.

Order per profile: a worker only sends a profile's entries up to the first
older unsent entry of that profile it does not hold (held by another
worker, or waiting for its retry), so a profile's changes reach the hub in
commit order, whatever the number of workers.

Same record on retry: a claim tags the entries it takes for the first time
(see :func:`_lease`); a profile's entries with one tag are one record, and
its ``$insert_id`` is derived from the tag. A retry, after a timeout or a
killed worker, resends exactly those entries under the same ``$insert_id``,
so the hub applies them once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, models, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from django_suprsend.conf import suprsend_settings
from django_suprsend.models import NOTIFICATION_KINDS, OutboxEntry, notification_recipients

logger = logging.getLogger("django_suprsend.delivery.outbox")

Status = OutboxEntry.Status
Kind = OutboxEntry.Kind
PROFILE_KINDS = (Kind.EDIT, Kind.DELETE)

# uuid5 namespace of record $insert_ids: one tag and profile always make the same id.
INSERT_ID_NAMESPACE = uuid.UUID("6f1d9a52-5b3e-4c1e-9a57-0d7c1f0b5e21")


# -- writing -------------------------------------------------------------------


# -- claiming ------------------------------------------------------------------


def claimable(now: datetime) -> Q:
    return Q(status=Status.PENDING, next_attempt_at__lte=now) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )


def claim(limit: int, *, using: str = "default", lease_seconds: float | None = None) -> Claim:
    """Claim up to ``limit`` due entries for this worker; see the module docstring."""
    now = timezone.now()
    lease = lease_seconds if lease_seconds is not None else suprsend_settings.LEASE_SECONDS
    token = uuid.uuid4().hex
    until = now + timedelta(seconds=lease)
    manager = OutboxEntry.objects.using(using)
    connection = connections[using]
    with transaction.atomic(using=using):
        if connection.vendor == "postgresql":
            # One statement: lock, skip what others hold, and lease.
            locked = (
                manager.select_for_update(skip_locked=True)
                .filter(claimable(now))
                .order_by("id")
                .values("id")[:limit]
            )
            manager.filter(id__in=locked).update(**_lease(token, until))
        elif connection.features.has_select_for_update_skip_locked:
            # MySQL/MariaDB: no LIMIT inside IN (subquery), so lock first, then lease.
            ids = list(
                manager.select_for_update(skip_locked=True)
                .filter(claimable(now))
                .order_by("id")
                .values_list("id", flat=True)[:limit]
            )
            if ids:
                manager.filter(id__in=ids).update(**_lease(token, until))
        else:
            subquery = manager.filter(claimable(now)).order_by("id").values("id")[:limit]
            manager.filter(id__in=subquery).update(**_lease(token, until))
    rows = (
        manager.filter(claimed_by=token, claimed_until=until, status=Status.PENDING)
        .order_by("id")
        .values_list(*_ENTRY_FIELDS)
    )
    claimed = Claim(token=token, using=using, entries=[Entry(*row) for row in rows], until=until)
    claimed.hold_back_out_of_order()
    return claimed


_ENTRY_FIELDS = (
    "id",
    "distinct_id",
    "kind",
    "operations",
    "errors",
    "content_type_id",
    "object_id",
    "attempts",
    "insert_id",
    "payload",
    "name",
    "idempotency_key",
)


def _lease(token: str, until: datetime) -> dict[str, Any]:
    """The claim's UPDATE: lease the rows, and tag those never tried with the claim.

    The tag (kept in ``insert_id``) names the record an entry goes out in:
    entries of one profile with one tag are one record, whose ``$insert_id``
    is derived from the tag. It is written before anything is sent, so a
    record retried after a timeout or a killed worker is the same record to
    the hub, even if the profile changed meanwhile.
    """
    return {
        "claimed_by": token,
        "claimed_until": until,
        "insert_id": Case(When(insert_id="", then=Value(token)), default=F("insert_id")),
    }


@dataclass(slots=True)
class Entry:
    """A claimed outbox row: just what a flush reads (cheaper than a model instance)."""

    id: int
    distinct_id: str
    kind: str
    operations: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    content_type_id: int | None
    object_id: str
    attempts: int
    insert_id: str  # the tag of the record it goes out in (see _lease)
    payload: Any = None  # a notification's record (or an event's parts)
    name: str = ""  # a notification's workflow or event
    idempotency_key: str = ""

    @property
    def is_notification(self) -> bool:
        return self.kind in NOTIFICATION_KINDS

    @property
    def recipients(self) -> list[str]:
        """The profiles whose earlier changes this entry waits for: its own, or a
        notification's recipients."""
        if self.kind in PROFILE_KINDS:
            return [self.distinct_id]
        return notification_recipients(self.kind, self.payload, self.distinct_id)


@dataclass
class Claim:
    """The entries one worker holds, grouped by profile in commit order."""

    token: str
    using: str
    entries: list[Entry]
    released: list[int] = field(default_factory=list)
    until: datetime | None = None  # the lease's end
    #: Entries this claim no longer holds: its lease ran out and another worker claimed
    #: them, so their outcome is that worker's to write, not this one's.
    lost: set[int] = field(default_factory=set)
    #: Entries held whose outcome is not written yet.
    outstanding: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.outstanding = {entry.id for entry in self.entries}

    def still_held(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` less those lost with the lease (a query only once the lease has run out:
        before that, no other worker can have claimed them)."""
        if self.until is None or timezone.now() < self.until:
            return entries
        ids = set(
            OutboxEntry.objects.using(self.using)
            .filter(id__in=[e.id for e in entries], claimed_by=self.token, status=Status.PENDING)
            .values_list("id", flat=True)
        )
        self._lose(e for e in entries if e.id not in ids)
        return [e for e in entries if e.id in ids]

    def written(self, entries: list[Entry], rows: int) -> None:
        """An outcome UPDATE of ``entries`` changed ``rows`` rows: fewer means that the lease was
        lost meanwhile, and the outcome of all of them is left to the worker that holds them."""
        if rows < len(entries):
            self._lose(entries)

    def _lose(self, entries: Iterable[Entry]) -> None:
        lost = {e.id for e in entries} - self.lost
        if lost:
            self.lost |= lost
            logger.warning(
                "SuprSend outbox: the lease of claim %s ran out while it was sending; %d "
                "entries were claimed again by another worker, which records their outcome",
                self.token,
                len(lost),
            )

    def hold_back_out_of_order(self) -> None:
        """Release the held entries that come after an unsent profile change we do not hold.

        Per profile, a change waits for the profile's older changes; a notification waits
        for the older changes of each of its recipients. Nothing waits for a notification.
        """
        if not self.entries:
            return
        last: dict[str, int] = {}  # per profile, the newest held entry that may wait for it
        for entry in self.entries:
            for distinct_id in entry.recipients:
                last[distinct_id] = max(entry.id, last.get(distinct_id, 0))
        if not last:
            return
        held = {entry.id for entry in self.entries}
        blockers: dict[str, int] = {}
        rows = (
            OutboxEntry.objects.using(self.using)
            .filter(
                distinct_id__in=list(last),
                kind__in=PROFILE_KINDS,
                status=Status.PENDING,
                id__lt=max(last.values()),
            )
            .exclude(claimed_by=self.token)
            .values_list("distinct_id", "id")
        )
        for distinct_id, entry_id in rows.iterator():
            if entry_id not in held and entry_id < last[distinct_id]:
                blockers[distinct_id] = min(entry_id, blockers.get(distinct_id, entry_id))
        if not blockers:
            return
        keep = []
        for entry in self.entries:
            if any(entry.id > blockers.get(d, entry.id) for d in entry.recipients):
                self.released.append(entry.id)
            else:
                keep.append(entry)
        self.entries = keep
        self.release(self.released)

    def release(self, ids: list[int]) -> None:
        """Give entries back unsent (no attempt counted); they lose this claim's tag."""
        self.outstanding.difference_update(ids)
        if ids:
            OutboxEntry.objects.using(self.using).filter(id__in=ids, claimed_by=self.token).update(
                claimed_by="",
                claimed_until=None,
                insert_id=Case(When(insert_id=self.token, then=Value("")), default=F("insert_id")),
            )

    def by_profile(self) -> dict[str, list[Entry]]:
        """The profile changes (not the notifications), per profile in commit order."""
        groups: dict[str, list[Entry]] = {}
        for entry in self.entries:
            if not entry.is_notification:
                groups.setdefault(entry.distinct_id, []).append(entry)
        return groups

    def notifications(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.is_notification]


def record_insert_id(tag: str, distinct_id: str) -> str:
    """The ``$insert_id`` of the record of ``distinct_id``'s entries tagged ``tag``."""
    return str(uuid.uuid5(INSERT_ID_NAMESPACE, f"{tag}:{distinct_id}"))


# -- outcomes --------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    base = suprsend_settings.RETRY_BACKOFF
    return min(suprsend_settings.RETRY_BACKOFF_MAX, base * 2 ** max(0, attempts - 1))


def mark_sent(
    claim_: Claim, entries: list[Entry], *, message_ids: dict[int, str] | None = None
) -> None:
    """Delivered: one UPDATE.

    By the claim's token on PostgreSQL (its partial index) when these are the last
    entries of the claim without an outcome; otherwise by primary key: the claim
    may hold entries still to be sent (the edits after a delete, the notifications
    after the edits), which the token would mark too, and on other databases the
    UPDATE must lock only its own rows (a scan for the token would lock rows
    another worker is claiming: MariaDB deadlocks). ``message_ids`` are the hub's
    ids of delivered notifications, by entry id.
    """
    entries = claim_.still_held(entries)
    if not entries:
        return
    ids = [e.id for e in entries]
    manager = OutboxEntry.objects.using(claim_.using)
    if connections[claim_.using].vendor == "postgresql" and claim_.outstanding == set(ids):
        # Nothing else of the claim is left to write: its token's partial index finds them.
        rows = manager.filter(claimed_by=claim_.token, status=Status.PENDING)
    else:
        rows = manager.filter(id__in=ids, claimed_by=claim_.token)
    claim_.outstanding.difference_update(ids)
    written = rows.update(
        status=Status.SENT,
        sent_at=timezone.now(),
        claimed_by="",
        claimed_until=None,
        last_error="",
        last_error_code=None,
        attempts=models.F("attempts") + 1,
    )
    claim_.written(entries, written)
    if message_ids:
        _write_message_ids(claim_.using, message_ids)


def _write_message_ids(using: str, message_ids: dict[int, str]) -> None:
    """The hub's id of each delivered notification: on PostgreSQL one ``UPDATE ... FROM
    (VALUES ...)``, elsewhere one prepared UPDATE run for each row; both far cheaper
    than one UPDATE with a CASE of thousands."""
    connection = connections[using]
    quote = connection.ops.quote_name
    table, column, pk = quote(OutboxEntry._meta.db_table), quote("message_id"), quote("id")
    items = list(message_ids.items())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for start in range(0, len(items), 5000):
                chunk = items[start : start + 5000]
                values = ", ".join(["(%s::bigint, %s)"] * len(chunk))
                cursor.execute(
                    f"UPDATE {table} SET {column} = v.m FROM (VALUES {values}) AS v(i, m) "  # noqa: S608 - names and placeholders only
                    f"WHERE {table}.{pk} = v.i",
                    [x for pair in chunk for x in pair],
                )
        else:
            sql = f"UPDATE {table} SET {column} = %s WHERE {pk} = %s"  # noqa: S608 - names only
            cursor.executemany(sql, [(mid, entry_id) for entry_id, mid in items])


def mark_failed(
    claim_: Claim,
    entries: list[Entry],
    *,
    error: str,
    code: int | None,
    retryable: bool,
    not_before: float | None = None,
) -> bool:
    """A failed attempt; returns True when the entries will be tried again.

    Retryable failures go back to pending with a backoff (at least
    ``not_before`` seconds: the hub's ``Retry-After``), until ``MAX_ATTEMPTS``;
    permanent ones (and exhausted ones) are failed for good, with
    ``next_attempt_at`` set to that moment (the sweep prunes them
    ``KEEP_FAILED_DAYS`` later). The entries keep their tag, so that their retry
    is the same record to the hub.
    """
    entries = claim_.still_held(entries)
    if not entries:
        return False
    attempts = max(entry.attempts for entry in entries) + 1
    again = retryable and attempts < suprsend_settings.MAX_ATTEMPTS
    wait = max(backoff_seconds(attempts), not_before or 0) if again else 0.0
    status = Status.PENDING if again else Status.FAILED
    written = _give_back(claim_, entries, status, wait, error, code, attempts=attempts)
    for entry in entries:
        entry.attempts = attempts
    return again and written == len(entries)


def mark_held(claim_: Claim, entries: list[Entry], *, error: str, code: int, wait: float) -> None:
    """Not sent because the hub refused the credentials (``401``/``403``): not the entries'
    fault, so they go back to pending after ``wait`` seconds with their attempts as they
    were (an outage of the credentials never makes them fail), and keep their tag."""
    entries = claim_.still_held(entries)
    if entries:
        _give_back(claim_, entries, Status.PENDING, wait, error, code)


def _give_back(
    claim_: Claim,
    entries: list[Entry],
    status: str,
    wait: float,
    error: str,
    code: int | None,
    **values: Any,
) -> int:
    """Write a failed attempt's outcome on the entries this claim still holds; the rows written."""
    ids = [e.id for e in entries]
    claim_.outstanding.difference_update(ids)
    rows = OutboxEntry.objects.using(claim_.using).filter(id__in=ids, claimed_by=claim_.token)
    written = rows.update(
        status=status,
        next_attempt_at=timezone.now() + timedelta(seconds=wait),
        claimed_by="",
        claimed_until=None,
        last_error=error[:4000],
        last_error_code=code,
        **values,
    )
    claim_.written(entries, written)
    return written
