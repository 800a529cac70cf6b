"""HTTP client of the SuprSend hub: signing, exact JSON bytes, timeouts, retries.

It sends what the official SDK sends, byte for byte (see ``PROTOCOL.md``
and the vectors), and adds what the SDK lacks: timeouts, retries with
backoff and ``Retry-After``, and a bulk send that isolates the records a
hub rejects instead of failing their neighbours.

Secrets (workspace secret, API key) never appear in ``repr``, logs,
exception messages or ``failed_records``.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from django_suprsend.exceptions import (
    SuprsendTransportError,
    SuprsendValidationError,
)
from django_suprsend.wire import notification_bulk as nb
from django_suprsend.wire import signing
from django_suprsend.wire.answers import (
    _decode,
    _error_class,
    _retry_after,
)
from django_suprsend.wire.bulk import NOT_SENT_CODE, BulkResponse, Record, chunk_records
from django_suprsend.wire.bulk_send import _BulkSender, send_ahead
from django_suprsend.wire.config import (
    DEFAULT_BASE_URL,
    _auth_mode,
    _normalise_base_url,
    _positive,
    _require_workspace_key,
    _Secret,
    default_client_user_agent,
    default_user_agent,
)
from django_suprsend.wire.operations import ProfileEdit
from django_suprsend.wire.records import build_record as _build_record
from django_suprsend.wire.records import dumps
from django_suprsend.wire.retry import RetryPolicy, is_retryable_status

logger = logging.getLogger("django_suprsend.wire.client")

_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
# The request went out and no answer came back: it may have been applied.
_UNSAFE_TO_REPEAT = ("ReadTimeout", "ChunkedEncodingError")


class SuprsendClient:
    """A connection to one SuprSend workspace.

    HMAC mode: ``SuprsendClient(workspace_key, workspace_secret)``.
    API key mode: ``SuprsendClient(workspace_uid, api_key=...)`` (the
    workspace UID then goes where the key would, e.g. ``env`` in records).

    ``base_url`` may carry a path prefix (a proxy); every request gets the
    connect and read timeouts, and transient failures are retried as
    ``retry`` says. ``user_agent`` and ``client_user_agent`` replace the
    ``User-Agent`` and ``X-Suprsend-Client-User-Agent`` values (and the
    ``$ss_sdk_version`` of built records). A ``session`` given by the
    caller is used as it is and left open by :meth:`close`.

    Tests may replace three callables on an instance: ``http_date``
    (returns the ``Date`` header), ``sleep`` (waits between attempts) and
    ``clock`` (monotonic seconds, for the retry budget).
    """

    def __init__(
        self,
        workspace_key: str,
        workspace_secret: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        user_agent: str | None = None,
        client_user_agent: str | None = None,
        session: requests.Session | None = None,
        pool_maxsize: int = 10,
    ) -> None:
        self.workspace_key = _require_workspace_key(workspace_key)
        self.auth_mode, secret = _auth_mode(workspace_secret, api_key)
        self._secret = _Secret(secret)
        self.base_url = _normalise_base_url(base_url)
        self._base_path = urlsplit(self.base_url).path
        self.timeout = (
            _positive(connect_timeout, "connect_timeout"),
            _positive(read_timeout, "read_timeout"),
        )
        self.retry = retry or RetryPolicy()
        self.user_agent = user_agent or default_user_agent()
        self.client_user_agent = client_user_agent or default_client_user_agent()
        self.http_date: Callable[[], str] = signing.http_date
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic
        self._owns_session = session is None
        self._pool_maxsize = pool_maxsize
        self._session = session or _new_session(self.base_url, pool_maxsize)
        if self._owns_session:
            _own_pools.add(self)

    def _new_pool_after_fork(self) -> None:
        """In a forked process (a Celery prefork worker, a ``--jobs`` backfill): a pool of
        its own, since the inherited one's sockets are the parent's too."""
        self._session = _new_session(self.base_url, self._pool_maxsize)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, "
            f"workspace_key={self.workspace_key!r}, auth_mode={self.auth_mode!r})"
        )

    __str__ = __repr__

    def __enter__(self) -> SuprsendClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless the session was given by the caller)."""
        if self._owns_session:
            self._session.close()

    # -- records -----------------------------------------------------------

    def build_record(
        self,
        distinct_id_or_edit: str | ProfileEdit,
        operations: list[dict[str, Any]] | None = None,
        *,
        insert_id: str | None = None,
        tenant_id: str | None = None,
        time_ms: int | None = None,
    ) -> Record:
        """An async-edit record for this workspace (``env``) and user agent.

        Pass a :class:`ProfileEdit` (which carries its own tenant), or a
        distinct_id with its list of operations.
        """
        if isinstance(distinct_id_or_edit, ProfileEdit):
            if tenant_id is not None:
                reason = "cannot be given with a ProfileEdit, which carries its own"
                raise SuprsendValidationError("tenant_id", tenant_id, reason)
            return distinct_id_or_edit.to_record(
                env=self.workspace_key,
                sdk_version=self.user_agent,
                insert_id=insert_id,
                time_ms=time_ms,
            )
        return _build_record(
            distinct_id_or_edit,
            operations or [],
            env=self.workspace_key,
            sdk_version=self.user_agent,
            insert_id=insert_id,
            time_ms=time_ms,
            tenant_id=tenant_id,
        )

    def send_records(
        self, records: Iterable[Record], *, split_oversize: bool = False
    ) -> BulkResponse:
        """Send async-edit records (``POST event/``) in as few requests as the limits allow.

        Never raises for what the hub answers: each record ends up either
        delivered or in ``failed_records`` (see :class:`BulkResponse`).
        Records over 10 KB are not sent, as by the SDK; with ``split_oversize`` a
        profile edit over 10 KB goes instead in several records, each under its own
        ``$insert_id`` (see ``BulkResponse.parts``), and only a value that fits in no
        record is left out (``BulkResponse.refused_values``). A chunk rejected with a permanent
        4xx is split in halves until the records at fault are isolated.
        After ``401``/``403`` nothing more is sent. After a chunk has used
        up its retries, the next chunks get one attempt each until one is
        accepted, so that a hub that is down does not hold the caller for
        the full retry budget once per chunk.

        Requests go one at a time, in order, from a worker thread, while
        the next one is prepared from ``records``; ``records`` itself is
        only ever iterated in the caller's thread (a queryset is safe).
        """
        not_sent = BulkResponse()

        def reject(record: Record, reason: str) -> None:
            not_sent.merge(BulkResponse.failed([record], reason, NOT_SENT_CODE, unsent=True))

        def split(record: Record, parts: list[Record], refused: list[Any]) -> None:
            insert_id = record.get("$insert_id")
            not_sent.parts.update((part["$insert_id"], insert_id) for part in parts[1:])
            if refused:
                not_sent.refused_values[insert_id] = refused

        sent = BulkResponse()
        chunks = chunk_records(records, reject, split if split_oversize else None)
        for outcome in send_ahead(_BulkSender(self).send, chunks):
            sent.merge(outcome)
        # Like the SDK: records that could not be sent come first.
        not_sent.merge(sent)
        return not_sent

    # -- notifications (django_suprsend.wire.notification_bulk) -----------------
    def build_event(self, distinct_id: str, event: str, props: Any = None, **kw: Any) -> Record:
        """An event record for this workspace and user agent (see ``events.build_event``)."""
        return nb.event_for(self, distinct_id, event, props, **kw)

    def trigger_workflows(self, records: nb.Keyed) -> nb.NotificationResponse:
        """Workflow triggers in bulk (``POST trigger/``, arrays of at most 100)."""
        return nb.send(self, nb.WORKFLOWS, records)

    def send_events(self, records: nb.Keyed) -> nb.NotificationResponse:
        """Events in bulk (``POST v2/bulk/event/``, arrays of at most 100)."""
        return nb.send(self, nb.EVENTS, records)

    def trigger_legacy_workflows(self, records: nb.Keyed) -> nb.NotificationResponse:
        """Legacy workflows (``POST {workspace_key}/trigger/``, arrays of at most 100)."""
        return nb.send(self, nb.LEGACY_WORKFLOWS, records)

    def trigger_workflow(self, record: Record) -> nb.NotificationResponse:
        """One workflow trigger, as a single object (``POST trigger/``)."""
        return nb.send(self, nb.WORKFLOW, [record])

    def track_event(self, record: Record) -> nb.NotificationResponse:
        """One event, as a single object (``POST v2/event/``)."""
        return nb.send(self, nb.EVENT, [record])

    def trigger_legacy_workflow(self, record: Record) -> nb.NotificationResponse:
        """One legacy workflow, as a single object (``POST {workspace_key}/trigger/``)."""
        return nb.send(self, nb.LEGACY_WORKFLOW, [record])

    # -- users -------------------------------------------------------------

    def edit_user(
        self,
        distinct_id: str,
        operations: list[dict[str, Any]] | ProfileEdit,
        *,
        tenant_id: str | None = None,
    ) -> dict[str, Any]:
        """Apply operations to one profile now (``PATCH v1/user/{id}/``); returns the profile.

        With ``tenant_id`` (or a :class:`ProfileEdit` that has one) the edit
        is scoped to the tenant: ``PATCH v1/user/{id}/tenant/{tenant_id}/``.
        """
        path = _user_path(distinct_id)
        if isinstance(operations, ProfileEdit):
            if operations.distinct_id != _check_id(distinct_id, "distinct_id"):
                reason = f"differs from the ProfileEdit's {operations.distinct_id!r}"
                raise SuprsendValidationError("distinct_id", distinct_id, reason)
            tenant_id = tenant_id or operations.tenant_id
            operations = operations.operations
        if tenant_id is not None:
            path += f"tenant/{_quote_id(tenant_id, 'tenant_id')}/"
        return self.request("PATCH", path, {"operations": operations})

    def get_user(self, distinct_id: str) -> dict[str, Any]:
        """The profile as the hub stores it (``GET v1/user/{id}/``)."""
        return self.request("GET", _user_path(distinct_id))

    def upsert_user(self, distinct_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Create or update a profile from a payload (``POST v1/user/{id}/``)."""
        return self.request("POST", _user_path(distinct_id), payload)

    def delete_user(self, distinct_id: str) -> None:
        """Delete a profile (``DELETE v1/user/{id}/``)."""
        self.request("DELETE", _user_path(distinct_id), "")

    def bulk_delete_users(self, distinct_ids: Iterable[str]) -> dict[str, Any]:
        """Delete several profiles (``DELETE v1/bulk/user/``)."""
        ids = [_check_id(i, "distinct_id") for i in distinct_ids]
        return self.request("DELETE", "v1/bulk/user/", {"distinct_ids": ids})

    # -- transport ---------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request to ``base_url + path`` and return the decoded answer.

        ``body`` ``None`` sends no body, ``""`` an empty one (as the SDK's
        DELETE), anything else its JSON. Transient failures are retried;
        then :class:`SuprsendAuthenticationError` (401/403),
        :class:`SuprsendNotFound` (404), :class:`SuprsendAPIError` (other
        statuses) or :class:`SuprsendTransportError` is raised.
        """
        method = method.upper()
        data = None if body is None else b"" if body == "" else dumps(body).encode("utf-8")
        response = self._send(method, path, data)
        self._raise_for_status(response, method, path)
        return _decode(response, method, self._base_path + path)

    def _send(
        self, method: str, path: str, body: bytes | None, policy: RetryPolicy | None = None
    ) -> requests.Response:
        """One logical request with retries; returns the last answer, whatever its status.

        Raises :class:`SuprsendTransportError` when the last attempt got no answer.
        """
        request_uri = self._base_path + path
        schedule = (policy or self.retry).start(self.clock)
        while True:
            response, outcome = self._attempt(method, path, body)
            if outcome is None:
                return response
            if outcome.startswith(_UNSAFE_TO_REPEAT) and method == "PATCH":
                # The hub may have applied the edit; a PATCH has no $insert_id to make
                # a second try harmless (an increment would count twice).
                raise SuprsendTransportError(
                    f"SuprSend {method} {request_uri}: {outcome}; the edit may or may not "
                    "have been applied, so it is not sent again"
                )
            wait = schedule.next_wait(None if response is None else _retry_after(response))
            if wait is None:
                return self._give_up(method, request_uri, schedule.attempt, response, outcome)
            logger.warning(
                "SuprSend %s %s: %s on attempt %d of %d; retrying in %.2fs",
                method,
                request_uri,
                outcome,
                schedule.attempt - 1,
                schedule.policy.max_attempts,
                wait,
            )
            self.sleep(wait)

    def _attempt(
        self, method: str, path: str, body: bytes | None
    ) -> tuple[requests.Response | None, str | None]:
        """Send once: the answer (None if there was none) and, if worth another try, why."""
        request_uri = self._base_path + path
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                data=body,
                headers=self._headers(method, request_uri, body),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except _TRANSIENT_ERRORS as exc:
            return None, f"{type(exc).__name__}: {self._secret.scrub(str(exc))}"
        status = response.status_code
        elapsed = response.elapsed.total_seconds()
        logger.debug("SuprSend %s %s: HTTP %d in %.3fs", method, request_uri, status, elapsed)
        return response, f"HTTP {status}" if is_retryable_status(status) else None

    def _give_up(
        self,
        method: str,
        request_uri: str,
        attempts: int,
        response: requests.Response | None,
        outcome: str,
    ) -> requests.Response:
        logger.warning(
            "SuprSend %s %s: %s; giving up after %d attempt(s)",
            method,
            request_uri,
            outcome,
            attempts,
        )
        if response is not None:
            return response
        raise SuprsendTransportError(
            f"SuprSend {method} {request_uri} failed after {attempts} attempt(s): {outcome}"
        )

    def _headers(self, method: str, request_uri: str, body: bytes | None) -> dict[str, str]:
        """The headers the SDK sets, in its order (the transport adds the rest)."""
        headers = {
            "Content-Type": signing.CONTENT_TYPE,
            "User-Agent": self.user_agent,
            "X-Suprsend-Client-User-Agent": self.client_user_agent,
        }
        if self.auth_mode == "hmac":
            date = self.http_date()
            headers["Date"] = date
            sig = signing.signature(
                self._secret.reveal(), method, body, date=date, request_uri=request_uri
            )
            headers["Authorization"] = f"{self.workspace_key}:{sig}"
        else:
            headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        return headers

    def _error_text(self, response: requests.Response) -> str:
        return self._secret.scrub(response.text)

    def _raise_for_status(self, response: requests.Response, method: str, path: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        error = _error_class(status)
        raise error(status, self._error_text(response), method=method, path=self._base_path + path)


# -- helpers -----------------------------------------------------------------


#: Clients with a pool of their own, which a forked child must not share with its parent.
_own_pools: weakref.WeakSet[SuprsendClient] = weakref.WeakSet()


def _new_pools_after_fork() -> None:
    for client in list(_own_pools):
        client._new_pool_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_new_pools_after_fork)


def _new_session(base_url: str, pool_maxsize: int) -> requests.Session:
    session = requests.Session()
    # No urllib3 retries: the client retries itself, with backoff and a budget.
    adapter = HTTPAdapter(pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # The environment's proxies (HTTPS_PROXY, NO_PROXY...) and CA bundle
    # (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) for the hub, read once: with trust_env
    # requests reads the whole environment again on every request, and would let
    # a ~/.netrc entry for the hub's host replace the signed Authorization header.
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False
    return session


def _check_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SuprsendValidationError(field, value, "must be a non-empty string")
    return value.strip()


def _quote_id(value: str, field: str) -> str:
    """``strip()`` then ``quote(safe="")``, as the SDK puts ids in paths."""
    return quote(_check_id(value, field), safe="")


def _user_path(distinct_id: str) -> str:
    return f"v1/user/{_quote_id(distinct_id, 'distinct_id')}/"
