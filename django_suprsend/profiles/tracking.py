"""Change tracking: the snapshot taken when a row is loaded, diffed when it is saved.

The snapshot (``SuprsendProfileMixin.from_db``) holds the tracked values as
the database had them; a save compares the instance with it and queues only
what changed, in the save's transaction and on the save's database. A save
that changes nothing costs no query and writes nothing.

Receivers are connected per model class that uses the mixin (each concrete
class, proxies and multi-table children included), when the app registry is
ready and, for classes created later, on ``class_prepared``: the other models
of the project pay nothing.

Saves and deletes queue nothing inside :func:`paused` or with
``SUPRSEND["AUTOSYNC"] = False``; ``raw`` saves (``loaddata``) are skipped.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from django.apps import apps as global_apps
from django.db import models
from django.db.models.signals import (
    class_prepared,
    post_delete,
    post_save,
    pre_delete,
    pre_save,
)

from django_suprsend.conf import suprsend_settings
from django_suprsend.delivery.enqueue import enqueue_many
from django_suprsend.exceptions import SuprsendDistinctIdChanged
from django_suprsend.profiles.builder import EditBuilder, channel_values, distinct_id_of
from django_suprsend.profiles.mapping import (
    CHANNEL,
    MISSING,
    PROPERTY,
    SETTING,
    ProfileMapping,
    ProfileModel,
    Source,
    is_empty,
    mapping_for,
)
from django_suprsend.profiles.refusal import refusal
from django_suprsend.profiles.snapshot import PREPARED_KEY, SNAPSHOT_KEY, read_tracked, remember
from django_suprsend.wire.operations import ProfileEdit

__all__ = [
    "Change",
    "check_distinct_id",
    "connect",
    "connect_all",
    "full_change",
    "paused",
    "prepare_save",
    "queueing",
    "write",
]

if TYPE_CHECKING:
    from django_suprsend.profiles.mixin import SuprsendProfileMixin

EDIT, DELETE = "edit", "delete"
_DIFFED = (PROPERTY, CHANNEL, SETTING)
_DELETING_KEY = "_suprsend_on_delete"
_UID = "django_suprsend.profiles.tracking"
_paused: ContextVar[bool] = ContextVar("django_suprsend_paused", default=False)


@contextmanager
def paused() -> Iterator[None]:
    """Saves and deletes in this block queue nothing (this thread or async task only).

    Snapshots still follow the saves, so nothing is queued later for them
    either: use it for imports and data fixes you sync yourself. Also a
    decorator of (sync) functions.
    """
    token = _paused.set(True)
    try:
        yield
    finally:
        _paused.reset(token)


def queueing() -> bool:
    """Whether saves and deletes queue changes now."""
    return not _paused.get() and suprsend_settings.AUTOSYNC


class Change(NamedTuple):
    """One outbox entry to write."""

    instance: models.Model
    distinct_id: str
    operations: list[dict[str, Any]]
    errors: list[dict[str, str]]
    kind: str = EDIT


def write(changes: list[Change], using: str) -> int:
    """Queue ``changes`` on ``using``, in the caller's transaction; returns entries written."""
    count = 0
    for kind in (EDIT, DELETE):
        items = [
            (c.distinct_id, c.operations, c.errors, c.instance) for c in changes if c.kind == kind
        ]
        if items:
            count += enqueue_many(items, using=using, kind=kind)
    return count


# -- what to queue ------------------------------------------------------------------


def broken_change(instance: SuprsendProfileMixin, exc: Exception) -> Change | None:
    """What is queued instead of a change whose building raised ``exc``: its refusal alone
    (see :mod:`django_suprsend.profiles.refusal`); a mapping that cannot be used at all (what
    ``manage.py check`` reports as an error) raises."""
    refused = refusal(instance, exc)
    return None if refused is None else Change(instance, refused[0], [], [refused[1]])


def full_change(instance: SuprsendProfileMixin) -> Change | None:
    """The full push of ``instance``, or None when it should not sync or has nothing to send.

    Never raises for the instance's sake: a failure to build it is queued as a refusal.
    """
    try:
        return _full_change(instance)
    except Exception as exc:
        return broken_change(instance, exc)


def _full_change(instance: SuprsendProfileMixin) -> Change | None:
    if not instance.should_sync_to_suprsend():
        return None
    distinct_id = distinct_id_of(instance)
    if distinct_id is None:
        return None
    operations, errors = instance.build_suprsend_profile()
    return Change(instance, distinct_id, operations, errors) if operations or errors else None


def policy_change(
    instance: SuprsendProfileMixin, mapping: ProfileMapping, policy: str
) -> Change | None:
    """What deleting or deactivating does under ``policy``: "delete", "unset" or "ignore"."""
    if policy == "ignore":
        return None
    distinct_id = distinct_id_of(instance)
    if distinct_id is None:
        return None
    if policy == "delete":
        return Change(instance, distinct_id, [], [], DELETE)
    keys = mapping.channel_keys
    if not keys:
        return None
    return Change(instance, distinct_id, ProfileEdit(distinct_id).unset(keys).operations, [])


def _changed(source: Source, was: Any, now: Any) -> bool:
    if was is MISSING:  # not loaded: the old value is unknown
        return not (source.kind == CHANNEL and is_empty(now))
    if source.kind == PROPERTY:
        return was != now
    return was != now and not (is_empty(was) and is_empty(now))


def _diff_channel(builder: EditBuilder, channel: str, was: Any, now: Any) -> None:
    """``$remove`` what went, then ``$append`` what came (an unknown old value: no removal)."""
    before = [] if was is MISSING else channel_values(channel, was)
    after = channel_values(channel, now)
    for value in before:
        if value not in after:
            builder.channel("remove", channel, value)
    for value in after:
        if value not in before:
            builder.channel("add", channel, value)


def diff_change(
    instance: SuprsendProfileMixin,
    mapping: ProfileMapping,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
) -> Change | None:
    """The change a save of an existing row makes, from its snapshot ``old`` to ``new``."""
    active = mapping.active
    if active is not None and active.slot in new:
        was, now = old.get(active.slot, MISSING), bool(new[active.slot])
        if not now and (was is MISSING or was):
            return policy_change(instance, mapping, suprsend_settings.ON_DEACTIVATE)
        if now and was is not MISSING and not was:
            return full_change(instance)  # reactivated
    id_slot = mapping.distinct_id.slot
    if id_slot in old and id_slot in new and is_empty(old[id_slot]) and not is_empty(new[id_slot]):
        return full_change(instance)  # the row just got its distinct_id: its first push
    steps = []
    for source in mapping.tracked:
        if source.kind in _DIFFED and source.slot in new:
            before, after = old.get(source.slot, MISSING), new[source.slot]
            if _changed(source, before, after):
                steps.append((source, before, after))
    # Nothing changed: stop before the hooks, which could read a deferred field.
    if not steps or not instance.should_sync_to_suprsend():
        return None
    distinct_id = distinct_id_of(instance)
    if distinct_id is None:
        return None
    builder = EditBuilder(distinct_id)
    properties = [(source.key, now) for source, _, now in steps if source.kind == PROPERTY]
    builder.set_properties({key: value for key, value in properties if value is not None})
    builder.unset([key for key, value in properties if value is None])
    for source, was, now in steps:
        if source.kind == CHANNEL:
            _diff_channel(builder, source.key, was, now)
        elif source.kind == SETTING:
            if is_empty(now):
                builder.unset([source.key])
            else:
                builder.setting(source.key, now)
    if not builder.operations and not builder.errors:
        return None
    return Change(instance, distinct_id, builder.operations, builder.errors)


def prepare_save(
    instance: SuprsendProfileMixin,
    update_fields: Container[str] | None,
    *,
    created: bool = False,
) -> tuple[dict[str, Any], Change | None]:
    """The values to remember once ``instance`` is saved, and the change to queue for it.

    Never raises for the instance's sake: when the change cannot be built, its refusal is
    queued, and nothing is remembered (the next save that builds sends it).
    """
    try:
        return _prepare_save(instance, update_fields, created)
    except Exception as exc:
        return {}, broken_change(instance, exc)


def _prepare_save(
    instance: SuprsendProfileMixin, update_fields: Container[str] | None, created: bool
) -> tuple[dict[str, Any], Change | None]:
    mapping = mapping_for(type(instance))
    old = {} if created else instance.__dict__.get(SNAPSHOT_KEY, {})
    scope = None if created else update_fields
    new = read_tracked(instance, mapping, scope, evaluate=old, when_loaded=True)
    if not queueing():
        return new, None
    if created:
        return new, full_change(instance)
    return new, diff_change(instance, mapping, old, new)


def prepare_update(instance: SuprsendProfileMixin, update_fields: Container[str] | None) -> bool:
    """Compute an update's change before the write (kept for ``post_save``); True if any."""
    prepared = prepare_save(instance, update_fields)
    instance.__dict__[PREPARED_KEY] = prepared
    return prepared[1] is not None


def check_distinct_id(instance: SuprsendProfileMixin, update_fields: Container[str] | None) -> None:
    """Refuse a save that changes the field the distinct_id comes from."""
    source = mapping_for(type(instance)).distinct_id
    if source.attname is None or not queueing():
        return
    if update_fields is not None and source.names.isdisjoint(update_fields):
        return
    old = instance.__dict__.get(SNAPSHOT_KEY, {}).get(source.slot, MISSING)
    new = instance.__dict__.get(source.attname, MISSING)
    if old is MISSING or new is MISSING or is_empty(old) or str(old) == str(new):
        return
    raise SuprsendDistinctIdChanged(
        f"{instance._meta.label} {instance.pk}: this save would change the SuprSend "
        f"distinct_id from {str(old)!r} to {str(new)!r} (field {source.attname!r}), but a "
        "distinct_id is immutable in SuprSend. Keep the field unchanged (or map "
        "suprsend_distinct_id to the primary key); to re-key on purpose, save inside "
        "django_suprsend.paused() and move the profile in SuprSend yourself."
    )


# -- receivers ----------------------------------------------------------------------


def _pre_save(sender: type, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        check_distinct_id(instance, kwargs.get("update_fields"))


def _post_save(
    sender: type, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if raw:
        return
    prepared = instance.__dict__.pop(PREPARED_KEY, None)
    if prepared is None or created:
        prepared = prepare_save(instance, kwargs.get("update_fields"), created=created)
    new, change = prepared
    remember(instance, new)
    if change is not None:
        write([change], kwargs["using"])


def _pre_delete(sender: type, instance: Any, **kwargs: Any) -> None:
    # The distinct_id and the policy are taken while the row (and its relations) exist.
    mapping = mapping_for(type(instance))
    if not mapping.deletes_profile or not queueing():
        return
    try:
        change = _delete_change(instance, mapping)
    except Exception as exc:  # never fail the delete: the profile's refusal is logged
        refusal(instance, exc)
        return
    if change is not None:
        instance.__dict__[_DELETING_KEY] = change


def _delete_change(instance: SuprsendProfileMixin, mapping: ProfileMapping) -> Change | None:
    policy = suprsend_settings.ON_DELETE
    # A delete always goes (it is idempotent); channels are unset only on a synced profile.
    if policy == "unset" and not instance.should_sync_to_suprsend():
        return None
    return policy_change(instance, mapping, policy)


def _post_delete(sender: type, instance: Any, **kwargs: Any) -> None:
    change = instance.__dict__.pop(_DELETING_KEY, None)
    if change is not None:
        write([change], kwargs["using"])


_RECEIVERS = (
    (pre_save, _pre_save),
    (post_save, _post_save),
    (pre_delete, _pre_delete),
    (post_delete, _post_delete),
)


def connect(model: type[models.Model]) -> bool:
    """Connect the receivers for ``model`` if it uses the mixin; True when it does."""
    if not issubclass(model, ProfileModel) or model._meta.abstract or model._meta.swapped:
        return False
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, sender=model, dispatch_uid=_UID)
    return True


def _on_class_prepared(sender: type[models.Model], **kwargs: Any) -> None:
    if sender._meta.apps is global_apps:  # not the throwaway registries of isolate_apps
        connect(sender)


def connect_all() -> None:
    """Connect every installed model that uses the mixin, and any defined later."""
    for model in global_apps.get_models():
        connect(model)
    class_prepared.connect(_on_class_prepared, dispatch_uid=_UID)
