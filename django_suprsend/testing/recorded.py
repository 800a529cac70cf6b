"""The hub's log of requests: one :class:`RecordedRequest` per request received."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["RecordedRequest", "release_body"]


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
    record_count: int | None = None  # records in an event/ (or bulk) body
    response_body: bytes | None = None  # the body answered (None: dropped or pending)

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header by case-insensitive name."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), default)


def release_body(request: RecordedRequest) -> None:
    """Forget a request's body, once it is answered (a slow one may still be reading it)."""
    if request.answered_at is not None:
        request.body = b""
