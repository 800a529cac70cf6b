"""Records/s of profile edits built and sent to the hub emulator.

Three contenders, in one run, against the same emulator (in its own process):

* ``sdk``     - the official SDK's documented bulk path (``suprsend-py-sdk``):
                get_edit_instance, set, add_email, bulk append, save;
* ``ours``    - django-suprsend: ProfileEdit, build_record, send_records;
* ``ceiling`` - bare ``requests`` posting chunks serialised and signed before
                the clock starts: the wire and the emulator alone.

Usage: ``python bench/client_throughput.py [--records 100000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import requests
from _emulator import WORKSPACE_KEY, WORKSPACE_SECRET, emulator_process

from django_suprsend.wire import records as wire_records
from django_suprsend.wire import signing
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.operations import ProfileEdit


def run_ours(url: str, count: int) -> None:
    """Records are built lazily, as a backfill streams them from a queryset, so
    building the next chunk overlaps the round trip of the one in flight."""
    with SuprsendClient(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url) as client:
        records = (
            client.build_record(
                ProfileEdit(f"ours-{i}").set("n", i).add_email(f"ours-{i}@example.com")
            )
            for i in range(count)
        )
        result = client.send_records(records)
    assert result.success == count, result


def run_sdk(url: str, count: int) -> None:
    from suprsend import Suprsend

    client = Suprsend(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url)
    bulk = client.users.get_bulk_edit_instance()
    for i in range(count):
        user = client.users.get_edit_instance(f"sdk-{i}")
        user.set("n", i)
        user.add_email(f"sdk-{i}@example.com")
        bulk.append(user)
    result = bulk.save()
    assert result.success == count, result


def prepare_ceiling(url: str, count: int) -> Callable[[], None]:
    """Serialise and sign every chunk now; the returned callable only posts."""
    records = [
        wire_records.build_record(
            f"bare-{i}",
            [{"$set": {"n": i}}, {"$append": {"$email": f"bare-{i}@example.com"}}],
            env=WORKSPACE_KEY,
            sdk_version="bench",
        )
        for i in range(count)
    ]
    size = wire_records.MAX_RECORDS_PER_REQUEST
    bodies = [wire_records.dumps(records[i : i + size]).encode() for i in range(0, count, size)]
    date = signing.http_date()
    prepared = []
    for body in bodies:
        sig = signing.signature(WORKSPACE_SECRET, "POST", body, date=date, request_uri="/event/")
        headers = {
            "Content-Type": signing.CONTENT_TYPE,
            "Date": date,
            "Authorization": f"{WORKSPACE_KEY}:{sig}",
        }
        prepared.append((body, headers))
    session = requests.Session()

    def post_all() -> None:
        for body, headers in prepared:
            response = session.post(url + "event/", data=body, headers=headers, timeout=30)
            response.raise_for_status()

    return post_all


def measure(
    label: str, count: int, repeat: int, prepare: Callable[[str], Callable[[], None]]
) -> float:
    """Best records/s over ``repeat`` runs, each against a fresh emulator process.

    A fresh emulator per run keeps every contender on equal terms (the hub's
    profile store does not grow from one contender to the next).
    """
    rates = []
    for _ in range(repeat):
        with emulator_process() as url:
            run = prepare(url)
            start = time.perf_counter()
            run()
            rates.append(count / (time.perf_counter() - start))
    best, median = max(rates), statistics.median(rates)
    print(f"{label:8s} {count:>8,d} records: best {best:>9,.0f}/s  median {median:>9,.0f}/s")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    count, repeat = args.records, args.repeat

    print(f"{count:,} small records per run, best of {repeat} runs, each on a fresh emulator")
    rates = {
        "ceiling": measure("ceiling", count, repeat, lambda url: prepare_ceiling(url, count)),
        "sdk": measure("sdk", count, repeat, lambda url: lambda: run_sdk(url, count)),
        "ours": measure("ours", count, repeat, lambda url: lambda: run_ours(url, count)),
    }
    print()
    print(f"ours / sdk     = {rates['ours'] / rates['sdk']:6.1f}x   (target >= 10x)")
    print(f"ours / ceiling = {rates['ours'] / rates['ceiling']:6.2f}")
    print(f"sdk  / ceiling = {rates['sdk'] / rates['ceiling']:6.3f}")


if __name__ == "__main__":
    main()
