"""HTTP client of the SuprSend hub: signing, exact JSON bytes, timeouts, retries.

It sends what the official SDK sends, byte for byte (see ``PROTOCOL.md``
and the vectors), and adds what the SDK lacks: timeouts, retries with
backoff and ``Retry-After``, and a bulk send that isolates the records a
hub rejects instead of failing their neighbours.

Secrets (workspace secret, API key) never appear in ``repr``, logs,
exception messages or ``failed_records``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from django_suprsend import __version__
from django_suprsend.exceptions import (
    SuprsendAPIError,
    SuprsendAuthenticationError,
    SuprsendConfigurationError,
    SuprsendNotFound,
    SuprsendTransportError,
    SuprsendValidationError,
)
from django_suprsend.wire import notification_bulk as nb
from django_suprsend.wire import signing
from django_suprsend.wire.bulk import NOT_SENT_CODE, BulkResponse, Chunk, Record, chunk_records
from django_suprsend.wire.operations import ProfileEdit, dumps
from django_suprsend.wire.operations import build_record as _build_record
from django_suprsend.wire.retry import RetryPolicy, is_retryable_status, parse_retry_after

logger = logging.getLogger("django_suprsend.wire.client")

DEFAULT_BASE_URL = "https://hub.suprsend.com/"
AUTH_ERRORS = (401, 403)
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_MASK = "********"
# No real workspace secret or API key is this short: a shorter one is masked only where it
# stands as a whole token, never as a bare substring of other words (a secret "s" would
# otherwise mask every letter s of a log line). checks.W004 warns about such a credential.
MIN_CREDENTIAL_LENGTH = 12
# The request went out and no answer came back: it may have been applied.
_UNSAFE_TO_REPEAT = ("ReadTimeout", "ChunkedEncodingError")


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
        for outcome in _send_ahead(_BulkSender(self).send, chunks):
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


class _BulkSender:
    """Sends the chunks of one :meth:`SuprsendClient.send_records` call, in order."""

    def __init__(self, client: SuprsendClient) -> None:
        self.client = client
        self.single_attempt = replace(client.retry, max_attempts=1)
        self.degraded = False
        self.refused: tuple[str, int] | None = None  # the error and status of a 401/403

    def send(self, chunk: Chunk) -> BulkResponse:
        if self.refused is not None:
            return BulkResponse.failed(chunk.records, *self.refused)
        policy = self.single_attempt if self.degraded else None
        try:
            response = self.client._send("POST", "event/", chunk.body(), policy)
        except SuprsendTransportError as exc:
            self.degraded = True
            return BulkResponse.failed(
                chunk.records, str(exc), NOT_SENT_CODE, retryable=True, unsent=True
            )
        return self._outcome(chunk, response)

    def _outcome(self, chunk: Chunk, response: requests.Response) -> BulkResponse:
        status = response.status_code
        if 200 <= status < 300:
            foreign = _foreign_answer(response)
            if foreign is None:
                self.degraded = False
                return BulkResponse.delivered(chunk.records)
            # Not the hub's answer (a proxy's or captive portal's page): nothing says the
            # records were applied, so they go again later under the same $insert_ids.
            self.degraded = True
            return BulkResponse.failed(
                chunk.records, self.client._secret.scrub(foreign), status, retryable=True
            )
        text = self.client._error_text(response)
        if status in AUTH_ERRORS:
            path = self.client._base_path + "event/"
            error = str(SuprsendAuthenticationError(status, text, method="POST", path=path))
            self.refused = (error, status)
            return BulkResponse.failed(chunk.records, *self.refused)
        if is_retryable_status(status):
            self.degraded = True
            outcome = BulkResponse.failed(chunk.records, text, status, retryable=True)
            outcome.retry_after = _retry_after(response)
            return outcome
        if len(chunk) == 1:
            return BulkResponse.failed(chunk.records, text, status)
        return self._bisect(chunk, status)

    def _bisect(self, chunk: Chunk, status: int) -> BulkResponse:
        logger.info(
            "SuprSend POST event/: HTTP %d for %d records; splitting to find the ones at fault",
            status,
            len(chunk),
        )
        left, right = chunk.split()
        outcome = self.send(left)
        outcome.merge(self.send(right))
        return outcome


def _send_ahead(
    send: Callable[[Chunk], BulkResponse], chunks: Iterator[Chunk]
) -> Iterator[BulkResponse]:
    """``send(chunk)`` for each chunk, in order, while the next chunk is being prepared.

    One worker thread sends; this thread produces the chunks, so that
    serialisation overlaps the round trip to the hub. At most one chunk
    waits while another is in flight.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suprsend-send")
    try:
        in_flight: Future[BulkResponse] | None = None
        for chunk in chunks:
            queued = pool.submit(send, chunk)
            if in_flight is not None:
                yield in_flight.result()
            in_flight = queued
        if in_flight is not None:
            yield in_flight.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- helpers -----------------------------------------------------------------


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
