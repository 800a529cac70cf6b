"""Records/s and peak memory of ``manage.py suprsend_backfill`` (issue 6),
against the official SDK's documented bulk path, in one run, on PostgreSQL.

Users of ``benchapp.SyncedUser`` (email, phone, name, plan, language,
timezone) are generated in SQL (``INSERT ... SELECT ... FROM
generate_series``: seconds for a million rows, nothing timed). Then, each
contender in its own process (so that its memory is its own; start-up of
Python and Django included) and against its own fresh emulator process (so
that every contender meets an empty profile store):

* ``sdk``  - ``suprsend-py-sdk``'s documented way, on the first ``--sdk-rows``
             users only (it holds every edit in memory): iterate the queryset;
             per user ``get_edit_instance(str(pk))``, ``set``, ``add_email``,
             ``add_sms``, ``set_preferred_language``, ``set_timezone``,
             ``bulk.append``; then ``bulk.save()``;
* ``ours`` - ``call_command("suprsend_backfill", "benchapp.SyncedUser",
             "--jobs", N)`` (N: ``--jobs``, default the machine's cores) at
             ``--small-rows`` users, then again (``--restart``) after the table
             is extended to ``--rows`` users.

Seconds are the contender's work only (query, build, send), timed in its process.

Memory is the peak, sampled every 0.1 s, of the summed PSS of the contender's
process and the processes it forks (a shared page counts once), and the peak
RSS (``ru_maxrss``) of the largest single process. Prints rows, seconds,
records/s and both memory figures for each, then
``ours / sdk`` (target >= 5x, on the slower of our two runs), whether ours
makes 20,000 records/s, and the peak memory at both sizes (target: under
200 MB, and the same at both).

Usage: ``python bench/backfill.py [--rows 1000000] [--small-rows 100000]
[--sdk-rows 100000] [--batch-size N] [--jobs N]``, on the database of ``DATABASE_URL``
(default PostgreSQL at 127.0.0.1:5432, database ``test``; a throw-away
``test_<name>`` database is created and dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import bench_database
from _emulator import WORKSPACE_KEY, WORKSPACE_SECRET, emulator_process

CHILD = Path(__file__).resolve().parent / "_backfill_cmd.py"
MODEL = "benchapp.SyncedUser"
TARGET_RATIO = 5
TARGET_RATE = 20_000
TARGET_PEAK_MB = 200
HEADER = (
    f"{'contender':22s} {'rows':>10s} {'seconds':>9s} {'records/s':>12s}"
    f" {'peak PSS MB':>12s} {'largest RSS MB':>15s}"
)


def generate_users(first: int, last: int) -> float:
    """Insert users ``first``..``last`` (inclusive) in one statement; VACUUM ANALYZE."""
    from django.db import connection

    from bench.benchapp.models import SyncedUser

    table = connection.ops.quote_name(SyncedUser._meta.db_table)
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table}
                (email, phone, first_name, last_name, language, timezone, plan, is_active)
            SELECT 'user' || i || '@example.com',
                   '+1415555' || lpad((i %% 10000)::text, 4, '0'),
                   'Ada', 'L' || i,
                   (ARRAY['en', 'fr', 'de', 'hi'])[1 + i %% 4],
                   (ARRAY['Europe/London', 'Europe/Paris', 'Asia/Kolkata'])[1 + i %% 3],
                   CASE WHEN i %% 10 = 0 THEN 'pro' ELSE 'free' END,
                   true
            FROM generate_series(%s, %s) AS i
            """,  # noqa: S608 - the table name is our own model's
            [first, last],
        )
        # Out of the clock: hint bits and statistics, as a long-lived table has them.
        cursor.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - start


def run_child(url: str, mode: str, *args: str) -> dict:
    """Run one contender in ``_backfill_cmd.py``; its JSON line, plus its last output line."""
    from django.db import connection

    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="bench.settings",
        BENCH_DATABASE_NAME=connection.settings_dict["NAME"],
    )
    process = subprocess.Popen(  # noqa: S603 - our own script, our own arguments
        [sys.executable, str(CHILD), url, mode, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with MemorySampler(process.pid) as memory:
        stdout, stderr = process.communicate()
    if process.returncode:
        sys.stderr.write(stderr)
        raise SystemExit(f"{mode} {' '.join(args)} exited with {process.returncode}")
    outcome = json.loads(stdout.strip().splitlines()[-1])
    outcome["tail"] = stderr.strip().splitlines()[-1:]
    outcome["peak_pss_mb"] = memory.peak_mb
    return outcome


class MemorySampler(threading.Thread):
    """The peak, over the run, of the summed PSS of a process and its descendants
    (``--jobs`` forks): PSS splits each shared page between the processes that map
    it, so the sum is the memory the whole command holds, not counted twice."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.stopped = threading.Event()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.join()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.peak_kb = max(self.peak_kb, sum(map(_pss_kb, _tree(self.pid))))


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux: /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in children.read_text().split())
    return found


def _pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # gone meanwhile
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)


def check_profiles(url: str, pks: list[int]) -> None:
    """Spot-check that the emulator holds a full profile for each of ``pks``."""
    from django_suprsend.wire.client import SuprsendClient

    with SuprsendClient(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url) as client:
        for pk in pks:
            profile = json.dumps(client.get_user(str(pk)))
            assert f"user{pk}@example.com" in profile, profile


def report(label: str, rows: int, outcome: dict) -> float:
    rate = rows / outcome["seconds"]
    print(
        f"{label:22s} {rows:>10,d} {outcome['seconds']:>9.2f} {rate:>12,.0f}"
        f" {outcome['peak_pss_mb']:>12.1f} {outcome['peak_rss_mb']:>15.1f}"
    )
    for line in outcome["tail"]:
        print(f"{'':24s}| {line}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--sdk-rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the command's")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="the command's --jobs"
    )
    args = parser.parse_args()
    small, large = min(args.small_rows, args.rows), args.rows
    sdk_rows = min(args.sdk_rows, small)
    command_args = [MODEL, "--jobs", str(args.jobs)]
    if args.batch_size:
        command_args += ["--batch-size", str(args.batch_size)]

    # Nothing is sent from this process: every contender gets its own emulator below.
    with bench_database("http://127.0.0.1:9/") as database:
        from django.db import connection

        if connection.vendor != "postgresql":
            raise SystemExit(f"this benchmark needs PostgreSQL, not {database}")
        print(f"database: {database}; model {MODEL}; command: {' '.join(command_args)}")
        seconds = generate_users(1, small)
        print(f"generated {small:,} users in {seconds:.1f}s (INSERT ... SELECT generate_series)")
        print()
        print(HEADER)

        with emulator_process() as url:
            sdk = run_child(url, "sdk", str(sdk_rows))
            check_profiles(url, [1, sdk_rows])
        sdk_rate = report("sdk (documented bulk)", sdk_rows, sdk)

        with emulator_process() as url:
            ours_small = run_child(url, "command", *command_args)
            check_profiles(url, [1, small // 2, small])
        small_rate = report("ours (command)", small, ours_small)

        if large > small:
            seconds = generate_users(small + 1, large)
            print(f"{'':24s}(extended to {large:,} users in {seconds:.1f}s)")
        with emulator_process() as url:
            ours_large = run_child(url, "command", *command_args, "--restart")
            check_profiles(url, [1, large // 2, large])
        large_rate = report("ours (command, restart)", large, ours_large)

    ours_rate = min(small_rate, large_rate)
    peak_small, peak_large = ours_small["peak_pss_mb"], ours_large["peak_pss_mb"]
    print()
    print(
        f"ours / sdk = {ours_rate / sdk_rate:.1f}x   (target >= {TARGET_RATIO}x;"
        f" slower of our runs, {ours_rate:,.0f} vs {sdk_rate:,.0f} records/s)"
    )
    print(
        f"ours >= {TARGET_RATE:,} records/s? {'yes' if ours_rate >= TARGET_RATE else 'NO'}"
        f"   ({small:,}: {small_rate:,.0f}/s, {large:,}: {large_rate:,.0f}/s)"
    )
    print(
        f"peak memory {small:,} vs {large:,}: {peak_small:.1f} MB vs {peak_large:.1f} MB"
        f" ({peak_large - peak_small:+.1f} MB; target < {TARGET_PEAK_MB} MB and the same);"
        f" sdk at {sdk_rows:,}: {sdk['peak_pss_mb']:.1f} MB"
    )


if __name__ == "__main__":
    main()
