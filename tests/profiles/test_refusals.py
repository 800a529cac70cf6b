"""Nothing built or queued for a profile can cost the user's own write.

A distinct_id the outbox cannot hold, a value no database stores, a bug in a
``get_suprsend_*`` override or a source: the save (and the caller's
transaction, which on PostgreSQL a failed statement would doom) goes on, the
neighbours' changes go, and the profile's sync state says what was refused.
Run on SQLite, PostgreSQL and MariaDB by the test matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction

from django_suprsend import sync, unset_channels
from django_suprsend.delivery.flush import flush
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.profiles.mapping import mapping_for
from django_suprsend.profiles.refusal import stand_in_id
from django_suprsend.wire.validators import MAX_DISTINCT_ID_LENGTH
from tests.testapp.factories import make_user
from tests.testapp.models import User

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hub")]


@pytest.fixture
def patch_user(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set attributes of the User class for one test (its mapping is resolved again)."""

    def patch(**attributes: Any) -> None:
        for name, value in attributes.items():
            monkeypatch.setattr(User, name, value)
        mapping_for.cache_clear()

    yield patch
    monkeypatch.undo()
    mapping_for.cache_clear()


def state_of(distinct_id: str) -> SyncState:
    return SyncState.objects.get(distinct_id=distinct_id)


def broken(self: User) -> Any:
    raise ZeroDivisionError("a bug in the hook")


# -- the distinct_id ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distinct_id", "reason"),
    [
        (
            "x" * 300,
            f"is 300 characters long; a distinct_id holds at most {MAX_DISTINCT_ID_LENGTH}",
        ),
        ("id\x00with-a-nul", "contains a NUL character"),
        ("id-\ud800", "is not valid Unicode text"),
    ],
)
def test_a_distinct_id_the_outbox_cannot_hold_is_refused_and_the_save_kept(
    patch_user: Any, distinct_id: str, reason: str
) -> None:
    patch_user(get_suprsend_distinct_id=lambda self: distinct_id)
    with transaction.atomic():  # the caller's transaction: it must stay usable
        user = make_user(email="long@example.com")
        neighbour_count = User.objects.count()  # a failed INSERT would have doomed this
    assert neighbour_count >= 1
    assert User.objects.filter(pk=user.pk).exists()
    entry = OutboxEntry.objects.get()
    assert entry.distinct_id == stand_in_id(user) == f"!testapp.user:{user.pk}"
    assert entry.operations == []

    flush()

    state = state_of(stand_in_id(user))
    assert state.status == SyncStatus.FAILED
    assert state.last_error.startswith("distinct_id: ")
    assert reason in state.last_error
    assert state.content_object == user


def test_the_longest_distinct_id_is_held_and_synced(patch_user: Any, hub: Any) -> None:
    longest = "u" * MAX_DISTINCT_ID_LENGTH
    patch_user(get_suprsend_distinct_id=lambda self: longest)
    make_user(email="longest@example.com")
    flush()
    assert state_of(longest).status == SyncStatus.SYNCED
    assert hub.channel_values(longest, "$email") == ["longest@example.com"]


def test_a_distinct_id_hook_that_raises_is_reported_under_the_stand_in(patch_user: Any) -> None:
    patch_user(get_suprsend_distinct_id=broken)
    user = make_user()
    flush()
    state = state_of(stand_in_id(user))
    assert state.status == SyncStatus.FAILED
    assert "ZeroDivisionError('a bug in the hook')" in state.last_error


# -- hooks and sources that raise -------------------------------------------------------


@pytest.mark.parametrize(
    "hook", ["get_suprsend_properties", "get_suprsend_channels", "should_sync_to_suprsend"]
)
def test_a_hook_that_raises_never_fails_the_save_nor_its_neighbours(
    patch_user: Any, hub: Any, caplog: pytest.LogCaptureFixture, hook: str
) -> None:
    neighbour = make_user(email="neighbour@example.com")
    patch_user(**{hook: broken})
    with caplog.at_level(logging.ERROR, logger="django_suprsend"), transaction.atomic():
        user = make_user(email="buggy@example.com")
        user.first_name = "Changed"
        user.save()
        assert User.objects.filter(pk=user.pk, first_name="Changed").exists()
    flush()
    state = state_of(str(user.pk))
    assert state.status == SyncStatus.FAILED
    assert state.last_error.startswith("profile: ZeroDivisionError('a bug in the hook')")
    assert state_of(str(neighbour.pk)).status == SyncStatus.SYNCED
    assert hub.channel_values(str(neighbour.pk), "$email") == ["neighbour@example.com"]
    logged = [r for r in caplog.records if "building the profile change" in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None  # with the traceback


def test_a_source_that_raises_fails_neither_the_load_nor_the_save(
    patch_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user(email="source@example.com")
    flush()
    patch_user(get_full_name=broken)
    with caplog.at_level(logging.ERROR, logger="django_suprsend"):
        loaded = User.objects.get(pk=user.pk)  # the snapshot evaluates the "name" source
        loaded.refresh_from_db()
        loaded.email = "changed@example.com"
        loaded.save()
    assert User.objects.get(pk=user.pk).email == "changed@example.com"
    flush()
    assert "ZeroDivisionError" in state_of(str(user.pk)).last_error
    assert any("while its row was loaded" in r.getMessage() for r in caplog.records)


def test_once_the_bug_is_fixed_a_resync_delivers(patch_user: Any, hub: Any) -> None:
    patch_user(get_suprsend_properties=broken)
    user = make_user(email="fixed@example.com")
    flush()
    assert state_of(str(user.pk)).status == SyncStatus.FAILED
    patch_user(get_suprsend_properties=lambda self: {"plan": "pro"})
    sync(user)
    flush()
    assert state_of(str(user.pk)).status == SyncStatus.SYNCED
    assert hub.profile(str(user.pk))["properties"]["plan"] == "pro"


def test_a_delete_whose_hook_raises_still_deletes(patch_user: Any, settings: Any) -> None:
    settings.SUPRSEND = {**settings.SUPRSEND, "ON_DELETE": "unset"}
    user = make_user()
    patch_user(should_sync_to_suprsend=broken)
    user.delete()
    assert not User.objects.filter(pk=user.pk).exists()


def test_sync_and_unset_channels_report_a_broken_row_and_queue_the_others(
    patch_user: Any,
) -> None:
    good = make_user()
    bad = make_user()
    OutboxEntry.objects.all().delete()
    long_id = "y" * 256
    patch_user(get_suprsend_distinct_id=lambda self: long_id if self.pk == bad.pk else str(self.pk))
    assert sync(User.objects.filter(pk__in=[good.pk, bad.pk])) == 2
    assert unset_channels([good, bad], "$email") == 2
    flush()
    assert state_of(str(good.pk)).status == SyncStatus.SYNCED
    assert "is 256 characters long" in state_of(stand_in_id(bad)).last_error


# -- values no database stores ----------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "refused"),
    [
        ({"get_full_name": lambda self: "Ann\x00"}, "name: 'Ann\\x00' contains a NUL character"),
        ({"get_full_name": lambda self: "Ann\udc00"}, "name: 'Ann\\udc00' is not valid Unicode"),
        (
            {"get_android_tokens": lambda self: [("tok\x00en", "fcm")]},
            "$androidpush: 'tok\\x00en' contains a NUL character",
        ),
        (
            {"get_suprsend_properties": lambda self: {"ok": 1, "bad\x00key": 2}},
            "$set: 'bad\\x00key' contains a NUL character",
        ),
    ],
)
def test_a_value_no_database_stores_is_refused_alone(
    patch_user: Any, hub: Any, patch: dict[str, Any], refused: str
) -> None:
    """Values from sources (not columns, which the database checks itself): PostgreSQL's
    JSON refuses a NUL and a lone surrogate, which would doom the save's transaction."""
    patch_user(**patch)
    with transaction.atomic():
        user = make_user(email="nul@example.com", phone="+15555550100")
        assert User.objects.filter(pk=user.pk).exists()  # the transaction is still usable
    flush()
    state = state_of(str(user.pk))
    assert refused in state.last_error
    assert hub.channel_values(str(user.pk), "$sms") == ["+15555550100"]


def test_a_backfill_reports_a_broken_row_and_goes_on(patch_user: Any, hub: Any) -> None:
    good = make_user(email="good@example.com")
    bad = make_user(email="bad@example.com")
    SyncState.objects.all().delete()
    OutboxEntry.objects.all().delete()
    patch_user(
        get_suprsend_properties=lambda self: broken(self) if self.pk == bad.pk else {"plan": "x"}
    )
    with pytest.raises(SystemExit):  # one profile failed: exit status 2
        call_command("suprsend_backfill", "testapp.User", stdout=StringIO(), stderr=StringIO())
    assert state_of(str(good.pk)).status == SyncStatus.SYNCED
    assert hub.channel_values(str(good.pk), "$email") == ["good@example.com"]
    assert "ZeroDivisionError" in state_of(str(bad.pk)).last_error
