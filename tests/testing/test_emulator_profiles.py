"""The hub emulator's profile store: what each operation does, without HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from django_suprsend.testing.profiles import ProfileStore, upsert_operations

ID = "user-1"


@pytest.fixture
def store() -> ProfileStore:
    return ProfileStore()


def apply(store: ProfileStore, *operations: dict, distinct_id: str = ID, now: str | None = None):
    store.apply(distinct_id, list(operations), now)
    return store.get(distinct_id)


def entries(store: ProfileStore, channel: str) -> list[dict]:
    return store.get(ID).get(channel, [])


# -- properties ---------------------------------------------------------------


def test_set_sets_and_overwrites_properties_including_reserved_ones(store):
    apply(store, {"$set": {"name": "Jane", "plan": "free"}})
    profile = apply(
        store,
        {"$set": {"plan": "pro", "$preferred_language": "es"}},
        {"$set": {"$timezone": "Europe/London", "$locale": "en_GB"}},
    )
    assert profile["properties"] == {
        "name": "Jane",
        "plan": "pro",
        "$preferred_language": "es",
        "$timezone": "Europe/London",
        "$locale": "en_GB",
    }


def test_set_once_only_sets_absent_properties(store):
    apply(store, {"$set": {"source": "web"}})
    profile = apply(store, {"$set_once": {"source": "ios", "first_city": "Köln"}})
    assert profile["properties"] == {"source": "web", "first_city": "Köln"}


def test_add_increments_from_zero(store):
    apply(store, {"$add": {"visits": 1}})
    profile = apply(store, {"$add": {"visits": 2, "score": 1.5}}, {"$add": {"score": -0.5}})
    assert profile["properties"] == {"visits": 3, "score": 1.0}


def test_add_leaves_a_non_numeric_property_alone(store):
    apply(store, {"$set": {"visits": "many", "flag": True}})
    profile = apply(store, {"$add": {"visits": 1, "flag": 1}})
    assert profile["properties"] == {"visits": "many", "flag": True}


def test_append_to_a_property_builds_a_list(store):
    apply(store, {"$append": {"tags": "vip"}})
    apply(store, {"$append": {"tags": "beta"}}, {"$append": {"tags": "vip"}})
    apply(store, {"$set": {"city": "Paris"}}, {"$append": {"city": "Lyon"}})
    assert store.properties(ID) == {"tags": ["vip", "beta", "vip"], "city": ["Paris", "Lyon"]}


def test_remove_from_a_property_drops_every_occurrence(store):
    apply(store, {"$set": {"tags": ["a", "b", "a", {"k": 1}], "name": "a"}})
    apply(store, {"$remove": {"tags": "a", "name": "a"}}, {"$remove": {"tags": {"k": 1}}})
    assert store.properties(ID) == {"tags": ["b"], "name": "a"}


def test_unset_deletes_properties_and_clears_channels(store):
    apply(
        store,
        {"$set": {"age": 3, "plan": "pro", "$timezone": "UTC"}},
        {"$append": {"$email": "a@example.com"}},
        {"$append": {"$sms": "+15555550123"}},
    )
    profile = apply(store, {"$unset": ["age", "$timezone", "$email", "missing"]})
    assert profile["properties"] == {"plan": "pro"}
    assert "$email" not in profile
    assert store.channel_values(ID, "$sms") == ["+15555550123"]


# -- channels -----------------------------------------------------------------


def test_append_to_a_channel_keeps_order_without_duplicates(store):
    apply(
        store,
        {"$append": {"$email": "a@example.com"}},
        {"$append": {"$email": "b@example.com"}},
        {"$append": {"$email": "a@example.com"}},
    )
    assert entries(store, "$email") == [
        {"value": "a@example.com", "status": "active", "perma_status": "active"},
        {"value": "b@example.com", "status": "active", "perma_status": "active"},
    ]


def test_push_entries_carry_id_provider_and_bundle_id(store):
    apply(
        store,
        {"$append": {"$androidpush": "fcm-1", "$id_provider": "fcm", "$bundle_id": "com.ex"}},
        {"$append": {"$iospush": "apns-1", "$id_provider": None}},
    )
    assert entries(store, "$androidpush") == [
        {
            "value": "fcm-1",
            "id_provider": "fcm",
            "bundle_id": "com.ex",
            "status": "active",
            "perma_status": "active",
        }
    ]
    assert entries(store, "$iospush") == [
        {"value": "apns-1", "id_provider": None, "status": "active", "perma_status": "active"}
    ]


def test_reappending_a_push_token_updates_its_provider_in_place(store):
    apply(
        store,
        {"$append": {"$androidpush": "t1", "$id_provider": "fcm", "$bundle_id": "com.ex"}},
        {"$append": {"$androidpush": "t2", "$id_provider": "fcm"}},
        {"$append": {"$androidpush": "t1", "$id_provider": "xiaomi"}},
    )
    assert [
        (e["value"], e["id_provider"], e.get("bundle_id")) for e in entries(store, "$androidpush")
    ] == [
        ("t1", "xiaomi", "com.ex"),
        ("t2", "fcm", None),
    ]


def test_append_mixing_properties_and_channels(store):
    # op_append_dict_mixed_identity in user_edit_ops.json
    profile = apply(
        store,
        {
            "$append": {
                "tags": "beta",
                "$email": "jane@example.com",
                "$androidpush": "fcm-token-1",
                "$id_provider": "fcm",
            }
        },
    )
    assert profile["properties"] == {"tags": ["beta"]}
    assert store.channel_values(ID, "$email") == ["jane@example.com"]
    assert entries(store, "$androidpush")[0]["id_provider"] == "fcm"
    assert "id_provider" not in entries(store, "$email")[0]


def test_object_channel_values_are_compared_by_equality(store):
    subscription = {"endpoint": "https://push.example/1", "keys": {"p256dh": "k", "auth": "a"}}
    same_reordered = {"keys": {"auth": "a", "p256dh": "k"}, "endpoint": "https://push.example/1"}
    apply(
        store,
        {"$append": {"$webpush": subscription, "$id_provider": "vapid"}},
        {"$append": {"$webpush": same_reordered, "$id_provider": "vapid"}},
        {"$append": {"$slack": {"email": "a@example.com", "access_token": "xoxb"}}},
    )
    assert store.channel_values(ID, "$webpush") == [subscription]
    apply(
        store,
        {"$remove": {"$webpush": same_reordered, "$id_provider": "vapid"}},
        {"$remove": {"$slack": {"access_token": "xoxb", "email": "a@example.com"}}},
    )
    assert store.channel_values(ID, "$webpush") == []
    assert "$slack" not in store.get(ID)


def test_remove_from_a_channel_keeps_the_others_in_order(store):
    apply(store, *({"$append": {"$email": f"{n}@example.com"}} for n in "abc"))
    apply(store, {"$remove": {"$email": "b@example.com"}}, {"$remove": {"$email": "zz@x.com"}})
    assert store.channel_values(ID, "$email") == ["a@example.com", "c@example.com"]


def test_remove_then_append_in_one_record_rotates_a_value(store):
    apply(store, {"$append": {"$email": "old@example.com"}})
    apply(
        store,
        {"$remove": {"$email": "old@example.com"}},
        {"$append": {"$email": "new@example.com"}},
    )
    assert store.channel_values(ID, "$email") == ["new@example.com"]


def test_a_lone_channel_value_survives_repeats_and_other_removes(store):
    apply(store, {"$append": {"$email": "a@example.com"}}, {"$append": {"$email": "a@example.com"}})
    apply(store, {"$remove": {"$email": "b@example.com"}})
    assert store.channel_values(ID, "$email") == ["a@example.com"]
    apply(store, {"$append": {"$email": "b@example.com"}}, {"$remove": {"$email": "a@example.com"}})
    apply(store, {"$append": {"$email": "a@example.com"}})
    assert store.channel_values(ID, "$email") == ["b@example.com", "a@example.com"]


def test_removing_the_last_value_omits_the_channel(store):
    apply(store, {"$append": {"$sms": "+15555550123"}})
    profile = apply(store, {"$remove": {"$sms": "+15555550123"}})
    assert "$sms" not in profile


def test_remove_push_token_ignores_the_provider(store):
    apply(store, {"$append": {"$iospush": "apns-1", "$id_provider": "apns"}})
    apply(store, {"$remove": {"$iospush": "apns-1", "$id_provider": None}})
    assert store.channel_values(ID, "$iospush") == []


# -- profile life -------------------------------------------------------------


def test_a_profile_springs_into_existence_on_its_first_operation(store):
    store.apply(ID, [])
    assert store.get(ID) is None
    assert ID not in store
    apply(store, {"$set": {"a": 1}})
    assert ID in store
    assert len(store) == 1


def test_rest_shape_and_timestamps(store):
    first = apply(store, {"$set": {"name": "Jane"}}, {"$append": {"$email": "j@example.com"}})
    assert list(first) == ["distinct_id", "properties", "created_at", "updated_at", "$email"]
    assert first["distinct_id"] == ID
    created = datetime.fromisoformat(first["created_at"])
    assert created.utcoffset() == timedelta(0)
    second = apply(store, {"$set": {"name": "Janet"}}, now="2030-01-01T00:00:00+00:00")
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] == "2030-01-01T00:00:00+00:00"
    third = apply(store, {"$set": {"name": "Jo"}}, now="2031-01-01T00:00:00+00:00")
    assert third["created_at"] == first["created_at"]
    assert third["updated_at"] == "2031-01-01T00:00:00+00:00"
    assert store.delete(ID)
    again = apply(store, {"$set": {"name": "Jo"}}, now="2032-01-01T00:00:00+00:00")
    assert again["created_at"] == again["updated_at"] == "2032-01-01T00:00:00+00:00"


def test_readers_return_copies(store):
    apply(store, {"$set": {"meta": {"plan": "pro"}}}, {"$append": {"$slack": {"user_id": "U1"}}})
    store.get(ID)["properties"]["meta"]["plan"] = "changed"
    store.properties(ID)["meta"]["plan"] = "changed"
    store.channel_values(ID, "$slack")[0]["user_id"] = "changed"
    store.all()[ID]["$slack"][0]["value"]["user_id"] = "changed"
    assert store.properties(ID) == {"meta": {"plan": "pro"}}
    assert store.channel_values(ID, "$slack") == [{"user_id": "U1"}]


def test_readers_of_an_unknown_profile(store):
    assert store.get("nobody") is None
    assert store.properties("nobody") == {}
    assert store.channel_values("nobody", "$email") == []
    assert store.all() == {}


def test_delete_and_clear(store):
    apply(store, {"$append": {"$email": "a@example.com"}}, distinct_id="a")
    apply(store, {"$set": {"x": 1}}, distinct_id="b")
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.channel_values("a", "$email") == []
    assert list(store.all()) == ["b"]
    store.clear()
    assert len(store) == 0


def test_profiles_are_independent(store):
    apply(store, {"$append": {"$email": "a@example.com"}}, distinct_id="a")
    apply(store, {"$append": {"$email": "b@example.com"}}, distinct_id="b")
    assert store.channel_values("a", "$email") == ["a@example.com"]
    assert store.channel_values("b", "$email") == ["b@example.com"]


# -- REST upsert --------------------------------------------------------------


def test_upsert_operations_from_a_rest_body():
    body = {
        "$email": ["a@example.com"],
        "$androidpush": ["t1", {"value": "t2", "id_provider": "fcm", "bundle_id": "com.ex"}],
        "$slack": [{"email_id": "a@example.com", "access_token": "xoxb"}],
        "$timezone": "America/New_York",
        "plan": "pro",
    }
    assert upsert_operations(body) == [
        {"$set": {"$timezone": "America/New_York", "plan": "pro"}},
        {"$append": {"$email": "a@example.com"}},
        {"$append": {"$androidpush": "t1", "$id_provider": None}},
        {"$append": {"$androidpush": "t2", "$id_provider": "fcm", "$bundle_id": "com.ex"}},
        {"$append": {"$slack": {"email_id": "a@example.com", "access_token": "xoxb"}}},
    ]


def test_upsert_creates_then_adds(store):
    assert store.upsert(ID, {}) is True
    assert store.get(ID)["properties"] == {}
    assert store.upsert(ID, {"$email": ["a@example.com"], "$preferred_language": "en"}) is False
    assert store.upsert(ID, {"$email": ["b@example.com", "a@example.com"]}) is False
    assert store.channel_values(ID, "$email") == ["a@example.com", "b@example.com"]
    assert store.properties(ID) == {"$preferred_language": "en"}


def test_ensure_creates_an_empty_profile_once(store):
    assert store.ensure(ID) is True
    assert store.ensure(ID) is False
    assert store.get(ID)["properties"] == {}


# -- deferred edits -------------------------------------------------------------

T1, T2, T3 = (f"2030-01-01T00:00:0{n}+00:00" for n in (1, 2, 3))

EDITS = [  # (now, distinct_id, operations), in arrival order
    (T1, "a", [{"$set": {"name": "Ada", "plan": "free"}}, {"$append": {"$email": "a@ex.com"}}]),
    (T1, "b", [{"$append": {"$sms": "+15555550100"}}, {"$add": {"visits": 1}}]),
    (T1, "c", []),  # no operations: no profile
    (T2, "a", [{"$remove": {"$email": "a@ex.com"}}, {"$append": {"$email": "new@ex.com"}}]),
    (T2, "b", [{"$append": {"$androidpush": "t1", "$id_provider": "fcm"}}]),
    (T3, "c", [{"$set_once": {"plan": "pro"}}, {"$unset": ["missing"]}]),
    (T3, "a", [{"$add": {"visits": 2}}, {"$set": {"plan": "pro"}}, {"$unset": ["name"]}]),
]


def applied_store() -> ProfileStore:
    store = ProfileStore()
    for now, distinct_id, operations in EDITS:
        store.apply(distinct_id, operations, now)
    return store


def deferred_store() -> ProfileStore:
    """EDITS deferred in one batch per timestamp, as the hub defers a request's records."""
    store = ProfileStore()
    for when in (T1, T2, T3):
        store.defer([(d, ops) for now, d, ops in EDITS if now == when], when)
    return store


def test_deferred_edits_read_as_if_applied_in_order():
    deferred, applied = deferred_store(), applied_store()
    assert deferred.all() == applied.all()
    assert list(deferred.all()) == ["a", "b", "c"]  # creation order
    assert deferred.get("a")["created_at"] == T1
    assert deferred.get("a")["updated_at"] == T3
    assert deferred.get("c")["created_at"] == T3
    assert deferred.properties("a") == {"plan": "pro", "visits": 2}


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s.get("a"),
        lambda s: s.all(),
        lambda s: s.channel_values("a", "$email"),
        lambda s: s.properties("b"),
        lambda s: s.newest(2),
        len,
        lambda s: "c" in s,
    ],
    ids=["get", "all", "channel_values", "properties", "newest", "len", "contains"],
)
def test_every_reader_applies_deferred_edits_first_and_only_then(read):
    consumed = []

    def edits(when):
        for now, distinct_id, operations in EDITS:
            if now == when:
                consumed.append(distinct_id)
                yield distinct_id, operations

    store = ProfileStore()
    for when in (T1, T2, T3):
        store.defer(edits(when), when)
    assert consumed == []  # nothing applied (nor parsed, for the hub) until something reads
    assert read(store) == read(applied_store())
    assert consumed == ["a", "b", "c", "a", "b", "c", "a"]
    assert store.all() == applied_store().all()


def test_newest_orders_deferred_edits_by_their_timestamps():
    assert deferred_store().newest(3) == applied_store().newest(3) == ["a", "c", "b"]
    assert deferred_store().newest(1) == ["a"]


def test_apply_after_deferred_edits_comes_after_them():
    store = deferred_store()
    store.apply("a", [{"$append": {"$email": "last@ex.com"}}], "2031-01-01T00:00:00+00:00")
    assert store.channel_values("a", "$email") == ["new@ex.com", "last@ex.com"]
    assert store.get("a")["updated_at"] == "2031-01-01T00:00:00+00:00"
    assert store.get("a")["created_at"] == T1


def test_delete_after_deferred_edits_deletes_what_they_made():
    store = deferred_store()
    assert store.delete("a") is True
    assert store.get("a") is None
    assert list(store.all()) == ["b", "c"]
    store.defer([("a", [{"$set": {"x": 1}}])], T3)
    store.defer([("b", [{"$set": {"x": 1}}])], T3)
    assert store.delete("b") is True
    assert store.get("a") == {
        "distinct_id": "a",
        "properties": {"x": 1},
        "created_at": T3,
        "updated_at": T3,
    }
    assert list(store.all()) == ["c", "a"]


def test_upsert_and_ensure_after_deferred_edits():
    store = deferred_store()
    assert store.upsert("b", {"$sms": ["+15555550199"], "plan": "pro"}) is False
    assert store.channel_values("b", "$sms") == ["+15555550100", "+15555550199"]
    assert store.properties("b") == {"visits": 1, "plan": "pro"}
    store = deferred_store()
    assert store.ensure("c") is False
    assert store.get("c")["properties"] == {"plan": "pro"}
    assert store.upsert("d", {}) is True  # created after the deferred ones
    assert list(store.all()) == ["a", "b", "c", "d"]


def test_clear_drops_deferred_edits():
    store = deferred_store()
    store.clear()
    assert len(store) == 0
    assert store.all() == {}
