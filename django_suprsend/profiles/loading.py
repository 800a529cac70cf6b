"""Instances from whole rows without ``Model.__init__``, where that changes nothing.

For the backfill, which loads millions of rows only to read them: Django's
``from_db()`` calls ``Model.__init__``, which sends ``pre_init`` and
``post_init`` and sets each field through ``setattr`` (half the cost of
loading a row). When the model keeps Django's ``__init__`` and ``from_db``,
no receiver listens to either signal and every field's attribute is one of
Django's plain deferred-attribute descriptors (whose ``__set__``, if any,
only stores the value in ``__dict__`` on a new instance), filling
``__dict__`` directly builds the same instance.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from django.db import models
from django.db.models import signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute

__all__ = ["load_row"]

_PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


@functools.cache
def plain_attnames(model: type[models.Model], base: type) -> tuple[str, ...] | None:
    """The attnames that ``model(*values)`` would set, or None when it would do more.

    ``base``: the class whose ``super().from_db`` the caller would use.
    """
    parent_from_db = getattr(super(base, model).from_db, "__func__", None)
    if model.__init__ is not models.Model.__init__ or (
        parent_from_db is not models.Model.from_db.__func__  # type: ignore[attr-defined]
    ):
        return None
    attnames = []
    for field in model._meta.concrete_fields:
        if type(inspect.getattr_static(model, field.attname, None)) not in _PLAIN_DESCRIPTORS:
            return None
        attnames.append(field.attname)
    return tuple(attnames)


def load_row(
    model: type[models.Model], base: type, db: str | None, values: Any, kwargs: dict[str, Any]
) -> models.Model | None:
    """The instance of a whole row (every concrete field loaded), or None where only
    Django's own ``from_db`` builds it right."""
    if signals.pre_init.receivers or signals.post_init.receivers:
        return None
    attnames = plain_attnames(model, base)
    if attnames is None or len(values) != len(attnames):
        return None
    instance = model.__new__(model)
    state = instance._state = ModelState()
    state.adding = False
    state.db = db
    if kwargs.get("fetch_mode") is not None:  # Django 6.1
        state.fetch_mode = kwargs["fetch_mode"]
    instance.__dict__.update(zip(attnames, values, strict=True))
    return instance
