"""Records/s of profile edits built and sent to the hub emulator.

Three contenders, in one run, against the same emulator (in its own process):

* ``sdk``     - the official SDK's documented bulk path (``suprsend-py-sdk``):
                get_edit_instance, set, add_email, bulk append, save;
* ``ours``    - django-suprsend: ProfileEdit, build_record, send_records;
* ``ceiling`` - bare ``requests`` posting chunks serialised and signed before
                the clock starts: the wire and the emulator alone.

Usage: ``python bench/client_throughput.py [--records 100000] [--sdk-records 20000]``
(the SDK is slow, so by default it is measured on fewer records; records/s
is what is compared).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import requests
from _emulator import WORKSPACE_KEY, WORKSPACE_SECRET, emulator_process

from django_suprsend import operations, signing
from django_suprsend.client import SuprsendClient
from django_suprsend.operations import ProfileEdit


def run_ours(url: str, count: int) -> None:
    with SuprsendClient(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url) as client:
        records = []
        for i in range(count):
            edit = ProfileEdit(f"ours-{i}").set("n", i).add_email(f"ours-{i}@example.com")
            records.append(client.build_record(edit))
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
        operations.build_record(
            f"bare-{i}",
            [{"$set": {"n": i}}, {"$append": {"$email": f"bare-{i}@example.com"}}],
            env=WORKSPACE_KEY,
            sdk_version="bench",
        )
        for i in range(count)
    ]
    size = operations.MAX_RECORDS_PER_REQUEST
    bodies = [operations.dumps(records[i : i + size]).encode() for i in range(0, count, size)]
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


def timed(label: str, count: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    rate = count / elapsed
    print(f"{label:8s} {count:>8,d} records in {elapsed:7.2f} s = {rate:>10,.0f} records/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sdk-records", type=int, default=None, help="default: --records")
    args = parser.parse_args()
    sdk_count = args.sdk_records or args.records

    with emulator_process() as url:
        print(f"emulator at {url}")
        ceiling = prepare_ceiling(url, args.records)
        rates = {
            "ceiling": timed("ceiling", args.records, ceiling),
            "sdk": timed("sdk", sdk_count, lambda: run_sdk(url, sdk_count)),
            "ours": timed("ours", args.records, lambda: run_ours(url, args.records)),
        }
    print()
    print(f"ours / sdk     = {rates['ours'] / rates['sdk']:6.1f}x   (target >= 10x)")
    print(f"ours / ceiling = {rates['ours'] / rates['ceiling']:6.2f}")
    print(f"sdk  / ceiling = {rates['sdk'] / rates['ceiling']:6.3f}")


if __name__ == "__main__":
    main()
