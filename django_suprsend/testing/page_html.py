"""The emulator's page as HTML: one self-contained page (inline CSS, no script, no asset).

Every value is HTML-escaped, since profile values and names come from users.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any

from django_suprsend.testing.page import FRESH_SECONDS, REFRESH_SECONDS

__all__ = ["render_page"]

_CLIP = 160  # characters of a value shown before "…"
# shown first among the properties: the ones a notification is rendered with
_KEY_PROPERTIES = ("$preferred_language", "$timezone", "$locale", "name")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _clip(text: str, limit: int = _CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any) -> str:
    """A value as text: strings as they are, anything else as compact JSON; escaped."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _e(_clip(text))


def _parse_time(iso: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(iso) if isinstance(iso, str) else None
    except ValueError:
        return None


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} d ago"


def _muted(text: str) -> str:
    return f'<span class="muted">{_e(text)}</span>'


_DASH = '<span class="muted">—</span>'


def _channel_rows(profile: Mapping[str, Any]) -> str:
    rows = []
    for key, entries in profile.items():
        if not key.startswith("$") or not isinstance(entries, list):
            continue  # channels are the "$..." keys holding lists of entries
        for entry in entries:
            value = entry.get("value") if isinstance(entry, dict) else entry
            extra = ""
            if isinstance(entry, dict) and entry.get("id_provider"):
                extra = " " + _muted(str(entry["id_provider"]))
            if isinstance(entry, dict) and entry.get("status", "active") != "active":
                extra += " " + _muted(str(entry["status"]))
            rows.append(f"<dt>{_e(key.lstrip('$'))}</dt><dd>{_show(value)}{extra}</dd>")
    return f'<dl class="kv">{"".join(rows)}</dl>' if rows else _DASH


def _property_rows(properties: Any) -> str:
    if not isinstance(properties, dict) or not properties:
        return _DASH
    keys = [k for k in _KEY_PROPERTIES if k in properties]
    keys += [k for k in properties if k not in keys]
    rows = "".join(f"<dt>{_e(key)}</dt><dd>{_show(properties[key])}</dd>" for key in keys)
    return f'<dl class="kv">{rows}</dl>'


def _profile_row(profile: Mapping[str, Any], now: datetime | None) -> str:
    updated = _parse_time(profile.get("updated_at"))
    age = (now - updated).total_seconds() if now and updated else None
    fresh = age is not None and age < FRESH_SECONDS
    when = _DASH
    if updated is not None:
        when = f"{_e(updated.astimezone().strftime('%H:%M:%S'))}"
        if age is not None:
            when += f"<br>{_muted(_ago(age))}"
    return (
        f"<tr{' class=fresh' if fresh else ''}>"
        f'<td class="id"><code>{_e(profile.get("distinct_id", ""))}</code></td>'
        f"<td>{_channel_rows(profile)}</td>"
        f"<td>{_property_rows(profile.get('properties'))}</td>"
        f'<td class="when" title="{_e(profile.get("updated_at", ""))}">{when}</td>'
        "</tr>"
    )


def _status_badge(item: Mapping[str, Any]) -> str:
    status = item.get("status")
    if status is None:
        return f'<span class="badge grey">{_e(item.get("outcome", ""))}</span>'
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    tone = "green" if status < 300 else "amber" if status < 500 else "red"
    if item.get("outcome") == "partial":
        tone = "amber"
    return f'<span class="badge {tone}">{_e(status)} {_e(phrase)}</span>'


def _outcome(item: Mapping[str, Any]) -> str:
    parts = []
    if item.get("succeeded"):
        parts.append(f'<span class="ok">{_e(item["succeeded"])} succeeded</span>')
    if item.get("failed"):
        parts.append(f'<span class="bad">{_e(item["failed"])} failed</span>')
    lines = [" · ".join(parts)] if parts else []
    errors = item.get("errors") or []
    if item.get("message") and not any(error.get("error") for error in errors):
        lines.append(f'<div class="err">{_e(_clip(item["message"], 400))}</div>')
    for error in errors:
        who = f"record {error.get('index')}"
        if error.get("distinct_id") is not None:
            who += f" ({error['distinct_id']!r})"
        said = f": {_clip(str(error['error']), 300)}" if error.get("error") else ""
        lines.append(f'<div class="err">{_e(who + said)}</div>')
    hidden = (item.get("errors_total") or 0) - len(errors)
    if hidden > 0:
        lines.append(_muted(f"and {hidden} more"))
    return "".join(lines) or _DASH


def _request_row(item: Mapping[str, Any]) -> str:
    received = _parse_time(item.get("time"))
    when = _e(received.astimezone().strftime("%H:%M:%S.%f")[:-3]) if received else ""
    took = item.get("duration_ms")
    if took is not None:
        when += "<br>" + _muted(f"{took} ms")
    records = item.get("records")
    return (
        "<tr>"
        f'<td class="when" title="{_e(item.get("time", ""))}">{when}</td>'
        f"<td><code>{_e(item.get('method', ''))} {_e(_clip(str(item.get('path', ''))))}</code></td>"
        f'<td class="num">{_DASH if records is None else _e(records)}</td>'
        f"<td>{_status_badge(item)}</td>"
        f"<td>{_outcome(item)}</td>"
        "</tr>"
    )


def _recipient(recipient: Mapping[str, Any]) -> str:
    mark = (
        '<span class="ok" title="an edit of this profile arrived before">profile first</span>'
        if recipient.get("profile_before")
        else '<span class="bad" title="no edit of this profile arrived before">no profile</span>'
    )
    return f"<div><code>{_e(recipient.get('distinct_id', ''))}</code> {mark}</div>"


def _notification_row(item: Mapping[str, Any]) -> str:
    received = _parse_time(item.get("time"))
    when = _e(received.astimezone().strftime("%H:%M:%S.%f")[:-3]) if received else ""
    details = [
        f"{_muted(label)} <code>{_e(_clip(str(item[key])))}</code>"
        for label, key in (("actor", "actor"), ("tenant", "tenant_id"), ("key", "idempotency_key"))
        if item.get(key)
    ]
    if item.get("attachments"):
        details.append(_muted(f"{item['attachments']} attachment(s)"))
    recipients = "".join(_recipient(r) for r in item.get("recipients") or []) or _DASH
    return (
        "<tr>"
        f'<td class="num">{_e(item.get("sequence", ""))}</td>'
        f'<td class="when" title="{_e(item.get("time", ""))}">{when}</td>'
        f'<td><span class="badge grey">{_e(item.get("kind", ""))}</span> '
        f"<code>{_e(_clip(str(item.get('name', ''))))}</code>"
        f"<br>{_muted(str(item.get('path', '')))}</td>"
        f"<td>{recipients}</td>"
        f"<td>{' · '.join(details) if details else _DASH}</td>"
        "</tr>"
    )


def _shown_of(shown: int, total: int, what: str) -> str:
    if shown < total:
        return _muted(f"showing the {shown} most recent of {total} {what}")
    return ""


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1f2328;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; }
header { background: #1f2937; color: #f9fafb; padding: 14px 28px; }
header h1 { margin: 0; font-size: 18px; font-weight: 600; }
header p { margin: 4px 0 0; color: #cbd5e1; font-size: 13px; }
header code { color: #f9fafb; }
header a { color: #93c5fd; }
main { padding: 20px 28px 40px; max-width: 1600px; }
section { background: #fff; border: 1px solid #d8dce3; border-radius: 8px; margin-bottom: 22px;
  overflow: hidden; }
h2 { margin: 0; padding: 12px 16px; font-size: 15px; border-bottom: 1px solid #e5e7eb;
  display: flex; gap: 10px; align-items: baseline; }
h2 .count { background: #e5e7eb; border-radius: 10px; padding: 0 8px; font-size: 12px; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th { text-align: left; font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: #57606a; background: #f9fafb; padding: 7px 12px; border-bottom: 1px solid #e5e7eb; }
td { padding: 8px 12px; border-bottom: 1px solid #eef0f3; vertical-align: top;
  overflow-wrap: anywhere; }
tr:last-child td { border-bottom: 0; }
tr.fresh td { background: #fffbe6; }
code { font: 12.5px/1.4 ui-monospace, "SFMono-Regular", "Liberation Mono", monospace; }
td.id code { font-weight: 600; }
td.when { color: #374151; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 1px 12px;
  margin: 0; }
dl.kv dt { color: #57606a; font-size: 12px; padding-top: 2px; }
dl.kv dd { margin: 0; min-width: 0; }
.muted { color: #6b7280; font-size: 12px; }
.empty { padding: 18px 16px; color: #6b7280; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
  font-weight: 600; white-space: nowrap; }
.green { background: #dcfce7; color: #166534; } .amber { background: #fef3c7; color: #92400e; }
.red { background: #fee2e2; color: #991b1b; } .grey { background: #e5e7eb; color: #374151; }
.ok { color: #166534; } .bad { color: #991b1b; font-weight: 600; }
.err { color: #991b1b; font-size: 12.5px; }
"""


def render_page(state: Mapping[str, Any]) -> str:
    """The whole HTML page for a state from ``build_state``."""
    hub = state.get("hub", {})
    now = _parse_time(state.get("generated_at"))
    profiles, requests = state["profiles"], state["requests"]
    notifications = state.get("notifications") or {"total": 0, "items": []}
    refresh = int(state.get("refresh_seconds", REFRESH_SECONDS))

    if profiles["items"]:
        profile_table = (
            '<table><colgroup><col style="width:17%"><col style="width:34%">'
            '<col style="width:38%"><col style="width:11%"></colgroup>'
            "<tr><th>Distinct ID</th><th>Channels</th><th>Properties</th><th>Updated</th></tr>"
            + "".join(_profile_row(p, now) for p in profiles["items"])
            + "</table>"
        )
    else:
        profile_table = '<p class="empty">No profiles yet: edits sent to the hub show up here.</p>'
    if requests["items"]:
        request_table = (
            '<table><colgroup><col style="width:11%"><col style="width:24%">'
            '<col style="width:8%"><col style="width:17%"><col style="width:40%"></colgroup>'
            "<tr><th>Time</th><th>Request</th><th>Records</th><th>Status</th>"
            "<th>Outcome</th></tr>"
            + "".join(_request_row(r) for r in requests["items"])
            + "</table>"
        )
    else:
        request_table = '<p class="empty">No requests yet.</p>'

    if notifications["items"]:
        notification_table = (
            '<table><colgroup><col style="width:6%"><col style="width:11%">'
            '<col style="width:27%"><col style="width:28%"><col style="width:28%"></colgroup>'
            "<tr><th>#</th><th>Time</th><th>Notification</th><th>Recipients</th>"
            "<th>Details</th></tr>"
            + "".join(_notification_row(n) for n in notifications["items"])
            + "</table>"
        )
    else:
        notification_table = (
            '<p class="empty">No notifications yet: workflow triggers and events applied '
            "by the hub show up here.</p>"
        )

    shown_at = now.astimezone().strftime("%H:%M:%S") if now else ""
    json_path = f"{hub.get('path_prefix', '')}/_emulator/state.json"  # right from / and _emulator/
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SuprSend hub emulator</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>SuprSend hub emulator</h1>
<p>Workspace <code>{_e(hub.get("workspace_key", ""))}</code> · <code>{_e(hub.get("url", ""))}</code>
 · auth: {_e(hub.get("auth", ""))} · read-only, refreshed every {refresh} s
 (last {_e(shown_at)}) · <a href="{_e(json_path)}">JSON</a></p>
</header>
<main>
<section>
<h2>Profiles <span class="count">{_e(profiles["total"])}</span>
{_shown_of(len(profiles["items"]), profiles["total"], "profiles")}</h2>
{profile_table}
</section>
<section>
<h2>Notifications <span class="count">{_e(notifications["total"])}</span>
{_shown_of(len(notifications["items"]), notifications["total"], "notifications")}</h2>
{notification_table}
</section>
<section>
<h2>Recent requests <span class="count">{_e(requests["total"])}</span>
{_shown_of(len(requests["items"]), requests["total"], "requests")}</h2>
{request_table}
</section>
</main>
</body>
</html>
"""
