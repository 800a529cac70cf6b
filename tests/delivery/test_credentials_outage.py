"""The hub refusing the credentials (401/403) is an outage, not a verdict on the records:
entries stay pending, one ERROR per period, the admin shows it until a request succeeds."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_suprsend.delivery import outage
from django_suprsend.delivery.enqueue import enqueue
from django_suprsend.delivery.flush import flush, flush_once
from django_suprsend.models import CredentialsOutage, OutboxEntry, SyncState, SyncStatus
from django_suprsend.testing.pytest_plugin import WORKSPACE_SECRET
from django_suprsend.wire.operations import ProfileEdit
from tests.testapp.factories import make_user

pytestmark = pytest.mark.django_db

Status = OutboxEntry.Status
PROFILES = [f"p{i}" for i in range(20)]
WRONG_SECRET = "ws_rotated_secret_not_deployed"
STATES = reverse("admin:django_suprsend_syncstate_changelist")


@pytest.fixture(autouse=True)
def retry_settings(settings, hub):
    settings.SUPRSEND = {**settings.SUPRSEND, "RETRY_BACKOFF": 30.0, "MAX_ATTEMPTS": 3}


def queue(*distinct_ids: str) -> None:
    for distinct_id in distinct_ids:
        enqueue(distinct_id, ProfileEdit(distinct_id).set("plan", "pro").operations)


def make_due() -> None:
    """Every pending entry due now, as if its wait had passed."""
    OutboxEntry.objects.filter(status=Status.PENDING).update(next_attempt_at=timezone.now())


def suprsend_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("django_suprsend") and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("status", [401, 403])
def test_one_refusal_keeps_every_record_queued_not_failed(hub, status):
    queue(*PROFILES)
    hub.fail_next(1, status)

    result = flush()

    assert (result.retrying, result.refused_credentials, result.failed) == (20, 20, 0)
    assert "20 retrying (20 because the hub refused the credentials)" in str(result)
    assert [r.status for r in hub.requests] == [status]  # no second batch tried after it
    entries = OutboxEntry.objects.all()
    assert {e.status for e in entries} == {Status.PENDING}
    assert {e.attempts for e in entries} == {0}  # not counted against the records
    assert {e.last_error_code for e in entries} == {status}
    assert min(e.next_attempt_at for e in entries) > timezone.now() + timedelta(seconds=25)
    states = SyncState.objects.all()
    assert {s.status for s in states} == {SyncStatus.RETRYING}
    assert {s.last_error_code for s in states} == {status}
    assert "refused the credentials" in states[0].last_error


def test_the_flush_tries_no_further_batch_after_a_refusal(hub, settings):
    settings.SUPRSEND = {**settings.SUPRSEND, "BATCH_SIZE": 5}
    queue(*PROFILES)
    hub.fail_next(1, 401)

    result = flush()

    assert (result.claimed, result.refused_credentials) == (5, 5)
    assert len(hub.requests) == 1
    assert OutboxEntry.objects.filter(last_error_code=None).count() == 15  # never tried


def test_a_long_outage_never_fails_the_records_and_they_go_once_it_ends(hub):
    queue(*PROFILES)
    hub.fail_next(5, 401)  # more tries than MAX_ATTEMPTS (3)
    for _ in range(5):
        make_due()
        assert flush().refused_credentials == 20

    assert not OutboxEntry.objects.exclude(status=Status.PENDING).exists()
    make_due()
    result = flush()

    assert result.synced == 20
    assert set(OutboxEntry.objects.values_list("status", flat=True)) == {Status.SENT}
    assert set(SyncState.objects.values_list("status", flat=True)) == {SyncStatus.SYNCED}
    assert all(hub.properties(p) == {"plan": "pro"} for p in PROFILES)


def test_the_outage_is_kept_until_a_request_succeeds_and_then_the_waiting_entries_go(hub):
    queue("a", "b")
    hub.fail_next(2, 401)
    flush()
    make_due()
    flush()

    current = outage.current()
    assert current is not None
    assert (current.status_code, current.refusals) == (401, 2)
    assert current.first_seen_at < current.last_seen_at
    assert "injected fault" in current.error

    # A new save goes at once; the entries refused before wait (RETRY_BACKOFF)...
    queue("c")
    result = flush()

    # ...until the hub accepted "c": then they are due, and the same flush sends them.
    assert outage.current() is None
    assert result.synced == 3
    assert set(OutboxEntry.objects.values_list("status", flat=True)) == {Status.SENT}


def test_the_wait_grows_with_the_outage_up_to_a_cap(settings):
    settings.SUPRSEND = {**settings.SUPRSEND, "RETRY_BACKOFF": 10.0}
    now = timezone.now()
    assert outage.retry_wait(now, now) == 10.0
    assert outage.retry_wait(now - timedelta(seconds=45), now) == 45.0
    assert outage.retry_wait(now - timedelta(days=1), now) == outage.RETRY_MAX
    settings.SUPRSEND = {**settings.SUPRSEND, "RETRY_BACKOFF_MAX": 2.0}
    assert outage.retry_wait(now - timedelta(seconds=45), now) == 2.0


def test_a_wrong_secret_logs_one_error_per_period_that_says_what_to_check(hub, settings, caplog):
    settings.SUPRSEND = {**settings.SUPRSEND, "WORKSPACE_SECRET": WRONG_SECRET}
    caplog.set_level(logging.DEBUG, logger="django_suprsend")
    for round_ in range(3):
        queue(*(f"{p}-{round_}" for p in PROFILES))
        make_due()
        flush()

    [error] = suprsend_errors(caplog)  # three flushes of 20 profiles: one line
    message = error.getMessage()
    assert error.levelno == logging.ERROR
    assert "refused the credentials (HTTP 401)" in message
    assert "signature does not match" in message  # the hub's answer
    assert "SUPRSEND['WORKSPACE_SECRET']" in message
    assert "clock" in message
    assert "none is marked failed" in message
    assert WRONG_SECRET not in caplog.text

    # Once the period is over, one more.
    CredentialsOutage.objects.update(logged_at=timezone.now() - timedelta(seconds=601))
    caplog.clear()
    make_due()
    flush()
    assert [r.levelno for r in suprsend_errors(caplog)] == [logging.ERROR]


def test_the_log_period_is_a_setting(hub, settings, caplog):
    settings.SUPRSEND = {**settings.SUPRSEND, "CREDENTIALS_LOG_INTERVAL": 0.0}
    hub.fail_next(2, 403)
    queue("a")
    with caplog.at_level(logging.WARNING, logger="django_suprsend"):
        flush()
        make_due()
        flush()
    assert [r.levelno for r in suprsend_errors(caplog)] == [logging.ERROR, logging.ERROR]


def test_the_end_of_the_outage_is_logged_once(hub, caplog):
    queue("a")
    hub.fail_next(1, 401)
    flush()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="django_suprsend"):
        queue("b")
        assert flush().synced == 2
        queue("c")
        flush()
    [ended] = suprsend_errors(caplog)
    assert ended.levelno == logging.WARNING
    message = ended.getMessage()
    assert "the hub accepts the credentials again, after refusing them (HTTP 401)" in message
    assert "1 queued entries that waited for it are due now" in message


def test_a_refused_delete_waits_too(hub):
    user = make_user(email="gone@example.com")
    flush()
    hub.fail_next(1, 401)
    user.delete()

    assert flush().refused_credentials == 1

    entry = OutboxEntry.objects.get(kind=OutboxEntry.Kind.DELETE)
    assert (entry.status, entry.attempts, entry.last_error_code) == (Status.PENDING, 0, 401)
    assert SyncState.objects.get().status == SyncStatus.RETRYING
    assert outage.current() is not None
    make_due()
    assert flush().synced == 1
    assert hub.profile(str(user.pk)) is None
    assert outage.current() is None


def test_a_refusal_after_an_accepted_request_keeps_the_outage(hub, settings):
    """One flush, two requests: the delete is accepted, then the edits refused."""
    settings.SUPRSEND = {**settings.SUPRSEND, "BATCH_SIZE": 10}
    user = make_user()
    flush()
    user.delete()
    queue("a", "z")
    seen = len(hub.requests)
    hub.reject_records(lambda record: True, status=401, error="refused")  # event/ only

    result = flush_once()

    assert [r.status for r in hub.requests[seen:]] == [202, 401]
    assert (result.synced, result.refused_credentials) == (1, 2)
    assert outage.current() is not None


def test_other_failures_keep_their_own_handling(hub):
    queue("a")
    hub.fail_next(1, 400)
    flush()
    assert OutboxEntry.objects.get().status == Status.FAILED
    assert outage.current() is None


def test_the_admin_summary_shows_the_outage_until_a_request_succeeds(
    hub, settings, admin_client: Client
):
    settings.SUPRSEND = {**settings.SUPRSEND, "WORKSPACE_SECRET": WRONG_SECRET}
    queue("a", "b")
    flush()

    page = admin_client.get(STATES).content.decode()

    assert 'id="suprsend-credentials-outage"' in page
    assert "The SuprSend hub refuses the credentials (HTTP 401): 1 request refused" in page
    assert "none is marked failed" in page
    assert "SUPRSEND[&#x27;WORKSPACE_SECRET&#x27;]" in page
    assert "signature does not match" in page
    assert WRONG_SECRET not in page

    settings.SUPRSEND = {**settings.SUPRSEND, "WORKSPACE_SECRET": WORKSPACE_SECRET}
    make_due()
    flush()
    assert 'id="suprsend-credentials-outage"' not in admin_client.get(STATES).content.decode()
