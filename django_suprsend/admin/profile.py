"""What a profile model's own admin gains with :class:`SuprsendAdminMixin`: the sync
status column and filter, the actions, the SyncState inline summary."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR
from django.db import models
from django.db.models import CharField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_suprsend.admin.actions import (
    ACTIONS,
    _ActionPermissions,
)
from django_suprsend.admin.display import (
    status_badge,
)
from django_suprsend.models import SyncState, SyncStatus
from django_suprsend.profiles.mapping import mapping_for


class SuprsendStatusFilter(admin.SimpleListFilter):
    title = _("SuprSend status")
    parameter_name = "suprsend"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [*SyncStatus.choices, ("none", _("never synced"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "none":
            return queryset.filter(suprsend_status__isnull=True)
        if value in SyncStatus.values:
            return queryset.filter(suprsend_status=value)
        return queryset


class SuprsendAdminMixin(_ActionPermissions):
    """Add SuprSend to the admin of a model with ``SuprsendProfileMixin``::

        @admin.register(User)
        class UserAdmin(SuprsendAdminMixin, BaseUserAdmin):
            suprsend_prefetch_related = ("devices",)  # what the mapping's sources read

    Adds a "SuprSend" status column, second (a subquery of the list's one query), a
    filter by that status, and the actions resync, unset channels and retry
    failed. The column and filter need a distinct_id read from a field (the
    default, the primary key, is one); with a method they are left out.
    """

    #: ``prefetch_related`` lookups for the full push of a resync (the relations that
    #: the mapping's sources read), so that 10,000 rows take a handful of queries.
    suprsend_prefetch_related: tuple[str, ...] = ()

    def _suprsend_id_field(self) -> str | None:
        return mapping_for(self.model).distinct_id.attname

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        attname = self._suprsend_id_field()
        if attname is None:
            return queryset
        state = SyncState.objects.filter(distinct_id=Cast(OuterRef(attname), CharField()))
        return queryset.annotate(suprsend_status=Subquery(state.values("status")[:1]))

    @admin.display(description=_("SuprSend"), ordering="suprsend_status")
    def suprsend_status(self, obj: models.Model) -> str:
        return status_badge(getattr(obj, "suprsend_status", None))

    def get_list_display(self, request: HttpRequest) -> Any:
        """The status second, after the link to the object: a list wider than the screen
        (1280 px beside the filters) hides its last columns, never this one."""
        list_display = super().get_list_display(request)
        if self._suprsend_id_field() is None:
            return list_display
        first, *rest = list_display
        return (first, "suprsend_status", *rest)

    def get_list_filter(self, request: HttpRequest) -> Any:
        list_filter = super().get_list_filter(request)
        if self._suprsend_id_field() is None:
            return list_filter
        return (*list_filter, SuprsendStatusFilter)

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 says where the actions show (the list or the change form); 5.2 knows
        # no such argument. get_action() builds each in the form this Django expects, and
        # none for the change form: these actions are for the list.
        where = {} if action_location is None else {"action_location": action_location}
        actions = super().get_actions(request, **where)
        if self.actions is None or IS_POPUP_VAR in request.GET:
            return actions
        for func in ACTIONS:
            if all(
                getattr(self, f"has_{permission}_permission")(request)
                for permission in func.allowed_permissions
            ) and (action := self.get_action(func, **where)):
                actions.setdefault(func.__name__, action)
        return actions
