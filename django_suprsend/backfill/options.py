"""What a backfill is asked to do (:class:`Options`), what it did (:class:`Stats`), its errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

INVALID_SHOWN = 10


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


Done = Callable[[int, Stats], None]  # (rows read, what happened to them) for each batch done


Progress = Callable[[int, Stats], None]  # (rows read in this batch, running stats)


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
