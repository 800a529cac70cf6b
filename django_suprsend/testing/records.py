"""What the hub accepts: request limits and the shape of records and operations.

Each check raises :class:`HubError`, which the server turns into a JSON
error answer; nothing here touches profiles or HTTP.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from json.scanner import make_scanner
from typing import Any

from django_suprsend.testing.profiles import (
    CHANNEL_SET,
    ENTRY_ATTRIBUTES,
    STRING_CHANNELS,
    is_push_entry,
)

MAX_RECORDS = 400
MAX_BATCH_BYTES = 800 * 1024
MAX_RECORD_BYTES = 10 * 1024
# Re-serialising a record's JSON text the SDK's way (``json.dumps(record,
# ensure_ascii=False)``) only keeps or loses bytes (escapes, white space,
# trailing zeros, duplicate keys), but for three things: each ``,`` and ``:``
# may gain the space after it; a float with an exponent may grow by 21 bytes
# at most (``1e5`` is 3 characters, a float's repr at most 24); one written
# without, by 5 at most (it grows only from 1e16 up, 19 characters or more).
# A digit followed by ``e``, ``E`` or ``.`` is counted wherever it stands,
# strings included (a UUID's "3e"): a few C calls, where a regular expression
# that finds only numbers costs more than re-serialising. One translation
# keeps only what is counted, folded alike (digits to 0, E to e, : to ,), for
# three counts on a shorter string; bytes dropped between a digit and an "e"
# only add pairs, so the bound stays safe.
_EXPONENT_GROWTH = 21
_POINT_GROWTH = 5
_SIZE_MARKS = bytes.maketrans(b"123456789E:", b"000000000e,")
_NOT_SIZE_MARKS = bytes(set(range(256)) - set(b"0123456789eE.,:"))
# A text's bound is 11.5 times its bytes at most (each digit and the "e" after
# it add 21), so one this short is within the record limit without counting.
_SAFE_RECORD_LENGTH = 2 * MAX_RECORD_BYTES // (2 + _EXPONENT_GROWTH)
# Looser still, each "e" and "." counted as if a digit came before it: no
# two-byte search, which costs more than the rest; enough for most bodies.
_LOOSE_MARKS = bytes.maketrans(b"E:", b"e,")
_NOT_LOOSE_MARKS = bytes(set(range(256)) - set(b"eE.,:"))


class HubError(Exception):
    """An error answer: ``status`` and a JSON body ``{"code", "message", **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "message": self.message, **self.extra}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


_STRICT: dict[str, Any] = {"parse_constant": _reject_constant, "parse_float": _finite_float}
_DECODER = json.JSONDecoder(**_STRICT)
# typeshed types make_scanner as a class of its own; it takes the decoder and scans
_scan_value: Callable[[str, int], tuple[Any, int]] = make_scanner(_DECODER)  # type: ignore[arg-type]
_skip_whitespace = re.compile(r"[ \t\n\r]*").match
_separator = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*").match


def parse_json(body: bytes) -> Any:
    """The body as JSON; 400 when it is not (NaN, Infinity and 1e999 included)."""
    try:
        return json.loads(body, **_STRICT)
    except ValueError as error:
        raise HubError(400, f"body is not valid JSON: {error}") from None


def parse_event_body(body: bytes) -> tuple[list[Any], RawTexts | None]:
    """The records of an ``event/`` body (one object or an array), parsed once.

    For an array, also each record's JSON text as sent, which lets
    ``check_limits`` skip re-serialising records that cannot be near a limit;
    None where the body has another shape.
    """
    try:
        return _split_array(body.decode())
    except (ValueError, IndexError, StopIteration):  # not a plain array: let json say why
        payload = parse_json(body)
        return (payload if isinstance(payload, list) else [payload]), None


@dataclass(frozen=True, slots=True, eq=False)
class RawTexts(Sequence[str]):
    """Each record's JSON text as sent: ``text[starts[i]:ends[i]]``, sliced only when asked."""

    text: str
    starts: list[int]
    ends: list[int]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]  # no slices
        return self.text[self.starts[index] : self.ends[index]]

    def __iter__(self) -> Iterator[str]:
        return map(self.text.__getitem__, map(slice, self.starts, self.ends))

    def within_limits(self) -> bool:
        """Whether ``size_bound()`` shows every record and their sum within the limits.

        Short texts need no bound of their own, and the whole body's bounds their sum.
        """
        if not self.text.isascii():  # offsets count characters, not bytes
            return _bounds_within_limits([size_bound(text) for text in self])
        # the body's bound is at least its records' sum; the cheaper one first
        data = self.text.encode()
        if _loose_size_bound(data) > MAX_BATCH_BYTES and _bytes_size_bound(data) > MAX_BATCH_BYTES:
            return False
        lengths = map(operator.sub, self.ends, self.starts)
        if max(lengths, default=0) <= _SAFE_RECORD_LENGTH:
            return True
        return all(size_bound(text) <= MAX_RECORD_BYTES for text in self)


def _whitespace_end(text: str, index: int) -> int:
    """Where the white space from ``index`` ends (the pattern matches even none)."""
    match = _skip_whitespace(text, index)
    return index if match is None else match.end()


def _split_array(text: str) -> tuple[list[Any], RawTexts]:
    opening = _whitespace_end(text, 0)
    if text[opening] != "[":
        raise ValueError("not an array")
    records: list[Any] = []
    starts: list[int] = []
    ends: list[int] = []
    index = _whitespace_end(text, opening + 1)
    while True:
        record, end = _scan_value(text, index)
        records.append(record)
        starts.append(index)
        ends.append(end)
        # json.dumps's separator, as the SDK sends it: no regular expression needed
        # (white space after it makes the scanner fail, and json.loads then parses)
        if text.startswith(", ", end):
            index = end + 2
            continue
        separator = _separator(text, end)
        if separator is None:
            raise ValueError("expected ',' or ']'")
        index = separator.end()
        if separator[1] == "]":
            break
    if index != len(text):
        raise ValueError("extra data")
    return records, RawTexts(text, starts, ends)


def record_size(record: Any) -> int:
    """Bytes of ``json.dumps(record, ensure_ascii=False)`` in UTF-8, as the SDK counts them."""
    return len(json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def record_summary(index: int, record: Any, **extra: Any) -> dict[str, Any]:
    """``{"index", "distinct_id", "$insert_id"}`` naming one record of a request."""
    fields = record if isinstance(record, Mapping) else {}
    return {
        "index": index,
        "distinct_id": fields.get("distinct_id"),
        "$insert_id": fields.get("$insert_id"),
        **extra,
    }


def describe(index: int, record: Any) -> str:
    distinct_id = record.get("distinct_id") if isinstance(record, Mapping) else None
    return f"record {index} (distinct_id {distinct_id!r})"


def size_bound(text: str) -> int:
    """At least ``record_size()`` of the record whose JSON text (as sent) this is."""
    return _bytes_size_bound(text.encode("utf-8", "surrogatepass"))


def _bytes_size_bound(data: bytes) -> int:
    marks = data.translate(_SIZE_MARKS, _NOT_SIZE_MARKS)
    growth = marks.count(b",") + _POINT_GROWTH * marks.count(b"0.")
    return len(data) + growth + _EXPONENT_GROWTH * marks.count(b"0e")


def _loose_size_bound(data: bytes) -> int:
    """At least ``_bytes_size_bound(data)``, for about half its cost."""
    marks = data.translate(_LOOSE_MARKS, _NOT_LOOSE_MARKS)
    growth = marks.count(b",") + _POINT_GROWTH * marks.count(b".")
    return len(data) + growth + _EXPONENT_GROWTH * marks.count(b"e")


def _bounds_within_limits(bounds: list[int]) -> bool:
    return max(bounds, default=0) <= MAX_RECORD_BYTES and sum(bounds) <= MAX_BATCH_BYTES


def check_limits(records: Sequence[Any], raw_texts: Sequence[str] | None = None) -> None:
    """413 for more than 400 records, one over 10,240 bytes or a sum over 819,200.

    Sizes are those of the SDK (each record's own ``json.dumps``); when the
    records' ``raw_texts`` show that no limit can be reached, they are not
    computed (re-serialising costs more than parsing).
    """
    if len(records) > MAX_RECORDS:
        raise HubError(
            413, f"{len(records)} records in one request; at most {MAX_RECORDS} are accepted"
        )
    if raw_texts is not None:
        if isinstance(raw_texts, RawTexts):
            if raw_texts.within_limits():
                return
        elif _bounds_within_limits([size_bound(text) for text in raw_texts]):
            return
    sizes = [record_size(record) for record in records]
    oversize = [i for i, size in enumerate(sizes) if size > MAX_RECORD_BYTES]
    if oversize:
        first = oversize[0]
        raise HubError(
            413,
            f"{describe(first, records[first])} is {sizes[first]} bytes; "
            f"a record must not exceed {MAX_RECORD_BYTES} bytes",
            records=[record_summary(i, records[i], size=sizes[i]) for i in oversize],
        )
    total = sum(sizes)
    if total > MAX_BATCH_BYTES:
        raise HubError(
            413,
            f"records total {total} bytes; a request must not exceed {MAX_BATCH_BYTES} bytes",
        )


def check_records(records: Sequence[Any], envs: Collection[str]) -> None:
    """400 naming every malformed record, the first one in the message."""
    if not records:
        raise HubError(400, "the request holds no records")
    errors = [record_error(record, envs) for record in records]
    if errors.count(None) == len(errors):
        return
    bad = [(i, error) for i, error in enumerate(errors) if error is not None]
    first, error = bad[0]
    raise HubError(
        400,
        f"{describe(first, records[first])}: {error}",
        records=[record_summary(i, records[i], error=e) for i, e in bad],
    )


def record_error(record: Any, envs: Collection[str]) -> str | None:
    """What is wrong with one async-edit record, or None."""
    if not isinstance(record, dict):
        return f"must be a JSON object, not {_json_type(record)}"
    get = record.get  # looked up once: this runs for every record
    if get("$schema") != "2":
        return f'"$schema" must be "2", not {get("$schema")!r}'
    for key in ("$insert_id", "distinct_id"):
        value = get(key)
        if not _is_text(value):
            return f'"{key}" must be a non-empty string, not {value!r}'
    if type(get("$time")) is not int:
        return f'"$time" must be an integer (epoch milliseconds), not {get("$time")!r}'
    if get("env") not in envs:
        return f'"env" {get("env")!r} is not this workspace (expected {_one_of(envs)})'
    if "properties" in record and type(record["properties"]) is not dict:
        return '"properties" must be a JSON object'
    if "tenant_id" in record and not _is_text(record["tenant_id"]):
        return f'"tenant_id" must be a non-empty string, not {record["tenant_id"]!r}'
    return operations_error(get("$user_operations"), '"$user_operations"')


def operations_error(operations: Any, name: str = '"operations"') -> str | None:
    """What is wrong with a list of operations, or None."""
    if not isinstance(operations, list):
        return f"{name} must be a list of operations, not {_json_type(operations)}"
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or len(operation) != 1:
            return f"operation {index} must be an object with exactly one operator key"
        (operator,) = operation  # cheaper than unpacking .items()
        value = operation[operator]
        if operator in _OBJECT_OPERATORS and isinstance(value, dict):
            continue  # the most common operation, without a call
        check = _OPERATOR_CHECKS.get(operator)
        if check is None:
            known = _one_of(_OPERATOR_CHECKS)
            return f"operation {index}: unknown operator {operator!r} (one of {known})"
        error = check(value)
        if error is not None:
            return f"operation {index} ({operator}): {error}"
    return None


def _check_object(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"value must be a JSON object, not {_json_type(value)}"
    return None


def _check_numbers(value: Any) -> str | None:
    error = _check_object(value)
    if error is not None:
        return error
    for key, amount in value.items():
        if not isinstance(amount, (int, float)) or isinstance(amount, bool):
            return f"{key!r} must be a number, not {amount!r}"
    return None


def _check_channel_edit(value: Any) -> str | None:
    error = _check_object(value)
    if error is not None:
        return error
    for key, item in value.items():
        if key in STRING_CHANNELS and isinstance(item, str) and item:
            continue  # an email or a phone number, without a call
        if key in ENTRY_ATTRIBUTES and not (item is None or isinstance(item, str)):
            return f"{key} must be a string or null, not {item!r}"
        if key in CHANNEL_SET:
            error = _channel_value_error(key, item)
            if error is not None:
                return error
    return None


def _channel_value_error(channel: str, value: Any) -> str | None:
    if channel in STRING_CHANNELS:
        return None if _is_text(value) else f"{channel} must be a non-empty string, not {value!r}"
    return None if isinstance(value, dict) else f"{channel} must be a JSON object, not {value!r}"


def _check_key_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        return f"value must be a list of key strings, not {value!r}"
    return None


#: Operators whose value only has to be an object.
_OBJECT_OPERATORS = frozenset({"$set", "$set_once"})
_OPERATOR_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "$set": _check_object,
    "$set_once": _check_object,
    "$add": _check_numbers,
    "$append": _check_channel_edit,
    "$remove": _check_channel_edit,
    "$unset": _check_key_list,
}


def upsert_body_error(body: Any) -> str | None:
    """What is wrong with a ``POST v1/user/{id}/`` body, or None."""
    if not isinstance(body, dict):
        return f"body must be a JSON object, not {_json_type(body)}"
    for channel in CHANNEL_SET.intersection(body):
        items = body[channel]
        if not isinstance(items, list):
            return f"{channel} must be a list, not {_json_type(items)}"
        for item in items:
            value = item["value"] if is_push_entry(channel, item) else item
            error = _channel_value_error(channel, value)
            if error is not None:
                return error
    return None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _one_of(values: Collection[str]) -> str:
    return " or ".join(repr(value) for value in values)
