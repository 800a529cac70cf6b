"""The mapping of a model to its profile: which fields feed which property, channel and
setting (:func:`mapping_for`), and what is wrong with a declaration (:func:`mapping_problems`)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, NamedTuple

from django.apps import AppConfig, apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from django_suprsend.exceptions import (
    SuprsendConfigurationError,
    SuprsendValidationError,
)
from django_suprsend.wire.operations import CHANNEL_KEYS
from django_suprsend.wire.validators import (
    validate_property_key,
)

# Source kinds, in the order a change record lists their operations.
PROPERTY, CHANNEL, SETTING, ACTIVE, DISTINCT_ID = (
    "property",
    "channel",
    "setting",
    "active",
    "distinct_id",
)
DEFAULT_ACTIVE_FIELD = "is_active"


class ProfileModel:
    """The base :class:`~django_suprsend.profiles.mixin.SuprsendProfileMixin` builds on: what
    the layers below the mixin test for (``issubclass(model, ProfileModel)``), so that
    they never import the mixin, which imports them."""

    __slots__ = ()


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
        # A child of a model with the mixin (multi-table inheritance) shares its parent's
        # profile: deleting the child row leaves the profile to the parent.
        deletes_profile=not any(
            issubclass(parent, ProfileModel) for parent in concrete._meta.get_parent_list()
        ),
    )


def profile_models(app_configs: Sequence[AppConfig] | None = None) -> list[type[models.Model]]:
    """The installed models (of ``app_configs``, when given) that use the mixin."""
    candidates: Iterable[type[models.Model]] = (
        apps.get_models()
        if app_configs is None
        else (model for config in app_configs for model in config.get_models())
    )
    return [model for model in candidates if issubclass(model, ProfileModel)]
