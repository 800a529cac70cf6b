"""One contender of ``bench/backfill.py``, alone in its own process, so that its
peak memory is its own.

Usage (run by ``bench/backfill.py``, not by hand)::

    BENCH_DATABASE_NAME=test_test python bench/_backfill_cmd.py EMULATOR_URL command [ARGS...]
    BENCH_DATABASE_NAME=test_test python bench/_backfill_cmd.py EMULATOR_URL sdk ROWS

``BENCH_DATABASE_NAME`` replaces the name of the ``default`` database (that of
``DATABASE_URL``), as Django's test runner does, so the child works on the
parent's throw-away test database.

``command`` runs ``call_command("suprsend_backfill", *ARGS)`` (its output goes
to stderr); ``sdk`` pushes the first ROWS users (by pk) the official SDK's
documented way. Either prints one JSON line on stdout: ``seconds`` (the
contender's work only, without interpreter and Django start-up) and
``peak_rss_mb`` (``ru_maxrss`` of this process or of its largest child, start-up
included).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from resource import RUSAGE_CHILDREN, RUSAGE_SELF, getrusage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import setup
from _emulator import WORKSPACE_KEY, WORKSPACE_SECRET


def use_database(name: str) -> None:
    from django.conf import settings
    from django.db import connections

    settings.DATABASES["default"]["NAME"] = name
    connections["default"].close()
    connections["default"].settings_dict["NAME"] = name


def run_command(args: list[str]) -> dict:
    from django.core.management import call_command

    start = time.perf_counter()
    call_command("suprsend_backfill", *args, stdout=sys.stderr, stderr=sys.stderr)
    return {"seconds": time.perf_counter() - start}


def run_sdk(url: str, rows: int) -> dict:
    """The official SDK's documented bulk path: iterate the queryset, build one
    ``UserEdit`` per user, append it to a bulk instance, save."""
    from suprsend import Suprsend

    from bench.benchapp.models import SyncedUser

    start = time.perf_counter()
    client = Suprsend(WORKSPACE_KEY, WORKSPACE_SECRET, base_url=url)
    bulk = client.users.get_bulk_edit_instance()
    for user in SyncedUser.objects.order_by("pk")[:rows]:
        edit = client.users.get_edit_instance(str(user.pk))
        edit.set({"name": user.get_full_name(), "plan": user.plan})
        edit.add_email(user.email)
        edit.add_sms(user.phone)
        edit.set_preferred_language(user.language)
        edit.set_timezone(user.timezone)
        bulk.append(edit)
    result = bulk.save()
    seconds = time.perf_counter() - start
    if result.success != rows:
        raise SystemExit(f"the SDK pushed {result.success} of {rows} users: {result}")
    return {"seconds": seconds, "success": result.success}


def main() -> None:
    url, mode, *args = sys.argv[1:]
    setup(url)
    use_database(os.environ["BENCH_DATABASE_NAME"])
    if mode == "command":
        outcome = run_command(args)
    elif mode == "sdk":
        outcome = run_sdk(url, int(args[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    # ru_maxrss is in KiB on Linux; for the children (--jobs), that of the largest one.
    largest = max(getrusage(who).ru_maxrss for who in (RUSAGE_SELF, RUSAGE_CHILDREN))
    outcome["peak_rss_mb"] = largest / 1024
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
