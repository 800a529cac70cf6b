"""The foundation demo: a few profiles pushed to the hub emulator.

Run with ``make demo``. It starts the SuprSend hub emulator on 127.0.0.1,
builds profile edits the way the app will, sends them with the resilient
client while the hub fails once, and prints what the hub now holds and
which inputs were refused before anything was sent.
"""

from __future__ import annotations

import json
import logging
import sys

from django_suprsend.client import SuprsendClient
from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.operations import ProfileEdit
from django_suprsend.retry import RetryPolicy
from django_suprsend.testing import HubEmulator

PEOPLE = [
    ("1", "Ada Lovelace", "ada@example.com", "+441234567890", "en", "Europe/London", "pro"),
    ("2", "José Müller", "jose@example.com", "+4915123456789", "de", "Europe/Berlin", "free"),
    ("3", "田中 花子", "hanako@example.jp", "+81312345678", "ja", "Asia/Tokyo", "pro"),
    ("4", "Grace Hopper", "grace@example.com", "+15555550123", "en", "America/New_York", "team"),
    ("5", "Bad Data", "not-an-email", "12345", "english", "Mars/Olympus", "free"),
]


def build_edit(distinct_id, name, email, phone, language, timezone, plan):
    """One profile's first sync, the shape the model mixin will produce."""
    edit = ProfileEdit(distinct_id)
    edit.set({"name": name, "plan": plan})
    refused = []
    for method, value in (
        (edit.add_email, email),
        (edit.add_sms, phone),
        (edit.set_preferred_language, language),
        (edit.set_timezone, timezone),
    ):
        try:
            method(value)
        except SuprsendValidationError as error:
            refused.append(str(error))
    return edit, refused


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="  log: %(name)s %(message)s", stream=sys.stdout
    )
    with HubEmulator(workspace_key="ws_demo_key", workspace_secret="ws_demo_secret") as hub:
        print(f"Hub emulator listening on {hub.url}")
        client = SuprsendClient(
            "ws_demo_key",
            "ws_demo_secret",
            base_url=hub.url,
            retry=RetryPolicy(backoff_base=0.05),
        )
        print(f"Client: {client!r}")

        records = []
        for person in PEOPLE:
            edit, refused = build_edit(*person)
            for message in refused:
                print(f"  refused before sending (profile {edit.distinct_id}): {message}")
            records.append(client.build_record(edit))

        hub.fail_next(1, status=503)  # the hub hiccups once; the client retries
        result = client.send_records(records)
        print(f"\nSent {len(records)} profiles: {result}")

        print("\nProfiles the hub now holds:")
        for distinct_id, profile in sorted(hub.profiles().items()):
            channels = {
                key: [entry["value"] for entry in profile.get(key, [])]
                for key in ("$email", "$sms")
            }
            print(f"  {distinct_id}: {json.dumps(profile['properties'], ensure_ascii=False)}")
            print(f"      channels {json.dumps(channels, ensure_ascii=False)}")
        statuses = [request.status for request in hub.requests]
        print(f"\nRequests the hub answered, in order: {statuses}")
        client.close()


if __name__ == "__main__":
    main()
