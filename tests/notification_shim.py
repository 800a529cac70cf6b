"""The notification surface of suprsend-py-sdk 0.20.0 that the vector snippets use, on ours.

``exec(case["sdk_calls"], namespace(...))`` runs a snippet against a real
:class:`SuprsendClient`: ``WorkflowTriggerRequest``, ``Workflow`` and ``Event``
gather what the SDK objects gather and build our records (events get the
capture's pinned ``$insert_id`` sequence and ``$time``); ``client.workflows``,
``client.bulk_workflows``, ``client.bulk_events``, ``client.trigger_workflow``,
``client.track_event`` and ``client.track`` send them with our client, and
``result`` is our :class:`NotificationResponse`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django_suprsend.wire.attachments import attachment_from_file
from django_suprsend.wire.client import SuprsendClient
from django_suprsend.wire.notification_bulk import NotificationResponse
from django_suprsend.wire.notifications import (
    Record,
    build_legacy_workflow,
    build_workflow_trigger,
    legacy_workflow_record,
    workflow_trigger_record,
)
from tests.vectors import FIXED_TIME_MS, fixed_insert_id

ATTACHMENT_BYTES = b"Invoice #1001\nTotal: 12.50 EUR\n"
UNKNOWN_EXT_BYTES = b"\x00\x01\x02binary\xff"


class _Attachable:
    def __init__(self) -> None:
        self.attachments: list[dict[str, Any] | None] = []

    def add_attachment(
        self, file_path: str, file_name: str | None = None, ignore_if_error: bool = False
    ) -> None:
        self.attachments.append(
            attachment_from_file(file_path, file_name, ignore_if_error=ignore_if_error)
        )


class WorkflowTriggerRequest(_Attachable):
    def __init__(
        self,
        body: Any,
        idempotency_key: str | None = None,
        tenant_id: str | None = None,
        cancellation_key: str | None = None,
    ) -> None:
        super().__init__()
        workflow_trigger_record(body)  # the SDK refuses a body that is not a dict at once
        self.body = body
        self.options = {
            "idempotency_key": idempotency_key,
            "tenant_id": tenant_id,
            "cancellation_key": cancellation_key,
        }

    def record(self) -> Record:
        return workflow_trigger_record(self.body, attachments=self.attachments, **self.options)

    def build(self) -> Record:
        return build_workflow_trigger(self.body, attachments=self.attachments, **self.options)


class Workflow(_Attachable):
    def __init__(
        self,
        body: Any,
        idempotency_key: str | None = None,
        tenant_id: str | None = None,
        brand_id: str | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.options = {"idempotency_key": idempotency_key, "tenant_id": tenant_id}
        self.options["brand_id"] = brand_id

    def record(self) -> Record:
        return legacy_workflow_record(self.body, attachments=self.attachments, **self.options)


class Event(_Attachable):
    def __init__(
        self,
        distinct_id: str,
        event_name: str,
        properties: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        tenant_id: str | None = None,
        brand_id: str | None = None,
    ) -> None:
        super().__init__()
        self.args = (distinct_id, event_name, properties)
        self.options = {"idempotency_key": idempotency_key, "tenant_id": tenant_id}
        self.options["brand_id"] = brand_id


class _Bulk:
    def __init__(self, shim: ShimClient, kind: str) -> None:
        self.shim, self.kind = shim, kind
        self.items: list[Any] = []

    def append(self, *items: Any) -> None:
        # The SDK deep-copies on append; our records are copies of what they are built from.
        self.items.extend(i if isinstance(i, Event) else i.record() for i in items)

    def trigger(self) -> NotificationResponse:
        client = self.shim.client
        if self.kind == "events":
            return client.send_events([self.shim.event(e) for e in self.items])
        if self.kind == "legacy":
            return client.trigger_legacy_workflows(self.items)
        return client.trigger_workflows(self.items)


class _Factory:
    def __init__(self, shim: ShimClient, kind: str) -> None:
        self.shim, self.kind = shim, kind

    def new_instance(self) -> _Bulk:
        return _Bulk(self.shim, self.kind)

    bulk_trigger_instance = new_instance

    def trigger(self, wf: WorkflowTriggerRequest) -> NotificationResponse:
        return self.shim.client.trigger_workflow(wf.build())


class ShimClient:
    def __init__(self, client: SuprsendClient) -> None:
        self.client = client
        self.issued = 0
        self.workflows = _Factory(self, "workflows")
        self.bulk_workflows = _Factory(self, "legacy")
        self.bulk_events = _Factory(self, "events")

    def event(self, ev: Event) -> Record:
        self.issued += 1
        insert_id = fixed_insert_id(self.issued)
        return self.client.build_event(
            *ev.args,
            attachments=ev.attachments,
            insert_id=insert_id,
            time_ms=FIXED_TIME_MS,
            **ev.options,
        )

    def trigger_workflow(self, wf: Workflow | dict[str, Any]) -> NotificationResponse:
        record = wf.record() if isinstance(wf, Workflow) else build_legacy_workflow(wf)
        return self.client.trigger_legacy_workflow(record)

    def track_event(self, ev: Event) -> NotificationResponse:
        return self.client.track_event(self.event(ev))

    def track(
        self,
        distinct_id: str,
        event_name: str,
        properties: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        tenant_id: str | None = None,
        brand_id: str | None = None,
    ) -> NotificationResponse:
        # The deprecated track() sends brand_id as tenant_id when there is no tenant_id.
        ev = Event(distinct_id, event_name, properties, idempotency_key, tenant_id or brand_id)
        return self.track_event(ev)


def namespace(clients: dict[str, SuprsendClient], tmp: Path) -> dict[str, Any]:
    """What a snippet sees: the clients, the SDK classes and the attachment files."""
    (tmp / "invoice.txt").write_bytes(ATTACHMENT_BYTES)
    (tmp / "payload.zzz").write_bytes(UNKNOWN_EXT_BYTES)
    names: dict[str, Any] = {f"{kind}_client": ShimClient(c) for kind, c in clients.items()}
    names["client"] = names.pop("hmac_client")
    names.update(
        WorkflowTriggerRequest=WorkflowTriggerRequest,
        Workflow=Workflow,
        Event=Event,
        ATTACHMENT_FILE=str(tmp / "invoice.txt"),
        ATTACHMENT_FILE_UNKNOWN_EXT=str(tmp / "payload.zzz"),
        MISSING_FILE=str(tmp / "does-not-exist.pdf"),
    )
    return names
