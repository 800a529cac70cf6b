"""Which rows a backfill reads: the models, the filters (``--since``, ``--filter``,
``--only-failed``), and the batches in primary-key order."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from django_suprsend.backfill.options import (
    BackfillError,
    Options,
)
from django_suprsend.models import SyncState, SyncStatus
from django_suprsend.profiles.mapping import profile_models
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.profiles.refusal import profile_key
from django_suprsend.profiles.snapshot import untracked_loads

SINCE_FIELDS = ("date_joined", "updated_at", "modified")


def resolve_models(labels: list[str]) -> list[type[models.Model]]:
    """The models named ``app_label.ModelName``; default: every concrete profile model."""
    if not labels:
        return [m for m in profile_models() if not m._meta.proxy and not m._meta.abstract]
    found = []
    for label in labels:
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            raise BackfillError(f"Unknown model {label!r}: use app_label.ModelName.") from None
        if not issubclass(model, SuprsendProfileMixin):
            raise BackfillError(f"{label} does not use SuprsendProfileMixin.")
        found.append(model)
    return found


def since_field(model: type[models.Model]) -> str:
    """The field ``--since`` compares: ``suprsend_backfill_since_field`` or a usual one."""
    names = {f.name for f in model._meta.concrete_fields}
    declared = getattr(model, "suprsend_backfill_since_field", None)
    if declared:
        if declared not in names:
            raise BackfillError(
                f"{model._meta.label}.suprsend_backfill_since_field is {declared!r}, "
                "which is not a field."
            )
        return declared
    for name in SINCE_FIELDS:
        if name in names:
            return name
    raise BackfillError(
        f"--since: {model._meta.label} has none of the fields {', '.join(SINCE_FIELDS)}; "
        "set suprsend_backfill_since_field on the model."
    )


def _since_value(model: type[models.Model], name: str, text: str) -> Any:
    try:
        value: Any = parse_datetime(text) or parse_date(text)
    except ValueError:
        value = None
    if value is None:
        raise BackfillError(f"--since {text!r} is not an ISO date or datetime.")
    is_datetime_field = isinstance(model._meta.get_field(name), models.DateTimeField)
    if not isinstance(value, datetime.datetime) and is_datetime_field:
        value = datetime.datetime.combine(value, datetime.time.min)
    if isinstance(value, datetime.datetime) and settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value


def _filter_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def queryset(model: type[models.Model], options: Options) -> models.QuerySet:
    """The rows to push, unordered and unsliced."""
    qs = model._default_manager.db_manager(options.database).all()
    if options.since:
        name = since_field(model)
        qs = qs.filter(**{f"{name}__gte": _since_value(model, name, options.since)})
    lookups = {}
    for item in options.filters:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BackfillError(f"--filter {item!r}: use field=value.")
        lookups[name.strip()] = _filter_value(value)
    if options.ids:
        pk = model._meta.pk
        try:
            lookups["pk__in"] = [pk.to_python(i.strip()) for i in options.ids.split(",") if i]
        except Exception as exc:
            raise BackfillError(f"--ids {options.ids!r}: {exc}") from None
    try:
        qs = qs.filter(**lookups)
        str(qs.query)  # unknown fields and bad lookups fail here, not mid-run
    except Exception as exc:
        raise BackfillError(f"--filter: {exc}") from None
    select = getattr(model, "suprsend_select_related", None)
    if select:
        qs = qs.select_related(*select)
    prefetch = getattr(model, "suprsend_prefetch_related", None)
    if prefetch:
        qs = qs.prefetch_related(*prefetch)
    return qs


def batches(qs: models.QuerySet, last_pk: Any, size: int) -> Iterator[list[models.Model]]:
    """``qs`` in lists of ``size`` rows, after ``last_pk`` (keyset pagination on the pk).

    The rows get no change-tracking snapshot: they are read only to build full pushes.
    """
    while True:
        page = qs if last_pk is None else qs.filter(pk__gt=last_pk)
        with untracked_loads():
            rows = list(page.order_by("pk")[:size])
        if not rows:
            return
        last_pk = rows[-1].pk
        yield rows
        if len(rows) < size:
            return


def _only_failed(rows: list[models.Model], using: str) -> list[models.Model]:
    ids = {row.pk: profile_key(row) for row in rows}  # a refused id: refused again when built
    failed = _failed_ids([d for d in ids.values() if d is not None], using)
    return [row for row in rows if ids[row.pk] in failed]


def _failed_ids(distinct_ids: list[str], using: str) -> set[str]:
    return set(
        SyncState.objects.using(using)
        .filter(status=SyncStatus.FAILED, distinct_id__in=distinct_ids)
        .values_list("distinct_id", flat=True)
    )


def count(model: type[models.Model], options: Options) -> int:
    """The rows of the selection (one COUNT, for the progress report)."""
    return queryset(model, options).count()
