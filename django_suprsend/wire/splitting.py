"""A profile edit too big for one record, split into records that each fit. Pure Python.

The hub takes a record of at most ``MAX_RECORD_BYTES``. A full push of a
profile with many properties can be larger without any one value being so;
:func:`split_record` then sends its operations in several records, in order,
each under its own ``$insert_id`` derived from the record's (so a retry is
the same records again, which the hub applies once). Only a single value
that fits in no record is refused, alone.

An operation is split where its keys are independent: ``$set``,
``$set_once``, ``$increment`` and ``$unset`` key by key, ``$append`` and
``$remove`` of properties key by key. A channel's ``$append``/``$remove``
(a push token with its provider) always goes whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire.operations import CHANNEL_KEYS
from django_suprsend.wire.records import MAX_RECORD_BYTES, dumps, record_size, utf8_size

__all__ = ["oversize_value", "part_insert_id", "split_record"]

#: uuid5 namespace of the ``$insert_id`` of a split record's second and later parts.
PART_NAMESPACE = uuid.UUID("2b0c41f6-93a7-4d8e-b1f5-6a0e7d35c9a4")
_BY_KEY = ("$set", "$set_once", "$increment", "$append", "$remove")
_CHANNELS = frozenset(CHANNEL_KEYS)
_SEPARATOR = 2  # ", " between two operations of the list


# The least a record around one operation takes (empty env, id, key and SDK version).
_LEAST_ENVELOPE = utf8_size(
    dumps(
        {
            "$schema": "2",
            "$insert_id": "0" * 36,
            "$time": 10**12,
            "env": "",
            "distinct_id": "",
            "$user_operations": [{"$set_once": {"": None}}],
            "properties": {"$ss_sdk_version": ""},
        }
    )
) - len("null")
#: A str value this long always fits (6 bytes a character at the most, as escapes).
_SURELY_FITS = (MAX_RECORD_BYTES - _LEAST_ENVELOPE) // 6 - 300


def oversize_value(distinct_id: str, key: str, value: Any) -> SuprsendValidationError | None:
    """The refusal of property ``key``'s ``value`` when it could fit in no record of
    ``distinct_id`` (checked at save, like any bad value), else None. Cheap for the usual
    values: a short string or a number is never measured."""
    if value.__class__ is str and len(value) <= _SURELY_FITS:
        return None
    if value is None or isinstance(value, (int, float)):
        return None
    room = MAX_RECORD_BYTES - _LEAST_ENVELOPE - utf8_size(dumps(key)) - utf8_size(distinct_id)
    size = utf8_size(dumps(value))
    if size <= room:
        return None
    return SuprsendValidationError(
        key,
        value,
        f"is {size:,} bytes as JSON, too big for any record: a record holds at most "
        f"{MAX_RECORD_BYTES:,} bytes, {room:,} of them for this value",
    )


def part_insert_id(insert_id: str, part: int) -> str:
    """The ``$insert_id`` of part ``part`` (0: the record's own) of a split record."""
    return insert_id if part == 0 else str(uuid.uuid5(PART_NAMESPACE, f"{insert_id}:{part}"))


def _atoms(operation: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``operation`` as the smallest operations that do the same in the same order."""
    ((op, arg),) = operation.items()
    if op == "$unset" and isinstance(arg, list) and len(arg) > 1:
        yield from ({op: [key]} for key in arg)
    elif op in _BY_KEY and isinstance(arg, dict) and len(arg) > 1 and _CHANNELS.isdisjoint(arg):
        yield from ({op: {key: value}} for key, value in arg.items())
    else:
        yield operation


def _merged(atoms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive atoms of one splittable operation, one operation again."""
    operations: list[dict[str, Any]] = []
    for atom in atoms:
        ((op, arg),) = atom.items()
        last = operations[-1] if operations else None
        if last is not None and op in last:
            previous = last[op]
            if op == "$unset" and isinstance(previous, list):
                operations[-1] = {op: [*previous, *arg]}
                continue
            if (
                op in _BY_KEY
                and isinstance(previous, dict)
                and _CHANNELS.isdisjoint(previous)
                and _CHANNELS.isdisjoint(arg)
                and not set(arg) & set(previous)
            ):
                operations[-1] = {op: {**previous, **arg}}
                continue
        operations.append(atom)
    return operations


def _refusal(atom: dict[str, Any], size: int, room: int) -> SuprsendValidationError:
    ((op, arg),) = atom.items()
    field, value = next(iter(arg.items())) if isinstance(arg, dict) and len(arg) == 1 else (op, arg)
    return SuprsendValidationError(
        field,
        value,
        f"is {utf8_size(dumps(value)):,} bytes as JSON, too big for any record: a record "
        f"holds at most {MAX_RECORD_BYTES:,} bytes, {room:,} of them for this profile's "
        f"operations ({size:,} for this one)",
    )


def split_record(
    record: dict[str, Any], size: int | None = None
) -> tuple[list[dict[str, Any]], list[SuprsendValidationError]]:
    """``record`` (of ``size`` bytes, when known) as records that each fit (itself when it
    does), and the values refused because they fit in none. Deterministic: the same record
    gives the same parts."""
    if (record_size(record) if size is None else size) <= MAX_RECORD_BYTES:
        return [record], []
    envelope = record_size({**record, "$user_operations": []})
    room = MAX_RECORD_BYTES - envelope
    parts: list[list[dict[str, Any]]] = []
    refused: list[SuprsendValidationError] = []
    current: list[dict[str, Any]] = []
    used = 0
    for operation in record["$user_operations"]:
        for atom in _atoms(operation):
            size = utf8_size(dumps(atom))
            if size > room:
                refused.append(_refusal(atom, size, room))
                continue
            # An upper bound: merging atoms into one operation only saves bytes.
            if current and used + _SEPARATOR + size > room:
                parts.append(current)
                current, used = [], 0
            used += size + (_SEPARATOR if current else 0)
            current.append(atom)
    if current:
        parts.append(current)
    records = [
        {
            **record,
            "$insert_id": part_insert_id(record["$insert_id"], index),
            "$user_operations": _merged(atoms),
        }
        for index, atoms in enumerate(parts)
    ]
    return records, refused
