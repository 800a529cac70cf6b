"""The data of the emulator's read-only page for people: profiles, notifications, requests.

``build_state`` turns a snapshot of the hub into JSON-able data (served as
``_emulator/state.json``); ``page_html.render_page`` turns that into one
self-contained HTML page. Both are pure: the hub takes the snapshot under its
lock and calls them afterwards.

No request header or request body ever reaches the state, so neither the
Authorization header (signature, API key) nor anything signed with the secret
can show up here; every value is HTML-escaped, since profile values come from users.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from django_suprsend.testing.notifications import Notification
from django_suprsend.testing.recorded import RecordedRequest

PROFILE_LIMIT = 500  # one page stays quick to render and to reload every few seconds
REQUEST_LIMIT = 50
NOTIFICATION_LIMIT = 50
REFRESH_SECONDS = 2
FRESH_SECONDS = 5.0  # a profile updated this recently is highlighted
MAX_ERRORS = 20  # record errors kept per request (a 400 may name all 400 records)

State = dict[str, Any]


# -- state ---------------------------------------------------------------------


def build_state(
    *,
    hub: Mapping[str, Any],
    profiles: Sequence[Mapping[str, Any]],
    profile_total: int,
    requests: Sequence[RecordedRequest],
    request_total: int,
    now: float,
    monotonic_now: float,
    notifications: Sequence[Mapping[str, Any]] = (),
    notification_total: int = 0,
) -> State:
    """The page's data: ``profiles`` newest first (REST shape), ``requests`` and
    ``notifications`` (from ``notification_summary``) newest first.

    ``now`` and ``monotonic_now`` are ``time.time()`` and ``time.monotonic()`` read
    together: they turn the requests' monotonic times into wall-clock times.
    """
    offset = now - monotonic_now
    return {
        "hub": dict(hub),
        "generated_at": _iso(now),
        "refresh_seconds": REFRESH_SECONDS,
        "profiles": {
            "total": profile_total,
            "limit": PROFILE_LIMIT,
            "items": [dict(profile) for profile in profiles],
        },
        "requests": {
            "total": request_total,
            "limit": REQUEST_LIMIT,
            "items": [request_summary(request, offset) for request in reversed(requests)],
        },
        "notifications": {
            "total": notification_total,
            "limit": NOTIFICATION_LIMIT,
            "items": [dict(item) for item in reversed(notifications)],
        },
    }


def notification_summary(
    notification: Notification, profile_before: Mapping[str, bool]
) -> dict[str, Any]:
    """One applied notification as the page lists it; ``profile_before`` tells, per
    recipient, whether an edit of its profile arrived before it. No data values."""
    return {
        "sequence": notification.sequence,
        "time": _iso(notification.received_at),
        "kind": notification.kind,
        "name": notification.name,
        "path": notification.path,
        "recipients": [
            {"distinct_id": r, "profile_before": profile_before.get(r, False)}
            for r in notification.recipients
        ],
        "actor": notification.actor,
        "tenant_id": notification.tenant_id,
        "idempotency_key": notification.idempotency_key,
        "attachments": len(notification.attachments),
        "message_id": notification.message_id,
    }


def request_summary(request: RecordedRequest, wall_offset: float) -> dict[str, Any]:
    """One request as the page lists it: method, path, records and outcome; no headers or body."""
    status = request.status  # read once: the server thread sets it
    answered_at = request.answered_at
    records = request.record_count
    if records is None:
        records = _count_records(request)
    body = _parse(request.response_body)
    answers = _record_answers(body)
    if status is not None:
        outcome = "ok" if status < 400 else "error"
        if answers is not None and any(a.get("status") != "success" for a in answers):
            outcome = "partial"  # a 207: each record of a bulk notification request alone
    else:
        outcome = "pending" if answered_at is None else "dropped"
    succeeded = failed = None
    if answers is not None and outcome != "error":
        succeeded = sum(1 for answer in answers if answer.get("status") == "success")
        failed = len(answers) - succeeded
    elif records is not None and outcome != "pending":
        # otherwise the hub applies all of a request's records or none of them
        succeeded = records if outcome == "ok" else 0
        failed = records - succeeded
    message = None
    if outcome == "error":
        message = body.get("message") if isinstance(body, dict) else _text(request.response_body)
    errors = _record_errors(body) if outcome in ("error", "partial") else []
    return {
        "time": _iso(request.received_at + wall_offset),
        "duration_ms": None
        if answered_at is None
        else round((answered_at - request.received_at) * 1000, 1),
        "method": request.method,
        "path": request.path,
        "records": records,
        "status": status,
        "outcome": outcome,
        "succeeded": succeeded,
        "failed": failed,
        "message": message if message is None else str(message),
        "errors": errors[:MAX_ERRORS],
        "errors_total": len(errors),
    }


def _count_records(request: RecordedRequest) -> int | None:
    """The records of a request the hub did not count (a fault answered it first)."""
    path = request.path.partition("?")[0]
    if request.method != "POST" or not path.endswith(("/event/", "/trigger/")):
        return None
    body = _parse(request.body)  # read only to count: the request body is never shown
    return len(body) if isinstance(body, list) else 1 if isinstance(body, dict) else None


def _parse(body: bytes | None) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _text(body: bytes | None) -> str | None:
    return body.decode("utf-8", "replace")[:500] if body else None


def _record_answers(body: Any) -> list[dict[str, Any]] | None:
    """The per-record answers of a bulk notification request (``{"records": [{"status"...``)."""
    items = body.get("records") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return None
    if not all(isinstance(item, dict) and "status" in item for item in items):
        return None
    return items


def _record_errors(body: Any) -> list[dict[str, Any]]:
    """The records an answer named: a 4xx's ``{"records": [{"index", "distinct_id", ...}]}``,
    or the failed ones of a 207 (``{"status": "error", "error": {"message"}}``, by position)."""
    named = body.get("records") if isinstance(body, dict) else None
    if not isinstance(named, list):
        return []
    errors = []
    for position, item in enumerate(named):
        if not isinstance(item, dict) or item.get("status") == "success":
            continue
        error = item.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if error is None and "size" in item:
            error = f"{item['size']} bytes: over the record size limit"
        errors.append(
            {
                "index": item.get("index", position),
                "distinct_id": item.get("distinct_id"),
                "error": None if error is None else str(error),
            }
        )
    return errors


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")
