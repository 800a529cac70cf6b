"""The flush pipeline in-process against the hub emulator: claim, coalesce, send, record."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from django_suprsend.delivery import outbox
from django_suprsend.delivery.enqueue import enqueue
from django_suprsend.delivery.flush import flush, flush_once
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.signals import profile_sync_failed, profile_synced
from django_suprsend.wire.bulk import NO_ANSWER, REFUSED_LOCALLY
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.operations import ProfileEdit
from tests.local import closed_port_url

pytestmark = pytest.mark.django_db

Status = OutboxEntry.Status


@pytest.fixture(autouse=True)
def retry_settings(settings, hub):
    settings.SUPRSEND = {**settings.SUPRSEND, "RETRY_BACKOFF": 30.0, "MAX_ATTEMPTS": 3}


def queue(distinct_id: str, edit: ProfileEdit | None = None, **kwargs) -> OutboxEntry:
    operations = (
        edit or ProfileEdit(distinct_id).add_email(f"{distinct_id}@example.com")
    ).operations
    return enqueue(distinct_id, operations, **kwargs)


def state(distinct_id: str) -> SyncState:
    return SyncState.objects.get(distinct_id=distinct_id)


def test_entries_of_one_profile_are_merged_in_commit_order(hub):
    queue("u1", ProfileEdit("u1").add_email("old@example.com").set("plan", "free"))
    queue("u1", ProfileEdit("u1").remove_email("old@example.com").add_email("new@example.com"))
    queue("u1", ProfileEdit("u1").set("plan", "pro"))

    result = flush()

    assert (result.claimed, result.synced) == (3, 1)
    assert hub.channel_values("u1", "$email") == ["new@example.com"]
    assert hub.properties("u1") == {"plan": "pro"}
    [request] = [r for r in hub.requests if r.path == "/event/"]
    assert request.record_count == 1  # three entries, one record
    assert set(OutboxEntry.objects.values_list("status", flat=True)) == {Status.SENT}
    assert state("u1").status == SyncStatus.SYNCED
    assert state("u1").last_synced_at is not None


def test_profiles_are_independent_and_batched(hub):
    for i in range(50):
        queue(f"p{i}")
    result = flush()
    assert result.synced == 50
    assert sum(r.record_count for r in hub.requests) == 50
    assert len(hub.requests) == 1
    assert SyncState.objects.filter(status=SyncStatus.SYNCED).count() == 50


def test_one_invalid_email_among_many_fails_only_that_profile(hub):
    for i in range(200):
        queue(f"ok{i}")
    bad = {"field": "$email", "value": "'not-an-email'", "reason": "is not a valid email address"}
    queue("bad", ProfileEdit("bad").add_sms("+15555550123"), errors=[bad])

    flush()

    failed = state("bad")
    assert failed.status == SyncStatus.FAILED
    assert "$email" in failed.last_error
    assert "not-an-email" in failed.last_error
    assert failed.last_failed_record["refused"] == [bad]
    # the invalid user's other channels still sync
    assert hub.channel_values("bad", "$sms") == ["+15555550123"]
    assert SyncState.objects.filter(status=SyncStatus.SYNCED).count() == 200


def test_entry_with_only_refused_values_fails_without_a_request(hub):
    bad = {"field": "$sms", "value": "'12'", "reason": "is not a valid phone number"}
    enqueue("only-bad", [], errors=[bad])
    result = flush()
    assert result.failed == 1
    assert hub.requests == []
    assert OutboxEntry.objects.get().status == Status.FAILED
    assert "$sms: '12'" in state("only-bad").last_error


def test_local_refusals_and_missing_answers_are_not_labelled_as_hub_500s(hub, settings):
    """A value or record refused before sending, and a request that got no answer, keep codes
    of their own (never the SDK's 500), so the admin's error-code filter tells them apart."""
    bad = {"field": "$sms", "value": "'12'", "reason": "is not a valid phone number"}
    enqueue("refused-value", [], errors=[bad])
    queue("mixed", ProfileEdit("mixed").add_email("mixed@example.com"), errors=[bad])
    queue("too-big", ProfileEdit("too-big").set("blob", "x" * 20_000))
    hub.reject_records(lambda record: record["distinct_id"] == "hub-400", status=400)
    queue("hub-400")
    flush()
    codes = dict(SyncState.objects.values_list("distinct_id", "last_error_code"))
    assert codes["refused-value"] == REFUSED_LOCALLY
    assert codes["mixed"] == REFUSED_LOCALLY
    assert codes["too-big"] == REFUSED_LOCALLY
    assert codes["hub-400"] == 400
    assert OutboxEntry.objects.get(distinct_id="too-big").last_error_code == REFUSED_LOCALLY

    settings.SUPRSEND = {**settings.SUPRSEND, "BASE_URL": closed_port_url()}
    queue("no-answer")
    flush()
    assert state("no-answer").last_error_code == NO_ANSWER
    assert state("no-answer").status == SyncStatus.RETRYING


def test_hub_rejection_is_permanent_and_isolated(hub):
    hub.reject_records(lambda record: record["distinct_id"] == "poison")
    for name in ("a", "poison", "b"):
        queue(name)

    result = flush()

    assert (result.synced, result.failed) == (2, 1)
    poisoned = state("poison")
    assert poisoned.status == SyncStatus.FAILED
    assert poisoned.last_error_code == 400
    assert poisoned.last_failed_record["record"]["distinct_id"] == "poison"
    assert OutboxEntry.objects.get(distinct_id="poison").status == Status.FAILED
    assert hub.profile("a") is not None
    assert hub.profile("b") is not None


def test_transient_failure_goes_back_to_pending_and_reuses_its_insert_id(hub):
    queue("r1")
    hub.fail_next(1, status=503)

    result = flush()

    assert result.retrying == 1
    entry = OutboxEntry.objects.get()
    assert entry.status == Status.PENDING
    assert entry.attempts == 1
    assert entry.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert state("r1").status == SyncStatus.RETRYING
    first_insert_id = outbox.record_insert_id(entry.insert_id, "r1")

    # Not due yet: nothing is sent.
    assert flush().claimed == 0
    OutboxEntry.objects.update(next_attempt_at=timezone.now())
    assert flush().synced == 1
    assert list(hub.insert_id_counts) == [first_insert_id]
    assert state("r1").status == SyncStatus.SYNCED
    assert state("r1").attempts == 0


def test_transient_failures_stop_after_max_attempts(hub):
    queue("r2")
    for _ in range(3):
        hub.fail_next(1, status=500)
        OutboxEntry.objects.update(next_attempt_at=timezone.now())
        flush()
    entry = OutboxEntry.objects.get()
    assert (entry.status, entry.attempts) == (Status.FAILED, 3)
    assert state("r2").status == SyncStatus.FAILED


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "<html>oops</html>"), (202, "not json"), (200, "[1, 2]"), (204, "")],
)
def test_a_2xx_that_is_not_the_hubs_answer_is_retried_then_reported(hub, status, body):
    """A proxy's or captive portal's page with a 2xx status applied nothing: the records are
    not marked synced, go again under the same $insert_id, and the error shows the body."""
    queue("h1")
    hub.fail_next(1, status=status, body=body)
    assert flush().retrying == 1
    entry = OutboxEntry.objects.get()
    assert entry.status == Status.PENDING
    assert state("h1").status == SyncStatus.RETRYING
    assert f"HTTP {status} whose body is not the hub's JSON answer" in state("h1").last_error
    assert repr(body[:200]) in state("h1").last_error
    assert hub.profile("h1") is None

    OutboxEntry.objects.update(next_attempt_at=timezone.now())
    assert flush().synced == 1
    assert list(hub.insert_id_counts) == [outbox.record_insert_id(entry.insert_id, "h1")]
    assert hub.profile("h1") is not None

    queue("h2")
    for _ in range(3):
        hub.fail_next(1, status=status, body=body)
        OutboxEntry.objects.filter(status=Status.PENDING).update(next_attempt_at=timezone.now())
        flush()
    assert state("h2").status == SyncStatus.FAILED
    assert "not the hub's JSON answer" in state("h2").last_error


def _expire_leases() -> None:
    OutboxEntry.objects.exclude(claimed_by="").update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.parametrize("late_answer", [503, 400, 202])
def test_a_late_worker_never_overwrites_the_outcome_of_the_worker_that_took_over(hub, late_answer):
    """Worker A's lease runs out while it is still sending; worker B claims and delivers the
    entries; A's answer then comes back. Whatever it is, A writes nothing: neither the
    outbox rows nor the sync states."""
    queue("late-1")
    queue("late-2")
    client = SuprsendClient("ws_test_key", "ws_test_secret", base_url=hub.url)  # worker A's
    send = client.send_records

    def slow_send(records, **options):
        _expire_leases()  # A is still waiting for the hub; B takes over
        assert flush().synced == 2
        if late_answer != 202:
            hub.fail_next(1, status=late_answer)
        return send(records, **options)

    client.send_records = slow_send
    late = flush_once(client=client)
    client.close()

    assert (late.synced, late.retrying, late.failed) == (0, 0, 0)
    assert set(OutboxEntry.objects.values_list("status", "claimed_by")) == {(Status.SENT, "")}
    assert {s.status for s in SyncState.objects.all()} == {SyncStatus.SYNCED}
    assert OutboxEntry.objects.filter(attempts=1).count() == 2


def test_an_outcome_write_checks_the_lease_it_was_claimed_under(hub):
    queue("lease-1")
    claim_a = outbox.claim(10)
    _expire_leases()
    claim_b = outbox.claim(10)
    assert [e.id for e in claim_b.entries] == [e.id for e in claim_a.entries]

    assert not outbox.mark_failed(claim_a, claim_a.entries, error="late", code=503, retryable=True)
    outbox.mark_sent(claim_a, claim_a.entries)
    entry = OutboxEntry.objects.get()
    assert (entry.status, entry.claimed_by, entry.attempts) == (Status.PENDING, claim_b.token, 0)
    assert claim_a.lost == {entry.id}

    outbox.mark_sent(claim_b, claim_b.entries)
    assert OutboxEntry.objects.get().status == Status.SENT
    assert not claim_b.lost


def test_delete_supersedes_earlier_edits_and_later_ones_wait(hub):
    queue("d1")
    flush()
    assert hub.profile("d1") is not None
    queue("d1", ProfileEdit("d1").set("x", 1))
    enqueue("d1", [], kind=OutboxEntry.Kind.DELETE)
    later = queue("d1", ProfileEdit("d1").set("y", 2))

    result = flush_once()

    assert result.released == 1
    assert hub.profile("d1") is None
    assert OutboxEntry.objects.get(id=later.id).status == Status.PENDING
    flush()
    assert hub.properties("d1") == {"y": 2}


def test_entries_behind_another_workers_claim_are_held_back(hub):
    first = queue("o1", ProfileEdit("o1").set("step", 1))
    second = queue("o1", ProfileEdit("o1").set("step", 2))
    other = queue("o2")
    # Another worker holds the first entry of o1.
    OutboxEntry.objects.filter(id=first.id).update(
        claimed_by="other", claimed_until=timezone.now() + timedelta(minutes=1)
    )

    result = flush_once()

    assert result.synced == 1  # o2 only
    assert OutboxEntry.objects.get(id=second.id).status == Status.PENDING
    assert OutboxEntry.objects.get(id=other.id).status == Status.SENT
    assert hub.profile("o1") is None


def test_expired_lease_is_reclaimed(hub):
    entry = queue("l1")
    OutboxEntry.objects.filter(id=entry.id).update(
        claimed_by="dead-worker", claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert flush().synced == 1
    assert hub.profile("l1") is not None


def test_merged_record_too_big_is_split_over_flushes(hub):
    blob = "x" * 6000
    queue("big", ProfileEdit("big").set("a", blob))
    queue("big", ProfileEdit("big").set("b", blob))
    result = flush()
    assert result.synced == 2  # two flush rounds, one record each
    assert set(hub.properties("big")) == {"a", "b"}


def test_signals_fire_after_each_outcome(hub):
    seen = []

    def on_synced(sender, distinct_id, sync_state, **kwargs):
        seen.append(("synced", distinct_id, sync_state.status))

    def on_failed(sender, distinct_id, error, code, retrying, **kwargs):
        seen.append(("failed", distinct_id, code, retrying))

    profile_synced.connect(on_synced)
    profile_sync_failed.connect(on_failed)
    try:
        hub.reject_records(lambda record: record["distinct_id"] == "s2")
        queue("s1")
        queue("s2")
        flush()
    finally:
        profile_synced.disconnect(on_synced)
        profile_sync_failed.disconnect(on_failed)
    assert sorted(seen) == [("failed", "s2", 400, False), ("synced", "s1", "synced")]


def test_suprsend_flush_command(hub, capsys):
    queue("c1")
    call_command("suprsend_flush")
    assert "1 entry claimed: 1 profile synced, 0 retrying, 0 failed, 0 entries held back" in (
        capsys.readouterr().out
    )
    assert hub.profile("c1") is not None


@pytest.mark.parametrize(
    ("count", "message"), [(1, "1 profile failed;"), (2, "2 profiles failed;")]
)
def test_suprsend_flush_command_counts_the_failed_profiles(hub, capsys, count: int, message: str):
    for n in range(count):
        queue(f"f{n}")
    hub.reject_records(lambda record: True)
    call_command("suprsend_flush")
    err = capsys.readouterr().err
    assert f"{message} see the SuprSend sync states in the admin." in err


def test_rolled_back_transaction_queues_nothing():
    def queue_then_fail() -> None:
        with transaction.atomic():
            queue("gone")
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        queue_then_fail()
    assert not OutboxEntry.objects.exists()


def test_a_retried_record_keeps_its_entries_and_insert_id_when_more_were_queued(hub):
    queue("t1", ProfileEdit("t1").append("history", 1))
    hub.fail_next(1, status=503)
    flush()
    tried = OutboxEntry.objects.get()
    queue("t1", ProfileEdit("t1").append("history", 2))  # queued while the first waits
    OutboxEntry.objects.update(next_attempt_at=timezone.now())

    first = flush_once()
    second = flush_once()

    assert (first.synced, first.released, second.synced) == (1, 1, 1)
    assert outbox.record_insert_id(tried.insert_id, "t1") in hub.insert_id_counts
    assert hub.properties("t1")["history"] == [1, 2]
    assert set(hub.insert_id_counts.values()) == {1}


def test_the_hubs_retry_after_delays_the_outbox_retry(hub):
    queue("ra")
    hub.fail_next(1, status=429, retry_after=120)
    assert flush().retrying == 1
    entry = OutboxEntry.objects.get()
    assert entry.next_attempt_at >= timezone.now() + timedelta(seconds=115)


def test_a_record_sent_by_a_killed_worker_is_resent_with_its_insert_id(hub, monkeypatch):
    queue("k1", ProfileEdit("k1").append("history", 1))

    def killed(*args, **kwargs):
        raise SystemExit("worker killed after the hub applied the record")

    monkeypatch.setattr(outbox, "mark_sent", killed)
    with pytest.raises(SystemExit):
        flush_once()
    monkeypatch.undo()
    queue("k1", ProfileEdit("k1").append("history", 2))  # queued before the lease expires
    OutboxEntry.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))

    flush()

    assert hub.properties("k1")["history"] == [1, 2]
    assert sorted(hub.insert_id_counts.values()) == [1, 2]  # the first record, twice, once applied
