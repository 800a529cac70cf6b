"""pytest plugin (entry point ``pytest11``): the ``suprsend_hub`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_suprsend.testing.hub import HubEmulator

WORKSPACE_KEY = "ws_test_key"
WORKSPACE_SECRET = "ws_test_secret"  # noqa: S105 - a test credential
API_KEY = "api_test_key"


@pytest.fixture
def suprsend_hub() -> Iterator[HubEmulator]:
    """A running hub emulator (key ``ws_test_key``, secret ``ws_test_secret``, API key
    ``api_test_key``); point the client at ``suprsend_hub.url``, then assert on
    ``suprsend_hub.profile(...)``, ``.notifications(...)`` or ``.arrivals(...)``.
    Stopped after the test."""
    with HubEmulator(WORKSPACE_KEY, WORKSPACE_SECRET, api_key=API_KEY) as hub:
        yield hub
