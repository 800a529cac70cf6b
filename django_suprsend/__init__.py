"""Keep SuprSend user profiles in step with your Django models.

Public API (imported lazily, so ``import django_suprsend`` in settings does
not touch the app registry):

- :class:`SuprsendProfileMixin`: put it before your model's base class.
- :func:`sync`: queue the full push of an instance or a queryset.
- :func:`unset_channels`: queue ``$unset`` of channels.
- :func:`queue_operations`: queue operations built with ``ProfileEdit``.
- :func:`bulk_update_and_sync`: ``bulk_update`` that queues the changes.
- :func:`paused`: saves in this block queue nothing.
- :func:`trigger`: queue a workflow trigger, sent after the transaction commits.
- :func:`track_event`: queue an event, likewise.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = [
    "SuprsendProfileMixin",
    "__version__",
    "bulk_update_and_sync",
    "paused",
    "queue_operations",
    "sync",
    "track_event",
    "trigger",
    "unset_channels",
]

_LAZY = {
    "SuprsendProfileMixin": "django_suprsend.profiles.mixin",
    "bulk_update_and_sync": "django_suprsend.profiles.api",
    "paused": "django_suprsend.profiles.api",
    "queue_operations": "django_suprsend.profiles.api",
    "sync": "django_suprsend.profiles.api",
    "unset_channels": "django_suprsend.profiles.api",
    "trigger": "django_suprsend.notifications.api",
    "track_event": "django_suprsend.notifications.api",
}

if TYPE_CHECKING:
    from django_suprsend.profiles.api import (
        bulk_update_and_sync,
        paused,
        queue_operations,
        sync,
        unset_channels,
    )
    from django_suprsend.profiles.mixin import SuprsendProfileMixin


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_suprsend' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
