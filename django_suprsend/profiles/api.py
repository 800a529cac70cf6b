"""Queue SuprSend changes explicitly, for the paths that send no model signals.

Saves and deletes of a model with ``SuprsendProfileMixin`` queue their
changes by themselves. These do not, so use the functions below with them:

- ``QuerySet.update()`` and ``bulk_create()``: call :func:`sync` on the rows
  afterwards (``sync(User.objects.filter(pk__in=ids))``).
- ``bulk_update()``: use :func:`bulk_update_and_sync` instead; it queues
  exactly the changes, like a save.
- ``loaddata`` (raw saves are skipped on purpose): :func:`sync` the loaded
  rows, or run ``manage.py suprsend_backfill``.
- Values from other models, such as push tokens in a ``Device`` model:
  call ``sync(device.user)`` from the ``Device`` model's ``post_save`` and
  ``post_delete``, or queue the precise operation with :func:`queue_operations`.

:func:`sync`, :func:`unset_channels` and :func:`queue_operations` queue even
with ``AUTOSYNC`` off or inside :func:`paused`: they are asked for.
:func:`bulk_update_and_sync` stands for saves and follows both, like a save.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from django.db import models, router, transaction

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.profiles.builder import distinct_id_of
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.profiles.snapshot import remember
from django_suprsend.profiles.tracking import (
    Change,
    broken_change,
    check_distinct_id,
    full_change,
    paused,
    prepare_save,
    write,
)
from django_suprsend.wire.operations import CHANNEL_KEYS, ProfileEdit

__all__ = ["bulk_update_and_sync", "paused", "queue_operations", "sync", "unset_channels"]

CHUNK_SIZE = 2000

Profiles = SuprsendProfileMixin | models.QuerySet | Iterable[SuprsendProfileMixin]


def _batches(objs: Profiles, using: str | None) -> Iterator[tuple[list[SuprsendProfileMixin], str]]:
    """``objs`` (an instance, a queryset or an iterable) in lists of CHUNK_SIZE, each with
    the database its entries go to (the rows' write database unless ``using``)."""
    if isinstance(objs, SuprsendProfileMixin):
        yield [objs], using or router.db_for_write(type(objs), instance=objs)
        return
    if isinstance(objs, models.QuerySet):
        database = using or router.db_for_write(objs.model)
        iterator: Iterator[Any] = objs.iterator(chunk_size=CHUNK_SIZE)
    else:
        database, iterator = using, iter(objs)
    while batch := list(islice(iterator, CHUNK_SIZE)):
        yield batch, database or router.db_for_write(type(batch[0]), instance=batch[0])


def sync(objs: Profiles, *, using: str | None = None) -> int:
    """Queue the full push of each row that should sync; returns the number of entries.

    ``objs``: an instance, a queryset (read with ``.iterator(chunk_size=2000)``:
    ``prefetch_related`` the relations your sources read) or an iterable of
    instances. Entries are written in bulk, 2000 at a time.
    """
    count = 0
    for batch, database in _batches(objs, using):
        count += write([change for obj in batch if (change := full_change(obj))], database)
    return count


def _channel_keys(channels: str | Iterable[str]) -> list[str]:
    keys = [channels] if isinstance(channels, str) else list(channels)
    for key in keys:
        if key not in CHANNEL_KEYS:
            raise SuprsendValidationError(
                "channels", key, f"is not a SuprSend channel; expected some of {CHANNEL_KEYS}"
            )
    return keys


def unset_channels(
    objs: Profiles, channels: str | Iterable[str], *, using: str | None = None
) -> int:
    """Queue ``$unset`` of ``channels`` (such as ``["$email", "$sms"]``) for each row,
    whatever its active state; returns the number of entries."""
    keys = _channel_keys(channels)
    if not keys:
        return 0
    count = 0
    for batch, database in _batches(objs, using):
        changes = []
        for obj in batch:
            try:
                distinct_id = distinct_id_of(obj)
            except Exception as exc:  # reported on the profile's sync state, as for a save
                if (change := broken_change(obj, exc)) is not None:
                    changes.append(change)
                continue
            if distinct_id is not None:
                operations = ProfileEdit(distinct_id).unset(keys).operations
                changes.append(Change(obj, distinct_id, operations, []))
        count += write(changes, database)
    return count


def queue_operations(
    obj: SuprsendProfileMixin, operations: list[dict[str, Any]], *, using: str | None = None
) -> None:
    """Queue operations built with ``ProfileEdit`` for ``obj``'s profile, as they are.

    ``queue_operations(user, ProfileEdit("x").remove_androidpush(token).operations)``
    removes one token precisely (the distinct_id given to ``ProfileEdit`` is not used).
    """
    distinct_id = distinct_id_of(obj)
    if distinct_id is None:
        raise SuprsendValidationError("distinct_id", obj.get_suprsend_distinct_id(), "is empty")
    database = using or router.db_for_write(type(obj), instance=obj)
    write([Change(obj, distinct_id, list(operations), [])], database)


def bulk_update_and_sync(
    objs: Iterable[SuprsendProfileMixin], fields: Iterable[str], batch_size: int | None = None
) -> int:
    """``bulk_update(objs, fields, batch_size)`` that queues each row's changes, like a save.

    The update and the outbox entries commit together; snapshots follow.
    Returns the number of entries queued.
    """
    objs = list(objs)
    if not objs:
        return 0
    fields = list(fields)
    scope = frozenset(fields)
    model = type(objs[0])
    database = router.db_for_write(model)
    for obj in objs:
        check_distinct_id(obj, scope)
    prepared = [prepare_save(obj, scope) for obj in objs]
    with transaction.atomic(using=database, savepoint=False):  # as bulk_update() itself
        model._default_manager.db_manager(database).bulk_update(objs, fields, batch_size=batch_size)
        count = write([change for _, change in prepared if change is not None], database)
    for obj, (values, _) in zip(objs, prepared, strict=True):
        remember(obj, values)
    return count
