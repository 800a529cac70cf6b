"""Run the hub emulator in its own process, so it never shares a GIL with
what is being measured."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

WORKSPACE_KEY = "ws_bench_key"
WORKSPACE_SECRET = "ws_bench_secret"


@contextmanager
def emulator_process(
    timeout: float = 20.0,
    workspace_key: str = WORKSPACE_KEY,
    workspace_secret: str = WORKSPACE_SECRET,
) -> Iterator[str]:
    """Yield the base URL of an emulator started with ``python -m django_suprsend.testing``."""
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "django_suprsend.testing",
            "--port",
            "0",
            "--workspace-key",
            workspace_key,
            "--workspace-secret",
            workspace_secret,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and "http://" not in line:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                raise RuntimeError("the emulator exited before printing its URL")
        if "http://" not in line:
            raise RuntimeError("the emulator did not print its URL in time")
        yield line[line.index("http://") :].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
