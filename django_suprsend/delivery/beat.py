"""The sweep's place in Celery beat's schedule.

When beat starts (``celery beat``, or a worker's ``-B``), :func:`add_sweep`
adds ``django_suprsend.sweep`` to its schedule every ``SWEEP_INTERVAL``
seconds, under the name :data:`ENTRY_NAME`, unless an entry of the project's
own already runs that task (that one is left alone). The entry goes into the
scheduler beat runs, so it works with the default file scheduler and with
django-celery-beat's database scheduler alike. ``SWEEP_INTERVAL = None``
turns this off; check W003 then warns when no schedule runs the sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from django_suprsend.conf import suprsend_settings

logger = logging.getLogger("django_suprsend.delivery.beat")

SWEEP_TASK = "django_suprsend.sweep"
ENTRY_NAME = "django_suprsend.sweep"


def sweep_entry(interval: float) -> dict[str, Any]:
    """The beat entry the app adds; a sweep still queued when the next is due expires."""
    options: dict[str, Any] = {"expires": interval}
    if suprsend_settings.QUEUE:
        options["queue"] = suprsend_settings.QUEUE
    return {"task": SWEEP_TASK, "schedule": interval, "options": options}


def runs_sweep(schedule: Mapping[str, Any], *, besides: str | None = None) -> bool:
    """Whether an entry of ``schedule`` (other than ``besides``) runs the sweep task.

    Entries are dicts (``beat_schedule``) or a scheduler's entries (a ``task`` attribute).
    """
    return any(
        (entry.get("task") if isinstance(entry, Mapping) else getattr(entry, "task", None))
        == SWEEP_TASK
        for name, entry in schedule.items()
        if name != besides
    )


def configured_schedules() -> list[Mapping[str, Any]]:
    """The beat schedules this project configures: the current Celery app's
    ``beat_schedule`` and, for an app not configured from Django's settings,
    ``CELERY_BEAT_SCHEDULE``."""
    from celery import current_app

    return [current_app.conf.beat_schedule or {}, getattr(settings, "CELERY_BEAT_SCHEDULE", {})]


def add_sweep(sender: Any, **kwargs: Any) -> None:
    """``beat_init`` receiver: schedule the sweep in the scheduler of the starting beat."""
    interval = suprsend_settings.SWEEP_INTERVAL
    if interval is None:
        return
    scheduler = sender.scheduler
    if runs_sweep(scheduler.schedule, besides=ENTRY_NAME):
        logger.info("SuprSend: beat's schedule runs %s already; not adding another", SWEEP_TASK)
        return
    scheduler.update_from_dict({ENTRY_NAME: sweep_entry(interval)})
    logger.info(
        "SuprSend: added %s to beat's schedule, every %s seconds (SUPRSEND['SWEEP_INTERVAL'])",
        SWEEP_TASK,
        interval,
    )


def connect() -> None:
    from celery.signals import beat_init

    beat_init.connect(add_sweep, dispatch_uid="django_suprsend.delivery.beat.add_sweep")
