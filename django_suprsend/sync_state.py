"""Recording each profile's outcome in ``SyncState`` and announcing it with the app's signals.

Written by the workers only, in bulk: one upsert for a whole flush.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.utils import timezone

from .models import SyncState, SyncStatus
from .outbox import Entry
from .signals import profile_sync_failed, profile_synced

_UPDATED_FIELDS = [
    "content_type",
    "object_id",
    "status",
    "attempts",
    "last_synced_at",
    "last_attempt_at",
    "last_error",
    "last_error_code",
    "last_failed_record",
    "updated_at",
]


@dataclass
class Outcome:
    """What happened to one profile's entries in one flush."""

    entries: list[Entry]
    status: str
    error: str = ""
    code: int | None = None
    failed_record: dict[str, Any] | None = None
    delivered: bool = False  # something reached the hub (also when some values were refused)

    @property
    def distinct_id(self) -> str:
        return self.entries[0].distinct_id


def validation_message(errors: list[dict[str, Any]]) -> str:
    """``$email: 'not-an-email' is not a valid email address; ...``: field, value and reason."""
    return "; ".join(f"{e['field']}: {e['value']} {e['reason']}" for e in errors)


def refused(
    entries: list[Entry],
    errors: list[dict[str, Any]],
    record_: dict[str, Any] | None = None,
    *,
    delivered: bool,
) -> Outcome:
    """A profile with values refused before sending: failed until the data is fixed.

    ``delivered``: its valid values (``record_``) went to the hub anyway.
    """
    message = validation_message(errors)
    failed_record = {"record": record_, "error": message, "code": None, "refused": errors}
    return Outcome(
        entries, SyncStatus.FAILED, error=message, failed_record=failed_record, delivered=delivered
    )


def record(outcomes: list[Outcome], *, using: str) -> None:
    """Upsert one SyncState per profile and send ``profile_synced``/``profile_sync_failed``."""
    if not outcomes:
        return
    now = timezone.now()
    # Plain dicts of column values: model instances would cost more than the upsert itself.
    rows = [_row(outcome, now) for outcome in outcomes]
    # A profile whose change did not reach the hub keeps its last_synced_at.
    for delivered in (True, False):
        batch = [r for r, o in zip(rows, outcomes, strict=True) if o.delivered is delivered]
        fields = [f for f in _UPDATED_FIELDS if delivered or f != "last_synced_at"]
        if batch:
            _upsert(batch, fields, using)
    _announce(outcomes, rows)


def _row(outcome: Outcome, now: Any) -> dict[str, Any]:
    linked = next((e for e in reversed(outcome.entries) if e.content_type_id), outcome.entries[-1])
    synced = outcome.status == SyncStatus.SYNCED
    return {
        "distinct_id": outcome.distinct_id,
        "content_type_id": linked.content_type_id,
        "object_id": linked.object_id,
        "status": outcome.status,
        "attempts": 0 if synced else max(e.attempts for e in outcome.entries),
        "last_synced_at": now if outcome.delivered else None,
        "last_attempt_at": now,
        "last_error": outcome.error[:4000],
        "last_error_code": outcome.code,
        "last_failed_record": outcome.failed_record,
        "updated_at": now,
    }


def _announce(outcomes: list[Outcome], rows: list[dict[str, Any]]) -> None:
    synced = profile_synced.has_listeners()
    failed = profile_sync_failed.has_listeners()
    if not (synced or failed):
        return
    for outcome, row in zip(outcomes, rows, strict=True):
        state = SyncState(**row)
        sender = state.content_type.model_class() if state.content_type_id else None
        if outcome.status == SyncStatus.SYNCED and synced:
            profile_synced.send(sender=sender, distinct_id=state.distinct_id, sync_state=state)
        elif outcome.status != SyncStatus.SYNCED and failed:
            profile_sync_failed.send(
                sender=sender,
                distinct_id=state.distinct_id,
                sync_state=state,
                error=outcome.error,
                code=outcome.code,
                retrying=outcome.status == SyncStatus.RETRYING,
            )


def _upsert(rows: list[dict[str, Any]], fields: list[str], using: str) -> None:
    connection = connections[using]
    if connection.vendor == "postgresql":
        _upsert_postgresql(rows, fields, using)
        return
    states = [SyncState(**row) for row in rows]
    # MySQL/MariaDB upsert on any unique key (ON DUPLICATE KEY) and take no target.
    target = ["distinct_id"] if connection.features.supports_update_conflicts_with_target else None
    SyncState.objects.using(using).bulk_create(
        states,
        batch_size=500,
        update_conflicts=True,
        unique_fields=target,
        update_fields=fields,
    )


# PostgreSQL: one statement whose parameters are one array per column, instead of
# Django's bulk_create with a parameter per cell (the drain's hottest query).
_PG_COLUMNS = (
    ("distinct_id", "varchar"),
    ("content_type_id", "integer"),
    ("object_id", "varchar"),
    ("status", "varchar"),
    ("attempts", "integer"),
    ("last_synced_at", "timestamptz"),
    ("last_attempt_at", "timestamptz"),
    ("last_error", "text"),
    ("last_error_code", "integer"),
    ("last_failed_record", "jsonb"),
    ("updated_at", "timestamptz"),
)


def _upsert_postgresql(rows: list[dict[str, Any]], fields: list[str], using: str) -> None:
    table = SyncState._meta.db_table
    columns = ", ".join(name for name, _ in _PG_COLUMNS)
    # jsonb travels as text: arrays of JSON values are not adapted by every driver.
    arrays = ", ".join(f"%s::{'text' if kind == 'jsonb' else kind}[]" for _, kind in _PG_COLUMNS)
    selected = ", ".join(
        f"{name}::jsonb" if kind == "jsonb" else name for name, kind in _PG_COLUMNS
    )
    updated = [SyncState._meta.get_field(f).column for f in fields]
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in updated)
    # Only identifiers from the model's own metadata go into the text; values are parameters.
    insert = f"INSERT INTO {table} ({columns}) SELECT {selected} "
    source = f"FROM unnest({arrays}) AS t({columns})"
    sql = f"{insert}{source} ON CONFLICT (distinct_id) DO UPDATE SET {updates}"
    params = [
        [
            json.dumps(value) if kind == "jsonb" and value is not None else value
            for value in (row[name] for row in rows)
        ]
        for name, kind in _PG_COLUMNS
    ]
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
