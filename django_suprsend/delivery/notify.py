"""The notifications of one claim: sent in bulk after their recipients' profile changes.

A flush sends a claim's profile changes first and records their outcomes; then the
notifications whose recipients have no older change still unfinished (retrying, or
left for the next flush) go, workflow triggers in one bulk call and events in
another, each under its stored ``$idempotency_key`` (and an event under its stored
``$insert_id``), so that a retry is the same notification to the hub. The others
are given back unsent, to wait for those changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django_suprsend.delivery import outbox
from django_suprsend.exceptions import SuprsendError
from django_suprsend.models import Notification, OutboxEntry
from django_suprsend.signals import notification_failed, notification_sent
from django_suprsend.wire.answers import AUTH_ERRORS
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.notification_bulk import NotificationResponse, NotificationResult

logger = logging.getLogger("django_suprsend.delivery.notify")

Kind = OutboxEntry.Kind
Entry = outbox.Entry


@dataclass
class Sent:
    """Counts of one claim's notifications."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    waiting: int = 0  # given back to wait for their recipients' profile changes
    held: int = 0  # given back: the hub refused the credentials


def waiting(claim: outbox.Claim, final: set[int]) -> list[Entry]:
    """The claim's notifications that must wait: a recipient has an older profile change
    in the claim whose outcome is not final (``final``: the ids of those that are)."""
    unfinished: dict[str, int] = {}
    for entry in claim.entries:
        if not entry.is_notification and entry.id not in final:
            unfinished[entry.distinct_id] = min(
                entry.id, unfinished.get(entry.distinct_id, entry.id)
            )
    if not unfinished:
        return []
    return [
        n
        for n in claim.notifications()
        if any(unfinished.get(d, n.id) < n.id for d in n.recipients)
    ]


def send(
    client: SuprsendClient,
    claim: outbox.Claim,
    entries: list[Entry],
    *,
    refused: Callable[[int, str], float],
) -> Sent:
    """Send ``entries`` (notifications the claim holds) and record each outcome.

    ``refused(status, error)`` records that the hub refused the credentials and
    returns how long to wait: the entries it refused go back to pending, unharmed.
    """
    counts = Sent()
    if not entries:
        return counts
    by_id = {e.id: e for e in entries}
    workflows = [(e.id, e.payload) for e in entries if e.kind == Kind.WORKFLOW]
    events, broken = _events(client, [e for e in entries if e.kind == Kind.EVENT])
    results: list[NotificationResult] = list(broken)
    retry_after: float | None = None
    for call, records in ((client.trigger_workflows, workflows), (client.send_events, events)):
        if records:
            response: NotificationResponse = call(records)
            results.extend(response.results)
            retry_after = max(retry_after or 0.0, response.retry_after or 0.0) or None
    delivered: dict[int, str] = {}
    failures: dict[tuple[str, int | None, bool], list[Entry]] = {}
    for result in results:
        entry = by_id[int(result.key)]  # type: ignore[call-overload]
        if result.sent:
            delivered[entry.id] = result.message_id or ""
        else:
            key = (result.error or "not sent", result.http_status, result.retryable)
            failures.setdefault(key, []).append(entry)
    announced: list[tuple[Entry, str, int | None, bool]] = []
    for (error, code, retryable), group in failures.items():  # one UPDATE per kind of failure
        if code in AUTH_ERRORS:
            wait = refused(code, error)
            outbox.mark_held(claim, group, error=error, code=code, wait=wait)
            counts.held += len(group)
            continue
        again = outbox.mark_failed(
            claim, group, error=error, code=code, retryable=retryable, not_before=retry_after
        )
        if again:
            counts.retrying += len(group)
        else:
            counts.failed += len(group)
        announced.extend((entry, error, code, again) for entry in group)
    sent = [by_id[i] for i in delivered]
    outbox.mark_sent(claim, sent, message_ids={i: m for i, m in delivered.items() if m})
    counts.sent = len(sent)
    if counts.failed or counts.retrying:
        logger.warning(
            "SuprSend notifications: %d sent, %d retrying, %d failed",
            counts.sent,
            counts.retrying,
            counts.failed,
        )
    _announce(claim, sent, announced)
    return counts


def _events(
    client: SuprsendClient, entries: list[Entry]
) -> tuple[list[tuple[int, dict[str, Any]]], list[NotificationResult]]:
    """The events' records, built for the client's workspace from their stored parts."""
    records, broken = [], []
    for entry in entries:
        parts = dict(entry.payload or {})
        try:
            record = client.build_event(
                parts.pop("distinct_id"), parts.pop("event"), parts.pop("properties", None), **parts
            )
        except (SuprsendError, KeyError, TypeError) as exc:  # a row edited by hand, say
            broken.append(NotificationResult(entry.id, "failed_permanent", error=str(exc)))
            continue
        records.append((entry.id, record))
    return records, broken


def _announce(
    claim: outbox.Claim,
    sent: Iterable[Entry],
    failed: list[tuple[Entry, str, int | None, bool]],
) -> None:
    """The signals, with each notification's row as it is now (only if someone listens)."""
    sent = list(sent)
    if not (sent and notification_sent.has_listeners()) and not (
        failed and notification_failed.has_listeners()
    ):
        return
    ids = [e.id for e in sent] + [e.id for e, *_ in failed]
    rows = Notification.objects.using(claim.using).in_bulk(ids)
    for entry in sent:
        if entry.id in rows:
            notification_sent.send(sender=Notification, notification=rows[entry.id])
    for entry, error, code, again in failed:
        if entry.id in rows:
            notification_failed.send(
                sender=Notification,
                notification=rows[entry.id],
                error=error,
                code=code,
                retrying=again,
            )
