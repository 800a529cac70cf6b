"""A SuprSend hub on 127.0.0.1: verifies auth, applies profile edits, logs requests, injects faults.

It speaks the protocol as the official SDK uses it (``PROTOCOL.md``) and
rejects what the real hub rejects, so a client that passes against it is
not merely passing against a mock of itself::

    with HubEmulator("ws_key", "ws_secret") as hub:
        client = SuprsendClient(..., base_url=hub.url)
        ...
        hub.wait_for(lambda h: h.channel_values("42", "$email") == ["a@example.com"])

Endpoints (relative to ``url``): ``POST event/`` (one async-edit record or
an array of them, 202), ``GET/PATCH/POST/DELETE v1/user/{id}/`` and
``DELETE v1/bulk/user/`` (``profile_endpoints``); ``POST trigger/``, legacy
``POST {workspace}/trigger/``, ``POST v2/event/`` and ``POST v2/bulk/event/``
(``notification_endpoints``: one object 202, an array 202 or 207 per record).
Applied notifications are kept for tests, as ``mail.outbox`` keeps mail::

    assert [n.workflow for n in hub.notifications("42")] == ["welcome"]
    assert hub.arrivals("42") == [("profile", insert_id), ("workflow", "welcome")]

Faults (``fail_next``, ``delay_next``, ``drop_next``) queue up and each is
used by one request, in order; ``latency``, ``reject_records`` and
``reject_notifications`` rules stay until ``clear_faults()``.

With ``serve_page=True`` (the standalone CLI's default) it also serves a
read-only page for people at ``/`` and ``_emulator/`` (JSON at
``_emulator/state.json``): the profiles it holds and the recent requests.
Those GETs need no auth, use no fault and are not logged in ``requests``.

``max_clock_skew=S`` answers ``401`` to an HMAC-signed request whose ``Date``
is more than ``S`` seconds from the emulator's clock, as a hub refuses a
request signed on a machine whose clock is off (default None: any ``Date``).

``keep_bodies=N`` keeps the bodies of the newest N requests only (older
ones read ``b""``): the CLI's choice, as a benchmark's requests would hold
hundreds of megabytes that only the page's recent requests use.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from django_suprsend.testing import notification_endpoints
from django_suprsend.testing.auth import Authenticator
from django_suprsend.testing.faults import DROP, Delay, Fail, FaultQueue, RejectRule, pause
from django_suprsend.testing.notifications import (
    Arrival,
    Kind,
    Notification,
    NotificationRule,
    RecordMatch,
)
from django_suprsend.testing.page_view import PageView
from django_suprsend.testing.profile_endpoints import ProfileEndpoints
from django_suprsend.testing.recorded import RecordedRequest, release_body
from django_suprsend.testing.responses import Response
from django_suprsend.testing.router import Router, local_path
from django_suprsend.testing.server import Server
from django_suprsend.testing.state import HubState

__all__ = ["Arrival", "HubEmulator", "Notification", "RecordedRequest"]

Record = dict[str, Any]
Predicate = Callable[["HubEmulator"], bool]


def _count(count: int, noun: str) -> str:
    """``1 profile``, ``2 profiles``: the emulator runs without Django (no ngettext)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class HubEmulator:
    """A SuprSend hub on a local port. Use ``with hub:`` or ``start()`` / ``stop()``."""

    def __init__(
        self,
        workspace_key: str = "ws_test_key",
        workspace_secret: str = "ws_test_secret",  # noqa: S107 - a test credential
        *,
        api_key: str | None = None,
        workspace_uid: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        check_auth: bool = True,
        path_prefix: str = "",
        serve_page: bool = False,
        keep_bodies: int | None = None,
        max_clock_skew: float | None = None,
    ) -> None:
        self.workspace_key = workspace_key
        self.workspace_uid = workspace_uid
        self._auth = Authenticator(workspace_key, workspace_secret, api_key, workspace_uid)
        self.host = host
        self.check_auth = check_auth
        self.path_prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        # off by default: a test hub answers 404 at / like the real hub
        self.serve_page = serve_page
        self.keep_bodies = keep_bodies  # None: every request's body
        # seconds a signed Date may be from this clock (None: any); may change while serving
        self.max_clock_skew = max_clock_skew
        self.latency = 0.0
        self._port = port
        self._state = HubState()
        self._lock = self._state.lock
        self._faults = FaultQueue()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        # the page for people is not a route: see page(), which runs before logging
        routes = (
            *ProfileEndpoints(self._state).routes(),
            *notification_endpoints.NotificationEndpoints(self._state).routes(),
        )
        self._router = Router(routes, self._auth)
        self._page_view = PageView(self._state, self._describe)

    def __repr__(self) -> str:
        where = self.url if self._server else "stopped"
        return f"<HubEmulator {where} workspace_key={self.workspace_key!r}>"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> HubEmulator:
        if self._server is not None:
            raise RuntimeError("the hub emulator is already running")
        self._server = Server((self.host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"suprsend-hub-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> HubEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the hub emulator is not running; call start() or use `with hub:`")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL to give the client, ending in ``/``."""
        return f"http://{self.host}:{self.port}{self.path_prefix}/"

    # -- state -------------------------------------------------------------

    def profile(self, distinct_id: str) -> dict[str, Any] | None:
        """The profile in the REST shape of ``GET v1/user/{id}/`` (a copy), or None."""
        with self._lock:
            return self._state.store.get(distinct_id)

    def profiles(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return self._state.store.all()

    def channel_values(self, distinct_id: str, channel: str) -> list[Any]:
        """The values of one channel (``"$email"``...) in order; [] if none."""
        with self._lock:
            return self._state.store.channel_values(distinct_id, channel)

    def properties(self, distinct_id: str) -> dict[str, Any]:
        """The profile's properties; {} for an unknown profile."""
        with self._lock:
            return self._state.store.properties(distinct_id)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order of arrival."""
        with self._lock:
            return list(self._state.requests)

    @property
    def insert_id_counts(self) -> collections.Counter[str]:
        """How often each ``$insert_id`` arrived in an accepted request, duplicates included."""
        with self._lock:
            return collections.Counter(self._state.insert_id_counts)

    @property
    def applied_insert_ids(self) -> set[str]:
        """The ``$insert_id`` of every record applied (each is applied once)."""
        with self._lock:
            return set(self._state.insert_id_counts)

    # -- notifications -----------------------------------------------------

    @property
    def clock(self) -> Callable[[], float]:
        """The hub's clock (epoch seconds; ``time.time`` by default): notifications'
        ``received_at`` and the 24 hours of idempotency keys run on it. Set it in tests."""
        return self._state.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self._state.clock = clock

    def notifications(
        self,
        distinct_id: str | None = None,
        *,
        workflow: str | None = None,
        event: str | None = None,
        kind: Kind | None = None,
    ) -> list[Notification]:
        """The notifications applied, in order of arrival, those to ``distinct_id`` (a
        recipient) of ``workflow`` / ``event`` / ``kind`` only when given (duplicates of an
        ``$idempotency_key`` are not applied, so not here)."""
        with self._lock:
            found = list(self._state.notifications)
        return [
            n
            for n in found
            if (distinct_id is None or distinct_id in n.recipients)
            and (workflow is None or n.workflow == workflow)
            and (event is None or n.event == event)
            and (kind is None or n.kind == kind)
        ]

    def arrivals(self, distinct_id: str) -> list[Arrival]:
        """What arrived for one distinct_id, in order: ``("profile", insert_id)`` for each
        profile edit applied (``insert_id`` None for ``v1/user/`` calls), ``("workflow",
        slug)`` and ``("event", name)`` for each notification to it."""
        with self._lock:
            return [
                Arrival(kind, name) for _, kind, name in self._state.arrivals.get(distinct_id, ())
            ]

    def profile_arrived_before(
        self, distinct_id: str, *, workflow: str | None = None, event: str | None = None
    ) -> bool:
        """Whether an edit of the profile arrived before the first notification to it (of
        ``workflow`` / ``event`` when given); False when no such notification arrived."""
        profile_seen = False
        for arrival in self.arrivals(distinct_id):
            if arrival.kind == "profile":
                profile_seen = True
            elif (workflow is None or (arrival.kind, arrival.name) == ("workflow", workflow)) and (
                event is None or (arrival.kind, arrival.name) == ("event", event)
            ):
                return profile_seen
        return False

    @property
    def idempotency_key_counts(self) -> collections.Counter[tuple[Kind, str]]:
        """How often each ``(kind, $idempotency_key)`` arrived in a valid record, duplicates
        included (each is applied once a day)."""
        with self._lock:
            return collections.Counter(self._state.idempotency_counts)

    def reset(self) -> None:
        """Forget profiles, notifications, requests, counters and faults."""
        with self._lock:
            self._state.clear()
        self.clear_faults()

    def wait_for(self, predicate: Predicate, timeout: float = 10.0, interval: float = 0.01) -> None:
        """Return once ``predicate(hub)`` is true; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                name = getattr(predicate, "__qualname__", repr(predicate))
                raise AssertionError(
                    f"hub.wait_for({name}) still false after {timeout}s; {self._summary()}"
                )
            time.sleep(interval)

    def _summary(self) -> str:
        queued = len(self._faults)
        with self._lock:
            state = self._state
            statuses = collections.Counter(str(r.status) for r in state.requests)
            return (
                f"the hub received {_count(len(state.requests), 'request')} "
                f"(by status: {dict(statuses)}), holds {_count(len(state.store), 'profile')}, "
                f"applied {_count(len(state.insert_id_counts), 'record')} and "
                f"{_count(len(state.notifications), 'notification')}, "
                f"has {_count(queued, 'queued fault')}"
            )

    # -- faults ------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        retry_after: int | str | None = None,
        body: str | bytes | Mapping[str, Any] | None = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``Retry-After``); apply nothing."""
        self._faults.queue(Fail(status, retry_after, body), n)

    def delay_next(self, n: int, seconds: float) -> None:
        """Answer the next ``n`` requests after ``seconds``; they are still applied then."""
        self._faults.queue(Delay(seconds), n)

    def drop_next(self, n: int) -> None:
        """Read the next ``n`` requests, then close the connection without an answer."""
        self._faults.queue(DROP, n)

    def reject_records(
        self,
        predicate: Callable[[Record], bool],
        *,
        status: int = 400,
        error: str = "rejected by test",
    ) -> None:
        """Answer ``status`` to any event/ request holding a record the predicate matches."""
        with self._lock:
            self._state.reject_rules.append(RejectRule(predicate, status, error))

    def reject_notifications(
        self,
        match: RecordMatch,
        *,
        status: int = 400,
        error: str = "rejected by test",
        error_type: str | None = None,
    ) -> None:
        """Answer ``status`` with ``error`` (and ``error_type``, by default the hub's name for
        the status) instead of applying a workflow trigger or event ``match`` matches: a
        predicate of the record as sent, or values of its keys (``{"workflow": "gone"}``).
        One object is answered so; in a bulk request, that record is, in the 207."""
        kind = error_type or notification_endpoints.error_type(status)
        with self._lock:
            self._state.notification_rules.append(NotificationRule(match, status, error, kind))

    def clear_faults(self) -> None:
        """Drop queued faults, reject rules and notification rules; set latency back to 0."""
        self._faults.clear()
        with self._lock:
            self._state.reject_rules.clear()
            self._state.notification_rules.clear()
        self.latency = 0.0

    # -- dispatch (called by the server's threads) ---------------------------

    def log(self, request: RecordedRequest) -> None:
        with self._lock:
            requests = self._state.requests
            requests.append(request)
            if self.keep_bodies is not None and len(requests) > self.keep_bodies:
                release_body(requests[-self.keep_bodies - 1])

    def handle(self, request: RecordedRequest) -> Response | None:
        """Log the request, then answer it as the next fault says (None: drop it)."""
        self.log(request)
        fault = self._faults.take()
        pause(fault, self.latency)
        if fault is DROP:
            return None
        if isinstance(fault, Fail):
            return fault.response()
        return self._router.answer(
            request,
            self.path_prefix,
            check_auth=self.check_auth,
            max_clock_skew=self.max_clock_skew,
        )

    # -- the page for people -------------------------------------------------

    def page_state(self) -> dict[str, Any]:
        """What the page shows, JSON-able: the newest profiles, notifications and requests."""
        return self._page_view.snapshot()

    def _describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "path_prefix": self.path_prefix,
            "workspace_key": self.workspace_key,
            "auth": self._auth_description(),
        }

    def _auth_description(self) -> str:
        if not self.check_auth:
            return "off"
        skew = "" if self.max_clock_skew is None else f" (Date within {self.max_clock_skew:g}s)"
        return f"HMAC signature{skew}" + (" or Bearer API key" if self._auth.api_key else "")

    def page(self, request: RecordedRequest) -> Response | None:
        """The page for a GET of one of its paths when ``serve_page``, else None."""
        if not self.serve_page or request.method != "GET":
            return None
        return self._page_view.answer(local_path(request.path, self.path_prefix))
