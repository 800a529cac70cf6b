"""How the hub's answers are read: the exception of a status, a JSON body or a foreign
one (a proxy's HTML page), and ``Retry-After``."""

from __future__ import annotations

from typing import Any

import requests

from django_suprsend.exceptions import (
    SuprsendAPIError,
    SuprsendAuthenticationError,
    SuprsendNotFound,
)
from django_suprsend.wire.retry import parse_retry_after

AUTH_ERRORS = (401, 403)


def _retry_after(response: requests.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def _error_class(status: int) -> type[SuprsendAPIError]:
    if status in AUTH_ERRORS:
        return SuprsendAuthenticationError
    if status == 404:
        return SuprsendNotFound
    return SuprsendAPIError


_FOREIGN_PREVIEW = 200  # characters of a foreign answer kept in the error


def _foreign_answer(response: requests.Response) -> str | None:
    """Why a 2xx answer is not the hub's (its JSON object), or None when it is."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        return None
    preview = response.text[:_FOREIGN_PREVIEW]
    return (
        f"HTTP {response.status_code} whose body is not the hub's JSON answer (a proxy or "
        f"captive portal in the way?), so the records may not have been applied; it began "
        f"{preview!r}"
    )


def _decode(response: requests.Response, method: str, request_uri: str) -> Any:
    """The JSON of a 2xx answer; ``{}`` when it is empty."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        raise SuprsendAPIError(
            response.status_code,
            f"answer is not JSON: {response.text[:200]}",
            method=method,
            path=request_uri,
        ) from None
