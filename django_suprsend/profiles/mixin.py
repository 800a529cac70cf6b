"""``SuprsendProfileMixin``: where each part of a SuprSend profile comes from, and the full push.

A model declares its mapping with class attributes; each *source* is a
field name, the name of an attribute, property or method (called with no
arguments), or a callable that takes the instance::

    class User(SuprsendProfileMixin, AbstractUser):
        suprsend_channels = {"$email": "email", "$sms": "phone",
                             "$androidpush": "get_android_tokens"}
        suprsend_properties = {"name": "get_full_name", "plan": "plan"}
        suprsend_language_field = "language"

The mapping of a class is resolved once (:func:`mapping_for`). The same
module keeps the *snapshot* of tracked values taken when a row is loaded
(:meth:`SuprsendProfileMixin.from_db`), which :mod:`django_suprsend.profiles.tracking`
diffs on save, and builds the *full push* (:meth:`build_suprsend_profile`)
used for creates, ``sync()``, admin resyncs and the backfill alike.
"""

from __future__ import annotations

import copy
import functools
import logging
import operator
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any, NamedTuple

from django.core.exceptions import FieldDoesNotExist
from django.db import models, router, transaction

from django_suprsend.exceptions import (
    SuprsendConfigurationError,
    SuprsendValidationError,
    error_dict,
)
from django_suprsend.profiles.loading import load_row
from django_suprsend.wire.operations import CHANNEL_KEYS, SINGLE_VALUE_CHECKS, ProfileEdit
from django_suprsend.wire.splitting import oversize_value
from django_suprsend.wire.validators import (
    validate_distinct_id,
    validate_json_value,
    validate_property_key,
)

__all__ = [
    "EVERY",
    "MISSING",
    "SNAPSHOT_KEY",
    "EditBuilder",
    "ProfileMapping",
    "Source",
    "SuprsendProfileMixin",
    "channel_values",
    "distinct_id_of",
    "is_empty",
    "mapping_for",
    "mapping_problems",
    "read_tracked",
    "remember",
    "source_field",
    "untracked_loads",
]

logger = logging.getLogger("django_suprsend")

#: Where the snapshot of tracked values lives in ``instance.__dict__``.
SNAPSHOT_KEY = "_suprsend_snapshot"
#: An update's change computed by ``save()`` before the write, for ``post_save`` to queue.
PREPARED_KEY = "_suprsend_prepared"
DEFAULT_ACTIVE_FIELD = "is_active"
_snapshots: ContextVar[bool] = ContextVar("django_suprsend_snapshots", default=True)

# Source kinds, in the order a change record lists their operations.
PROPERTY, CHANNEL, SETTING, ACTIVE, DISTINCT_ID = (
    "property",
    "channel",
    "setting",
    "active",
    "distinct_id",
)
# Channels whose tuple value is one (token, provider[, bundle_id]) value, not several values.
_ARITY = {"$androidpush": 3, "$iospush": 3, "$webpush": 2}
_SETTERS = {
    "$preferred_language": ProfileEdit.set_preferred_language,
    "$timezone": ProfileEdit.set_timezone,
}
# The operation of each verb: what ProfileEdit.add_<channel>()/remove_<channel>() append.
_CHANNEL_OPS = {"add": "$append", "remove": "$remove"}


class _Missing:
    def __repr__(self) -> str:
        return "<not loaded>"


#: A tracked value that was not loaded (deferred field) or not evaluated.
MISSING: Any = _Missing()


def is_empty(value: Any) -> bool:
    """None, ``""`` and empty containers: "no value" for a channel, language or time zone."""
    if value.__class__ is str:  # the usual case, on every full push
        return not value
    return value is None or value == "" or (isinstance(value, (dict, list, tuple)) and not value)


# -- mapping ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One mapped value: its SuprSend key, where it is read from, and how it is tracked."""

    kind: str
    key: str  # "$email", a property name, "$preferred_language", "$timezone", "active", ...
    read: Callable[[Any], Any]
    attname: str | None = None  # the concrete field it reads, when it is one
    names: frozenset[str] = frozenset()  # that field's name and attname, to match update_fields
    slot: str = dataclass_field(init=False)  # "kind:key": its key in the snapshot

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot", f"{self.kind}:{self.key}")


@dataclass(frozen=True)
class ProfileMapping:
    """The resolved mapping of one model class."""

    distinct_id: Source
    channels: tuple[Source, ...]
    properties: tuple[Source, ...]
    settings: tuple[Source, ...]  # language, then time zone
    active: Source | None
    # What the snapshot holds: field sources (read from __dict__, no query) and
    # property/setting/active sources that are attributes or methods (evaluated).
    tracked: tuple[Source, ...]
    # False for a multi-table child of another profile model: the parent row's
    # deletion (which Django always signals too) decides for the profile.
    deletes_profile: bool

    @property
    def channel_keys(self) -> list[str]:
        return list(dict.fromkeys(source.key for source in self.channels))


class Problem(NamedTuple):
    """A mapping mistake, reported by the system checks and raised at first use."""

    id: str  # "E002"...
    message: str
    hint: str | None = None
    #: Whether the mapping cannot be used at all (raised at first use). A property whose
    #: name is reserved is not: its value is refused at each save, like any bad value.
    fatal: bool = True


def source_field(model: type[models.Model], spec: Any) -> models.Field | None:
    """The concrete (non-m2m) field ``spec`` names on ``model``, if it names one."""
    if not isinstance(spec, str):
        return None
    if spec == "pk":
        return model._meta.pk
    try:
        field = model._meta.get_field(spec)
    except FieldDoesNotExist:
        return None
    return field if field.concrete and not field.many_to_many else None  # type: ignore[return-value]


def _declarations(model: type[models.Model]) -> Iterator[tuple[str, str, str, Any]]:
    """(attribute, kind, key, source) for every source declared on ``model``."""
    yield "suprsend_distinct_id", DISTINCT_ID, "distinct_id", model.suprsend_distinct_id
    for attribute, kind in (("suprsend_channels", CHANNEL), ("suprsend_properties", PROPERTY)):
        declared = getattr(model, attribute)
        if isinstance(declared, Mapping):
            for key, spec in declared.items():
                yield attribute, kind, key, spec
    yield "suprsend_language_field", SETTING, "$preferred_language", model.suprsend_language_field
    yield "suprsend_timezone_field", SETTING, "$timezone", model.suprsend_timezone_field
    yield "suprsend_active_field", ACTIVE, "active", model.suprsend_active_field


def _is_spec(spec: Any) -> bool:
    return (isinstance(spec, str) and bool(spec.strip())) or callable(spec)


def _optional(attribute: str) -> bool:
    return attribute.endswith("_field")  # language, time zone, active


def _has_source(model: type[models.Model], spec: str) -> bool:
    return source_field(model, spec) is not None or hasattr(model, spec)


def _is_default_active(kind: str, spec: Any) -> bool:
    """The default active field, which a model may lack (then it has none)."""
    return kind == ACTIVE and spec == DEFAULT_ACTIVE_FIELD


def mapping_problems(model: type[models.Model]) -> list[Problem]:
    """Every mistake in ``model``'s ``suprsend_*`` attributes (checks E002 to E004)."""
    problems = []
    for attribute in ("suprsend_channels", "suprsend_properties"):
        declared = getattr(model, attribute)
        if not isinstance(declared, Mapping):
            problems.append(
                Problem(
                    "E004",
                    f"{attribute} must be a dict of {{key: source}}, got {declared!r}.",
                )
            )
    for attribute, kind, key, spec in _declarations(model):
        where = f"{attribute}[{key!r}]" if kind in (CHANNEL, PROPERTY) else attribute
        if spec is None and _optional(attribute):
            continue
        if not _is_spec(spec):
            problems.append(
                Problem(
                    "E004",
                    f"{where} must be a field or attribute name (str) or a callable taking the "
                    f"instance{', or None' if _optional(attribute) else ''}; got {spec!r}.",
                )
            )
            continue
        if kind == CHANNEL and key not in CHANNEL_KEYS:
            problems.append(
                Problem(
                    "E002",
                    f"suprsend_channels has an unknown channel key {key!r}.",
                    f"Channel keys are {', '.join(CHANNEL_KEYS)}.",
                )
            )
        if kind == PROPERTY:
            try:
                validate_property_key(key, "suprsend_properties")
            except SuprsendValidationError as exc:
                problems.append(Problem("E004", f"{exc}.", fatal=False))
        if (
            isinstance(spec, str)
            and not _has_source(model, spec)
            and not _is_default_active(kind, spec)
        ):
            problems.append(
                Problem(
                    "E003",
                    f"{where} is {spec!r}, which is neither a field nor an attribute of "
                    f"{model._meta.label}.",
                    "Name a model field, a property or method defined on the class, or give "
                    "a callable that takes the instance.",
                )
            )
    return problems


def _call_if_callable(name: str) -> Callable[[Any], Any]:
    def read(instance: Any) -> Any:
        value = getattr(instance, name)
        return value() if callable(value) else value

    return read


def _source(model: type[models.Model], kind: str, key: str, spec: Any) -> Source:
    if not isinstance(spec, str):
        return Source(kind, key, spec)
    field = source_field(model, spec)
    if field is None:
        return Source(kind, key, _call_if_callable(spec))
    attname = field.attname
    return Source(
        kind, key, operator.attrgetter(attname), attname, frozenset({field.name, attname})
    )


@functools.cache
def mapping_for(model: type[models.Model]) -> ProfileMapping:
    """The resolved mapping of ``model`` (cached per class).

    Raises :class:`SuprsendConfigurationError` on the first mistake that
    ``manage.py check`` reports as an error.
    """
    errors = [p for p in mapping_problems(model) if p.id.startswith("E") and p.fatal]
    if errors:
        raise SuprsendConfigurationError(
            f"{model._meta.label}: {errors[0].message} Run `manage.py check` for every problem."
        )
    sources: dict[str, list[Source]] = {kind: [] for kind in (PROPERTY, CHANNEL, SETTING)}
    distinct_id = active = None
    for _, kind, key, spec in _declarations(model):
        if spec is None or (_is_default_active(kind, spec) and not _has_source(model, spec)):
            continue
        source = _source(model, kind, key, spec)
        if kind == DISTINCT_ID:
            distinct_id = source
        elif kind == ACTIVE:
            active = source
        else:
            sources[kind].append(source)
    assert distinct_id is not None  # E004 refuses a missing one
    tracked_id = distinct_id.attname not in (None, model._meta.pk.attname)
    tracked = [
        *([distinct_id] if tracked_id else []),
        *([active] if active else []),
        *sources[PROPERTY],
        *(source for source in sources[CHANNEL] if source.attname is not None),
        *sources[SETTING],
    ]
    concrete = model._meta.concrete_model
    return ProfileMapping(
        distinct_id=distinct_id,
        channels=tuple(sources[CHANNEL]),
        properties=tuple(sources[PROPERTY]),
        settings=tuple(sources[SETTING]),
        active=active,
        tracked=tuple(tracked),
        deletes_profile=not any(
            issubclass(parent, SuprsendProfileMixin) for parent in concrete._meta.get_parent_list()
        ),
    )


# -- values ----------------------------------------------------------------------


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


def _channel_items(instance: Any, mapping: ProfileMapping) -> list[tuple[str, Any]]:
    """``(channel, value)`` for each value of ``get_suprsend_channels()``, in its order.

    Read straight from the sources unless the class overrides the hook: one
    list instead of a dict of lists filtered twice, for every row of a backfill.
    """
    if type(instance).get_suprsend_channels is not SuprsendProfileMixin.get_suprsend_channels:
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


def distinct_id_of(instance: SuprsendProfileMixin) -> str | None:
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


# -- snapshot --------------------------------------------------------------------


class _Every:
    def __contains__(self, item: object) -> bool:
        return True


#: ``read_tracked(evaluate=EVERY)``: evaluate every method source.
EVERY: Container[str] = _Every()


def frozen(value: Any) -> Any:
    """A copy of mutable values (JSON fields), so in-place edits still show as changes."""
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def read_tracked(
    instance: models.Model,
    mapping: ProfileMapping,
    scope: Container[str] | None = None,
    *,
    evaluate: Container[str] = (),
    when_loaded: bool = False,
) -> dict[str, Any]:
    """Current tracked values, without a query.

    Field sources are read from ``__dict__`` when loaded and named in
    ``scope`` (``update_fields``; None: all). Other sources are evaluated
    when their slot is in ``evaluate``, or, with ``when_loaded``, when no
    field is deferred any more (an instance loaded with ``.only()`` could
    query through them).
    """
    values = {}
    data = instance.__dict__
    fully_loaded = None
    for source in mapping.tracked:
        slot = source.slot
        if source.attname is not None:
            if source.attname in data and (scope is None or not source.names.isdisjoint(scope)):
                values[slot] = data[source.attname]
            continue
        if slot not in evaluate:
            if fully_loaded is None:
                fully_loaded = when_loaded and not instance.get_deferred_fields()
            if not fully_loaded:
                continue
        values[slot] = source.read(instance)
    return values


_broken_sources: set[type] = set()  # the classes whose snapshot failed, logged once each


def _snapshot(
    instance: models.Model,
    mapping: ProfileMapping,
    scope: Container[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`read_tracked` for a row being loaded: a source that raises must not fail the
    query that loads it, so the snapshot then holds the fields alone (read without code of
    the user's); the save builds the change again and reports what raised."""
    try:
        return read_tracked(instance, mapping, scope, **options)
    except Exception:
        if type(instance) not in _broken_sources:
            _broken_sources.add(type(instance))
            logger.exception(
                "SuprSend: a source of %s raised while its row was loaded; the row loads, and "
                "its snapshot holds the fields only (logged once per model)",
                instance._meta.label,
            )
        return read_tracked(instance, mapping, scope)


@contextmanager
def untracked_loads() -> Iterator[None]:
    """Rows loaded in this block (this thread or async task) get no snapshot.

    For readers that only build full pushes and never save what they load
    (the backfill): the snapshot is half the cost of loading a row. A save
    of such an instance cannot tell what changed, so it sends every value.
    """
    token = _snapshots.set(False)
    try:
        yield
    finally:
        _snapshots.reset(token)


def remember(instance: models.Model, values: Mapping[str, Any]) -> None:
    """Merge ``values`` into the snapshot: a new dict (copies of the instance keep theirs),
    and none when nothing changed (the common save)."""
    data = instance.__dict__
    snapshot = data.get(SNAPSHOT_KEY, {})
    changed = {
        slot: frozen(value)
        for slot, value in values.items()
        if slot not in snapshot or snapshot[slot] != value
    }
    if changed:
        data[SNAPSHOT_KEY] = {**snapshot, **changed}


# -- the mixin -------------------------------------------------------------------

# Type checkers see a Model (the mixin always sits before one); at run time it is a plain class.
_Base = models.Model if TYPE_CHECKING else object


class SuprsendProfileMixin(_Base):
    """Keep a SuprSend profile in step with this model; place it before the model base.

    Class attributes (sources: field name, attribute/property/method name, or
    a callable taking the instance):

    - ``suprsend_distinct_id``: the profile's id, ``"pk"`` by default. SuprSend
      ids are immutable: keep the primary key or another never-changing field.
    - ``suprsend_channels``: ``{"$email": "email", "$sms": "phone", ...}``. A
      source gives one value or a list; push values are a token, a
      ``(token, provider)`` tuple or ``{"token", "provider", "bundle_id"}``.
    - ``suprsend_properties``: ``{"name": "get_full_name", "plan": "plan"}``.
    - ``suprsend_language_field``, ``suprsend_timezone_field``: None by default.
    - ``suprsend_active_field``: ``"is_active"`` (ignored when the model has no
      such field or attribute); false means "not synced" (see ``ON_DEACTIVATE``).

    Only field sources of channels are diffed on save: method sources (push
    tokens in a related model) go with the full push (create, ``sync()``,
    resync, reactivation). Property, language, time zone and active sources
    that are methods are evaluated when a row is loaded and when it is saved:
    they must be cheap and must not query.
    """

    suprsend_distinct_id: str | Callable[[Any], Any] = "pk"
    suprsend_channels: Mapping[str, str | Callable[[Any], Any]] = {}
    suprsend_properties: Mapping[str, str | Callable[[Any], Any]] = {}
    suprsend_language_field: str | Callable[[Any], Any] | None = None
    suprsend_timezone_field: str | Callable[[Any], Any] | None = None
    suprsend_active_field: str | Callable[[Any], Any] | None = DEFAULT_ACTIVE_FIELD
    # What the backfill reads rows with (see ``manage.py suprsend_backfill``): the relations
    # the sources read, and the field ``--since`` compares (None: ``date_joined`` or alike).
    suprsend_select_related: Sequence[str] | None = None
    suprsend_prefetch_related: Sequence[str] | None = None
    suprsend_backfill_since_field: str | None = None

    # -- hooks
    def get_suprsend_distinct_id(self) -> str:
        """The profile's distinct_id ("" when it has none yet: nothing is queued)."""
        value = mapping_for(type(self)).distinct_id.read(self)
        return "" if value is None else str(value)

    def get_suprsend_channels(self) -> dict[str, list[Any]]:
        """``{channel: [value, ...]}`` for the full push."""
        channels: dict[str, list[Any]] = {}
        for source in mapping_for(type(self)).channels:
            values = channel_values(source.key, source.read(self))
            channels.setdefault(source.key, []).extend(values)
        return channels

    def get_suprsend_properties(self) -> dict[str, Any]:
        """``{name: value}`` for the full push (None values are left out of it)."""
        return {source.key: source.read(self) for source in mapping_for(type(self)).properties}

    def should_sync_to_suprsend(self) -> bool:
        """False keeps this row out of SuprSend; by default the active field's value."""
        active = mapping_for(type(self)).active
        return True if active is None else bool(active.read(self))

    def build_suprsend_profile(self) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """The full push, ``(operations, errors)``: one ``$set`` of the non-None properties,
        an ``$append`` per channel value, then language and time zone.

        One code path for creates, ``sync()``, admin resyncs and the backfill.
        """
        mapping = mapping_for(type(self))
        builder = EditBuilder(self.get_suprsend_distinct_id())
        builder.set_properties(self.get_suprsend_properties(), skip_none=True)
        for channel, value in _channel_items(self, mapping):
            builder.channel("add", channel, value)
        for source in mapping.settings:
            value = source.read(self)
            if not is_empty(value):
                builder.setting(source.key, value)
        return builder.operations, builder.errors

    # -- Django integration
    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> Any:
        """Load as Django does, then snapshot the tracked values (no query).

        From here rather than ``post_init``: only rows read from the database
        get a snapshot, so an instance built in Python is never taken for
        the database's state. ``kwargs``: what newer Django passes on (``fetch_mode``
        since 6.1).
        """
        if not _snapshots.get():
            # Read only to build full pushes (the backfill): without Model.__init__ where
            # that builds the same instance.
            instance = load_row(cls, SuprsendProfileMixin, db, values, kwargs)
            if instance is None:
                instance = super().from_db(db, field_names, values, **kwargs)
            return instance
        instance = super().from_db(db, field_names, values, **kwargs)
        deferred = len(values) != len(cls._meta.concrete_fields)
        tracked = _snapshot(instance, mapping_for(cls), evaluate=() if deferred else EVERY)
        instance.__dict__[SNAPSHOT_KEY] = {slot: frozen(value) for slot, value in tracked.items()}
        return instance

    def refresh_from_db(
        self, using: str | None = None, fields: Any = None, from_queryset: Any = None
    ) -> None:
        """Reload as Django does; the reloaded values become the snapshot (also when a
        deferred field is first read)."""
        if fields is None:
            deferred = self.get_deferred_fields()
            super().refresh_from_db(using=using, from_queryset=from_queryset)
            scope = {f.attname for f in self._meta.concrete_fields if f.attname not in deferred}
            remember(self, _snapshot(self, mapping_for(type(self)), scope, when_loaded=True))
        else:
            fields = set(fields)
            super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
            remember(self, _snapshot(self, mapping_for(type(self)), fields))

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save inside a transaction, so the outbox entry commits with the row or not at all.

        Only in autocommit mode: inside a transaction there is nothing to add,
        and a refused save (a changed distinct_id) must not doom the caller's.
        """
        from django_suprsend.profiles.tracking import prepare_update  # tracking imports this module

        self.__dict__.pop(PREPARED_KEY, None)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        if transaction.get_connection(using).in_atomic_block:
            super().save(*args, **kwargs)
            return
        if not (args or self._state.adding or prepare_update(self, kwargs.get("update_fields"))):
            # An update that queues nothing needs no transaction (no BEGIN/COMMIT round trips).
            super().save(*args, **kwargs)
            return
        with transaction.atomic(using=using):
            super().save(*args, **kwargs)
