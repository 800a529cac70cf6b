"""Recording each profile's outcome in ``SyncState`` and announcing it with the app's signals.

Written in bulk by the workers (one upsert for a whole flush) and the backfill.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.utils import timezone

from django_suprsend.delivery.outbox import Entry
from django_suprsend.models import SyncState, SyncStatus
from django_suprsend.signals import profile_sync_failed, profile_synced
from django_suprsend.wire.bulk import REFUSED_LOCALLY

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
        entries,
        SyncStatus.FAILED,
        error=message,
        code=REFUSED_LOCALLY,
        failed_record=failed_record,
        delivered=delivered,
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
    _announce((row, o.error, o.code) for row, o in zip(rows, outcomes, strict=True))


def record_synced(profiles: list[tuple[str, int | None, str]], *, using: str) -> None:
    """What :func:`record` does for ``Outcome(..., SyncStatus.SYNCED, delivered=True)``,
    for profiles given as ``(distinct_id, content_type_id, object_id)``: the bulk
    case of a backfill, without an outcome and an outbox entry for each."""
    if not profiles:
        return
    synced = _synced(timezone.now())
    if connections[using].vendor == "postgresql" and not _listened():
        # The identities as they go into the JSON document, the rest as one parameter each.
        identities = [
            {"distinct_id": d, "content_type_id": c, "object_id": o} for d, c, o in profiles
        ]
        _upsert_postgresql(identities, _UPDATED_FIELDS, using, shared=synced)
        return
    rows = [
        {"distinct_id": d, "content_type_id": c, "object_id": o, **synced} for d, c, o in profiles
    ]
    _upsert(rows, _UPDATED_FIELDS, using)
    _announce((row, "", None) for row in rows)


def _synced(now: Any) -> dict[str, Any]:
    """The columns of a synced profile's SyncState besides its identity."""
    return {
        "status": SyncStatus.SYNCED,
        "attempts": 0,
        "last_synced_at": now,
        "last_attempt_at": now,
        "last_error": "",
        "last_error_code": None,
        "last_failed_record": None,
        "updated_at": now,
    }


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


def _listened() -> bool:
    return profile_synced.has_listeners() or profile_sync_failed.has_listeners()


def _announce(items: Iterable[tuple[dict[str, Any], str, int | None]]) -> None:
    """Send the signals for ``(row, error, code)`` of each profile (only if someone listens)."""
    synced = profile_synced.has_listeners()
    failed = profile_sync_failed.has_listeners()
    if not (synced or failed):
        return
    for row, error, code in items:
        state = SyncState(**row)
        sender = state.content_type.model_class() if state.content_type_id else None
        if state.status == SyncStatus.SYNCED and synced:
            profile_synced.send(sender=sender, distinct_id=state.distinct_id, sync_state=state)
        elif state.status != SyncStatus.SYNCED and failed:
            profile_sync_failed.send(
                sender=sender,
                distinct_id=state.distinct_id,
                sync_state=state,
                error=error,
                code=code,
                retrying=state.status == SyncStatus.RETRYING,
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


# PostgreSQL: one statement for the whole batch. Values that differ from row to row
# travel as one JSON document read by json_to_recordset, values that every row shares
# (in a backfill all but distinct_id and object_id) as one parameter each: psycopg
# adapts a list parameter element by element in Python (some 20 µs a row), while
# a JSON text is one C call on each side.
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


def _upsert_postgresql(
    rows: list[dict[str, Any]],
    fields: list[str],
    using: str,
    shared: dict[str, Any] | None = None,
) -> None:
    """Upsert ``rows``; ``shared``: the values of the columns that ``rows`` leave out,
    the same for all (None: found here, and ``rows`` have every column)."""
    table = SyncState._meta.db_table
    if shared is None:
        shared = {n: rows[0][n] for n, _ in _PG_COLUMNS if n != "distinct_id" and _shared(rows, n)}
        varying = [(n, k) for n, k in _PG_COLUMNS if n not in shared]
        document = [{name: _json_value(row[name]) for name, _ in varying} for row in rows]
    else:
        varying = [(n, k) for n, k in _PG_COLUMNS if n not in shared]
        document = rows  # JSON-ready already: strings and ints
    selected, params = [], []
    for name, kind in _PG_COLUMNS:
        if name in shared:
            selected.append(f"%s::{kind}")
            params.append(_json_text(shared[name]) if kind == "jsonb" else shared[name])
        else:
            selected.append(f"r.{name}")
    params.append(json.dumps(document))
    columns = ", ".join(name for name, _ in _PG_COLUMNS)
    definitions = ", ".join(f"{name} {kind}" for name, kind in varying)
    updated = [SyncState._meta.get_field(f).column for f in fields]
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in updated)
    # Only identifiers from the model's own metadata go into the text; values are parameters.
    insert = f"INSERT INTO {table} ({columns}) SELECT {', '.join(selected)} "
    source = f"FROM json_to_recordset(%s::json) AS r({definitions})"
    sql = f"{insert}{source} ON CONFLICT (distinct_id) DO UPDATE SET {updates}"
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)


def _shared(rows: list[dict[str, Any]], name: str) -> bool:
    first = rows[0][name]
    return all(row[name] == first for row in rows)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _json_value(value: Any) -> Any:
    """A column value as json_to_recordset reads it (timestamps as ISO 8601 text)."""
    return value.isoformat() if isinstance(value, datetime.datetime) else value
