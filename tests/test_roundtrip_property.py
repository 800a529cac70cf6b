"""Property: operations sent through the client and the emulator's HTTP front
give the same profiles as applying them to a profile store directly.

This covers what the wire can break: serialisation of any JSON value and
any Unicode, chunking, the order of records of one profile, signing of
every body, and deduplication (each record is sent twice).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_suprsend.testing import HubEmulator
from django_suprsend.testing.profiles import ProfileStore
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.operations import ProfileEdit
from django_suprsend.wire.retry import RetryPolicy

KEYS = st.sampled_from(["name", "plan", "score", "tags", "名前", "emoji 🚀"])
# Text a database can store: a NUL and a lone surrogate are refused (tests/test_refusals.py).
TEXT = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(TEXT, max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(TEXT, min_size=1, max_size=5).filter(str.strip), children, max_size=3
        )
    ),
    max_leaves=6,
)
EMAILS = st.sampled_from(["a@example.com", "b@example.com", "ünï@example.org"])
PHONES = st.sampled_from(["+15555550123", "+441234567890"])
TOKENS = st.sampled_from(["tok-1", "tok-2"])
NUMBERS = st.integers(min_value=-1000, max_value=1000) | st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False
)

# One builder call: (method name, positional arguments).
CALLS = st.one_of(
    st.tuples(st.just("set"), st.tuples(KEYS, JSON_VALUES.filter(lambda v: v is not None))),
    # None is refused by set_once, append and remove (test_operations.py)
    st.tuples(st.just("set_once"), st.tuples(KEYS, JSON_VALUES.filter(lambda v: v is not None))),
    st.tuples(st.just("increment"), st.tuples(KEYS, NUMBERS)),
    st.tuples(st.just("append"), st.tuples(KEYS, SCALARS.filter(lambda v: v is not None))),
    st.tuples(st.just("remove"), st.tuples(KEYS, SCALARS.filter(lambda v: v is not None))),
    st.tuples(st.just("unset"), st.tuples(st.lists(KEYS, min_size=1, max_size=2))),
    st.tuples(st.sampled_from(["add_email", "remove_email"]), st.tuples(EMAILS)),
    st.tuples(st.sampled_from(["add_sms", "remove_sms", "add_whatsapp"]), st.tuples(PHONES)),
    st.tuples(
        st.sampled_from(["add_androidpush", "remove_androidpush"]),
        st.tuples(TOKENS, st.sampled_from([None, "fcm", "xiaomi"])),
    ),
    st.tuples(st.just("set_preferred_language"), st.tuples(st.sampled_from(["en", "fr", "ja"]))),
    st.tuples(st.just("set_timezone"), st.tuples(st.sampled_from(["UTC", "Asia/Kolkata"]))),
    st.tuples(st.just("unset"), st.tuples(st.sampled_from(["$email", "$sms", "$androidpush"]))),
)
# A record: which of three profiles, and its calls.
RECORDS = st.lists(
    st.tuples(st.sampled_from(["u1", "u/2", "ü 3"]), st.lists(CALLS, min_size=1, max_size=6)),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def hub():
    with HubEmulator(workspace_key="ws_prop_key", workspace_secret="ws_prop_secret") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(hub):
    with SuprsendClient(
        "ws_prop_key",
        "ws_prop_secret",
        base_url=hub.url,
        retry=RetryPolicy(max_attempts=1),
    ) as suprsend:
        yield suprsend


def without_timestamps(profiles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        distinct_id: {k: v for k, v in profile.items() if k not in ("created_at", "updated_at")}
        for distinct_id, profile in profiles.items()
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(RECORDS)
def test_sent_through_the_wire_equals_applied_directly(hub, client, records):
    hub.reset()
    direct = ProfileStore()
    built = []
    for distinct_id, calls in records:
        edit = ProfileEdit(distinct_id)
        for method, args in calls:
            getattr(edit, method)(*args)
        built.append(client.build_record(edit))
        direct.apply(distinct_id, copy.deepcopy(edit.operations))

    # Every record twice: the hub must apply each $insert_id once.
    result = client.send_records(built + built)

    assert result.status == "success", result.failed_records[:1]
    assert result.success == 2 * len(built)
    assert without_timestamps(hub.profiles()) == without_timestamps(direct.all())
    assert set(hub.insert_id_counts.values()) == {2}
