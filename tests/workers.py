"""Real Celery workers for tests: subprocesses on the test database and a queue of their own.

A :class:`WorkerPool` starts ``celery -A tests.celery_app worker --pool=solo``
processes that open the database the test process is testing on (the test
database pytest-django made, a file for SQLite), talk to the hub emulator of
the test, and consume one queue made for the pool alone (purged when the pool
starts, deleted when it stops), so that no task of an earlier test or run
reaches them. Their ``SUPRSEND`` settings come as ``SUPRSEND_<KEY>``
environment variables, which ``tests/settings.py`` reads.

Tests that share rows with a worker need ``django_db(transaction=True)``:
a worker sees only what the test process has committed.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.db import connections

from django_suprsend.conf import DEFAULTS
from django_suprsend.testing.pytest_plugin import WORKSPACE_KEY, WORKSPACE_SECRET
from tests.celery_app import BROKER_URL, app

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}

# One prefix per test session; each pool adds a number: no two pools, and no two runs, share
# a queue.
_SESSION = f"suprsend-tests-{os.getpid()}-{uuid.uuid4().hex[:8]}"
_pool_numbers = itertools.count(1)


def broker_unreachable_reason(url: str = BROKER_URL, timeout: float = 1.0) -> str | None:
    """Why the broker cannot be used (None when a TCP connection to it opens)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    if port is None:
        return f"CELERY_BROKER_URL {url!r}: only Redis and AMQP brokers are supported here"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return (
            f"the Celery broker at {host}:{port} is not reachable ({exc}); start Redis "
            "(redis-server) or point CELERY_BROKER_URL at a running broker"
        )
    return None


def wait_until(
    predicate: Callable[[], Any], timeout: float, message: str | Callable[[], str]
) -> Any:
    """Poll ``predicate`` until it returns something true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"still false after {timeout}s: {message() if callable(message) else message}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def worker_database_url(alias: str = "default") -> str:
    """A ``DATABASE_URL`` naming the test database the test process uses on ``alias``."""
    connection = connections[alias]
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            raise RuntimeError(
                "the SQLite test database is in memory: a worker process cannot open it; "
                "set DATABASES['default']['TEST']['NAME'] to a file (tests/settings.py does)"
            )
        return "sqlite:///" + str(Path(name).resolve())
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError(f"DATABASE_URL is not set, but the test database is {connection.vendor}")
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def suprsend_settings(hub_url: str, queue: str, **overrides: Any) -> dict[str, Any]:
    """The ``SUPRSEND`` settings of a test that uses the hub emulator and a pool's queue."""
    return {
        "WORKSPACE_KEY": WORKSPACE_KEY,
        "WORKSPACE_SECRET": WORKSPACE_SECRET,
        "BASE_URL": hub_url,
        "QUEUE": queue,
        **overrides,
    }


class Worker:
    """One ``celery worker`` subprocess; its output goes to ``log_path``."""

    def __init__(self, name: str, queue: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.queue = queue
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"<Worker {self.name} pid={pid} queue={self.queue}>"

    def start(self) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool=solo",
            "-Q",
            self.queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{self.name}@%h",
            "--loglevel=INFO",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_ready(self) -> bool:
        """True once the worker consumes its queue; AssertionError if it exited."""
        if self.process is None:
            return False
        if self.process.poll() is not None:
            raise AssertionError(
                f"worker {self.name} exited with {self.process.returncode}:\n{self.tail()}"
            )
        return re.search(rf"\] {re.escape(self.name)}@\S+ ready\.$", self.log(), re.M) is not None

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(self.is_ready, timeout, lambda: f"worker {self.name} not ready:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: the worker dies where it stands, as in an OOM kill or a lost machine."""
        self.signal(signal.SIGKILL)
        assert self.wait(10), f"worker {self.name} survived SIGKILL"

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to end; True if it has."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def task_results(self, task: str = "django_suprsend.flush_outbox") -> list[Any]:
        """The return values this worker logged for ``task`` (Celery logs them at INFO)."""
        pattern = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] succeeded in [\d.e-]+s: (.*)$")
        results = []
        for line in self.log().splitlines():
            match = pattern.search(line)
            if match:
                results.append(ast.literal_eval(match[1]))
        return results


def stop_all(workers: list[Worker], timeout: float = 3.0) -> None:
    """Stop workers together: SIGTERM, then SIGQUIT after ``timeout`` seconds, then SIGKILL.

    A worker on AMQP without heartbeats sleeps in its event loop until a message comes: it may
    notice neither shutdown signal.
    """
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGQUIT, 1.0), (signal.SIGKILL, 10.0)):
        running = [worker for worker in workers if worker.alive]
        for worker in running:
            worker.signal(signum)
        deadline = time.monotonic() + wait
        if all(worker.wait(max(0.0, deadline - time.monotonic())) for worker in running):
            return


class WorkerPool:
    """Workers of one test, on a queue of their own; :meth:`close` stops them all."""

    def __init__(self, hub_url: str, log_dir: Path, *, database: str = "default") -> None:
        self.number = next(_pool_numbers)
        self.queue = f"{_SESSION}-{self.number}"
        self.hub_url = hub_url
        self.log_dir = log_dir
        self.database_url = worker_database_url(database)
        self.workers: list[Worker] = []
        self._names = itertools.count(1)
        self._purge(delete=False)

    def env(self, clock_skew: float = 0.0, **suprsend: Any) -> dict[str, str]:
        """The environment of a worker: test database, broker, hub, queue, ``SUPRSEND`` keys,
        and how many seconds off its signing clock is (see ``tests/celery_app.py``)."""
        env = {
            name: value
            for name, value in os.environ.items()
            if not (name.startswith("SUPRSEND_") and name.removeprefix("SUPRSEND_") in DEFAULTS)
        }
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=BROKER_URL,
            PYTHONUNBUFFERED="1",
            TESTS_CLOCK_SKEW=str(clock_skew),
        )
        settings = suprsend_settings(self.hub_url, self.queue, **suprsend)
        env.update({f"SUPRSEND_{key}": str(value) for key, value in settings.items()})
        return env

    def start(self, count: int = 1, *, clock_skew: float = 0.0, **suprsend: Any) -> list[Worker]:
        """Start ``count`` workers with these ``SUPRSEND`` settings, signing ``clock_skew``
        seconds off the real time; wait until they consume."""
        started = []
        for _ in range(count):
            name = f"w{next(self._names)}-{self.number}"
            log_path = self.log_dir / f"{name}.log"
            env = self.env(clock_skew, **suprsend)
            worker = Worker(name, self.queue, env, log_path).start()
            self.workers.append(worker)
            started.append(worker)
        for worker in started:
            worker.wait_ready()
        return started

    def send(self, task: Any, **kwargs: Any) -> None:
        """Send ``task`` to this pool's queue."""
        task.apply_async(kwargs=kwargs, queue=self.queue)

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ({w.log_path})\n{w.tail(60)}" for w in self.workers)

    def close(self) -> None:
        stop_all(self.workers)
        self._purge(delete=True)

    def _purge(self, *, delete: bool) -> None:
        queue = app.amqp.queues.new_missing(self.queue)
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            bound = queue.bind(channel)
            bound.declare()
            bound.purge()
            if delete:
                bound.delete()
                self._forget_unacked(channel)

    def _forget_unacked(self, channel: Any) -> None:
        """Redis: drop the messages of this queue that a killed worker left unacknowledged.

        The transport would put them back in the (deleted) queue after its visibility
        timeout, leaving a key that nothing consumes.
        """
        unacked_key = getattr(channel, "unacked_key", None)
        if unacked_key is None:  # not Redis
            return
        with channel.conn_or_acquire() as client:
            for tag, payload in client.hgetall(unacked_key).items():
                _message, _exchange, routing_key = json.loads(payload)
                if routing_key == self.queue:
                    client.pipeline().zrem(channel.unacked_index_key, tag).hdel(
                        unacked_key, tag
                    ).execute()


@contextmanager
def worker_pool(hub_url: str, log_dir: Path) -> Iterator[WorkerPool]:
    """A :class:`WorkerPool`; on exit its workers are stopped and their output printed
    (pytest shows it for a failed test)."""
    pool = WorkerPool(hub_url, log_dir)
    try:
        yield pool
    finally:
        try:
            pool.close()
        finally:
            print(pool.logs())
