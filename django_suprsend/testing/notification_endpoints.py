"""The notification endpoints: workflow triggers (``trigger/``, legacy ``{workspace}/trigger/``)
and events (``v2/event/``, ``v2/bulk/event/``).

One object is validated whole: a bad one is answered 4xx with
``{"code", "message", "error": {"message", "type"}}`` (the SDK reads
``error.message``). An array is a bulk request: at most 100 records whose
apparent sizes add up to 800 KB at most (else 400 / 413 for all of it); each
record is then judged alone, and the answer is 202, or 207 when one failed,
with ``{"records": [{"status": "success", "message_id", "status_code": 202} |
{"status": "error", "status_code", "error": {"message", "type"}}]}`` in order.

A record carrying an ``$idempotency_key`` already applied (for its kind, within
24 hours on the hub's clock) is answered as a success, with the first one's
``message_id``, and not applied again.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from django_suprsend.testing.notification_checks import (
    MAX_BULK_RECORDS,
    MAX_REQUEST_BYTES,
    event_error,
    event_size,
    legacy_workflow_error,
    workflow_error,
    workflow_size,
)
from django_suprsend.testing.notifications import (
    IDEMPOTENCY_WINDOW,
    Kind,
    Notification,
    matches,
)
from django_suprsend.testing.recorded import RecordedRequest
from django_suprsend.testing.records import HubError, parse_json
from django_suprsend.testing.responses import Response, Route, json_response
from django_suprsend.testing.state import HubState

__all__ = ["NotificationEndpoints", "error_type"]

Record = dict[str, Any]
_ERROR_TYPES = {
    400: "ValidationError",
    401: "AuthenticationFailed",
    403: "PermissionDenied",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "ValidationError",
    429: "Throttled",
}


def error_type(status: int) -> str:
    """The ``error.type`` the hub names for a status."""
    return _ERROR_TYPES.get(status, "ServerError" if status >= 500 else "Error")


class _RecordError(Exception):
    """What one record is answered instead of being applied."""

    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.type = type_ or error_type(status)

    def hub_error(self) -> HubError:
        return HubError(
            self.status, self.message, error={"message": self.message, "type": self.type}
        )

    def record(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type}
        return {"status": "error", "status_code": self.status, "error": error}


@dataclass(frozen=True)
class _Spec:
    """One kind of notification body: how to check it, size it and read it."""

    kind: Kind
    noun: str  # as the SDK names it in its size error
    error: Callable[[Any, Collection[str]], str | None]
    size: Callable[[Any], int]
    name_key: str
    recipients_key: str | None  # None: the record's own distinct_id

    def recipients(self, record: Record) -> tuple[str, ...]:
        if self.recipients_key is None:
            return (record["distinct_id"],)
        return tuple(i for i in map(_distinct_id, record[self.recipients_key]) if i is not None)

    def data(self, record: Record) -> dict[str, Any]:
        data = record.get("properties" if self.kind == "event" else "data")
        return data if isinstance(data, dict) else {}


_WORKFLOW = _Spec(
    "workflow",
    "workflow body",
    lambda b, e: workflow_error(b),
    workflow_size,
    "workflow",
    "recipients",
)
_LEGACY = _Spec(
    "workflow",
    "workflow body",
    lambda b, e: legacy_workflow_error(b),
    workflow_size,
    "name",
    "users",
)
_EVENT = _Spec("event", "Event size", event_error, event_size, "event", None)


class NotificationEndpoints:
    def __init__(self, state: HubState) -> None:
        self._state = state

    def routes(self) -> tuple[Route, ...]:
        return (
            Route(re.compile(r"/trigger/"), {"POST": self.trigger}),
            Route(re.compile(r"/v2/event/"), {"POST": self.event}),
            Route(re.compile(r"/v2/bulk/event/"), {"POST": self.bulk_events}),
            Route(re.compile(r"/([^/]+)/trigger/"), {"POST": self.legacy_trigger}),
        )

    def trigger(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        return self._one_or_bulk(request, _WORKFLOW, envs, "trigger/")

    def legacy_trigger(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        workspace = match[1]
        if workspace not in envs:
            expected = " or ".join(repr(env) for env in sorted(envs))
            raise _RecordError(
                404, f"no workspace {workspace!r} at this hub (the path must name {expected})"
            ).hub_error()
        return self._one_or_bulk(request, _LEGACY, envs, f"{workspace}/trigger/")

    def event(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        body = parse_json(request.body)
        if isinstance(body, list):
            raise _RecordError(
                400, "v2/event/ takes one event: send arrays to v2/bulk/event/"
            ).hub_error()
        return self._single(request, _EVENT, body, envs, "v2/event/")

    def bulk_events(
        self, request: RecordedRequest, match: re.Match[str], envs: frozenset[str]
    ) -> Response:
        body = parse_json(request.body)
        if not isinstance(body, list):
            raise _RecordError(400, "v2/bulk/event/ takes a JSON array of events").hub_error()
        return self._bulk(request, _EVENT, body, envs, "v2/bulk/event/")

    def _one_or_bulk(
        self, request: RecordedRequest, spec: _Spec, envs: frozenset[str], path: str
    ) -> Response:
        body = parse_json(request.body)
        if isinstance(body, list):
            return self._bulk(request, spec, body, envs, path)
        return self._single(request, spec, body, envs, path)

    def _single(
        self, request: RecordedRequest, spec: _Spec, body: Any, envs: frozenset[str], path: str
    ) -> Response:
        request.record_count = 1
        try:
            self._check(spec, body, envs)
            size = spec.size(body)
            if size > MAX_REQUEST_BYTES:
                raise _RecordError(413, f"{spec.noun} too big - {size} Bytes, must not cross 800KB")
            message_id = self._apply(spec, body, path)
        except _RecordError as error:
            raise error.hub_error() from None
        return json_response(202, {"success": True, "message_id": message_id})

    def _bulk(
        self,
        request: RecordedRequest,
        spec: _Spec,
        records: list[Any],
        envs: frozenset[str],
        path: str,
    ) -> Response:
        request.record_count = len(records)
        if not records:
            raise _RecordError(400, "the request holds no records").hub_error()
        if len(records) > MAX_BULK_RECORDS:
            raise _RecordError(
                413, f"{len(records)} records in one request; at most {MAX_BULK_RECORDS}"
            ).hub_error()
        total = sum(map(spec.size, records))
        if total > MAX_REQUEST_BYTES:
            raise _RecordError(
                413,
                f"records total {total} bytes (the SDK's apparent sizes); a request must not "
                f"exceed {MAX_REQUEST_BYTES} bytes",
            ).hub_error()
        answers = []
        for record in records:
            try:
                self._check(spec, record, envs)
                message_id = self._apply(spec, record, path)
            except _RecordError as error:
                answers.append(error.record())
            else:
                answers.append({"status": "success", "message_id": message_id, "status_code": 202})
        failed = any(answer["status"] == "error" for answer in answers)
        return json_response(207 if failed else 202, {"records": answers})

    def _check(self, spec: _Spec, record: Any, envs: frozenset[str]) -> None:
        error = spec.error(record, envs)
        if error is not None:
            raise _RecordError(400, error)
        with self._state.lock:
            rules = list(self._state.notification_rules)
        for rule in rules:
            if matches(rule.match, record):
                raise _RecordError(rule.status, rule.error, rule.error_type)

    def _apply(self, spec: _Spec, record: Record, path: str) -> str:
        """Keep the notification (unless its idempotency key was applied); its message_id."""
        state = self._state
        key = record.get("$idempotency_key") or None
        with state.lock:
            now = state.clock()
            if key is not None:
                state.idempotency_counts[spec.kind, key] += 1
                first = state.idempotency.get((spec.kind, key))
                if first is not None and now - first[0] < IDEMPOTENCY_WINDOW:
                    return first[1]  # a duplicate: answered, not applied
            message_id = str(uuid.uuid4())
            recipients = spec.recipients(record)
            name = record[spec.name_key]
            sequence = state.arrive(recipients, spec.kind, name)
            data = spec.data(record)
            attachments = data.get("$attachments")
            state.notifications.append(
                Notification(
                    kind=spec.kind,
                    name=name,
                    recipients=recipients,
                    actor=_distinct_id(record.get("actor")),
                    data=data,
                    tenant_id=record.get("tenant_id"),
                    idempotency_key=key,
                    attachments=tuple(attachments) if isinstance(attachments, list) else (),
                    message_id=message_id,
                    received_at=now,
                    sequence=sequence,
                    path=path,
                    body=record,
                )
            )
            if key is not None:
                state.idempotency[spec.kind, key] = (now, message_id)
        return message_id


def _distinct_id(user: Any) -> str | None:
    """A recipient's or actor's distinct_id: the string, or the object's (None: transient)."""
    if isinstance(user, str):
        return user
    value = user.get("distinct_id") if isinstance(user, dict) else None
    return value if isinstance(value, str) else None
