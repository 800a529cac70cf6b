"""Profiles/s drained from the outbox into the hub emulator by one worker process.

100,000 queued changes for 100,000 users (written with ``bulk_create``, as
saves would have written them) are drained by ``flush()`` - what the Celery
task runs - in this one process, against the emulator in its own process.
The baseline, measured in the same run, is the client alone sending the same
number of prebuilt records (no database), so the ratio shows what the
outbox costs on top of the wire.

Usage: ``python bench/drain.py [--profiles 100000] [--batch-size N]``, on the
database of ``DATABASE_URL`` (default PostgreSQL at 127.0.0.1:5432, database ``test``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import bench_database
from _emulator import WORKSPACE_KEY, WORKSPACE_SECRET, emulator_process


def queue_changes(count: int) -> None:
    from django_suprsend.models import OutboxEntry
    from django_suprsend.wire.operations import ProfileEdit

    OutboxEntry.objects.bulk_create(
        (
            OutboxEntry(
                distinct_id=f"user-{i}",
                operations=ProfileEdit(f"user-{i}")
                .set({"name": f"User {i}", "plan": "pro"})
                .add_email(f"user-{i}@example.com")
                .operations,
            )
            for i in range(count)
        ),
        batch_size=5000,
    )


def client_baseline(url: str, count: int) -> float:
    from django_suprsend.wire.client import SuprsendClient
    from django_suprsend.wire.operations import ProfileEdit

    with SuprsendClient(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url) as client:
        records = (
            client.build_record(
                ProfileEdit(f"base-{i}")
                .set({"name": f"User {i}", "plan": "pro"})
                .add_email(f"base-{i}@example.com")
            )
            for i in range(count)
        )
        start = time.perf_counter()
        result = client.send_records(records)
        elapsed = time.perf_counter() - start
    assert result.success == count, result
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: SUPRSEND BATCH_SIZE")
    args = parser.parse_args()
    count = args.profiles

    with emulator_process() as url, bench_database(url) as database:
        from django_suprsend.delivery.flush import flush
        from django_suprsend.models import OutboxEntry, SyncState

        print(f"database: {database}; {count:,} queued changes for {count:,} users")
        baseline = client_baseline(url, count)
        print(f"client alone (no database)  {baseline:>10,.0f} records/s")

        queue_changes(count)
        start = time.perf_counter()
        result = flush(limit=args.batch_size)
        elapsed = time.perf_counter() - start
        rate = result.synced / elapsed
        print(f"outbox drain (one worker)   {rate:>10,.0f} profiles/s   ({result})")

        assert result.synced == count, result
        assert not OutboxEntry.objects.exclude(status=OutboxEntry.Status.SENT).exists()
        assert SyncState.objects.filter(status="synced").count() == count
        print()
        print(f"drain / client = {rate / baseline:5.2f}   (target: drain >= 10,000 profiles/s)")


if __name__ == "__main__":
    main()
