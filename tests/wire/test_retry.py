"""RetryPolicy: full-jitter backoff, the attempt and time budget, Retry-After parsing."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone

import pytest

from django_suprsend.exceptions import SuprsendConfigurationError
from django_suprsend.wire.retry import RetryPolicy, is_retryable_status, parse_retry_after

NOW = datetime(2024, 1, 15, 10, 30, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_defaults_and_frozen():
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.max_elapsed, policy.backoff_base, policy.backoff_max) == (
        5,
        60.0,
        0.5,
        30.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"max_elapsed": -1},
        {"backoff_base": float("nan")},
        {"backoff_max": float("inf")},
    ],
)
def test_invalid_policy_is_refused(kwargs):
    with pytest.raises(SuprsendConfigurationError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_stays_within_the_full_jitter_bounds(attempt):
    policy = RetryPolicy(backoff_base=0.5, backoff_max=30.0)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    waits = [policy.backoff(attempt, rng) for _ in range(2000)]
    assert all(0.0 <= w <= ceiling for w in waits)
    # Full jitter: the whole range is used, not just the top of it.
    assert min(waits) < ceiling * 0.05
    assert max(waits) > ceiling * 0.95


def test_backoff_does_not_overflow_on_huge_attempt_numbers():
    assert 0.0 <= RetryPolicy().backoff(10_000) <= 30.0


def test_retryable_statuses():
    statuses = (200, 400, 401, 404, 413, 422, 429, 500, 502, 503, 504)
    assert [s for s in statuses if is_retryable_status(s)] == [429, 500, 502, 503, 504]


def test_schedule_stops_after_max_attempts():
    schedule = RetryPolicy(max_attempts=3, backoff_base=0.01).start(FakeClock())
    waits = [schedule.next_wait() for _ in range(4)]
    assert [w is not None for w in waits] == [True, True, False, False]
    assert schedule.attempt == 3


def test_single_attempt_policy_never_retries():
    assert RetryPolicy(max_attempts=1).start(FakeClock()).next_wait(0) is None


def test_schedule_prefers_retry_after_to_backoff():
    schedule = RetryPolicy(backoff_base=0.01).start(FakeClock())
    assert schedule.next_wait(7.0) == 7.0


def test_retry_after_beyond_the_time_budget_gives_up_at_once():
    clock = FakeClock()
    schedule = RetryPolicy(max_elapsed=10.0).start(clock)
    clock.now += 4.0
    assert schedule.next_wait(6.0) == 6.0  # ends exactly on the deadline
    clock.now += 6.0
    assert schedule.next_wait(0.5) is None


def test_time_spent_in_attempts_counts_against_the_budget():
    clock = FakeClock()
    schedule = RetryPolicy(max_elapsed=5.0, backoff_base=0.0).start(clock)
    clock.now += 5.5  # e.g. a read timeout
    assert schedule.next_wait() is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Mon, 15 Jan 2024 10:30:30 GMT", 30.0),
        ("Monday, 15-Jan-24 10:31:00 GMT", 60.0),  # RFC 850 form
        ("Mon, 15 Jan 2024 10:31:00 -0000", 60.0),  # no zone information: UTC
        ("Mon, 15 Jan 2024 11:30:00 +0100", 0.0),  # the same instant as NOW
        ("Mon, 15 Jan 2024 10:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("Mon, 99 Foo 2024 10:30:00 GMT", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date_defaults_to_now():
    future = datetime.now(timezone.utc) + timedelta(seconds=100)
    seconds = parse_retry_after(future.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None
    assert 90 <= seconds <= 100
