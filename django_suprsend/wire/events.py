"""Events, built and checked as suprsend-py-sdk 0.20.0 builds them (``Event.get_final_json``).

An event record is ``{"$insert_id", "$time", "event", "env", "distinct_id",
"properties", ["$idempotency_key"], ["tenant_id"], ["brand_id"]}`` in that key
order, sent alone to ``POST v2/event/`` or in an array to ``POST v2/bulk/event/``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from django_suprsend.wire import validators as v
from django_suprsend.wire.attachments import add_attachments
from django_suprsend.wire.notifications import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_TENANT_ID_LENGTH,
    Record,
    _check_size,
    _dict,
    _fail,
    _optional_str,
    _options,
    event_size,
)
from django_suprsend.wire.records import new_insert_id

#: Event names with a reserved prefix (``$``, ``ss_``) that the SDK still lets through.
RESERVED_EVENT_NAMES = (
    "$identify",
    "$notification_delivered",
    "$notification_dismiss",
    "$notification_clicked",
    "$app_launched",
    "$user_login",
    "$user_logout",
)


def _event_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail("event", value, "must be a non-empty string")
    name = value.strip()
    if name not in RESERVED_EVENT_NAMES and (name.startswith("$") or name[:3].lower() == "ss_"):
        reason = "starts with $ or ss_, which SuprSend reserves for its own events"
        raise _fail("event", name, reason)
    if len(name) < 2:
        raise _fail("event", name, "must be at least 2 characters long")
    return name


def build_event(
    distinct_id: str,
    event: str,
    properties: Mapping[str, Any] | None = None,
    *,
    env: str,
    sdk_version: str,
    idempotency_key: str | None = None,
    tenant_id: str | None = None,
    brand_id: str | None = None,
    attachments: Sequence[Mapping[str, Any] | None] = (),
    insert_id: str | None = None,
    time_ms: int | None = None,
) -> Record:
    """An event record for ``POST v2/event/`` or ``POST v2/bulk/event/``, as the SDK's.

    ``distinct_id`` and ``event`` are ``strip()``ped; ``properties`` (copied) come
    first in ``properties``, then ``$attachments``, then ``$ss_sdk_version``.
    ``env`` is the workspace key (the workspace UID in API-key mode).
    """
    if not isinstance(distinct_id, str) or not distinct_id.strip():
        raise _fail("distinct_id", distinct_id, "is missing: a non-empty string is required")
    distinct_id = v.validate_distinct_id(distinct_id.strip())
    name = _event_name(event)
    if properties is not None and not isinstance(properties, Mapping):
        raise _fail("properties", properties, "must be a dict")
    props: Record = copy.deepcopy(dict(properties or {}))
    if attachments:
        add_attachments({"properties": props}, "properties", attachments)
    record: Record = {
        "$insert_id": new_insert_id() if insert_id is None else insert_id,
        "$time": int(time.time() * 1000) if time_ms is None else time_ms,
        "event": name,
        "env": env,
        "distinct_id": distinct_id,
        "properties": {**props, "$ss_sdk_version": sdk_version},
    }
    _options(
        record,
        (("$idempotency_key", idempotency_key), ("tenant_id", tenant_id), ("brand_id", brand_id)),
    )
    check_event(record)
    return record


def check_event(record: Any) -> int:
    """Check an event record as the SDK's ``event.json`` schema does; return its size."""
    record = _dict(record, "event")
    for key in ("$insert_id", "$time", "event", "env", "distinct_id", "properties"):
        if key not in record:
            raise _fail(key, None, "is required in an event record")
    v.validate_distinct_id(record["distinct_id"])
    _event_name(record["event"])
    _dict(record["properties"], "properties")
    if not isinstance(record["$insert_id"], str) or len(record["$insert_id"]) < 36:
        raise _fail("$insert_id", record["$insert_id"], "must be a UUID string")
    if not isinstance(record["$time"], int) or isinstance(record["$time"], bool):
        raise _fail("$time", record["$time"], "must be milliseconds since the epoch (int)")
    _optional_str(record.get("$idempotency_key"), "$idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
    _optional_str(record.get("tenant_id"), "tenant_id", MAX_TENANT_ID_LENGTH)
    _optional_str(record.get("brand_id"), "brand_id", MAX_TENANT_ID_LENGTH)
    size = event_size(record)
    _check_size(size, "an event", "event", record["event"])
    return size
