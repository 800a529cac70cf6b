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
import gc
import uuid
from collections.abc import Iterator

from django.db import models

from django_suprsend.backfill import jobs as backfill_jobs
from django_suprsend.backfill.options import (
    BackfillError,
    Options,
    Progress,
    Stats,
    check_options,
)
from django_suprsend.backfill.pipeline import (
    _checkpoint,
    finish,
    send_range,
)
from django_suprsend.backfill.rows import (
    _built_batches,
    _record_builder,
    _validate,
    filter_operations,
    insert_id_for,
)
from django_suprsend.backfill.selection import (
    queryset,
    resolve_models,
)
from django_suprsend.wire.client import SuprsendClient

__all__ = [
    "BackfillError",
    "Options",
    "Stats",
    "filter_operations",
    "insert_id_for",
    "resolve_models",
    "run",
]

#: Allocations between two young-generation collections during a run (CPython's default: 700).
GC_THRESHOLD = 100_000


# -- selection ----------------------------------------------------------------------


# -- records ------------------------------------------------------------------------


# -- sending ------------------------------------------------------------------------


# -- a run --------------------------------------------------------------------------


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
    if options.jobs > 1 or backfill_jobs.unfinished_parts(checkpoint, options.database):
        backfill_jobs.send_in_parts(model, qs, checkpoint, options, stats, done)
    else:
        send_range(model, qs, checkpoint, options, client, done)
    finish(checkpoint, options.database)
    return stats
