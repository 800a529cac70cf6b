"""Workflow triggers and events: the client against the SDK, and the whole outbox path.

In one run, against the hub emulator (in its own process; a fresh one per measurement):

1. **client alone** (no database): N workflow triggers and N events built, chunked,
   signed and sent by our client, against the official SDK's documented bulk calls on
   the same records (``workflows.bulk_trigger_instance()`` + ``append`` + ``trigger()``,
   ``bulk_events.new_instance()`` + ``append`` + ``trigger()``). Target: ours >= 5x.
2. **the whole path** (``DATABASE_URL``, default PostgreSQL): N triggers and N events,
   each queued by ``trigger()``/``track_event()`` in its own transaction (as views do),
   then drained by one worker (``flush()``, what the Celery task runs), then the same
   again drained by two worker processes. Targets: >= 10,000 notifications/s by one
   worker; two workers >= 1.8x one.
3. **the call**: ``trigger()`` in a transaction against a plain one-row model save in a
   transaction, with the queries of each. Target: one INSERT, <= 1.3x.

Usage: ``python bench/notifications.py [--count 100000] [--calls 2000]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import bench_database
from _emulator import WORKSPACE_SECRET, emulator_process

# The SDK refuses an event whose env (the workspace key) is under 20 characters.
WORKSPACE_KEY = "ws_bench_notifications_key"


def _rate(count: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


# -- 1. the client alone -------------------------------------------------------------


def ours_workflows(url: str, count: int) -> float:
    from django_suprsend.wire.client import SuprsendClient
    from django_suprsend.wire.notifications import build_workflow_trigger

    def run() -> None:
        with SuprsendClient(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url) as client:
            records = [
                (
                    i,
                    build_workflow_trigger(
                        {"workflow": "bench", "recipients": [f"u-{i}"], "data": {"n": i}},
                        idempotency_key=f"wf-{i}",
                    ),
                )
                for i in range(count)
            ]
            response = client.trigger_workflows(records)
        assert response.sent == count, response

    return _rate(count, run)


def sdk_workflows(url: str, count: int) -> float:
    from suprsend import Suprsend, WorkflowTriggerRequest

    def run() -> None:
        client = Suprsend(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url)
        bulk = client.workflows.bulk_trigger_instance()
        for i in range(count):
            body = {"workflow": "bench", "recipients": [f"u-{i}"], "data": {"n": i}}
            bulk.append(WorkflowTriggerRequest(body, idempotency_key=f"wf-{i}"))
        response = bulk.trigger()
        assert response.success == count, response

    return _rate(count, run)


def ours_events(url: str, count: int) -> float:
    from django_suprsend.wire.client import SuprsendClient

    def run() -> None:
        with SuprsendClient(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url) as client:
            records = [
                (i, client.build_event(f"u-{i}", "bench_event", {"n": i}, idempotency_key=f"e-{i}"))
                for i in range(count)
            ]
            response = client.send_events(records)
        assert response.sent == count, response

    return _rate(count, run)


def sdk_events(url: str, count: int) -> float:
    from suprsend import Event, Suprsend

    def run() -> None:
        client = Suprsend(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url)
        bulk = client.bulk_events.new_instance()
        for i in range(count):
            bulk.append(Event(f"u-{i}", "bench_event", {"n": i}, idempotency_key=f"e-{i}"))
        response = bulk.trigger()
        assert response.success == count, response

    return _rate(count, run)


def ceiling_events(url: str, count: int) -> float:
    """Bare ``requests`` posting event chunks built and signed before the clock starts:
    what the emulator itself can take, the floor under every client."""
    import requests

    from django_suprsend.wire import signing
    from django_suprsend.wire.client import SuprsendClient
    from django_suprsend.wire.records import dumps

    with SuprsendClient(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url) as client:
        records = [client.build_event(f"u-{i}", "bench_event", {"n": i}) for i in range(count)]
    date = signing.http_date()
    prepared = []
    for start in range(0, count, 100):
        body = dumps(records[start : start + 100]).encode()
        sig = signing.signature(
            WORKSPACE_SECRET, "POST", body, date=date, request_uri="/v2/bulk/event/"
        )
        headers = {
            "Content-Type": signing.CONTENT_TYPE,
            "Date": date,
            "Authorization": f"{WORKSPACE_KEY}:{sig}",
        }
        prepared.append((body, headers))
    session = requests.Session()

    def run() -> None:
        for body, headers in prepared:
            session.post(url + "v2/bulk/event/", data=body, headers=headers).raise_for_status()

    return _rate(count, run)


def client_alone(count: int) -> None:
    with emulator_process(workspace_key=WORKSPACE_KEY) as url:
        floor = ceiling_events(url, count)
    print(f"0. the emulator's floor: bare requests posting prebuilt events {floor:>9,.0f}/s")
    print(f"1. the client alone: {count:,} of each, built, chunked, signed and sent")
    for label, ours, sdk in (
        ("workflow triggers", ours_workflows, sdk_workflows),
        ("events", ours_events, sdk_events),
    ):
        with emulator_process(workspace_key=WORKSPACE_KEY) as url:
            theirs = sdk(url, count)
        with emulator_process(workspace_key=WORKSPACE_KEY) as url:
            mine = ours(url, count)
        print(
            f"   {label:18s} sdk {theirs:>9,.0f}/s   ours {mine:>9,.0f}/s   "
            f"ours / sdk = {mine / theirs:5.1f}x   (target >= 5x)"
        )


# -- 2. the whole path ---------------------------------------------------------------


def queue(count: int) -> float:
    """Each notification queued in its own transaction, half triggers and half events."""
    from django.db import transaction

    from django_suprsend import track_event, trigger

    def run() -> None:
        for i in range(count):
            with transaction.atomic():
                if i % 2:
                    track_event(f"u-{i}", "bench_event", {"n": i})
                else:
                    trigger("bench", f"u-{i}", {"n": i})

    return _rate(count, run)


def _drain_in_child(_: int) -> int:
    from django.db import connections

    from django_suprsend.delivery.flush import flush

    try:
        return flush().notified
    finally:
        connections.close_all()


def drain(workers: int) -> tuple[float, int]:
    """Notifications/s until the outbox is empty, by ``workers`` processes (forked)."""
    from django.db import connections

    from django_suprsend.delivery.flush import flush

    start = time.perf_counter()
    if workers == 1:
        sent = flush().notified
    else:
        connections.close_all()
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            sent = sum(pool.map(_drain_in_child, range(workers)))
    return sent / (time.perf_counter() - start), sent


def whole_path(count: int, database: str) -> None:
    from django_suprsend.models import Notification, OutboxEntry

    print(f"2. the whole path on {database}: {count:,} notifications (half triggers, half events)")
    rates = {}
    for workers in (1, 2):
        OutboxEntry.objects.all().delete()
        queued = queue(count)
        rate, sent = drain(workers)
        unsent = Notification.objects.exclude(status="sent").count()
        assert sent == count, (sent, count)
        assert not unsent, unsent
        rates[workers] = rate
        print(
            f"   queued {queued:>8,.0f}/s (one transaction each); "
            f"drained by {workers} worker{'s' if workers > 1 else ''} {rate:>9,.0f}/s"
        )
    print(
        f"   one worker {rates[1]:,.0f}/s (target >= 10,000); "
        f"two / one = {rates[2] / rates[1]:4.2f}x (target >= 1.8x)"
    )


# -- 3. the call ---------------------------------------------------------------------


def the_call(calls: int) -> None:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from bench.benchapp.models import PlainUser
    from django_suprsend import trigger

    def plain(i: int) -> None:
        with transaction.atomic():
            PlainUser(email=f"p{i}@example.com", first_name="Ada", plan="free").save()

    def queued(i: int) -> None:
        with transaction.atomic():
            trigger("bench", f"u-{i}", {"n": i})

    print(f"3. the call: {calls:,} of each, each in its own transaction, best of 3")
    best = {}
    for label, call in (("plain save", plain), ("trigger()", queued)):
        with CaptureQueriesContext(connection) as captured:
            call(-1)
        kinds = [q["sql"].split(" ", 1)[0] for q in captured.captured_queries]
        best[label] = min(_time(call, calls, offset=run * calls) for run in range(3))
        print(f"   {label:11s} {best[label] * 1e6 / calls:7.1f} us   queries: {kinds}")
    print(
        f"   trigger() / plain save = {best['trigger()'] / best['plain save']:4.2f}x "
        "(target <= 1.3x)"
    )


def _time(call: Callable[[int], None], calls: int, offset: int) -> float:
    start = time.perf_counter()
    for i in range(offset, offset + calls):
        call(i)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--only", choices=("client", "path", "call"), default=None)
    args = parser.parse_args()
    if args.only in (None, "client"):
        client_alone(args.count)
    if args.only in (None, "path", "call"):
        with emulator_process() as url, bench_database(url) as database:
            if args.only in (None, "path"):
                whole_path(args.count, database)
            if args.only in (None, "call"):
                the_call(args.calls)


if __name__ == "__main__":
    main()
