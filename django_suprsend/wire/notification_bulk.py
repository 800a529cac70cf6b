"""Sending workflow triggers and events: chunks, retries, and each record's outcome.

Records are cut into requests exactly as suprsend-py-sdk 0.20.0 cuts them (at
most 100 records and 819,200 bytes a request, counted as the sum of the
records' sizes: JSON bytes, + 200 for a workflow), each request is sent with
the client's retry policy (whole request, same bytes, so the same
``$idempotency_key`` values), and the hub's answer is mapped back to every
record given, in order, as a :class:`NotificationResult`:

``sent``
    the hub accepted it (``message_id`` where the hub gave one);
``failed_permanent``
    the hub refused this record (per-record error of a ``207``, or a ``4xx``
    for the whole request), or it was refused before sending (invalid, too
    big): sending it again as it is fails again;
``failed_transient``
    no final answer for it: ``429``/``5xx``/no answer once retries ran out,
    credentials refused, a ``2xx`` that is not the hub's JSON, or a ``2xx``
    with no per-record result for it. Send it again later, as it is, under
    the same idempotency key.

See ``docs/notifications_wire.rst`` ("Differences from the SDK").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from django_suprsend.exceptions import SuprsendTransportError, SuprsendValidationError
from django_suprsend.wire.attachments import MAX_BODY_BYTES
from django_suprsend.wire.bulk import Chunk
from django_suprsend.wire.bulk_send import send_ahead
from django_suprsend.wire.events import build_event, check_event
from django_suprsend.wire.notifications import (
    MAX_NOTIFICATIONS_PER_REQUEST,
    WORKFLOW_ALLOWANCE,
    Record,
    check_legacy_workflow,
    check_workflow_trigger,
)
from django_suprsend.wire.records import dumps, iter_chunks
from django_suprsend.wire.retry import is_retryable_status, parse_retry_after

if TYPE_CHECKING:
    import requests

    from django_suprsend.wire.client import SuprsendClient

logger = logging.getLogger("django_suprsend.wire.notification_bulk")

SENT = "sent"
FAILED_PERMANENT = "failed_permanent"
FAILED_TRANSIENT = "failed_transient"
_AUTH_ERRORS = (401, 403)

#: Records as given to a send: plain records (keyed by their position) or ``(key, record)``.
Keyed = Iterable[Record] | Iterable[tuple[Hashable, Record]]


@dataclass(frozen=True)
class NotificationResult:
    """The outcome of one record given to a send.

    ``key`` is the caller's key (or the record's position), ``status`` one of
    ``sent``, ``failed_permanent``, ``failed_transient``; ``http_status`` the
    status the hub gave for the record (its per-record ``status_code`` where
    there is one), None when none came (refused before sending, no answer).
    """

    key: Hashable
    status: str
    message_id: str | None = None
    error: str | None = None
    http_status: int | None = None

    @property
    def sent(self) -> bool:
        return self.status == SENT

    @property
    def retryable(self) -> bool:
        return self.status == FAILED_TRANSIENT


@dataclass(repr=False)
class NotificationResponse:
    """Every record's :class:`NotificationResult`, in the order given, and the counts.

    ``response[key]`` is one record's result; ``retry_after`` the longest
    ``Retry-After`` (seconds) of a request given up on, or None.
    """

    results: list[NotificationResult] = field(default_factory=list)
    retry_after: float | None = None

    def _count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def sent(self) -> int:
        return self._count(SENT)

    @property
    def failed_permanent(self) -> int:
        return self._count(FAILED_PERMANENT)

    @property
    def failed_transient(self) -> int:
        return self._count(FAILED_TRANSIENT)

    @property
    def status(self) -> str:
        """``success`` (all sent, also when none were given), ``fail`` (none) or ``partial``."""
        sent = self.sent
        return "success" if sent == self.total else "fail" if not sent else "partial"

    def by_key(self) -> dict[Hashable, NotificationResult]:
        return {r.key: r for r in self.results}

    def __getitem__(self, key: Hashable) -> NotificationResult:
        for result in self.results:
            if result.key == key:
                return result
        raise KeyError(key)

    def __iter__(self) -> Iterator[NotificationResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        return (
            f"NotificationResponse<status: {self.status} | total: {self.total} | sent: "
            f"{self.sent} | failed_permanent: {self.failed_permanent} | failed_transient: "
            f"{self.failed_transient}>"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class Endpoint:
    """Where one kind of record goes, how it is checked and how its size is counted."""

    path: str  # may hold {workspace_key}
    check: Callable[[Any], int]
    allowance: int
    bulk: bool  # a JSON array (True) or the single object


WORKFLOWS = Endpoint("trigger/", check_workflow_trigger, WORKFLOW_ALLOWANCE, bulk=True)
WORKFLOW = replace(WORKFLOWS, bulk=False)
EVENTS = Endpoint("v2/bulk/event/", check_event, 0, bulk=True)
EVENT = Endpoint("v2/event/", check_event, 0, bulk=False)
LEGACY_WORKFLOWS = Endpoint(
    "{workspace_key}/trigger/", check_legacy_workflow, WORKFLOW_ALLOWANCE, bulk=True
)
LEGACY_WORKFLOW = replace(LEGACY_WORKFLOWS, bulk=False)


def event_for(
    client: SuprsendClient, distinct_id: str, event: str, properties: Any, **options: Any
) -> Record:
    """:func:`~django_suprsend.wire.events.build_event` for ``client``'s workspace (``env``)
    and user agent (``$ss_sdk_version``)."""
    return build_event(
        distinct_id,
        event,
        properties,
        env=client.workspace_key,
        sdk_version=client.user_agent,
        **options,
    )


def _keyed(records: Keyed) -> list[tuple[Hashable, Record]]:
    """``(key, record)`` for each item: its own key, or its position."""
    out: list[tuple[Hashable, Record]] = []
    for index, item in enumerate(records):
        if isinstance(item, tuple) and len(item) == 2:
            out.append((item[0], item[1]))
        else:
            out.append((index, cast("Record", item)))
    return out


def _result(key: Hashable, status: str, error: str | None, code: int | None) -> NotificationResult:
    return NotificationResult(key, status, error=error, http_status=code)


def send(client: SuprsendClient, endpoint: Endpoint, records: Keyed) -> NotificationResponse:
    """Check, chunk and send ``records`` to ``endpoint``; never raises for the hub's answer.

    Records are checked and serialised while the chunk before them is on the wire
    (one sending thread, see :func:`~django_suprsend.wire.bulk_send.send_ahead`).
    """
    items = _keyed(records)
    if not endpoint.bulk and len(items) != 1:
        raise SuprsendValidationError("records", len(items), "must be exactly one record")
    results: list[NotificationResult | None] = [None] * len(items)
    order: list[int] = []

    def checked() -> Iterator[tuple[Record, str]]:
        for position, (key, record) in enumerate(items):
            try:
                endpoint.check(record)
                text = dumps(record)
            except SuprsendValidationError as exc:
                results[position] = _result(key, FAILED_PERMANENT, f"{exc}; not sent", None)
                continue
            except (TypeError, ValueError) as exc:
                reason = f"record is not JSON serialisable ({exc}); not sent"
                results[position] = _result(key, FAILED_PERMANENT, reason, None)
                continue
            order.append(position)
            yield record, text

    def requests_() -> Iterator[tuple[list[int], list[Record], bytes]]:
        start = 0
        for chunk in iter_chunks(
            checked(),
            max_records=MAX_NOTIFICATIONS_PER_REQUEST,
            max_bytes=MAX_BODY_BYTES,
            max_record_bytes=MAX_BODY_BYTES,
            allowance=endpoint.allowance,
        ):
            positions = order[start : start + len(chunk)]
            start += len(chunk)
            sent = Chunk([pair[0] for pair in chunk], [pair[1] for pair in chunk])
            body = sent.body() if endpoint.bulk else sent.texts[0].encode("utf-8")
            yield positions, sent.records, body

    sender = _Sender(client, endpoint)

    def post(request: tuple[list[int], list[Record], bytes]) -> list[NotificationResult]:
        positions, chunk_records, body = request
        return sender.send([items[p][0] for p in positions], chunk_records, body)

    sent_index = 0
    for chunk_results in send_ahead(post, requests_()):
        for result in chunk_results:
            results[order[sent_index]] = result
            sent_index += 1
    done = [r for r in results if r is not None]
    return NotificationResponse(done, retry_after=sender.retry_after)


class _Sender:
    """Sends the chunks of one call in order; maps each answer to its records."""

    def __init__(self, client: SuprsendClient, endpoint: Endpoint) -> None:
        self.client = client
        self.path = endpoint.path.format(workspace_key=client.workspace_key)
        self.single_attempt = replace(client.retry, max_attempts=1)
        self.degraded = False  # a chunk used up its retries: one attempt each until one works
        self.refused: tuple[str, int] | None = None  # the credentials were refused
        self.retry_after: float | None = None

    def send(
        self, keys: list[Hashable], records: list[Record], body: bytes
    ) -> list[NotificationResult]:
        if self.refused is not None:
            return [_result(k, FAILED_TRANSIENT, *self.refused) for k in keys]
        # Without an idempotency key the hub cannot tell a retry from a new trigger.
        keyed = all(record.get("$idempotency_key") for record in records)
        policy = self.single_attempt if self.degraded or not keyed else None
        try:
            response = self.client._send("POST", self.path, body, policy)
        except SuprsendTransportError as exc:
            self.degraded = True
            return [_result(k, FAILED_TRANSIENT, str(exc), None) for k in keys]
        return self._outcome(keys, response)

    def _outcome(
        self, keys: list[Hashable], response: requests.Response
    ) -> list[NotificationResult]:
        status = response.status_code
        answer = _json(response)
        per_record = answer.get("records") if isinstance(answer, dict) else None
        if 200 <= status < 300:
            if not isinstance(answer, dict):
                self.degraded = True
                reason = (
                    f"HTTP {status} whose body is not the hub's JSON answer (it began "
                    f"{self.client._secret.scrub(response.text[:200])!r}): the records may or "
                    "may not have been accepted; send them again under the same idempotency keys"
                )
                return [_result(k, FAILED_TRANSIENT, reason, status) for k in keys]
            self.degraded = False
            if isinstance(per_record, list):
                return [_per_record(k, i, per_record, status) for i, k in enumerate(keys)]
            if status == 207 or "records" in answer:
                reason = f"HTTP {status} without per-record results: outcome unknown"
                return [_result(k, FAILED_TRANSIENT, reason, status) for k in keys]
            message_id = answer.get("message_id") if len(keys) == 1 else None
            return [NotificationResult(k, SENT, message_id, None, status) for k in keys]
        error = self.client._secret.scrub(_hub_error(answer, response))
        if status in _AUTH_ERRORS:
            error = f"SuprSend refused the credentials (HTTP {status}): {error}"
            self.refused = (error, status)
            return [_result(k, FAILED_TRANSIENT, error, status) for k in keys]
        if is_retryable_status(status):
            self.degraded = True
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is not None:
                self.retry_after = max(self.retry_after or 0.0, wait)
            return [_result(k, FAILED_TRANSIENT, error, status) for k in keys]
        if isinstance(per_record, list):
            return [_per_record(k, i, per_record, status) for i, k in enumerate(keys)]
        return [_result(k, FAILED_PERMANENT, error, status) for k in keys]


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _hub_error(answer: Any, response: requests.Response) -> str:
    """The hub's ``error.message`` where it gave one, else the body's text (as the SDK)."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return response.text[:500]


def _per_record(key: Hashable, index: int, records: list[Any], status: int) -> NotificationResult:
    """The ``index``-th per-record result of an answer, for the record sent at ``index``."""
    if index >= len(records) or not isinstance(records[index], dict):
        reason = (
            f"the hub's answer (HTTP {status}) holds {len(records)} results for more records: "
            "outcome unknown"
        )
        return _result(key, FAILED_TRANSIENT, reason, status)
    record = records[index]
    code = record.get("status_code")
    code = code if isinstance(code, int) else status
    if record.get("status") == "success":
        message_id = record.get("message_id")
        return NotificationResult(
            key, SENT, message_id if isinstance(message_id, str) else None, None, code
        )
    error = record.get("error")
    text = error.get("message") if isinstance(error, dict) else error
    text = str(text) if text is not None else f"the hub refused the record (status {code})"
    outcome = FAILED_TRANSIENT if is_retryable_status(code) else FAILED_PERMANENT
    return _result(key, outcome, text, code)
