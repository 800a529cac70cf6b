"""When to try a request again, and how long to wait first.

Transient failures are retried: connection errors, timeouts, ``429`` and
every ``5xx``. A ``Retry-After`` header is honoured (seconds or HTTP-date);
otherwise the wait is exponential backoff with full jitter. Retries are
bounded both in attempts and in total elapsed time.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from django_suprsend.exceptions import SuprsendConfigurationError

# 2 ** 60 half-seconds is already far past any sane backoff_max; capping the
# exponent keeps the float arithmetic from overflowing on absurd attempt numbers.
_MAX_EXPONENT = 60


def is_retryable_status(status: int) -> bool:
    """``429`` and every ``5xx`` may succeed later; other statuses will not."""
    return status == 429 or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one request.

    ``max_attempts`` counts every attempt, the first included (``1`` means
    no retry at all). ``max_elapsed`` bounds the seconds from the first
    attempt until the start of the last one: a wait that would cross it is
    not taken and the failure is reported at once.
    """

    max_attempts: int = 5
    max_elapsed: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise SuprsendConfigurationError(
                f"RetryPolicy.max_attempts must be an integer >= 1, got {self.max_attempts!r}"
            )
        for name in ("max_elapsed", "backoff_base", "backoff_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
                raise SuprsendConfigurationError(
                    f"RetryPolicy.{name} must be a finite number >= 0, got {value!r}"
                )

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait after the ``attempt``-th (1-based) failed attempt.

        ``uniform(0, min(backoff_max, backoff_base * 2 ** (attempt - 1)))``.
        """
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0**exponent)
        return (rng or random).uniform(0.0, ceiling)

    def start(self, clock: Callable[[], float] = time.monotonic) -> RetrySchedule:
        """A schedule for one logical request, starting now."""
        return RetrySchedule(self, clock)


class RetrySchedule:
    """The retry budget of one logical request (see :meth:`RetryPolicy.start`)."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.attempt = 1
        self._clock = clock
        self._deadline = clock() + policy.max_elapsed

    def next_wait(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up now.

        Call it after a transient failure of attempt :attr:`attempt`; on a
        non-``None`` answer the attempt counter moves on. ``retry_after``
        (from the hub's ``Retry-After``) replaces the jittered backoff.
        """
        if self.attempt >= self.policy.max_attempts:
            return None
        wait = self.policy.backoff(self.attempt) if retry_after is None else retry_after
        if self._clock() + wait > self._deadline:
            return None
        self.attempt += 1
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value.

    Accepts delta-seconds (``"120"``, also ``"1.5"``) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, a date in the past means ``0``).
    Returns ``None`` when the header is absent or cannot be understood.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until(http_date: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())
