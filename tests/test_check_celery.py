"""W005: the app's tasks would go to a broker that no Celery app of the project names.

``shared_task``\\s publish with Celery's current app: the app of this thread, else the
default app, else a fallback app that Celery makes up (``celery._state``), whose broker is
``amqp://localhost``. The in-process tests set that state by hand; the subprocess test runs
``manage.py check`` in a fresh interpreter, where no test module has created an app.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery, _state
from django.core import checks as django_checks
from django.test import override_settings

from django_suprsend.checks import check_celery_app
from tests.local import SUITE_SETTINGS, environment_without

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_celery_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """This thread as in a process that never created a Celery app (restored afterwards)."""
    monkeypatch.setattr(_state._tls, "current_app", None)
    monkeypatch.setattr(_state, "default_app", None)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)


def test_w005_is_registered() -> None:
    assert check_celery_app in django_checks.registry.registry.get_checks()


@pytest.mark.parametrize("as_default", [False, True], ids=["current", "default"])
def test_a_project_app_gets_no_warning(
    no_celery_app: None, monkeypatch: pytest.MonkeyPatch, as_default: bool
) -> None:
    app = Celery("proj", set_as_current=False)
    monkeypatch.setattr(
        *((_state, "default_app") if as_default else (_state._tls, "current_app")), app
    )
    assert check_celery_app() == []


def test_no_app_warns_with_celerys_default_broker(no_celery_app: None) -> None:
    (message,) = check_celery_app()
    assert message.id == "django_suprsend.W005"
    assert message.level == django_checks.WARNING
    assert "to its broker amqp://guest:**@localhost:5672//" in message.msg
    assert "CELERY_BROKER_URL in your settings" not in message.msg
    assert "tests/__init__.py" in message.hint  # the package of tests.settings
    assert "from .celery import app as celery_app" in message.hint
    # The check made up no app: a project app created later still becomes the default one.
    assert _state.default_app is None


def test_the_fallback_app_once_made_is_reported(no_celery_app: None) -> None:
    assert _state.get_current_app().main == "default"  # what celery.current_app does
    assert [message.id for message in check_celery_app()] == ["django_suprsend.W005"]


@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:6379/3")
def test_the_broker_is_named_without_its_password(
    no_celery_app: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:pa55word-of-the-broker@127.0.0.1:6379/3")
    (message,) = check_celery_app()
    assert "to its broker redis://:**@127.0.0.1:6379/3" in message.msg
    assert "pa55word" not in f"{message.msg} {message.hint}"
    assert "CELERY_BROKER_URL in your settings is read by no Celery app" in message.msg


@pytest.mark.parametrize(
    ("imports", "warned"),
    [("", True), ("import tests.celery_app; ", False)],
    ids=["no-app", "app-imported"],
)
def test_manage_py_check_in_a_fresh_process(imports: str, warned: bool) -> None:
    """As a project runs it: nothing but what the command line imports."""
    env = environment_without(*SUITE_SETTINGS)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    code = f"{imports}from django.core.management import execute_from_command_line as run; "
    code += "run(['manage.py', 'check'])"
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert ("django_suprsend.W005" in result.stderr) is warned, result.stderr
