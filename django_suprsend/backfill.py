"""The logic of ``manage.py suprsend_backfill``: push existing rows' full profiles, resumably.

Rows are read in batches by keyset pagination on the primary key (never all
at once); each batch's records are built by ``build_suprsend_profile()``
(the code path of a first save) and sent with the shared client, or queued
in the outbox (``via_workers``). After each batch whose records were all
delivered or recorded as failed, a :class:`~django_suprsend.models.BackfillCheckpoint`
remembers the last primary key, so a killed run resumes after it. A
record's ``$insert_id`` is ``uuid5(run_id:distinct_id)``: a batch sent again
after a kill is the same record to the hub.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from . import outbox
from .checks import profile_models
from .client import SuprsendClient
from .client_factory import get_client
from .exceptions import SuprsendValidationError
from .mixins import SuprsendProfileMixin, distinct_id_of, error_dict
from .models import BackfillCheckpoint, SyncState, SyncStatus
from .operations import CHANNEL_KEYS, build_record, check_record_size
from .sync_state import Outcome, record, refused, validation_message

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


class BackfillError(Exception):
    """A usage error: an unknown model, a bad option value."""


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

    def add(self, other: Stats) -> None:
        self.rows += other.rows
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped
        self.invalid_count += other.invalid_count
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
    """``qs`` in lists of ``size`` rows, after ``last_pk`` (keyset pagination on the pk)."""
    while True:
        page = qs if last_pk is None else qs.filter(pk__gt=last_pk)
        rows = list(page.order_by("pk")[:size])
        if not rows:
            return
        last_pk = rows[-1].pk
        yield rows
        if len(rows) < size:
            return


# -- records ------------------------------------------------------------------------


def insert_id_for(run_id: str, distinct_id: str) -> str:
    return str(uuid.uuid5(INSERT_ID_NAMESPACE, f"{run_id}:{distinct_id}"))


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


@dataclass
class _Row:
    instance: models.Model
    distinct_id: str
    operations: list[dict[str, Any]]
    errors: list[dict[str, str]]
    record: dict[str, Any] | None = None


def _prepare(
    rows: list[models.Model],
    options: Options,
    run_id: str,
    client: SuprsendClient | None,
    stats: Stats,
) -> list[_Row]:
    """Build (and check the size of) each row's record; count the skipped rows."""
    prepared = []
    for instance in rows:
        if not instance.should_sync_to_suprsend():  # type: ignore[attr-defined]
            stats.skipped += 1
            continue
        distinct_id = distinct_id_of(instance)  # type: ignore[arg-type]
        if distinct_id is None:
            stats.skipped += 1
            continue
        operations, errors = filter_operations(
            *instance.build_suprsend_profile(),  # type: ignore[attr-defined]
            options,
        )
        if not operations and not errors:
            stats.skipped += 1
            continue
        row = _Row(instance, distinct_id, operations, list(errors))
        if operations and not options.via_workers:
            row.record = _build_record(client, distinct_id, operations, run_id)
            try:
                check_record_size(row.record)
            except SuprsendValidationError as exc:
                row.errors.append(error_dict(exc))
                row.record = None
        prepared.append(row)
    return prepared


def _build_record(
    client: SuprsendClient | None, distinct_id: str, operations: list[dict[str, Any]], run_id: str
) -> dict[str, Any]:
    insert_id = insert_id_for(run_id, distinct_id)
    if client is not None:
        return client.build_record(distinct_id, operations, insert_id=insert_id)
    # A dry run: no credentials needed.
    return build_record(distinct_id, operations, env="", sdk_version="", insert_id=insert_id)


# -- sending ------------------------------------------------------------------------


def _entry(row: _Row, content_type_id: int, attempts: int) -> outbox.Entry:
    """A stand-in outbox entry, so that :func:`sync_state.record` can write the outcome."""
    return outbox.Entry(
        id=0,
        distinct_id=row.distinct_id,
        kind=outbox.OutboxEntry.Kind.EDIT,
        operations=[],
        errors=[],
        content_type_id=content_type_id,
        object_id=str(row.instance.pk),
        attempts=attempts,
        insert_id="",
    )


def _send(
    client: SuprsendClient, prepared: list[_Row], content_type_id: int, stats: Stats, using: str
) -> None:
    """Send the batch's records and record every row's outcome on its SyncState."""
    to_send = [row.record for row in prepared if row.record is not None]
    response = client.send_records(to_send) if to_send else None
    failures = {}
    if response is not None:
        failures = {f["record"].get("$insert_id"): f for f in response.failed_records}
    outcomes = []
    for row in prepared:
        failure = None if row.record is None else failures.get(row.record["$insert_id"])
        if row.record is not None and failure is None:
            if not row.errors:
                stats.sent += 1
                outcomes.append(
                    Outcome([_entry(row, content_type_id, 0)], SyncStatus.SYNCED, delivered=True)
                )
                continue
            # The valid values went; the refused ones make the profile failed until fixed.
            stats.failed += 1
            entries = [_entry(row, content_type_id, 1)]
            outcomes.append(refused(entries, row.errors, row.record, delivered=True))
            continue
        stats.failed += 1
        if failure is None:  # nothing valid to send
            entries = [_entry(row, content_type_id, 1)]
            outcomes.append(refused(entries, row.errors, delivered=False))
            continue
        error = str(failure["error"])
        outcomes.append(
            Outcome(
                [_entry(row, content_type_id, 1)],
                SyncStatus.FAILED,
                error=error,
                code=failure["code"],
                failed_record={
                    "record": failure["record"],
                    "error": error,
                    "code": failure["code"],
                },
            )
        )
    record(outcomes, using=using)


def _queue(prepared: list[_Row], stats: Stats, using: str) -> None:
    """Queue the batch in the outbox (the workers send it and keep the SyncStates)."""
    items = [(row.distinct_id, row.operations, row.errors, row.instance) for row in prepared]
    outbox.enqueue_many(items, using=using)
    stats.sent += len(items)


def _validate(prepared: list[_Row], stats: Stats) -> None:
    """Dry run: count what would go, keep the first invalid rows with their messages."""
    for row in prepared:
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


def run(
    model: type[models.Model],
    options: Options,
    *,
    progress: Progress | None = None,
    client: SuprsendClient | None = None,
) -> Stats:
    """Push ``model``'s selected rows; returns what this invocation did."""
    if options.batch_size < 1:
        raise BackfillError("--batch-size must be at least 1.")
    if options.channels_only and options.properties_only:
        raise BackfillError("--channels-only and --properties-only exclude each other.")
    qs = queryset(model, options)
    using = options.database
    stats = Stats()
    content_type_id = (
        ContentType.objects.db_manager(using).get_for_model(model, for_concrete_model=False).pk
    )
    checkpoint = None
    last_pk = None
    run_id = uuid.uuid4().hex
    if not options.dry_run:
        checkpoint = _checkpoint(model, options)
        run_id = checkpoint.run_id
        if checkpoint.last_pk:
            last_pk = model._meta.pk.to_python(checkpoint.last_pk)
            stats.resumed_after = checkpoint.last_pk
        if not options.via_workers and client is None:
            client = get_client()
    for rows in batches(qs, last_pk, options.batch_size):
        read = len(rows)
        batch_last = rows[-1].pk
        if options.only_failed:
            failed = _failed_ids(
                [d for row in rows if (d := distinct_id_of(row)) is not None],  # type: ignore[arg-type]
                using,
            )
            rows = [row for row in rows if distinct_id_of(row) in failed]  # type: ignore[arg-type]
        stats.rows += len(rows)
        before = (stats.sent, stats.failed, stats.skipped)
        prepared = _prepare(rows, options, run_id, client, stats)
        del rows
        if options.dry_run:
            _validate(prepared, stats)
        elif options.via_workers:
            with transaction.atomic(using=using):
                _queue(prepared, stats, using)
                _advance(checkpoint, batch_last, stats, before, using)
        else:
            assert client is not None
            _send(client, prepared, content_type_id, stats, using)
            _advance(checkpoint, batch_last, stats, before, using)
        del prepared
        if progress is not None:
            progress(read, stats)
    if checkpoint is not None:
        now = timezone.now()
        checkpoint.finished_at = checkpoint.updated_at = now
        checkpoint.save(using=using, update_fields=["finished_at", "updated_at"])
    return stats


def _advance(
    checkpoint: BackfillCheckpoint | None,
    last_pk: Any,
    stats: Stats,
    before: tuple[int, int, int],
    using: str,
) -> None:
    """Move the checkpoint past a batch whose every row was delivered or recorded as failed."""
    if checkpoint is None:
        return
    checkpoint.last_pk = str(last_pk)
    checkpoint.sent += stats.sent - before[0]
    checkpoint.failed += stats.failed - before[1]
    checkpoint.skipped += stats.skipped - before[2]
    checkpoint.updated_at = timezone.now()
    checkpoint.save(
        using=using, update_fields=["last_pk", "sent", "failed", "skipped", "updated_at"]
    )
