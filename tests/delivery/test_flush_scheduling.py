"""When commits send flush tasks: once per transaction, debounced, and never breaking a save."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction

from django_suprsend.delivery import outbox, schedule, tasks
from django_suprsend.delivery.enqueue import enqueue
from django_suprsend.wire.operations import ProfileEdit

# Real commits: on_commit callbacks run as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def published(monkeypatch):
    """The flush tasks sent to the broker, as their apply_async options."""
    calls: list[dict] = []
    monkeypatch.setattr(
        tasks.flush_outbox, "apply_async", lambda kwargs, **options: calls.append(options)
    )
    return calls


def commit(*distinct_ids: str) -> None:
    with transaction.atomic():
        for distinct_id in distinct_ids:
            enqueue(distinct_id, ProfileEdit(distinct_id).set("n", 1).operations)


def test_one_task_per_transaction_however_many_entries(published):
    commit("a", "b", "c")
    assert len(published) == 1
    assert "countdown" not in published[0]


def test_a_burst_of_commits_shares_a_trailing_task(settings, published):
    settings.SUPRSEND = {**settings.SUPRSEND, "FLUSH_DEBOUNCE": 30.0}
    for name in "abcdef":
        commit(name)
    assert len(published) == 2  # the first at once, the rest at the end of the window
    assert "countdown" not in published[0]
    assert 0 < published[1]["countdown"] <= 30.0


def test_no_debounce_sends_a_task_per_commit(settings, published):
    settings.SUPRSEND = {**settings.SUPRSEND, "FLUSH_DEBOUNCE": 0.0}
    for name in "abc":
        commit(name)
    assert len(published) == 3


def test_a_rolled_back_transaction_sends_no_task(published):
    def enqueue_then_fail() -> None:
        with transaction.atomic():
            enqueue("gone", ProfileEdit("gone").set("n", 1).operations)
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert published == []


def test_a_broker_that_is_down_pauses_publishing_but_never_the_save(monkeypatch, caplog):
    attempts = []

    def refuse(kwargs, **options):
        attempts.append(options)
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.flush_outbox, "apply_async", refuse)
    with caplog.at_level(logging.WARNING, logger="django_suprsend.delivery.schedule"):
        commit("a")
        commit("b")

    assert len(attempts) == 1  # the second commit did not wait on the broker again
    [warning] = [r for r in caplog.records if r.name == schedule.logger.name]
    assert "ConnectionRefusedError" in warning.getMessage()
    assert "sweep" in warning.getMessage()
    assert outbox.OutboxEntry.objects.count() == 2
