"""ProfileEdit, records, sizes and chunks (django_suprsend.wire.operations)."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import pytest

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire import operations, records
from django_suprsend.wire.operations import ProfileEdit
from django_suprsend.wire.records import (
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    build_record,
    check_record_size,
    dumps,
    iter_chunks,
    new_insert_id,
    record_size,
)

WEBPUSH = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
    "keys": {"p256dh": "BNcR-p256dh", "auth": "tBHI-auth"},
}
SLACK = {"user_id": "U01ABCDEF", "access_token": "xoxb-123-abc"}
TEAMS = {"tenant_id": "t", "service_url": "https://smba.example", "user_id": "29:u"}


def test_constants() -> None:
    assert operations.CHANNEL_KEYS == (
        "$email",
        "$sms",
        "$whatsapp",
        "$androidpush",
        "$iospush",
        "$webpush",
        "$slack",
        "$ms_teams",
    )
    assert operations.ANDROID_PUSH_PROVIDERS == ("fcm", "xiaomi", "oppo")
    assert (MAX_RECORD_BYTES, MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES) == (10_240, 400, 819_200)
    assert records.SCHEMA_VERSION == "2"


@pytest.mark.parametrize(
    "obj",
    [
        {"name": "Zoë", "city": "大阪", "emoji": "🎉", "ctl": "\x01", "big": 1e20, "n": None},
        [1, 2.5, True, 'a"b\\c'],
        "plain",
    ],
)
def test_dumps_is_the_sdks_json(obj: Any) -> None:
    assert dumps(obj) == json.dumps(obj, ensure_ascii=False)


def test_dumps_details() -> None:
    assert dumps({"a": "é", "b": "\x01", "c": 1e20}) == '{"a": "é", "b": "\\u0001", "c": 1e+20}'


def test_record_size_counts_utf8_bytes() -> None:
    assert record_size({"a": "é"}) == len('{"a": "é"}'.encode()) == 11


def padded_record(size: int, distinct_id: str = "edge-user") -> dict:
    """A record whose JSON is exactly ``size`` bytes."""
    record = build_record(distinct_id, [{"$set": {"blob": ""}}], env="k", sdk_version="s")
    record["$user_operations"][0]["$set"]["blob"] = "x" * (size - record_size(record))
    assert record_size(record) == size
    return record


def test_check_record_size_boundary() -> None:
    assert check_record_size(padded_record(10_240)) == 10_240
    with pytest.raises(SuprsendValidationError) as info:
        check_record_size(padded_record(10_241, "user-016"))
    error = info.value
    assert (error.field, error.value) == ("distinct_id", "user-016")
    assert "10,241 bytes, over SuprSend's 10,240-byte limit for one profile edit" in str(error)
    assert "xxxx" not in str(error)


def test_check_record_size_uses_given_text() -> None:
    record = padded_record(500)
    assert check_record_size(record, text=dumps(record)) == 500
    with pytest.raises(SuprsendValidationError):
        check_record_size(record, text="é" * 6000)


def test_build_record_key_order_and_values() -> None:
    ops = [{"$set": {"a": 1}}]
    record = build_record(
        "u1", ops, env="ws", sdk_version="ua", insert_id="id-1", time_ms=5, tenant_id="acme"
    )
    assert list(record) == [
        "$schema",
        "$insert_id",
        "$time",
        "env",
        "distinct_id",
        "$user_operations",
        "properties",
        "tenant_id",
    ]
    assert record == {
        "$schema": "2",
        "$insert_id": "id-1",
        "$time": 5,
        "env": "ws",
        "distinct_id": "u1",
        "$user_operations": ops,
        "properties": {"$ss_sdk_version": "ua"},
        "tenant_id": "acme",
    }
    assert record["$user_operations"] is ops  # no copy on the hot path


@pytest.mark.parametrize("tenant_id", [None, ""])
def test_build_record_without_tenant(tenant_id: str | None) -> None:
    record = build_record("u1", [], env="ws", sdk_version="ua", tenant_id=tenant_id)
    assert "tenant_id" not in record
    assert list(record)[-1] == "properties"


def test_build_record_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records.time, "time", lambda: 1705314600.5)
    record = build_record("u1", [], env="ws", sdk_version="ua")
    assert record["$time"] == 1705314600500
    assert uuid.UUID(record["$insert_id"]).version == 4
    assert record["$insert_id"] != build_record("u1", [], env="ws", sdk_version="ua")["$insert_id"]


def sized_items(*sizes: int) -> list[tuple[dict, str]]:
    items = []
    for index, size in enumerate(sizes):
        record = padded_record(size, f"u{index}")
        items.append((record, dumps(record)))
    return items


def test_iter_chunks_by_count() -> None:
    assert list(iter_chunks([])) == []
    items = [({"distinct_id": str(n)}, "{}") for n in range(1001)]
    chunks = list(iter_chunks(items))
    assert [len(chunk) for chunk in chunks] == [400, 400, 201]
    assert [item for chunk in chunks for item in chunk] == items
    assert [len(chunk) for chunk in iter_chunks(items[:400])] == [400]


def test_iter_chunks_by_bytes() -> None:
    # 81 records of 10,000 bytes fit in 819,200; the 82nd would not.
    assert [len(c) for c in iter_chunks(sized_items(*[10_000] * 100))] == [81, 19]
    # 80 records of 10,240 bytes fill the budget exactly; the next opens a chunk.
    assert [len(c) for c in iter_chunks(sized_items(*[10_240] * 81))] == [80, 1]


def test_iter_chunks_refuses_oversize_records() -> None:
    with pytest.raises(SuprsendValidationError, match="10,241 bytes"):
        list(iter_chunks(sized_items(500, 10_241)))


@pytest.mark.parametrize(
    ("distinct_id", "tenant_id", "expected"),
    [("user-1", None, ("user-1", None)), ("  user 1 ", " acme corp ", ("user 1", "acme corp"))],
)
def test_profile_edit_ids_are_stripped(
    distinct_id: str, tenant_id: str | None, expected: tuple
) -> None:
    edit = ProfileEdit(distinct_id, tenant_id)
    assert (edit.distinct_id, edit.tenant_id, edit.operations) == (*expected, [])


@pytest.mark.parametrize(
    ("distinct_id", "tenant_id", "field"),
    [
        ("", None, "distinct_id"),
        ("   ", None, "distinct_id"),
        (None, None, "distinct_id"),
        (42, None, "distinct_id"),
        ("u1", "", "tenant_id"),
        ("u1", "  ", "tenant_id"),
        ("u1", 7, "tenant_id"),
    ],
)
def test_profile_edit_rejects_bad_ids(distinct_id: Any, tenant_id: Any, field: str) -> None:
    with pytest.raises(SuprsendValidationError) as info:
        ProfileEdit(distinct_id, tenant_id)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_repr_len_and_chaining() -> None:
    edit = ProfileEdit("user-1")
    assert edit.set("a", 1).add_email("a@example.com").unset("b") is edit
    assert len(edit) == 3
    assert repr(edit) == "<ProfileEdit 'user-1': 3 operations>"
    assert "tenant_id='acme'" in repr(ProfileEdit("user-1", "acme"))


CALLS = [
    ("set", ("name", "Jane"), {}, {"$set": {"name": "Jane"}}),
    ("set", (" name ", "  Jane  "), {}, {"$set": {"name": "  Jane  "}}),
    ("set", ("middle_name", None), {}, {"$set": {"middle_name": None}}),
    (
        "set",
        ({"a": 1, "b": None, "c": [1, {"d": 2}]},),
        {},
        {"$set": {"a": 1, "b": None, "c": [1, {"d": 2}]}},
    ),
    ("set_once", ({"source": "web"},), {}, {"$set_once": {"source": "web"}}),
    ("increment", ("visits", 1), {}, {"$add": {"visits": 1}}),
    ("increment", ({"visits": 2, "score": -0.5},), {}, {"$add": {"visits": 2, "score": -0.5}}),
    ("append", ("tags", "vip"), {}, {"$append": {"tags": "vip"}}),
    ("append", ("$email", "a@example.com"), {}, {"$append": {"$email": "a@example.com"}}),
    (
        "append",
        ("$androidpush", "tok"),
        {},
        {"$append": {"$androidpush": "tok", "$id_provider": None}},
    ),
    ("remove", ("tags", "vip"), {}, {"$remove": {"tags": "vip"}}),
    ("remove", ({"$sms": "555", "tags": "x"},), {}, {"$remove": {"$sms": "555", "tags": "x"}}),
    ("unset", ("age",), {}, {"$unset": ["age"]}),
    ("unset", (("age", " $email ", "$locale"),), {}, {"$unset": ["age", "$email", "$locale"]}),
    ("set_preferred_language", ("es",), {}, {"$set": {"$preferred_language": "es"}}),
    ("set_timezone", ("America/New_York",), {}, {"$set": {"$timezone": "America/New_York"}}),
    ("set_locale", ("en_GB",), {}, {"$set": {"$locale": "en_GB"}}),
    ("add_email", ("a@example.com",), {}, {"$append": {"$email": "a@example.com"}}),
    ("remove_email", ("a@example.com",), {}, {"$remove": {"$email": "a@example.com"}}),
    ("add_sms", ("+15555550123",), {}, {"$append": {"$sms": "+15555550123"}}),
    ("remove_sms", ("+15555550123",), {}, {"$remove": {"$sms": "+15555550123"}}),
    ("add_whatsapp", ("+15555550124",), {}, {"$append": {"$whatsapp": "+15555550124"}}),
    ("remove_whatsapp", ("+15555550124",), {}, {"$remove": {"$whatsapp": "+15555550124"}}),
    (
        "add_androidpush",
        ("tok",),
        {"provider": "xiaomi", "bundle_id": "com.example"},
        {"$append": {"$androidpush": "tok", "$id_provider": "xiaomi", "$bundle_id": "com.example"}},
    ),
    (
        "remove_androidpush",
        ("tok",),
        {},
        {"$remove": {"$androidpush": "tok", "$id_provider": None}},
    ),
    (
        "add_iospush",
        ("tok",),
        {"provider": "apns", "bundle_id": "com.example"},
        {"$append": {"$iospush": "tok", "$id_provider": "apns", "$bundle_id": "com.example"}},
    ),
    (
        "remove_iospush",
        ("tok", "apns"),
        {},
        {"$remove": {"$iospush": "tok", "$id_provider": "apns"}},
    ),
    (
        "add_webpush",
        (WEBPUSH, "vapid"),
        {},
        {"$append": {"$webpush": WEBPUSH, "$id_provider": "vapid"}},
    ),
    ("remove_webpush", (WEBPUSH,), {}, {"$remove": {"$webpush": WEBPUSH, "$id_provider": None}}),
    ("add_slack", (SLACK,), {}, {"$append": {"$slack": SLACK}}),
    ("remove_slack", (SLACK,), {}, {"$remove": {"$slack": SLACK}}),
    ("add_ms_teams", (TEAMS,), {}, {"$append": {"$ms_teams": TEAMS}}),
    ("remove_ms_teams", (TEAMS,), {}, {"$remove": {"$ms_teams": TEAMS}}),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "expected"), CALLS)
def test_each_call_appends_its_operation(
    method: str, args: tuple, kwargs: dict, expected: dict
) -> None:
    edit = ProfileEdit("user-1").set("first", 1)
    assert getattr(edit, method)(*args, **kwargs) is edit
    assert edit.operations == [{"$set": {"first": 1}}, expected]


def test_calls_are_never_merged() -> None:
    edit = ProfileEdit("u").add_email("a@example.com").add_email("b@example.com")
    assert edit.operations == [
        {"$append": {"$email": "a@example.com"}},
        {"$append": {"$email": "b@example.com"}},
    ]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # The SDK's key order: each key where first seen, $id_provider right after the channel.
        (
            {"$id_provider": "fcm", "$androidpush": "tok"},
            {"$id_provider": "fcm", "$androidpush": "tok"},
        ),
        (
            {"$androidpush": "tok", "$bundle_id": "com.example", "tags": "x"},
            {"$androidpush": "tok", "$id_provider": None, "$bundle_id": "com.example", "tags": "x"},
        ),
        (
            {"$webpush": WEBPUSH, "$id_provider": "vapid"},
            {"$webpush": WEBPUSH, "$id_provider": "vapid"},
        ),
    ],
)
def test_append_dict_with_channels(payload: dict, expected: dict) -> None:
    assert ProfileEdit("u").append(payload).operations == [{"$append": expected}]


@pytest.mark.parametrize(
    ("method", "args", "field", "value"),
    [
        ("set", ("nickname",), "nickname", "<missing>"),
        ("set", (123,), "$set", 123),
        ("set", ("   ", "blank"), "$set", "   "),
        ("set", ({"ok": 1, "$reserved": 2},), "$set", "$reserved"),
        (
            "set",
            ({"ok": 1, "when": datetime.date(2024, 1, 15)},),
            "when",
            datetime.date(2024, 1, 15),
        ),
        ("set", ({"ok": 1}, 2), "$set", 2),
        ("set", ("ss_flag", True), "$set", "ss_flag"),
        ("set_once", ("$email", "a@example.com"), "$set_once", "$email"),
        ("increment", ("visits", "1"), "visits", "1"),
        ("increment", ("visits", True), "visits", True),
        ("increment", ("visits",), "visits", "<missing>"),
        ("append", ({"tags": "x", "$email": "not-an-email"},), "$email", "not-an-email"),
        ("append", ({"$androidpush": "tok", "$id_provider": "apns"},), "$id_provider", "apns"),
        ("append", ({"$id_provider": "fcm"},), "$id_provider", "fcm"),
        ("append", ({"$webpush": WEBPUSH, "$bundle_id": "com.x"},), "$bundle_id", "com.x"),
        (
            "append",
            ({"$androidpush": "a", "$iospush": "b"},),
            "$append",
            ["$androidpush", "$iospush"],
        ),
        ("append", ({"$custom": 1},), "$append", "$custom"),
        ("remove", ({"$email": ""},), "$email", ""),
        ("unset", (["age", "$custom"],), "$unset", "$custom"),
        ("unset", (["age", "ss_x"],), "$unset", "ss_x"),
        ("unset", (["age", 5],), "$unset", 5),
        ("unset", (5,), "$unset", 5),
        ("unset", ({"age"},), "$unset", {"age"}),
        ("set_preferred_language", ("EN",), "$preferred_language", "EN"),
        ("set_timezone", ("Mars/Base",), "$timezone", "Mars/Base"),
        ("set_locale", ("English",), "$locale", "English"),
        ("add_email", (" jane@example.com",), "$email", " jane@example.com"),
        ("add_sms", ("555-0123",), "$sms", "555-0123"),
        ("add_whatsapp", ("+0123",), "$whatsapp", "+0123"),
        ("add_androidpush", ("tok", "apns"), "$id_provider", "apns"),
        ("add_androidpush", ("tok", "fcm", 3), "$bundle_id", 3),
        ("append", ("tags", None), "$append tags", None),
        ("remove", ("tags", None), "$remove tags", None),
        ("set_once", ("plan", None), "$set_once plan", None),
        ("append", ({"tags": None},), "$append tags", None),
        ("add_androidpush", ("",), "$androidpush", ""),
        ("add_iospush", ("tok", "fcm"), "$id_provider", "fcm"),
        ("add_webpush", ({"endpoint": "https://x"},), "$webpush", {"endpoint": "***"}),
        ("add_webpush", (WEBPUSH, "fcm"), "$id_provider", "fcm"),
        ("add_slack", ({"user_id": "U1"},), "$slack", {"user_id": "***"}),
        (
            "add_ms_teams",
            ({"incoming_webhook": {"url": ""}},),
            "$ms_teams",
            {"incoming_webhook": {"url": ""}},
        ),
        ("remove_email", ("",), "$email", ""),
        ("remove_sms", (None,), "$sms", None),
        ("remove_androidpush", ("tok", ""), "$id_provider", ""),
        ("remove_webpush", ("https://x",), "$webpush", "***"),
        ("remove_slack", ({},), "$slack", {}),
        ("remove_ms_teams", (None,), "$ms_teams", None),
    ],
)
def test_invalid_call_raises_and_changes_nothing(
    method: str, args: tuple, field: str, value: Any
) -> None:
    edit = ProfileEdit("user-1").set("first", 1)
    with pytest.raises(SuprsendValidationError) as info:
        getattr(edit, method)(*args)
    error = info.value
    assert (error.field, repr(error.value)) == (
        field,
        repr(value) if value != "<missing>" else value,
    )
    assert str(error).startswith(f"{field}: ")
    assert edit.operations == [{"$set": {"first": 1}}]


def test_secrets_never_reach_messages() -> None:
    with pytest.raises(SuprsendValidationError) as info:
        ProfileEdit("u").add_slack({"email": "bad", "access_token": "xoxb-secret"})
    assert "xoxb-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("remove_email", ("not-an-email",)),
        ("remove_sms", ("555-0123",)),
        ("remove_whatsapp", ("00 44 7911",)),
        ("remove_androidpush", ("tok en", "legacy-provider", "com.example")),
        ("remove_iospush", ("tok", "fcm")),
        ("remove_webpush", ({"endpoint": "https://x"}, "legacy")),
        ("remove_slack", ({"legacy": "shape"},)),
        ("remove_ms_teams", ({"legacy": "shape"},)),
        ("remove", ({"$email": "not-an-email", "tags": "x"},)),
    ],
)
def test_removals_accept_what_adds_would_refuse(method: str, args: tuple) -> None:
    edit = ProfileEdit("u")
    getattr(edit, method)(*args)
    assert len(edit) == 1
    assert next(iter(edit.operations[0])) == "$remove"


@pytest.mark.parametrize(
    ("method", "args"), [("unset", ([],)), ("unset", ((),)), ("set", ({},)), ("append", ({},))]
)
def test_empty_calls_append_nothing(method: str, args: tuple) -> None:
    edit = ProfileEdit("u")
    assert getattr(edit, method)(*args) is edit
    assert edit.operations == []


def test_to_record() -> None:
    edit = ProfileEdit("user-1", tenant_id="acme").set("a", 1)
    record = edit.to_record(env="ws", sdk_version="ua", insert_id="id-1", time_ms=7)
    assert dumps(record) == (
        '{"$schema": "2", "$insert_id": "id-1", "$time": 7, "env": "ws", "distinct_id": "user-1", '
        '"$user_operations": [{"$set": {"a": 1}}], "properties": {"$ss_sdk_version": "ua"}, '
        '"tenant_id": "acme"}'
    )
    edit.unset("a")  # later calls do not reach a record already built
    assert len(record["$user_operations"]) == 1
    assert "tenant_id" not in ProfileEdit("u").to_record(env="ws", sdk_version="ua")


def test_new_insert_id_is_a_random_uuid4():
    ids = {new_insert_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_dumps_matches_json_dumps_and_still_reports_cycles():
    value = {"é": ["日本", 1e20, None, True, {"k": -0.5}], "ctrl": "\x01</script>"}
    assert dumps(value) == json.dumps(value, ensure_ascii=False)
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(cycle)


def test_name_insert_id_is_uuid5() -> None:
    namespace = uuid.UUID("8f3c4f52-6a0e-4b0c-9a55-5b1f2b7d0c11")
    for name in ["", "run:1", "0f3e:user@example.com", "run:é☃", "x" * 300]:
        assert records.name_insert_id(namespace, name) == str(uuid.uuid5(namespace, name))


def test_an_insert_id_namer_names_as_uuid5_of_prefix_and_name() -> None:
    namespace = uuid.UUID("8f3c4f52-6a0e-4b0c-9a55-5b1f2b7d0c11")
    name = records.insert_id_namer(namespace, "run-é:")
    for distinct_id in ["1", "user@example.com", "☃", ""]:
        assert name(distinct_id) == str(uuid.uuid5(namespace, f"run-é:{distinct_id}"))


@pytest.mark.parametrize("method", ["add_androidpush", "add_iospush", "remove_androidpush"])
def test_a_blank_bundle_id_is_absent_as_for_the_sdk(method: str) -> None:
    """A blank CharField gives ""; the SDK treats it as no bundle id, and so do we."""
    assert getattr(ProfileEdit("u"), method)("tok", None, "").operations == (
        getattr(ProfileEdit("u"), method)("tok").operations
    )
