"""Every error the package raises derives from :class:`SuprsendError`.

Messages name the value and the field at fault and never contain the
workspace secret or API key.
"""

from __future__ import annotations

from typing import Any


class SuprsendError(Exception):
    """Base class of all django-suprsend errors."""


class SuprsendValidationError(SuprsendError, ValueError):
    """A value cannot be sent to SuprSend as it is.

    ``field`` is the SuprSend key (``$email``, ``$preferred_language``, a
    property name...), ``value`` the rejected value and ``reason`` what is
    wrong with it, so callers can store or display each part.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {_short_repr(value)} {reason}")


def error_dict(exc: SuprsendValidationError) -> dict[str, str]:
    """How a refused value is stored on an outbox entry (and shown on the SyncState)."""
    return {"field": exc.field, "value": _short_repr(exc.value), "reason": exc.reason}


class SuprsendConfigurationError(SuprsendError):
    """The client or the app is configured in a way that cannot work."""


class SuprsendDistinctIdChanged(SuprsendError, ValueError):
    """A save would change a profile's distinct_id, which SuprSend never changes.

    Raised before the database write, so the row keeps its old value.
    """


class SuprsendAPIError(SuprsendError):
    """The hub answered a request with an error status.

    ``status_code`` is the HTTP status, ``text`` the start of the body the
    hub returned (never the request, which may carry personal data).
    """

    def __init__(self, status_code: int, text: str, *, method: str = "", path: str = "") -> None:
        self.status_code = status_code
        self.text = text
        self.method = method
        self.path = path
        where = f" for {method} {path}" if method else ""
        super().__init__(f"SuprSend hub answered {status_code}{where}: {text[:500]}")


class SuprsendAuthenticationError(SuprsendAPIError):
    """401/403: the workspace key, secret or API key is wrong."""

    def __init__(self, status_code: int, text: str, *, method: str = "", path: str = "") -> None:
        super().__init__(status_code, text, method=method, path=path)
        where = f" for {method} {path}" if method else ""
        self.args = (
            f"SuprSend hub refused the credentials ({status_code}){where}: {text[:200]}. "
            "Check SUPRSEND WORKSPACE_KEY and WORKSPACE_SECRET (or API_KEY).",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class SuprsendNotFound(SuprsendAPIError):
    """404: the user (or other object) does not exist in the workspace."""


class SuprsendTransportError(SuprsendError):
    """The request could not be completed: connection refused, reset, timeout.

    Raised only after the retry budget is spent.
    """


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
