"""What a profile instance last synced looked like: the snapshot of its tracked values,
taken when it is loaded or saved, that the next save diffs against."""

from __future__ import annotations

import copy
import logging
from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import models

from django_suprsend.profiles.mapping import (
    ProfileMapping,
)

#: Where the snapshot of tracked values lives in ``instance.__dict__``.
SNAPSHOT_KEY = "_suprsend_snapshot"

logger = logging.getLogger("django_suprsend")


#: An update's change computed by ``save()`` before the write, for ``post_save`` to queue.
PREPARED_KEY = "_suprsend_prepared"


_snapshots: ContextVar[bool] = ContextVar("django_suprsend_snapshots", default=True)


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
