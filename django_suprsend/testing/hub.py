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
import contextlib
import hmac
import json
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import unquote

from django_suprsend.testing import page
from django_suprsend.testing.profiles import ProfileStore, utc_now
from django_suprsend.testing.records import (
    HubError,
    check_limits,
    check_records,
    describe,
    operations_error,
    parse_event_body,
    parse_json,
    record_summary,
    upsert_body_error,
)
from django_suprsend.wire import signing

__all__ = ["HubEmulator", "RecordedRequest"]

Record = dict[str, Any]
Predicate = Callable[["HubEmulator"], bool]


@dataclass(slots=True)
class RecordedRequest:
    """One request as the hub received it, and the status it answered (None: dropped or pending)."""

    method: str
    path: str  # raw request URI: path and query exactly as sent
    headers: dict[str, str]  # in wire order
    body: bytes
    received_at: float  # time.monotonic()
    status: int | None = None
    answered_at: float | None = None
    record_count: int | None = None  # records in an event/ body
    response_body: bytes | None = None  # the body answered (None: dropped or pending)

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header by case-insensitive name."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), default)


class _Response(NamedTuple):
    status: int
    payload: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


def _json_response(status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    return _Response(status, json.dumps(body, ensure_ascii=False).encode(), headers)


def _error_response(error: HubError) -> _Response:
    return _json_response(error.status, error.body())


def _count(count: int, noun: str) -> str:
    """``1 profile``, ``2 profiles``: the emulator runs without Django (no ngettext)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@dataclass(frozen=True)
class _Fail:
    status: int
    retry_after: int | str | None
    body: str | bytes | Mapping[str, Any] | None

    def response(self) -> _Response:
        headers = () if self.retry_after is None else (("Retry-After", str(self.retry_after)),)
        if self.body is None:
            message = f"injected fault: {self.status} {_reason(self.status)}"
            return _json_response(self.status, {"code": self.status, "message": message}, headers)
        if isinstance(self.body, Mapping):
            return _json_response(self.status, self.body, headers)
        payload = self.body.encode() if isinstance(self.body, str) else self.body
        return _Response(self.status, payload, headers, "text/plain; charset=utf-8")


@dataclass(frozen=True)
class _Delay:
    seconds: float


class _Drop:
    def __repr__(self) -> str:
        return "drop"


_DROP = _Drop()
_Fault = _Fail | _Delay | _Drop


@dataclass(frozen=True)
class _RejectRule:
    predicate: Callable[[Record], bool]
    status: int
    error: str


# The page's paths below path_prefix: HTML for people, JSON for scripts.
_PAGE_PATHS = {"/": "html", "/_emulator/": "html", "/_emulator/state.json": "json"}
# no script may run even if a value escaped escaping; never cached, so a reload is fresh
_PAGE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Content-Type-Options", "nosniff"),
)


class _Route(NamedTuple):
    pattern: re.Pattern[str]
    methods: Mapping[str, Callable[[RecordedRequest, re.Match[str], frozenset[str]], _Response]]
    auth: bool = True


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
        self._workspace_secret = workspace_secret
        self._api_key = api_key
        self.workspace_uid = workspace_uid
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
        self._lock = threading.Lock()
        self._store = ProfileStore()
        self._requests: list[RecordedRequest] = []
        # every $insert_id of an accepted request; the first arrival of each is applied
        self._insert_id_counts: collections.Counter[str] = collections.Counter()
        self._faults: collections.deque[_Fault] = collections.deque()
        self._reject_rules: list[_RejectRule] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes = (
            _Route(re.compile(r"/event/"), {"POST": self._post_event}),
            _Route(
                re.compile(r"/v1/user/([^/]+)/"),
                {
                    "GET": self._get_user,
                    "PATCH": self._patch_user,
                    "POST": self._post_user,
                    "DELETE": self._delete_user,
                },
            ),
            _Route(re.compile(r"/v1/bulk/user/"), {"DELETE": self._bulk_delete}),
            # the page for people is not a route: see _page, which runs before logging
        )

    def __repr__(self) -> str:
        where = self.url if self._server else "stopped"
        return f"<HubEmulator {where} workspace_key={self.workspace_key!r}>"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> HubEmulator:
        if self._server is not None:
            raise RuntimeError("the hub emulator is already running")
        self._server = _Server((self.host, self._port), self)
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
            return self._store.get(distinct_id)

    def profiles(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return self._store.all()

    def channel_values(self, distinct_id: str, channel: str) -> list[Any]:
        """The values of one channel (``"$email"``...) in order; [] if none."""
        with self._lock:
            return self._store.channel_values(distinct_id, channel)

    def properties(self, distinct_id: str) -> dict[str, Any]:
        """The profile's properties; {} for an unknown profile."""
        with self._lock:
            return self._store.properties(distinct_id)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order of arrival."""
        with self._lock:
            return list(self._requests)

    @property
    def insert_id_counts(self) -> collections.Counter[str]:
        """How often each ``$insert_id`` arrived in an accepted request, duplicates included."""
        with self._lock:
            return collections.Counter(self._insert_id_counts)

    @property
    def applied_insert_ids(self) -> set[str]:
        """The ``$insert_id`` of every record applied (each is applied once)."""
        with self._lock:
            return set(self._insert_id_counts)

    def reset(self) -> None:
        """Forget profiles, requests, counters and faults."""
        with self._lock:
            self._store.clear()
            self._requests.clear()
            self._insert_id_counts.clear()
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
        with self._lock:
            statuses = collections.Counter(str(r.status) for r in self._requests)
            return (
                f"the hub received {_count(len(self._requests), 'request')} "
                f"(by status: {dict(statuses)}), holds {_count(len(self._store), 'profile')}, "
                f"applied {_count(len(self._insert_id_counts), 'record')}, "
                f"has {_count(len(self._faults), 'queued fault')}"
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
        self._queue(_Fail(status, retry_after, body), n)

    def delay_next(self, n: int, seconds: float) -> None:
        """Answer the next ``n`` requests after ``seconds``; they are still applied then."""
        self._queue(_Delay(seconds), n)

    def drop_next(self, n: int) -> None:
        """Read the next ``n`` requests, then close the connection without an answer."""
        self._queue(_DROP, n)

    def reject_records(
        self,
        predicate: Callable[[Record], bool],
        *,
        status: int = 400,
        error: str = "rejected by test",
    ) -> None:
        """Answer ``status`` to any event/ request holding a record the predicate matches."""
        with self._lock:
            self._reject_rules.append(_RejectRule(predicate, status, error))

    def clear_faults(self) -> None:
        """Drop queued faults and reject rules; set latency back to 0."""
        with self._lock:
            self._faults.clear()
            self._reject_rules.clear()
        self.latency = 0.0

    def _queue(self, fault: _Fault, n: int) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _pause(self, fault: _Fault | None) -> None:
        seconds = self.latency + (fault.seconds if isinstance(fault, _Delay) else 0.0)
        if seconds > 0:
            time.sleep(seconds)

    def _log(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            if self.keep_bodies is not None and len(self._requests) > self.keep_bodies:
                _release_body(self._requests[-self.keep_bodies - 1])

    # -- dispatch ----------------------------------------------------------

    def _handle(self, request: RecordedRequest) -> _Response | None:
        """Log the request, then answer it as the next fault says (None: drop it)."""
        self._log(request)
        fault = self._take_fault()
        self._pause(fault)
        if fault is _DROP:
            return None
        if isinstance(fault, _Fail):
            return fault.response()
        return self._answer(request)

    def _answer(self, request: RecordedRequest) -> _Response:
        try:
            return self._route(request)
        except HubError as error:
            return _error_response(error)
        except Exception as error:  # a bug here or in a reject_records predicate
            traceback.print_exc()
            return _json_response(500, {"code": 500, "message": f"emulator error: {error!r}"})

    def _local_path(self, uri: str) -> str:
        """The path of a request URI below ``path_prefix``, query dropped ("" when outside)."""
        path = uri.partition("?")[0]
        if not self.path_prefix:
            return path
        return (
            path.removeprefix(self.path_prefix) if path.startswith(self.path_prefix + "/") else ""
        )

    def _route(self, request: RecordedRequest) -> _Response:
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

    # -- the page for people -------------------------------------------------

    def page_state(self) -> dict[str, Any]:
        """What the page shows, JSON-able: the newest profiles and requests, no credentials."""
        with self._lock:
            newest = self._store.newest(page.PROFILE_LIMIT)
            profiles = [self._store.get(distinct_id) for distinct_id in newest]
            profile_total = len(self._store)
            recent = self._requests[-page.REQUEST_LIMIT :]
            request_total = len(self._requests)
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
        return f"HMAC signature{skew}" + (" or Bearer API key" if self._api_key else "")

    def _page(self, request: RecordedRequest) -> _Response | None:
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
                return _Response(200, json.dumps(state, indent=1).encode(), _PAGE_HEADERS)
            text = page.render_page(state).encode("utf-8", "replace")
            return _Response(200, text, _PAGE_HEADERS, "text/html; charset=utf-8")
        except Exception as error:  # a bug in the page must not take the connection down
            traceback.print_exc()
            message = f"emulator page error: {error!r}".encode()
            return _Response(500, message, _PAGE_HEADERS, "text/plain; charset=utf-8")

    # -- auth --------------------------------------------------------------

    def _authenticate(self, request: RecordedRequest) -> frozenset[str]:
        """Check the Authorization header; return the ``env`` values records may carry."""
        if not self.check_auth:
            return frozenset({self.workspace_key, self.workspace_uid or self.workspace_key})
        header = request.header("Authorization")
        if not header:
            raise HubError(
                401,
                "missing Authorization header: sign the request with the workspace key and "
                "secret, or send 'Bearer <api key>'",
            )
        if header.startswith("Bearer "):
            return self._check_bearer(header.removeprefix("Bearer "))
        return self._check_signature(request, header)

    def _check_bearer(self, token: str) -> frozenset[str]:
        if self._api_key is None:
            raise HubError(401, "Bearer authentication is not enabled: this hub has no API key")
        if not hmac.compare_digest(token.encode(), self._api_key.encode()):
            raise HubError(401, "the Bearer API key is not this workspace's API key")
        return frozenset({self.workspace_uid or self.workspace_key})

    def _check_signature(self, request: RecordedRequest, header: str) -> frozenset[str]:
        key, colon, given = header.rpartition(":")
        if not colon or not key:
            raise HubError(
                401, "Authorization must be '<workspace_key>:<signature>' or 'Bearer <api key>'"
            )
        if key != self.workspace_key:
            raise HubError(401, f"unknown workspace key {key!r}")
        date = request.header("Date")
        if not date:
            raise HubError(401, "missing Date header: an HMAC-signed request must carry it")
        content_type = request.header("Content-Type") or ""
        expected = signing.signature(
            self._workspace_secret,
            request.method,
            request.body,
            date=date,
            request_uri=request.path,
            content_type=content_type,
        )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            signed = signing.string_to_sign(
                request.method,
                signing.content_md5(request.method, request.body),
                content_type,
                date,
                request.path,
            )
            raise HubError(
                401,
                "signature does not match: the hub signed METHOD, MD5 of the body, "
                f"Content-Type, Date and request URI as {signed!r} with the workspace secret",
            )
        self._check_date(date)
        return frozenset({self.workspace_key})

    def _check_date(self, date: str) -> None:
        """401 when the signed ``Date`` is further than ``max_clock_skew`` from this clock."""
        allowed = self.max_clock_skew
        if allowed is None:
            return
        try:
            sent = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            raise HubError(401, f"the Date header {date!r} is not an HTTP-date") from None
        skew = sent - time.time()
        if abs(skew) > allowed:
            where = "ahead of" if skew > 0 else "behind"
            raise HubError(
                401,
                f"request expired: its Date {date!r} is {abs(skew):.0f}s {where} the hub's "
                f"clock ({signing.http_date()}), more than the {allowed:g}s allowed; check the "
                "clock of the machine that signs the requests",
            )

    # -- endpoints ---------------------------------------------------------

    def _post_event(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> _Response:
        records, raw_texts = parse_event_body(request.body)
        request.record_count = len(records)
        check_limits(records, raw_texts)
        check_records(records, envs)
        self._check_reject_rules(records)
        now = utc_now()
        counts, fresh = self._insert_id_counts, []  # fresh: records to apply, by index
        with self._lock:
            for index, record in enumerate(records):
                insert_id = record["$insert_id"]
                seen = counts.get(insert_id, 0)  # not counts[...]: Counter.__missing__ is Python
                counts[insert_id] = seen + 1
                if not seen:
                    fresh.append(index)
            if fresh:
                # applied when the store is next used, from the records' text as sent if
                # there is one: a fifth of the memory of the parsed records
                source = records if raw_texts is None else raw_texts
                self._store.defer(_edits(source, fresh), now)
        return _json_response(202, {"success": True, "message_id": str(uuid.uuid4())})

    def _check_reject_rules(self, records: list[Record]) -> None:
        with self._lock:
            rules = list(self._reject_rules)
        for rule in rules:
            hits = [i for i, record in enumerate(records) if rule.predicate(record)]
            if hits:
                raise HubError(
                    rule.status,
                    f"{rule.error}: {describe(hits[0], records[hits[0]])}",
                    records=[record_summary(i, records[i]) for i in hits],
                )

    def _get_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> _Response:
        distinct_id = unquote(match[1])
        with self._lock:
            profile = self._store.get(distinct_id)
        if profile is None:
            raise _user_not_found(distinct_id)
        return _json_response(200, profile)

    def _patch_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> _Response:
        distinct_id = unquote(match[1])
        body = parse_json(request.body)
        # {} is what the SDK sends for an edit without operations: a no-op
        operations = body.get("operations", []) if isinstance(body, dict) else None
        error = operations_error(operations)
        if error is not None:
            raise HubError(
                400, f'user {distinct_id!r}: body must be {{"operations": [...]}}; {error}'
            )
        now = utc_now()
        with self._lock:
            self._store.ensure(distinct_id, now)
            self._store.apply(distinct_id, operations, now)
            profile = self._store.get(distinct_id)
        return _json_response(200, profile)

    def _post_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> _Response:
        distinct_id = unquote(match[1])
        body = parse_json(request.body)
        error = upsert_body_error(body)
        if error is not None:
            raise HubError(400, f"user {distinct_id!r}: {error}")
        with self._lock:
            created = self._store.upsert(distinct_id, body)
            profile = self._store.get(distinct_id)
        return _json_response(201 if created else 200, profile)

    def _delete_user(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> _Response:
        distinct_id = unquote(match[1])
        with self._lock:
            deleted = self._store.delete(distinct_id)
        if not deleted:
            raise _user_not_found(distinct_id)
        return _Response(204)

    def _bulk_delete(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> _Response:
        body = parse_json(request.body)
        distinct_ids = body.get("distinct_ids") if isinstance(body, dict) else None
        if not isinstance(distinct_ids, list) or not all(isinstance(i, str) for i in distinct_ids):
            raise HubError(400, 'body must be {"distinct_ids": ["<distinct_id>", ...]}')
        with self._lock:
            for distinct_id in distinct_ids:
                self._store.delete(distinct_id)
        return _json_response(202, {"success": True})


def _edits(records: Sequence[Any], indices: list[int]) -> Iterator[tuple[str, Any]]:
    """The (distinct_id, operations) of ``records[i]`` for each index, parsing JSON texts.

    A text was parsed once already, strictly: json.loads reads the same values.
    """
    for index in indices:
        record = records[index]
        if isinstance(record, str):
            record = json.loads(record)
        yield record["distinct_id"], record["$user_operations"]


def _release_body(request: RecordedRequest) -> None:
    """Forget a request's body, once it is answered (a slow one may still be reading it)."""
    if request.answered_at is not None:
        request.body = b""


def _user_not_found(distinct_id: str) -> HubError:
    return HubError(404, f"user '{distinct_id}' not found")


# -- HTTP --------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: HubEmulator) -> None:
        super().__init__(address, _Handler)
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections, whose threads would otherwise outlive the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the client
        connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "SuprsendHubEmulator/1"
    server: _Server

    def _serve(self) -> None:
        request = RecordedRequest(
            self.command, self.path, dict(self.headers.items()), b"", time.monotonic()
        )
        try:
            request.body = self._read_body()
        except HubError as error:  # the connection cannot be read any further
            self.close_connection = True
            self.server.hub._log(request)
            self._send(request, _error_response(error))
            return
        hub = self.server.hub
        page_response = hub._page(request)
        if page_response is not None:
            self._send(request, page_response)
            return
        response = hub._handle(request)
        if response is None:
            self._drop(request)
        else:
            self._send(request, response)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HubError(411, "chunked bodies are not supported: send Content-Length")
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            raise HubError(400, f"invalid Content-Length {length!r}")
        return self.rfile.read(int(length)) if int(length) else b""

    def _send(self, request: RecordedRequest, response: _Response) -> None:
        status, payload, extra, content_type = response
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Server: {self.server_version}",
            f"Date: {signing.http_date()}",
        ]
        if status != 204:
            lines += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
        lines += [f"{name}: {value}" for name, value in extra]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # logged first, so that a client holding the answer finds it in the log
        request.response_body = payload
        request.status = status
        request.answered_at = time.monotonic()
        try:
            self.wfile.write(head + payload)
        except OSError:  # the client gave up (timeout) and went away
            self.close_connection = True

    def _drop(self, request: RecordedRequest) -> None:
        self.close_connection = True
        _shutdown(self.connection)
        request.answered_at = time.monotonic()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log line on stderr."""
