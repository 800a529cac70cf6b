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
``DELETE v1/bulk/user/``. Faults (``fail_next``, ``delay_next``,
``drop_next``) queue up and each is used by one request, in order;
``latency`` and ``reject_records`` rules stay until ``clear_faults()``.

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
import json
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from django_suprsend.testing import page
from django_suprsend.testing.auth import Authenticator
from django_suprsend.testing.faults import DROP, Delay, Fail, FaultQueue, RejectRule, pause
from django_suprsend.testing.profile_endpoints import ProfileEndpoints
from django_suprsend.testing.recorded import RecordedRequest, release_body
from django_suprsend.testing.records import HubError
from django_suprsend.testing.responses import Response, Route, error_response, json_response
from django_suprsend.testing.server import Server
from django_suprsend.testing.state import HubState

__all__ = ["HubEmulator", "RecordedRequest"]

Record = dict[str, Any]
Predicate = Callable[["HubEmulator"], bool]

# The page's paths below path_prefix: HTML for people, JSON for scripts.
_PAGE_PATHS = {"/": "html", "/_emulator/": "html", "/_emulator/state.json": "json"}
# no script may run even if a value escaped escaping; never cached, so a reload is fresh
_PAGE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Content-Type-Options", "nosniff"),
)


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
        self._routes: tuple[Route, ...] = ProfileEndpoints(self._state).routes()

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

    def reset(self) -> None:
        """Forget profiles, requests, counters and faults."""
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
                f"applied {_count(len(state.insert_id_counts), 'record')}, "
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

    def clear_faults(self) -> None:
        """Drop queued faults and reject rules; set latency back to 0."""
        self._faults.clear()
        with self._lock:
            self._state.reject_rules.clear()
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
        return self._answer(request)

    def _answer(self, request: RecordedRequest) -> Response:
        try:
            return self._route(request)
        except HubError as error:
            return error_response(error)
        except Exception as error:  # a bug here or in a reject_records predicate
            traceback.print_exc()
            return json_response(500, {"code": 500, "message": f"emulator error: {error!r}"})

    def _local_path(self, uri: str) -> str:
        """The path of a request URI below ``path_prefix``, query dropped ("" when outside)."""
        path = uri.partition("?")[0]
        if not self.path_prefix:
            return path
        return (
            path.removeprefix(self.path_prefix) if path.startswith(self.path_prefix + "/") else ""
        )

    def _route(self, request: RecordedRequest) -> Response:
        path = self._local_path(request.path)
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is not None:
                break
        else:
            raise HubError(404, f"no endpoint at {request.path!r}")
        envs = self._authenticate(request) if route.auth else frozenset()
        handler = route.methods.get(request.method)
        if handler is None:
            allowed = ", ".join(route.methods)
            raise HubError(405, f"{request.method} is not allowed on {path} (use {allowed})")
        return handler(request, match, envs)

    def _authenticate(self, request: RecordedRequest) -> frozenset[str]:
        """Check the Authorization header; return the ``env`` values records may carry."""
        if not self.check_auth:
            return self._auth.envs()
        return self._auth.authenticate(request, self.max_clock_skew)

    # -- the page for people -------------------------------------------------

    def page_state(self) -> dict[str, Any]:
        """What the page shows, JSON-able: the newest profiles and requests, no credentials."""
        with self._lock:
            store = self._state.store
            newest = store.newest(page.PROFILE_LIMIT)
            profiles = [store.get(distinct_id) for distinct_id in newest]
            profile_total = len(store)
            recent = self._state.requests[-page.REQUEST_LIMIT :]
            request_total = len(self._state.requests)
            now, monotonic_now = time.time(), time.monotonic()
        return page.build_state(
            hub={
                "url": self.url,
                "path_prefix": self.path_prefix,
                "workspace_key": self.workspace_key,
                "auth": self._auth_description(),
            },
            profiles=[p for p in profiles if p is not None],
            profile_total=profile_total,
            requests=recent,
            request_total=request_total,
            now=now,
            monotonic_now=monotonic_now,
        )

    def _auth_description(self) -> str:
        if not self.check_auth:
            return "off"
        skew = "" if self.max_clock_skew is None else f" (Date within {self.max_clock_skew:g}s)"
        return f"HMAC signature{skew}" + (" or Bearer API key" if self._auth.api_key else "")

    def page(self, request: RecordedRequest) -> Response | None:
        """The page for a GET of one of its paths, else None (the hub's routes answer).

        Kept apart from the routes: no auth (a local dev tool), no fault, and not
        logged, so tests asserting on ``requests`` never see it.
        """
        if not self.serve_page or request.method != "GET":
            return None
        kind = _PAGE_PATHS.get(self._local_path(request.path))
        if kind is None:
            return None
        try:
            state = self.page_state()
            if kind == "json":  # ASCII-escaped: a lone surrogate in a value cannot break it
                return Response(200, json.dumps(state, indent=1).encode(), _PAGE_HEADERS)
            text = page.render_page(state).encode("utf-8", "replace")
            return Response(200, text, _PAGE_HEADERS, "text/html; charset=utf-8")
        except Exception as error:  # a bug in the page must not take the connection down
            traceback.print_exc()
            message = f"emulator page error: {error!r}".encode()
            return Response(500, message, _PAGE_HEADERS, "text/plain; charset=utf-8")
