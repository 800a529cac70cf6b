"""``outbox.claim`` under concurrency, on the database of ``DATABASE_URL``.

PostgreSQL and MariaDB/MySQL lock the rows being claimed
(``SELECT ... FOR UPDATE SKIP LOCKED``): a second claim skips them instead of
waiting. SQLite claims with one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n)``.
Each claim here runs in a thread of its own, with its own connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import close_old_connections, connection, connections, transaction
from django.utils import timezone

from django_suprsend.delivery import outbox
from django_suprsend.models import OutboxEntry

pytestmark = pytest.mark.django_db(transaction=True)


def needs_skip_locked() -> None:
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip(f"{connection.vendor} has no SELECT ... FOR UPDATE SKIP LOCKED")


def add(distinct_id: str, **fields: Any) -> OutboxEntry:
    entry = OutboxEntry(distinct_id=distinct_id, operations=[{"$set": {"k": distinct_id}}])
    for name, value in fields.items():
        setattr(entry, name, value)
    entry.save()
    return entry


def in_thread(function: Callable[[], Any]) -> Any:
    """Run ``function`` in another thread (its own database connection) and return its result."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(with_own_connection(function)).result(timeout=30)


def with_own_connection(function: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return function()
        finally:
            connections.close_all()

    return run


def ids(claim: outbox.Claim) -> list[int]:
    return [entry.id for entry in claim.entries]


def test_concurrent_claims_never_return_the_same_entry():
    entries = OutboxEntry.objects.bulk_create(
        OutboxEntry(distinct_id=f"p{i}", operations=[{"$set": {"i": i}}]) for i in range(600)
    )
    workers = 4
    start = threading.Barrier(workers)

    def drain() -> list[int]:
        close_old_connections()
        start.wait(timeout=10)
        claimed: list[int] = []
        while batch := ids(outbox.claim(5)):
            claimed += batch
        return claimed

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(with_own_connection(drain)) for _ in range(workers)]
        results = [future.result(timeout=60) for future in futures]

    assert sum(1 for result in results if result) >= 2, "the claims did not overlap"
    claimed = [entry_id for result in results for entry_id in result]
    assert len(claimed) == len(set(claimed)), "an entry was claimed twice"
    assert sorted(claimed) == sorted(entry.id for entry in OutboxEntry.objects.all())
    assert len(claimed) == len(entries)
    # Every claim wrote its lease.
    assert not OutboxEntry.objects.filter(claimed_until__isnull=True).exists()


def test_a_claim_skips_the_rows_another_claim_has_locked_instead_of_waiting():
    needs_skip_locked()
    for i in range(10):
        add(f"p{i}")
    locked, release = threading.Event(), threading.Event()
    first_open = threading.Event()

    def first() -> list[int]:
        with transaction.atomic():  # the claim's row locks last until this commits
            first_open.set()
            claimed = ids(outbox.claim(4))
            locked.set()
            release.wait(timeout=30)
        first_open.clear()
        return claimed

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(with_own_connection(first))
        assert locked.wait(timeout=10)
        second = ids(outbox.claim(4))  # this thread's own connection
        still_open = first_open.is_set()
        release.set()
        first_claimed = future.result(timeout=30)

    assert still_open, "the second claim waited for the first transaction to end"
    assert len(first_claimed) == 4
    assert len(second) == 4
    assert not set(first_claimed) & set(second)


def test_entries_behind_another_claim_of_their_profile_are_held_back():
    a1 = add("a")
    a2 = add("a")
    b1 = add("b")
    a3 = add("a")

    first = in_thread(lambda: outbox.claim(1))  # a1, for worker A
    second = in_thread(lambda: outbox.claim(10))  # worker B: a2 and a3 wait for a1

    assert ids(first) == [a1.id]
    assert ids(second) == [b1.id]
    assert sorted(second.released) == [a2.id, a3.id]
    held_back = OutboxEntry.objects.filter(id__in=[a2.id, a3.id])
    assert set(held_back.values_list("claimed_by", flat=True)) == {""}  # claimable again

    # Worker A sends a1: its profile's next entries may go, merged, in commit order.
    outbox.mark_sent(first, first.entries)
    third = in_thread(lambda: outbox.claim(10))
    assert ids(third) == [a2.id, a3.id]
    assert list(third.by_profile()) == ["a"]


def test_an_entry_waiting_for_its_retry_holds_back_its_profile():
    later = timezone.now() + timedelta(minutes=5)
    waiting = add("a", attempts=1, next_attempt_at=later)
    behind = add("a")
    other = add("b")

    claimed = in_thread(lambda: outbox.claim(10))

    assert ids(claimed) == [other.id]
    assert claimed.released == [behind.id]
    assert OutboxEntry.objects.get(id=waiting.id).claimed_by == ""


def test_entries_skipped_as_locked_by_another_claim_still_hold_back_their_profile():
    """Worker A has locked a1 but not committed yet: B must not send a2 before it."""
    needs_skip_locked()
    a1 = add("a")
    a2 = add("a")
    b1 = add("b")
    locked, release = threading.Event(), threading.Event()

    def first() -> list[int]:
        with transaction.atomic():
            claimed = ids(outbox.claim(1))
            locked.set()
            release.wait(timeout=30)
        return claimed

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(with_own_connection(first))
        assert locked.wait(timeout=10)
        second = outbox.claim(10)
        release.set()
        assert future.result(timeout=30) == [a1.id]

    assert ids(second) == [b1.id]
    assert second.released == [a2.id]


def test_an_expired_lease_is_claimed_again():
    entry = add("a")
    first = in_thread(lambda: outbox.claim(10, lease_seconds=60))
    assert ids(first) == [entry.id]
    assert ids(in_thread(lambda: outbox.claim(10))) == []  # leased

    OutboxEntry.objects.filter(id=entry.id).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )
    again = in_thread(lambda: outbox.claim(10))

    assert ids(again) == [entry.id]
    assert again.token != first.token
