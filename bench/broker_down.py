"""How long a save waits on a broker that is down, against a save with a working broker.

For Redis and RabbitMQ: the first save of a fresh process (its flush task's publish
connects) with the broker working, refused (a closed port) and hung (a port that accepts
and never answers), then the median of later saves with the working broker (connection
pooled). Prints each in milliseconds, and the ratios of the slower first save with the
broker down to a first save and to a later save with it working. Target: a save with the
broker down takes at most PUBLISH_TIMEOUT (0.5 s) and the save itself; Celery's own
publishing path took 6 s (refused) and 4 s or for ever (hung).

Needs Redis (127.0.0.1:6379, database 14) and RabbitMQ (127.0.0.1:5672, guest). The flush
tasks go to a queue of their own, purged and deleted at the end. One row per save, on
DATABASE_URL (PostgreSQL by default).

Usage: ``python bench/broker_down.py [--saves 200]``
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from django_suprsend.delivery import schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import bench_database

ALIAS = "default"
QUEUE = "suprsend-bench-broker-down"
BROKERS = {
    "redis": "redis://127.0.0.1:{port}/14",
    "amqp": "amqp://guest:guest@127.0.0.1:{port}//",
}
WORKING_PORTS = {"redis": 6379, "amqp": 5672}


@contextmanager
def working(transport: str) -> Iterator[int]:
    yield WORKING_PORTS[transport]


@contextmanager
def refused(transport: str) -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def hung(transport: str) -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


CONDITIONS: dict[str, Callable[[str], AbstractContextManager[int]]] = {
    "working": working,
    "refused": refused,
    "hung": hung,
}


@contextmanager
def fresh_process_on(url: str) -> Iterator[object]:
    """A Celery app on ``url`` made current, with the app's per-process state as at start."""
    from celery import Celery, current_app

    from django_suprsend.delivery import publish

    previous = current_app._get_current_object()
    app = Celery("bench-broker-down", set_as_current=False)
    app.conf.broker_write_url = url
    app.set_current()
    schedule.debouncer.reset()
    publish.pools.reset()
    try:
        yield app
    finally:
        publish.pools.reset()
        previous.set_current()
        app.close()


def timed_save(row) -> float:
    from django.db import transaction

    row.plan = "pro" if row.plan != "pro" else "free"
    start = time.perf_counter()
    with transaction.atomic(using=ALIAS):
        row.save(using=ALIAS)
    return time.perf_counter() - start


def purge(app) -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_purge(QUEUE)
        channel.queue_delete(QUEUE)


def measure(transport: str, rows: list, saves: int) -> None:
    # Once, not measured: the transport's modules imported, the caches of the save warm.
    with fresh_process_on(BROKERS[transport].format(port=WORKING_PORTS[transport])):
        timed_save(rows[0])
    first: dict[str, float] = {}
    for condition, make in CONDITIONS.items():
        with make(transport) as port, fresh_process_on(BROKERS[transport].format(port=port)):
            first[condition] = timed_save(rows[0])
    with fresh_process_on(BROKERS[transport].format(port=WORKING_PORTS[transport])) as app:
        timed_save(rows[0])
        later = statistics.median(timed_save(row) for row in rows[1 : saves + 1])
        purge(app)
    down = max(first["refused"], first["hung"])
    print(
        f"  {transport:5s} first save: working {first['working'] * 1000:6.1f} ms  "
        f"refused {first['refused'] * 1000:6.1f} ms  hung {first['hung'] * 1000:6.1f} ms  "
        f"| later saves, working: {later * 1000:5.2f} ms  "
        f"| ratio down/working first save {down / first['working']:5.1f}, "
        f"down/later {down / later:5.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("django_suprsend.delivery.schedule").setLevel(
        logging.ERROR
    )  # the broker-down warning
    with bench_database("http://127.0.0.1:9/") as database:
        from django.test import override_settings

        from bench.benchapp.models import SyncedUser

        SyncedUser.objects.using(ALIAS).bulk_create(
            SyncedUser(email=f"user{i}@example.com", plan="free") for i in range(args.saves + 1)
        )
        rows = list(SyncedUser.objects.using(ALIAS).order_by("id"))
        # Every save publishes (no debounce), to a queue of the benchmark's own.
        suprsend = {"FLUSH_DEBOUNCE": 0.0, "QUEUE": QUEUE}
        from django.conf import settings

        with override_settings(SUPRSEND={**settings.SUPRSEND, **suprsend}):
            from django_suprsend.conf import suprsend_settings

            print(f"PUBLISH_TIMEOUT {suprsend_settings.PUBLISH_TIMEOUT} s, {database}:")
            for transport in BROKERS:
                measure(transport, rows, args.saves)
    print("target: a first save with the broker down under PUBLISH_TIMEOUT + a save")


if __name__ == "__main__":
    main()
