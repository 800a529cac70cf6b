"""The demo as a newcomer runs it: ``python -m example_project.demo`` starts the hub
emulator, a Celery worker and beat on the ``filesystem://`` broker and the development
server, pushes the seeded users, and a user edited in the admin (a real browser) reaches
the emulator's page through the outbox and the worker. Ctrl-C stops everything.

Saves ``test-artifacts/demo-admin.png`` and ``demo-emulator.png`` (and the ones in
``docs/`` with ``SUPRSEND_UPDATE_DOCS=1``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from django_suprsend.testing import HubEmulator
from tests.browser import (
    assert_list_columns_visible,
    open_page,
    require_browser,
    save_screenshot,
)
from tests.local import environment_without, free_port
from tests.workers import broker_unreachable_reason, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.workers]

REPO = Path(__file__).resolve().parent.parent
USERS = 60  # every 20th has a value SuprSend refuses
PASSWORD = "demo password"
START_TIMEOUT = 120.0
SYNC_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
REDIS_URL = "redis://127.0.0.1:6379/14"  # not the worker tests' database


@dataclass
class RunningDemo:
    process: subprocess.Popen[bytes]
    output: Path
    demo_dir: Path
    port: int
    hub_port: int

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/"

    def said(self) -> str:
        return self.output.read_text(errors="replace")

    def hub_state(self) -> dict[str, Any]:
        response = requests.get(f"{self.hub_url}_emulator/state.json", timeout=5)
        response.raise_for_status()
        return response.json()

    def hub_profile(self, distinct_id: str) -> dict[str, Any] | None:
        items = self.hub_state()["profiles"]["items"]
        return next((p for p in items if p["distinct_id"] == distinct_id), None)

    def sync_states(self) -> dict[str, int]:
        with sqlite3.connect(self.demo_dir / "db.sqlite3") as db:
            rows = db.execute(
                "SELECT status, COUNT(*) FROM django_suprsend_syncstate GROUP BY status"
            )
            return dict(rows.fetchall())

    def user_id(self, username: str) -> str:
        with sqlite3.connect(self.demo_dir / "db.sqlite3") as db:
            (pk,) = db.execute(
                "SELECT id FROM accounts_user WHERE username = ?", (username,)
            ).fetchone()
        return str(pk)


def demo_environment(demo_dir: Path) -> dict[str, str]:
    """This machine's environment without the test suite's settings: the demo's defaults."""
    return {**environment_without(), "DEMO_DIR": str(demo_dir)}


def port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def _descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (Linux ``/proc``), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_all(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the demo and every process it started (they run in their own sessions)."""
    for pid in [*_descendants(process.pid), process.pid]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


@contextmanager
def running_demo(
    demo_dir: Path,
    *,
    users: int,
    env: dict[str, str] | None = None,
    background: bool = False,
) -> Iterator[RunningDemo]:
    """The demo started as a newcomer starts it (``background``: as a shell's ``&`` does,
    with SIGINT ignored); Ctrl-C on leaving if it still runs, and if that does not stop it,
    SIGKILL for it and every process it started, so none outlives the test."""
    output = demo_dir / "demo.out"
    port, hub_port = free_port(), free_port()
    argv = [sys.executable, "-m", "example_project.demo", "--port", str(port), "--hub-port",
            str(hub_port), "--users", str(users), "--admin-password", PASSWORD]  # fmt: skip
    with output.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own argv
            argv,
            cwd=REPO,
            env={**demo_environment(demo_dir), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint if background else None,
        )
    running = RunningDemo(process, output, demo_dir, port, hub_port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ctrl-C stops everything" not in running.said():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not start:\n{running.said()}")
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_all(process)
                raise


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running_demo(tmp_path_factory.mktemp("demo"), users=USERS) as running:
        yield running


def test_demo_pushes_the_seeded_users_and_shows_the_failures(demo: RunningDemo) -> None:
    said = demo.said()
    assert f"http://127.0.0.1:{demo.port}/admin/" in said
    assert f"admin / {PASSWORD}" in said
    assert demo.hub_url in said
    # Every user reaches the hub (the valid values of the invalid ones too), the admin as well.
    wait_until(lambda: demo.hub_state()["profiles"]["total"] == USERS + 1, SYNC_TIMEOUT, "profiles")
    states = wait_until(
        lambda: (s := demo.sync_states()) and sum(s.values()) == USERS + 1 and s, SYNC_TIMEOUT,
        "a SyncState per profile",
    )  # fmt: skip
    assert states == {"synced": USERS + 1 - USERS // 20, "failed": USERS // 20}


@pytest.mark.browser
def test_user_edited_in_the_admin_reaches_the_emulator_page(demo: RunningDemo) -> None:
    from playwright.sync_api import expect

    require_browser()
    wait_until(lambda: demo.hub_state()["profiles"]["total"] == USERS + 1, SYNC_TIMEOUT, "profiles")
    with open_page(demo.admin_url) as page:
        page.goto("/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.goto("/admin/accounts/user/?is_staff__exact=0")
        assert assert_list_columns_visible(page)[1:3] == ["username", "suprsend"]
        save_screenshot(page, "demo-admin", full_page=False)
        page.locator("#result_list tbody tr th a").first.click()
        distinct_id = demo.user_id(page.input_value("#id_username"))
        full_name = f"Renamed {page.input_value('#id_last_name')}"
        page.fill("#id_first_name", "Renamed")
        page.fill("#id_phone", "+14155550123")
        page.click("input[name=_save]")
        expect(page.locator(".messagelist .success")).to_contain_text("was changed successfully")

        # Through the outbox, the Celery worker and the hub: seconds, not a page reload.
        profile = wait_until(
            lambda: (
                (p := demo.hub_profile(distinct_id))
                and p["properties"].get("name") == full_name
                and p
            ),
            SYNC_TIMEOUT,
            f"profile {distinct_id} renamed in the emulator",
        )
        assert [entry["value"] for entry in profile["$sms"]] == ["+14155550123"]
        page.goto(demo.hub_url)
        expect(page.locator("body")).to_contain_text(full_name)
        expect(page.locator("body")).to_contain_text("+14155550123")
        save_screenshot(page, "demo-emulator", full_page=False)


def test_ctrl_c_stops_every_process(demo: RunningDemo) -> None:
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(STOP_TIMEOUT) == 0, demo.said()
    assert "Stopping" in demo.said()
    assert port_closed(demo.port)
    assert port_closed(demo.hub_port)
    worker_log = (demo.demo_dir / "logs" / "celery-worker.log").read_text()
    assert "Warm shutdown" in worker_log


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_demo_started_in_the_background_stops_on_ctrl_c_and_sigterm(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """`make demo &` leaves SIGINT ignored in the demo; Ctrl-C (or kill) must still stop it."""
    with running_demo(tmp_path, users=2, background=True) as demo:
        workers = _descendants(demo.process.pid)
        demo.process.send_signal(stop)
        assert demo.process.wait(STOP_TIMEOUT) == 0, demo.said()
    assert "Stopping" in demo.said()
    assert port_closed(demo.port)
    assert port_closed(demo.hub_port)
    assert workers
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_the_environment_points_the_demo_at_a_real_hub_and_broker(tmp_path: Path) -> None:
    """SUPRSEND_* and CELERY_BROKER_URL set: no emulator of its own, the named hub and broker."""
    unreachable = broker_unreachable_reason(REDIS_URL)
    if unreachable:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the demo's broker test cannot run in CI: {unreachable}")
        pytest.skip(f"the demo with Redis: {unreachable}")
    key, secret = "ws_elsewhere_key", "ws_elsewhere_secret"
    with HubEmulator(key, secret) as hub:
        env = {
            "SUPRSEND_BASE_URL": hub.url,
            "SUPRSEND_WORKSPACE_KEY": key,
            "SUPRSEND_WORKSPACE_SECRET": secret,
            "CELERY_BROKER_URL": REDIS_URL,
        }
        with running_demo(tmp_path, users=5, env=env) as demo:
            assert f"SuprSend hub:   {hub.url}" in demo.said()
            assert not (tmp_path / "logs" / "hub-emulator.log").exists()
            hub.wait_for(lambda h: len(h.profiles()) == 6, timeout=SYNC_TIMEOUT)
            distinct_id = demo.user_id("admin")

            def shell(code: str) -> None:
                manage = [sys.executable, "example_project/manage.py", "shell", "-c", code]
                subprocess.run(  # noqa: S603 - our own argv
                    manage, cwd=REPO, env={**demo_environment(tmp_path), **env}, check=True
                )

            models = "from example_project.accounts.models import Device, User; "
            user = f"u = User.objects.get(pk={distinct_id}); "
            shell(models + user + "u.first_name = 'Moved'; u.save()")
            hub.wait_for(
                lambda h: h.properties(distinct_id).get("name") == "Moved", timeout=SYNC_TIMEOUT
            )
            # Push tokens live in Device rows: a new one is pushed, a deleted one removed.
            shell(models + user + "Device.objects.create(user=u, platform='ios', token='t-new')")
            hub.wait_for(
                lambda h: h.channel_values(distinct_id, "$iospush") == ["t-new"],
                timeout=SYNC_TIMEOUT,
            )
            shell(models + "Device.objects.get(token='t-new').delete()")
            hub.wait_for(
                lambda h: h.channel_values(distinct_id, "$iospush") == [], timeout=SYNC_TIMEOUT
            )
            worker_log = (tmp_path / "logs" / "celery-worker.log").read_text()
            assert re.search(r"Connected to redis://\S*127.0.0.1:6379/14", worker_log), worker_log
