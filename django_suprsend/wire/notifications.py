"""Workflow triggers and events, built and checked as suprsend-py-sdk 0.20.0 builds them.

A record is a plain dict whose keys are in the SDK's order, so that
``dumps(record)`` is byte for byte the body the SDK sends:

* :func:`build_workflow_trigger` for ``POST trigger/`` (the body as given, then
  ``$idempotency_key``, ``tenant_id``, ``cancellation_key``, then ``data: {}``
  where there was none);
* :func:`~django_suprsend.wire.events.build_event` for ``POST v2/event/`` and
  ``POST v2/bulk/event/``;
* :func:`build_legacy_workflow` for the legacy ``POST {workspace_key}/trigger/``.

Each builder copies what it is given (later changes to the caller's dicts do
not change the record) and checks it as the SDK's JSON schemas do, raising
:class:`~django_suprsend.exceptions.SuprsendValidationError` naming the field
and the value; inline channels of recipients are checked with the validators
of profile values (:mod:`django_suprsend.wire.validators`). The ``check_*``
functions check a record already built (one read back from storage) without
changing it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire import validators as v
from django_suprsend.wire.attachments import MAX_BODY_BYTES, add_attachments
from django_suprsend.wire.records import dumps, name_insert_id, utf8_size

Record = dict[str, Any]

#: At most this many records in one bulk request (workflows and events alike).
MAX_NOTIFICATIONS_PER_REQUEST = 100
#: Bytes the SDK adds to a workflow's size for keys the hub adds in flight.
WORKFLOW_ALLOWANCE = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_CANCELLATION_KEY_LENGTH = 255
MAX_TENANT_ID_LENGTH = 64
MAX_INLINE_CHANNEL_VALUES = 10
#: Top-level keys of a workflow trigger; the SDK's schema refuses any other.
WORKFLOW_KEYS = frozenset(
    {
        "workflow",
        "recipients",
        "actor",
        "data",
        "metadata",
        "$idempotency_key",
        "tenant_id",
        "cancellation_key",
    }
)
CHANNEL_NAMES = frozenset(
    {
        "androidpush",
        "iospush",
        "webpush",
        "email",
        "sms",
        "whatsapp",
        "slack",
        "inbox",
        "messenger",
        "ms_teams",
    }
)
_PUSH_PROVIDERS = {"$androidpush": v.ANDROID_PUSH_PROVIDERS, "$iospush": v.IOS_PUSH_PROVIDERS}
_PUSH_KEYS = frozenset({"token", "provider", "device_id", "bundle_id"})

Check = Callable[[Any, str], Any]


def _fail(field: str, value: Any, reason: str) -> SuprsendValidationError:
    return SuprsendValidationError(field, value, reason)


# -- sizes -------------------------------------------------------------------------


def workflow_size(record: Mapping[str, Any], text: str | None = None) -> int:
    """The size the SDK counts for a workflow trigger: its JSON bytes + 200."""
    return utf8_size(dumps(record) if text is None else text) + WORKFLOW_ALLOWANCE


def event_size(record: Mapping[str, Any], text: str | None = None) -> int:
    """The size the SDK counts for an event: its JSON bytes."""
    return utf8_size(dumps(record) if text is None else text)


def _check_size(size: int, what: str, field: str, value: Any) -> None:
    if size > MAX_BODY_BYTES:
        reason = (
            f"makes {what} of {size} bytes, over the limit of {MAX_BODY_BYTES} bytes "
            "(800KB) of one request body"
        )
        raise _fail(field, value, reason)


# -- idempotency keys --------------------------------------------------------------


def idempotency_key(namespace: str | uuid.UUID, entry_id: str | int | uuid.UUID) -> str:
    """A stable ``$idempotency_key``: ``uuid5`` of ``entry_id`` in ``namespace``.

    The same namespace (a string such as ``"myapp.order-shipped"``, or a UUID) and
    id always give the same key, so an entry persisted in an outbox sends the same
    key on every attempt, and the hub runs the workflow once.
    """
    if isinstance(namespace, str):
        if not namespace.strip():
            raise _fail("namespace", namespace, "must be a non-empty string or a UUID")
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"django-suprsend:{namespace}")
    return name_insert_id(namespace, str(entry_id))


# -- shared checks -------------------------------------------------------------------


def _optional_str(value: Any, field: str, max_length: int) -> None:
    """The schema's ``{"type": ["string", "null"], "maxLength": n}``."""
    if value is None:
        return
    if not isinstance(value, str):
        raise _fail(field, value, "must be a string or None")
    if len(value) > max_length:
        raise _fail(field, value, f"is {len(value)} characters long; at most {max_length}")


def _non_empty_str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(field, value, "must be a non-empty string")
    return value


def _dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, value, "must be a dict")
    return value


def _options(record: Record, options: Sequence[tuple[str, str | None]]) -> None:
    """Append each given option (the SDK skips empty ones), in order."""
    for key, value in options:
        if value is not None and value != "":
            record[key] = value


# -- recipients --------------------------------------------------------------------


def _one_or_many(value: Any, field: str, check: Check) -> None:
    """A channel value given alone or as a list of 1 to 10 of them."""
    if isinstance(value, list):
        if not 1 <= len(value) <= MAX_INLINE_CHANNEL_VALUES:
            reason = f"must hold 1 to {MAX_INLINE_CHANNEL_VALUES} values"
            raise _fail(field, value, reason)
        for index, item in enumerate(value):
            check(item, f"{field}[{index}]")
    else:
        check(value, field)


def _push(channel: str) -> Check:
    providers = _PUSH_PROVIDERS[channel]

    def check(value: Any, field: str) -> None:
        if not isinstance(value, dict) or "token" not in value or "provider" not in value:
            raise _fail(field, value, "must be a dict with token and provider")
        extra = sorted(set(value) - _PUSH_KEYS)
        if extra:
            raise _fail(field, value, f"has unknown keys {extra}: expected {sorted(_PUSH_KEYS)}")
        v.validate_push_token(value["token"], f"{field}.token")
        if value["provider"] not in providers:
            expected = ", ".join(repr(p) for p in providers)
            raise _fail(f"{field}.provider", value["provider"], f"must be one of {expected}")
        for key in ("device_id", "bundle_id"):
            _optional_str(value.get(key), f"{field}.{key}", 1 << 30)

    return check


def _language(value: Any, field: str) -> None:
    if value is not None:
        v.validate_language(value, field)


def _timezone(value: Any, field: str) -> None:
    if value is not None:
        v.validate_timezone(value, field)


def _locale(value: Any, field: str) -> None:
    if value is not None:
        v.validate_locale(value, field)


def _channels(value: Any, field: str) -> None:
    if not isinstance(value, list) or not all(item in CHANNEL_NAMES for item in value):
        raise _fail(field, value, f"must be a list of channel names from {sorted(CHANNEL_NAMES)}")


def _optional_bool(value: Any, field: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise _fail(field, value, "must be true, false or None")


def _optional_id(value: Any, field: str) -> None:
    if value is not None:
        v.validate_distinct_id(value, field)


_RECIPIENT_CHECKS: dict[str, Check] = {
    "is_transient": _optional_bool,
    "distinct_id": _optional_id,
    "$preferred_language": _language,
    "$locale": _locale,
    "$timezone": _timezone,
    "$channels": _channels,
}
_INLINE_CHANNEL_CHECKS: dict[str, Check] = {
    "$email": v.validate_email,
    "$sms": v.validate_phone,
    "$whatsapp": v.validate_phone,
    "$androidpush": _push("$androidpush"),
    "$iospush": _push("$iospush"),
    "$webpush": v.validate_webpush,
    "$slack": v.validate_slack,
    "$ms_teams": v.validate_ms_teams,
    "$inbox": v.require_str,
    "$messenger": v.require_str,
}


def check_recipient(value: Any, field: str = "recipients[0]") -> None:
    """A recipient or actor: a distinct_id, or a dict with optional inline channels."""
    if isinstance(value, str):
        _non_empty_str(value, field)
        return
    if not isinstance(value, dict):
        raise _fail(field, value, "must be a distinct_id (str) or a dict")
    for key, item in value.items():
        if key in _RECIPIENT_CHECKS:
            _RECIPIENT_CHECKS[key](item, f"{field}.{key}")
        elif key in _INLINE_CHANNEL_CHECKS:
            _one_or_many(item, f"{field}.{key}", _INLINE_CHANNEL_CHECKS[key])


# -- workflow triggers -------------------------------------------------------------


def workflow_trigger_record(
    body: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    tenant_id: str | None = None,
    cancellation_key: str | None = None,
    attachments: Sequence[Mapping[str, Any] | None] = (),
) -> Record:
    """The record as the SDK assembles it, unchecked: a deep copy of ``body``, with
    ``data`` created first if attachments are added, the options appended, then
    ``data: {}`` if there was none. Prefer :func:`build_workflow_trigger`."""
    if not isinstance(body, Mapping):
        raise _fail("body", body, "must be a dict (the workflow trigger's JSON)")
    record: Record = copy.deepcopy(dict(body))
    if attachments:
        add_attachments(record, "data", attachments)
    _options(
        record,
        (
            ("$idempotency_key", idempotency_key),
            ("tenant_id", tenant_id),
            ("cancellation_key", cancellation_key),
        ),
    )
    if record.get("data") is None:
        record["data"] = {}
    return record


def build_workflow_trigger(
    body: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    tenant_id: str | None = None,
    cancellation_key: str | None = None,
    attachments: Sequence[Mapping[str, Any] | None] = (),
) -> Record:
    """A checked workflow trigger for ``POST trigger/`` (one, or in a bulk array).

    ``body`` holds ``workflow``, ``recipients`` and optionally ``actor``, ``data``
    and ``metadata``; ``attachments`` are dicts made by
    :mod:`django_suprsend.wire.attachments`, added to ``data.$attachments``.
    """
    record = workflow_trigger_record(
        body,
        idempotency_key=idempotency_key,
        tenant_id=tenant_id,
        cancellation_key=cancellation_key,
        attachments=attachments,
    )
    check_workflow_trigger(record)
    return record


def check_workflow_trigger(record: Any) -> int:
    """Check a workflow trigger record as the SDK's schema does; return its size."""
    record = _dict(record, "workflow trigger")
    unknown = [key for key in record if key not in WORKFLOW_KEYS]
    if unknown:
        reason = f"is not a workflow trigger key (expected {sorted(WORKFLOW_KEYS)})"
        raise _fail(unknown[0], record[unknown[0]], reason)
    if "workflow" not in record:
        raise _fail("workflow", None, "is required: the slug of the workflow to run")
    _non_empty_str(record["workflow"], "workflow")
    recipients = record.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise _fail("recipients", recipients, "must be a non-empty list")
    for index, recipient in enumerate(recipients):
        check_recipient(recipient, f"recipients[{index}]")
    if "actor" in record:
        check_recipient(record["actor"], "actor")
    _dict(record.get("data"), "data")
    if "metadata" in record:
        _dict(record["metadata"], "metadata")
    _optional_str(record.get("$idempotency_key"), "$idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
    _optional_str(record.get("tenant_id"), "tenant_id", MAX_TENANT_ID_LENGTH)
    _optional_str(record.get("cancellation_key"), "cancellation_key", MAX_CANCELLATION_KEY_LENGTH)
    size = workflow_size(record)
    _check_size(size, "a workflow trigger", "workflow", record["workflow"])
    return size


# -- legacy workflows ----------------------------------------------------------------


def legacy_workflow_record(
    body: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    tenant_id: str | None = None,
    brand_id: str | None = None,
    attachments: Sequence[Mapping[str, Any] | None] = (),
) -> Record:
    """The legacy ``Workflow`` as the SDK assembles it, unchecked."""
    if not isinstance(body, Mapping):
        raise _fail("body", body, "must be a dict (the workflow's JSON)")
    record: Record = copy.deepcopy(dict(body))
    if attachments:
        add_attachments(record, "data", attachments)
    _options(
        record,
        (("$idempotency_key", idempotency_key), ("tenant_id", tenant_id), ("brand_id", brand_id)),
    )
    if record.get("data") is None:
        record["data"] = {}
    return record


def build_legacy_workflow(
    body: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    tenant_id: str | None = None,
    brand_id: str | None = None,
    attachments: Sequence[Mapping[str, Any] | None] = (),
) -> Record:
    """A checked legacy workflow (``name``, ``template``, ``notification_category``,
    ``users``, ``data``) for ``POST {workspace_key}/trigger/``."""
    record = legacy_workflow_record(
        body,
        idempotency_key=idempotency_key,
        tenant_id=tenant_id,
        brand_id=brand_id,
        attachments=attachments,
    )
    check_legacy_workflow(record)
    return record


def check_legacy_workflow(record: Any) -> int:
    """Check a legacy workflow as the SDK's ``workflow.json`` schema does; return its size."""
    record = _dict(record, "workflow")
    for key in ("name", "template", "notification_category"):
        if key not in record:
            raise _fail(key, None, "is required in a legacy workflow")
        value = record[key]
        if not isinstance(value, str) or len(value) < 2:
            raise _fail(key, value, "must be a string of at least 2 characters")
    users = record.get("users")
    if not isinstance(users, list) or not users:
        raise _fail("users", users, "must be a non-empty list")
    for index, user in enumerate(users):
        if not isinstance(user, dict):
            raise _fail(f"users[{index}]", user, "must be a dict")
        check_recipient(user, f"users[{index}]")
    _dict(record.get("data"), "data")
    _optional_str(record.get("$idempotency_key"), "$idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
    _optional_str(record.get("tenant_id"), "tenant_id", MAX_TENANT_ID_LENGTH)
    _optional_str(record.get("brand_id"), "brand_id", MAX_TENANT_ID_LENGTH)
    size = workflow_size(record)
    _check_size(size, "a workflow", "name", record["name"])
    return size
