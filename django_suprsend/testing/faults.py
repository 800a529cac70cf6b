"""Faults the hub injects: queued ones (fail, delay, drop), each used by one request in order."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django_suprsend.testing.responses import Response, json_response, reason

__all__ = ["DROP", "Delay", "Fail", "Fault", "FaultQueue", "RejectRule", "pause"]


@dataclass(frozen=True)
class Fail:
    status: int
    retry_after: int | str | None
    body: str | bytes | Mapping[str, Any] | None

    def response(self) -> Response:
        headers = () if self.retry_after is None else (("Retry-After", str(self.retry_after)),)
        if self.body is None:
            message = f"injected fault: {self.status} {reason(self.status)}"
            return json_response(self.status, {"code": self.status, "message": message}, headers)
        if isinstance(self.body, Mapping):
            return json_response(self.status, self.body, headers)
        payload = self.body.encode() if isinstance(self.body, str) else self.body
        return Response(self.status, payload, headers, "text/plain; charset=utf-8")


@dataclass(frozen=True)
class Delay:
    seconds: float


class _Drop:
    def __repr__(self) -> str:
        return "drop"


DROP = _Drop()
Fault = Fail | Delay | _Drop


class FaultQueue:
    """The queued faults, shared by the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: collections.deque[Fault] = collections.deque()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def queue(self, fault: Fault, n: int) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def take(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def pause(fault: Fault | None, latency: float) -> None:
    """Wait the hub's latency, plus a delay fault's seconds."""
    seconds = latency + (fault.seconds if isinstance(fault, Delay) else 0.0)
    if seconds > 0:
        time.sleep(seconds)


@dataclass(frozen=True)
class RejectRule:
    """``reject_records``: answer ``status`` to an ``event/`` request holding a matching record."""

    predicate: Callable[[dict[str, Any]], bool]
    status: int
    error: str
