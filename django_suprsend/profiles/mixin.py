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

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import models, router, transaction

from django_suprsend.profiles.builder import (
    EditBuilder,
    _channel_items,
    channel_values,
    default_hook,
)
from django_suprsend.profiles.loading import load_row
from django_suprsend.profiles.mapping import (
    DEFAULT_ACTIVE_FIELD,
    ProfileModel,
    is_empty,
    mapping_for,
)
from django_suprsend.profiles.snapshot import (
    EVERY,
    PREPARED_KEY,
    SNAPSHOT_KEY,
    _snapshot,
    _snapshots,
    frozen,
    remember,
)
from django_suprsend.profiles.tracking import prepare_update

__all__ = ["SuprsendProfileMixin"]

logger = logging.getLogger("django_suprsend")


# -- mapping ---------------------------------------------------------------------


# -- values ----------------------------------------------------------------------


# -- snapshot --------------------------------------------------------------------


# -- the mixin -------------------------------------------------------------------

# Type checkers see a Model (the mixin always sits before one); at run time it is a plain class.
_Base = models.Model if TYPE_CHECKING else ProfileModel


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

    @default_hook
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
