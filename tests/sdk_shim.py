"""The surface of suprsend-py-sdk 0.20.0 that the vector snippets use, on :class:`ProfileEdit`.

Nothing is sent: each request the SDK would make is recorded in
``Recorder.sent`` as ``(method, path, body, body_text)``. Records get the
capture's pinned ``$insert_id`` sequence, ``$time`` and user agent. Where the
SDK drops an invalid call and notes an error, the shim's edit catches our
``SuprsendValidationError`` and keeps it in ``Recorder.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.wire.operations import ProfileEdit
from django_suprsend.wire.records import check_record_size, dumps, iter_chunks
from tests.vectors import CREDENTIALS, FIXED_TIME_MS, SDK_USER_AGENT, fixed_insert_id

APP_INFO_USER_AGENT = f"{SDK_USER_AGENT} (example-app/1.2.3)"


@dataclass
class Sent:
    method: str
    path: str
    body: Any
    text: str


@dataclass
class Recorder:
    sent: list[Sent] = field(default_factory=list)
    errors: list[SuprsendValidationError] = field(default_factory=list)
    edits: list[ShimEdit] = field(default_factory=list)
    issued: int = 0

    def next_insert_id(self) -> str:
        self.issued += 1
        return fixed_insert_id(self.issued)


class ShimEdit:
    """``UserEdit`` (and the legacy ``Subscriber``) over a ProfileEdit."""

    def __init__(self, client: ShimClient, distinct_id: str, tenant_id: str | None = None):
        self.client = client
        self.edit = ProfileEdit(distinct_id, tenant_id)
        client.recorder.edits.append(self)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.edit, name)

        def call(*args: Any, **kwargs: Any) -> ShimEdit:
            try:
                method(*args, **kwargs)
            except SuprsendValidationError as exc:
                self.client.recorder.errors.append(exc)
            return self

        return call

    def record(self) -> tuple[dict, str]:
        record = self.edit.to_record(
            env=self.client.env,
            sdk_version=self.client.sdk_version,
            insert_id=self.client.recorder.next_insert_id(),
            time_ms=FIXED_TIME_MS,
        )
        return record, dumps(record)

    def save(self) -> dict:
        """Legacy ``Subscriber.save()``: raises where the SDK returns a 'size too big' failure."""
        return self.client.users.async_edit(self)


class Users:
    def __init__(self, client: ShimClient):
        self.client = client

    def get_edit_instance(self, distinct_id: str, tenant_id: str | None = None) -> ShimEdit:
        return ShimEdit(self.client, distinct_id, tenant_id)

    def get_bulk_edit_instance(self) -> Bulk:
        return Bulk(self.client)

    def edit(
        self, edit_or_id: ShimEdit | str, payload: dict | None = None, tenant_id: str | None = None
    ) -> dict:
        if isinstance(edit_or_id, ShimEdit):
            distinct_id, tenant_id = edit_or_id.edit.distinct_id, edit_or_id.edit.tenant_id
            payload = {"operations": edit_or_id.edit.operations}
        else:
            distinct_id = edit_or_id.strip()
        path = f"v1/user/{quote(distinct_id, safe='')}/"
        if tenant_id:
            path += f"tenant/{quote(tenant_id.strip(), safe='')}/"
        self.client.send("PATCH", path, payload or {})
        return {"success": True}

    def async_edit(self, edit: ShimEdit) -> dict:
        record, text = edit.record()
        check_record_size(record, text=text)
        self.client.send("POST", "event/", record, text)
        return {"success": True}


class LegacyUsers:
    def __init__(self, client: ShimClient):
        self.client = client

    def get_instance(self, distinct_id: str) -> ShimEdit:
        return ShimEdit(self.client, distinct_id)


class LegacyBulkUsers:
    def __init__(self, client: ShimClient):
        self.client = client

    def new_instance(self) -> Bulk:
        return Bulk(self.client)


@dataclass
class BulkResult:
    total: int
    oversize: list[tuple[dict, SuprsendValidationError]]
    chunks: list[list[tuple[dict, str]]]


class Bulk:
    """``BulkUsersEdit``: records numbered in append order, oversize ones kept out."""

    def __init__(self, client: ShimClient):
        self.client = client
        self.users: list[ShimEdit] = []

    def append(self, *users: ShimEdit) -> None:
        self.users.extend(users)

    def save(self) -> BulkResult:
        items, oversize = [], []
        for user in self.users:
            record, text = user.record()
            try:
                check_record_size(record, text=text)
            except SuprsendValidationError as exc:
                oversize.append((record, exc))
            else:
                items.append((record, text))
        chunks = list(iter_chunks(items))
        for chunk in chunks:
            body = [record for record, _ in chunk]
            self.client.send("POST", "event/", body, "[" + ", ".join(t for _, t in chunk) + "]")
        return BulkResult(len(self.users), oversize, chunks)


class ShimClient:
    def __init__(
        self, recorder: Recorder, env: str, prefix: str = "/", sdk_version: str = SDK_USER_AGENT
    ):
        self.recorder = recorder
        self.env = env
        self.sdk_version = sdk_version
        self.prefix = prefix
        self.users = Users(self)
        self.user = LegacyUsers(self)
        self.bulk_users = LegacyBulkUsers(self)

    def send(self, method: str, path: str, body: Any, text: str | None = None) -> None:
        text = dumps(body) if text is None else text
        self.recorder.sent.append(Sent(method, self.prefix + path, body, text))


def namespace(recorder: Recorder) -> dict[str, Any]:
    """The names the snippets use, each a shim client with the env its SDK client had."""
    key, uid = CREDENTIALS["workspace_key"], CREDENTIALS["workspace_uid"]
    return {
        "client": ShimClient(recorder, key),
        "dead_client": ShimClient(recorder, key),
        "app_info_client": ShimClient(recorder, key, sdk_version=APP_INFO_USER_AGENT),
        "prefixed_client": ShimClient(recorder, key, prefix="/proxy/suprsend/"),
        "bearer_client": ShimClient(recorder, uid),
    }
