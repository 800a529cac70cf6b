"""The logic of ``manage.py suprsend_backfill``: push existing rows' full profiles, resumably.

Rows are read in batches by keyset pagination on the primary key (never all
at once), without the change-tracking snapshot; each batch's records are
built by ``build_suprsend_profile()`` (the code path of a first save) and
sent with the shared client, or queued in the outbox (``via_workers``).
Sending is a pipeline: batch N+1 is read and built while batch N is on the
wire (from a thread) and batch N-1's SyncStates are written (from another
thread with its own connection, on PostgreSQL and MySQL outside a
transaction). After each batch whose records were all delivered or recorded
as failed, in order, a :class:`~django_suprsend.models.BackfillCheckpoint`
remembers the last primary key, so a killed run resumes after it. A
record's ``$insert_id`` is ``uuid5(run_id:distinct_id)``: a batch sent again
after a kill is the same record to the hub. ``jobs`` > 1 splits a run over
forked processes, each with a range of its own (:mod:`.backfill_jobs`).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connections, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from django_suprsend.checks import profile_models
from django_suprsend.delivery import outage, outbox
from django_suprsend.delivery.enqueue import enqueue_many
from django_suprsend.delivery.shared_client import get_client
from django_suprsend.delivery.sync_state import (
    Outcome,
    record,
    record_synced,
    refused,
    validation_message,
)
from django_suprsend.exceptions import error_dict
from django_suprsend.models import BackfillCheckpoint, SyncState, SyncStatus
from django_suprsend.profiles.builder import distinct_id_of
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.profiles.refusal import profile_key, refusal
from django_suprsend.profiles.snapshot import untracked_loads
from django_suprsend.wire.bulk import BulkResponse
from django_suprsend.wire.client import AUTH_ERRORS, SuprsendClient
from django_suprsend.wire.operations import CHANNEL_KEYS, build_record, insert_id_namer
from django_suprsend.wire.splitting import split_record

__all__ = [
    "BackfillError",
    "Options",
    "Stats",
    "filter_operations",
    "insert_id_for",
    "resolve_models",
    "run",
]

#: The namespace of the backfill's ``$insert_id`` (uuid5 of ``f"{run_id}:{distinct_id}"``).
INSERT_ID_NAMESPACE = uuid.UUID("8f3c4f52-6a0e-4b0c-9a55-5b1f2b7d0c11")
SINCE_FIELDS = ("date_joined", "updated_at", "modified")
INVALID_SHOWN = 10
#: Allocations between two young-generation collections during a run (CPython's default: 700).
GC_THRESHOLD = 100_000
_In = TypeVar("_In")
_Out = TypeVar("_Out")


class BackfillError(Exception):
    """A usage error: an unknown model, a bad option value."""


class BackfillFailed(Exception):
    """A process of a ``--jobs`` run failed; the run stops and resumes on the next invocation."""


@dataclass
class Options:
    batch_size: int = 1000
    since: str | None = None
    filters: list[str] = field(default_factory=list)  # "field=value"
    ids: str | None = None  # "1,2,3"
    only_failed: bool = False
    dry_run: bool = False
    channels_only: bool = False
    properties_only: bool = False
    via_workers: bool = False
    restart: bool = False
    database: str = "default"
    jobs: int = 1  # processes that send parts of the selection at once

    def selection(self) -> dict[str, Any]:
        """The options that change which rows are read or what their records hold."""
        return {
            "since": self.since,
            "filters": sorted(self.filters),
            "ids": self.ids,
            "only_failed": self.only_failed,
            "channels_only": self.channels_only,
            "properties_only": self.properties_only,
        }


@dataclass
class Stats:
    """What one invocation did for one model (or, summed, for all)."""

    rows: int = 0  # rows read (after --only-failed)
    sent: int = 0  # delivered (or queued, with via_workers) with nothing refused
    failed: int = 0  # not delivered, or with refused values (their SyncState is failed)
    skipped: int = 0  # should_sync_to_suprsend() false, no distinct_id or nothing to send
    invalid: list[tuple[Any, str, str]] = field(default_factory=list)  # (pk, distinct_id, msg)
    invalid_count: int = 0
    resumed_after: str | None = None
    refused_credentials: int = 0  # failed because the hub refused the credentials (401/403)

    def add(self, other: Stats) -> None:
        self.rows += other.rows
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped
        self.invalid_count += other.invalid_count
        self.refused_credentials += other.refused_credentials
        self.invalid.extend(other.invalid[: INVALID_SHOWN - len(self.invalid)])


# -- selection ----------------------------------------------------------------------


def resolve_models(labels: list[str]) -> list[type[models.Model]]:
    """The models named ``app_label.ModelName``; default: every concrete profile model."""
    if not labels:
        return [m for m in profile_models() if not m._meta.proxy and not m._meta.abstract]
    found = []
    for label in labels:
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            raise BackfillError(f"Unknown model {label!r}: use app_label.ModelName.") from None
        if not issubclass(model, SuprsendProfileMixin):
            raise BackfillError(f"{label} does not use SuprsendProfileMixin.")
        found.append(model)
    return found


def since_field(model: type[models.Model]) -> str:
    """The field ``--since`` compares: ``suprsend_backfill_since_field`` or a usual one."""
    names = {f.name for f in model._meta.concrete_fields}
    declared = getattr(model, "suprsend_backfill_since_field", None)
    if declared:
        if declared not in names:
            raise BackfillError(
                f"{model._meta.label}.suprsend_backfill_since_field is {declared!r}, "
                "which is not a field."
            )
        return declared
    for name in SINCE_FIELDS:
        if name in names:
            return name
    raise BackfillError(
        f"--since: {model._meta.label} has none of the fields {', '.join(SINCE_FIELDS)}; "
        "set suprsend_backfill_since_field on the model."
    )


def _since_value(model: type[models.Model], name: str, text: str) -> Any:
    try:
        value: Any = parse_datetime(text) or parse_date(text)
    except ValueError:
        value = None
    if value is None:
        raise BackfillError(f"--since {text!r} is not an ISO date or datetime.")
    is_datetime_field = isinstance(model._meta.get_field(name), models.DateTimeField)
    if not isinstance(value, datetime.datetime) and is_datetime_field:
        value = datetime.datetime.combine(value, datetime.time.min)
    if isinstance(value, datetime.datetime) and settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value


def _filter_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def queryset(model: type[models.Model], options: Options) -> models.QuerySet:
    """The rows to push, unordered and unsliced."""
    qs = model._default_manager.db_manager(options.database).all()
    if options.since:
        name = since_field(model)
        qs = qs.filter(**{f"{name}__gte": _since_value(model, name, options.since)})
    lookups = {}
    for item in options.filters:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BackfillError(f"--filter {item!r}: use field=value.")
        lookups[name.strip()] = _filter_value(value)
    if options.ids:
        pk = model._meta.pk
        try:
            lookups["pk__in"] = [pk.to_python(i.strip()) for i in options.ids.split(",") if i]
        except Exception as exc:
            raise BackfillError(f"--ids {options.ids!r}: {exc}") from None
    try:
        qs = qs.filter(**lookups)
        str(qs.query)  # unknown fields and bad lookups fail here, not mid-run
    except Exception as exc:
        raise BackfillError(f"--filter: {exc}") from None
    select = getattr(model, "suprsend_select_related", None)
    if select:
        qs = qs.select_related(*select)
    prefetch = getattr(model, "suprsend_prefetch_related", None)
    if prefetch:
        qs = qs.prefetch_related(*prefetch)
    return qs


def batches(qs: models.QuerySet, last_pk: Any, size: int) -> Iterator[list[models.Model]]:
    """``qs`` in lists of ``size`` rows, after ``last_pk`` (keyset pagination on the pk).

    The rows get no change-tracking snapshot: they are read only to build full pushes.
    """
    while True:
        page = qs if last_pk is None else qs.filter(pk__gt=last_pk)
        with untracked_loads():
            rows = list(page.order_by("pk")[:size])
        if not rows:
            return
        last_pk = rows[-1].pk
        yield rows
        if len(rows) < size:
            return


# -- records ------------------------------------------------------------------------


def insert_id_for(run_id: str, distinct_id: str) -> str:
    """The ``$insert_id`` of ``distinct_id``'s record in run ``run_id``."""
    return _insert_ids(run_id)(distinct_id)


def _insert_ids(run_id: str) -> Callable[[str], str]:
    """:func:`insert_id_for` of one run, for many distinct_ids (the run's prefix hashed once)."""
    return insert_id_namer(INSERT_ID_NAMESPACE, f"{run_id}:")


def _is_property_op(operation: dict[str, Any]) -> bool:
    return set(operation) == {"$set"}


def filter_operations(
    operations: list[dict[str, Any]], errors: list[dict[str, str]], options: Options
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Only channel ``$append`` operations, or only ``$set`` of properties/language/time zone."""
    if options.channels_only:
        return (
            [op for op in operations if set(op) == {"$append"}],
            [e for e in errors if e.get("field") in CHANNEL_KEYS],
        )
    if options.properties_only:
        return (
            [op for op in operations if _is_property_op(op)],
            [e for e in errors if e.get("field") not in CHANNEL_KEYS],
        )
    return operations, errors


@dataclass(slots=True)
class _Row:
    instance: models.Model
    distinct_id: str
    operations: list[dict[str, Any]]
    errors: list[dict[str, str]]
    record: dict[str, Any] | None = None


@dataclass
class _Batch:
    """One page of rows on its way: built, then sent (or queued), then recorded."""

    rows: list[_Row]
    last_pk: Any  # the page's last primary key: where the checkpoint moves once it is done
    read: int  # rows read, before --only-failed
    stats: Stats  # what happened to this batch's rows


RecordBuilder = Callable[[str, list[dict[str, Any]]], dict[str, Any]]


def _record_builder(client: SuprsendClient | None, run_id: str) -> RecordBuilder:
    """Builds a row's record, with the ``$insert_id`` of this run (a dry run needs no client)."""

    insert_id_of = _insert_ids(run_id)

    def build(distinct_id: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        insert_id = insert_id_of(distinct_id)
        if client is None:
            return build_record(
                distinct_id, operations, env="", sdk_version="", insert_id=insert_id
            )
        return client.build_record(distinct_id, operations, insert_id=insert_id)

    return build


def _row(instance: Any, options: Options) -> _Row | None:
    """The row's full push (as its first save builds it), or None when it is skipped; a row
    whose push cannot be built is its refusal (as for a save), never the run's end."""
    try:
        return _built_row(instance, options)
    except Exception as exc:
        refused = refusal(instance, exc)
        return None if refused is None else _Row(instance, refused[0], [], [refused[1]])


def _built_row(instance: Any, options: Options) -> _Row | None:
    if not instance.should_sync_to_suprsend():
        return None
    distinct_id = distinct_id_of(instance)
    if distinct_id is None:
        return None
    operations, errors = filter_operations(*instance.build_suprsend_profile(), options)
    if not operations and not errors:
        return None
    return _Row(instance, distinct_id, operations, list(errors))


def _prepare(
    rows: list[models.Model], options: Options, build: RecordBuilder, stats: Stats
) -> list[_Row]:
    """Build each row's record; count the skipped rows.

    A dry run checks each record's size here; a send leaves that to the client,
    which reports a record too big as failed without sending it (as for the flush).
    """
    prepared = []
    for instance in rows:
        row = _row(instance, options)
        if row is None:
            stats.skipped += 1
            continue
        if row.operations and not options.via_workers:
            row.record = build(row.distinct_id, row.operations)
            if options.dry_run:
                _check_size(row)
        prepared.append(row)
    return prepared


def _check_size(row: _Row) -> None:
    """What a send would refuse of the row's record: the values that fit in no record (a
    record over the limit is sent in parts)."""
    assert row.record is not None
    parts, refused = split_record(row.record)
    row.errors.extend(error_dict(exc) for exc in refused)
    if not parts:
        row.record = None


def _built_batches(
    qs: models.QuerySet, last_pk: Any, options: Options, build: RecordBuilder
) -> Iterator[_Batch]:
    """The selected rows, read page by page after ``last_pk``, with their records built."""
    for rows in batches(qs, last_pk, options.batch_size):
        batch = _Batch([], rows[-1].pk, len(rows), Stats())
        if options.only_failed:
            rows = _only_failed(rows, options.database)
        batch.stats.rows = len(rows)
        batch.rows = _prepare(rows, options, build, batch.stats)
        yield batch


def _only_failed(rows: list[models.Model], using: str) -> list[models.Model]:
    ids = {row.pk: profile_key(row) for row in rows}  # a refused id: refused again when built
    failed = _failed_ids([d for d in ids.values() if d is not None], using)
    return [row for row in rows if ids[row.pk] in failed]


# -- sending ------------------------------------------------------------------------


class _Stage(Generic[_In, _Out]):
    """One step of the run, done for one item at a time while the caller goes on.

    ``swap(item)`` waits for the item in flight, starts ``item`` and returns the
    finished item's result: the caller builds the next item meanwhile, items go
    in order, and an item whose step raises stops the run before the next one
    starts. Without ``thread_name`` the step runs at once in the caller's thread.
    ``cleanup`` runs last in the worker thread (to close its database connections).
    """

    def __init__(
        self,
        step: Callable[[_In], _Out],
        thread_name: str | None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self._step = step
        self._cleanup = cleanup
        self._pool = None if thread_name is None else ThreadPoolExecutor(1, thread_name)
        self._in_flight: Future[_Out] | None = None

    def swap(self, item: _In | None) -> _Out | None:
        in_flight, self._in_flight = self._in_flight, None
        result = None if in_flight is None else in_flight.result()
        if item is not None:
            self._in_flight = self._start(item)
        return result

    def _start(self, item: _In) -> Future[_Out]:
        if self._pool is not None:
            return self._pool.submit(self._step, item)
        future: Future[_Out] = Future()
        future.set_result(self._step(item))
        return future

    def close(self) -> None:
        """Let the item in flight finish (it may already be on the wire), then end the thread."""
        if self._pool is None:
            return
        if self._cleanup is not None:
            self._pool.submit(self._cleanup)
        self._pool.shutdown(wait=True)


Sent = tuple[_Batch, BulkResponse | None]  # a batch and what the hub answered for it
Done = Callable[[int, Stats], None]  # (rows read, what happened to them) for each batch done


def _send(client: SuprsendClient, batch: _Batch) -> Sent:
    records = [row.record for row in batch.rows if row.record is not None]
    return batch, client.send_records(records, split_oversize=True) if records else None


def _entry(row: _Row, content_type_id: int) -> outbox.Entry:
    """A stand-in outbox entry, so that :func:`sync_state.record` can write the outcome."""
    return outbox.Entry(
        id=0,
        distinct_id=row.distinct_id,
        kind=outbox.OutboxEntry.Kind.EDIT,
        operations=[],
        errors=[],
        content_type_id=content_type_id,
        object_id=str(row.instance.pk),
        attempts=1,
        insert_id="",
    )


def _failed(
    row: _Row, failure: dict[str, Any] | None, code: int | None, content_type_id: int
) -> Outcome:
    """The outcome of a row not delivered whole (``failure``: the hub's, if it was not sent;
    ``code``: what ``last_error_code`` keeps for it)."""
    entries = [_entry(row, content_type_id)]
    if failure is None:
        # Refused values: the valid ones (if any) went, the profile is failed until fixed.
        return refused(entries, row.errors, row.record, delivered=row.record is not None)
    error = str(failure["error"])
    failed_record = {"record": failure["record"], "error": error, "code": failure["code"]}
    return Outcome(entries, SyncStatus.FAILED, error=error, code=code, failed_record=failed_record)


def _recorder(
    content_type_id: int, checkpoint: BackfillCheckpoint, using: str
) -> Callable[[Sent], _Batch]:
    """Records a sent batch, then moves the checkpoint past it."""

    def record_batch(sent: Sent) -> _Batch:
        batch, response = sent
        _record_sent(batch, response, content_type_id, using)
        _advance(checkpoint, batch, using)
        return batch

    return record_batch


def _record_sent(
    batch: _Batch, response: BulkResponse | None, content_type_id: int, using: str
) -> None:
    """Record every row's outcome on its SyncState and count it."""
    failures: dict[Any, dict[str, Any]] = {}
    codes: dict[int, int] = {}
    if response is not None:
        failures = response.failures_by_record()
        codes = response.stored_codes()
    synced, failed = [], []
    for row in batch.rows:
        failure = None if row.record is None else failures.get(row.record["$insert_id"])
        if row.record is not None and response is not None:
            too_big = response.refused_values.get(row.record["$insert_id"], [])
            row.errors.extend(error_dict(exc) for exc in too_big)
        if row.record is not None and failure is None and not row.errors:
            synced.append((row.distinct_id, content_type_id, str(row.instance.pk)))
        else:
            code = None if failure is None else codes[id(failure)]
            failed.append(_failed(row, failure, code, content_type_id))
    batch.stats.sent += len(synced)
    batch.stats.failed += len(failed)
    refusals = [f for f in failures.values() if f.get("code") in AUTH_ERRORS]
    batch.stats.refused_credentials += len(refusals)
    record_synced(synced, using=using)
    record(failed, using=using)
    # The outage the admin shows: the workers are refused the same credentials (the run
    # itself reports it, and its rows failed: only running it again sends them).
    if refusals:
        outage.refused(refusals[0]["code"], str(refusals[0]["error"]), using=using)
    elif synced:
        outage.accepted(using=using)


def _send_all(
    built: Iterator[_Batch],
    client: SuprsendClient,
    record_batch: Callable[[Sent], _Batch],
    using: str,
    done: Done,
) -> None:
    """Send and record batch after batch, in order, each step while the next batch is built.

    Batch N+1 is read and built while batch N is on the wire and batch N-1's
    SyncStates are written: at most one batch in each step. The sending thread
    only speaks HTTP; the recording one (see :func:`_records_in_thread`) has its
    own database connection, which it closes at the end.
    """
    sender = _Stage(functools.partial(_send, client), "suprsend-backfill-send")
    in_thread = _records_in_thread(using)
    recorder = _Stage(
        record_batch,
        "suprsend-backfill-record" if in_thread else None,
        cleanup=connections.close_all,
    )
    with contextlib.closing(sender), contextlib.closing(recorder):
        # Two Nones after the last batch: one drains the sender, the next the recorder.
        for batch in itertools.chain(built, [None, None]):
            recorded = recorder.swap(sender.swap(batch))
            if recorded is not None:
                done(recorded.read, recorded.stats)


def _records_in_thread(using: str) -> bool:
    """Whether SyncStates are written from a thread of their own.

    Not inside a transaction (the writes must stay in it, where the checkpoint
    row may not even be visible to another connection), nor on SQLite, whose
    writers lock out each other and which runs in this process anyway.
    """
    connection = connections[using]
    return connection.vendor != "sqlite" and not connection.in_atomic_block


def _queue(batch: _Batch, using: str) -> None:
    """Queue the batch in the outbox (the workers send it and keep the SyncStates)."""
    items = [(row.distinct_id, row.operations, row.errors, row.instance) for row in batch.rows]
    enqueue_many(items, using=using)
    batch.stats.sent += len(items)


def _validate(batch: _Batch) -> None:
    """Dry run: count what would go, keep the first invalid rows with their messages."""
    stats = batch.stats
    for row in batch.rows:
        if not row.errors:
            stats.sent += 1
            continue
        stats.failed += 1
        stats.invalid_count += 1
        if len(stats.invalid) < INVALID_SHOWN:
            stats.invalid.append((row.instance.pk, row.distinct_id, validation_message(row.errors)))


# -- a run --------------------------------------------------------------------------


def checkpoint_key(model: type[models.Model], options: Options) -> str:
    digest = hashlib.sha256(json.dumps(options.selection(), sort_keys=True).encode()).hexdigest()[
        :16
    ]
    return f"{model._meta.label}:{digest}"


def _checkpoint(model: type[models.Model], options: Options) -> BackfillCheckpoint:
    """The run to continue, or a new one (after ``restart`` or a finished run)."""
    manager = BackfillCheckpoint.objects.using(options.database)
    checkpoint, created = manager.get_or_create(
        key=checkpoint_key(model, options), defaults={"run_id": uuid.uuid4().hex}
    )
    if not created and (options.restart or checkpoint.finished_at is not None):
        now = timezone.now()
        checkpoint.last_pk = ""
        checkpoint.run_id = uuid.uuid4().hex
        checkpoint.sent = checkpoint.failed = checkpoint.skipped = 0
        checkpoint.started_at = checkpoint.updated_at = now
        checkpoint.finished_at = None
        checkpoint.save(using=options.database)
        checkpoint.parts.all().delete()  # the split of the run it replaces
    return checkpoint


def _failed_ids(distinct_ids: list[str], using: str) -> set[str]:
    return set(
        SyncState.objects.using(using)
        .filter(status=SyncStatus.FAILED, distinct_id__in=distinct_ids)
        .values_list("distinct_id", flat=True)
    )


def count(model: type[models.Model], options: Options) -> int:
    """The rows of the selection (one COUNT, for the progress report)."""
    return queryset(model, options).count()


Progress = Callable[[int, Stats], None]  # (rows read in this batch, running stats)


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    """Fewer garbage collections during a run, none of them over the objects that exist already.

    A row costs some 50 short-lived objects, which reference counting frees:
    at CPython's default threshold a collection ran every ~14 rows and every
    tenth one walked Django's whole heap, a quarter of the command's time.
    Cycles still get collected, only later (bounded by ``GC_THRESHOLD``).
    """
    thresholds = gc.get_threshold()
    gc.freeze()  # what exists now (Django, the settings, the app registry) is never walked
    gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def run(
    model: type[models.Model],
    options: Options,
    *,
    progress: Progress | None = None,
    client: SuprsendClient | None = None,
) -> Stats:
    """Push ``model``'s selected rows; returns what this invocation did."""
    with _rare_collections():
        return _run(model, options, progress, client)


def _run(
    model: type[models.Model],
    options: Options,
    progress: Progress | None,
    client: SuprsendClient | None,
) -> Stats:
    check_options(options)
    qs = queryset(model, options)
    stats = Stats()

    def done(read: int, batch_stats: Stats) -> None:
        stats.add(batch_stats)
        if progress is not None:
            progress(read, stats)

    if options.dry_run:
        for batch in _built_batches(qs, None, options, _record_builder(None, uuid.uuid4().hex)):
            _validate(batch)
            done(batch.read, batch.stats)
        return stats
    checkpoint = _checkpoint(model, options)
    stats.resumed_after = checkpoint.last_pk or None
    from django_suprsend.backfill import jobs as backfill_jobs  # it builds on this module

    if options.jobs > 1 or backfill_jobs.unfinished_parts(checkpoint, options.database):
        backfill_jobs.send_in_parts(model, qs, checkpoint, options, stats, done)
    else:
        send_range(model, qs, checkpoint, options, client, done)
    finish(checkpoint, options.database)
    return stats


def check_options(options: Options) -> None:
    """Refuse option values that cannot work together, before anything is read."""
    if options.batch_size < 1:
        raise BackfillError("--batch-size must be at least 1.")
    if options.jobs < 1:
        raise BackfillError("--jobs must be at least 1.")
    if options.channels_only and options.properties_only:
        raise BackfillError("--channels-only and --properties-only exclude each other.")
    if options.jobs > 1 and (options.dry_run or options.via_workers):
        raise BackfillError("--jobs splits direct sends: not with --dry-run or --via-workers.")
    if options.jobs > 1 and connections[options.database].in_atomic_block:
        raise BackfillError(
            "--jobs needs autocommit: other processes cannot see this transaction's rows."
        )


def send_range(
    model: type[models.Model],
    qs: models.QuerySet,
    checkpoint: BackfillCheckpoint,
    options: Options,
    client: SuprsendClient | None,
    done: Done,
) -> None:
    """Send (or queue) the rows of ``qs`` after ``checkpoint.last_pk``, moving it batch by batch."""
    using = options.database
    last_pk = model._meta.pk.to_python(checkpoint.last_pk) if checkpoint.last_pk else None
    if options.via_workers:
        for batch in _built_batches(qs, last_pk, options, _record_builder(None, "")):
            with transaction.atomic(using=using):
                _queue(batch, using)
                _advance(checkpoint, batch, using)
            done(batch.read, batch.stats)
        return
    client = client or get_client()
    built = _built_batches(qs, last_pk, options, _record_builder(client, checkpoint.run_id))
    manager = ContentType.objects.db_manager(using)
    content_type_id = manager.get_for_model(model, for_concrete_model=False).pk
    record_batch = _recorder(content_type_id, checkpoint, using)
    _send_all(built, client, record_batch, using, done)


def finish(checkpoint: BackfillCheckpoint, using: str) -> None:
    """Mark a run (or a part of one) as done: the next invocation starts a new run."""
    checkpoint.finished_at = checkpoint.updated_at = timezone.now()
    checkpoint.save(using=using, update_fields=["finished_at", "updated_at"])


def _advance(checkpoint: BackfillCheckpoint, batch: _Batch, using: str) -> None:
    """Move the checkpoint past a batch whose every row was delivered or recorded as failed."""
    checkpoint.last_pk = str(batch.last_pk)
    checkpoint.sent += batch.stats.sent
    checkpoint.failed += batch.stats.failed
    checkpoint.skipped += batch.stats.skipped
    checkpoint.updated_at = timezone.now()
    checkpoint.save(
        using=using, update_fields=["last_pk", "sent", "failed", "skipped", "updated_at"]
    )
