"""What the hub holds, shared by its endpoints and read by tests: one lock guards it all."""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

from django_suprsend.testing.faults import RejectRule
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

    def clear(self) -> None:
        """Forget profiles, requests and counters (the caller holds the lock)."""
        self.store.clear()
        self.requests.clear()
        self.insert_id_counts.clear()
