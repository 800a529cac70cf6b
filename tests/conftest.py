"""Fixtures shared by several test modules (the hub emulator comes from the plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.capture import RecordingServer


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    """A server on 127.0.0.1 that records requests and answers like the vector capture."""
    with RecordingServer() as server:
        yield server
