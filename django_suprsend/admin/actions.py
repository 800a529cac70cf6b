"""The admin's actions on profiles: resync, unset channels, retry the failed ones; each
gated by its own permission."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.contenttypes.models import ContentType
from django.db import router, transaction
from django.db.models import CharField, QuerySet
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_suprsend.delivery.enqueue import enqueue_many
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.profiles.api import sync, unset_channels
from django_suprsend.profiles.mapping import mapping_for
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.wire.operations import CHANNEL_KEYS, ProfileEdit


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
