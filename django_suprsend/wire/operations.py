"""SuprSend profile edits, built exactly as suprsend-py-sdk 0.20.0 builds them. Pure Python.

:class:`ProfileEdit` gathers the operations of one user's edit, one
operation per call, in call order. Where the SDK silently drops an invalid
call, it raises :class:`~django_suprsend.exceptions.SuprsendValidationError`
and leaves the edit as it was. :func:`build_record` wraps operations into the
async-edit record sent to ``POST event/``, and :func:`iter_chunks` groups
records into requests under the SDK's limits.
"""

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
from django_suprsend.wire import validators as v
from django_suprsend.wire.validators import ANDROID_PUSH_PROVIDERS, CHANNEL_KEYS

__all__ = [
    "ANDROID_PUSH_PROVIDERS",
    "CHANNEL_KEYS",
    "MAX_RECORDS_PER_REQUEST",
    "MAX_RECORD_BYTES",
    "MAX_REQUEST_BYTES",
    "SCHEMA_VERSION",
    "ProfileEdit",
    "build_record",
    "check_record_size",
    "dumps",
    "insert_id_namer",
    "iter_chunks",
    "name_insert_id",
    "new_insert_id",
    "record_size",
    "utf8_size",
]

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
_PUSH_META = ("$id_provider", "$bundle_id")
_BUNDLE_CHANNELS = ("$androidpush", "$iospush")
_LIST_KEYS = frozenset(CHANNEL_KEYS + _PUSH_META)  # reserved keys append()/remove() accept
_UNSET_KEYS = frozenset(CHANNEL_KEYS + v.PROFILE_SETTING_KEYS)  # reserved keys unset() accepts

Check = Callable[[Any, str], Any]
_ADD_CHECKS: dict[str, Check] = {
    "$email": v.validate_email,
    "$sms": v.validate_phone,
    "$whatsapp": v.validate_phone,
    "$androidpush": v.validate_push_token,
    "$iospush": v.validate_push_token,
    "$webpush": v.validate_webpush,
    "$slack": v.validate_slack,
    "$ms_teams": v.validate_ms_teams,
}
# A value once accepted must stay removable, so removals only check type and emptiness.
_REMOVE_CHECKS: dict[str, Check] = {
    channel: v.require_dict if channel in ("$webpush", "$slack", "$ms_teams") else v.require_str
    for channel in CHANNEL_KEYS
}
#: The check of each channel that takes a single value (no push provider), by operation:
#: ``{op: {channel: check(value, channel)}}`` is all that its add_/remove_ call appends.
SINGLE_VALUE_CHECKS: dict[str, dict[str, Check]] = {
    op: {channel: check for channel, check in checks.items() if channel not in v.PUSH_PROVIDERS}
    for op, checks in (("$append", _ADD_CHECKS), ("$remove", _REMOVE_CHECKS))
}


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


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


def _identifier(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SuprsendValidationError(field, value, "must be a non-empty string")
    return value.strip()


class ProfileEdit:
    """The operations of one edit of a SuprSend user profile.

    Each method appends one operation (calls are never merged) and returns
    the edit, so calls chain. Property keys are ``strip()``ped, values sent
    as given. An invalid call raises ``SuprsendValidationError`` and appends
    nothing; all of a call is checked before anything is appended.
    """

    __slots__ = ("distinct_id", "operations", "tenant_id")

    def __init__(self, distinct_id: str, tenant_id: str | None = None) -> None:
        self.distinct_id: str = _identifier(distinct_id, "distinct_id")
        self.tenant_id: str | None = (
            None if tenant_id is None else _identifier(tenant_id, "tenant_id")
        )
        self.operations: list[dict] = []

    def __repr__(self) -> str:
        tenant = f" tenant_id={self.tenant_id!r}" if self.tenant_id else ""
        return f"<ProfileEdit {self.distinct_id!r}{tenant}: {len(self.operations)} operations>"

    def __len__(self) -> int:
        return len(self.operations)

    def to_record(
        self,
        *,
        env: str,
        sdk_version: str,
        insert_id: str | None = None,
        time_ms: int | None = None,
    ) -> dict:
        """This edit as an async-edit record (see :func:`build_record`)."""
        return build_record(
            self.distinct_id,
            list(self.operations),
            env=env,
            sdk_version=sdk_version,
            insert_id=insert_id,
            time_ms=time_ms,
            tenant_id=self.tenant_id,
        )

    # -- plumbing
    def _add(self, operation: dict) -> ProfileEdit:
        self.operations.append(operation)
        return self

    @staticmethod
    def _pairs(op: str, key_or_dict: Any, value: Any) -> Iterable[tuple[Any, Any]]:
        if isinstance(key_or_dict, dict):
            if value is not _MISSING:
                raise SuprsendValidationError(
                    op, value, "cannot be given with a dict of properties"
                )
            return key_or_dict.items()
        if not isinstance(key_or_dict, str):
            reason = "must be a property name (str) or a dict of properties"
            raise SuprsendValidationError(op, key_or_dict, reason)
        if value is _MISSING:
            reason = "needs a value: call it with (key, value) or with a dict"
            raise SuprsendValidationError(key_or_dict.strip() or op, value, reason)
        return ((key_or_dict, value),)

    def _properties(self, op: str, key_or_dict: Any, value: Any, check: Check) -> ProfileEdit:
        out = {}
        for key, item in self._pairs(op, key_or_dict, value):
            name = v.validate_property_key(key, op)
            out[name] = check(item, name)
        return self._add({op: out}) if out else self

    @staticmethod
    def _channel_entry(op: str, channel: str, value: Any, provider: Any, bundle_id: Any) -> dict:
        strict = op == "$append"
        entry = {channel: (_ADD_CHECKS if strict else _REMOVE_CHECKS)[channel](value, channel)}
        if channel in v.PUSH_PROVIDERS:
            entry["$id_provider"] = v.validate_push_provider(channel, provider, strict=strict)
            if bundle_id is not None and bundle_id != "":  # "" is absent, as to the SDK
                entry["$bundle_id"] = v.require_str(bundle_id, "$bundle_id")
        return entry

    def _channel(
        self, op: str, channel: str, value: Any, provider: Any = None, bundle_id: Any = None
    ) -> ProfileEdit:
        return self._add({op: self._channel_entry(op, channel, value, provider, bundle_id)})

    def _list_op(self, op: str, key_or_dict: Any, value: Any) -> ProfileEdit:
        items = {
            v.validate_property_key(key, op, allowed=_LIST_KEYS): item
            for key, item in self._pairs(op, key_or_dict, value)
        }
        pushes = [key for key in items if key in v.PUSH_PROVIDERS]
        if len(pushes) > 1:
            raise SuprsendValidationError(op, pushes, "holds more than one push channel")
        if "$id_provider" in items and not pushes:
            reason = "goes only with $androidpush, $iospush or $webpush in the same call"
            raise SuprsendValidationError("$id_provider", items["$id_provider"], reason)
        if "$bundle_id" in items and not set(pushes) & set(_BUNDLE_CHANNELS):
            reason = "goes only with $androidpush or $iospush in the same call"
            raise SuprsendValidationError("$bundle_id", items["$bundle_id"], reason)
        out: dict = {}
        for key, item in items.items():
            if key in CHANNEL_KEYS:  # the SDK's order: channel, then $id_provider, $bundle_id
                provider, bundle_id = items.get("$id_provider"), items.get("$bundle_id")
                out.update(self._channel_entry(op, key, item, provider, bundle_id))
            elif key in _PUSH_META:
                out.setdefault(key, item)
            else:
                out[key] = _not_none(v.validate_json_value(item, key), op, key)
        return self._add({op: out}) if out else self

    # -- properties
    def set(self, key_or_dict: str | dict, value: Any = _MISSING) -> ProfileEdit:
        """``$set`` one property, ``set(key, value)``, or several, ``set({key: value})``.

        Values must be JSON values (None is sent as null); reserved keys
        (``$...``, ``ss_...``) are refused: use the dedicated methods.
        """
        return self._properties("$set", key_or_dict, value, v.validate_json_value)

    def set_once(self, key_or_dict: str | dict, value: Any = _MISSING) -> ProfileEdit:
        """``$set_once``: like :meth:`set`, kept only if the property has no value yet."""
        return self._properties(
            "$set_once",
            key_or_dict,
            value,
            lambda item, name: _not_none(v.validate_json_value(item, name), "$set_once", name),
        )

    def increment(self, key_or_dict: str | dict, value: Any = _MISSING) -> ProfileEdit:
        """``$add`` a number (int or finite float, not bool) to one or several properties."""
        return self._properties("$add", key_or_dict, value, v.validate_number)

    def append(self, key_or_dict: str | dict, value: Any = _MISSING) -> ProfileEdit:
        """``$append`` to list properties; channel keys (and ``$id_provider``,
        ``$bundle_id`` beside a push channel) are accepted and checked as by ``add_*``."""
        return self._list_op("$append", key_or_dict, value)

    def remove(self, key_or_dict: str | dict, value: Any = _MISSING) -> ProfileEdit:
        """``$remove`` from list properties; channel keys are checked as by ``remove_*``."""
        return self._list_op("$remove", key_or_dict, value)

    def unset(self, key_or_list: str | list[str] | tuple[str, ...]) -> ProfileEdit:
        """``$unset`` properties, channels or ``$preferred_language``/``$timezone``/``$locale``.

        An empty list appends nothing.
        """
        keys = (key_or_list,) if isinstance(key_or_list, str) else key_or_list
        if not isinstance(keys, (list, tuple)):
            reason = "must be a key (str) or a list of keys"
            raise SuprsendValidationError("$unset", key_or_list, reason)
        names = [v.validate_property_key(key, "$unset", allowed=_UNSET_KEYS) for key in keys]
        return self._add({"$unset": names}) if names else self

    def set_preferred_language(self, code: str) -> ProfileEdit:
        """``$preferred_language``: a lowercase ISO 639-1 code such as ``en``."""
        return self._add({"$set": {"$preferred_language": v.validate_language(code)}})

    def set_timezone(self, tz: str) -> ProfileEdit:
        """``$timezone``: an IANA name such as ``Europe/London``."""
        return self._add({"$set": {"$timezone": v.validate_timezone(tz)}})

    def set_locale(self, locale: str) -> ProfileEdit:
        """``$locale``: such as ``en`` or ``en_GB``."""
        return self._add({"$set": {"$locale": v.validate_locale(locale)}})

    # -- channels. add_* check the value fully; remove_* check only its type and
    # emptiness, so that a value accepted once stays removable after a rule tightens.
    def add_email(self, email: str) -> ProfileEdit:
        """Append an email address (``$email``)."""
        return self._channel("$append", "$email", email)

    def remove_email(self, email: str) -> ProfileEdit:
        """Remove an email address (any non-empty string)."""
        return self._channel("$remove", "$email", email)

    def add_sms(self, phone: str) -> ProfileEdit:
        """Append an SMS number (``$sms``) in E.164 form, such as ``+15555550123``."""
        return self._channel("$append", "$sms", phone)

    def remove_sms(self, phone: str) -> ProfileEdit:
        """Remove an SMS number (any non-empty string)."""
        return self._channel("$remove", "$sms", phone)

    def add_whatsapp(self, phone: str) -> ProfileEdit:
        """Append a WhatsApp number (``$whatsapp``) in E.164 form."""
        return self._channel("$append", "$whatsapp", phone)

    def remove_whatsapp(self, phone: str) -> ProfileEdit:
        """Remove a WhatsApp number (any non-empty string)."""
        return self._channel("$remove", "$whatsapp", phone)

    def add_androidpush(
        self, token: str, provider: str | None = None, bundle_id: str | None = None
    ) -> ProfileEdit:
        """Append an Android token; ``provider``: None or one of ANDROID_PUSH_PROVIDERS."""
        return self._channel("$append", "$androidpush", token, provider, bundle_id)

    def remove_androidpush(
        self, token: str, provider: str | None = None, bundle_id: str | None = None
    ) -> ProfileEdit:
        """Remove an Android token (any non-empty token and provider)."""
        return self._channel("$remove", "$androidpush", token, provider, bundle_id)

    def add_iospush(
        self, token: str, provider: str | None = None, bundle_id: str | None = None
    ) -> ProfileEdit:
        """Append an iOS token; ``provider`` is None or ``"apns"``."""
        return self._channel("$append", "$iospush", token, provider, bundle_id)

    def remove_iospush(
        self, token: str, provider: str | None = None, bundle_id: str | None = None
    ) -> ProfileEdit:
        """Remove an iOS token (any non-empty token and provider)."""
        return self._channel("$remove", "$iospush", token, provider, bundle_id)

    def add_webpush(self, subscription: dict, provider: str | None = None) -> ProfileEdit:
        """Append a web push subscription (``endpoint``, ``keys.p256dh``, ``keys.auth``);
        ``provider`` is None or ``"vapid"``."""
        return self._channel("$append", "$webpush", subscription, provider)

    def remove_webpush(self, subscription: dict, provider: str | None = None) -> ProfileEdit:
        """Remove a web push subscription (any non-empty dict)."""
        return self._channel("$remove", "$webpush", subscription, provider)

    def add_slack(self, identity: dict) -> ProfileEdit:
        """Append a Slack identity: ``{email|user_id|channel_id, access_token}`` or
        ``{incoming_webhook: {url}}``."""
        return self._channel("$append", "$slack", identity)

    def remove_slack(self, identity: dict) -> ProfileEdit:
        """Remove a Slack identity (any non-empty dict)."""
        return self._channel("$remove", "$slack", identity)

    def add_ms_teams(self, identity: dict) -> ProfileEdit:
        """Append an MS Teams identity: ``{tenant_id, service_url, conversation_id|user_id}``
        or ``{incoming_webhook: {url}}``."""
        return self._channel("$append", "$ms_teams", identity)

    def remove_ms_teams(self, identity: dict) -> ProfileEdit:
        """Remove an MS Teams identity (any non-empty dict)."""
        return self._channel("$remove", "$ms_teams", identity)


def _not_none(value: Any, op: str, key: str) -> Any:
    """``value``, which must not be None: the SDK silently drops ``append``, ``remove`` and
    ``set_once`` calls with None, and sending ``null`` means nothing to the hub either."""
    if value is None:
        raise SuprsendValidationError(
            f"{op} {key}", value, "is None: nothing to add or remove; use unset() to clear it"
        )
    return value
