"""Publishing the flush task from a save: bounded by ``PUBLISH_TIMEOUT``, never retried.

Celery's own publishing path, as configured for a project's other tasks,
waits for a broker that is down: it retries the connection for up to
``broker_connection_timeout`` (4 s) and more, and a broker that accepts the
connection but never answers holds it for good (Redis) or for that timeout
(RabbitMQ). A save must not wait so long, so the flush task goes out on
connections of its own, made from the Celery app's broker settings (URL,
SSL, transport options) with:

- ``connect_timeout = PUBLISH_TIMEOUT`` and no connection retries
  (``max_retries = 0``);
- a read and write timeout of ``PUBLISH_TIMEOUT`` on the socket, for a broker
  that connects and then never answers: ``socket_connect_timeout`` and
  ``socket_timeout`` for Redis, ``read_timeout`` and ``write_timeout`` for
  RabbitMQ (py-amqp bounds its handshake by ``connect_timeout`` itself).

The Celery app's settings and its connection pool are left as they are. The
connections are pooled per process (:data:`POOL_LIMIT` of them) and dropped
in a forked child. A connection that fails is discarded without I/O (a hung
broker would hold a graceful close, too); one that had worked before and
fails at once (the broker restarted, a proxy dropped an idle connection) is
retried once on a fresh connection, which a broker that is down refuses as
fast; one that timed out is not retried.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from kombu import Connection
from kombu.connection import ConnectionPool

from django_suprsend.conf import suprsend_settings, when_settings_change

#: Connections kept per process: at most two flush tasks a second go out of one (the
#: debouncer), so a few are plenty for the threads of a web server.
POOL_LIMIT = 4

REDIS_SCHEMES = {"redis", "rediss", "sentinel", "redis+socket"}
AMQP_SCHEMES = {"amqp", "amqps", "pyamqp"}


def bounded_options(transport: str, timeout: float) -> dict[str, Any]:
    """The transport options that bound every step of a publish on ``transport``."""
    options: dict[str, Any] = {"max_retries": 0}
    if transport in REDIS_SCHEMES:
        options.update(socket_connect_timeout=timeout, socket_timeout=timeout)
    elif transport in AMQP_SCHEMES:
        options.update(read_timeout=timeout, write_timeout=timeout)
    return options


class _Pools:
    """One pool of bounded connections per Celery app and broker, for this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[tuple[int, str, float], ConnectionPool] = {}

    def get(self, app: Any) -> ConnectionPool:
        timeout = suprsend_settings.PUBLISH_TIMEOUT
        key = (id(app), str(app.conf.broker_write_url or app.conf.broker_url), timeout)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = self._connection(app, timeout).Pool(POOL_LIMIT)
            return pool

    @staticmethod
    def _connection(app: Any, timeout: float) -> Connection:
        transport = app.connection_for_write().transport_cls  # a name, or a class of one's own
        options = bounded_options(transport if isinstance(transport, str) else "", timeout)
        return app.connection_for_write(connect_timeout=timeout, transport_options=options)

    def reset(self) -> None:
        """Forget the pools (their connections are collected, without I/O)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.force_close_all()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's sockets are not ours to use, nor to close."""
        self._lock = threading.Lock()
        self._pools = {}


pools = _Pools()
when_settings_change(pools.reset)
if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=pools.forget_after_fork)


def broker_name(app: Any) -> str:
    """The broker's URL as logs may show it (without its password)."""
    return app.connection_for_write().as_uri()


def publish(task: Any, kwargs: dict[str, Any], **options: Any) -> None:
    """``task.apply_async(kwargs=kwargs, **options)`` within ``PUBLISH_TIMEOUT``; raises on failure.

    Eager apps (``task_always_eager``) run the task as Celery would, without a broker.
    """
    app = task.app
    if app.conf.task_always_eager:
        task.apply_async(kwargs=kwargs, **options)
        return
    timeout = suprsend_settings.PUBLISH_TIMEOUT
    connection = pools.get(app).acquire(block=True, timeout=timeout)
    send = functools.partial(
        task.apply_async, kwargs=kwargs, connection=connection, retry=False, **options
    )
    try:
        was_connected = connection.connected
        start = time.monotonic()
        try:
            _send_on(connection, send)
        except Exception:
            # A connection that worked before may have gone stale (a restarted broker
            # dropped it): if it failed at once, it gets one fresh try. One that timed
            # out does not: a hung broker would not answer that try either.
            if not was_connected or time.monotonic() - start > timeout / 2:
                raise
            _send_on(connection, send)
    finally:
        connection.release()


def _send_on(connection: Connection, send: Callable[[], Any]) -> None:
    try:
        send()
    except Exception:
        connection.collect()  # no I/O: a hung broker would hold a graceful close
        raise
