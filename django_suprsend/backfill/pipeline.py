"""Send a range of rows: read, build and send overlap in stages; each batch's outcome is
recorded on the profiles' sync state and the checkpoint moves past it."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from django.contrib.contenttypes.models import ContentType
from django.db import connections, models, transaction
from django.utils import timezone

from django_suprsend.backfill.options import (
    Done,
    Options,
)
from django_suprsend.backfill.rows import (
    _Batch,
    _built_batches,
    _record_builder,
    _Row,
)
from django_suprsend.delivery import outage, outbox
from django_suprsend.delivery.enqueue import enqueue_many
from django_suprsend.delivery.shared_client import get_client
from django_suprsend.delivery.sync_state import (
    Outcome,
    record,
    record_synced,
    refused,
)
from django_suprsend.exceptions import error_dict
from django_suprsend.models import BackfillCheckpoint, SyncStatus
from django_suprsend.wire.answers import AUTH_ERRORS
from django_suprsend.wire.bulk import BulkResponse
from django_suprsend.wire.client import SuprsendClient

_In = TypeVar("_In")


_Out = TypeVar("_Out")


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
