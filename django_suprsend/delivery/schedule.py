"""Ask a worker to flush the outbox once the caller's transaction commits, within
PUBLISH_TIMEOUT, at most twice per FLUSH_DEBOUNCE window (see :class:`_FlushDebouncer`)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connections, transaction

from django_suprsend.conf import suprsend_settings, when_settings_change

logger = logging.getLogger("django_suprsend.delivery.schedule")


def schedule_flush(using: str = "default") -> None:
    """Ask a worker to flush once the current transaction on ``using`` commits.

    Once per transaction: a callback already waiting on the connection is
    enough. Django drops the callbacks of a rolled-back transaction or
    savepoint, so a later enqueue registers a new one.
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        _send_flush_task(using)
        return
    if any(getattr(item[1], "suprsend_flush", False) for item in connection.run_on_commit):
        return

    def flush_after_commit() -> None:
        _send_flush_task(using)

    flush_after_commit.suprsend_flush = True  # type: ignore[attr-defined]
    transaction.on_commit(flush_after_commit, using=using)


class _FlushDebouncer:
    """At most two flush tasks per ``FLUSH_DEBOUNCE`` seconds per process and database.

    The first commit of a window publishes at once (a lone save is sent
    without delay); later commits in the window share one trailing task that
    runs when the window ends, so a burst of saves costs the broker two
    messages, not one per save.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leading: dict[str, float] = {}
        self._trailing: dict[str, float] = {}
        self._suspended_until = 0.0
        self._down = False  # the last publish failed

    def countdown(self, using: str) -> float | None:
        """Seconds to delay a new flush task, or None when none should be sent now."""
        window = suprsend_settings.FLUSH_DEBOUNCE
        now = time.monotonic()
        with self._lock:
            if now < self._suspended_until:
                return None
            leading = self._leading.get(using)
            if leading is None or now - leading >= window:
                self._leading[using] = now
                return 0.0
            end = leading + window
            if self._trailing.get(using) == end:
                return None
            self._trailing[using] = end
            return end - now

    def suspend(self, seconds: float) -> bool:
        """Publish nothing for ``seconds``: the broker is down, and every try would
        hold a save for up to ``PUBLISH_TIMEOUT``. True when this starts an outage
        (the first refusal since the broker last took a task)."""
        with self._lock:
            self._suspended_until = time.monotonic() + seconds
            self._leading.clear()
            self._trailing.clear()
            first, self._down = not self._down, True
            return first

    def recovered(self) -> bool:
        """The broker took a task: True when that ends an outage."""
        with self._lock:
            was_down, self._down = self._down, False
            return was_down

    def reset(self) -> None:
        with self._lock:
            self._leading.clear()
            self._trailing.clear()
            self._suspended_until = 0.0
            self._down = False


debouncer = _FlushDebouncer()


when_settings_change(debouncer.reset)


def _send_flush_task(using: str) -> None:
    """Enqueue the flush task within ``PUBLISH_TIMEOUT``; a broker that is down must not
    break the save, nor hold it (see :mod:`django_suprsend.delivery.publish`)."""
    from django_suprsend.delivery.publish import (  # kombu, and Celery: off the import path
        broker_name,
        publish,
    )
    from django_suprsend.delivery.tasks import flush_outbox

    countdown = debouncer.countdown(using)
    if countdown is None:
        return
    options: dict[str, Any] = {}
    if countdown:
        options["countdown"] = countdown
    if suprsend_settings.QUEUE:
        options["queue"] = suprsend_settings.QUEUE
    try:
        publish(flush_outbox, {"using": using}, **options)
    except Exception as exc:  # the broker's errors are many and transport-specific
        pause = suprsend_settings.BROKER_DOWN_PAUSE
        if debouncer.suspend(pause):
            logger.warning(
                "SuprSend: could not enqueue the flush task on the broker %s (%s: %s); the "
                "change is kept in the outbox and will be sent by the periodic sweep or "
                "`manage.py suprsend_flush`. This process sends no flush task for the next %s "
                "seconds, and logs its next failures at DEBUG until the broker takes one again.",
                broker_name(flush_outbox.app),
                type(exc).__name__,
                exc,
                pause,
            )
        else:
            logger.debug("SuprSend: the broker still refuses flush tasks (%s)", exc)
        return
    if debouncer.recovered():
        logger.info("SuprSend: the broker takes flush tasks again")
