"""The README's Quick start, run as written: what it says works in a project of one's own.

The steps are read from README.rst itself, where an RST comment marks each literal block
of the Quick start (comments render as nothing)::

    .. quickstart: run                     each line a command, run to its end (exit 0)
    .. quickstart: start                   each line a command that serves until stopped
    .. quickstart: append proj/settings.py the block goes at the end of that file
    .. quickstart: write accounts/models.py the block becomes that file

``test_the_quick_start_runs_as_written`` (``pytest -m quickstart``) applies them in order in
a new folder with a new virtual environment, where ``pip install "django-suprsend[redis]"``
installs the wheel built from this repository. Only what a test machine must change is
changed (each must be in the README, so that a reworded step fails loudly): the emulator's
port (a free one) and the Redis database (``QUICKSTART_REDIS_DB``, the test's own).
The test then checks what the README promises along the way: the emulator prints the
settings the README has, a created user reaches the emulator through the worker, the
backfill sends it, and ``manage.py check`` finds no issues.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.distribution import REPO, new_venv, only
from tests.local import SUITE_SETTINGS, environment_without, free_port
from tests.workers import broker_unreachable_reason, wait_until

README = (REPO / "README.rst").read_text(encoding="utf-8")
MARKER = re.compile(r"^\.\. quickstart: (?P<action>run|start|append|write)(?: (?P<path>\S+))?$")
#: The Redis database of this test alone (the worker tests use 15, the demo's test 14).
QUICKSTART_REDIS_DB = 13
README_BROKER = "redis://127.0.0.1:6379/0"
README_HUB_PORT = "8765"
REQUIREMENT = '"django-suprsend[redis]"'


@dataclass(frozen=True)
class Step:
    """One marked block of the Quick start."""

    action: str
    path: str | None
    text: str

    def commands(self) -> list[list[str]]:
        """The command lines of a ``run`` or ``start`` block (a ``#`` starts a comment)."""
        return [argv for line in self.text.splitlines() if (argv := shlex.split(line, True))]


def quickstart_steps(readme: str = README) -> list[Step]:
    """The marked literal blocks, in README order: each marker's next ``::`` block."""
    lines = readme.splitlines()
    steps = []
    for number, line in enumerate(lines):
        marker = MARKER.match(line)
        if not marker:
            continue
        start = number + 1
        while not lines[start].rstrip().endswith("::"):
            assert not MARKER.match(lines[start]), f"line {number + 1}: a marker without a block"
            start += 1
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" ")):
            end += 1
        text = textwrap.dedent("\n".join(lines[start + 1 : end])).strip("\n") + "\n"
        steps.append(Step(marker["action"], marker["path"], text))
    return steps


def test_the_quick_start_is_marked_and_renders_without_the_markers() -> None:
    """Fast (no venv): the markers are found, each names what it needs, and they do not show."""
    steps = quickstart_steps()
    assert [(step.action, step.path) for step in steps] == [
        ("run", None),
        ("append", "proj/settings.py"),
        ("write", "accounts/models.py"),
        ("write", "accounts/admin.py"),
        ("write", "proj/celery.py"),
        ("append", "proj/__init__.py"),
        ("run", None),
        ("start", None),
        ("run", None),
        ("run", None),
    ]
    text = "".join(step.text for step in steps)
    for literal in (README_BROKER, README_HUB_PORT, REQUIREMENT):
        assert literal in text, f"the test replaces {literal!r}, which the Quick start lost"
    for step in steps:
        if step.action in ("append", "write"):
            compile(step.text, step.path, "exec")  # each file snippet is whole Python
    core = pytest.importorskip("docutils.core")
    html4 = pytest.importorskip("docutils.writers.html4css1")
    html = core.publish_string(README, writer=html4.Writer()).decode()
    # Every marker is a comment, which a reader never sees.
    assert len(re.findall(r"<!-- quickstart: \w+", html)) == len(steps)


# -- the Quick start, run -------------------------------------------------------------------


class Project:
    """A folder, a venv, the environment of the commands, and what it started."""

    def __init__(self, root: Path, bin_dir: Path, hub_port: int) -> None:
        self.root, self.bin, self.hub_port = root, bin_dir, hub_port
        self.env = environment_without(*SUITE_SETTINGS, "PYTHON", "VIRTUAL_ENV")
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/"

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - the README's own commands
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (
            f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        return result

    def start(self, argv: list[str]) -> Path:
        """Start ``argv`` in a session of its own (its children die with it); its log."""
        log = self.root.parent / f"{len(self.processes)}-{Path(argv[0]).name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - the README's own commands
                argv, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append((process, log))
        return log

    def stop(self) -> None:
        """SIGTERM every process group started, then SIGKILL what is left after 20 s."""
        for process, _ in self.processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process, _ in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            _signal_group(process, signal.SIGKILL)  # the group's children, whatever happened
            process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"== {log.name}\n{log.read_text(errors='replace')}" for _, log in self.processes
        )

    def hub_state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.hub_url}_emulator/state.json", timeout=5) as answer:  # noqa: S310
            return json.load(answer)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _profile(project: Project, distinct_id: str) -> dict[str, Any] | None:
    profiles = project.hub_state()["profiles"]["items"]
    return next((p for p in profiles if p["distinct_id"] == distinct_id), None)


def _ada_arrived_through_the_worker(project: Project, result: Any) -> None:
    def arrived() -> dict[str, Any] | None:
        profile = _profile(project, "1")
        return profile if profile and profile.get("$email") else None

    # Sooner than the first sweep (30 s after beat starts): the flush task brought it.
    profile = wait_until(arrived, 15, lambda: f"ada never reached the emulator\n{project.logs()}")
    assert [email["value"] for email in profile["$email"]] == ["ada@example.com"]
    assert [sms["value"] for sms in profile["$sms"]] == ["+441234567890"]
    assert profile["properties"] == {"name": "Ada", "plan": ""}


def _backfill_sent_every_user(project: Project, result: Any) -> None:
    assert re.search(r"^Backfill: 1 row, 1 sent, 0 failed, 0 skipped", result.stdout, re.M)


def _check_found_no_issues(project: Project, result: Any) -> None:
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stderr


#: What the test checks after a command of the Quick start (found by a part of it).
AFTER: dict[str, Callable[[Project, Any], None]] = {
    "create_user(": _ada_arrived_through_the_worker,
    "suprsend_backfill": _backfill_sent_every_user,
    "manage.py check": _check_found_no_issues,
}
#: What a started command prints once it serves.
READY = {"django_suprsend.testing": "SuprSend hub emulator listening on", "worker": " ready."}


@pytest.fixture
def project(tmp_path: Path, dist: Path) -> Iterator[Project]:
    bin_dir = new_venv(tmp_path / "venv")
    root = tmp_path / "project"
    root.mkdir()
    made = Project(root, bin_dir, free_port())
    try:
        yield made
    finally:
        made.stop()


def _substituted(step: Step, project: Project, wheel: Path) -> Step:
    text = step.text.replace(README_HUB_PORT, str(project.hub_port))
    text = text.replace(README_BROKER, f"redis://127.0.0.1:6379/{QUICKSTART_REDIS_DB}")
    text = text.replace(REQUIREMENT, shlex.quote(f"{wheel}[redis]"))
    return Step(step.action, step.path, text)


def _pasted_settings(log: Path) -> dict[str, Any]:
    """The SUPRSEND settings the emulator printed."""
    banner = log.read_text()
    source = banner[banner.index("SUPRSEND = {") :]
    namespace: dict[str, Any] = {}
    exec(source[: source.index("\n}") + 2], namespace)  # noqa: S102 - what a user pastes
    return namespace["SUPRSEND"]


def _settings_of(step: Step) -> dict[str, Any]:
    """The SUPRSEND of the settings snippet (``INSTALLED_APPS`` given, as the file has it)."""
    namespace: dict[str, Any] = {"INSTALLED_APPS": []}
    exec(step.text, namespace)  # noqa: S102 - the README's own snippet
    return namespace["SUPRSEND"]


@pytest.mark.quickstart
@pytest.mark.timeout(900)
def test_the_quick_start_runs_as_written(project: Project, dist: Path) -> None:
    broker = f"redis://127.0.0.1:6379/{QUICKSTART_REDIS_DB}"
    unreachable = broker_unreachable_reason(broker)
    if unreachable and os.environ.get("CI") == "true":
        pytest.fail(f"the Quick start test cannot run in CI: {unreachable}")
    if unreachable:
        pytest.skip(f"the Quick start needs Redis: {unreachable}")
    wheel = only(dist, "*.whl")
    steps = [_substituted(step, project, wheel) for step in quickstart_steps()]
    settings_step = next(step for step in steps if step.path == "proj/settings.py")
    used = set()
    for step in steps:
        if step.action in ("append", "write"):
            target = project.root / step.path
            made = target if step.action == "append" else target.parent
            assert made.exists(), f"{step.path}: the steps before should have made {made}"
            before = target.read_text() if step.action == "append" else ""
            target.write_text(f"{before.rstrip()}\n\n{step.text}" if before.strip() else step.text)
            continue
        for argv in step.commands():
            if step.action == "start":
                log = project.start(argv)
                ready = next(text for key, text in READY.items() if key in argv)
                wait_until(
                    lambda log=log, ready=ready: ready in log.read_text(errors="replace"),
                    60,
                    lambda argv=argv: f"{shlex.join(argv)} never got ready\n{project.logs()}",
                )
                if "django_suprsend.testing" in argv:
                    assert _pasted_settings(log) == _settings_of(settings_step)
                continue
            result = project.run(argv)
            for key, after in AFTER.items():
                if key in shlex.join(argv):
                    after(project, result)
                    used.add(key)
    assert used == set(AFTER), f"the Quick start lost the steps {set(AFTER) - used}"
