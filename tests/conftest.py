"""Fixtures shared by several test modules (the hub emulator comes from the plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from django_suprsend.delivery import schedule
from tests import distribution
from tests.capture import RecordingServer


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel of this repository, built once per session."""
    return distribution.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    """A server on 127.0.0.1 that records requests and answers like the vector capture."""
    with RecordingServer() as server:
        yield server


@pytest.fixture
def hub(settings, suprsend_hub):
    """The emulator, with ``SUPRSEND`` pointing at it (one HTTP attempt: tests stay fast)."""
    settings.SUPRSEND = {
        "WORKSPACE_KEY": "ws_test_key",
        "WORKSPACE_SECRET": "ws_test_secret",
        "BASE_URL": suprsend_hub.url,
        "HTTP_MAX_ATTEMPTS": 1,
    }
    return suprsend_hub


@pytest.fixture(autouse=True)
def fresh_flush_debouncer():
    """Each test starts with no flush task in flight: commits publish as on a fresh process."""
    schedule.debouncer.reset()
    yield
    schedule.debouncer.reset()
