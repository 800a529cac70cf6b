"""Model saves all the way to the hub emulator: mixin, outbox, flush, SyncState.

The flush runs in the test process here (what the Celery task runs); the
same path with real Celery workers is in ``test_workers.py``.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from django_suprsend import sync, unset_channels
from django_suprsend.delivery.flush import flush
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.profiles.mapping import mapping_for
from tests.testapp.factories import make_user
from tests.testapp.models import Device, User

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hub")]


def profile_of(hub, user: User) -> dict:
    profile = hub.profile(str(user.pk))
    assert profile is not None, f"user {user.pk} is not in the hub"
    return profile


def values(profile: dict, channel: str) -> list:
    return [entry["value"] for entry in profile.get(channel, [])]


def test_a_new_user_arrives_whole(hub):
    user = make_user(email="ada@example.com", phone="+441234567890", plan="pro")
    Device.objects.create(user=user, token="fcm-1", provider="fcm")
    sync(user)  # the push tokens live in a related model: pushed with the full profile

    flush()

    profile = profile_of(hub, user)
    assert values(profile, "$email") == ["ada@example.com"]
    assert values(profile, "$sms") == ["+441234567890"]
    assert values(profile, "$androidpush") == ["fcm-1"]
    assert profile["$androidpush"][0]["id_provider"] == "fcm"
    assert profile["properties"]["plan"] == "pro"
    assert profile["properties"]["name"] == "Ann Lee"
    assert profile["properties"]["$preferred_language"] == "en"
    assert profile["properties"]["$timezone"] == "Europe/London"
    assert SyncState.objects.get(distinct_id=str(user.pk)).status == SyncStatus.SYNCED


def test_edits_follow_the_database(hub):
    user = make_user()
    flush()

    user.email = "new@example.com"
    user.phone = "+15555550199"
    user.language = "fr"
    user.first_name = "Anne"
    user.plan = None
    user.save()
    flush()

    profile = profile_of(hub, user)
    assert values(profile, "$email") == ["new@example.com"]
    assert values(profile, "$sms") == ["+15555550199"]
    assert profile["properties"]["$preferred_language"] == "fr"
    assert profile["properties"]["name"] == "Anne Lee"
    assert "plan" not in profile["properties"]

    user.phone = ""
    user.save(update_fields=["phone"])
    flush()
    assert "$sms" not in profile_of(hub, user)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("delete", None), ("unset", "no channels"), ("ignore", "unchanged")],
)
def test_delete_follows_the_policy(settings, hub, policy, expected):
    settings.SUPRSEND = {**settings.SUPRSEND, "ON_DELETE": policy}
    user = make_user()
    distinct_id = str(user.pk)
    flush()
    before = hub.profile(distinct_id)

    user.delete()
    flush()

    after = hub.profile(distinct_id)
    if expected is None:
        assert after is None
    elif expected == "no channels":
        assert "$email" not in after
        assert "$sms" not in after
        assert after["properties"] == before["properties"]
    else:
        assert values(after, "$email") == values(before, "$email")


def test_deactivation_unsets_channels_and_reactivation_restores_them(hub):
    user = make_user(email="ada@example.com")
    flush()
    user.is_active = False
    user.save()
    flush()
    assert "$email" not in profile_of(hub, user)
    user.is_active = True
    user.save()
    flush()
    assert values(profile_of(hub, user), "$email") == ["ada@example.com"]


def test_rolled_back_save_sends_nothing(hub):
    user = make_user()
    flush()
    requests_before = len(hub.requests)

    def save_then_fail() -> None:
        with transaction.atomic():
            user.email = "never@example.com"
            user.save()
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        save_then_fail()
    flush()

    assert len(hub.requests) == requests_before
    assert values(profile_of(hub, user), "$email") == ["ann@example.com"]


def test_unchanged_save_makes_no_extra_query(django_assert_num_queries):
    user = make_user()
    user = User.objects.get(pk=user.pk)
    with django_assert_num_queries(1):  # the UPDATE of the row itself
        user.save()
    assert OutboxEntry.objects.filter(distinct_id=str(user.pk)).count() == 1  # the create


def test_one_invalid_email_among_a_thousand(hub):
    # bulk_create skips signals: sync() is how such rows are queued.
    users = User.objects.bulk_create(
        User(username=f"u{i}", email=f"u{i}@example.com", phone=f"+1555555{i:04d}")
        for i in range(1000)
    )
    bad = users[500]
    bad.email = "not-an-email"
    bad.save()
    sync(User.objects.exclude(pk=bad.pk))

    flush()

    state = SyncState.objects.get(distinct_id=str(bad.pk))
    assert state.status == SyncStatus.FAILED
    assert "$email" in state.last_error
    assert "not-an-email" in state.last_error
    assert SyncState.objects.filter(status=SyncStatus.SYNCED).count() == 999
    # the invalid user's other channels still sync
    assert values(profile_of(hub, bad), "$sms") == [bad.phone]
    assert len(hub.profiles()) == 1000


def test_unset_channels_reaches_the_hub(hub):
    user = make_user(whatsapp="+15555550111")
    flush()
    unset_channels(user, ["$email", "$whatsapp"])
    flush()
    profile = profile_of(hub, user)
    assert "$email" not in profile
    assert "$whatsapp" not in profile
    assert values(profile, "$sms") == ["+15555550100"]


def test_a_reserved_property_key_reached_at_save_is_refused_and_the_save_kept(hub, monkeypatch):
    """`manage.py check` reports E004 for it; a save that reaches it anyway keeps the user's
    row and delivers the other values, the reserved one refused on the profile's SyncState."""
    monkeypatch.setattr(User, "suprsend_properties", {"plan": "plan", "$plan": "plan"})
    mapping_for.cache_clear()
    try:
        user = User.objects.create(username="reserved", email="reserved@example.com", plan="pro")
        flush()
        assert User.objects.get(pk=user.pk).plan == "pro"
    finally:
        monkeypatch.undo()
        mapping_for.cache_clear()
    state = SyncState.objects.get(distinct_id=str(user.pk))
    assert state.status == SyncStatus.FAILED
    assert "'$plan' is a reserved key" in state.last_error
    assert hub.channel_values(str(user.pk), "$email") == ["reserved@example.com"]
    assert hub.profile(str(user.pk))["properties"]["plan"] == "pro"
