"""The sweep in Celery beat's schedule: the app adds it when beat starts (SWEEP_INTERVAL),
and W003 warns when the app does not and no schedule of the project runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery, current_app
from celery.beat import PersistentScheduler, Service
from celery.signals import beat_init
from django.core import checks as django_checks

from django_suprsend.checks import check_sweep_schedule
from django_suprsend.delivery.beat import ENTRY_NAME, SWEEP_TASK
from tests.workers import wait_until

OWN_ENTRY = {"my-sweep": {"task": SWEEP_TASK, "schedule": 60.0}}


@pytest.fixture
def beat_app() -> Iterator[Celery]:
    app = Celery("beat-tests", set_as_current=False)
    app.conf.broker_url = "memory://"
    yield app
    app.close()


def start_beat(app: Celery, path: Path) -> PersistentScheduler:
    """What ``celery beat`` does up to its first tick: build the scheduler, send beat_init."""
    service = Service(app=app, schedule_filename=str(path / "celerybeat-schedule"))
    scheduler = service.scheduler
    beat_init.send(sender=service)
    return scheduler


def sweeps(scheduler: PersistentScheduler) -> dict[str, float]:
    return {
        name: entry.schedule.run_every.total_seconds()
        for name, entry in scheduler.schedule.items()
        if entry.task == SWEEP_TASK
    }


def test_beat_gets_the_sweep_every_sweep_interval_seconds(beat_app, tmp_path, settings):
    settings.SUPRSEND = {**settings.SUPRSEND, "SWEEP_INTERVAL": 12.5, "QUEUE": "suprsend"}
    scheduler = start_beat(beat_app, tmp_path)
    assert sweeps(scheduler) == {ENTRY_NAME: 12.5}
    assert scheduler.schedule[ENTRY_NAME].options == {"expires": 12.5, "queue": "suprsend"}


def test_beat_keeps_the_projects_own_sweep_entry_and_adds_none(beat_app, tmp_path):
    beat_app.conf.beat_schedule = OWN_ENTRY
    assert sweeps(start_beat(beat_app, tmp_path)) == {"my-sweep": 60.0}


def test_no_sweep_is_added_when_sweep_interval_is_none(beat_app, tmp_path, settings):
    settings.SUPRSEND = {**settings.SUPRSEND, "SWEEP_INTERVAL": None}
    assert sweeps(start_beat(beat_app, tmp_path)) == {}


def test_a_real_celery_beat_sends_the_sweep(tmp_path):
    """``celery -A tests.celery_app beat``: the app's beat_init receiver is connected there."""
    env = {
        **os.environ,
        "CELERY_BROKER_URL": "memory://",
        "SUPRSEND_SWEEP_INTERVAL": "0.5",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    log = tmp_path / "beat.log"
    command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "beat"]
    options = ["--loglevel", "INFO", "-s", str(tmp_path / "schedule"), "--logfile", str(log)]
    beat = subprocess.Popen(  # noqa: S603 - our own argv
        [*command, *options], env=env, stdout=subprocess.DEVNULL
    )
    try:
        wait_until(
            lambda: log.exists() and f"Sending due task {ENTRY_NAME}" in log.read_text(),
            30,
            "celery beat sent no sweep",
        )
    finally:
        beat.terminate()
        beat.wait(10)
    assert "added django_suprsend.sweep to beat's schedule, every 0.5 seconds" in log.read_text()


# -- W003 -----------------------------------------------------------------------------------


def test_w003_warns_when_nothing_schedules_the_sweep(settings):
    settings.SUPRSEND = {**settings.SUPRSEND, "SWEEP_INTERVAL": None}
    (warning,) = check_sweep_schedule()
    assert warning.id == "django_suprsend.W003"
    assert "SWEEP_INTERVAL" in warning.msg
    snippet = "CELERY_BEAT_SCHEDULE = {'suprsend-sweep': {'task': 'django_suprsend.sweep', "
    assert f"{snippet}'schedule': 30.0}}" in warning.hint


def test_w003_is_quiet_when_celery_beat_schedule_runs_the_sweep(settings):
    settings.SUPRSEND = {**settings.SUPRSEND, "SWEEP_INTERVAL": None}
    settings.CELERY_BEAT_SCHEDULE = OWN_ENTRY
    assert check_sweep_schedule() == []


def test_w003_is_quiet_when_the_current_celery_apps_schedule_runs_the_sweep(settings, beat_app):
    """An app configured otherwise than from Django's settings (app.conf.beat_schedule)."""
    settings.SUPRSEND = {**settings.SUPRSEND, "SWEEP_INTERVAL": None}
    beat_app.conf.beat_schedule = OWN_ENTRY
    previous = current_app._get_current_object()
    beat_app.set_current()
    try:
        assert check_sweep_schedule() == []
    finally:
        previous.set_current()


def test_w003_is_quiet_when_the_app_schedules_the_sweep():
    assert check_sweep_schedule() == []


def test_w003_leaves_bad_settings_to_e005(settings):
    settings.SUPRSEND = {**settings.SUPRSEND, "SWEEP_INTERVAL": -1}
    assert check_sweep_schedule() == []


def test_w003_is_registered():
    assert check_sweep_schedule in django_checks.registry.registry.get_checks()
