"""The process-wide :class:`SuprsendClient` built from the ``SUPRSEND`` settings."""

from __future__ import annotations

import os
import threading

from django_suprsend.conf import suprsend_settings, when_settings_change
from django_suprsend.exceptions import SuprsendConfigurationError
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.retry import RetryPolicy

_lock = threading.Lock()
_client: SuprsendClient | None = None


def get_client() -> SuprsendClient:
    """The shared client (one connection pool per process), built on first use."""
    global _client
    with _lock:
        if _client is None:
            _client = _build()
        return _client


def _new_lock_after_fork() -> None:
    """A forked child starts with a free lock (the parent's may have been held by a thread)."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def reset() -> None:
    """Forget the shared client (settings changed); the next call builds a new one."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
        _client = None


def _build() -> SuprsendClient:
    s = suprsend_settings
    if not s.WORKSPACE_KEY:
        raise SuprsendConfigurationError(
            "SUPRSEND['WORKSPACE_KEY'] is not set: add it to settings.SUPRSEND "
            "(with WORKSPACE_SECRET, or with API_KEY)."
        )
    return SuprsendClient(
        s.WORKSPACE_KEY,
        s.WORKSPACE_SECRET or None,
        api_key=s.API_KEY or None,
        base_url=s.BASE_URL,
        connect_timeout=s.CONNECT_TIMEOUT,
        read_timeout=s.READ_TIMEOUT,
        retry=RetryPolicy(
            max_attempts=s.HTTP_MAX_ATTEMPTS,
            max_elapsed=s.HTTP_MAX_ELAPSED,
        ),
    )


when_settings_change(reset)
