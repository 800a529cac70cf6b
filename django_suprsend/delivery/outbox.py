"""The outbox: enqueue in the caller's transaction, claim under a lease, record outcomes.

Writing (request path): :func:`enqueue` and :func:`enqueue_many` add rows in
the transaction of the save and schedule one flush per transaction with
``transaction.on_commit``: a rolled-back save sends nothing.

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

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connections, models, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from django_suprsend.conf import suprsend_settings
from django_suprsend.models import OutboxEntry

logger = logging.getLogger("django_suprsend.delivery.outbox")

Status = OutboxEntry.Status
Kind = OutboxEntry.Kind

# uuid5 namespace of record $insert_ids: one tag and profile always make the same id.
INSERT_ID_NAMESPACE = uuid.UUID("6f1d9a52-5b3e-4c1e-9a57-0d7c1f0b5e21")

Item = tuple[str, list[dict[str, Any]], list[dict[str, Any]], "models.Model | None"]


# -- writing -------------------------------------------------------------------


def enqueue(
    distinct_id: str,
    operations: list[dict[str, Any]],
    *,
    errors: list[dict[str, Any]] | None = None,
    instance: models.Model | None = None,
    kind: str = Kind.EDIT,
    using: str = "default",
) -> OutboxEntry | None:
    """Queue one change of one profile in the caller's transaction on ``using``.

    Writes nothing when an edit has neither operations nor errors.
    """
    entry = _entry(distinct_id, operations, errors or [], instance, kind)
    if entry is None:
        return None
    entry.save(using=using, force_insert=True)
    schedule_flush(using)
    return entry


def enqueue_many(
    items: Iterable[Item], *, using: str = "default", kind: str = Kind.EDIT, batch_size: int = 1000
) -> int:
    """Queue many changes with ``bulk_create``; returns how many entries were written."""
    entries = [
        entry
        for distinct_id, operations, errors, instance in items
        if (entry := _entry(distinct_id, operations, errors, instance, kind)) is not None
    ]
    if len(entries) == 1:
        _insert_one(entries[0], using)
    elif entries:
        OutboxEntry.objects.using(using).bulk_create(entries, batch_size=batch_size)
    if entries:
        schedule_flush(using)
    return len(entries)


def _insert_one(entry: OutboxEntry, using: str) -> None:
    """One row, the save path's case: a plain INSERT without the ORM's query compiler
    (a third of the cost the mixin adds to a changed save)."""
    connection = connections[using]
    fields = _insert_fields()
    values = [field.get_db_prep_save(field.pre_save(entry, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(connection.ops.quote_name), values)


@functools.cache
def _insert_fields() -> list[models.Field]:
    return [f for f in OutboxEntry._meta.concrete_fields if not f.primary_key]


@functools.cache
def _insert_sql(quote: Callable[[str], str]) -> str:
    columns = ", ".join(quote(field.column) for field in _insert_fields())
    placeholders = ", ".join(["%s"] * len(_insert_fields()))
    table = quote(OutboxEntry._meta.db_table)
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608 - names only


def _entry(
    distinct_id: str,
    operations: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    instance: models.Model | None,
    kind: str,
) -> OutboxEntry | None:
    if kind == Kind.EDIT and not operations and not errors:
        return None
    content_type, object_id = _link(instance)
    return OutboxEntry(
        distinct_id=distinct_id,
        kind=kind,
        operations=operations,
        errors=errors,
        content_type=content_type,
        object_id=object_id,
    )


def _link(instance: models.Model | None) -> tuple[ContentType | None, str]:
    if instance is None or instance.pk is None:
        return None, ""
    # get_for_model is cached per process after the first call: no query on the hot path.
    return ContentType.objects.get_for_model(instance, for_concrete_model=False), str(instance.pk)


def schedule_flush(using: str = "default") -> None:
    """Ask a worker to flush once the current transaction on ``using`` commits.

    Once per transaction: a callback already waiting on the connection is
    enough. Django drops the callbacks of a rolled-back transaction or
    savepoint, so a later enqueue registers a new one.
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        _send_flush_task(using)
        return
    if any(getattr(item[1], "suprsend_flush", False) for item in connection.run_on_commit):
        return

    def flush_after_commit() -> None:
        _send_flush_task(using)

    flush_after_commit.suprsend_flush = True  # type: ignore[attr-defined]
    transaction.on_commit(flush_after_commit, using=using)


class _FlushDebouncer:
    """At most two flush tasks per ``FLUSH_DEBOUNCE`` seconds per process and database.

    The first commit of a window publishes at once (a lone save is sent
    without delay); later commits in the window share one trailing task that
    runs when the window ends, so a burst of saves costs the broker two
    messages, not one per save.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leading: dict[str, float] = {}
        self._trailing: dict[str, float] = {}
        self._suspended_until = 0.0
        self._down = False  # the last publish failed

    def countdown(self, using: str) -> float | None:
        """Seconds to delay a new flush task, or None when none should be sent now."""
        window = suprsend_settings.FLUSH_DEBOUNCE
        now = time.monotonic()
        with self._lock:
            if now < self._suspended_until:
                return None
            leading = self._leading.get(using)
            if leading is None or now - leading >= window:
                self._leading[using] = now
                return 0.0
            end = leading + window
            if self._trailing.get(using) == end:
                return None
            self._trailing[using] = end
            return end - now

    def suspend(self, seconds: float) -> bool:
        """Publish nothing for ``seconds``: the broker is down, and every try would
        hold a save for up to ``PUBLISH_TIMEOUT``. True when this starts an outage
        (the first refusal since the broker last took a task)."""
        with self._lock:
            self._suspended_until = time.monotonic() + seconds
            self._leading.clear()
            self._trailing.clear()
            first, self._down = not self._down, True
            return first

    def recovered(self) -> bool:
        """The broker took a task: True when that ends an outage."""
        with self._lock:
            was_down, self._down = self._down, False
            return was_down

    def reset(self) -> None:
        with self._lock:
            self._leading.clear()
            self._trailing.clear()
            self._suspended_until = 0.0
            self._down = False


debouncer = _FlushDebouncer()


def _send_flush_task(using: str) -> None:
    """Enqueue the flush task within ``PUBLISH_TIMEOUT``; a broker that is down must not
    break the save, nor hold it (see :mod:`django_suprsend.delivery.publish`)."""
    from django_suprsend.delivery.publish import (  # kombu, and Celery: off the import path
        broker_name,
        publish,
    )
    from django_suprsend.delivery.tasks import flush_outbox

    countdown = debouncer.countdown(using)
    if countdown is None:
        return
    options: dict[str, Any] = {}
    if countdown:
        options["countdown"] = countdown
    if suprsend_settings.QUEUE:
        options["queue"] = suprsend_settings.QUEUE
    try:
        publish(flush_outbox, {"using": using}, **options)
    except Exception as exc:  # the broker's errors are many and transport-specific
        pause = suprsend_settings.BROKER_DOWN_PAUSE
        if debouncer.suspend(pause):
            logger.warning(
                "SuprSend: could not enqueue the flush task on the broker %s (%s: %s); the "
                "change is kept in the outbox and will be sent by the periodic sweep or "
                "`manage.py suprsend_flush`. This process sends no flush task for the next %s "
                "seconds, and logs its next failures at DEBUG until the broker takes one again.",
                broker_name(flush_outbox.app),
                type(exc).__name__,
                exc,
                pause,
            )
        else:
            logger.debug("SuprSend: the broker still refuses flush tasks (%s)", exc)
        return
    if debouncer.recovered():
        logger.info("SuprSend: the broker takes flush tasks again")


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
        .values_list(*Entry.__slots__)
    )
    claimed = Claim(token=token, using=using, entries=[Entry(*row) for row in rows], until=until)
    claimed.hold_back_out_of_order()
    return claimed


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
        """Release, per profile, the held entries that come after an unsent one we do not hold."""
        if not self.entries:
            return
        held = {entry.id for entry in self.entries}
        last_held: dict[str, int] = {}
        for entry in self.entries:
            last_held[entry.distinct_id] = entry.id
        blockers: dict[str, int] = {}
        rows = (
            OutboxEntry.objects.using(self.using)
            .filter(
                distinct_id__in=list(last_held),
                status=Status.PENDING,
                id__lt=max(last_held.values()),
            )
            .exclude(claimed_by=self.token)
            .values_list("distinct_id", "id")
        )
        for distinct_id, entry_id in rows.iterator():
            if entry_id not in held and entry_id < last_held[distinct_id]:
                blockers[distinct_id] = min(entry_id, blockers.get(distinct_id, entry_id))
        if not blockers:
            return
        keep = []
        for entry in self.entries:
            first_blocker = blockers.get(entry.distinct_id)
            if first_blocker is not None and entry.id > first_blocker:
                self.released.append(entry.id)
            else:
                keep.append(entry)
        self.entries = keep
        self.release(self.released)

    def release(self, ids: list[int]) -> None:
        """Give entries back unsent (no attempt counted); they lose this claim's tag."""
        if ids:
            OutboxEntry.objects.using(self.using).filter(id__in=ids, claimed_by=self.token).update(
                claimed_by="",
                claimed_until=None,
                insert_id=Case(When(insert_id=self.token, then=Value("")), default=F("insert_id")),
            )

    def by_profile(self) -> dict[str, list[Entry]]:
        groups: dict[str, list[Entry]] = {}
        for entry in self.entries:
            groups.setdefault(entry.distinct_id, []).append(entry)
        return groups


def record_insert_id(tag: str, distinct_id: str) -> str:
    """The ``$insert_id`` of the record of ``distinct_id``'s entries tagged ``tag``."""
    return str(uuid.uuid5(INSERT_ID_NAMESPACE, f"{tag}:{distinct_id}"))


# -- outcomes --------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    base = suprsend_settings.RETRY_BACKOFF
    return min(suprsend_settings.RETRY_BACKOFF_MAX, base * 2 ** max(0, attempts - 1))


def mark_sent(claim_: Claim, entries: list[Entry]) -> None:
    """Delivered: one UPDATE.

    On PostgreSQL by the claim's token (its partial index; the claim then holds
    exactly the delivered entries, failures having been given back first); on
    other databases by primary key, so that the UPDATE locks only its own rows
    (a scan for the token would lock rows another worker is claiming: MariaDB
    deadlocks).
    """
    entries = claim_.still_held(entries)
    if not entries:
        return
    manager = OutboxEntry.objects.using(claim_.using)
    if connections[claim_.using].vendor == "postgresql":
        rows = manager.filter(claimed_by=claim_.token, status=Status.PENDING)
    else:
        rows = manager.filter(id__in=[e.id for e in entries], claimed_by=claim_.token)
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
    rows = OutboxEntry.objects.using(claim_.using).filter(
        id__in=[e.id for e in entries], claimed_by=claim_.token
    )
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
