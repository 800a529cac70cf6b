"""From an instance and its mapping to profile edits: the channel values of a field, the
operations of a full push (:class:`EditBuilder`), and the distinct_id."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from django_suprsend.exceptions import (
    SuprsendValidationError,
    error_dict,
)
from django_suprsend.profiles.mapping import (
    ProfileMapping,
    is_empty,
)
from django_suprsend.wire.operations import CHANNEL_KEYS, SINGLE_VALUE_CHECKS, ProfileEdit
from django_suprsend.wire.splitting import oversize_value
from django_suprsend.wire.validators import (
    validate_distinct_id,
    validate_json_value,
    validate_property_key,
)

# Channels whose tuple value is one (token, provider[, bundle_id]) value, not several values.
_ARITY = {"$androidpush": 3, "$iospush": 3, "$webpush": 2}

logger = logging.getLogger("django_suprsend")
_Hook = TypeVar("_Hook", bound=Callable[..., Any])


_SETTERS = {
    "$preferred_language": ProfileEdit.set_preferred_language,
    "$timezone": ProfileEdit.set_timezone,
}


# The operation of each verb: what ProfileEdit.add_<channel>()/remove_<channel>() append.
_CHANNEL_OPS = {"add": "$append", "remove": "$remove"}


def channel_values(channel: str, value: Any) -> list[Any]:
    """What a source gave for ``channel``, as a list without empty values.

    A str or dict is one value; for push channels a tuple is one
    ``(token, provider[, bundle_id])`` value; any other iterable (list,
    set, queryset, generator) holds several values.
    """
    # The usual shapes first: this runs for every channel of every full push.
    if value.__class__ is str:
        return [value] if value else []
    if value.__class__ is list:
        return [item for item in value if not is_empty(item)]
    if is_empty(value):
        return []
    if isinstance(value, (str, bytes, dict)) or (isinstance(value, tuple) and channel in _ARITY):
        return [value]
    if isinstance(value, Iterable):
        return [item for item in value if not is_empty(item)]
    return [value]


def default_hook(hook: _Hook) -> _Hook:
    """Mark the mixin's own implementation of a hook, so that the builder can tell a model
    that overrides it (and must be asked) from one that does not (read the sources)."""
    hook.suprsend_default = True  # type: ignore[attr-defined]
    return hook


def _channel_items(instance: Any, mapping: ProfileMapping) -> list[tuple[str, Any]]:
    """``(channel, value)`` for each value of ``get_suprsend_channels()``, in its order.

    Read straight from the sources unless the class overrides the hook: one
    list instead of a dict of lists filtered twice, for every row of a backfill.
    """
    if not getattr(type(instance).get_suprsend_channels, "suprsend_default", False):
        return [
            (channel, value)
            for channel, values in instance.get_suprsend_channels().items()
            for value in channel_values(channel, values)
        ]
    items = []
    for source in mapping.channels:  # one source per channel key: the mapping is a dict
        value = source.read(instance)
        if value.__class__ is str:  # one value, the usual case
            if value:
                items.append((source.key, value))
        else:
            items.extend((source.key, item) for item in channel_values(source.key, value))
    return items


def _channel_args(channel: str, value: Any) -> tuple[Any, ...]:
    """The arguments of ``ProfileEdit.add_<channel>`` for one value."""
    if channel not in CHANNEL_KEYS:
        raise SuprsendValidationError(channel, value, "is not a SuprSend channel key")
    arity = _ARITY.get(channel, 1)
    if arity == 1:
        return (value,)
    if isinstance(value, tuple):
        if 1 <= len(value) <= arity:
            return value
        shape = "(subscription, provider)" if arity == 2 else "(token, provider, bundle_id)"
        raise SuprsendValidationError(channel, value, f"must be a tuple {shape}")
    if isinstance(value, dict) and channel == "$webpush":
        return (
            (value["subscription"], value.get("provider")) if "subscription" in value else (value,)
        )
    if isinstance(value, dict):
        if "token" not in value:
            raise SuprsendValidationError(
                channel,
                value,
                "must be a token, or a dict with 'token' (and 'provider', 'bundle_id')",
            )
        return value["token"], value.get("provider"), value.get("bundle_id")
    return (value,)


class EditBuilder:
    """A :class:`ProfileEdit` built value by value: a refused value becomes an error dict
    and the other values still go, so one bad value never loses the rest of a save."""

    __slots__ = ("edit", "errors")

    def __init__(self, distinct_id: str) -> None:
        self.edit = ProfileEdit(distinct_id)
        self.errors: list[dict[str, str]] = []

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        """``function(*args)``; what it refuses becomes an error dict."""
        try:
            function(*args)
        except SuprsendValidationError as exc:
            self.errors.append(error_dict(exc))

    def set_properties(self, values: Mapping[str, Any], *, skip_none: bool = False) -> None:
        """One ``$set`` of every valid value (``skip_none``: of those that are not None)."""
        valid = {}
        for key, value in values.items():
            if value is None and skip_none:
                continue
            try:
                name = validate_property_key(key, "$set")
                validate_json_value(value, name)
            except SuprsendValidationError as exc:
                self.errors.append(error_dict(exc))
                continue
            too_big = oversize_value(self.edit.distinct_id, name, value)
            if too_big is None:
                valid[name] = value
            else:
                self.errors.append(error_dict(too_big))
        if valid:
            # Each key and value is checked above as ProfileEdit.set() checks them.
            self.edit.operations.append({"$set": valid})

    def unset(self, keys: list[str]) -> None:
        if keys:
            self._call(self.edit.unset, keys)

    def channel(self, verb: str, channel: str, value: Any) -> None:
        """``verb`` ("add" or "remove") one channel value, as ``add_<channel>()`` does."""
        op = _CHANNEL_OPS[verb]
        # A single-value channel's operation directly: the full push of every row does this.
        check = SINGLE_VALUE_CHECKS[op].get(channel)
        try:
            if check is None:
                self.edit._channel(op, channel, *_channel_args(channel, value))
            else:
                self.edit.operations.append({op: {channel: check(value, channel)}})
        except SuprsendValidationError as exc:
            self.errors.append(error_dict(exc))

    def setting(self, key: str, value: Any) -> None:
        """Set ``$preferred_language`` or ``$timezone`` (a ``ZoneInfo`` is sent by its key)."""
        code = value if value.__class__ is str else getattr(value, "key", value)
        self._call(_SETTERS[key], self.edit, code)

    @property
    def operations(self) -> list[dict[str, Any]]:
        return self.edit.operations


def distinct_id_of(instance: Any) -> str | None:
    """The instance's distinct_id, stripped; None (and a warning) when it has none.

    Raises :class:`SuprsendValidationError` for one the outbox cannot hold (over
    ``MAX_DISTINCT_ID_LENGTH`` characters, a NUL character): see :func:`broken_change`.
    """
    value = instance.get_suprsend_distinct_id()
    if isinstance(value, str) and value.strip():
        return validate_distinct_id(value.strip())
    logger.warning(
        "SuprSend: %s %s has no distinct_id (%r); nothing is queued for it.",
        instance._meta.label,
        instance.pk,
        value,
    )
    return None
