"""What a client is built from: the credentials (kept out of every repr, log and error),
the auth mode, the base URL, and the user agents it sends."""

from __future__ import annotations

import json
import platform
import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django_suprsend import __version__
from django_suprsend.exceptions import (
    SuprsendConfigurationError,
)

DEFAULT_BASE_URL = "https://hub.suprsend.com/"
_MASK = "********"


# No real workspace secret or API key is this short: a shorter one is masked only where it
# stands as a whole token, never as a bare substring of other words (a secret "s" would
# otherwise mask every letter s of a log line). checks.W004 warns about such a credential.
MIN_CREDENTIAL_LENGTH = 12


class _Secret:
    """A credential that does not show itself in ``repr``, ``str`` or ``vars()``."""

    __slots__ = ("_token", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._token = (
            None
            if len(value) >= MIN_CREDENTIAL_LENGTH
            else re.compile(rf"(?<![\w.~+/=-]){re.escape(value)}(?![\w.~+/=-])")
        )

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with the secret masked wherever it stands in it.

        A credential of a real length is masked wherever it occurs; a shorter one only
        where it is a whole token (delimited as a header value, a JSON string or a word).
        """
        if not self._value or self._value not in text:
            return text
        if self._token is None:
            return text.replace(self._value, _MASK)
        return self._token.sub(_MASK, text)

    def __repr__(self) -> str:
        return repr(_MASK)

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials cannot be pickled")


@cache
def _platform() -> tuple[str, str, str]:
    """Python version, OS name and OS release, as the SDK reports them."""
    try:
        uname = platform.uname()
        system, release = (uname.system or "").lower(), (uname.release or "").lower()
    except Exception:  # pragma: no cover - platform lookups are best effort
        system, release = "(disabled)", "(disabled)"
    return platform.python_version(), system, release


def default_user_agent() -> str:
    """``django-suprsend/<version> (python/<x.y.z>; <os>)``."""
    python, system, _ = _platform()
    return f"django-suprsend/{__version__} (python/{python}; {system})"


def default_client_user_agent() -> str:
    """The JSON ``X-Suprsend-Client-User-Agent``, shaped like the SDK's, naming this package."""
    python, system, release = _platform()
    return json.dumps(
        {
            "sdk": "django-suprsend",
            "sdk_version": __version__,
            "lang": "python",
            "lang_version": python,
            "platform": "server",
            "os": system,
            "os_version": release,
            "app_info": None,
        }
    )


def _require_workspace_key(workspace_key: str) -> str:
    if not isinstance(workspace_key, str) or not workspace_key.strip():
        raise SuprsendConfigurationError(
            "SuprsendClient needs the workspace key (HMAC mode) or the workspace UID "
            "(API key mode) as its first argument; set SUPRSEND WORKSPACE_KEY."
        )
    return workspace_key.strip()


def _auth_mode(workspace_secret: str | None, api_key: str | None) -> tuple[str, str]:
    if workspace_secret and api_key:
        raise SuprsendConfigurationError(
            "Give SuprsendClient either workspace_secret (HMAC signing) or api_key "
            "(Bearer token), not both."
        )
    if workspace_secret:
        return "hmac", workspace_secret
    if api_key:
        return "bearer", api_key
    raise SuprsendConfigurationError(
        "SuprsendClient has no credentials: pass workspace_secret (with the workspace key) "
        "or api_key (with the workspace UID); set SUPRSEND WORKSPACE_SECRET or API_KEY."
    )


def _normalise_base_url(base_url: str) -> str:
    url = (base_url or "").strip() or DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SuprsendConfigurationError(
            f"base_url must be an http(s) URL without query or fragment, got {base_url!r}"
        )
    return url if url.endswith("/") else url + "/"


def _positive(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not value > 0:
        raise SuprsendConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")
    return value
