"""What is queued when a profile's change cannot be built: a refusal, never a failed save.

A bug in a ``get_suprsend_*`` override or in a source, or a distinct_id the
outbox cannot hold, must not cost the user's own write nor break the
caller's transaction. The change is replaced by an entry that holds only the
refusal: the save goes on, nothing is sent for the profile, and its sync
state shows the refusal as failed (admin "Resync" builds it again once the
cause is fixed). A profile whose distinct_id cannot be had reports under a
stand-in key, ``!<app_label>.<model>:<pk>``, which no valid distinct_id it
could be confused with is made of by accident.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import models

from django_suprsend.exceptions import (
    SuprsendConfigurationError,
    SuprsendValidationError,
    _short_repr,
    error_dict,
)
from django_suprsend.profiles.builder import distinct_id_of
from django_suprsend.wire.validators import MAX_DISTINCT_ID_LENGTH

__all__ = ["STAND_IN_PREFIX", "profile_key", "refusal", "stand_in_id"]

logger = logging.getLogger("django_suprsend")

#: The first character of the key a profile without a usable distinct_id reports under.
STAND_IN_PREFIX = "!"


def stand_in_id(instance: models.Model) -> str:
    """``!app_label.model:pk``: where the refusal of a profile without a usable id is kept."""
    return f"{STAND_IN_PREFIX}{instance._meta.label_lower}:{instance.pk}"[:MAX_DISTINCT_ID_LENGTH]


def profile_key(instance: Any) -> str | None:
    """The profile's distinct_id, its stand-in when it has none that can be used, or None
    when it has none at all (a profile without an id is never synced)."""
    try:
        return distinct_id_of(instance)
    except Exception:  # the id itself is refused, or its hook raised
        return stand_in_id(instance)


def refusal(instance: Any, exc: Exception) -> tuple[str, dict[str, str]] | None:
    """``(key, error)`` to queue for ``instance`` whose change raised ``exc``; logged here.

    None when the profile has no distinct_id (nothing is queued for it anyway).
    """
    if isinstance(exc, SuprsendConfigurationError):
        raise exc  # the mapping cannot be used at all: no profile's fault, none could sync
    label = f"{instance._meta.label} {instance.pk}"
    if isinstance(exc, SuprsendValidationError) and exc.field == "distinct_id":
        logger.warning(
            "SuprSend: %s: %s; nothing is sent for this profile (its sync state, under %s, "
            "says why).",
            label,
            exc,
            stand_in_id(instance),
        )
        return stand_in_id(instance), error_dict(exc)
    key = profile_key(instance)
    logger.error(
        "SuprSend: building the profile change of %s raised %s; the save goes on and nothing "
        'is sent for this profile until it is built again (admin "Resync").',
        label,
        type(exc).__name__,
        exc_info=exc,
    )
    if key is None:
        return None
    reason = "was raised while building the profile change (the traceback is in the log)"
    return key, {"field": "profile", "value": _short_repr(exc), "reason": reason}
