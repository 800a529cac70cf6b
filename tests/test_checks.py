"""System checks: every check id, on purpose-built models."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core import checks as django_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.core.management.commands.migrate import Command as Migrate
from django.db import models
from django.test import override_settings
from django.test.utils import isolate_apps

from django_suprsend.checks import check_model, check_profile_models, check_settings
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from tests.testapp.models import Customer

SECRET = "ws_secret_of_a_real_length"


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def profile_model(**attributes: Any) -> type[models.Model]:
    """A throwaway model (in an isolated registry) with these ``suprsend_*`` attributes."""
    fields = {
        "email": models.EmailField(),
        "phone": models.CharField(max_length=32),
        "uid": models.UUIDField(default=uuid.uuid4, unique=True, editable=False),
        "code": models.CharField(max_length=8, unique=True),
        "__module__": __name__,
        "Meta": type("Meta", (), {"app_label": "testapp"}),
        "get_tokens": lambda self: [],
    }
    return type("Profile", (SuprsendProfileMixin, models.Model), {**fields, **attributes})


@pytest.mark.parametrize(
    ("suprsend", "expected"),
    [
        ({"WORKSPACE_KEY": "k", "WORKSPACE_SECRET": SECRET}, []),
        ({"WORKSPACE_KEY": "k", "API_KEY": SECRET}, []),
        ({"WORKSPACE_KEY": "k"}, ["django_suprsend.E001"]),
        ({"WORKSPACE_SECRET": SECRET}, ["django_suprsend.E001"]),
        ({}, ["django_suprsend.E001"]),
        ({"AUTOSYNC": False}, []),
        ({"WORKSPACE_KEY": "k", "WORKSPACE_SECRET": SECRET, "TYPO": 1}, ["django_suprsend.E005"]),
        (
            {"WORKSPACE_KEY": "k", "API_KEY": SECRET, "ON_DELETE": "drop"},
            ["django_suprsend.E005"],
        ),
        ({"WORKSPACE_KEY": "k", "WORKSPACE_SECRET": "s"}, ["django_suprsend.W004"]),
        ({"WORKSPACE_KEY": "k", "API_KEY": "short-key"}, ["django_suprsend.W004"]),
        ({"WORKSPACE_SECRET": "s"}, ["django_suprsend.E001", "django_suprsend.W004"]),
    ],
)
def test_settings_checks(suprsend: dict, expected: list[str]) -> None:
    with override_settings(SUPRSEND=suprsend):
        messages = check_settings()
    assert ids(messages) == expected
    if expected[:1] == ["django_suprsend.E001"]:
        assert "WORKSPACE_SECRET" in messages[0].hint


@pytest.mark.parametrize(
    ("suprsend", "named"),
    [
        ({"WORKSPACE_SECRET": SECRET}, "SUPRSEND has no WORKSPACE_KEY (a secret is set"),
        ({"API_KEY": SECRET}, "SUPRSEND has no WORKSPACE_KEY (a secret is set"),
        ({"WORKSPACE_KEY": "k"}, "SUPRSEND has no WORKSPACE_SECRET or API_KEY"),
        ({}, "SUPRSEND has no credentials (neither WORKSPACE_KEY nor"),
    ],
)
def test_missing_credentials_are_named(suprsend: dict, named: str) -> None:
    with override_settings(SUPRSEND=suprsend):
        (message,) = check_settings()
    assert message.msg.startswith(named)


def test_a_short_secret_warning_names_the_key_and_length_never_the_value() -> None:
    with override_settings(SUPRSEND={"WORKSPACE_KEY": "k", "WORKSPACE_SECRET": "sekrit"}):
        (message,) = check_settings()
    assert "SUPRSEND['WORKSPACE_SECRET'] is 6 character(s) long" in message.msg
    assert "sekrit" not in message.msg + message.hint


def test_an_unknown_settings_key_gets_a_did_you_mean_hint() -> None:
    with override_settings(SUPRSEND={"WORKSPACE_KEY": "k", "API_KEY": SECRET, "BATCH_SIZ": 10}):
        (message,) = check_settings()
    assert message.id == "django_suprsend.E005"
    assert "did you mean 'BATCH_SIZ' -> 'BATCH_SIZE'?" in message.msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("KEEP_SENT_DAYS", -1, "a number of days (0 or more), or None to keep sent entries"),
        ("KEEP_FAILED_DAYS", "30", "a number of days (0 or more), or None to keep failed"),
        ("KEEP_SENT_DAYS", True, "a number of days (0 or more), or None to keep sent entries"),
        ("SWEEP_INTERVAL", 0, "a number of seconds above 0, or None to schedule the sweep"),
        ("PUBLISH_TIMEOUT", None, "a number of seconds above 0, got None"),
        ("PUBLISH_TIMEOUT", 0, "a number of seconds above 0, got 0"),
    ],
)
def test_a_bad_duration_is_e005_and_says_what_is_expected(key, value, expected) -> None:
    with override_settings(SUPRSEND={"WORKSPACE_KEY": "k", "API_KEY": SECRET, key: value}):
        (message,) = check_settings()
    assert message.id == "django_suprsend.E005"
    assert f"settings.SUPRSEND[{key!r}] must be {expected}" in message.msg


@pytest.mark.parametrize(
    ("key", "value"),
    [("KEEP_SENT_DAYS", 0), ("KEEP_FAILED_DAYS", None), ("SWEEP_INTERVAL", None)],
)
def test_durations_accept_zero_or_none_where_they_mean_something(key, value) -> None:
    with override_settings(SUPRSEND={"WORKSPACE_KEY": "k", "API_KEY": SECRET, key: value}):
        assert check_settings() == []


@pytest.mark.django_db(transaction=True)
def test_missing_credentials_block_check_but_not_migrate() -> None:
    """E001 stops ``check`` (also for a database, as ``migrate`` asks: the same ``databases``
    on Django 6.1) and so runserver, not ``migrate``: a migration needs no credentials."""
    with override_settings(SUPRSEND={}):
        for databases in ([], ["--database", "default"]):
            with pytest.raises(SystemCheckError, match=r"django_suprsend\.E001"):
                call_command("check", *databases)
        call_command("migrate", verbosity=0, skip_checks=False)
        call_command(SubclassedMigrate(), verbosity=0, skip_checks=False)
        assert ids(check_settings()) == ["django_suprsend.E001"]  # outside migrate again


class SubclassedMigrate(Migrate):
    """A project's or another app's ``migrate`` built on Django's."""


def test_the_checks_are_registered() -> None:
    registered = django_checks.registry.registry.get_checks()
    assert check_settings in registered
    assert check_profile_models in registered


def test_the_test_project_only_warns_about_customer() -> None:
    messages = check_profile_models()
    assert [(message.id, message.obj) for message in messages] == [
        ("django_suprsend.W001", Customer)
    ]


@isolate_apps("tests.testapp")
def test_a_correct_mapping_passes() -> None:
    model = profile_model(
        suprsend_channels={"$email": "email", "$sms": "phone", "$androidpush": "get_tokens"},
        suprsend_properties={"code": "code", "double": lambda obj: 2},
        suprsend_distinct_id="uid",  # unique and not editable: fine
    )
    assert check_model(model) == []


@isolate_apps("tests.testapp")
def test_e002_unknown_channel_key() -> None:
    (message,) = check_model(profile_model(suprsend_channels={"email": "email"}))
    assert message.id == "django_suprsend.E002"
    assert "'email'" in message.msg
    assert "$email" in message.hint


@isolate_apps("tests.testapp")
@pytest.mark.parametrize(
    "attributes",
    [
        {"suprsend_channels": {"$email": "mail"}},
        {"suprsend_properties": {"plan": "plan"}},
        {"suprsend_distinct_id": "external_id"},
        {"suprsend_language_field": "lang"},
        {"suprsend_active_field": "enabled"},
    ],
)
def test_e003_unknown_source(attributes: dict) -> None:
    (message,) = check_model(profile_model(**attributes))
    assert message.id == "django_suprsend.E003"
    assert "neither a field nor an attribute of testapp.Profile" in message.msg


@isolate_apps("tests.testapp")
@pytest.mark.parametrize(
    ("attributes", "text"),
    [
        ({"suprsend_channels": ["email"]}, "suprsend_channels must be a dict"),
        ({"suprsend_properties": {"plan": 3}}, "suprsend_properties['plan'] must be a field"),
        ({"suprsend_properties": {"$plan": "code"}}, "reserved key"),
        (
            {"suprsend_properties": {"$plan": "code"}},
            "suprsend_properties: '$plan' is a reserved key",
        ),
        ({"suprsend_distinct_id": None}, "suprsend_distinct_id must be"),
        ({"suprsend_timezone_field": ""}, "suprsend_timezone_field must be"),
    ],
)
def test_e004_wrong_types(attributes: dict, text: str) -> None:
    messages = check_model(profile_model(**attributes))
    assert ids(messages) == ["django_suprsend.E004"]
    assert text in messages[0].msg
    assert "suprsend_properties: suprsend_properties" not in messages[0].msg  # the label once


@isolate_apps("tests.testapp")
@pytest.mark.parametrize(
    ("source", "warned"),
    [("pk", False), ("id", False), ("uid", False), ("email", True), ("code", True)],
)
def test_w001_mutable_distinct_id(source: str, warned: bool) -> None:
    messages = check_model(profile_model(suprsend_distinct_id=source))
    assert ids(messages) == (["django_suprsend.W001"] if warned else [])
    if warned:
        assert "primary key" in messages[0].hint


@isolate_apps("tests.testapp")
def test_the_default_active_field_is_optional() -> None:
    model = profile_model()
    assert not hasattr(model, "is_active")
    assert check_model(model) == []


@isolate_apps("tests.testapp")
@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("suprsend_channel", "suprsend_channels"),
        ("suprsend_property", "suprsend_properties"),
        ("suprsend_language", "suprsend_language_field"),
        ("suprsend_distinctid", "suprsend_distinct_id"),
    ],
)
def test_w002_a_misspelt_mapping_attribute_is_named_with_what_was_meant(
    typo: str, meant: str
) -> None:
    messages = check_model(profile_model(**{typo: {"$email": "email"}}))
    assert ids(messages) == ["django_suprsend.W002"]
    assert messages[0].msg.startswith(f"{typo} is not a SuprsendProfileMixin attribute")
    assert f"did you mean {typo!r} -> {meant!r}?" in messages[0].msg
    assert "suprsend_channels" in messages[0].hint


@isolate_apps("tests.testapp")
def test_w002_names_an_unknown_attribute_without_a_close_match() -> None:
    (message,) = check_model(profile_model(suprsend_xyz=1))
    assert message.id == "django_suprsend.W002"
    assert "did you mean" not in message.msg
    assert "suprsend_xyz" in message.msg


@isolate_apps("tests.testapp")
def test_w002_spares_a_helper_the_mapping_uses_as_a_source() -> None:
    model = profile_model(
        suprsend_properties={"plan": "suprsend_plan"},
        suprsend_plan=property(lambda self: "pro"),
    )
    assert check_model(model) == []


@isolate_apps("tests.testapp")
def test_w002_knows_the_backfills_attributes() -> None:
    model = profile_model(
        suprsend_select_related=[],
        suprsend_prefetch_related=("devices",),
        suprsend_backfill_since_field="code",
    )
    assert check_model(model) == []
