"""A date hierarchy for the sync state list that stays cheap on millions of rows.

Django's ``{% date_hierarchy %}`` lists the years, months or days that have
rows with ``SELECT DISTINCT`` over the whole filtered table. This one asks
only for the first and last date (``MIN``/``MAX``: an index look-up) and
offers every year, month or day between them.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.db.models import Max, Min, QuerySet
from django.utils import timezone

register = template.Library()


class _RangeOfDates:
    """Stands in for ``cl.queryset`` where Django's tag reads it."""

    def __init__(self, queryset: QuerySet) -> None:
        self._queryset = queryset

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._queryset.aggregate(*args, **kwargs)

    def datetimes(self, field_name: str, kind: str) -> list[datetime]:
        bounds = self._queryset.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        return list(
            _steps(timezone.localtime(bounds["first"]), timezone.localtime(bounds["last"]), kind)
        )

    dates = datetimes


def _steps(first: datetime, last: datetime, kind: str) -> Any:
    """Every year, month or day from ``first`` to ``last``, as naive datetimes."""
    if kind == "year":
        for year in range(first.year, last.year + 1):
            yield datetime(year, 1, 1)
    elif kind == "month":
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            yield datetime(year, month, 1)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        for ordinal in range(first.toordinal(), last.toordinal() + 1):
            day = datetime.fromordinal(ordinal)
            yield datetime(day.year, day.month, day.day)


@register.inclusion_tag("admin/date_hierarchy.html")
def suprsend_date_hierarchy(cl: Any) -> dict[str, Any] | None:
    light = copy.copy(cl)
    light.queryset = _RangeOfDates(cl.queryset)
    return date_hierarchy(light)
