"""How the admin shows SuprSend state: status badges, JSON, small tables, error codes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from django_suprsend.models import SyncStatus
from django_suprsend.wire.bulk import LOCAL_ERROR_CODES

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


def _code_label(code: int) -> str:
    """An HTTP status as it is; the codes of ours by what they mean."""
    label = LOCAL_ERROR_CODES.get(code)
    return f"{label} ({code})" if label else str(code)
