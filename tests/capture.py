"""Reproduce the vector capture: a recording server, and clients set up like the SDK's.

:class:`RecordingServer` is a tiny HTTP server on 127.0.0.1 that keeps the
method, the raw path, every header in wire order and the raw body, and
answers each request from a script (by default ``202`` with
``{"success": true, "message_id": "msg-1"}``, as the capture server did).
:func:`vector_client` builds a :class:`SuprsendClient` with the capture's
credentials, ``Date`` and user agents, so that it sends the same bytes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.retry import RetryPolicy
from tests.vectors import CREDENTIALS, FIXED_DATE, SDK_USER_AGENT

#: Headers the SDK sets itself (the transport adds Host, Accept*, Connection, Content-Length).
SDK_HEADERS = (
    "Content-Type",
    "User-Agent",
    "X-Suprsend-Client-User-Agent",
    "Date",
    "Authorization",
)
SDK_CLIENT_USER_AGENT = (
    '{"sdk": "suprsend-py-sdk", "sdk_version": "0.20.0", "lang": "python", '
    '"lang_version": "3.11.7", "platform": "server", "os": "linux", "os_version": "6.1.0", '
    '"app_info": null}'
)
DEFAULT_ANSWER = (202, "application/json", '{"success": true, "message_id": "msg-1"}')

Answer = tuple[int, str, str]  # status, content type, body


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class RecordingServer:
    """``with RecordingServer() as server:``; ``server.url``, ``server.requests``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.answer: Callable[[int], Answer] = lambda n: DEFAULT_ANSWER
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def behave(self, description: str) -> None:
        """Answer as a vector's ``server_behaviour`` says."""
        self.answer = parse_behaviour(description)

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _record(self, request: Recorded) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self.answer(len(self.requests))


def _handler_for(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(self.command, self.path, list(self.headers.items()), body)
            status, content_type, text = server._record(recorded)
            payload = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


_RULE = re.compile(r"(?:every request|request #(\d+)|others) -> (\d+)(?: (\S+) '(.*)')?")


def parse_behaviour(description: str) -> Callable[[int], Answer]:
    """``"every request -> 202"``, ``"request #2 -> 500 text/plain 'x'; others -> 202"``..."""
    specific: dict[int, Answer] = {}
    default = DEFAULT_ANSWER
    for clause in description.split("; "):
        match = _RULE.fullmatch(clause.strip())
        if match is None:
            raise ValueError(f"unknown server behaviour: {clause!r}")
        number, status, content_type, body = match.groups()
        answer = (int(status), content_type or DEFAULT_ANSWER[1], body or DEFAULT_ANSWER[2])
        if number:
            specific[int(number)] = answer
        else:
            default = answer
    return lambda n: specific.get(n, default)


def vector_client(kind: str, url: str) -> SuprsendClient:
    """A client like the capture's ``hmac``, ``hmac_prefixed``, ``hmac_dead`` or ``bearer`` one.

    It does not retry: the SDK never does, and the vectors record one
    request per chunk whatever the answer.
    """
    common = {
        "user_agent": SDK_USER_AGENT,
        "client_user_agent": SDK_CLIENT_USER_AGENT,
        "retry": RetryPolicy(max_attempts=1),
        "connect_timeout": 2.0,
        "read_timeout": 10.0,
    }
    if kind == "bearer":
        client = SuprsendClient(
            CREDENTIALS["workspace_uid"], api_key=CREDENTIALS["api_key"], base_url=url, **common
        )
    else:
        base_url = url + "proxy/suprsend" if kind == "hmac_prefixed" else url
        client = SuprsendClient(
            CREDENTIALS["workspace_key"],
            CREDENTIALS["workspace_secret"],
            base_url=base_url,
            **common,
        )
    client.http_date = lambda: FIXED_DATE
    return client


def sdk_headers(headers: dict[str, str] | list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The SDK-set headers (and Content-Length), in wire order."""
    items = headers.items() if isinstance(headers, dict) else headers
    return [(k, v) for k, v in items if k in SDK_HEADERS or k == "Content-Length"]


_USER_PATH = re.compile(r"v1/user/([^/]+)/(?:tenant/([^/]+)/)?")


def user_of(client: SuprsendClient, path: str) -> tuple[str, str | None]:
    """The distinct_id and tenant_id in a captured ``v1/user/...`` path."""
    match = _USER_PATH.fullmatch(path.removeprefix(urlsplit(client.base_url).path))
    assert match is not None, path
    return unquote(match[1]), unquote(match[2]) if match[2] else None
