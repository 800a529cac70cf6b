"""The hub's HTTP server: reads each request, hands it to a :class:`Dispatcher`, writes the answer.

HTTP/1.1 with keep-alive, one thread per connection; ``Content-Length`` bodies only.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from django_suprsend.testing.recorded import RecordedRequest
from django_suprsend.testing.records import HubError
from django_suprsend.testing.responses import Response, error_response, http_date, reason

__all__ = ["Dispatcher", "Server"]


class Dispatcher(Protocol):
    """What the server asks of the hub."""

    def log(self, request: RecordedRequest) -> None: ...

    def page(self, request: RecordedRequest) -> Response | None:
        """The page for people (not logged), or None."""

    def handle(self, request: RecordedRequest) -> Response | None:
        """Log and answer a request; None drops the connection."""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher) -> None:
        super().__init__(address, _Handler)
        self.dispatcher = dispatcher
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
    server: Server

    def _serve(self) -> None:
        request = RecordedRequest(
            self.command, self.path, dict(self.headers.items()), b"", time.monotonic()
        )
        dispatcher = self.server.dispatcher
        try:
            request.body = self._read_body()
        except HubError as error:  # the connection cannot be read any further
            self.close_connection = True
            dispatcher.log(request)
            self._send(request, error_response(error))
            return
        page_response = dispatcher.page(request)
        if page_response is not None:
            self._send(request, page_response)
            return
        response = dispatcher.handle(request)
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

    def _send(self, request: RecordedRequest, response: Response) -> None:
        status, payload, extra, content_type = response
        lines = [
            f"HTTP/1.1 {status} {reason(status)}",
            f"Server: {self.server_version}",
            f"Date: {http_date()}",
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
