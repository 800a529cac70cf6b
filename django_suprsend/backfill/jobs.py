"""``suprsend_backfill --jobs N``: one run split over N processes, each sending its own range.

The selection is cut into N ranges of primary keys of about the same number
of rows; each range is a part (a :class:`~django_suprsend.models.BackfillCheckpoint`
whose ``parent`` is the run) with its own position, sent by a forked process
with :func:`django_suprsend.backfill.pipeline.send_range` (the pipeline of a
single-process run) over its own database connection and HTTP connections.
A killed run resumes each unfinished part after its own last batch, whatever
``--jobs`` says then: the split belongs to the run. Parts share the run's
``run_id``, so a record sent again is the same ``$insert_id`` to the hub.

Processes are forked (not spawned) so that each inherits the settings
exactly as the parent has them, test overrides included; the parent closes
its database connections first and the client opens new pools in the child.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import traceback
from typing import Any

from django.db import connections, models

from django_suprsend.backfill.options import BackfillFailed, Done, Options, Stats
from django_suprsend.backfill.pipeline import finish, send_range
from django_suprsend.models import BackfillCheckpoint

__all__ = ["send_in_parts", "split_points", "unfinished_parts"]

#: How often the parent looks for a process that died without a word.
POLL_SECONDS = 0.5


def unfinished_parts(checkpoint: BackfillCheckpoint, using: str) -> list[BackfillCheckpoint]:
    """The parts of ``checkpoint``'s run still to send (none: the run is not split)."""
    parts = BackfillCheckpoint.objects.using(using).filter(parent=checkpoint)
    return list(parts.filter(finished_at=None).order_by("pk"))


def split_points(qs: models.QuerySet, jobs: int) -> list[Any]:
    """The primary keys that cut ``qs`` into ``jobs`` ranges of about the same number of rows.

    Each is the last key of its range (one ``OFFSET`` query on the primary key
    index per point); fewer than ``jobs - 1`` when there are fewer rows.
    """
    total = qs.count()
    ordered = qs.order_by("pk").values_list("pk", flat=True)
    offsets = sorted({total * k // jobs - 1 for k in range(1, jobs)} - {-1})
    return [ordered[offset] for offset in offsets]


def _number(part: BackfillCheckpoint) -> str:
    """A part's number in its run: what follows the ``#`` of its key."""
    return part.key.rsplit("#", 1)[1]


def _create_parts(
    qs: models.QuerySet, checkpoint: BackfillCheckpoint, jobs: int, using: str
) -> list[BackfillCheckpoint]:
    """Split what is left of the run (after its ``last_pk``) into ``jobs`` parts."""
    model = qs.model
    after = checkpoint.last_pk
    remaining = qs.filter(pk__gt=model._meta.pk.to_python(after)) if after else qs
    bounds = [after, *(str(pk) for pk in split_points(remaining, jobs)), ""]
    parts = [
        BackfillCheckpoint(
            key=f"{checkpoint.key}#{index}",  # read back by _number()
            run_id=checkpoint.run_id,
            parent=checkpoint,
            last_pk=lower,
            upper_pk=upper,
        )
        for index, (lower, upper) in enumerate(itertools.pairwise(bounds), start=1)
    ]
    return BackfillCheckpoint.objects.using(using).bulk_create(parts)


def send_in_parts(
    model: type[models.Model],
    qs: models.QuerySet,
    checkpoint: BackfillCheckpoint,
    options: Options,
    stats: Stats,
    done: Done,
) -> None:
    """Send the run's parts, ``options.jobs`` processes at a time; then sum them on the run."""
    using = options.database
    parts = unfinished_parts(checkpoint, using)
    if parts:
        stats.resumed_after = ", ".join(f"{part.last_pk} (part {_number(part)})" for part in parts)
    else:
        parts = _create_parts(qs, checkpoint, options.jobs, using)
    _Processes(model, qs, options, done).run(parts)
    _sum_parts(checkpoint, using)


def _sum_parts(checkpoint: BackfillCheckpoint, using: str) -> None:
    """The run's totals and position are those of its parts."""
    parts = list(BackfillCheckpoint.objects.using(using).filter(parent=checkpoint).order_by("pk"))
    checkpoint.sent = sum(part.sent for part in parts)
    checkpoint.failed = sum(part.failed for part in parts)
    checkpoint.skipped = sum(part.skipped for part in parts)
    checkpoint.last_pk = next((p.last_pk for p in reversed(parts) if p.last_pk), "")
    checkpoint.save(using=using, update_fields=["sent", "failed", "skipped", "last_pk"])


Message = tuple[str, int, Any]  # ("batch", part pk, (rows read, Stats)) | ("done"|"error", ...)


class _Processes:
    """Forks a process per part (at most ``options.jobs`` at once) and gathers their batches."""

    def __init__(
        self,
        model: type[models.Model],
        qs: models.QuerySet,
        options: Options,
        done: Done,
    ) -> None:
        self.model = model
        self.qs = qs
        self.options = options
        self.done = done
        self.context = multiprocessing.get_context("fork")
        self.messages: Any = self.context.Queue()
        self.running: dict[int, Any] = {}  # part pk -> process

    def run(self, parts: list[BackfillCheckpoint]) -> None:
        pending = list(parts)
        try:
            while pending or self.running:
                while pending and len(self.running) < self.options.jobs:
                    self._start(pending.pop(0))
                self._receive()
        finally:
            self._stop()

    def _start(self, part: BackfillCheckpoint) -> None:
        # A forked process must not share this one's database sockets.
        connections.close_all()
        process = self.context.Process(
            target=_send_part,
            args=(self.model, self.qs, part, self.options, self.messages),
            name=f"suprsend-backfill-{_number(part)}",
            daemon=True,
        )
        process.start()
        self.running[part.pk] = process

    def _receive(self) -> None:
        try:
            kind, part_pk, payload = self.messages.get(timeout=POLL_SECONDS)
        except queue.Empty:
            self._check_alive()
            return
        if kind == "batch":
            self.done(*payload)
        elif kind == "done":
            self.running.pop(part_pk).join()
        else:
            raise BackfillFailed(
                f"a backfill process failed ({payload}); run the same command again to resume."
            )

    def _check_alive(self) -> None:
        for process in self.running.values():
            if process.exitcode not in (None, 0):
                raise BackfillFailed(
                    f"backfill process {process.name} exited with {process.exitcode};"
                    " run the same command again to resume."
                )

    def _stop(self) -> None:
        """End the processes still running (after an error or Ctrl-C): each part's
        position stays at its last recorded batch."""
        for process in self.running.values():
            if process.is_alive():
                process.terminate()
        for process in self.running.values():
            process.join()
        self.running.clear()
        self.messages.close()


def _send_part(
    model: type[models.Model],
    qs: models.QuerySet,
    part: BackfillCheckpoint,
    options: Options,
    messages: Any,
) -> None:
    """A forked process: send one part, reporting each batch to the parent."""

    def post(kind: str, payload: Any) -> None:
        messages.put((kind, part.pk, payload))

    failed = False
    try:
        if part.upper_pk:
            qs = qs.filter(pk__lte=model._meta.pk.to_python(part.upper_pk))
        send_range(model, qs, part, options, None, lambda *batch: post("batch", batch))
        finish(part, options.database)
        post("done", None)
    except BaseException as exc:  # reported to the parent, which stops the run
        failed = True
        post("error", f"part {part.key}: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        connections.close_all()
        messages.close()
        messages.join_thread()  # every message is in the pipe before the process ends
    if failed:
        os._exit(1)
