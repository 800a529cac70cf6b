"""``manage.py suprsend_backfill``: against the hub emulator and the real database."""

from __future__ import annotations

import datetime
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.backends.signals import connection_created
from django.utils import timezone

from django_suprsend import backfill
from django_suprsend.backfill import pipeline
from django_suprsend.backfill import rows as rows_module
from django_suprsend.delivery import outage
from django_suprsend.models import BackfillCheckpoint, OutboxEntry, SyncState, SyncStatus
from django_suprsend.profiles.api import paused
from django_suprsend.profiles.snapshot import SNAPSHOT_KEY
from django_suprsend.testing.pytest_plugin import WORKSPACE_SECRET
from django_suprsend.wire.client import SuprsendClient
from tests.testapp.factories import make_user
from tests.testapp.models import Customer, Device, Staff, User

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hub")]


def users(n: int, **fields) -> list[User]:
    with paused():
        return [make_user(**fields) for _ in range(n)]


def backfill_cmd(*args: str) -> str:
    out = StringIO()
    call_command("suprsend_backfill", "testapp.User", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def accepted(request) -> bool:
    return request.path.endswith("event/") and request.status is not None and request.status < 300


def records_of(hub) -> dict[str, dict]:
    return {
        record["distinct_id"]: record
        for request in hub.requests
        if accepted(request)
        for record in request.json()
    }


def test_every_row_arrives_as_a_first_save_would_send_it(hub, monkeypatch):
    monkeypatch.setattr(User, "suprsend_prefetch_related", ["devices"], raising=False)
    rows = users(5)
    Device.objects.create(user=rows[0], token="fcm-1", provider="fcm")

    out = backfill_cmd("--batch-size", "2")

    assert set(hub.profiles()) == {str(u.pk) for u in rows}
    records = records_of(hub)
    for user in rows:
        expected, errors = User.objects.get(pk=user.pk).build_suprsend_profile()
        assert errors == []
        assert records[str(user.pk)]["$user_operations"] == expected
    assert [v["value"] for v in hub.profile(str(rows[0].pk))["$androidpush"]] == ["fcm-1"]
    assert "5 sent, 0 failed, 0 skipped" in out
    assert "5/5 rows" in out  # a progress line per batch (stdout is not a TTY)
    states = SyncState.objects.filter(distinct_id__in=[str(u.pk) for u in rows])
    assert {s.status for s in states} == {SyncStatus.SYNCED}
    assert states.count() == 5
    checkpoint = BackfillCheckpoint.objects.get()
    assert checkpoint.finished_at is not None
    assert checkpoint.sent == 5
    assert checkpoint.last_pk == str(rows[-1].pk)
    assert not OutboxEntry.objects.exists()


def test_inactive_rows_are_skipped(hub):
    active = users(2)
    users(1, is_active=False)

    out = backfill_cmd()

    assert set(hub.profiles()) == {str(u.pk) for u in active}
    assert "2 sent, 0 failed, 1 skipped" in out


def test_dry_run_sends_nothing_and_reports_invalid_rows(hub):
    good = users(3)
    bad = users(1, email="not-an-email")[0]

    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("suprsend_backfill", "testapp.User", "--dry-run", stdout=out)

    assert exit_info.value.code == 1
    text = out.getvalue()
    assert "4 rows, 3 valid, 1 invalid" in text
    assert f"pk={bad.pk}" in text
    assert "not-an-email" in text
    assert f"pk={good[0].pk}" not in text
    assert hub.requests == []
    assert not SyncState.objects.exists()
    assert not BackfillCheckpoint.objects.exists()
    assert not OutboxEntry.objects.exists()


def test_invalid_value_is_recorded_on_the_sync_state(hub):
    users(2)
    bad = users(1, email="not-an-email")[0]

    with pytest.raises(SystemExit) as exit_info:
        backfill_cmd()

    assert exit_info.value.code == 1
    state = SyncState.objects.get(distinct_id=str(bad.pk))
    assert state.status == SyncStatus.FAILED
    assert "not-an-email" in state.last_error
    assert hub.properties(str(bad.pk))["name"] == "Ann Lee"  # the valid values went


def test_an_interrupted_run_resumes_and_each_record_is_applied_once(hub, monkeypatch):
    rows = users(9)
    original = SuprsendClient.send_records
    calls = []

    def flaky(self, records, **options):
        calls.append(1)
        if len(calls) == 2:
            hub.fail_next(1, 503)  # batch 2: a transient failure, retries used up
        response = original(self, records, **options)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the hub applied batch 3
        return response

    monkeypatch.setattr(SuprsendClient, "send_records", flaky)
    with pytest.raises(KeyboardInterrupt):
        backfill_cmd("--batch-size", "3")
    monkeypatch.setattr(SuprsendClient, "send_records", original)

    first, failed, killed = rows[:3], rows[3:6], rows[6:]
    checkpoint = BackfillCheckpoint.objects.get()
    assert checkpoint.last_pk == str(rows[5].pk)
    assert checkpoint.finished_at is None
    assert checkpoint.sent == 3
    assert checkpoint.failed == 3
    states = dict(SyncState.objects.values_list("distinct_id", "status"))
    assert all(states[str(u.pk)] == SyncStatus.FAILED for u in failed)
    assert all(str(u.pk) not in states for u in killed)  # applied, not yet recorded
    seen = len(hub.requests)

    backfill_cmd("--batch-size", "3")  # exit 0: no SystemExit

    again = [r for r in hub.requests[seen:] if accepted(r)]
    assert len(again) == 1  # rows before the checkpoint were not read again
    assert {rec["distinct_id"] for rec in again[0].json()} == {str(u.pk) for u in killed}
    counts = hub.insert_id_counts
    resent = [rec["$insert_id"] for rec in again[0].json()]
    assert all(counts[insert_id] == 2 for insert_id in resent)  # same records: applied once
    assert BackfillCheckpoint.objects.get().finished_at is not None
    assert set(hub.profiles()) == {str(u.pk) for u in first + killed}

    seen = len(hub.requests)
    backfill_cmd("--batch-size", "3", "--only-failed")

    resent = [rec for r in hub.requests[seen:] if accepted(r) for rec in r.json()]
    assert {rec["distinct_id"] for rec in resent} == {str(u.pk) for u in failed}
    assert set(hub.profiles()) == {str(u.pk) for u in rows}
    assert set(SyncState.objects.values_list("status", flat=True)) == {SyncStatus.SYNCED}
    assert all(n <= 2 for n in hub.insert_id_counts.values())
    assert len(hub.applied_insert_ids) == 9


def test_a_finished_run_starts_over_with_new_insert_ids(hub):
    users(2)
    backfill_cmd()
    first = set(hub.applied_insert_ids)

    backfill_cmd()

    assert len(hub.applied_insert_ids) == 4
    assert first < hub.applied_insert_ids


def test_restart_ignores_the_checkpoint(hub, monkeypatch):
    rows = users(4)
    original = SuprsendClient.send_records

    def killed_on_second(self, records, **options):
        if records and records[0]["distinct_id"] == str(rows[2].pk):
            raise KeyboardInterrupt
        return original(self, records, **options)

    monkeypatch.setattr(SuprsendClient, "send_records", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        backfill_cmd("--batch-size", "2")
    monkeypatch.setattr(SuprsendClient, "send_records", original)
    seen = len(hub.requests)

    backfill_cmd("--batch-size", "2", "--restart")

    resent = [rec for r in hub.requests[seen:] if accepted(r) for rec in r.json()]
    assert len(resent) == 4


class _Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_the_sent_failed_and_skipped_counts(hub):
    """On a terminal, with tqdm, the bar replaces the progress lines: their counts go in its
    postfix, so a run that is failing says so while it runs."""
    pytest.importorskip("tqdm")
    users(3)
    users(1, email="not-an-email")
    out = _Terminal()

    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "suprsend_backfill", "testapp.User", "--batch-size", "2", stdout=out, stderr=StringIO()
        )

    assert exit_info.value.code == 1
    text = out.getvalue()
    assert "rows/s, ETA" not in text  # a bar, not the plain lines
    last_bar = text.rsplit("\r", 1)[-1].splitlines()[0]
    assert "testapp.User: 100%" in last_bar
    assert "4/4" in last_bar
    assert "sent=3, failed=1, skipped=0" in last_bar


def test_exit_status_two_when_nothing_is_delivered(hub):
    users(3)
    hub.fail_next(10, 503)

    with pytest.raises(SystemExit) as exit_info:
        backfill_cmd()

    assert exit_info.value.code == 2
    assert set(SyncState.objects.values_list("status", flat=True)) == {SyncStatus.FAILED}
    state = SyncState.objects.first()
    assert state.last_error_code == 503
    assert state.last_failed_record["record"] is not None


@pytest.mark.parametrize(
    ("count", "counted"),
    [
        (1, ["Backfill: 1 row,", "1 profile failed: the hub", "(1 record answered 401/403)"]),
        (2, ["Backfill: 2 rows,", "2 profiles failed: the hub", "(2 records answered 401/403)"]),
    ],
)
def test_a_wrong_secret_is_named_as_the_cause_and_no_futile_rerun_is_advised(
    hub, settings, count: int, counted: list[str]
):
    users(count)
    settings.SUPRSEND = {**settings.SUPRSEND, "WORKSPACE_SECRET": "ws_wrong_secret_value"}
    stdout, stderr = StringIO(), StringIO()

    with pytest.raises(SystemExit) as exit_info:
        call_command("suprsend_backfill", "testapp.User", stdout=stdout, stderr=stderr)

    assert exit_info.value.code == 2
    err = stderr.getvalue()
    for text in counted:
        assert text in stdout.getvalue() + err
    assert "the hub refused the credentials" in err
    assert "SUPRSEND['WORKSPACE_SECRET']" in err
    assert "--only-failed" not in err
    assert "ws_wrong_secret_value" not in err
    assert set(SyncState.objects.values_list("last_error_code", flat=True)) == {401}
    # The admin shows it as the workers' outage, until a request is accepted.
    assert outage.current() is not None
    assert "ws_wrong_secret_value" not in outage.current().error
    settings.SUPRSEND = {**settings.SUPRSEND, "WORKSPACE_SECRET": WORKSPACE_SECRET}
    call_command("suprsend_backfill", "testapp.User", "--restart", stdout=StringIO())
    assert outage.current() is None


def test_exit_status_one_on_partial_failure(hub):
    ok, bad = users(2)
    hub.reject_records(lambda record: record["distinct_id"] == str(bad.pk), status=400)

    with pytest.raises(SystemExit) as exit_info:
        backfill_cmd()

    assert exit_info.value.code == 1
    assert SyncState.objects.get(distinct_id=str(ok.pk)).status == SyncStatus.SYNCED
    state = SyncState.objects.get(distinct_id=str(bad.pk))
    assert state.status == SyncStatus.FAILED
    assert state.last_error_code == 400


def test_via_workers_queues_outbox_entries(hub):
    rows = users(3)

    out = backfill_cmd("--via-workers")

    assert hub.requests == []
    entries = list(OutboxEntry.objects.order_by("id"))
    assert [e.distinct_id for e in entries] == [str(u.pk) for u in rows]
    assert entries[0].operations == User.objects.get(pk=rows[0].pk).build_suprsend_profile()[0]
    assert "3 queued" in out


def test_channels_only_and_properties_only(hub):
    user = users(1)[0]

    backfill_cmd("--channels-only")
    operations = records_of(hub)[str(user.pk)]["$user_operations"]
    assert operations
    assert all(set(op) == {"$append"} for op in operations)
    assert hub.properties(str(user.pk)) == {}

    hub.reset()
    backfill_cmd("--properties-only")
    operations = records_of(hub)[str(user.pk)]["$user_operations"]
    assert operations
    assert all(set(op) == {"$set"} for op in operations)
    assert hub.properties(str(user.pk))["plan"] == "pro"
    assert not hub.profile(str(user.pk)).get("$email")


def test_since_filter_and_ids_select_rows(hub):
    old, new, free = users(3)
    User.objects.filter(pk=old.pk).update(date_joined=timezone.now() - datetime.timedelta(days=30))
    User.objects.filter(pk=free.pk).update(plan="free")
    since = (timezone.now() - datetime.timedelta(days=1)).date().isoformat()

    backfill_cmd("--since", since)
    assert set(hub.profiles()) == {str(new.pk), str(free.pk)}

    hub.reset()
    backfill_cmd("--filter", "plan=free")
    assert set(hub.profiles()) == {str(free.pk)}

    hub.reset()
    backfill_cmd("--ids", f"{old.pk},{new.pk}")
    assert set(hub.profiles()) == {str(old.pk), str(new.pk)}


def test_default_models_and_usage_errors(hub):
    assert backfill.resolve_models([]) == [User, Customer, Staff]
    for args in (
        ["testapp.Nope"],
        ["testapp.Device"],
        ["testapp.User", "--filter", "nofield=1"],
        ["testapp.User", "--since", "yesterday"],
        ["testapp.Customer", "--since", "2024-01-01"],
    ):
        with pytest.raises(CommandError) as error:
            call_command("suprsend_backfill", *args, stdout=StringIO())
        assert error.value.returncode == 3
    with pytest.raises(CommandError, match=r"testapp\.Nope"):
        call_command("suprsend_backfill", "testapp.Nope", stdout=StringIO())
    assert hub.requests == []


def test_records_are_what_a_first_save_queues(hub):
    rows = [make_user(email=f"first{i}@example.com") for i in range(3)]  # not paused: queued
    queued = {e.distinct_id: e.operations for e in OutboxEntry.objects.all()}

    backfill_cmd("--batch-size", "2")

    records = records_of(hub)
    assert set(queued) == {str(u.pk) for u in rows}
    for distinct_id, operations in queued.items():
        assert records[distinct_id]["$user_operations"] == operations


def test_a_value_too_big_for_any_record_is_refused_alone_and_a_dry_run_reports_it(hub, monkeypatch):
    ok, big = users(2)
    real = User.get_full_name
    monkeypatch.setattr(
        User, "get_full_name", lambda u: "x" * 11_000 if u.pk == big.pk else real(u)
    )

    with pytest.raises(SystemExit) as exit_info:
        backfill_cmd()

    assert exit_info.value.code == 1
    assert set(hub.profiles()) == {str(ok.pk), str(big.pk)}  # the rest of big went
    assert hub.channel_values(str(big.pk), "$email") == [big.email]
    assert "name" not in hub.properties(str(big.pk))
    state = SyncState.objects.get(distinct_id=str(big.pk))
    assert state.status == SyncStatus.FAILED
    assert state.last_error.startswith("name: 'xxx")
    assert "is 11,002 bytes as JSON, too big for any record" in state.last_error

    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("suprsend_backfill", "testapp.User", "--dry-run", stdout=out)
    assert "2 rows, 1 valid, 1 invalid" in out.getvalue()
    assert f"pk={big.pk}" in out.getvalue()


def test_rows_read_by_the_backfill_carry_no_change_snapshot(hub):
    users(2)
    loaded = []
    original = rows_module._prepare

    def spy(rows, *args):
        loaded.extend(rows)
        return original(rows, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rows_module, "_prepare", spy)
        backfill_cmd()

    assert len(loaded) == 2
    assert all(SNAPSHOT_KEY not in row.__dict__ for row in loaded)
    assert SNAPSHOT_KEY in User.objects.get(pk=loaded[0].pk).__dict__  # elsewhere: as ever


# -- the pipeline: batch N+1 is read and built while N is sent and N-1 recorded. Outside a
# test transaction (transaction=True), SyncStates are written from a thread of their own
# on PostgreSQL and MariaDB; on SQLite inline. Either way the checkpoint must only move
# past batches whose send and recording completed, in order.


@pytest.mark.django_db(transaction=True)
def test_a_send_that_raises_stops_the_run_before_the_next_batch(hub, monkeypatch):
    rows = users(9)
    original = SuprsendClient.send_records
    calls = []

    def broken_second(self, records, **options):
        calls.append([r["distinct_id"] for r in records])
        if len(calls) == 2:
            raise RuntimeError("connection pool exploded")
        return original(self, records, **options)

    monkeypatch.setattr(SuprsendClient, "send_records", broken_second)
    with pytest.raises(RuntimeError, match="exploded"):
        backfill_cmd("--batch-size", "3")
    monkeypatch.setattr(SuprsendClient, "send_records", original)

    assert len(calls) == 2  # the third batch was built, never sent
    assert set(hub.profiles()) == {str(u.pk) for u in rows[:3]}
    checkpoint = BackfillCheckpoint.objects.get()
    assert (checkpoint.last_pk, checkpoint.sent, checkpoint.finished_at) == (
        str(rows[2].pk),
        3,
        None,
    )
    assert set(SyncState.objects.values_list("distinct_id", flat=True)) == {
        str(u.pk) for u in rows[:3]
    }

    backfill_cmd("--batch-size", "3")

    assert set(hub.profiles()) == {str(u.pk) for u in rows}
    assert len(hub.applied_insert_ids) == 9
    assert all(n == 1 for n in hub.insert_id_counts.values())
    assert BackfillCheckpoint.objects.get().finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_recording_that_raises_stops_the_run_and_resends_under_the_same_ids(hub, monkeypatch):
    rows = users(9)
    original = pipeline.record_synced
    calls = []

    def broken_second(profiles, *, using):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        original(profiles, using=using)

    monkeypatch.setattr(pipeline, "record_synced", broken_second)
    with pytest.raises(RuntimeError, match="went away"):
        backfill_cmd("--batch-size", "3")
    monkeypatch.setattr(pipeline, "record_synced", original)

    checkpoint = BackfillCheckpoint.objects.get()
    assert (checkpoint.last_pk, checkpoint.sent) == (str(rows[2].pk), 3)
    assert SyncState.objects.count() == 3
    seen = len(hub.requests)

    backfill_cmd("--batch-size", "3")

    again = [rec for r in hub.requests[seen:] if accepted(r) for rec in r.json()]
    assert {rec["distinct_id"] for rec in again} == {str(u.pk) for u in rows[3:]}
    assert len(hub.applied_insert_ids) == 9  # batch 2 (and 3, if it went) applied once
    assert SyncState.objects.filter(status=SyncStatus.SYNCED).count() == 9


@pytest.mark.django_db(transaction=True)
def test_the_recording_thread_closes_its_database_connection(hub):
    users(5)
    opened = []

    def remember(sender, connection, **kwargs):
        opened.append((threading.current_thread(), connection))

    connection_created.connect(remember)
    try:
        backfill_cmd("--batch-size", "2")
    finally:
        connection_created.disconnect(remember)

    others = [(t, c) for t, c in opened if t is not threading.main_thread()]
    if connection.vendor != "sqlite":  # SQLite: SyncStates are written inline
        assert [t.name for t, _ in others] == ["suprsend-backfill-record_0"]
    assert all(c.connection is None for _, c in others)
    assert all(not t.is_alive() for t, _ in others)
    assert SyncState.objects.filter(status=SyncStatus.SYNCED).count() == 5
