"""What an endpoint answers (:class:`Response`) and how a path reaches it (:class:`Route`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, NamedTuple

from django_suprsend.testing.recorded import RecordedRequest
from django_suprsend.testing.records import HubError

__all__ = ["Endpoint", "Response", "Route", "error_response", "http_date", "json_response"]


class Response(NamedTuple):
    status: int
    payload: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


#: An endpoint: the request, its path's match and the ``env`` values its auth allows.
Endpoint = Callable[[RecordedRequest, re.Match[str], frozenset[str]], Response]


class Route(NamedTuple):
    pattern: re.Pattern[str]
    methods: Mapping[str, Endpoint]
    auth: bool = True


def json_response(status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, json.dumps(body, ensure_ascii=False).encode(), headers)


def error_response(error: HubError) -> Response:
    return json_response(error.status, error.body())


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def http_date(timestamp: float | None = None) -> str:
    """``Mon, 15 Jan 2024 10:30:00 GMT``: English names whatever the locale."""
    return formatdate(timestamp, usegmt=True)
