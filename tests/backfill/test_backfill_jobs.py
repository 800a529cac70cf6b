"""``suprsend_backfill --jobs N``: one run over forked processes, each its own range of rows.

The processes are real (forked from the test process, so they see its settings
and monkeypatches), the database is the suite's real one (committed rows:
``transaction=True``) and the hub is the emulator, which every process talks to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from django_suprsend import backfill
from django_suprsend.backfill import jobs as backfill_jobs
from django_suprsend.models import BackfillCheckpoint, SyncState, SyncStatus
from django_suprsend.testing import HubEmulator
from django_suprsend.wire.client import SuprsendClient
from tests.backfill.test_backfill import accepted, backfill_cmd, users
from tests.local import FORK_BESIDE_THREADS, environment_without
from tests.testapp.models import User

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("hub"),
    FORK_BESIDE_THREADS,
]


def sent_ids(hub, since: int = 0) -> list[str]:
    return [rec["distinct_id"] for r in hub.requests[since:] if accepted(r) for rec in r.json()]


def test_jobs_split_the_rows_and_each_profile_arrives_once(hub):
    rows = users(10)

    out = backfill_cmd("--jobs", "3", "--batch-size", "2")

    ids = {str(u.pk) for u in rows}
    assert set(hub.profiles()) == ids
    assert sorted(sent_ids(hub)) == sorted(ids)  # no row went twice
    assert "10 sent, 0 failed, 0 skipped" in out
    assert "10/10 rows" in out  # the parent reports every process's batches
    states = SyncState.objects.filter(distinct_id__in=ids)
    assert set(states.values_list("status", flat=True)) == {SyncStatus.SYNCED}
    assert states.count() == 10
    run = BackfillCheckpoint.objects.get(parent=None)
    assert run.finished_at is not None
    assert (run.sent, run.failed, run.skipped) == (10, 0, 0)
    assert run.last_pk == str(rows[-1].pk)
    parts = list(run.parts.order_by("pk"))
    assert len(parts) == 3
    assert all(part.finished_at is not None and part.run_id == run.run_id for part in parts)
    assert sum(part.sent for part in parts) == 10
    assert [part.upper_pk for part in parts][-1] == ""  # the last part takes what comes after


def test_split_points_cut_the_selection_into_ranges_of_equal_size():
    rows = users(10)
    qs = User.objects.all()

    points = backfill_jobs.split_points(qs, 3)

    assert points == [rows[2].pk, rows[5].pk]  # 3, 3 and 4 rows
    assert backfill_jobs.split_points(qs.filter(pk__lte=rows[1].pk), 4) == [rows[0].pk]
    assert backfill_jobs.split_points(qs.none(), 2) == []


def test_a_failed_process_stops_the_run_and_the_next_run_resumes_each_part(hub, monkeypatch):
    rows = users(12)
    poisoned = str(rows[8].pk)  # in the third of three parts (rows 9 to 12)
    original = SuprsendClient.send_records

    def broken(self, records, **options):
        if any(r["distinct_id"] == poisoned for r in records):
            raise RuntimeError("connection pool exploded")
        return original(self, records, **options)

    monkeypatch.setattr(SuprsendClient, "send_records", broken)
    with pytest.raises(CommandError, match="exploded") as failure:
        backfill_cmd("--jobs", "3", "--batch-size", "2")
    assert failure.value.returncode == 2
    monkeypatch.setattr(SuprsendClient, "send_records", original)
    run = BackfillCheckpoint.objects.get(parent=None)
    assert run.finished_at is None
    third = run.parts.order_by("pk").last()
    assert third.finished_at is None
    assert third.last_pk == str(rows[7].pk)  # never moved: its first batch failed
    seen = len(hub.requests)

    out = backfill_cmd("--batch-size", "2")  # no --jobs: the run keeps its split

    assert "resumed after pk" in out
    resent = sent_ids(hub, seen)
    assert set(resent) >= {str(u.pk) for u in rows[8:]}
    assert set(hub.profiles()) == {str(u.pk) for u in rows}
    assert len(hub.applied_insert_ids) == 12  # a batch sent again was applied once
    assert all(n <= 2 for n in hub.insert_id_counts.values())
    run.refresh_from_db()
    assert run.finished_at is not None
    assert run.sent == 12
    assert SyncState.objects.filter(status=SyncStatus.SYNCED).count() == 12


def test_a_killed_process_is_noticed_and_its_part_resumes(hub, monkeypatch):
    rows = users(6)
    victim = str(rows[4].pk)
    original = SuprsendClient.send_records

    def killed(self, records, **options):
        if any(r["distinct_id"] == victim for r in records):
            os.kill(os.getpid(), signal.SIGKILL)  # no exception, no message: just gone
        return original(self, records, **options)

    monkeypatch.setattr(SuprsendClient, "send_records", killed)
    with pytest.raises(CommandError, match="exited with -9"):
        backfill_cmd("--jobs", "2", "--batch-size", "1")
    monkeypatch.setattr(SuprsendClient, "send_records", original)

    backfill_cmd("--jobs", "2", "--batch-size", "1")

    assert set(hub.profiles()) == {str(u.pk) for u in rows}
    assert len(hub.applied_insert_ids) == 6
    assert BackfillCheckpoint.objects.get(parent=None).finished_at is not None


def test_a_finished_split_run_starts_over_whole(hub):
    users(4)
    backfill_cmd("--jobs", "2")
    seen = len(hub.requests)

    backfill_cmd("--jobs", "3")

    assert len(sent_ids(hub, seen)) == 4
    run = BackfillCheckpoint.objects.get(parent=None)
    assert run.parts.count() == 3  # the old split was dropped with the old run
    assert len(hub.applied_insert_ids) == 8  # a new run id: new insert ids


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--jobs", "2", "--dry-run"], "not with --dry-run or --via-workers"),
        (["--jobs", "2", "--via-workers"], "not with --dry-run or --via-workers"),
    ],
)
def test_jobs_usage_errors(args, message):
    with pytest.raises(CommandError, match=message) as error:
        backfill_cmd(*args)
    assert error.value.returncode == 3
    assert not BackfillCheckpoint.objects.exists()


def test_jobs_inside_a_transaction_are_refused():
    users(1)
    from django.db import transaction

    with transaction.atomic(), pytest.raises(backfill.BackfillError, match="autocommit"):
        backfill.run(User, backfill.Options(jobs=2))


def test_the_command_forks_its_processes_from_a_process_without_threads(tmp_path):
    """A fork beside threads may deadlock the child (Python 3.12+ warns, and cannot make
    it an error): run as ``manage.py`` (the example project, on SQLite), the command's
    process has no thread besides its main one when it starts its jobs."""
    key, secret = "ws_fork_key", "ws_fork_secret"
    with HubEmulator(key, secret) as hub:
        env = {
            **environment_without(),
            "DEMO_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fork.sqlite3'}",
            "SUPRSEND_BASE_URL": hub.url,
            "SUPRSEND_WORKSPACE_KEY": key,
            "SUPRSEND_WORKSPACE_SECRET": secret,
        }

        def manage(*args: str) -> subprocess.CompletedProcess[str]:
            argv = [sys.executable, "-W", "always:This process:DeprecationWarning",
                    "example_project/manage.py", *args]  # fmt: skip
            return subprocess.run(  # noqa: S603 - our own argv
                argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
            )

        for step in (["migrate", "-v0"], ["seed_demo_users", "--users", "40"]):
            assert manage(*step).returncode == 0, step
        done = manage("suprsend_backfill", "--jobs", "2", "--batch-size", "5")

        assert "multi-threaded" not in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert "40 rows, 38 sent, 2 failed" in done.stdout, done.stdout  # every 20th is refused
        assert done.returncode == 1  # some failed
        assert len(hub.profiles()) == 40
