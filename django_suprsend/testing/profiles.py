"""In-memory SuprSend user profiles and the operations that change them.

Pure data: no HTTP and no locking (the hub holds one lock per request).
Operations are assumed valid (``records.operations_error`` checks them);
the store keeps references to the values it is given and hands out deep
copies, so callers must not mutate what they pass in afterwards.

``defer`` queues edits instead of applying them: they are applied, in
order and with the time they arrived, as soon as anything reads or changes
the store, so no reader can tell. The hub defers the records of ``event/``
requests: applying is much of its CPU per record, which a benchmark sending
a million records would otherwise pay while it is timed.

Semantics, applied in order within a record:

- ``$set`` sets properties (``$preferred_language``, ``$timezone`` and
  ``$locale`` included); ``$set_once`` only those that are absent;
- ``$add`` increments a number from 0 (a non-numeric property is left alone);
- ``$append`` on a channel key adds the value to the channel's ordered set
  (``$id_provider`` / ``$bundle_id`` in the same dict become the push entry's
  ``id_provider`` / ``bundle_id``; re-appending a value updates them in
  place); on a property it appends to a list (absent → ``[v]``, a scalar
  ``x`` → ``[x, v]``);
- ``$remove`` on a channel drops the entry with that value, on a property
  every occurrence of the value from the list;
- ``$unset`` clears channels and deletes properties.
"""

from __future__ import annotations

import copy
import heapq
import json
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, cast

# The hub's channel keys, kept apart from the client's on purpose: the emulator
# checks what a client sends and must not share its code.
CHANNELS = (
    "$email",
    "$sms",
    "$whatsapp",
    "$androidpush",
    "$iospush",
    "$webpush",
    "$slack",
    "$ms_teams",
)
CHANNEL_SET = frozenset(CHANNELS)
# A channel key as sent -> the same string of our own: stored in place of the
# parsed one, which would otherwise be kept alive in each profile.
_OWN_CHANNEL_NAMES = {channel: channel for channel in CHANNELS}
PUSH_CHANNELS = frozenset({"$androidpush", "$iospush", "$webpush"})
#: Channels whose values are strings; the others take JSON objects.
STRING_CHANNELS = frozenset({"$email", "$sms", "$whatsapp", "$androidpush", "$iospush"})
#: Keys of an ``$append``/``$remove`` dict that qualify a push entry.
ENTRY_ATTRIBUTES = frozenset({"$id_provider", "$bundle_id"})

Operation = Mapping[str, Any]
#: Edits for ``defer``: (distinct_id, operations) pairs, iterated only when applied.
Edits = Iterable[tuple[str, Sequence[Operation]]]
#: A channel entry. A push channel's is (value, id_provider, bundle_id or
#: _ABSENT); the others keep the value alone: one object less per entry, and
#: a dict of strings, which the garbage collector does not track.
Entry = Any
_ABSENT = object()
#: A channel's entries by value key, in the order values were added; or, for a
#: non-push channel holding one string (an email, a phone number: most do),
#: that string alone, which saves a profile a third of its memory.
Stored = dict[Hashable, Entry] | str


def utc_now() -> str:
    """``2025-04-04T21:37:36.712496+00:00``, the hub's timestamp format."""
    return datetime.now(timezone.utc).isoformat()


def _value_key(value: Any) -> Hashable:
    """Hashable identity of a channel value: strings as such, objects by content."""
    if isinstance(value, str):
        return value
    return ("json", json.dumps(value, sort_keys=True))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ProfileStore:
    """Profiles by distinct_id; ``apply`` changes them, the readers return REST-shaped copies.

    Every public method but ``defer`` first applies the deferred edits.

    Kept as flat maps of strings, plain dicts and tuples rather than one
    object per profile: the garbage collector stops tracking those, so a
    store of 100,000 profiles does not slow every collection down.
    """

    def __init__(self) -> None:
        self._updated: dict[str, str] = {}  # every profile, in the order they were created
        # created_at only once it differs from updated_at: one entry less per new profile
        self._created: dict[str, str] = {}
        self._properties: dict[str, dict[str, Any]] = {}
        self._channels: dict[tuple[str, str], Stored] = {}
        # every operator but $set, which _apply does itself (the most common one)
        self._operators: dict[str, Callable[[str, dict[str, Any], Any], None]] = {
            "$set_once": self._set_once,
            "$add": self._add,
            "$append": self._append,
            "$remove": self._remove,
            "$unset": self._unset,
        }
        # (edits, now) queued by defer(), oldest first
        self._pending: deque[tuple[Edits, str]] = deque()

    def __len__(self) -> int:
        self._apply_pending()
        return len(self._updated)

    def __contains__(self, distinct_id: object) -> bool:
        self._apply_pending()
        return distinct_id in self._updated

    def newest(self, n: int) -> list[str]:
        """The distinct_ids of the ``n`` profiles updated last, newest first.

        Timestamps are ISO strings in UTC of one format, so they sort in time order;
        this picks the newest without copying every profile.
        """
        self._apply_pending()
        return heapq.nlargest(n, self._updated, key=self._updated.__getitem__)

    # -- changes -----------------------------------------------------------

    def ensure(self, distinct_id: str, now: str | None = None) -> bool:
        """Create an empty profile if there is none; return whether it was created."""
        self._apply_pending()
        if distinct_id in self._updated:
            return False
        self._create(distinct_id, now or utc_now())
        return True

    def apply(
        self, distinct_id: str, operations: Sequence[Operation], now: str | None = None
    ) -> None:
        """Apply operations in order; the profile springs into existence on the first one."""
        self._apply_pending()
        if operations:
            self._apply(distinct_id, operations, now or utc_now())

    def _apply(self, distinct_id: str, operations: Sequence[Operation], now: str) -> None:
        properties = self._properties.get(distinct_id)
        if properties is None:
            properties = self._create(distinct_id, now)
        else:
            self._touch(distinct_id, now)
        operators = self._operators
        for operation in operations:
            for operator in operation:  # one each; cheaper than .items()
                if operator == "$set":  # the most common operator, without a call
                    properties.update(operation[operator])
                else:
                    operators[operator](distinct_id, properties, operation[operator])

    def defer(self, edits: Edits, now: str) -> None:
        """Apply ``edits`` as ``apply(distinct_id, operations, now)`` each, but later.

        They are applied in the order they were deferred, before the store is
        next read or changed; only then is ``edits`` iterated, so it may be a
        generator that parses them then.
        """
        self._pending.append((edits, now))

    def _apply_pending(self) -> None:
        pending, apply = self._pending, self._apply
        while pending:
            edits, now = pending.popleft()  # dropped as it goes: its memory goes with it
            for distinct_id, operations in edits:
                if operations:
                    apply(distinct_id, operations, now)

    def upsert(self, distinct_id: str, body: Mapping[str, Any], now: str | None = None) -> bool:
        """Apply a REST upsert body; return whether the profile was created."""
        now = now or utc_now()
        created = self.ensure(distinct_id, now)
        self.apply(distinct_id, upsert_operations(body), now)
        return created

    def delete(self, distinct_id: str) -> bool:
        self._apply_pending()
        if self._updated.pop(distinct_id, None) is None:
            return False
        self._created.pop(distinct_id, None)
        del self._properties[distinct_id]
        for channel in CHANNELS:
            self._channels.pop((distinct_id, channel), None)
        return True

    def clear(self) -> None:
        self._pending.clear()
        self._created.clear()
        self._updated.clear()
        self._properties.clear()
        self._channels.clear()

    def _create(self, distinct_id: str, now: str) -> dict[str, Any]:
        self._updated[distinct_id] = now
        properties: dict[str, Any] = {}
        self._properties[distinct_id] = properties
        return properties

    def _touch(self, distinct_id: str, now: str) -> None:
        """A change to an existing profile: created_at is kept apart from then on."""
        self._created.setdefault(distinct_id, self._updated[distinct_id])
        self._updated[distinct_id] = now

    # -- operators: (distinct_id, the profile's properties, operation value) --

    def _set_once(self, distinct_id: str, properties: dict[str, Any], values: Operation) -> None:
        for key, value in values.items():
            properties.setdefault(key, value)

    def _add(self, distinct_id: str, properties: dict[str, Any], values: Operation) -> None:
        for key, amount in values.items():
            current = properties.get(key, 0)
            if _is_number(current):
                properties[key] = current + amount

    def _append(self, distinct_id: str, properties: dict[str, Any], values: Operation) -> None:
        for key, value in values.items():
            channel = _OWN_CHANNEL_NAMES.get(key)
            if channel is None:
                if key not in ENTRY_ATTRIBUTES:
                    _append_to_property(properties, key, value)
                continue
            if channel in PUSH_CHANNELS:
                # a push channel's stored value is always a dict of entries
                entries = cast(
                    "dict[Hashable, Entry]", self._channels.setdefault((distinct_id, channel), {})
                )
                _append_push_entry(entries, _value_key(value), value, values)
            else:
                self._add_value((distinct_id, channel), value)

    def _add_value(self, where: tuple[str, str], value: Any) -> None:
        """Add a value to a non-push channel, unless it holds it already."""
        stored = self._channels.get(where)
        if stored is None:
            self._channels[where] = value if isinstance(value, str) else {_value_key(value): value}
        elif isinstance(stored, str):
            if value != stored:
                self._channels[where] = {stored: stored, _value_key(value): value}
        else:
            stored.setdefault(_value_key(value), value)

    def _remove(self, distinct_id: str, properties: dict[str, Any], values: Operation) -> None:
        for key, value in values.items():
            if key in CHANNEL_SET:
                self._remove_from_channel(distinct_id, key, value)
            elif key not in ENTRY_ATTRIBUTES:
                current = properties.get(key)
                if isinstance(current, list):
                    properties[key] = [item for item in current if item != value]

    def _remove_from_channel(self, distinct_id: str, channel: str, value: Any) -> None:
        where = (distinct_id, channel)
        stored = self._channels.get(where)
        if isinstance(stored, str):
            if _value_key(value) == stored:
                del self._channels[where]
        elif stored is not None:
            stored.pop(_value_key(value), None)
            if not stored:
                del self._channels[where]

    def _unset(self, distinct_id: str, properties: dict[str, Any], keys: Iterable[str]) -> None:
        for key in keys:
            if key in CHANNEL_SET:
                self._channels.pop((distinct_id, key), None)
            else:
                properties.pop(key, None)

    # -- readers -----------------------------------------------------------

    def get(self, distinct_id: str) -> dict[str, Any] | None:
        """The profile as ``GET v1/user/{id}/`` returns it (seed 004), or None."""
        self._apply_pending()
        return self._render(distinct_id) if distinct_id in self._updated else None

    def all(self) -> dict[str, dict[str, Any]]:
        self._apply_pending()
        return {distinct_id: self._render(distinct_id) for distinct_id in self._updated}

    def channel_values(self, distinct_id: str, channel: str) -> list[Any]:
        self._apply_pending()
        entries = _entries(self._channels.get((distinct_id, channel)))
        return [copy.deepcopy(_entry_value(channel, entry)) for entry in entries]

    def properties(self, distinct_id: str) -> dict[str, Any]:
        self._apply_pending()
        return copy.deepcopy(self._properties.get(distinct_id, {}))

    def _render(self, distinct_id: str) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "distinct_id": distinct_id,
            "properties": copy.deepcopy(self._properties[distinct_id]),
            "created_at": self._created.get(distinct_id, self._updated[distinct_id]),
            "updated_at": self._updated[distinct_id],
        }
        for channel in CHANNELS:
            stored = self._channels.get((distinct_id, channel))
            if stored is not None:
                rendered[channel] = [_render_entry(channel, entry) for entry in _entries(stored)]
        return rendered


def _append_to_property(properties: dict[str, Any], key: str, value: Any) -> None:
    current = properties.get(key)
    if isinstance(current, list):
        current.append(value)
    elif key in properties:
        properties[key] = [current, value]
    else:
        properties[key] = [value]


def _entries(stored: Stored | None) -> Iterable[Entry]:
    if stored is None:
        return ()
    return (stored,) if isinstance(stored, str) else stored.values()


def _entry_value(channel: str, entry: Entry) -> Any:
    return entry[0] if channel in PUSH_CHANNELS else entry


def _append_push_entry(
    entries: dict[Hashable, Entry], value_key: Hashable, value: Any, operation: Operation
) -> None:
    old = entries.get(value_key)
    bundle_id = operation.get("$bundle_id", _ABSENT if old is None else old[2])
    entries[value_key] = (value, operation.get("$id_provider"), bundle_id)  # keeps its position


def _render_entry(channel: str, entry: Entry) -> dict[str, Any]:
    rendered = {"value": copy.deepcopy(_entry_value(channel, entry))}
    if channel in PUSH_CHANNELS:
        _, id_provider, bundle_id = entry
        rendered["id_provider"] = id_provider
        if bundle_id is not _ABSENT:
            rendered["bundle_id"] = bundle_id
    rendered["status"] = "active"
    rendered["perma_status"] = "active"
    return rendered


def upsert_operations(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn a ``POST v1/user/{id}/`` body (seed 004) into operations.

    Channel lists add their values (push entries may be ``{"value",
    "id_provider", "bundle_id"}`` dicts); every other key is ``$set``.
    """
    properties = {key: value for key, value in body.items() if key not in CHANNEL_SET}
    operations: list[dict[str, Any]] = [{"$set": properties}] if properties else []
    for channel, items in body.items():
        if channel in CHANNEL_SET:
            operations.extend({"$append": _channel_item_operation(channel, item)} for item in items)
    return operations


def is_push_entry(channel: str, item: Any) -> bool:
    """A push channel item of a REST body given as ``{"value", "id_provider", "bundle_id"}``."""
    return channel in PUSH_CHANNELS and isinstance(item, Mapping) and "value" in item


def _channel_item_operation(channel: str, item: Any) -> dict[str, Any]:
    if is_push_entry(channel, item):
        operation = {channel: item["value"], "$id_provider": item.get("id_provider")}
        if "bundle_id" in item:
            operation["$bundle_id"] = item["bundle_id"]
        return operation
    if channel in PUSH_CHANNELS:
        return {channel: item, "$id_provider": None}
    return {channel: item}
