"""The emulator's read-only page for people: the profiles it holds and the requests it got.

``build_state`` turns a snapshot of the hub into JSON-able data (served as
``_emulator/state.json``) and ``render_page`` turns that into one self-contained
HTML page (inline CSS, no script, no external asset). Both are pure: the hub takes
the snapshot under its lock and calls them afterwards.

No request header or request body ever reaches the state, so neither the
Authorization header (signature, API key) nor anything signed with the secret
can show up here; every value is HTML-escaped, since profile values come from users.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from django_suprsend.testing.recorded import RecordedRequest

PROFILE_LIMIT = 500  # one page stays quick to render and to reload every few seconds
REQUEST_LIMIT = 50
REFRESH_SECONDS = 2
FRESH_SECONDS = 5.0  # a profile updated this recently is highlighted
MAX_ERRORS = 20  # record errors kept per request (a 400 may name all 400 records)
_CLIP = 160  # characters of a value shown before "…"
# shown first among the properties: the ones a notification is rendered with
_KEY_PROPERTIES = ("$preferred_language", "$timezone", "$locale", "name")

State = dict[str, Any]


# -- state ---------------------------------------------------------------------


def build_state(
    *,
    hub: Mapping[str, Any],
    profiles: Sequence[Mapping[str, Any]],
    profile_total: int,
    requests: Sequence[RecordedRequest],
    request_total: int,
    now: float,
    monotonic_now: float,
) -> State:
    """The page's data: ``profiles`` newest first (REST shape), ``requests`` oldest first.

    ``now`` and ``monotonic_now`` are ``time.time()`` and ``time.monotonic()`` read
    together: they turn the requests' monotonic times into wall-clock times.
    """
    offset = now - monotonic_now
    return {
        "hub": dict(hub),
        "generated_at": _iso(now),
        "refresh_seconds": REFRESH_SECONDS,
        "profiles": {
            "total": profile_total,
            "limit": PROFILE_LIMIT,
            "items": [dict(profile) for profile in profiles],
        },
        "requests": {
            "total": request_total,
            "limit": REQUEST_LIMIT,
            "items": [request_summary(request, offset) for request in reversed(requests)],
        },
    }


def request_summary(request: RecordedRequest, wall_offset: float) -> dict[str, Any]:
    """One request as the page lists it: method, path, records and outcome; no headers or body."""
    status = request.status  # read once: the server thread sets it
    answered_at = request.answered_at
    records = request.record_count
    if records is None:
        records = _count_records(request)
    body = _parse(request.response_body)
    if status is not None:
        outcome = "ok" if status < 400 else "error"
    else:
        outcome = "pending" if answered_at is None else "dropped"
    succeeded = failed = None
    if records is not None and outcome != "pending":
        # the hub applies all of a request's records or none of them
        succeeded = records if outcome == "ok" else 0
        failed = records - succeeded
    message = None
    if outcome == "error":
        message = body.get("message") if isinstance(body, dict) else _text(request.response_body)
    errors = _record_errors(body) if outcome == "error" else []
    return {
        "time": _iso(request.received_at + wall_offset),
        "duration_ms": None
        if answered_at is None
        else round((answered_at - request.received_at) * 1000, 1),
        "method": request.method,
        "path": request.path,
        "records": records,
        "status": status,
        "outcome": outcome,
        "succeeded": succeeded,
        "failed": failed,
        "message": message if message is None else str(message),
        "errors": errors[:MAX_ERRORS],
        "errors_total": len(errors),
    }


def _count_records(request: RecordedRequest) -> int | None:
    """The records of an event/ request the hub did not count (a fault answered it first)."""
    if request.method != "POST" or not request.path.partition("?")[0].endswith("/event/"):
        return None
    body = _parse(request.body)  # read only to count: the request body is never shown
    return len(body) if isinstance(body, list) else 1 if isinstance(body, dict) else None


def _parse(body: bytes | None) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _text(body: bytes | None) -> str | None:
    return body.decode("utf-8", "replace")[:500] if body else None


def _record_errors(body: Any) -> list[dict[str, Any]]:
    """The records a 4xx answer named (``{"records": [{"index", "distinct_id", ...}]}``)."""
    named = body.get("records") if isinstance(body, dict) else None
    if not isinstance(named, list):
        return []
    errors = []
    for item in named:
        if not isinstance(item, dict):
            continue
        error = item.get("error")
        if error is None and "size" in item:
            error = f"{item['size']} bytes: over the record size limit"
        errors.append(
            {
                "index": item.get("index"),
                "distinct_id": item.get("distinct_id"),
                "error": None if error is None else str(error),
            }
        )
    return errors


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


# -- HTML ----------------------------------------------------------------------


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
        who = f"record {error.get('index')} ({error.get('distinct_id')!r})"
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
<h2>Recent requests <span class="count">{_e(requests["total"])}</span>
{_shown_of(len(requests["items"]), requests["total"], "requests")}</h2>
{request_table}
</section>
</main>
</body>
</html>
"""
