"""The explicit API, for the paths that send no model signals, and the package's public names."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.db.models.signals import post_delete, post_save

import django_suprsend
from django_suprsend.exceptions import SuprsendDistinctIdChanged, SuprsendValidationError
from django_suprsend.profiles import api
from django_suprsend.wire.operations import ProfileEdit
from tests.testapp.factories import (
    clear,
    entries,
    make_customer,
    make_user,
    operations,
    override_suprsend,
)
from tests.testapp.models import Customer, Device, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def users() -> list[User]:
    """Three users loaded from the database (the second inactive), with an empty outbox."""
    made = [make_user(), make_user(is_active=False), make_user(email="c@example.com")]
    clear()
    return list(User.objects.filter(pk__in=[u.pk for u in made]).order_by("pk"))


def test_sync_an_instance_queues_its_full_push(users: list[User]) -> None:
    assert api.sync(users[0]) == 1
    assert entries() == [("edit", str(users[0].pk), users[0].build_suprsend_profile()[0], [])]


def test_sync_a_queryset_in_bulk(users: list[User], django_assert_max_num_queries: Any) -> None:
    for user in users:
        Device.objects.create(user=user, token=f"tok-{user.pk}")
    queryset = User.objects.filter(pk__in=[u.pk for u in users]).prefetch_related("devices")
    with django_assert_max_num_queries(3):  # users, their devices, one INSERT of the entries
        assert api.sync(queryset) == 2  # the inactive user is left out
    assert [distinct_id for _, distinct_id, _, _ in entries()] == [
        str(users[0].pk),
        str(users[2].pk),
    ]
    assert {"$append": {"$androidpush": f"tok-{users[2].pk}", "$id_provider": None}} in (
        operations()[1]
    )


def test_sync_a_list_even_when_saves_queue_nothing(users: list[User]) -> None:
    with override_suprsend(AUTOSYNC=False), django_suprsend.paused():
        assert api.sync(users) == 2


def test_sync_skips_rows_without_a_distinct_id() -> None:
    customer = make_customer(external_id=None)
    clear()
    assert api.sync(Customer.objects.filter(pk=customer.pk)) == 0
    assert entries() == []


def test_unset_channels(users: list[User]) -> None:
    assert api.unset_channels(users[0], ["$email", "$sms"]) == 1
    assert api.unset_channels(User.objects.filter(pk__in=[u.pk for u in users]), "$slack") == 3
    assert operations() == [[{"$unset": ["$email", "$sms"]}]] + [[{"$unset": ["$slack"]}]] * 3
    assert api.unset_channels(users[0], []) == 0


def test_unset_channels_refuses_an_unknown_channel(users: list[User]) -> None:
    with pytest.raises(SuprsendValidationError, match=r"channels: '\$phone' is not a SuprSend"):
        api.unset_channels(users[0], ["$email", "$phone"])
    assert entries() == []


def test_queue_operations_for_a_precise_token_removal(users: list[User]) -> None:
    ops = ProfileEdit("ignored").remove_androidpush("tok-1", "fcm").operations
    assert api.queue_operations(users[0], ops) is None
    assert entries() == [
        (
            "edit",
            str(users[0].pk),
            [{"$remove": {"$androidpush": "tok-1", "$id_provider": "fcm"}}],
            [],
        )
    ]
    with pytest.raises(SuprsendValidationError, match="distinct_id"):
        api.queue_operations(Customer(external_id=""), ops)


def test_device_recipe_syncs_the_user_when_a_device_changes(users: list[User]) -> None:
    def sync_owner(sender: type, instance: Device, **kwargs: Any) -> None:
        django_suprsend.sync(instance.user)

    post_save.connect(sync_owner, sender=Device)
    post_delete.connect(sync_owner, sender=Device)
    try:
        device = Device.objects.create(user=users[0], token="tok-1")
        assert {"$append": {"$androidpush": "tok-1", "$id_provider": None}} in operations()[-1]
        device.delete()
        assert not any("$androidpush" in op.get("$append", {}) for op in operations()[-1])
    finally:
        post_save.disconnect(sync_owner, sender=Device)
        post_delete.disconnect(sync_owner, sender=Device)


def test_bulk_update_and_sync(users: list[User], django_assert_num_queries: Any) -> None:
    first, inactive, third = users
    first.plan, inactive.plan, third.email = "team", "team", "c@example.org"
    with django_assert_num_queries(2):  # one UPDATE for all rows, one INSERT for all entries
        assert api.bulk_update_and_sync(users, ["plan", "email"]) == 2
    assert entries() == [
        ("edit", str(first.pk), [{"$set": {"plan": "team"}}], []),
        (
            "edit",
            str(third.pk),
            [{"$remove": {"$email": "c@example.com"}}, {"$append": {"$email": "c@example.org"}}],
            [],
        ),
    ]
    assert User.objects.get(pk=inactive.pk).plan == "team"
    clear()
    for user in users:
        user.save()  # the snapshots followed
    assert entries() == []
    assert api.bulk_update_and_sync([], ["plan"]) == 0


def test_bulk_update_and_sync_deactivates_and_follows_update_fields(users: list[User]) -> None:
    first, _, third = users
    first.is_active = False
    third.phone = "+15555550123"  # not among the fields: not saved, not sent
    with override_suprsend(ON_DEACTIVATE="delete"):
        assert api.bulk_update_and_sync([first, third], ["is_active"]) == 1
    assert entries() == [("delete", str(first.pk), [], [])]
    assert User.objects.get(pk=third.pk).phone == "+15555550100"


def test_bulk_update_and_sync_refuses_a_distinct_id_change_before_writing() -> None:
    customer = Customer.objects.get(pk=make_customer(external_id="cus_1", company="A").pk)
    clear()
    customer.external_id, customer.company = "cus_2", "B"
    with pytest.raises(SuprsendDistinctIdChanged):
        api.bulk_update_and_sync([customer], ["external_id", "company"])
    assert Customer.objects.filter(external_id="cus_1", company="A").exists()
    assert entries() == []


def test_bulk_update_and_sync_follows_paused(users: list[User]) -> None:
    users[0].plan = "team"
    with django_suprsend.paused():
        api.bulk_update_and_sync(users, ["plan"])
    assert entries() == []


def test_public_api() -> None:
    assert django_suprsend.sync is api.sync
    assert django_suprsend.paused is api.paused
    assert django_suprsend.SuprsendProfileMixin.__module__ == "django_suprsend.profiles.mixin"
    assert set(django_suprsend.__all__) <= set(dir(django_suprsend))
    assert django_suprsend.__version__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        django_suprsend.nope  # noqa: B018


def test_importing_the_package_touches_nothing() -> None:
    code = (
        "import sys, django_suprsend; "
        "print(sorted(m for m in sys.modules if m.startswith(('django_suprsend.', 'django.db'))))"
    )
    result = subprocess.run(  # noqa: S603 - a constant command
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
