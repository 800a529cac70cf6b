"""HMAC request signing, exactly as the official SDK signs (see PROTOCOL.md).

Shared by the client, which signs, and the hub emulator, which verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import formatdate

CONTENT_TYPE = "application/json; charset=utf-8"


def content_md5(method: str, body: bytes | None) -> str:
    """Hex MD5 of the body; empty for GET and for an empty body."""
    if not body or method.upper() == "GET":
        return ""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def string_to_sign(method: str, md5: str, content_type: str, date: str, request_uri: str) -> str:
    return "\n".join((method.upper(), md5, content_type, date, request_uri))


def signature(
    secret: str,
    method: str,
    body: bytes | None,
    *,
    date: str,
    request_uri: str,
    content_type: str = CONTENT_TYPE,
) -> str:
    """Base64 HMAC-SHA256 of the string to sign, keyed with the workspace secret."""
    message = string_to_sign(method, content_md5(method, body), content_type, date, request_uri)
    digest = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def http_date(timestamp: float | None = None) -> str:
    """``Mon, 15 Jan 2024 10:30:00 GMT``: English day and month names whatever the locale."""
    return formatdate(timestamp, usegmt=True)
