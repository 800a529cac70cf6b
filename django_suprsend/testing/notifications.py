"""What the hub keeps of notifications: each applied workflow trigger or event, in arrival order.

A :class:`Notification` is what a test asserts on, as Django's ``mail.outbox``
holds sent mail. :class:`Arrival` entries order a distinct_id's profile edits
and notifications: one sequence of numbers runs through both, so a test can
check that a user's profile reached the hub before the workflow that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = [
    "IDEMPOTENCY_WINDOW",
    "Arrival",
    "Kind",
    "Notification",
    "NotificationRule",
    "RecordMatch",
    "matches",
]

Kind = Literal["workflow", "event"]
#: A repeated ``$idempotency_key`` (per kind) within this many seconds is not applied again.
IDEMPOTENCY_WINDOW = 24 * 3600.0


class Arrival(NamedTuple):
    """One entry of :meth:`HubEmulator.arrivals`: ``("profile", insert_id)`` (None for a
    ``v1/user/`` edit), ``("workflow", slug)`` or ``("event", name)``. Equal to a plain tuple."""

    kind: str
    name: str | None


@dataclass(frozen=True)
class Notification:
    """A workflow trigger or an event the hub applied (duplicates of an idempotency key are not)."""

    kind: Kind
    name: str  # the workflow slug (a legacy trigger's "name") or the event name
    recipients: tuple[str, ...]  # distinct_ids: a workflow's recipients, an event's distinct_id
    actor: str | None
    data: dict[str, Any]  # a workflow's data, an event's properties
    tenant_id: str | None
    idempotency_key: str | None
    attachments: tuple[dict[str, Any], ...]
    message_id: str
    received_at: float  # epoch seconds on the hub's clock
    sequence: int  # arrival number, shared with profile edits
    path: str  # the endpoint below the base URL: trigger/, v2/event/...
    body: dict[str, Any] = field(repr=False)  # the record as sent

    @property
    def workflow(self) -> str | None:
        return self.name if self.kind == "workflow" else None

    @property
    def event(self) -> str | None:
        return self.name if self.kind == "event" else None

    @property
    def distinct_id(self) -> str | None:
        """The first recipient (an event's distinct_id), or None."""
        return self.recipients[0] if self.recipients else None


#: ``reject_notifications``' first argument: a predicate of the record as sent, or the
#: values some of its top-level keys must have (``{"workflow": "missing-workflow"}``).
RecordMatch = Callable[[dict[str, Any]], bool] | Mapping[str, Any]


@dataclass(frozen=True)
class NotificationRule:
    """``reject_notifications``: a record it matches gets this error instead of being applied."""

    match: RecordMatch
    status: int
    error: str
    error_type: str


def matches(match: RecordMatch, record: dict[str, Any]) -> bool:
    if isinstance(match, Mapping):
        return all(key in record and record[key] == value for key, value in match.items())
    return bool(match(record))
