"""``trigger()`` and ``track_event()``: notifications through the outbox.

Each writes one outbox entry in the caller's transaction (nothing is sent if it
rolls back, a savepoint's included) and returns a :class:`Queued` handle. The
workers send it after its commit, and only once every profile change of its
recipients queued before it has its outcome; retries go under the same
``$idempotency_key``, so the hub notifies once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import router

from django_suprsend.conf import suprsend_settings
from django_suprsend.delivery.enqueue import enqueue_notification
from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.models import OutboxEntry
from django_suprsend.notifications import arguments as a
from django_suprsend.wire.config import default_user_agent
from django_suprsend.wire.events import build_event
from django_suprsend.wire.notifications import build_workflow_trigger

__all__ = ["Queued", "track_event", "trigger"]

Kind = OutboxEntry.Kind


@dataclass(frozen=True)
class Queued:
    """A queued notification: its key (the hub ignores a repeat of it for 24 hours) and
    its outbox entry (``Notification.objects.get(pk=queued.outbox_id)`` tells its fate)."""

    idempotency_key: str
    outbox_id: int
    kind: str
    name: str


def trigger(
    workflow: str,
    recipients: Any,
    data: dict[str, Any] | None = None,
    *,
    actor: Any = None,
    tenant_id: str | None = None,
    idempotency_key: str | None = None,
    cancellation_key: str | None = None,
    attachments: Iterable[Any] = (),
    metadata: dict[str, Any] | None = None,
    using: str | None = None,
) -> Queued:
    """Queue a workflow trigger (``POST trigger/``) for ``recipients``.

    ``recipients`` (and ``actor``): model instances with the mixin, distinct_ids, or
    dicts with inline channels as the hub accepts them (``{"distinct_id": "42",
    "$email": ["a@example.com"]}``); one or a list. ``data`` and ``metadata`` go as
    JSON by :class:`~django.core.serializers.json.DjangoJSONEncoder`'s rules.
    """
    if not isinstance(workflow, str) or not workflow.strip():
        raise SuprsendValidationError("workflow", workflow, "is missing: give the workflow's slug")
    people = a.recipients(recipients)
    body: dict[str, Any] = {"workflow": workflow, "recipients": people}
    if actor is not None:
        body["actor"] = a.recipient(actor, "actor")
    if data is not None:
        body["data"] = _dict(data, "data")
    if metadata is not None:
        body["metadata"] = _dict(metadata, "metadata")
    key = _key(idempotency_key)
    record = build_workflow_trigger(
        body,
        idempotency_key=key,
        tenant_id=tenant_id,
        cancellation_key=cancellation_key,
        attachments=a.attachments(attachments),
    )
    return _queue(Kind.WORKFLOW, a.first_distinct_id(people), workflow, record, key, using)


def track_event(
    user: Any,
    event: str,
    properties: dict[str, Any] | None = None,
    *,
    tenant_id: str | None = None,
    idempotency_key: str | None = None,
    attachments: Iterable[Any] = (),
    using: str | None = None,
) -> Queued:
    """Queue an event (``POST v2/event/``, sent in bulk) of ``user`` (an instance with the
    mixin, or a distinct_id), with ``properties`` as JSON by Django's rules."""
    distinct_id = a.recipient(user, "user")
    if not isinstance(distinct_id, str):
        raise SuprsendValidationError("user", user, "must be a model instance or a distinct_id")
    props = _dict(properties, "properties") if properties is not None else {}
    key = _key(idempotency_key)
    parts: dict[str, Any] = {
        "distinct_id": distinct_id,
        "event": event,
        "properties": props,
        "idempotency_key": key,
        "tenant_id": tenant_id,
        "attachments": a.attachments(attachments),
        "insert_id": str(uuid.uuid4()),
        "time_ms": int(time.time() * 1000),
    }
    # Checked now, as the worker will build it (there for the workspace it sends to).
    env = suprsend_settings.WORKSPACE_KEY or "-"
    record = build_event(**parts, env=env, sdk_version=default_user_agent())
    parts["event"] = record["event"]
    parts["distinct_id"] = record["distinct_id"]
    return _queue(Kind.EVENT, distinct_id, record["event"], parts, key, using)


def _dict(value: Any, argument: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SuprsendValidationError(argument, value, "must be a dict")
    return a.json_value(value, argument)  # type: ignore[no-any-return]


def _key(idempotency_key: str | None) -> str:
    """The caller's key, or one of the entry's own: kept on the row, so every retry
    carries the same."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise SuprsendValidationError(
            "idempotency_key", idempotency_key, "must be a non-empty string"
        )
    return idempotency_key


def _queue(
    kind: str, distinct_id: str, name: str, payload: dict[str, Any], key: str, using: str | None
) -> Queued:
    database = using or router.db_for_write(OutboxEntry)
    entry = enqueue_notification(
        kind, distinct_id, name, payload, idempotency_key=key, using=database
    )
    return Queued(idempotency_key=key, outbox_id=entry.pk, kind=kind, name=name)
