"""One flush: claim due entries, coalesce per profile, send, record every outcome.

Used by the Celery task, by ``manage.py suprsend_flush`` and by tests; no
Celery here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

from django.utils.translation import ngettext

from django_suprsend.conf import suprsend_settings
from django_suprsend.delivery import notify, outage, outbox
from django_suprsend.delivery.shared_client import get_client
from django_suprsend.delivery.sync_state import Outcome, record, refused
from django_suprsend.exceptions import (
    SuprsendAPIError,
    SuprsendAuthenticationError,
    SuprsendError,
    SuprsendTransportError,
    error_dict,
)
from django_suprsend.models import OutboxEntry, SyncStatus
from django_suprsend.wire.answers import AUTH_ERRORS
from django_suprsend.wire.bulk import NO_ANSWER, BulkResponse
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.records import MAX_RECORD_BYTES, build_record, record_size
from django_suprsend.wire.retry import is_retryable_status

logger = logging.getLogger("django_suprsend.delivery.flush")

Kind = OutboxEntry.Kind


@dataclass
class FlushResult:
    """Counts of one or more flushes, by profile."""

    claimed: int = 0
    synced: int = 0
    retrying: int = 0
    failed: int = 0
    released: int = 0
    #: Of the retrying profiles, those held back because the hub refused the credentials.
    refused_credentials: int = 0
    #: Notifications: sent, to be tried again, failed for good.
    notified: int = 0
    notifications_retrying: int = 0
    notifications_failed: int = 0

    def add(self, other: FlushResult) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def __str__(self) -> str:
        claimed = ngettext("%(n)d entry claimed", "%(n)d entries claimed", self.claimed)
        synced = ngettext("%(n)d profile synced", "%(n)d profiles synced", self.synced)
        released = ngettext("%(n)d entry held back", "%(n)d entries held back", self.released)
        refused = (
            f" ({self.refused_credentials} because the hub refused the credentials)"
            if self.refused_credentials
            else ""
        )
        notified = (
            f"; {self.notified} notifications sent, {self.notifications_retrying} retrying, "
            f"{self.notifications_failed} failed"
            if self.notified or self.notifications_retrying or self.notifications_failed
            else ""
        )
        return (
            f"{claimed % {'n': self.claimed}}: {synced % {'n': self.synced}}, "
            f"{self.retrying} retrying{refused}, {self.failed} failed, "
            f"{released % {'n': self.released}}{notified}"
        )


class _Credentials:
    """What the hub made of the credentials in one flush; the last answer decides.

    A refusal is recorded at once (its wait depends on how long the outage has lasted),
    an acceptance at the end (:meth:`settle`), unless a refusal came after it.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self.accepted = False
        self.wait: float | None = None  # set once the hub refused them in this flush
        self.held = 0  # profiles given back for it

    def refused(self, status: int, error: str) -> None:
        first_seen = outage.refused(status, error, using=self.using)
        self.accepted = False
        self.wait = outage.retry_wait(first_seen)

    def hold(
        self,
        claim: outbox.Claim,
        entries: list[outbox.Entry],
        error: str,
        code: int,
        failed_record: dict[str, Any] | None = None,
    ) -> Outcome:
        """One profile's entries, refused with the credentials: pending again after the
        outage's wait, retrying, never failed."""
        outbox.mark_held(claim, entries, error=error, code=code, wait=self.wait or 0.0)
        self.held += 1
        return Outcome(entries, SyncStatus.RETRYING, error, code, failed_record)

    def accept(self) -> None:
        self.accepted = True

    def settle(self) -> None:
        if self.accepted:
            outage.accepted(using=self.using)
        elif self.wait is not None:
            outage.report(self.held, self.wait, using=self.using)


@dataclass
class _Plan:
    """What to do with the entries of one claim."""

    edits: list[tuple[list[outbox.Entry], dict[str, Any], list[dict[str, Any]]]] = field(
        default_factory=list
    )  # (entries, record, validation errors)
    deletes: list[list[outbox.Entry]] = field(default_factory=list)
    refused: list[list[outbox.Entry]] = field(default_factory=list)  # only invalid values
    release: list[int] = field(default_factory=list)


def flush(
    *,
    using: str = "default",
    client: SuprsendClient | None = None,
    limit: int | None = None,
    time_budget: float | None = None,
) -> FlushResult:
    """Flush batches until nothing is due or ``time_budget`` seconds have passed."""
    total = FlushResult()
    deadline = None if time_budget is None else time.monotonic() + time_budget
    while True:
        result = flush_once(using=using, client=client, limit=limit)
        total.add(result)
        # Stop when a batch sent nothing (none due, or all held back behind other workers),
        # or when the hub refused the credentials: the next batch would be refused too.
        if (
            result.claimed == result.released
            or result.refused_credentials
            or (deadline is not None and time.monotonic() > deadline)
        ):
            return total


def flush_once(
    *, using: str = "default", client: SuprsendClient | None = None, limit: int | None = None
) -> FlushResult:
    """Claim one batch, send it, record the outcomes."""
    claim = outbox.claim(limit or suprsend_settings.BATCH_SIZE, using=using)
    result = FlushResult(claimed=len(claim.entries) + len(claim.released))
    result.released = len(claim.released)
    if not claim.entries:
        return result
    client = client or get_client()
    plan = _plan(claim, client)
    claim.release(plan.release)
    result.released += len(plan.release)
    credentials = _Credentials(using)
    # Edits last: what the claim still holds after them is exactly the delivered edits.
    outcomes = [
        *_refuse(claim, plan.refused),
        *_send_deletes(client, claim, plan.deletes, credentials),
        *_send_edits(client, claim, plan.edits, credentials),
    ]
    if claim.lost:  # the lease ran out mid-send: those outcomes are another worker's now
        outcomes = [o for o in outcomes if not any(e.id in claim.lost for e in o.entries)]
    # The outage ends before the sync states say synced: who sees a profile synced never
    # sees the hub still refusing the credentials.
    credentials.settle()
    record(outcomes, using=using)
    result.refused_credentials = credentials.held
    for outcome in outcomes:
        if outcome.status == SyncStatus.SYNCED:
            result.synced += 1
        elif outcome.status == SyncStatus.RETRYING:
            result.retrying += 1
        else:
            result.failed += 1
    _notify(client, claim, outcomes, credentials, result)
    return result


def _notify(
    client: SuprsendClient,
    claim: outbox.Claim,
    outcomes: list[Outcome],
    credentials: _Credentials,
    result: FlushResult,
) -> None:
    """Then the notifications, once their recipients' profile changes have their outcome."""
    notifications = claim.notifications()
    if not notifications:
        return
    final = {e.id for o in outcomes if o.status != SyncStatus.RETRYING for e in o.entries}
    wait = {n.id for n in notify.waiting(claim, final - claim.lost)}
    claim.release(sorted(wait))
    result.released += len(wait)
    ready = [n for n in notifications if n.id not in wait]
    if credentials.wait is not None:  # refused a moment ago: these would be refused too
        error = "not sent: the hub refused the credentials"
        outbox.mark_held(claim, ready, error=error, code=401, wait=credentials.wait)
        result.notifications_retrying += len(ready)
        return
    hub = _Credentials(claim.using)

    def refused(status: int, error: str) -> float:
        hub.refused(status, error)
        return hub.wait or 0.0

    sent = notify.send(client, claim, ready, refused=refused)
    if sent.sent:
        hub.accept()
    hub.held = sent.held
    hub.settle()
    result.notified += sent.sent
    result.notifications_retrying += sent.retrying + sent.held
    result.notifications_failed += sent.failed


def _plan(claim: outbox.Claim, client: SuprsendClient) -> _Plan:
    plan = _Plan()
    env, agent = client.workspace_key, client.user_agent
    for entries in claim.by_profile().values():
        delete_at = next((i for i, e in enumerate(entries) if e.kind == Kind.DELETE), None)
        if delete_at is not None:
            # Edits before a delete are moot; what follows waits for the next flush.
            plan.deletes.append(entries[: delete_at + 1])
            plan.release.extend(e.id for e in entries[delete_at + 1 :])
            continue
        _plan_edits(plan, entries, env, agent)
    return plan


def _plan_edits(plan: _Plan, entries: list[outbox.Entry], env: str, agent: str) -> None:
    """One record for one profile's edits, in commit order.

    The record holds the entries that share the first one's tag (see
    ``outbox._lease``): entries tried before go again exactly as they went,
    under the same ``$insert_id`` (the hub may have applied them while we
    saw a timeout), and alone: what was queued since waits for the next
    flush, so it can never reach the hub before them.
    """
    tag = entries[0].insert_id
    run = list(takewhile(lambda e: e.insert_id == tag, entries))
    record_ = _record(run, env, agent)
    if record_ is not None and len(run) > 1 and record_size(record_) > MAX_RECORD_BYTES:
        run = run[:1]  # merged, too big: the oldest goes alone, the rest in the next flush
        record_ = _record(run, env, agent)
    plan.release.extend(e.id for e in entries[len(run) :])
    if record_ is None:
        plan.refused.append(run)
        return
    plan.edits.append((run, record_, [err for e in run for err in e.errors]))


def _record(entries: list[outbox.Entry], env: str, agent: str) -> dict[str, Any] | None:
    """The record of ``entries``' operations, or None when they hold none (only refused values)."""
    operations = [op for e in entries for op in e.operations]
    if not operations:
        return None
    distinct_id = entries[0].distinct_id
    return build_record(
        distinct_id,
        operations,
        env=env,
        sdk_version=agent,
        insert_id=outbox.record_insert_id(entries[0].insert_id, distinct_id),
    )


def _send_edits(
    client: SuprsendClient,
    claim: outbox.Claim,
    edits: list[tuple[list[outbox.Entry], dict[str, Any], list[dict[str, Any]]]],
    credentials: _Credentials,
) -> list[Outcome]:
    if not edits:
        return []
    response = client.send_records((record_ for _, record_, _ in edits), split_oversize=True)
    failures = response.failures_by_record()
    retryable = {id(f) for f in response.retryable}
    codes = response.stored_codes()
    # After a 401/403 the client sends nothing more: a refusal is the flush's last answer.
    refusal = next((f for f in response.failed_records if codes[id(f)] in AUTH_ERRORS), None)
    if refusal is not None:
        credentials.refused(codes[id(refusal)], str(refusal["error"]))
    elif response.succeeded_insert_ids:
        credentials.accept()
    delivered: list[outbox.Entry] = []
    outcomes = []
    for entries, record_, errors in edits:
        failure = failures.get(record_["$insert_id"])
        too_big = response.refused_values.get(record_["$insert_id"])
        if too_big:  # values that fit in no record: refused, the rest went
            errors = errors + [error_dict(exc) for exc in too_big]
        if failure is None:
            delivered.extend(entries)
            outcomes.append(_delivered(entries, record_, errors))
            continue
        code = codes[id(failure)]
        if code in AUTH_ERRORS:
            outcomes.append(
                credentials.hold(claim, entries, str(failure["error"]), code, _as_json(failure))
            )
            continue
        again = outbox.mark_failed(
            claim,
            entries,
            error=str(failure["error"]),
            code=code,
            retryable=id(failure) in retryable,
            not_before=response.retry_after,
        )
        outcomes.append(
            Outcome(
                entries,
                SyncStatus.RETRYING if again else SyncStatus.FAILED,
                error=str(failure["error"]),
                code=code,
                failed_record=_as_json(failure),
            )
        )
    outbox.mark_sent(claim, delivered)
    _log(response)
    return outcomes


def _delivered(
    entries: list[outbox.Entry], record_: dict[str, Any], errors: list[dict[str, Any]]
) -> Outcome:
    if not errors:
        return Outcome(entries, SyncStatus.SYNCED, delivered=True)
    return refused(entries, errors, record_, delivered=True)


def _send_deletes(
    client: SuprsendClient,
    claim: outbox.Claim,
    deletes: list[list[outbox.Entry]],
    credentials: _Credentials,
) -> list[Outcome]:
    if not deletes:
        return []
    entries = [e for group in deletes for e in group]
    ids = [group[0].distinct_id for group in deletes]
    try:
        client.bulk_delete_users(ids)
    except SuprsendAuthenticationError as exc:
        credentials.refused(exc.status_code, str(exc))
        error = f"delete failed: {exc}"
        return [credentials.hold(claim, group, error, exc.status_code) for group in deletes]
    except SuprsendError as exc:
        code = exc.status_code if isinstance(exc, SuprsendAPIError) else NO_ANSWER
        retry = isinstance(exc, SuprsendTransportError) or is_retryable_status(code)
        outcomes = []
        for group in deletes:
            again = outbox.mark_failed(claim, group, error=str(exc), code=code, retryable=retry)
            status = SyncStatus.RETRYING if again else SyncStatus.FAILED
            # The failed record outlives the entry (the sweep prunes failed entries): the
            # bulk delete's body for this profile, in the shape of the hub's failed records.
            body = {"distinct_ids": [group[0].distinct_id]}
            failed_record = {"record": body, "error": str(exc), "code": code}
            error = f"delete failed: {exc}"
            outcomes.append(Outcome(group, status, error, code, failed_record))
        return outcomes
    credentials.accept()
    outbox.mark_sent(claim, entries)
    return [Outcome(group, SyncStatus.SYNCED, delivered=True) for group in deletes]


def _refuse(claim: outbox.Claim, groups: list[list[outbox.Entry]]) -> list[Outcome]:
    """Entries that held only refused values: nothing to send, failed for good."""
    outcomes = []
    for entries in groups:
        outcome = refused(entries, [err for e in entries for err in e.errors], delivered=False)
        outbox.mark_failed(claim, entries, error=outcome.error, code=outcome.code, retryable=False)
        outcomes.append(outcome)
    return outcomes


def _as_json(failure: dict[str, Any]) -> dict[str, Any]:
    return {
        "record": failure.get("record"),
        "error": str(failure.get("error")),
        "code": failure.get("code"),
    }


def _log(response: BulkResponse) -> None:
    codes = response.stored_codes().values()
    # Refused credentials are the outage's to log, once per period (outage.report).
    if response.failure and not all(code in AUTH_ERRORS for code in codes):
        logger.warning("SuprSend flush: %s", response)
    else:
        logger.debug("SuprSend flush: %s", response)
