"""Requests to the hub emulator over real HTTP on 127.0.0.1, signed by the client's signing,
and the notification bodies tests send."""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests

try:  # the client's signing: the emulator verifies it with code of its own
    from django_suprsend.wire import signing
except ImportError:  # before the layer folders
    from django_suprsend import signing  # type: ignore[no-redef]

from django_suprsend.testing import HubEmulator

KEY = "ws_test_key"
SECRET = "ws_test_secret"
API_KEY = "api_test_key"
EVENT_TIME = 1705314600500


def trigger(workflow: str = "welcome", *recipients: Any, **extra: Any) -> dict[str, Any]:
    return {"workflow": workflow, "recipients": list(recipients or ["u1"]), "data": {}, **extra}


def event(distinct_id: str = "u1", name: str = "signed_up", **extra: Any) -> dict[str, Any]:
    return {
        "$insert_id": str(uuid.uuid4()),
        "$time": EVENT_TIME,
        "event": name,
        "env": KEY,
        "distinct_id": distinct_id,
        "properties": {},
        **extra,
    }


def profile_edit(distinct_id: str) -> dict[str, Any]:
    return {
        "$schema": "2",
        "$insert_id": str(uuid.uuid4()),
        "$time": EVENT_TIME,
        "env": KEY,
        "distinct_id": distinct_id,
        "$user_operations": [{"$append": {"$email": f"{distinct_id}@example.com"}}],
        "properties": {},
    }


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def post(
    hub: HubEmulator,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    key: str = KEY,
    secret: str = SECRET,
    bearer: str | None = None,
) -> requests.Response:
    """``POST`` a JSON body to ``path`` below the hub's URL, signed as the SDK signs it (or
    with ``Authorization: Bearer``)."""
    data = encode(body) if data is None else data
    headers = {"Content-Type": signing.CONTENT_TYPE}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    else:
        date = signing.http_date()
        uri = urlsplit(hub.url).path + path
        sig = signing.signature(secret, "POST", data, date=date, request_uri=uri)
        headers.update({"Date": date, "Authorization": f"{key}:{sig}"})
    return requests.post(hub.url + path, data=data, headers=headers, timeout=10)


def replay(hub: HubEmulator, captured: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """Send a captured request as it was: method, path, headers in wire order, ``body``.

    Only ``Host`` names the emulator's port (it is not signed).
    """
    connection = http.client.HTTPConnection(hub.host, hub.port, timeout=30)
    try:
        connection.putrequest(
            captured["method"], captured["path"], skip_host=True, skip_accept_encoding=True
        )
        for name, value in captured["headers"].items():
            connection.putheader(name, f"{hub.host}:{hub.port}" if name == "Host" else value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
