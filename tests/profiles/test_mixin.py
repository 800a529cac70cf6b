"""SuprsendProfileMixin: mapping resolution, hooks and the full push."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import pytest
from django.db import models
from django.test.utils import isolate_apps

from django_suprsend.exceptions import (
    SuprsendConfigurationError,
    SuprsendValidationError,
    error_dict,
)
from django_suprsend.profiles.builder import EditBuilder, channel_values, distinct_id_of
from django_suprsend.profiles.mapping import mapping_for
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.wire.operations import ProfileEdit
from tests.testapp.factories import make_customer, make_user
from tests.testapp.models import Customer, Device, Staff, User

pytestmark = pytest.mark.django_db

WEBPUSH = {"endpoint": "https://push.example.com/1", "keys": {"p256dh": "k", "auth": "a"}}
FULL_PUSH = [
    {"$set": {"name": "Ann Lee", "plan": "pro"}},
    {"$append": {"$email": "ann@example.com"}},
    {"$append": {"$sms": "+15555550100"}},
    {"$set": {"$preferred_language": "en"}},
    {"$set": {"$timezone": "Europe/London"}},
]


def test_full_push_in_mapping_order() -> None:
    user = make_user()
    assert user.build_suprsend_profile() == (FULL_PUSH, [])


def test_full_push_includes_push_tokens_from_related_rows() -> None:
    user = make_user(phone="", language="", timezone="", plan=None)
    Device.objects.create(user=user, token="tok-1", provider="fcm")
    Device.objects.create(user=user, token="tok-2")
    assert user.build_suprsend_profile() == (
        [
            {"$set": {"name": "Ann Lee"}},
            {"$append": {"$email": "ann@example.com"}},
            {"$append": {"$androidpush": "tok-1", "$id_provider": "fcm"}},
            {"$append": {"$androidpush": "tok-2", "$id_provider": None}},
        ],
        [],
    )


def test_invalid_values_become_errors_and_the_rest_still_go() -> None:
    user = User(pk=7, email="not-an-email", phone="+15555550100", plan="pro", language="EN")
    operations, errors = user.build_suprsend_profile()
    assert operations == [
        {"$set": {"name": "", "plan": "pro"}},
        {"$append": {"$sms": "+15555550100"}},
    ]
    assert [(e["field"], e["value"]) for e in errors] == [
        ("$email", "'not-an-email'"),
        ("$preferred_language", "'EN'"),
    ]
    assert "not a valid email address" in errors[0]["reason"]
    assert "did you mean 'en'" in errors[1]["reason"]


def test_invalid_property_value_is_an_error_beside_valid_ones() -> None:
    builder = EditBuilder("u1")
    builder.set_properties({"joined": datetime.date(2024, 1, 2), "plan": "pro", "$bad": 1})
    assert builder.operations == [{"$set": {"plan": "pro"}}]
    assert [e["field"] for e in builder.errors] == ["joined", "$set"]
    assert "isoformat" in builder.errors[0]["reason"]


def test_error_value_is_a_repr_cut_to_200_characters() -> None:
    builder = EditBuilder("u1")
    builder.channel("add", "$email", "x" * 500)
    (error,) = builder.errors
    assert len(error["value"]) == 200
    assert error["value"].startswith("'xxx")
    assert error["value"].endswith("...")


@pytest.mark.parametrize(
    ("channel", "value", "expected"),
    [
        ("$email", None, []),
        ("$email", "", []),
        ("$email", "a@example.com", ["a@example.com"]),
        (
            "$email",
            ["a@example.com", "", None, "b@example.com"],
            ["a@example.com", "b@example.com"],
        ),
        ("$email", ("a@example.com", "b@example.com"), ["a@example.com", "b@example.com"]),
        ("$androidpush", ("tok", "fcm"), [("tok", "fcm")]),
        ("$androidpush", [("tok", "fcm"), "tok2"], [("tok", "fcm"), "tok2"]),
        ("$androidpush", (t for t in ["a", "b"]), ["a", "b"]),
        ("$webpush", WEBPUSH, [WEBPUSH]),
        ("$slack", {}, []),
    ],
)
def test_channel_values(channel: str, value: Any, expected: list) -> None:
    assert channel_values(channel, value) == expected


@pytest.mark.parametrize(
    ("channel", "value", "operation"),
    [
        ("$androidpush", "tok", {"$androidpush": "tok", "$id_provider": None}),
        ("$androidpush", ("tok", "xiaomi"), {"$androidpush": "tok", "$id_provider": "xiaomi"}),
        (
            "$iospush",
            {"token": "tok", "provider": "apns", "bundle_id": "com.example"},
            {"$iospush": "tok", "$id_provider": "apns", "$bundle_id": "com.example"},
        ),
        ("$webpush", WEBPUSH, {"$webpush": WEBPUSH, "$id_provider": None}),
        (
            "$webpush",
            {"subscription": WEBPUSH, "provider": "vapid"},
            {"$webpush": WEBPUSH, "$id_provider": "vapid"},
        ),
        ("$webpush", (WEBPUSH, "vapid"), {"$webpush": WEBPUSH, "$id_provider": "vapid"}),
        (
            "$slack",
            {"incoming_webhook": {"url": "https://h"}},
            {"$slack": {"incoming_webhook": {"url": "https://h"}}},
        ),
    ],
)
def test_channel_value_shapes(channel: str, value: Any, operation: dict) -> None:
    builder = EditBuilder("u1")
    builder.channel("add", channel, value)
    assert (builder.operations, builder.errors) == ([{"$append": operation}], [])


@pytest.mark.parametrize(
    ("channel", "value", "reason"),
    [
        (
            "$androidpush",
            ("tok", "fcm", "com.x", "extra"),
            "must be a tuple (token, provider, bundle_id)",
        ),
        ("$androidpush", {"tok": "x"}, "must be a token, or a dict with 'token'"),
        ("$webpush", (WEBPUSH, "vapid", "x"), "must be a tuple (subscription, provider)"),
        ("$pigeon", "coo", "is not a SuprSend channel key"),
    ],
)
def test_malformed_channel_values_are_errors(channel: str, value: Any, reason: str) -> None:
    builder = EditBuilder("u1")
    builder.channel("add", channel, value)
    assert builder.operations == []
    assert builder.errors[0]["field"] == channel
    assert builder.errors[0]["reason"].startswith(reason)


def test_distinct_id_defaults_to_the_primary_key_as_a_string() -> None:
    user = make_user()
    assert user.get_suprsend_distinct_id() == str(user.pk)
    customer = make_customer(external_id="  cus_42 ")
    assert customer.get_suprsend_distinct_id() == "  cus_42 "
    assert distinct_id_of(customer) == "cus_42"


def test_a_row_without_distinct_id_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer = Customer(external_id=None)
    assert customer.get_suprsend_distinct_id() == ""
    assert distinct_id_of(customer) is None
    assert "testapp.Customer None has no distinct_id" in caplog.text


def test_should_sync_follows_the_active_field() -> None:
    assert User(is_active=True).should_sync_to_suprsend() is True
    assert User(is_active=False).should_sync_to_suprsend() is False
    assert Customer().should_sync_to_suprsend() is True  # no is_active: always


def test_mapping_resolution() -> None:
    mapping = mapping_for(User)
    assert mapping.distinct_id.attname == "id"
    assert mapping.active is not None
    assert mapping.active.attname == "is_active"
    assert mapping.channel_keys == ["$email", "$sms", "$whatsapp", "$androidpush"]
    # Method sources of channels are not tracked; the pk is never tracked.
    assert [source.slot for source in mapping.tracked] == [
        "active:active",
        "property:name",
        "property:plan",
        "channel:$email",
        "channel:$sms",
        "channel:$whatsapp",
        "setting:$preferred_language",
        "setting:$timezone",
    ]
    assert mapping.deletes_profile
    customer = mapping_for(Customer)
    assert customer.active is None
    assert customer.tracked[0].slot == "distinct_id:distinct_id"
    staff = mapping_for(Staff)
    assert staff.distinct_id.attname == "user_ptr_id"
    assert not staff.deletes_profile  # its parent User row's deletion decides
    assert "property:department" in {source.slot for source in staff.tracked}


@isolate_apps("tests.testapp")
def test_a_proxy_deletes_its_profile() -> None:
    class Member(User):
        class Meta:
            app_label = "testapp"
            proxy = True

    assert mapping_for(Member).deletes_profile


@isolate_apps("tests.testapp")
def test_sources_may_be_callables_attributes_and_foreign_keys() -> None:
    class Account(SuprsendProfileMixin, models.Model):  # noqa: DJ008
        owner = models.ForeignKey(Device, on_delete=models.CASCADE)
        zone = models.CharField(max_length=64)
        suprsend_distinct_id = "get_account_id"
        suprsend_properties = {"owner": "owner", "kind": "kind", "double": lambda obj: obj.pk * 2}
        suprsend_timezone_field = "tz"
        kind = "business"

        class Meta:
            app_label = "testapp"

        @property
        def tz(self) -> zoneinfo.ZoneInfo:
            return zoneinfo.ZoneInfo(self.zone)

        def get_account_id(self) -> str:
            return f"acct-{self.pk}"

    account = Account(pk=4, owner_id=9, zone="Asia/Tokyo")
    assert account.get_suprsend_distinct_id() == "acct-4"
    assert account.build_suprsend_profile() == (
        [
            {"$set": {"owner": 9, "kind": "business", "double": 8}},
            {"$set": {"$timezone": "Asia/Tokyo"}},  # a ZoneInfo is sent by its key
        ],
        [],
    )
    assert mapping_for(Account).active is None  # no is_active anywhere


@isolate_apps("tests.testapp")
def test_hooks_are_overridable() -> None:
    class Member(SuprsendProfileMixin, models.Model):  # noqa: DJ008
        email = models.EmailField()
        suprsend_channels = {"$email": "email"}

        class Meta:
            app_label = "testapp"

        def get_suprsend_channels(self) -> dict[str, list]:
            return {**super().get_suprsend_channels(), "$iospush": [("ios-tok", "apns")]}

        def get_suprsend_properties(self) -> dict[str, Any]:
            return {"tier": "gold", "none": None}

    assert Member(pk=1, email="m@example.com").build_suprsend_profile() == (
        [
            {"$set": {"tier": "gold"}},
            {"$append": {"$email": "m@example.com"}},
            {"$append": {"$iospush": "ios-tok", "$id_provider": "apns"}},
        ],
        [],
    )


@isolate_apps("tests.testapp")
def test_a_bad_mapping_raises_at_first_use() -> None:
    class Broken(SuprsendProfileMixin, models.Model):  # noqa: DJ008
        suprsend_channels = {"$email": "no_such_field"}

        class Meta:
            app_label = "testapp"

    with pytest.raises(SuprsendConfigurationError, match="'no_such_field', which is neither"):
        mapping_for(Broken)


def test_loading_snapshots_tracked_values_without_a_query(
    django_assert_num_queries: Any,
) -> None:
    user = make_user()
    with django_assert_num_queries(1):
        loaded = User.objects.get(pk=user.pk)
    assert loaded.__dict__["_suprsend_snapshot"] == {
        "active:active": True,
        "property:name": "Ann Lee",
        "property:plan": "pro",
        "channel:$email": "ann@example.com",
        "channel:$sms": "+15555550100",
        "channel:$whatsapp": "",
        "setting:$preferred_language": "en",
        "setting:$timezone": "Europe/London",
    }
    with django_assert_num_queries(1):
        deferred = User.objects.only("id", "email").get(pk=user.pk)
    # Deferred fields are not in the snapshot, nor the methods that could read them.
    assert deferred.__dict__["_suprsend_snapshot"] == {"channel:$email": "ann@example.com"}
    assert "_suprsend_snapshot" not in User(email="x@example.com").__dict__


@pytest.mark.parametrize("verb", ["add", "remove"])
@pytest.mark.parametrize(
    ("channel", "value"),
    [
        (channel, value)
        for channel in ("$email", "$sms", "$whatsapp", "$slack", "$ms_teams")
        for value in (
            "ada@example.com",
            "+15555550123",
            "not valid",
            "",
            None,
            7,
            {"incoming_webhook": {"url": "https://h"}},
            {},
        )
    ],
)
def test_a_single_value_channel_builds_what_profile_edit_builds(verb, channel, value) -> None:
    """The builder's shortcut for channels without a push provider appends what
    ``ProfileEdit.add_<channel>()``/``remove_<channel>()`` appends, or refuses alike."""
    builder = EditBuilder("u1")
    builder.channel(verb, channel, value)
    edit, errors = ProfileEdit("u1"), []
    try:
        getattr(edit, f"{verb}_{channel[1:]}")(value)
    except SuprsendValidationError as exc:
        errors.append(error_dict(exc))
    assert (builder.operations, builder.errors) == (edit.operations, errors)
