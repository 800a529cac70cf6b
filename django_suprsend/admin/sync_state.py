"""The Django admin of SuprSend sync: the ``SyncState`` list and detail, and the actions.

- ``SyncStateAdmin``: every profile's sync state, read-only, with a summary
  above the list (counts per status, the outbox's backlog, recent failures)
  and, on each profile's page, the last failed record, its pending
  operations and its recent outbox history.
- ``SuprsendAdminMixin``: for the project's own admin of a profile model
  (``class UserAdmin(SuprsendAdminMixin, BaseUserAdmin)``): a "SuprSend"
  status column, a filter by that status and the same actions.

Actions only *queue* (outbox rows written in bulk); workers send. Each needs
its own permission: ``django_suprsend.resync_profile`` (resync, retry
failed) or ``django_suprsend.unset_channels``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.db import router
from django.db.models import Count, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _

from django_suprsend.admin.actions import (
    ACTIONS,
    _ActionPermissions,
)
from django_suprsend.admin.display import (
    HISTORY_LENGTH,
    PENDING_SHOWN,
    _cell,
    _code_label,
    _json,
    _table,
    status_badge,
)
from django_suprsend.delivery import outage
from django_suprsend.models import CredentialsOutage, OutboxEntry, SyncState, SyncStatus

__all__ = ["ErrorCodeFilter", "LastDeliveryFilter", "SyncStateAdmin"]


# -- resolving the selected profiles -------------------------------------------------


# -- actions ---------------------------------------------------------------------------


# -- the SyncState admin ---------------------------------------------------------------


class ErrorCodeFilter(admin.SimpleListFilter):
    """The error codes present (one DISTINCT query on an indexed column)."""

    title = _("error code")
    parameter_name = "error_code"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        codes = (
            SyncState.objects.exclude(last_error_code=None)
            .order_by("last_error_code")
            .values_list("last_error_code", flat=True)
            .distinct()
        )
        return [(str(code), _code_label(code)) for code in codes]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(last_error_code=value) if value and value.isdigit() else queryset


class LastDeliveryFilter(admin.DateFieldListFilter):
    """The date filter on ``last_synced_at``, by what it holds: when the profile's values last
    reached the hub (a failed profile's too, when its valid values went)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = _("last delivered to the hub")


@admin.register(SyncState)
class SyncStateAdmin(_ActionPermissions, admin.ModelAdmin):
    """Read-only: rows are written by the workers. Superusers may delete rows (those of
    deleted profiles, say); a later sync of the profile writes its row again."""

    # Named so that no cell reads as more than it is: a failed row shows no "synced" time
    # (its valid values may have reached the hub, the profile did not sync) and a synced
    # row no attempts count; the error keeps to one line (the whole of it in its title,
    # and on the profile's page), so the list fits 1280 px beside the filters.
    list_display = (
        "distinct_id",
        "django_object",
        "coloured_status",
        "failed_attempts",
        "last_successful_sync",
        "short_error",
    )
    list_filter = ("status", ("last_synced_at", LastDeliveryFilter), ErrorCodeFilter)
    search_fields = ("distinct_id", "last_error")
    date_hierarchy = "last_synced_at"
    show_full_result_count = False
    actions = ACTIONS
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "distinct_id",
                    "django_object",
                    "coloured_status",
                    "failed_attempts",
                    "last_delivered_at",
                    "last_attempt_at",
                    "updated_at",
                    "last_error",
                    "last_error_code",
                )
            },
        ),
        (_("Last failed record"), {"fields": ("failed_record",)}),
        (_("Pending operations"), {"fields": ("pending_operations",)}),
        (_("Recent outbox history"), {"fields": ("outbox_history",)}),
    )
    readonly_fields = (
        "django_object",
        "coloured_status",
        "failed_attempts",
        "last_delivered_at",
        "failed_record",
        "pending_operations",
        "outbox_history",
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """A distinct_id, exactly (its unique index), or words of an error, among the
        profiles that have one (failed or retrying: a small part of the table), so that
        no search reads every row of a table of millions."""
        term = search_term.strip()
        if not term:
            return queryset, False
        failing = Q(status__in=[SyncStatus.FAILED, SyncStatus.RETRYING])
        return queryset.filter(
            Q(distinct_id=term) | (failing & Q(last_error__icontains=term))
        ), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser

    # -- columns
    @admin.display(description=_("object"))
    def django_object(self, state: SyncState) -> str:
        """The profile's model and pk, linked to its admin page when it has one (no query:
        content types are cached, URLs reversed)."""
        if not state.content_type_id:
            return "-"
        model = ContentType.objects.get_for_id(state.content_type_id).model_class()
        if model is None:
            return state.object_id or "-"
        label = f"{model._meta.verbose_name} {state.object_id}"
        if not self.admin_site.is_registered(model):
            return label
        opts = model._meta
        try:
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[quote(state.object_id)],
            )
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description=_("status"), ordering="status")
    def coloured_status(self, state: SyncState) -> str:
        return status_badge(state.status)

    @admin.display(description=_("failed attempts"), ordering="attempts")
    def failed_attempts(self, state: SyncState) -> Any:
        """The sends that failed, while the profile is not synced ("-" otherwise: a synced
        profile has no failed attempts to count, a refusal before sending made none)."""
        if state.status == SyncStatus.SYNCED or not state.attempts:
            return self.get_empty_value_display()
        return state.attempts

    @admin.display(description=_("last successful sync"), ordering="last_synced_at")
    def last_successful_sync(self, state: SyncState) -> Any:
        """When the profile synced, for a synced profile only (a failed one's
        ``last_synced_at`` may be the time its valid values went with a refused one), in
        the short format: the list's width goes to the error."""
        if state.status != SyncStatus.SYNCED or state.last_synced_at is None:
            return self.get_empty_value_display()
        when = timezone.template_localtime(state.last_synced_at)
        return formats.date_format(when, "SHORT_DATETIME_FORMAT")

    @admin.display(description=_("last delivered to the hub"))
    def last_delivered_at(self, state: SyncState) -> Any:
        """``last_synced_at`` on the profile's page, named for what it is."""
        if state.last_synced_at is None:
            return self.get_empty_value_display()
        return _cell(state.last_synced_at)

    @admin.display(description=_("last error"), ordering="last_error_code")
    def short_error(self, state: SyncState) -> str:
        """The start of the error on one line (change_list.html's style); all of it in the
        title, shown on hover."""
        if not state.last_error:
            return ""
        return format_html(
            '<span class="suprsend-error" title="{}">{}</span>',
            state.last_error,
            Truncator(state.last_error).chars(80),
        )

    # -- detail
    @admin.display(description=_("as the hub returned it"))
    def failed_record(self, state: SyncState) -> str:
        if state.last_failed_record is None:
            return "-"
        return format_html("<pre>{}</pre>", _json(state.last_failed_record))

    @admin.display(description=_("pending"))
    def pending_operations(self, state: SyncState) -> str:
        entries = OutboxEntry.objects.filter(
            status=OutboxEntry.Status.PENDING, distinct_id=state.distinct_id
        ).order_by("id")[:PENDING_SHOWN]
        return _table(
            [_("kind"), _("created"), _("attempts"), _("next attempt"), _("operations")],
            [
                (
                    e.get_kind_display(),
                    e.created_at,
                    e.attempts,
                    e.next_attempt_at,
                    format_html("<pre>{}</pre>", _json(e.operations)),
                )
                for e in entries
            ],
        )

    @admin.display(description=_("latest entries"))
    def outbox_history(self, state: SyncState) -> str:
        entries = OutboxEntry.objects.filter(distinct_id=state.distinct_id).order_by("-id")[
            :HISTORY_LENGTH
        ]
        return _table(
            [_("kind"), _("status"), _("attempts"), _("created"), _("sent"), _("last error")],
            [
                (
                    e.get_kind_display(),
                    e.get_status_display(),
                    e.attempts,
                    e.created_at,
                    e.sent_at or "-",
                    e.last_error or "-",
                )
                for e in entries
            ],
        )

    # -- summary above the list
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(
            request, {"suprsend_summary": self.summary(), **(extra_context or {})}
        )

    @staticmethod
    def summary() -> dict[str, Any]:
        """Counts per status, failures of the last 24 hours, the outbox's backlog, and whether
        the hub refuses the credentials: 3 queries."""
        now = timezone.now()
        per_status = {
            row["status"]: row
            for row in SyncState.objects.order_by()
            .values("status")
            .annotate(
                count=Count("id"),
                recent=Count("id", filter=Q(updated_at__gte=now - timedelta(hours=24))),
            )
        }
        backlog = OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).aggregate(
            count=Count("id"), oldest=Min("created_at")
        )
        return {
            "statuses": [
                (status_badge(status), per_status.get(status, {}).get("count", 0))
                for status in SyncStatus.values
            ],
            "failed_24h": per_status.get(SyncStatus.FAILED, {}).get("recent", 0),
            "pending_entries": backlog["count"],
            "oldest_pending_age": timesince(backlog["oldest"], now) if backlog["oldest"] else None,
            "credentials_outage": _credentials_outage(now),
        }


def _credentials_outage(now: datetime) -> dict[str, Any] | None:
    """What the summary says while the hub refuses the credentials (None: it does not)."""
    current = outage.current(using=router.db_for_read(CredentialsOutage))
    if current is None:
        return None
    return {
        "status_code": current.status_code,
        "since": current.first_seen_at,
        "lasted": outage.lasted(current.first_seen_at, now),
        "last_seen": current.last_seen_at,
        "refusals": current.refusals,
        "error": Truncator(current.error).chars(500),
        "what_to_check": outage.WHAT_TO_CHECK,
    }


# -- the mixin for the project's own admin ------------------------------------------------
