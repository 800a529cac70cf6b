"""The ``SUPRSEND`` settings dict, with defaults, read lazily.

Like Django REST framework's ``api_settings``: one object, attributes by
key, rebuilt when a test changes ``settings.SUPRSEND`` (``override_settings``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from django.conf import settings as django_settings
from django.core.signals import setting_changed

from django_suprsend.exceptions import SuprsendConfigurationError

DEFAULTS: dict[str, Any] = {
    # Credentials: WORKSPACE_KEY with WORKSPACE_SECRET (HMAC), or with API_KEY (Bearer).
    "WORKSPACE_KEY": None,
    "WORKSPACE_SECRET": None,
    "API_KEY": None,
    "BASE_URL": "https://hub.suprsend.com/",
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 30.0,
    # Retries of one HTTP request inside one flush (see RetryPolicy).
    "HTTP_MAX_ATTEMPTS": 3,
    "HTTP_MAX_ELAPSED": 30.0,
    # False: saves queue nothing (migrations, imports, tests); see also paused().
    "AUTOSYNC": True,
    # What a deleted row does to its SuprSend user: "delete", "unset" (its channels) or "ignore".
    "ON_DELETE": "delete",
    # What deactivation (the active field going false) does: "unset", "delete" or "ignore".
    "ON_DEACTIVATE": "unset",
    # Outbox entries one flush claims, and records per request at most.
    "BATCH_SIZE": 5000,
    # Seconds a claim holds; a worker killed mid-batch releases its entries after this.
    "LEASE_SECONDS": 120,
    # Outbox-level retries of a transiently failed entry: attempts and backoff in seconds.
    "MAX_ATTEMPTS": 12,
    "RETRY_BACKOFF": 10.0,
    "RETRY_BACKOFF_MAX": 3600.0,
    # Seconds between two ERROR log lines while the hub refuses the credentials (401/403):
    # one line per period, whatever the number of workers, flushes and records.
    "CREDENTIALS_LOG_INTERVAL": 600.0,
    # Days the sweep keeps outbox entries after they were sent, and after they failed for
    # good (the profile's SyncState keeps its last error and failed record either way);
    # None: keep them forever.
    "KEEP_SENT_DAYS": 7,
    "KEEP_FAILED_DAYS": 30,
    # Seconds between sweeps, which the app adds to Celery beat's schedule when beat starts
    # (unless the schedule runs django_suprsend.sweep already); None: schedule it yourself.
    "SWEEP_INTERVAL": 30.0,
    # Seconds within which commits share flush tasks: the first publishes at once, the
    # rest share one task at the end of the window (0: a task for every commit).
    "FLUSH_DEBOUNCE": 1.0,
    # Seconds a process stops sending flush tasks after the broker refused one (the sweep
    # sends what is queued meanwhile), so that saves are not held by a broker that is down.
    "BROKER_DOWN_PAUSE": 30.0,
    # Seconds a save may wait on the broker to publish its flush task, connecting included
    # (no retries); the Celery app's own settings are left as they are for other tasks.
    "PUBLISH_TIMEOUT": 0.5,
    # Celery queue of the app's tasks (None: the default queue).
    "QUEUE": None,
}

CHOICES = {
    "ON_DELETE": ("delete", "unset", "ignore"),
    "ON_DEACTIVATE": ("delete", "unset", "ignore"),
}


class Duration(NamedTuple):
    """A key whose value is a number of days or seconds."""

    unit: str
    zero_allowed: bool = False
    none_means: str | None = None  # what None does, when None is allowed

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.none_means is not None
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return value >= 0 if self.zero_allowed else value > 0

    def __str__(self) -> str:
        text = f"a number of {self.unit} {'(0 or more)' if self.zero_allowed else 'above 0'}"
        return f"{text}, or None to {self.none_means}" if self.none_means else text


DURATIONS = {
    "KEEP_SENT_DAYS": Duration("days", zero_allowed=True, none_means="keep sent entries"),
    "KEEP_FAILED_DAYS": Duration("days", zero_allowed=True, none_means="keep failed entries"),
    "SWEEP_INTERVAL": Duration("seconds", none_means="schedule the sweep yourself"),
    "PUBLISH_TIMEOUT": Duration("seconds"),
}


def did_you_mean(names: Iterable[str], known: Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` for the names that are close to a known one, else ``""``."""
    known = list(known)
    hints = [
        f"{name!r} -> {match[0]!r}"
        for name in names
        if (match := difflib.get_close_matches(name, known, n=1, cutoff=0.6))
    ]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


class SuprsendSettings:
    """Attribute access to ``settings.SUPRSEND`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        user = getattr(django_settings, "SUPRSEND", None) or {}
        if not isinstance(user, dict):
            raise SuprsendConfigurationError(f"settings.SUPRSEND must be a dict, got {user!r}")
        unknown = sorted(set(user) - set(DEFAULTS))
        if unknown:
            raise SuprsendConfigurationError(
                f"settings.SUPRSEND has unknown keys {unknown}{did_you_mean(unknown, DEFAULTS)}; "
                f"known keys: {sorted(DEFAULTS)}"
            )
        merged = {**DEFAULTS, **user}
        for key, allowed in CHOICES.items():
            if merged[key] not in allowed:
                raise SuprsendConfigurationError(
                    f"settings.SUPRSEND[{key!r}] must be one of {allowed}, got {merged[key]!r}"
                )
        for key, expected in DURATIONS.items():
            if not expected.accepts(merged[key]):
                raise SuprsendConfigurationError(
                    f"settings.SUPRSEND[{key!r}] must be {expected}, got {merged[key]!r}"
                )
        return merged

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._cache is None:
            self._cache = self._load()
        try:
            return self._cache[name]
        except KeyError:
            raise AttributeError(f"SUPRSEND has no setting {name!r}") from None

    def reload(self) -> None:
        self._cache = None

    def __repr__(self) -> str:
        # Never the secret or the API key.
        return f"<SuprsendSettings workspace_key={self.WORKSPACE_KEY!r} base_url={self.BASE_URL!r}>"


suprsend_settings = SuprsendSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "SUPRSEND":
        suprsend_settings.reload()


setting_changed.connect(_reload)


def when_settings_change(callback: Callable[[], object]) -> None:
    """Call ``callback`` after ``settings.SUPRSEND`` changes (``override_settings``, tests).

    For a module that keeps something built from the settings (the shared
    client, the broker pools, the flush debouncer): it registers its own reset
    here, so this module never imports the modules that read it. Callbacks run
    after the settings are reloaded, in the order they were registered.
    """

    def changed(*, setting: str, **kwargs: Any) -> None:
        if setting == "SUPRSEND":
            callback()

    setting_changed.connect(changed, weak=False)
