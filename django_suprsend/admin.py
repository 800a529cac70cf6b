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

import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.db import models, router, transaction
from django.db.models import CharField, Count, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_suprsend.delivery import outage
from django_suprsend.delivery.enqueue import enqueue_many
from django_suprsend.models import CredentialsOutage, OutboxEntry, SyncState, SyncStatus
from django_suprsend.profiles.api import sync, unset_channels
from django_suprsend.profiles.mapping import mapping_for
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.wire.bulk import LOCAL_ERROR_CODES
from django_suprsend.wire.operations import CHANNEL_KEYS, ProfileEdit

__all__ = ["SuprsendAdminMixin", "SyncStateAdmin"]

STATUS_COLOURS = {
    SyncStatus.SYNCED: "#2e7d32",
    SyncStatus.PENDING: "#616161",
    SyncStatus.RETRYING: "#e65100",
    SyncStatus.FAILED: "#c62828",
}
HISTORY_LENGTH = 20
PENDING_SHOWN = 50


def status_badge(status: str | None) -> str:
    """The status in its colour; "never synced" for None."""
    if status is None:
        return format_html('<span style="color: #9e9e9e">{}</span>', _("never synced"))
    label = SyncStatus(status).label if status in SyncStatus.values else status
    return format_html(
        '<span style="color: {}; font-weight: bold">{}</span>',
        STATUS_COLOURS.get(status, "inherit"),
        label,
    )


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _table(headers: list[Any], rows: list[tuple[Any, ...]]) -> str:
    """An escaped HTML table; cells that are ``SafeString`` (format_html) are kept as HTML."""
    if not rows:
        return format_html("<p>{}</p>", _("None."))
    cells = "".join(["<td>{}</td>"] * len(headers))
    return format_html(
        "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<th>{}</th>", ((header,) for header in headers)),
        format_html_join("", f"<tr>{cells}</tr>", (map(_cell, row) for row in rows)),
    )


def _cell(value: Any) -> Any:
    """Datetimes in the current time zone and format, like the admin's own fields."""
    if isinstance(value, datetime):
        return formats.localize(timezone.template_localtime(value))
    return value


# -- resolving the selected profiles -------------------------------------------------


def _selected_profiles(
    model_admin: admin.ModelAdmin, queryset: QuerySet
) -> tuple[list[Any], list[str]]:
    """The selected profiles, as groups of rows to give ``sync()``/``unset_channels()``
    (one query per model), and the distinct_ids of SyncState rows whose object is gone."""
    if queryset.model is not SyncState:
        return [_prefetched(model_admin, queryset)], []
    wanted: dict[int, dict[str, str]] = defaultdict(dict)  # content type -> object_id -> id
    gone = []
    for distinct_id, content_type_id, object_id in queryset.values_list(
        "distinct_id", "content_type_id", "object_id"
    ):
        if content_type_id and object_id:
            wanted[content_type_id][object_id] = distinct_id
        else:
            gone.append(distinct_id)
    groups = []
    for content_type_id, ids in wanted.items():
        model = ContentType.objects.get_for_id(content_type_id).model_class()
        if model is None or not issubclass(model, SuprsendProfileMixin):
            gone.extend(ids.values())
            continue
        objs = list(_prefetched(model_admin, model._default_manager.filter(pk__in=list(ids))))
        found = {str(obj.pk) for obj in objs}
        gone.extend(distinct_id for object_id, distinct_id in ids.items() if object_id not in found)
        groups.append(objs)
    return groups, gone


def _prefetched(model_admin: admin.ModelAdmin, queryset: QuerySet) -> QuerySet:
    """``queryset`` with the ``suprsend_prefetch_related`` of its model's admin, if any."""
    site = model_admin.admin_site
    registered = (
        site.get_model_admin(queryset.model) if site.is_registered(queryset.model) else None
    )
    lookups = getattr(registered, "suprsend_prefetch_related", ())
    return queryset.prefetch_related(*lookups) if lookups else queryset


def _sync_states(queryset: QuerySet) -> QuerySet:
    """The SyncState rows of the selected profiles."""
    if queryset.model is SyncState:
        return queryset
    source = mapping_for(queryset.model).distinct_id
    if source.attname is None:
        return SyncState.objects.none()
    ids = queryset.order_by().annotate(_sid=Cast(source.attname, CharField())).values("_sid")
    return SyncState.objects.filter(distinct_id__in=ids)


# -- actions ---------------------------------------------------------------------------


@admin.action(description=_("Resync to SuprSend"), permissions=["resync_profile"])
def resync_profiles(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    """Queue the full push of each selected profile (sent by the workers)."""
    groups, gone = _selected_profiles(model_admin, queryset)
    count = sum(sync(rows) for rows in groups)
    model_admin.message_user(
        request,
        ngettext(
            "%(count)d profile queued for a resync.",
            "%(count)d profiles queued for a resync.",
            count,
        )
        % {"count": count},
        messages.SUCCESS,
    )
    if gone:
        model_admin.message_user(
            request,
            ngettext(
                "%(count)d profile skipped: its object no longer exists.",
                "%(count)d profiles skipped: their objects no longer exist.",
                len(gone),
            )
            % {"count": len(gone)},
            messages.WARNING,
        )


@admin.action(description=_("Unset channels in SuprSend"), permissions=["unset_channels"])
def unset_profile_channels(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """An intermediate page to choose the channels, then queue their ``$unset``."""
    channels = [key for key in request.POST.getlist("channels") if key in CHANNEL_KEYS]
    if request.POST.get("post") == "yes" and channels:
        groups, gone = _selected_profiles(model_admin, queryset)
        count = sum(unset_channels(rows, channels) for rows in groups)
        if gone:
            operations = ProfileEdit("-").unset(channels).operations
            using = router.db_for_write(OutboxEntry)
            count += enqueue_many(
                ((distinct_id, operations, [], None) for distinct_id in gone), using=using
            )
        model_admin.message_user(
            request,
            ngettext(
                "%(count)d profile queued to unset %(channels)s.",
                "%(count)d profiles queued to unset %(channels)s.",
                count,
            )
            % {"count": count, "channels": ", ".join(channels)},
            messages.SUCCESS,
        )
        return None
    if request.POST.get("post") == "yes":
        model_admin.message_user(request, _("Choose at least one channel."), messages.ERROR)
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Unset channels in SuprSend"),
        "opts": opts,
        "app_label": opts.app_label,
        "count": queryset.count(),
        "channels": CHANNEL_KEYS,
        "checked": channels,
        "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action": request.POST.get("action", ""),
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/django_suprsend/unset_channels.html", context)


@admin.action(description=_("Retry failed profiles"), permissions=["resync_profile"])
def retry_failed(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Queue a fresh full push of the selected profiles that failed, and mark them pending.

    Their failed entries are not sent again: a change newer than them may have reached
    the hub since, and resending the old one would undo it. The full push carries the
    database's values as they are now.
    """
    failed = _sync_states(queryset).filter(status=SyncStatus.FAILED)
    groups, gone = _selected_profiles(model_admin, failed)
    using = router.db_for_write(SyncState)
    with transaction.atomic(using=using):
        count = sum(sync(rows) for rows in groups)
        failed.exclude(distinct_id__in=gone).update(
            status=SyncStatus.PENDING, updated_at=timezone.now()
        )
    model_admin.message_user(
        request,
        ngettext(
            "%(count)d failed profile queued for a retry.",
            "%(count)d failed profiles queued for a retry.",
            count,
        )
        % {"count": count},
        messages.SUCCESS,
    )


ACTIONS = (resync_profiles, unset_profile_channels, retry_failed)


class _ActionPermissions:
    """The ``has_<permission>_permission`` methods that the actions' permissions name."""

    def has_resync_profile_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_suprsend.resync_profile")

    def has_unset_channels_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_suprsend.unset_channels")


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


def _code_label(code: int) -> str:
    """An HTTP status as it is; the codes of ours by what they mean."""
    label = LOCAL_ERROR_CODES.get(code)
    return f"{label} ({code})" if label else str(code)


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
