"""The outbox of queued profile changes and notifications, and the sync state of each profile."""

from __future__ import annotations

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class SyncStatus(models.TextChoices):
    SYNCED = "synced", _("synced")
    PENDING = "pending", _("pending")
    RETRYING = "retrying", _("retrying")
    FAILED = "failed", _("failed")


class OutboxEntry(models.Model):
    """One queued change of one profile, written in the transaction of the save.

    Workers claim pending entries under a lease (``claimed_until``), merge
    the entries of one distinct_id into one record in ``id`` (commit) order,
    send them and record the outcome here.
    """

    class Kind(models.TextChoices):
        EDIT = "edit", _("edit")
        DELETE = "delete", _("delete user")
        WORKFLOW = "workflow", _("workflow trigger")
        EVENT = "event", _("event")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    distinct_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EDIT)
    operations = models.JSONField(default=list, blank=True)
    # Values refused before queueing: [{"field", "value", "reason"}], reported on the SyncState.
    errors = models.JSONField(default=list, blank=True)
    content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    object_id = models.CharField(max_length=64, blank=True)

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=32, blank=True)
    insert_id = models.CharField(max_length=36, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_code = models.IntegerField(null=True, blank=True)
    # Notifications (kind workflow or event) only; a profile change leaves them empty.
    #: The workflow's slug or the event's name.
    name = models.CharField(max_length=255, blank=True)
    #: What goes to the hub, built and checked when the notification was queued: the workflow
    #: trigger's record, or the event's parts (its record is built by the worker).
    payload = models.JSONField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    #: The hub's id of a sent notification.
    message_id = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = _("outbox entry")
        verbose_name_plural = _("outbox entries")
        ordering = ("id",)
        indexes = [
            # Claims scan pending rows in id (commit) order, LIMIT n.
            models.Index(fields=["status", "id"], name="suprsend_outbox_due"),
            # (No index on distinct_id: every save pays for each index, and the per-profile
            # look-up of a claim, "pending AND id < n AND distinct_id IN ...", rides the one above.)
            # A worker finds the rows it leased by its token; unleased rows stay out of it.
            models.Index(
                fields=["claimed_by"], name="suprsend_outbox_claim", condition=~Q(claimed_by="")
            ),
            # The admin's notification list (newest first) and its search by key; profile
            # changes stay out of both (partial indexes: PostgreSQL and SQLite).
            models.Index(
                fields=["kind", "id"],
                name="suprsend_outbox_notification",
                condition=Q(kind__in=["workflow", "event"]),
            ),
            models.Index(
                fields=["idempotency_key"],
                name="suprsend_outbox_idem_key",
                condition=~Q(idempotency_key=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.distinct_id} ({self.status})"


class NotificationManager(models.Manager["Notification"]):
    def get_queryset(self) -> models.QuerySet[Notification]:
        return super().get_queryset().filter(kind__in=NOTIFICATION_KINDS)


NOTIFICATION_KINDS = (OutboxEntry.Kind.WORKFLOW, OutboxEntry.Kind.EVENT)


class Notification(OutboxEntry):
    """The outbox entries that are notifications (workflow triggers and events).

    A proxy: they share the outbox's table and id sequence with profile changes, so
    "queued before" is one comparison of ids, whichever kind each entry is.
    """

    objects = NotificationManager()

    class Meta:
        proxy = True
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ("-id",)
        permissions = [("retry_notification", _("Can retry notifications"))]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name} ({self.status})"

    @property
    def recipients(self) -> list[str]:
        """The distinct_ids it is for: a workflow's recipients, or an event's user."""
        return notification_recipients(self.kind, self.payload, self.distinct_id)


def notification_recipients(kind: str, payload: object, distinct_id: str) -> list[str]:
    """The distinct_ids a notification is for, read from its payload."""
    if kind != OutboxEntry.Kind.WORKFLOW or not isinstance(payload, dict):
        return [distinct_id] if distinct_id else []
    ids: list[str] = []
    for recipient in payload.get("recipients") or ():
        value = recipient.get("distinct_id") if isinstance(recipient, dict) else recipient
        if isinstance(value, str) and value and value not in ids:
            ids.append(value)
    return ids


class SyncState(models.Model):
    """Where one profile stands with SuprSend; written by the workers only."""

    # Unique through Meta.constraints: unique=True would add a second, LIKE index on PostgreSQL.
    distinct_id = models.CharField(max_length=255)
    # No index: nothing looks states up by content type, and every write would pay for one.
    # No database constraint: Django applies SET_NULL itself when a content type is
    # deleted, and checking the key on every insert was a third of a backfill's upsert.
    content_type = models.ForeignKey(
        ContentType,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    object_id = models.CharField(max_length=64, blank=True)
    content_object = GenericForeignKey("content_type", "object_id")

    status = models.CharField(max_length=8, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_synced_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_code = models.IntegerField(null=True, blank=True)
    # The failed record as the hub's BulkResponse returned it: {"record", "error", "code"}.
    last_failed_record = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("sync state")
        verbose_name_plural = _("sync states")
        ordering = ("-updated_at",)
        constraints = [
            models.UniqueConstraint(fields=["distinct_id"], name="suprsend_state_distinct_id"),
        ]
        # Most rows are synced and without an error: the indexes that serve the admin's
        # filters hold only the others, so a synced row's write maintains four indexes
        # (id, distinct_id, last_synced_at, updated_at), not nine.
        indexes = [
            models.Index(
                fields=["status"],
                name="suprsend_state_unsynced",
                condition=Q(
                    status__in=[SyncStatus.PENDING, SyncStatus.RETRYING, SyncStatus.FAILED]
                ),
            ),
            models.Index(
                fields=["last_error_code"],
                name="suprsend_state_error_code",
                condition=Q(last_error_code__isnull=False),
            ),
        ]
        permissions = [
            ("resync_profile", _("Can resync profiles to SuprSend")),
            ("unset_channels", _("Can unset channels in SuprSend")),
        ]

    def __str__(self) -> str:
        return f"{self.distinct_id}: {self.status}"


class CredentialsOutage(models.Model):
    """The hub refuses the credentials (``401``/``403``): one row while that lasts.

    Written by the workers when the hub refuses a request's credentials, and
    deleted by the first request it accepts again. While it is there, the
    entries of the refused requests stay pending (see ``django_suprsend.delivery.outage``)
    and the admin's summary shows it. ``error`` is the hub's answer with the
    credentials masked, as the client reports it.
    """

    #: The one row's primary key: there is one hub, so one outage at a time.
    ID = 1

    status_code = models.PositiveSmallIntegerField()
    error = models.TextField(blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    refusals = models.PositiveIntegerField(default=0)  # requests refused since first_seen_at
    logged_at = models.DateTimeField(null=True, blank=True)  # its last ERROR log line

    class Meta:
        verbose_name = _("credentials outage")
        verbose_name_plural = _("credentials outages")

    def __str__(self) -> str:
        return f"HTTP {self.status_code} since {self.first_seen_at:%Y-%m-%d %H:%M:%S}"


class BackfillCheckpoint(models.Model):
    """Where a ``manage.py suprsend_backfill`` run stands, so that a killed run resumes.

    ``key`` is the model's label and a hash of the options that change which
    rows are read or what their records hold. ``run_id`` seeds each record's
    ``$insert_id``: a batch sent again after a kill is the same record to the hub.
    A run split over processes has one part per process (``parent`` is the run),
    each with its own range and position.
    """

    key = models.CharField(max_length=255, unique=True)
    last_pk = models.CharField(max_length=255, blank=True)
    run_id = models.CharField(max_length=32)
    # A part of a run split over processes (``--jobs``): its own range of primary keys,
    # after ``last_pk`` up to ``upper_pk`` (inclusive; "" for the last part).
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="parts"
    )
    upper_pk = models.CharField(max_length=255, blank=True)
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("backfill checkpoint")
        verbose_name_plural = _("backfill checkpoints")

    def __str__(self) -> str:
        state = "finished" if self.finished_at else f"after pk {self.last_pk or '-'}"
        return f"{self.key}: {state}"
