"""From rows to records: each row's full push (filtered to channels or properties), its
stable ``$insert_id`` for the run, and the batches of built rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import models

from django_suprsend.backfill.options import (
    INVALID_SHOWN,
    Options,
    Stats,
)
from django_suprsend.backfill.selection import (
    _only_failed,
    batches,
)
from django_suprsend.delivery.sync_state import (
    validation_message,
)
from django_suprsend.exceptions import error_dict
from django_suprsend.profiles.builder import distinct_id_of
from django_suprsend.profiles.refusal import refusal
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.operations import CHANNEL_KEYS
from django_suprsend.wire.records import build_record, insert_id_namer
from django_suprsend.wire.splitting import split_record

#: The namespace of the backfill's ``$insert_id`` (uuid5 of ``f"{run_id}:{distinct_id}"``).
INSERT_ID_NAMESPACE = uuid.UUID("8f3c4f52-6a0e-4b0c-9a55-5b1f2b7d0c11")


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
