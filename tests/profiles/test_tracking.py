"""Change tracking: what each save and delete of a profile model queues."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core import serializers
from django.db import models, transaction
from django.db.models.signals import post_save
from django.test.utils import isolate_apps

from django_suprsend import paused
from django_suprsend.exceptions import SuprsendDistinctIdChanged
from django_suprsend.models import OutboxEntry
from django_suprsend.profiles.mapping import mapping_for
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.profiles.snapshot import SNAPSHOT_KEY, read_tracked, remember
from django_suprsend.profiles.tracking import connect, diff_change, queueing
from tests.testapp.factories import (
    USER_DEFAULTS,
    clear,
    entries,
    make_customer,
    make_staff,
    make_user,
    operations,
    override_suprsend,
)
from tests.testapp.models import Customer, Device, Staff, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def user() -> User:
    """A saved user loaded from the database, with an empty outbox."""
    user = make_user()
    clear()
    return User.objects.get(pk=user.pk)


def changed(user: User, **fields: Any) -> list[dict]:
    for name, value in fields.items():
        setattr(user, name, value)
    user.save()
    (operations_,) = operations()
    return operations_


# -- creates ----------------------------------------------------------------------------


def test_create_queues_the_full_push_on_its_entry() -> None:
    user = make_user()
    entry = OutboxEntry.objects.get()
    assert (entry.kind, entry.distinct_id, entry.errors) == ("edit", str(user.pk), [])
    assert entry.operations == user.build_suprsend_profile()[0]
    assert (entry.content_type.model_class(), entry.object_id) == (User, str(user.pk))


def test_create_of_an_inactive_row_queues_nothing() -> None:
    make_user(is_active=False)
    assert entries() == []


def test_invalid_email_is_reported_and_the_phone_still_goes() -> None:
    make_user(email="ann@", language="", timezone="")
    ((_, _, operations_, errors),) = entries()
    assert operations_ == [
        {"$set": {"name": "Ann Lee", "plan": "pro"}},
        {"$append": {"$sms": "+15555550100"}},
    ]
    assert [(e["field"], e["value"]) for e in errors] == [("$email", "'ann@'")]


# -- changes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"email": "ann@example.org"},
            [
                {"$remove": {"$email": "ann@example.com"}},
                {"$append": {"$email": "ann@example.org"}},
            ],
        ),
        (
            {"phone": "+15555550199"},
            [{"$remove": {"$sms": "+15555550100"}}, {"$append": {"$sms": "+15555550199"}}],
        ),
        ({"phone": ""}, [{"$remove": {"$sms": "+15555550100"}}]),
        ({"whatsapp": "+15555550111"}, [{"$append": {"$whatsapp": "+15555550111"}}]),
        ({"plan": "team"}, [{"$set": {"plan": "team"}}]),
        ({"plan": None}, [{"$unset": ["plan"]}]),
        ({"first_name": "Anna"}, [{"$set": {"name": "Anna Lee"}}]),
        ({"language": "fr"}, [{"$set": {"$preferred_language": "fr"}}]),
        ({"language": ""}, [{"$unset": ["$preferred_language"]}]),
        ({"timezone": "Asia/Tokyo"}, [{"$set": {"$timezone": "Asia/Tokyo"}}]),
        ({"timezone": ""}, [{"$unset": ["$timezone"]}]),
    ],
)
def test_each_change(user: User, fields: dict, expected: list[dict]) -> None:
    assert changed(user, **fields) == expected


def test_several_changes_make_one_entry_in_a_fixed_order(user: User) -> None:
    assert changed(
        user, timezone="", plan=None, first_name="Anna", email="anna@example.com", phone=""
    ) == [
        {"$set": {"name": "Anna Lee"}},
        {"$unset": ["plan"]},
        {"$remove": {"$email": "ann@example.com"}},
        {"$append": {"$email": "anna@example.com"}},
        {"$remove": {"$sms": "+15555550100"}},
        {"$unset": ["$timezone"]},
    ]
    ((kind, distinct_id, _, errors),) = entries()
    assert (kind, distinct_id, errors) == ("edit", str(user.pk), [])


def test_invalid_new_value_is_an_error_and_the_old_value_is_still_removed(user: User) -> None:
    user.email, user.plan = "not-an-email", "team"
    user.save()
    ((_, _, operations_, errors),) = entries()
    assert operations_ == [{"$set": {"plan": "team"}}, {"$remove": {"$email": "ann@example.com"}}]
    assert [(e["field"], e["value"]) for e in errors] == [("$email", "'not-an-email'")]
    clear()
    # The invalid value is no longer in the database: the next change removes it all the same.
    assert changed(user, email="ann@example.net") == [
        {"$remove": {"$email": "not-an-email"}},
        {"$append": {"$email": "ann@example.net"}},
    ]


def test_a_save_that_changes_nothing_makes_no_query_and_no_entry(
    user: User, django_assert_num_queries: Any
) -> None:
    device = Device.objects.create(user=user, token="tok")
    with django_assert_num_queries(1):  # what a plain save costs: its UPDATE
        device.save()
    with django_assert_num_queries(1):
        user.save()
    with django_assert_num_queries(1):
        user.save(update_fields=["last_login"])
    assert entries() == []


def test_a_second_save_after_a_change_writes_nothing(user: User) -> None:
    changed(user, plan="team")
    user.save()
    assert len(entries()) == 1


def test_update_fields_limits_the_diff_to_the_saved_fields(user: User) -> None:
    user.email, user.plan = "ann@example.org", "team"
    user.save(update_fields=["plan"])
    user.save(update_fields=["email"])
    assert operations() == [
        [{"$set": {"plan": "team"}}],
        [{"$remove": {"$email": "ann@example.com"}}, {"$append": {"$email": "ann@example.org"}}],
    ]


def test_a_field_deferred_at_load_is_appended_without_a_removal(
    user: User, django_assert_num_queries: Any
) -> None:
    deferred = User.objects.only("id").get(pk=user.pk)
    deferred.email = "ann@example.org"
    # The UPDATE, is_active for should_sync_to_suprsend(), the entry. Method sources such as
    # get_full_name are not evaluated while fields are deferred: they could query.
    with django_assert_num_queries(3) as captured:
        deferred.save()
    assert "is_active" in captured.captured_queries[1]["sql"]
    assert operations() == [[{"$append": {"$email": "ann@example.org"}}]]


def test_a_deferred_field_read_later_joins_the_snapshot(user: User) -> None:
    deferred = User.objects.only("id").get(pk=user.pk)
    assert deferred.email == "ann@example.com"  # loads it
    assert changed(deferred, email="ann@example.org") == [
        {"$remove": {"$email": "ann@example.com"}},
        {"$append": {"$email": "ann@example.org"}},
    ]


def test_refresh_from_db_resets_the_snapshot(user: User) -> None:
    User.objects.filter(pk=user.pk).update(plan="team", email="ann@example.org")
    user.refresh_from_db()
    user.save()
    user.refresh_from_db(fields=["plan"])
    user.save()
    assert entries() == []


def test_an_instance_built_in_python_for_an_existing_row_pushes_its_values(user: User) -> None:
    User(pk=user.pk, username=user.username, **{**USER_DEFAULTS, "plan": "team"}).save()
    assert operations() == [
        [
            {"$set": {"name": "Ann Lee", "plan": "team"}},
            {"$append": {"$email": "ann@example.com"}},
            {"$append": {"$sms": "+15555550100"}},
            {"$set": {"$preferred_language": "en"}},
            {"$set": {"$timezone": "Europe/London"}},
        ]
    ]


# -- transactions, raw saves, switches -----------------------------------------------------


def rolled_back(action: Callable[[], object]) -> None:
    """Run ``action`` in a transaction that is then rolled back."""

    def failing_transaction() -> None:
        with transaction.atomic():
            action()
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError, match="rollback"):
        failing_transaction()


def test_a_rolled_back_save_leaves_no_entry(user: User) -> None:
    rolled_back(lambda: changed(user, plan="team"))
    assert entries() == []
    assert User.objects.get(pk=user.pk).plan == "pro"


def test_a_flush_is_scheduled_once_per_transaction(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        make_user()
        make_user()
    assert [callback.__name__ for callback in callbacks] == ["flush_after_commit"]


def test_raw_saves_of_loaddata_are_skipped(user: User) -> None:
    (row,) = json.loads(serializers.serialize("json", [user]))
    new_row = {**row, "pk": user.pk + 1000}
    new_row["fields"] = {**row["fields"], "username": "loaded", "email": "loaded@example.com"}
    row["fields"]["email"] = "changed@example.com"
    for obj in serializers.deserialize("json", json.dumps([row, new_row])):
        obj.save()  # what loaddata does: save_base(raw=True)
    assert User.objects.get(pk=user.pk + 1000).email == "loaded@example.com"
    assert User.objects.get(pk=user.pk).email == "changed@example.com"
    assert entries() == []


def test_paused_queues_nothing_and_keeps_snapshots(user: User) -> None:
    assert queueing()
    with paused():
        assert not queueing()
        changed_user = make_user()
        user.plan = "team"
        user.save()
        user.delete()
    assert queueing()
    assert entries() == []
    changed_user.save()  # the snapshot followed the paused save
    assert entries() == []


def test_paused_is_a_decorator() -> None:
    @paused()
    def import_users() -> User:
        return make_user()

    import_users()
    assert entries() == []
    make_user()
    assert len(entries()) == 1


def test_autosync_off_queues_nothing(user: User) -> None:
    with override_suprsend(AUTOSYNC=False):
        make_user()
        user.plan = "team"
        user.save()
    assert entries() == []
    user.save()
    assert entries() == []


# -- deletes -----------------------------------------------------------------------------


def test_delete_deletes_the_profile_by_default(user: User) -> None:
    pk = user.pk
    user.delete()
    assert entries() == [("delete", str(pk), [], [])]


def test_delete_with_unset_policy(user: User) -> None:
    with override_suprsend(ON_DELETE="unset"):
        user.delete()
        make_user(is_active=False).delete()  # never synced: nothing to unset
    assert operations() == [[{"$unset": ["$email", "$sms", "$whatsapp", "$androidpush"]}]]


def test_delete_with_ignore_policy(user: User) -> None:
    with override_suprsend(ON_DELETE="ignore"):
        user.delete()
    assert entries() == []


def test_queryset_delete_queues_each_row() -> None:
    users = [make_user(), make_user()]
    clear()
    User.objects.filter(pk__in=[u.pk for u in users]).delete()
    assert sorted(entries()) == sorted(("delete", str(u.pk), [], []) for u in users)


def test_a_rolled_back_delete_leaves_no_entry(user: User) -> None:
    rolled_back(user.delete)
    assert entries() == []


def test_cascade_deletes_the_profiles_of_related_profile_models(user: User) -> None:
    customer = make_customer(user=user, external_id="cus_1")
    clear()
    user.delete()
    assert sorted(entries()) == sorted(
        [("delete", str(customer.user_id), [], []), ("delete", "cus_1", [], [])]
    )


# -- deactivation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("unset", [("edit", [{"$unset": ["$email", "$sms", "$whatsapp", "$androidpush"]}])]),
        ("delete", [("delete", [])]),
        ("ignore", []),
    ],
)
def test_deactivation_follows_on_deactivate(user: User, policy: str, expected: list) -> None:
    with override_suprsend(ON_DEACTIVATE=policy):
        user.is_active, user.plan = False, "team"  # other changes are not sent
        user.save()
    assert [(kind, ops) for kind, _, ops, _ in entries()] == expected


def test_inactive_rows_queue_nothing_and_reactivation_pushes_everything(user: User) -> None:
    changed(user, is_active=False)
    clear()
    user.plan = "team"
    user.save()
    assert entries() == []
    Device.objects.create(user=user, token="tok", provider="fcm")
    user.is_active = True
    user.save()
    assert operations() == [
        [
            {"$set": {"name": "Ann Lee", "plan": "team"}},
            {"$append": {"$email": "ann@example.com"}},
            {"$append": {"$sms": "+15555550100"}},
            {"$append": {"$androidpush": "tok", "$id_provider": "fcm"}},
            {"$set": {"$preferred_language": "en"}},
            {"$set": {"$timezone": "Europe/London"}},
        ]
    ]


# -- distinct_id -------------------------------------------------------------------------


def test_changing_the_distinct_id_field_is_refused_before_the_write() -> None:
    customer = Customer.objects.get(pk=make_customer(external_id="cus_1").pk)
    customer.external_id = "cus_2"
    with pytest.raises(SuprsendDistinctIdChanged) as info:
        customer.save()
    message = str(info.value)
    assert "'cus_1' to 'cus_2'" in message
    assert "immutable in SuprSend" in message
    assert Customer.objects.get(pk=customer.pk).external_id == "cus_1"
    assert isinstance(info.value, ValueError)
    customer.save(update_fields=["company"])  # the id is not saved: allowed
    with paused():
        customer.save()  # a deliberate re-key
    assert Customer.objects.get(pk=customer.pk).external_id == "cus_2"


def test_a_row_that_gets_its_distinct_id_gets_its_first_push() -> None:
    customer = make_customer(external_id=None, company="Acme")
    assert entries() == [("edit", str(customer.user_id), operations()[0], [])]  # the user's
    clear()
    customer = Customer.objects.get(pk=customer.pk)
    customer.external_id = "cus_9"
    customer.save()
    assert entries() == [
        (
            "edit",
            "cus_9",
            [{"$set": {"company": "Acme"}}, {"$append": {"$email": "billing@example.com"}}],
            [],
        )
    ]


# -- models ------------------------------------------------------------------------------


def test_multi_table_child() -> None:
    staff = make_staff(department="ops")
    assert operations()[0][0] == {"$set": {"name": "Ann Lee", "plan": "pro", "department": "ops"}}
    clear()
    staff = Staff.objects.get(pk=staff.pk)
    assert changed(staff, department="sales", email="ann@example.org") == [
        {"$set": {"department": "sales"}},
        {"$remove": {"$email": "ann@example.com"}},
        {"$append": {"$email": "ann@example.org"}},
    ]
    clear()
    pk = staff.pk
    staff.delete()
    assert entries() == [("delete", str(pk), [], [])]


def test_deleting_a_child_but_keeping_its_parent_keeps_the_profile() -> None:
    staff = make_staff()
    clear()
    pk = staff.pk
    staff.delete(keep_parents=True)
    assert entries() == []
    assert User.objects.filter(pk=pk).exists()


def test_deleting_the_parent_of_a_child_deletes_the_profile_once() -> None:
    staff = make_staff()
    clear()
    User.objects.get(pk=staff.pk).delete()
    assert entries() == [("delete", str(staff.pk), [], [])]


def test_receivers_are_connected_per_profile_model_only() -> None:
    for model in (User, Staff, Customer):
        assert post_save.has_listeners(model)
    assert not connect(Device)


@isolate_apps("tests.testapp")
def test_models_outside_the_app_registry_are_not_connected_by_class_prepared() -> None:
    class Visitor(User):
        class Meta:
            app_label = "testapp"

    assert not post_save.has_listeners(Visitor)


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_mode_the_save_and_its_entry_commit_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("django_suprsend.delivery.schedule._send_flush_task", lambda using: None)
    user = make_user()
    customer = make_customer(user=user, external_id="cus_1")
    assert len(entries()) == 2

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox down")

    monkeypatch.setattr("django_suprsend.profiles.tracking.enqueue_many", fail)
    user.plan = "team"
    with pytest.raises(RuntimeError):
        user.save()
    assert User.objects.get(pk=user.pk).plan == "pro"  # the UPDATE was rolled back with it
    customer.external_id = "cus_2"
    with pytest.raises(SuprsendDistinctIdChanged):
        customer.save()
    assert Customer.objects.get(pk=customer.pk).external_id == "cus_1"


@isolate_apps("tests.testapp")
def test_in_place_edits_of_json_values_are_seen() -> None:
    class Team(SuprsendProfileMixin, models.Model):  # noqa: DJ008
        slack = models.JSONField(default=dict)
        suprsend_channels = {"$slack": "slack"}

        class Meta:
            app_label = "testapp"

    team = Team(pk=1, slack={"incoming_webhook": {"url": "https://hooks.example.com/a"}})
    mapping = mapping_for(Team)
    remember(team, read_tracked(team, mapping))
    team.slack["incoming_webhook"]["url"] = "https://hooks.example.com/b"
    change = diff_change(team, mapping, team.__dict__[SNAPSHOT_KEY], read_tracked(team, mapping))
    assert change is not None
    assert change.operations == [
        {"$remove": {"$slack": {"incoming_webhook": {"url": "https://hooks.example.com/a"}}}},
        {"$append": {"$slack": {"incoming_webhook": {"url": "https://hooks.example.com/b"}}}},
    ]
