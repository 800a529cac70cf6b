"""What the hub holds, shared by its endpoints and read by tests: one lock guards it all."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django_suprsend.testing.faults import RejectRule
from django_suprsend.testing.notifications import Kind, Notification, NotificationRule
from django_suprsend.testing.profiles import ProfileStore
from django_suprsend.testing.recorded import RecordedRequest

__all__ = ["HubState"]


@dataclass(eq=False)
class HubState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    store: ProfileStore = field(default_factory=ProfileStore)
    requests: list[RecordedRequest] = field(default_factory=list)
    # every $insert_id of an accepted request; the first arrival of each is applied
    insert_id_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    reject_rules: list[RejectRule] = field(default_factory=list)
    notification_rules: list[NotificationRule] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    # (kind, $idempotency_key) -> (first applied at on `clock`, its message_id)
    idempotency: dict[tuple[Kind, str], tuple[float, str]] = field(default_factory=dict)
    idempotency_counts: collections.Counter[tuple[Kind, str]] = field(
        default_factory=collections.Counter
    )
    # per distinct_id: (sequence, kind, name) of each profile edit and notification, in order
    # (flat tuples: one per profile record, so kept small)
    arrivals: dict[str, list[tuple[int, str, str | None]]] = field(default_factory=dict)
    sequence: int = 0
    clock: Callable[[], float] = time.time  # epoch seconds; idempotency's 24 hours run on it

    def arrive(self, distinct_ids: Iterable[str], kind: str, name: str | None) -> int:
        """Give the next arrival number to an edit or notification (the caller holds the lock)."""
        self.sequence += 1
        for distinct_id in distinct_ids:
            entries = self.arrivals.get(distinct_id)
            if entries is None:
                self.arrivals[distinct_id] = entries = []
            entries.append((self.sequence, kind, name))
        return self.sequence

    def clear(self) -> None:
        """Forget profiles, requests, notifications and counters (the caller holds the lock)."""
        self.store.clear()
        self.requests.clear()
        self.insert_id_counts.clear()
        self.notifications.clear()
        self.idempotency.clear()
        self.idempotency_counts.clear()
        self.arrivals.clear()
        self.sequence = 0
