"""Real Celery workers drain the outbox: delivery, concurrency, a killed worker, a lost broker,
a failing hub. Each test runs ``celery worker`` subprocesses (``tests/workers.py``) on the test
database, against the hub emulator of the test process, through the broker of
``CELERY_BROKER_URL`` (Redis database 15 by default).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery import Celery
from django.db import transaction
from django.db.models import Count
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_suprsend.delivery import outage, outbox
from django_suprsend.delivery.enqueue import enqueue, enqueue_many
from django_suprsend.delivery.flush import flush, flush_once
from django_suprsend.delivery.tasks import flush_outbox, sweep
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.profiles.api import paused
from django_suprsend.testing.profiles import ProfileStore
from django_suprsend.wire.operations import ProfileEdit
from tests.celery_app import BROKER_URL, app
from tests.testapp.factories import make_user
from tests.testapp.models import User
from tests.workers import (
    broker_unreachable_reason,
    stop_all,
    suprsend_settings,
    wait_until,
    worker_pool,
)

UNREACHABLE = broker_unreachable_reason()
if UNREACHABLE and os.environ.get("CI") == "true":
    # CI machines run Redis: a broker that is not there is a failure, never a quiet skip.
    raise RuntimeError(f"worker tests cannot run in CI: {UNREACHABLE}")

pytestmark = [
    pytest.mark.workers,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(UNREACHABLE is not None, reason=f"worker tests: {UNREACHABLE}"),
]

Status = OutboxEntry.Status


@pytest.fixture
def pool(suprsend_hub, tmp_path, settings):
    """Workers on a queue of their own; this process sends its flush tasks there too."""
    with worker_pool(suprsend_hub.url, tmp_path) as pool:
        settings.SUPRSEND = suprsend_settings(suprsend_hub.url, pool.queue)
        yield pool


# -- helpers ---------------------------------------------------------------------


def email_edit(distinct_id: str, n: int = 1) -> ProfileEdit:
    """Step ``n`` of a profile's life: a new email (replacing step n-1's), a counter, a history."""
    edit = ProfileEdit(distinct_id)
    if n > 1:
        edit.remove_email(f"{distinct_id}-{n - 1}@example.com")
    return edit.add_email(f"{distinct_id}-{n}@example.com").set("step", n).append("history", n)


def enqueue_profiles(distinct_ids: list[str]) -> None:
    """One entry per profile, in one transaction: its commit sends one flush task."""
    with transaction.atomic():
        for distinct_id in distinct_ids:
            enqueue(distinct_id, email_edit(distinct_id).operations)


def expected_profiles() -> dict[str, dict[str, Any]]:
    """Every profile as the hub should hold it: each entry's operations applied in id order."""
    store = ProfileStore()
    for distinct_id, operations in OutboxEntry.objects.order_by("id").values_list(
        "distinct_id", "operations"
    ):
        store.apply(distinct_id, operations)
    return {distinct_id: comparable(p) for distinct_id, p in store.all().items()}


def comparable(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    if profile is None:
        return None
    return {k: v for k, v in profile.items() if k not in ("created_at", "updated_at")}


def assert_hub_holds_expected_profiles(hub) -> None:
    expected = expected_profiles()
    actual = {distinct_id: comparable(p) for distinct_id, p in hub.profiles().items()}
    wrong = [i for i in expected if actual.get(i) != expected[i]]
    assert not wrong, f"{len(wrong)} profiles differ, e.g. {wrong[0]}: {actual.get(wrong[0])}"
    assert set(actual) == set(expected)


def wait_all_sent(pool, timeout: float) -> None:
    def message() -> str:
        statuses = OutboxEntry.objects.values_list("status").annotate(Count("id"))
        return f"outbox by status {dict(statuses)}\n{pool.logs()}"

    wait_until(
        lambda: not OutboxEntry.objects.exclude(status=Status.SENT).exists(), timeout, message
    )


def accepted_records(hub) -> list[dict[str, Any]]:
    """Every record of every ``event/`` request the hub accepted, in order of arrival."""
    records = []
    for request in hub.requests:
        if request.path.endswith("/event/") and request.status == 202:
            body = request.json()
            records.extend(body if isinstance(body, list) else [body])
    return records


def wait_synced(distinct_ids: list[str], timeout: float = 30) -> None:
    """Wait until each profile's SyncState says synced (written just after its entries)."""

    def synced() -> bool:
        return SyncState.objects.filter(
            distinct_id__in=distinct_ids, status=SyncStatus.SYNCED
        ).count() == len(distinct_ids)

    def message() -> str:
        states = SyncState.objects.filter(distinct_id__in=distinct_ids)
        return f"sync states by status {dict(states.values_list('status').annotate(Count('id')))}"

    wait_until(synced, timeout, message)


# -- 1. the happy path -------------------------------------------------------------


def test_a_queued_change_is_delivered_by_a_worker(pool, suprsend_hub):
    pool.start(1)

    with transaction.atomic():
        enqueue("u1", email_edit("u1").set("plan", "pro").operations)

    # Nothing but the commit sent a task: the worker delivers it.
    suprsend_hub.wait_for(
        lambda hub: hub.channel_values("u1", "$email") == ["u1-1@example.com"], timeout=30
    )
    assert suprsend_hub.properties("u1") == {"step": 1, "history": [1], "plan": "pro"}
    wait_until(
        lambda: SyncState.objects.filter(distinct_id="u1", status=SyncStatus.SYNCED).exists(),
        30,
        lambda: f"sync state {list(SyncState.objects.values())}\n{pool.logs()}",
    )
    state = SyncState.objects.get(distinct_id="u1")
    assert state.last_synced_at is not None
    assert state.last_error == ""
    assert list(OutboxEntry.objects.values_list("status", flat=True)) == [Status.SENT]


def test_saved_users_follow_the_database_through_a_worker(pool, suprsend_hub):
    """The whole path: model saves, their commits, a real worker, the hub."""
    pool.start(1)
    user = make_user(email="ada@example.com", phone="+441234567890", language="en")
    distinct_id = str(user.pk)
    suprsend_hub.wait_for(
        lambda hub: hub.channel_values(distinct_id, "$email") == ["ada@example.com"], timeout=30
    )

    user.email = "ada@lovelace.org"
    user.language = "fr"
    user.plan = "team"
    user.save()
    suprsend_hub.wait_for(
        lambda hub: (
            hub.channel_values(distinct_id, "$email") == ["ada@lovelace.org"]
            and hub.properties(distinct_id).get("plan") == "team"
        ),
        timeout=30,
    )
    assert suprsend_hub.properties(distinct_id)["$preferred_language"] == "fr"
    assert suprsend_hub.channel_values(distinct_id, "$sms") == ["+441234567890"]

    user.delete()  # ON_DELETE "delete": the SuprSend user goes too
    suprsend_hub.wait_for(lambda hub: hub.profile(distinct_id) is None, timeout=30)
    wait_synced([distinct_id])


# -- 2. two workers, ten thousand entries --------------------------------------------

SINGLES = 6000  # profiles with one entry
SEVERAL = 1000  # profiles with ROUNDS entries each
ROUNDS = 4
BLOCKS = 4  # of SEVERAL // BLOCKS profiles
BATCH_SIZE = 500


def test_two_workers_send_ten_thousand_entries_each_exactly_once_in_order(pool, suprsend_hub):
    """Entries of one profile meet in one batch (merged into one record) and across batches,
    which two workers may hold at once (the later batch's entries then wait)."""
    workers = pool.start(2, BATCH_SIZE=BATCH_SIZE)
    suprsend_hub.latency = 0.05  # time on the wire: the two workers' batches overlap
    singles = iter(f"s{i}" for i in range(SINGLES))
    items = []
    per_block = SEVERAL // BLOCKS
    for block in range(BLOCKS):
        # ROUNDS entries of each of these profiles: rounds 1-2 fill one batch, 3-4 the next.
        several = [f"m{i}" for i in range(block * per_block, (block + 1) * per_block)]
        for n in range(1, ROUNDS + 1):
            items += [(i, email_edit(i, n).operations, [], None) for i in several]
        items += [(i, email_edit(i).operations, [], None) for i in islice(singles, 1500)]
    assert len(items) == SINGLES + SEVERAL * ROUNDS == 10_000

    with transaction.atomic():
        enqueue_many(items)  # its commit sends one flush task
    pool.send(flush_outbox)
    pool.send(flush_outbox)

    wait_all_sent(pool, timeout=150)

    # Every record arrived once: no $insert_id twice, none lost.
    counts = suprsend_hub.insert_id_counts
    assert set(counts.values()) == {1}
    records = accepted_records(suprsend_hub)
    assert len(records) == len(counts)

    tags = defaultdict(list)  # distinct_id -> the tag of each of its entries, in id order
    for distinct_id, tag in OutboxEntry.objects.order_by("id").values_list(
        "distinct_id", "insert_id"
    ):
        tags[distinct_id].append(tag)
    sent = defaultdict(list)  # distinct_id -> its records' $insert_ids, in order of arrival
    for record in records:
        sent[record["distinct_id"]].append(record["$insert_id"])
    # Each profile's records are the runs of its entries sharing a tag, once each, in id order.
    expected_records = 0
    for distinct_id, profile_tags in tags.items():
        runs = [tag for i, tag in enumerate(profile_tags) if i == 0 or profile_tags[i - 1] != tag]
        expected = [outbox.record_insert_id(tag, distinct_id) for tag in runs]
        assert sent[distinct_id] == expected, distinct_id
        expected_records += len(expected)
    assert expected_records == len(counts)
    # Some profiles went in more than one record: their entries met across batches and workers.
    assert any(len(sent[f"m{i}"]) > 1 for i in range(SEVERAL))

    assert_hub_holds_expected_profiles(suprsend_hub)
    assert not OutboxEntry.objects.filter(status=Status.PENDING).exists()
    wait_synced(list(tags))
    # Both workers sent some of it.
    for worker in workers:
        wait_until(worker.task_results, 10, lambda w=worker: f"no result logged:\n{w.tail()}")
        synced = sum(r["synced"] for r in worker.task_results())
        assert synced > 0, f"{worker.name} sent nothing:\n{worker.tail()}"


# -- 3. a worker killed mid-batch -------------------------------------------------------

KILLED_PROFILES = [f"k{i}" for i in range(300)]


@pytest.mark.parametrize("lost_request", ["dropped", "applied_late"])
def test_a_worker_killed_mid_batch_leaves_its_entries_to_the_next(pool, suprsend_hub, lost_request):
    """SIGKILL while a request is at the hub; once the lease expires another worker sends all.

    ``dropped``: the hub never applies the killed worker's request. ``applied_late``: it
    applies it after the worker died; the second worker's records carry the same
    ``$insert_id``s, so the hub applies each once.
    """
    [first] = pool.start(1, LEASE_SECONDS=3, BATCH_SIZE=1000)
    if lost_request == "dropped":
        suprsend_hub.latency = 10.0  # holds the request until the worker is dead...
        suprsend_hub.drop_next(1)  # ...then closes it unanswered
    else:
        suprsend_hub.delay_next(1, 4.0)  # applied 4s after it arrived

    enqueue_profiles(KILLED_PROFILES)
    wait_until(
        lambda: suprsend_hub.requests, 30, lambda: f"no request reached the hub\n{pool.logs()}"
    )
    # The worker waits for the hub, holding every entry under its lease.
    held = OutboxEntry.objects.filter(status=Status.PENDING, claimed_until__gt=timezone.now())
    assert held.count() == len(KILLED_PROFILES)
    first.kill()
    suprsend_hub.latency = 0.0
    if lost_request == "dropped":
        assert not suprsend_hub.applied_insert_ids

    [second] = pool.start(1)
    wait_until(
        lambda: (
            OutboxEntry.objects.filter(outbox.claimable(timezone.now())).count()
            == len(KILLED_PROFILES)
        ),
        15,
        "the killed worker's leases did not expire",
    )
    pool.send(sweep)  # what Celery beat does periodically

    wait_all_sent(pool, timeout=30)
    suprsend_hub.wait_for(lambda hub: len(hub.applied_insert_ids) == len(KILLED_PROFILES), 10)
    assert_hub_holds_expected_profiles(suprsend_hub)
    wait_synced(KILLED_PROFILES)
    counts = suprsend_hub.insert_id_counts
    assert len(counts) == len(KILLED_PROFILES)
    if lost_request == "dropped":
        assert set(counts.values()) == {1}
    else:  # the late request and the second worker's carried the same records
        suprsend_hub.wait_for(lambda hub: set(hub.insert_id_counts.values()) == {2}, 10)
    wait_until(second.task_results, 10, "the second worker logged no flush")  # it sent them


# -- 4. the broker is down at save time -----------------------------------------------------


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    """Make this thread's current Celery app one that sends its tasks to ``url``."""
    other = Celery("broker-down", set_as_current=False)
    # broker_write_url: a CELERY_BROKER_URL in the environment would win over broker_url.
    other.conf.update(broker_write_url=url)
    other.set_current()
    try:
        yield
    finally:
        app.set_current()
        other.close()


@contextmanager
def unreachable_broker_url() -> Iterator[str]:
    """The broker's URL with a loopback port that refuses connections (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        parts = urlsplit(BROKER_URL)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        yield parts._replace(netloc=f"{netloc}127.0.0.1:{sock.getsockname()[1]}").geturl()


def test_broker_down_at_save_time_keeps_the_change_for_the_sweep(pool, suprsend_hub, caplog):
    pool.start(1)
    with unreachable_broker_url() as url, broker_at(url):
        with (
            caplog.at_level(logging.WARNING, logger="django_suprsend.delivery.schedule"),
            transaction.atomic(),
        ):
            entry = enqueue("b1", email_edit("b1").operations)
        # The commit went through; the task could not be sent.
        assert OutboxEntry.objects.get(pk=entry.pk).status == Status.PENDING

    [warning] = [r for r in caplog.records if r.name == "django_suprsend.delivery.schedule"]
    assert warning.levelno == logging.WARNING
    assert "outbox" in warning.getMessage()
    assert "suprsend_flush" in warning.getMessage()
    assert suprsend_hub.requests == []

    # The broker is back: the periodic sweep finds the entry and has it sent.
    pool.send(sweep)
    wait_all_sent(pool, timeout=30)
    assert suprsend_hub.channel_values("b1", "$email") == ["b1-1@example.com"]
    wait_synced(["b1"])


# -- 5. the hub answers 5xx and 429 for a while ------------------------------------------------

FAULTY_PROFILES = [f"f{i}" for i in range(1000)]  # three requests of at most 400 records


def test_hub_errors_and_rate_limits_then_everything_is_delivered_once(pool, suprsend_hub):
    # The outbox's backoff is at least the Retry-After: it does not read it (see below).
    pool.start(1, HTTP_MAX_ATTEMPTS=2, RETRY_BACKOFF=1.0, RETRY_BACKOFF_MAX=2.0, MAX_ATTEMPTS=20)
    suprsend_hub.fail_next(3, 503)
    suprsend_hub.fail_next(2, 429, retry_after=1)
    suprsend_hub.fail_next(1, 500)
    suprsend_hub.fail_next(1, 429, retry_after=1)

    enqueue_profiles(FAULTY_PROFILES)
    wait_all_sent(pool, timeout=60)

    statuses = [r.status for r in suprsend_hub.requests]
    assert statuses[:7] == [503, 503, 503, 429, 429, 500, 429]
    # A 429/5xx answer means "not accepted": nothing of those requests was applied or counted.
    counts = suprsend_hub.insert_id_counts
    assert len(counts) == len(FAULTY_PROFILES)
    assert set(counts.values()) == {1}
    assert_hub_holds_expected_profiles(suprsend_hub)
    wait_synced(FAULTY_PROFILES)
    # The outbox retried some entries after a failed flush (not only the HTTP client).
    assert OutboxEntry.objects.filter(attempts__gt=1).exists()
    # A request sent again after a 429 waited for its Retry-After.
    requests = suprsend_hub.requests
    for k, request in enumerate(requests):
        if request.status != 429:
            continue
        ids = insert_ids(request)
        again = next((r for r in requests[k + 1 :] if insert_ids(r) & ids), None)
        assert again is not None
        assert again.received_at - request.answered_at >= 0.95


def insert_ids(request) -> set[str]:
    body = json.loads(request.body)
    return {r["$insert_id"] for r in (body if isinstance(body, list) else [body])}


def test_an_entry_rate_limited_by_the_hub_waits_for_its_retry_after(pool, settings, suprsend_hub):
    settings.SUPRSEND = {**settings.SUPRSEND, "HTTP_MAX_ATTEMPTS": 1, "RETRY_BACKOFF": 0.5}
    suprsend_hub.fail_next(1, 429, retry_after=60)
    enqueue_profiles(["r1"])  # no worker: the task waits in the queue...

    result = flush_once()  # ...and this process does the worker's job

    assert result.retrying == 1
    entry = OutboxEntry.objects.get()
    assert entry.next_attempt_at >= timezone.now() + timedelta(seconds=55)


def test_a_timed_out_record_keeps_its_insert_id_when_the_profile_changed_since(
    pool, settings, suprsend_hub
):
    settings.SUPRSEND = {
        **settings.SUPRSEND,
        "HTTP_MAX_ATTEMPTS": 1,
        "READ_TIMEOUT": 0.3,
        "RETRY_BACKOFF": 0.01,
    }
    suprsend_hub.delay_next(1, 0.6)  # the hub applies it after the client has given up
    enqueue_profiles(["t1"])
    assert flush_once().retrying == 1
    suprsend_hub.wait_for(lambda hub: len(hub.applied_insert_ids) == 1)
    with transaction.atomic():
        enqueue("t1", email_edit("t1", 2).operations)  # a change before the retry

    for _ in range(5):  # flushes until both entries are sent, however they are grouped
        if OutboxEntry.objects.filter(status=Status.PENDING).exists():
            flush()

    assert not OutboxEntry.objects.filter(status=Status.PENDING).exists()
    assert suprsend_hub.properties("t1")["history"] == [1, 2]  # each step applied once


# -- 6. a worker whose clock is off --------------------------------------------------------

SKEWED_PROFILES = 20
OUTAGE_BANNER = 'id="suprsend-credentials-outage"'


def test_a_worker_whose_clock_is_off_keeps_the_changes_queued_until_it_is_fixed(pool, suprsend_hub):
    """The hub refuses a signed Date 15 minutes off its clock (401): nothing fails, the admin
    shows the outage, the worker logs one error; a worker with a right clock sends it all."""
    suprsend_hub.max_clock_skew = 300
    fast = {"HTTP_MAX_ATTEMPTS": 1, "RETRY_BACKOFF": 0.2, "RETRY_BACKOFF_MAX": 0.5}
    [skewed] = pool.start(1, clock_skew=900, MAX_ATTEMPTS=2, **fast)
    with paused():
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    browser = Client()
    browser.force_login(admin)
    users = [make_user(email=f"skew{i}@example.com") for i in range(SKEWED_PROFILES)]
    ids = [str(user.pk) for user in users]

    def refused() -> list[Any]:
        return [r for r in suprsend_hub.requests if r.status == 401]

    # The worker tries again and again (more often than MAX_ATTEMPTS), always refused...
    wait_until(lambda: len(refused()) >= 4, 30, lambda: f"{len(refused())} refused\n{pool.logs()}")
    assert "request expired" in refused()[0].response_body.decode()
    assert suprsend_hub.profiles() == {}
    # ...and no record is failed: every change waits, retrying.
    assert set(OutboxEntry.objects.values_list("status", flat=True)) == {Status.PENDING}
    wait_until(
        lambda: (
            SyncState.objects.filter(
                distinct_id__in=ids, status=SyncStatus.RETRYING, last_error_code=401
            ).count()
            == SKEWED_PROFILES
        ),
        30,
        lambda: f"sync states {list(SyncState.objects.values_list('status', flat=True))}",
    )
    assert not SyncState.objects.filter(status=SyncStatus.FAILED).exists()
    current = outage.current()
    assert current is not None
    assert "ahead of the hub's clock" in current.error
    page = browser.get(reverse("admin:django_suprsend_syncstate_changelist")).content.decode()
    assert OUTAGE_BANNER in page
    assert "clock" in page
    # One ERROR in the worker's log for all those refusals and records.
    errors = [line for line in skewed.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    assert "the hub refused the credentials (HTTP 401)" in errors[0]

    # The clock is fixed: the worker restarts with NTP.
    stop_all([skewed])
    pool.start(1, **fast)
    pool.send(flush_outbox)

    wait_synced(ids)
    wait_all_sent(pool, timeout=30)
    emails = [suprsend_hub.channel_values(distinct_id, "$email") for distinct_id in ids]
    assert emails == [[user.email] for user in users]
    assert outage.current() is None
    page = browser.get(reverse("admin:django_suprsend_syncstate_changelist")).content.decode()
    assert OUTAGE_BANNER not in page
