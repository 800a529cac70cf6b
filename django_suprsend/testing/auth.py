"""The hub's side of authentication: HMAC signatures (``PROTOCOL.md``) and Bearer API keys.

Written apart from the client's signing on purpose: the emulator verifies what
a client signs, so it must not share the client's code (a bug in one would
hide in both). The scheme, as ``vectors/signatures.json`` pins it down::

    string_to_sign = METHOD \\n md5hex(body) or "" \\n Content-Type \\n Date \\n request URI
    Authorization: <workspace_key>:base64(HMAC-SHA256(secret, string_to_sign))

The MD5 line is empty for a GET and for an empty body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from django_suprsend.testing.recorded import RecordedRequest
from django_suprsend.testing.records import HubError
from django_suprsend.testing.responses import http_date

__all__ = ["Authenticator", "body_md5", "expected_signature", "string_to_sign"]


def body_md5(method: str, body: bytes) -> str:
    """The string to sign's MD5 line: hex MD5 of the body; "" for a GET or an empty body."""
    if not body or method.upper() == "GET":
        return ""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def string_to_sign(method: str, body: bytes, content_type: str, date: str, uri: str) -> str:
    return "\n".join((method.upper(), body_md5(method, body), content_type, date, uri))


def expected_signature(secret: str, signed: str) -> str:
    """Base64 HMAC-SHA256 of a string to sign, keyed with the workspace secret."""
    digest = hmac.new(secret.encode("utf-8"), signed.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Authenticator:
    """Checks a request's ``Authorization``; answers the ``env`` values its records may carry."""

    workspace_key: str
    workspace_secret: str
    api_key: str | None
    workspace_uid: str | None

    def __repr__(self) -> str:  # never the secret or the API key
        return f"<Authenticator workspace_key={self.workspace_key!r}>"

    def envs(self) -> frozenset[str]:
        """Every ``env`` this workspace answers to (auth off: both)."""
        return frozenset({self.workspace_key, self.workspace_uid or self.workspace_key})

    def authenticate(
        self, request: RecordedRequest, max_clock_skew: float | None
    ) -> frozenset[str]:
        header = request.header("Authorization")
        if not header:
            raise HubError(
                401,
                "missing Authorization header: sign the request with the workspace key and "
                "secret, or send 'Bearer <api key>'",
            )
        if header.startswith("Bearer "):
            return self._check_bearer(header.removeprefix("Bearer "))
        return self._check_signature(request, header, max_clock_skew)

    def _check_bearer(self, token: str) -> frozenset[str]:
        if self.api_key is None:
            raise HubError(401, "Bearer authentication is not enabled: this hub has no API key")
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise HubError(401, "the Bearer API key is not this workspace's API key")
        return frozenset({self.workspace_uid or self.workspace_key})

    def _check_signature(
        self, request: RecordedRequest, header: str, max_clock_skew: float | None
    ) -> frozenset[str]:
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
        signed = string_to_sign(request.method, request.body, content_type, date, request.path)
        expected = expected_signature(self.workspace_secret, signed)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HubError(
                401,
                "signature does not match: the hub signed METHOD, MD5 of the body, "
                f"Content-Type, Date and request URI as {signed!r} with the workspace secret",
            )
        _check_date(date, max_clock_skew)
        return frozenset({self.workspace_key})


def _check_date(date: str, allowed: float | None) -> None:
    """401 when the signed ``Date`` is further than ``allowed`` seconds from this clock."""
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
            f"clock ({http_date()}), more than the {allowed:g}s allowed; check the "
            "clock of the machine that signs the requests",
        )
