"""Records as the SDK writes them: the exact JSON bytes (``dumps``), ``$insert_id``s, the
record of a profile edit, its size against the hub's limits, and requests' chunks."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from json import encoder as _encoder
from typing import Any

from django_suprsend.exceptions import SuprsendValidationError

MAX_RECORD_BYTES = 10_240


MAX_RECORDS_PER_REQUEST = 400


MAX_REQUEST_BYTES = 819_200


SCHEMA_VERSION = "2"


_ENCODER = json.JSONEncoder(ensure_ascii=False)  # what json.dumps(obj, ensure_ascii=False) uses


_FAST_ENCODE = _encoder.c_make_encoder and _encoder.c_make_encoder(
    None,  # no circular-reference bookkeeping: a cycle recurses, and dumps() then falls back
    _ENCODER.default,
    _encoder.encode_basestring,
    None,
    _ENCODER.key_separator,
    _ENCODER.item_separator,
    False,
    False,
    True,
)


def dumps(obj: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False)``: the SDK's exact serialisation.

    On the hot path of every send, so it calls the C encoder directly (a
    third faster than ``json.dumps``); the standard path still handles what
    the C one cannot (no C accelerator, a circular structure).
    """
    if _FAST_ENCODE:
        try:
            return "".join(_FAST_ENCODE(obj, 0))
        except RecursionError:
            pass
    return _ENCODER.encode(obj)


def new_insert_id() -> str:
    """A random UUID4 string, like ``str(uuid.uuid4())`` at less than half the cost."""
    return _uuid_text(os.urandom(16).hex(), "4")


def name_insert_id(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` at a third of the cost (no UUID object)."""
    return insert_id_namer(namespace)(name)


def insert_id_namer(namespace: uuid.UUID, prefix: str = "") -> Callable[[str], str]:
    """``name -> str(uuid.uuid5(namespace, prefix + name))``, hashing the common start once."""
    # SHA-1 because UUID version 5 is defined with it (not for security).
    start = hashlib.sha1(namespace.bytes + prefix.encode(), usedforsecurity=False)

    def name_(name: str) -> str:
        digest = start.copy()
        digest.update(name.encode())
        return _uuid_text(digest.hexdigest(), "5")

    return name_


def _uuid_text(h: str, version: str) -> str:
    """The UUID of ``version`` and the RFC 4122 variant made of the hex digits ``h``."""
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-{version}{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def utf8_size(text: str) -> int:
    """``len(text.encode("utf-8"))``, without the encode for ASCII (isascii() is O(1))."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def record_size(record: dict) -> int:
    """The size the SDK counts for a record: its JSON in UTF-8 bytes."""
    return utf8_size(dumps(record))


def _too_big(distinct_id: Any, size: int) -> SuprsendValidationError:
    reason = (
        f"has a profile edit of {size:,} bytes, over SuprSend's "
        f"{MAX_RECORD_BYTES:,}-byte limit for one profile edit"
    )
    return SuprsendValidationError("distinct_id", distinct_id, reason)


def check_record_size(record: dict, *, text: str | None = None) -> int:
    """Return the record's size; raise if it is over :data:`MAX_RECORD_BYTES`.

    ``text`` is the record's :func:`dumps`, when the caller already has it.
    """
    size = utf8_size(dumps(record) if text is None else text)
    if size > MAX_RECORD_BYTES:
        raise _too_big(record.get("distinct_id"), size)
    return size


def build_record(
    distinct_id: str,
    operations: list[dict],
    *,
    env: str,
    sdk_version: str,
    insert_id: str | None = None,
    time_ms: int | None = None,
    tenant_id: str | None = None,
) -> dict:
    """The async-edit record for ``POST event/``, keys in the SDK's order.

    Nothing is copied or checked again: the record holds ``operations`` itself.
    ``tenant_id`` comes last, and only when set (an empty one is left out, as
    the SDK does).
    """
    record = {
        "$schema": SCHEMA_VERSION,
        "$insert_id": new_insert_id() if insert_id is None else insert_id,
        "$time": int(time.time() * 1000) if time_ms is None else time_ms,
        "env": env,
        "distinct_id": distinct_id,
        "$user_operations": operations,
        "properties": {"$ss_sdk_version": sdk_version},
    }
    if tenant_id:
        record["tenant_id"] = tenant_id
    return record


def iter_chunks(
    items: Iterable[tuple[dict, str]],
    *,
    max_records: int = MAX_RECORDS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
    max_record_bytes: int = MAX_RECORD_BYTES,
    allowance: int = 0,
) -> Iterator[list[tuple[dict, str]]]:
    """Group ``(record, dumps(record))`` pairs into requests as the SDK does.

    A record's size is its JSON's UTF-8 length plus ``allowance`` (the SDK
    counts 200 more for a workflow trigger). Before a record is added, the
    chunk is closed if it already holds ``max_records`` records or
    ``max_bytes``, or if the record would take it over ``max_bytes`` (the sum
    of the records' sizes). A record over ``max_record_bytes`` raises: drop
    those first with :func:`check_record_size`. The defaults are the limits
    of profile edits. The body of a chunk is ``"[" + ", ".join(texts) + "]"``.
    """
    chunk: list[tuple[dict, str]] = []
    total = 0
    for item in items:
        size = utf8_size(item[1]) + allowance
        if size > max_record_bytes:
            raise _too_big(item[0].get("distinct_id"), size)
        if chunk and (len(chunk) >= max_records or total >= max_bytes or total + size > max_bytes):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += size
    if chunk:
        yield chunk
