"""What tests need of this machine: a loopback port nothing listens on, and the environment
of a child process that must not see the suite's own settings."""

from __future__ import annotations

import os
import socket

import pytest

#: Python 3.12+ warns about fork() in a process with threads. In the suite the hub
#: emulator's threads run in the test process; the command's own process has none
#: when it forks (see test_backfill_jobs.py, which runs it as manage.py).
FORK_BESIDE_THREADS = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)

# The suite's settings, which a child process running another project must not inherit.
SUITE_SETTINGS = ("DATABASE_URL", "CELERY_", "SUPRSEND_", "DJANGO_")


def free_port() -> int:
    """A loopback port that was free a moment ago (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}/"


def environment_without(*prefixes: str) -> dict[str, str]:
    """This process's environment without the variables whose names start with ``prefixes``
    (the suite's settings by default)."""
    drop = prefixes or SUITE_SETTINGS
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)}
