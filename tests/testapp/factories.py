"""Factories of the test app's rows, and a reader of the outbox for assertions."""

from __future__ import annotations

import itertools
from typing import Any

from django.test import override_settings

from django_suprsend.models import OutboxEntry
from tests.testapp.models import Customer, Staff, User

_numbers = itertools.count(1)

USER_DEFAULTS: dict[str, Any] = {
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "ann@example.com",
    "phone": "+15555550100",
    "whatsapp": "",
    "language": "en",
    "timezone": "Europe/London",
    "plan": "pro",
}


def make_user(model: type[User] = User, **fields: Any) -> User:
    """A saved user (queues its full push unless paused)."""
    return model.objects.create(username=f"user{next(_numbers)}", **{**USER_DEFAULTS, **fields})


def make_staff(**fields: Any) -> Staff:
    return make_user(Staff, **fields)  # type: ignore[return-value]


def make_customer(**fields: Any) -> Customer:
    defaults = {"external_id": f"cus_{next(_numbers)}", "email": "billing@example.com"}
    user = fields.pop("user", None) or make_user()
    return Customer.objects.create(user=user, **{**defaults, **fields})


def entries() -> list[tuple[str, str, list[dict], list[dict]]]:
    """Every outbox entry as (kind, distinct_id, operations, errors), in commit order."""
    return list(
        OutboxEntry.objects.order_by("id").values_list(
            "kind", "distinct_id", "operations", "errors"
        )
    )


def operations() -> list[list[dict]]:
    """The operations of every outbox entry, in commit order."""
    return [entry[2] for entry in entries()]


def override_suprsend(**overrides: Any) -> override_settings:
    """``override_settings`` of SUPRSEND: the test credentials and ``overrides``."""
    credentials = {"WORKSPACE_KEY": "ws_test_key", "WORKSPACE_SECRET": "ws_test_secret"}
    return override_settings(SUPRSEND={**credentials, **overrides})


def clear() -> None:
    OutboxEntry.objects.all().delete()
