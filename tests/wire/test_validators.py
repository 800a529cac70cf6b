"""The value checks of django_suprsend.wire.validators, each with good and bad values."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire import validators as v

WEBPUSH = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
    "keys": {"p256dh": "BNcR-p256dh", "auth": "tBHI-auth"},
}


def rejected(check: Any, value: Any, *args: Any, **kwargs: Any) -> SuprsendValidationError:
    with pytest.raises(SuprsendValidationError) as info:
        check(value, *args, **kwargs)
    return info.value


def assert_names(error: SuprsendValidationError, field: str, value: Any) -> None:
    """The message is "field: repr(value) reason" and nothing else."""
    assert error.field == field
    assert repr(error.value) == repr(value)
    message = str(error)
    assert message.startswith(f"{field}: {repr(value)[:150]}")
    assert message.endswith(f" {error.reason}")


@pytest.mark.parametrize(
    "value",
    ["jane@example.com", "a.b+tag@mail.example.co.uk", "o'brien@example.ie", "zoë@exämple.de"],
)
def test_email_accepted(value: str) -> None:
    assert v.validate_email(value) is value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "jane",
        "jane@",
        "@example.com",
        "jane@example",
        "jane@@example.com",
        "a@b@example.com",
        "ja ne@example.com",
        " jane@example.com",
        "jane@example.com\n",
        "jane@.example.com",
        "jane@example..com",
        "jane@example.com.",
        "x" * 250 + "@example.com",
        None,
        123,
    ],
)
def test_email_rejected(value: Any) -> None:
    error = rejected(v.validate_email, value)
    assert_names(error, "$email", value)
    assert error.reason.startswith("is not a valid email address")


@pytest.mark.parametrize("value", ["+15555550123", "+6831234", "+447911123456", "+123456789012345"])
def test_phone_accepted(value: str) -> None:
    assert v.validate_phone(value, "$sms") is value


@pytest.mark.parametrize(
    "value",
    [
        "15555550123",
        "+0123456",
        "+1 555 555 0123",
        "+1-555-555-0123",
        "+1234567890123456",
        "+",
        "+1",  # too short to be a phone number: E.164 numbers have 7 to 15 digits
        "+123456",
        "",
        "+\uff11\uff15\uff15\uff15",  # fullwidth digits
        "+15555550123\n",
        None,
        15555550123,
    ],
)
@pytest.mark.parametrize("field", ["$sms", "$whatsapp"])
def test_phone_rejected(value: Any, field: str) -> None:
    error = rejected(v.validate_phone, value, field)
    assert_names(error, field, value)
    assert "expected E.164 like +15555550123" in error.reason


def test_language_list_is_iso_639_1() -> None:
    assert len(v.LANGUAGE_CODES) == 184
    assert all(len(code) == 2 and code.islower() for code in v.LANGUAGE_CODES)
    assert {"en", "es", "fr", "ja", "zh", "bh"} <= v.LANGUAGE_CODES


@pytest.mark.parametrize("code", sorted(v.LANGUAGE_CODES))
def test_language_accepted(code: str) -> None:
    assert v.validate_language(code) == code


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("EN", "did you mean 'en'?"),
        ("en-US", "did you mean 'en'?"),
        ("pt_BR", "did you mean 'pt'?"),
        (" fr", "did you mean 'fr'?"),
        ("eng", None),
        ("xx", None),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_language_rejected(value: Any, hint: str | None) -> None:
    error = rejected(v.validate_language, value)
    assert_names(error, "$preferred_language", value)
    assert "ISO 639-1" in error.reason
    assert "two lowercase letters" in error.reason
    assert (hint in error.reason) if hint else ("did you mean" not in error.reason)


@pytest.mark.parametrize(
    "value",
    ["Europe/London", "America/New_York", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+5"],
)
def test_timezone_accepted(value: str) -> None:
    assert v.validate_timezone(value) is value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "/etc/passwd",
        "../etc/passwd",
        "Europe/../UTC",
        "Europe\\London",
        "America",
        "Mars/Olympus_Mons",
        "europe/london",
        "Europe/London ",
        "localtime",
        "posixrules",
        "UTC\x00",
        None,
        0,
    ],
)
def test_timezone_rejected(value: Any) -> None:
    error = rejected(v.validate_timezone, value)
    assert_names(error, "$timezone", value)
    assert "IANA time zone" in error.reason


@pytest.mark.parametrize("value", ["en", "en_GB", "pt-BR", "zh_Hant_TW", "fil"])
def test_locale_accepted(value: str) -> None:
    assert v.validate_locale(value) is value


@pytest.mark.parametrize("value", ["", "EN", "en_", "en GB", "english", None, 1])
def test_locale_rejected(value: Any) -> None:
    assert_names(rejected(v.validate_locale, value), "$locale", value)


@pytest.mark.parametrize(
    ("key", "name"),
    [("name", "name"), ("  nickname  ", "nickname"), ("ssn", "ssn"), ("price$", "price$")],
)
def test_property_key_accepted(key: str, name: str) -> None:
    assert v.validate_property_key(key, "$set") == name


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("$custom", "reserved"),
        ("  $email", "add_*/remove_*"),
        ("$timezone", "set_timezone()"),
        ("ss_internal", "reserved"),
        ("", "empty"),
        ("   ", "empty"),
        (5, "keys must be strings"),
        (None, "keys must be strings"),
    ],
)
def test_property_key_rejected(key: Any, words: str) -> None:
    error = rejected(v.validate_property_key, key, "$set")
    assert_names(error, "$set", key)
    assert words in error.reason


def test_property_key_allowed_reserved() -> None:
    assert v.validate_property_key(" $email ", "$unset", allowed={"$email"}) == "$email"


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        10**30,
        -1.5,
        "日本",
        [],
        {},
        (1, "a"),
        {"plan": "pro", "seats": [1, 2, {"deep": None}]},
    ],
)
def test_json_value_accepted(value: Any) -> None:
    assert v.validate_json_value(value, "meta") is value


@pytest.mark.parametrize(
    ("value", "field", "bad", "words"),
    [
        (datetime.datetime(2024, 1, 15), "meta", None, "isoformat()"),
        (datetime.date(2024, 1, 15), "meta", None, "isoformat()"),
        (decimal.Decimal("1.5"), "meta", None, "str(value) or float(value)"),
        ({1, 2}, "meta", None, "a list"),
        (uuid.UUID(int=1), "meta", None, "str(value)"),
        (b"raw", "meta", None, "decode()"),
        (object, "meta", None, "str, int, float, bool, None, list or dict"),
        (float("nan"), "meta", None, "finite"),
        (float("inf"), "meta", None, "finite"),
        ({"when": datetime.date(2024, 1, 15)}, "meta.when", datetime.date(2024, 1, 15), "date"),
        (["ok", {1, 2}], "meta[1]", {1, 2}, "set"),
        ({1: "x"}, "meta", 1, "string key"),
    ],
)
def test_json_value_rejected(value: Any, field: str, bad: Any, words: str) -> None:
    error = rejected(v.validate_json_value, value, "meta")
    assert_names(error, field, value if bad is None else bad)
    assert words in error.reason


def test_json_value_rejects_cycles_and_deep_nesting() -> None:
    looped: list = []
    looped.append(looped)
    assert "nests deeper than 32 levels" in str(rejected(v.validate_json_value, looped, "tags"))
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"x": deep}
    assert "nests deeper" in str(rejected(v.validate_json_value, deep, "meta"))


@pytest.mark.parametrize("value", [1, -2, 0, 1.5, 10**20])
def test_number_accepted(value: Any) -> None:
    assert v.validate_number(value, "visits") == value


@pytest.mark.parametrize("value", [True, False, "1", None, float("nan"), float("inf"), [1]])
def test_number_rejected(value: Any) -> None:
    error = rejected(v.validate_number, value, "visits")
    assert error.field == "visits"
    assert "int or a finite float" in error.reason


@pytest.mark.parametrize("value", ["fcm-token-abc", "a" * 300])
def test_push_token_accepted(value: str) -> None:
    assert v.validate_push_token(value, "$androidpush") is value


@pytest.mark.parametrize("value", ["", "   ", "tok en", "token\n", None, 5])
def test_push_token_rejected(value: Any) -> None:
    assert_names(rejected(v.validate_push_token, value, "$androidpush"), "$androidpush", value)


@pytest.mark.parametrize(
    ("channel", "provider"),
    [
        ("$androidpush", None),
        ("$androidpush", "fcm"),
        ("$androidpush", "xiaomi"),
        ("$androidpush", "oppo"),
        ("$iospush", None),
        ("$iospush", "apns"),
        ("$webpush", None),
        ("$webpush", "vapid"),
    ],
)
def test_push_provider_accepted(channel: str, provider: str | None) -> None:
    assert v.validate_push_provider(channel, provider) == provider


@pytest.mark.parametrize(
    ("channel", "provider", "listed"),
    [
        ("$androidpush", "apns", "'fcm', 'xiaomi', 'oppo' or None"),
        ("$androidpush", "FCM", "'fcm', 'xiaomi', 'oppo' or None"),
        ("$iospush", "fcm", "'apns' or None"),
        ("$webpush", "", "'vapid' or None"),
        ("$webpush", 1, "'vapid' or None"),
    ],
)
def test_push_provider_rejected(channel: str, provider: Any, listed: str) -> None:
    error = rejected(v.validate_push_provider, channel, provider)
    assert_names(error, "$id_provider", provider)
    assert error.reason.endswith(listed)


def test_push_provider_lenient_for_removals() -> None:
    assert v.validate_push_provider("$androidpush", "legacy", strict=False) == "legacy"
    with pytest.raises(SuprsendValidationError):
        v.validate_push_provider("$androidpush", " ", strict=False)


def test_webpush_accepted() -> None:
    assert v.validate_webpush(WEBPUSH) is WEBPUSH
    with_expiry = {**WEBPUSH, "expirationTime": None}
    assert v.validate_webpush(with_expiry) is with_expiry


@pytest.mark.parametrize(
    "value",
    [
        {"endpoint": "https://push.example/1"},
        {"endpoint": "", "keys": {"p256dh": "p", "auth": "a"}},
        {"endpoint": "https://push.example/1", "keys": {"p256dh": "p"}},
        {"endpoint": "https://push.example/1", "keys": {"p256dh": "p", "auth": ""}},
        {"endpoint": "https://push.example/1", "keys": "p,a"},
        "https://push.example/1",
        None,
    ],
)
def test_webpush_rejected(value: Any) -> None:
    error = rejected(v.validate_webpush, value)
    assert error.field == "$webpush"
    assert "{endpoint: str, keys: {p256dh: str, auth: str}}" in error.reason


def test_webpush_error_masks_keys() -> None:
    error = rejected(
        v.validate_webpush, {"endpoint": "https://push.example/1", "keys": {"auth": "s3cret"}}
    )
    assert "s3cret" not in str(error)
    assert error.value == {"endpoint": "***", "keys": {"auth": "***"}}


@pytest.mark.parametrize(
    "value",
    [
        {"email": "jane@example.com", "access_token": "xoxb-1"},
        {"user_id": "U01", "access_token": "xoxb-1"},
        {"channel_id": "C01", "access_token": "xoxb-1"},
        {"incoming_webhook": {"url": "https://hooks.slack.com/services/T/B/X"}},
    ],
)
def test_slack_accepted(value: dict) -> None:
    assert v.validate_slack(value) is value


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"access_token": "xoxb-1"},
        {"email": "jane@example.com", "user_id": "U01", "access_token": "xoxb-1"},
        {"user_id": "U01", "access_token": ""},
        {"user_id": "U01", "access_token": None},
        {"email": "not-an-email", "access_token": "xoxb-1"},
        {"incoming_webhook": {"url": ""}},
        {"incoming_webhook": {"url": "https://x", "extra": 1}},
        {"incoming_webhook": "https://hooks.slack.com/services/T/B/X"},
        "U01",
        None,
    ],
)
def test_slack_rejected(value: Any) -> None:
    error = rejected(v.validate_slack, value)
    assert error.field == "$slack"
    assert "{email, access_token}, {user_id, access_token}" in error.reason
    assert "{incoming_webhook: {url}}" in error.reason
    assert "xoxb-1" not in str(error)
    assert "hooks.slack.com" not in str(error)


@pytest.mark.parametrize(
    "value",
    [
        {"tenant_id": "t", "service_url": "https://smba.example", "conversation_id": "19:c"},
        {"tenant_id": "t", "service_url": "https://smba.example", "user_id": "29:u"},
        {"incoming_webhook": {"url": "https://example.webhook.office.com/x"}},
    ],
)
def test_ms_teams_accepted(value: dict) -> None:
    assert v.validate_ms_teams(value) is value


@pytest.mark.parametrize(
    "value",
    [
        {"tenant_id": "t", "service_url": "https://smba.example"},
        {"tenant_id": "t", "service_url": "", "user_id": "29:u"},
        {"tenant_id": "t", "service_url": "s", "user_id": "u", "conversation_id": "c"},
        {"email": "jane@example.com", "access_token": "x"},
        {"incoming_webhook": {}},
        [],
    ],
)
def test_ms_teams_rejected(value: Any) -> None:
    error = rejected(v.validate_ms_teams, value)
    assert error.field == "$ms_teams"
    assert "{tenant_id, service_url, conversation_id}, {tenant_id, service_url, user_id}" in (
        error.reason
    )


@pytest.mark.parametrize("value", ["", "   ", None, 3, ["x"]])
def test_require_str(value: Any) -> None:
    assert_names(rejected(v.require_str, value, "$email"), "$email", value)


@pytest.mark.parametrize("value", [{}, None, "x", ["x"]])
def test_require_dict(value: Any) -> None:
    error = rejected(v.require_dict, value, "$slack")
    assert error.reason == "must be a non-empty dict"


def test_long_values_are_cut_in_messages() -> None:
    error = rejected(v.validate_email, "x" * 5000)
    assert len(str(error)) < 400
