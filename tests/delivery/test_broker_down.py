"""A broker that is down holds no save for more than PUBLISH_TIMEOUT: a closed port (refused)
and a port that accepts but never answers (hung), on Redis and RabbitMQ URLs; the change stays
in the outbox, one warning says so, and the sweep sends it once a broker takes tasks again."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import SimpleNamespace

import pytest
from celery import Celery

from django_suprsend.delivery import publish, schedule, tasks
from django_suprsend.models import OutboxEntry
from tests.testapp.factories import make_user

# Real commits: on_commit callbacks publish as in production.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# The default PUBLISH_TIMEOUT is 0.5 s: a save that publishes to a broker that is down takes
# at most that and the save itself. The margin is for a loaded two-core machine; Celery's
# own path took 6 s (refused) and 4 s or for ever (hung).
DEADLINE = 1.5

BROKERS = {
    "redis": "redis://127.0.0.1:{port}/15",
    "amqp": "amqp://guest:guest@127.0.0.1:{port}//",
}


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def hung_port() -> Iterator[int]:
    """A loopback port whose backlog completes connections that nothing ever reads or answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


FAILURES: dict[str, Callable[[], AbstractContextManager[int]]] = {
    "refused": refused_port,
    "hung": hung_port,
}


@contextmanager
def current_app_on(url: str, **conf: object) -> Iterator[Celery]:
    """Make a Celery app that sends its tasks to ``url`` the current one."""
    from celery import current_app

    previous = current_app._get_current_object()
    app = Celery("broker-down", set_as_current=False)
    # broker_write_url: a CELERY_BROKER_URL in the environment would win over broker_url.
    app.conf.update(broker_write_url=url, **conf)
    app.set_current()
    try:
        yield app
    finally:
        previous.set_current()
        publish.pools.reset()
        app.close()


def timed_save() -> float:
    """Seconds a user's save took, the publishing of its flush task after commit included."""
    start = time.monotonic()
    make_user()
    return time.monotonic() - start


def pending() -> list[str]:
    return list(
        OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).values_list(
            "distinct_id", flat=True
        )
    )


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("transport", BROKERS)
def test_a_save_waits_at_most_publish_timeout_on_a_broker_that_is_down(transport, failure, caplog):
    with (
        FAILURES[failure]() as port,
        current_app_on(BROKERS[transport].format(port=port)),
        caplog.at_level(logging.WARNING, logger=schedule.logger.name),
    ):
        elapsed = timed_save()

    assert elapsed < DEADLINE, f"the save took {elapsed:.2f}s"
    assert len(pending()) == 1  # the change is kept for the sweep
    [(_, message)] = outbox_records(caplog)  # once, naming the broker without its password
    assert f"could not enqueue the flush task on the broker {transport}://" in message
    assert f"@127.0.0.1:{port}/" in message or f"//127.0.0.1:{port}/" in message
    assert "guest:guest" not in message


def outbox_records(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == schedule.logger.name]


def test_the_failure_is_logged_once_per_outage_and_the_sweep_sends_the_changes(
    hub, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG, logger=schedule.logger.name)
    skipped = [0.0]  # seconds the debouncer's clock is ahead
    monkeypatch.setattr(
        schedule, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + skipped[0])
    )

    def past_the_pause() -> None:  # BROKER_DOWN_PAUSE is 30 s: the broker is tried again
        skipped[0] += 31

    with refused_port() as port, current_app_on(BROKERS["redis"].format(port=port)):
        timed_save()
        past_the_pause()
        timed_save()
    assert [level for level, _ in outbox_records(caplog)] == ["WARNING", "DEBUG"]
    kept = pending()
    assert len(kept) == 2

    # A broker that takes tasks again (the flush runs eagerly here): the sweep sends them.
    past_the_pause()
    with current_app_on("memory://", task_always_eager=True):
        assert tasks.sweep()["flush_queued"]
        assert pending() == []
        assert all(hub.profile(distinct_id) for distinct_id in kept)
        caplog.clear()
        timed_save()  # the first flush task published since the outage
    assert outbox_records(caplog) == [("INFO", "SuprSend: the broker takes flush tasks again")]


def test_the_celery_apps_own_settings_are_left_alone():
    with current_app_on("memory://") as app:
        before = (app.conf.broker_connection_timeout, dict(app.conf.broker_transport_options))
        timed_save()
        assert (app.conf.broker_connection_timeout, app.conf.broker_transport_options) == before
        with app.connection_for_write() as connection:
            assert "max_retries" not in connection.transport_options
    assert len(pending()) == 1


def test_a_stale_connection_gets_one_fresh_try_and_a_new_one_none(monkeypatch):
    calls: list[bool] = []
    real = tasks.flush_outbox.apply_async

    def fail_first(*args, connection, **kwargs):
        calls.append(connection.connected)
        if len(calls) == 1:
            raise ConnectionResetError("stale")
        return real(*args, connection=connection, **kwargs)

    with current_app_on("memory://"), monkeypatch.context() as patch:
        publish.publish(tasks.flush_outbox, {"using": "default"})  # connects
        patch.setattr(tasks.flush_outbox, "apply_async", fail_first)
        publish.publish(tasks.flush_outbox, {"using": "default"})
        assert calls == [True, False]  # the retry went out on a fresh connection

        calls.clear()
        publish.pools.reset()
        with pytest.raises(ConnectionResetError):
            publish.publish(tasks.flush_outbox, {"using": "default"})
        assert calls == [False]  # never connected before: no second try


def test_a_connection_that_timed_out_gets_no_second_try(monkeypatch):
    """A broker that hangs once connected: a second try would double the save's wait."""
    calls: list[bool] = []
    clock = [0.0]
    monkeypatch.setattr(publish, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    def time_out(*args, connection, **kwargs):
        calls.append(connection.connected)
        clock[0] += 0.5  # PUBLISH_TIMEOUT
        raise TimeoutError("timed out")

    with current_app_on("memory://"), monkeypatch.context() as patch:
        publish.publish(tasks.flush_outbox, {"using": "default"})  # connects
        patch.setattr(tasks.flush_outbox, "apply_async", time_out)
        with pytest.raises(TimeoutError):
            publish.publish(tasks.flush_outbox, {"using": "default"})
    assert calls == [True]


@pytest.mark.parametrize(
    ("transport", "options"),
    [
        ("redis", {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}),
        ("amqp", {"read_timeout": 0.5, "write_timeout": 0.5}),
        ("memory", {}),
    ],
)
def test_bounded_options(transport, options):
    assert publish.bounded_options(transport, 0.5) == {"max_retries": 0, **options}
