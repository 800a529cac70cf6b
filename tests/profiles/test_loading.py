"""Rows the backfill loads without ``Model.__init__`` are the instances Django builds."""

from __future__ import annotations

import pytest
from django.db.models.signals import post_init

from django_suprsend.profiles import loading
from django_suprsend.profiles.api import paused
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.profiles.snapshot import SNAPSHOT_KEY, untracked_loads
from tests.testapp.factories import make_user
from tests.testapp.models import Customer, Staff, User

pytestmark = pytest.mark.django_db


def state(instance) -> tuple:
    fields = {k: v for k, v in vars(instance).items() if k not in ("_state", SNAPSHOT_KEY)}
    return fields, instance._state.db, instance._state.adding


@pytest.mark.parametrize("model", [User, Staff, Customer])
def test_an_untracked_row_is_what_django_builds(model):
    with paused():
        user = make_user()
        Staff.objects.create(username="staff", email="s@example.com", department="ops")
        Customer.objects.create(user=user, external_id="c-1", email="c@example.com")
    tracked = list(model.objects.order_by("pk"))

    with untracked_loads():
        untracked = list(model.objects.order_by("pk"))

    assert loading.plain_attnames(model, SuprsendProfileMixin) is not None  # the short path
    assert [state(row) for row in untracked] == [state(row) for row in tracked]
    assert all(type(row) is model for row in untracked)
    assert [r.build_suprsend_profile() for r in untracked] == [
        r.build_suprsend_profile() for r in tracked
    ]


def test_deferred_fields_and_init_receivers_take_djangos_path():
    with paused():
        make_user()
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    with untracked_loads():
        partial = User.objects.only("pk", "email").get()
        post_init.connect(receiver, sender=User)
        try:
            whole = User.objects.get()
        finally:
            post_init.disconnect(receiver, sender=User)

    assert partial.get_deferred_fields()  # deferred, as Django loads it
    assert seen == [whole]  # the receiver ran: Model.__init__ built it


def test_a_model_with_its_own_init_is_not_short_cut(monkeypatch):
    original = User.__init__

    def own_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.extra = "set in __init__"

    with paused():
        make_user()
    loading.plain_attnames.cache_clear()
    monkeypatch.setattr(User, "__init__", own_init)
    try:
        assert loading.plain_attnames(User, SuprsendProfileMixin) is None
        with untracked_loads():
            assert User.objects.get().extra == "set in __init__"
    finally:
        monkeypatch.undo()
        loading.plain_attnames.cache_clear()
