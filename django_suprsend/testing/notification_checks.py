"""What the hub accepts in a workflow trigger or an event: the SDK's own schemas, by hand.

The rules are those of ``suprsend-py-sdk`` 0.20.0's ``request_json`` schemas
(``workflow_trigger.json``, ``workflow.json`` for legacy triggers, ``event.json``),
its reserved event names and its size budget: what the SDK refuses to send, the
emulator refuses to accept, so a client that skips a check is caught here.
Each check returns what is wrong (a message naming the field and the value), or None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any

__all__ = [
    "MAX_BULK_RECORDS",
    "MAX_REQUEST_BYTES",
    "event_error",
    "event_size",
    "legacy_workflow_error",
    "workflow_error",
    "workflow_size",
]

MAX_BULK_RECORDS = 100  # per bulk request, workflows and events alike
MAX_REQUEST_BYTES = 800 * 1024  # a body's apparent size; a bulk's: the sum of its records'
WORKFLOW_ALLOWANCE = 200  # the SDK's room for keys the hub adds to a workflow
RESERVED_EVENT_NAMES = frozenset(
    {
        "$identify",
        "$notification_delivered",
        "$notification_dismiss",
        "$notification_clicked",
        "$app_launched",
        "$user_login",
        "$user_logout",
    }
)
CHANNELS = frozenset(
    {"androidpush", "iospush", "webpush", "email", "sms", "whatsapp", "slack", "inbox"}
    | {"messenger", "ms_teams"}
)
_TRIGGER_KEYS = frozenset(
    {"$idempotency_key", "tenant_id", "workflow", "actor", "recipients", "data", "metadata"}
    | {"cancellation_key"}
)
_MAX_CHANNEL_ITEMS = 10
Check = Callable[[Any], str | None]


def workflow_size(body: Any) -> int:
    """The SDK's apparent size of a workflow: its JSON bytes plus 200."""
    return _json_size(body) + WORKFLOW_ALLOWANCE


def event_size(record: Any) -> int:
    """The SDK's apparent size of an event: its JSON bytes."""
    return _json_size(record)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


# -- bodies ------------------------------------------------------------------


def workflow_error(body: Any) -> str | None:
    """What is wrong with a ``POST trigger/`` body (``workflow_trigger.json``), or None."""
    if not isinstance(body, dict):
        return f"a workflow trigger must be a JSON object, not {_json_type(body)}"
    unknown = [key for key in body if key not in _TRIGGER_KEYS]
    if unknown:
        return f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_TRIGGER_KEYS))})"
    error = _required(body, ("workflow", "recipients", "data"))
    error = error or _field(body, "workflow", _non_empty())
    error = error or _field(body, "recipients", _RECIPIENTS)
    error = error or _optional(body, "actor", _RECIPIENT)
    error = error or _optional(body, "data", _object)
    error = error or _optional(body, "metadata", _object)
    return error or _keys_and_tenant(body, ("$idempotency_key", "cancellation_key"))


def legacy_workflow_error(body: Any) -> str | None:
    """What is wrong with a ``POST {workspace}/trigger/`` body (``workflow.json``), or None."""
    if not isinstance(body, dict):
        return f"a workflow must be a JSON object, not {_json_type(body)}"
    error = _required(body, ("name", "template", "notification_category", "users", "data"))
    for key in ("name", "template", "notification_category"):
        error = error or _field(body, key, _non_empty(2))
    error = error or _field(body, "users", _LEGACY_USERS)
    error = error or _field(body, "data", _object)
    error = error or _optional(body, "delay", _delay)
    error = error or _optional(body, "trigger_at", _non_empty(2))
    error = error or _optional(body, "delivery", _object)
    error = error or _optional(body, "brand_id", _string_or_null(64))
    return error or _keys_and_tenant(body, ("$idempotency_key",))


def event_error(record: Any, envs: Collection[str]) -> str | None:
    """What is wrong with an event (``event.json`` and the SDK's name rules), or None."""
    if not isinstance(record, dict):
        return f"an event must be a JSON object, not {_json_type(record)}"
    error = _required(record, ("$insert_id", "$time", "event", "env", "distinct_id", "properties"))
    error = error or _field(record, "$insert_id", _non_empty(36))
    error = error or _field(record, "$time", _epoch_ms)
    error = error or _field(record, "event", _event_name)
    error = error or _field(record, "distinct_id", _not_blank)
    error = error or _field(record, "properties", _object)
    error = error or _optional(record, "brand_id", _string_or_null(64))
    error = error or _keys_and_tenant(record, ("$idempotency_key",))
    if error is None and record["env"] not in envs:
        expected = " or ".join(repr(env) for env in sorted(envs))
        error = f'"env" {record["env"]!r} is not this workspace (expected {expected})'
    return error


def _keys_and_tenant(body: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    error = _optional(body, "tenant_id", _string_or_null(64))
    for key in keys:
        error = error or _optional(body, key, _string_or_null(255))
    return error


def _required(body: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    missing = [key for key in keys if key not in body]
    return f"{missing[0]!r} is a required property" if missing else None


def _field(body: dict[str, Any], key: str, check: Check) -> str | None:
    error = check(body[key])
    return None if error is None else f'"{key}": {error}'


def _optional(body: dict[str, Any], key: str, check: Check) -> str | None:
    return _field(body, key, check) if key in body else None


# -- values ------------------------------------------------------------------


def _non_empty(minimum: int = 1) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"must be a string, not {_json_type(value)}"
        if len(value) < minimum:
            return f"{value!r} is too short (at least {minimum} characters)"
        return None

    return check


def _not_blank(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-blank string, not {value!r}"
    return None


def _string_or_null(maximum: int) -> Check:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            return f"must be a string or null, not {_json_type(value)}"
        if len(value) > maximum:
            return f"is too long ({len(value)} characters; at most {maximum})"
        return None

    return check


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a JSON object, not {_json_type(value)}"


def _epoch_ms(value: Any) -> str | None:
    if type(value) is not int or value < 1640995200000:
        return f"must be epoch milliseconds (an integer from 1640995200000), not {value!r}"
    return None


def _delay(value: Any) -> str | None:
    if isinstance(value, str) or (type(value) is int and value >= 0):
        return None
    return f"must be a duration string or a number of seconds, not {value!r}"


def _event_name(value: Any) -> str | None:
    error = _non_empty(2)(value)
    if error is not None:
        return error
    name = value.strip()
    if name not in RESERVED_EVENT_NAMES and (name.startswith("$") or name[:3].lower() == "ss_"):
        return f"{name!r}: event names starting with [$,ss_] are reserved by SuprSend"
    return None


def _list_of(item: Check, *, minimum: int = 0, maximum: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"must be a list, not {_json_type(value)}"
        if len(value) < minimum:
            return f"must hold at least {minimum} item{'s' if minimum > 1 else ''}"
        if maximum is not None and len(value) > maximum:
            return f"holds {len(value)} items; at most {maximum}"
        for index, element in enumerate(value):
            error = item(element)
            if error is not None:
                return f"item {index}: {error}"
        return None

    return check


def _one_or_list(item: Check) -> Check:
    """A channel's value: one item, or a list of 1 to 10 of them."""
    many = _list_of(item, minimum=1, maximum=_MAX_CHANNEL_ITEMS)
    return lambda value: many(value) if isinstance(value, list) else item(value)


def _either(*checks: Check) -> Check:
    def check(value: Any) -> str | None:
        errors = [each(value) for each in checks]
        return None if None in errors else errors[-1]

    return check


def _setting(keys: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object with only these keys (each checked), the required ones present."""

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"must be a JSON object, not {_json_type(value)}"
        unknown = [key for key in value if key not in keys]
        if unknown:
            return f"unknown key {unknown[0]!r} (allowed: {', '.join(keys)})"
        return _required(value, required) or next(
            (error for key in value if (error := _field(value, key, keys[key]))), None
        )

    return check


def _pattern(regex: str, what: str) -> Check:
    compiled = re.compile(regex)

    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not compiled.match(value):
            return f"{value!r} is not {what}"
        return None

    return check


def _enum(values: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in values else f"{value!r} is not one of {', '.join(values)}"

    return check


def _push(providers: tuple[str, ...]) -> Check:
    optional = _string_or_null(10**9)
    keys = {"token": _non_empty(), "provider": _enum(providers)}
    return _setting({**keys, "device_id": optional, "bundle_id": optional}, ("token", "provider"))


_SLACK = _setting(
    {
        "access_token": _pattern(r"xox", "a Slack token (xox...)"),
        "channel_id": _pattern(r"[cC][a-zA-Z0-9]+$", "a Slack channel id (CXXXXXXXXX)"),
        "user_id": _pattern(r"[uUwW][a-zA-Z0-9]+$", "a Slack member id ([U|W]XXXXXXXXX)"),
        "email": _non_empty(),
        "incoming_webhook": _setting(
            {"url": _pattern(r"https://hooks\.slack\.com/", "a Slack webhook URL")}
        ),
    }
)
_TEAMS_TEXT = _non_empty(0)
_MS_TEAMS = _setting(
    {
        "tenant_id": _TEAMS_TEXT,
        "service_url": _pattern(r"https://smba\.trafficmanager\.net/", "a Teams service URL"),
        "conversation_id": _TEAMS_TEXT,
        "user_id": _TEAMS_TEXT,
        "incoming_webhook": _setting({"url": _TEAMS_TEXT}),
    }
)


def _user(text_minimum: int, *, legacy: bool = False) -> Check:
    """A recipient object (``user_setting``): typed channels, any other key allowed."""
    text = _non_empty(text_minimum)
    android, ios = _one_or_list(_push(("fcm", "xiaomi", "oppo"))), _one_or_list(_push(("apns",)))
    if legacy:  # the legacy schema also takes bare tokens
        android, ios = _either(android, _one_or_list(text)), _either(ios, _one_or_list(text))
    checks: dict[str, Check] = {
        "is_transient": lambda v: None if v is None or isinstance(v, bool) else "must be a boolean",
        "$channels": _list_of(_enum(tuple(sorted(CHANNELS)))),
        "$androidpush": android,
        "$iospush": ios,
        "$webpush": _one_or_list(_non_empty_object),
        "$slack": _one_or_list(_SLACK),
        "$ms_teams": _one_or_list(_MS_TEAMS),
    }
    for key in ("distinct_id", "$preferred_language", "$locale", "$timezone"):
        checks[key] = _string_or_null(10**9)
    for key in ("$email", "$sms", "$whatsapp", "$inbox", "$messenger"):
        checks[key] = _one_or_list(text)

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"must be a distinct_id or a user object, not {_json_type(value)}"
        return next(
            (
                error
                for key in value
                if key in checks and (error := _field(value, key, checks[key]))
            ),
            None,
        )

    return check


def _recipient(text_minimum: int) -> Check:
    """A distinct_id string or a user object."""
    user, text = _user(text_minimum), _non_empty(text_minimum)
    return lambda value: text(value) if isinstance(value, str) else user(value)


def _non_empty_object(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return f"must be a non-empty JSON object, not {value!r}"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


_RECIPIENT = _recipient(1)
_RECIPIENTS = _list_of(_RECIPIENT, minimum=1)
_LEGACY_USERS = _list_of(_user(2, legacy=True), minimum=1)
