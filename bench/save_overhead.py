"""What the mixin adds to a model save, on SQLite and PostgreSQL, in one run.

For each database: the same rows saved through a plain model and through one
that uses ``SuprsendProfileMixin``, unchanged and with one tracked field
changed. Prints the queries of each kind of save and the time ratio
(mixin / plain). Targets: unchanged save 0 extra queries; changed save
exactly one extra INSERT; time ratio <= 1.5.

Two modes: ``autocommit`` (each save on its own; the mixin then opens a
transaction so that the outbox row commits with the data: BEGIN and COMMIT
are the price of that guarantee) and ``atomic`` (each save inside
``transaction.atomic()``, as with ``ATOMIC_REQUESTS``: plain and mixin saves
both run in a transaction, and the difference is the outbox INSERT alone).

Usage: ``python bench/save_overhead.py [--saves 2000]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import bench_database

ALIASES = ("sqlite", "default")


def make_rows(model, alias: str, count: int) -> list:
    model.objects.using(alias).bulk_create(
        model(
            email=f"user{i}@example.com",
            phone=f"+1555555{i:04d}",
            first_name="Ada",
            last_name=f"L{i}",
            language="en",
            timezone="Europe/London",
            plan="free",
        )
        for i in range(count)
    )
    return list(model.objects.using(alias).order_by("id"))


def save(row, alias: str, atomic: bool) -> None:
    from django.db import transaction

    if atomic:
        with transaction.atomic(using=alias):
            row.save(using=alias)
    else:
        row.save(using=alias)


def saves(rows: list, alias: str, change: bool, atomic: bool) -> float:
    start = time.perf_counter()
    for i, row in enumerate(rows):
        if change:
            row.plan = "pro" if row.plan != "pro" else f"p{i % 7}"
        save(row, alias, atomic)
    return time.perf_counter() - start


def queries_of(row, alias: str, change: bool, atomic: bool) -> list[str]:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    if change:
        row.plan = "team" if row.plan != "team" else "free"
    with CaptureQueriesContext(connections[alias]) as captured:
        save(row, alias, atomic)
    return [q["sql"].split(" ", 1)[0] for q in captured.captured_queries]


def measure(alias: str, count: int) -> None:
    from bench.benchapp.models import PlainUser, SyncedUser

    plain = make_rows(PlainUser, alias, count)
    synced = make_rows(SyncedUser, alias, count)
    for atomic in (False, True):
        for change in (False, True):
            label = f"{'atomic' if atomic else 'autocommit'} {'changed' if change else 'unchanged'}"
            plain_queries = queries_of(plain[0], alias, change, atomic)
            synced_queries = queries_of(synced[0], alias, change, atomic)
            extra = list(synced_queries)
            for query in plain_queries:
                extra.remove(query)
            # Best of three rounds each.
            plain_time = min(saves(plain, alias, change, atomic) for _ in range(3))
            synced_time = min(saves(synced, alias, change, atomic) for _ in range(3))
            print(
                f"  {label:21s} plain {count / plain_time:>7,.0f}/s  "
                f"mixin {count / synced_time:>7,.0f}/s  ratio {synced_time / plain_time:4.2f}  "
                f"extra queries {extra}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=2000)
    args = parser.parse_args()
    with bench_database("http://127.0.0.1:9/", *ALIASES):
        for alias in ALIASES:
            from django.db import connections

            print(f"{connections[alias].vendor}:")
            measure(alias, args.saves)
    print("targets: unchanged extra 0, changed extra 1 (INSERT), ratio <= 1.5")


if __name__ == "__main__":
    main()
