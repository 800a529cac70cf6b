"""System checks (``manage.py check``): credentials, and the mapping of each profile model.

- E001: no credentials while ``AUTOSYNC`` is on.
- E002: an unknown channel key in ``suprsend_channels``.
- E003: a source that is neither a field nor an attribute of the model.
- E004: a ``suprsend_*`` attribute of the wrong type, or an invalid property name.
- E005: ``settings.SUPRSEND`` cannot be read (unknown key, with a "did you mean" hint;
  bad choice).
- W001: ``suprsend_distinct_id`` comes from a field that can change.
- W002: a class attribute named ``suprsend_*`` that the mixin does not know (a typo such
  as ``suprsend_channel``), with a "did you mean" hint.
- W003: ``SWEEP_INTERVAL`` is None and no beat schedule of the project runs the sweep.
- W004: a workspace secret or API key too short to be a real one.
- W005: the app's tasks would be published with Celery's fallback app, which no project
  configured (its broker is Celery's default, ``amqp://localhost``).

E001 is not reported to ``migrate``: applying migrations needs no SuprSend credentials.
The check finds ``migrate``'s command on the call stack; no argument tells it apart, as
``migrate`` and ``check --database`` give the checks the same ``databases`` on Django 6.1.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery, _state
from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import models

from django_suprsend.conf import suprsend_settings
from django_suprsend.delivery.beat import SWEEP_TASK, configured_schedules, runs_sweep
from django_suprsend.exceptions import SuprsendConfigurationError
from django_suprsend.profiles.mapping import mapping_problems, profile_models, source_field
from django_suprsend.profiles.mixin import SuprsendProfileMixin
from django_suprsend.wire.config import MIN_CREDENTIAL_LENGTH

__all__ = [
    "check_celery_app",
    "check_model",
    "check_profile_models",
    "check_settings",
    "check_sweep_schedule",
    "profile_models",
]


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E001, E005 and W004."""
    try:
        settings = {
            key: getattr(suprsend_settings, key)
            for key in ("AUTOSYNC", "WORKSPACE_KEY", "WORKSPACE_SECRET", "API_KEY")
        }
    except SuprsendConfigurationError as exc:
        return [Error(str(exc), id="django_suprsend.E005")]
    messages: list[CheckMessage] = [
        Warning(
            f"SUPRSEND[{key!r}] is {len(value)} character(s) long: no real SuprSend "
            "credential is that short, so the hub will refuse it.",
            hint=f"Copy the whole value from the SuprSend dashboard (at least "
            f"{MIN_CREDENTIAL_LENGTH} characters).",
            id="django_suprsend.W004",
        )
        for key in ("WORKSPACE_SECRET", "API_KEY")
        if (value := settings[key]) and len(value) < MIN_CREDENTIAL_LENGTH
    ]
    missing = _missing_credentials(settings)
    if settings["AUTOSYNC"] and missing and not _run_by_migrate():
        messages.insert(
            0,
            Error(
                f"SUPRSEND has no {missing}, so queued changes can never be sent.",
                hint="Set SUPRSEND['WORKSPACE_KEY'] with SUPRSEND['WORKSPACE_SECRET'] (or "
                "SUPRSEND['API_KEY']), or set SUPRSEND['AUTOSYNC'] = False.",
                id="django_suprsend.E001",
            ),
        )
    return messages


@register()
def check_sweep_schedule(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W003: the app does not schedule the sweep, and neither does the project."""
    try:
        interval = suprsend_settings.SWEEP_INTERVAL
    except SuprsendConfigurationError:
        return []  # E005 reports it
    if interval is not None or any(runs_sweep(s) for s in configured_schedules()):
        return []
    return [
        Warning(
            f"SUPRSEND['SWEEP_INTERVAL'] is None and no Celery beat schedule runs {SWEEP_TASK!r}: "
            "changes whose flush task was lost (broker down at save time) are never sent, and "
            "the outbox is never pruned.",
            hint="Remove SUPRSEND['SWEEP_INTERVAL'] to let the app schedule the sweep when beat "
            "starts, or schedule it yourself: CELERY_BEAT_SCHEDULE = {'suprsend-sweep': "
            f"{{'task': {SWEEP_TASK!r}, 'schedule': 30.0}}}}. If django-celery-beat's database "
            "schedules it, add 'django_suprsend.W003' to SILENCED_SYSTEM_CHECKS.",
            id="django_suprsend.W003",
        )
    ]


def _run_by_migrate() -> bool:
    """Whether ``migrate`` (or a subclass of it) runs these checks: its ``execute()``, which
    calls them before it applies anything, is on the stack (``manage.py migrate`` and
    ``call_command("migrate")`` alike, on every Django version)."""
    from django.core.management.commands.migrate import Command as Migrate

    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Migrate):
            return True
        frame = frame.f_back
    return False


def _missing_credentials(settings: dict[str, Any]) -> str:
    """What the credentials lack, named by key (``""`` when nothing)."""
    secret = settings["WORKSPACE_SECRET"] or settings["API_KEY"]
    if settings["WORKSPACE_KEY"] and secret:
        return ""
    if secret:
        return "WORKSPACE_KEY (a secret is set, but not the workspace key it belongs to)"
    if settings["WORKSPACE_KEY"]:
        return "WORKSPACE_SECRET or API_KEY (the workspace key is set, but nothing to sign with)"
    return "credentials (neither WORKSPACE_KEY nor WORKSPACE_SECRET / API_KEY is set)"


#: The class attributes of the mixin's API: where a profile's parts come from.
MAPPING_ATTRIBUTES = tuple(
    sorted(name for name in vars(SuprsendProfileMixin) if name.startswith("suprsend_"))
)


def unknown_attributes(model: type[models.Model]) -> list[str]:
    """``suprsend_*`` names of ``model`` that are not part of the mixin's API.

    A name the mapping itself uses as a source (``{"plan": "suprsend_plan"}``) is the
    model's own, not a typo.
    """
    specs = [getattr(model, name) for name in MAPPING_ATTRIBUTES]
    specs += [
        spec for declared in specs if isinstance(declared, Mapping) for spec in declared.values()
    ]
    used = {spec for spec in specs if isinstance(spec, str)}
    return sorted(
        name
        for name in dir(model)
        if name.startswith("suprsend_") and name not in MAPPING_ATTRIBUTES and name not in used
    )


def _meant(name: str) -> str:
    """The "did you mean" of a ``suprsend_*`` name, matched on what follows the prefix
    (which every candidate shares)."""
    prefix = "suprsend_"
    matches = difflib.get_close_matches(
        name.removeprefix(prefix), [known.removeprefix(prefix) for known in MAPPING_ATTRIBUTES], 1
    )
    return f" (did you mean {name!r} -> {prefix + matches[0]!r}?)" if matches else ""


def _unknown_attribute_warnings(model: type[models.Model]) -> list[CheckMessage]:
    return [
        Warning(
            f"{name} is not a SuprsendProfileMixin attribute{_meant(name)}: the mixin ignores it.",
            hint=f"The mapping attributes are {', '.join(MAPPING_ATTRIBUTES)}. Rename a helper "
            "of your own so that it does not start with 'suprsend_', or silence "
            "django_suprsend.W002.",
            obj=model,
            id="django_suprsend.W002",
        )
        for name in unknown_attributes(model)
    ]


def check_model(model: type[models.Model]) -> list[CheckMessage]:
    """E002, E003, E004, W001 and W002 for one model."""
    messages: list[CheckMessage] = [
        Error(problem.message, hint=problem.hint, obj=model, id=f"django_suprsend.{problem.id}")
        for problem in mapping_problems(model)
    ]
    field = source_field(model, model.suprsend_distinct_id)
    if field is not None and not field.primary_key and not (field.unique and not field.editable):
        messages.append(
            Warning(
                f"suprsend_distinct_id comes from {field.name!r}, a field that can change, but "
                "a SuprSend distinct_id never changes: a save that changes it is refused.",
                hint="Use the primary key (the default, 'pk') or a unique field with "
                "editable=False, such as a UUID.",
                obj=model,
                id="django_suprsend.W001",
            )
        )
    messages.extend(_unknown_attribute_warnings(model))
    return messages


@register(Tags.models)
def check_profile_models(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The mapping checks of every model that uses the mixin."""
    return [message for model in profile_models(app_configs) for message in check_model(model)]


def _publishing_app() -> Celery | None:
    """The Celery app that the shared tasks would publish with in this thread, without
    creating Celery's fallback app (``celery.current_app`` would, and a project app created
    after it would then not become the default one)."""
    return _state._tls.current_app or _state.default_app


def _is_fallback(app: Celery) -> bool:
    """Whether ``app`` is the app Celery makes up when no project created one."""
    return app.main == "default" and not app.fixups and not app.set_as_current


def _fallback_broker() -> str:
    """The broker URL, password masked, of the app Celery would make up (as in
    ``celery._state``): its own default unless ``CELERY_BROKER_URL`` is in the environment."""
    loader = os.environ.get("CELERY_LOADER") or "default"
    app = Celery("default", fixups=[], set_as_current=False, loader=loader)
    return app.connection_for_write().as_uri()  # "**" for the password


@register()
def check_celery_app(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W005: no Celery app of the project's would send the app's tasks."""
    app = _publishing_app()
    if app is not None and not _is_fallback(app):
        return []
    broker = app.connection_for_write().as_uri() if app is not None else _fallback_broker()
    package = getattr(django_settings, "SETTINGS_MODULE", None) or "proj.settings"
    package = package.rpartition(".")[0] or "proj"
    ignored = (
        " CELERY_BROKER_URL in your settings is read by no Celery app."
        if getattr(django_settings, "CELERY_BROKER_URL", None)
        else ""
    )
    return [
        Warning(
            "No Celery app of this project is loaded, so django_suprsend's flush tasks would "
            f"be published with Celery's fallback app, to its broker {broker}: no worker of "
            f"yours would get them and changes would wait for the sweep.{ignored}",
            hint=f"Load your Celery app with Django: in {package.replace('.', '/')}/__init__.py "
            "write 'from .celery import app as celery_app' and "
            "\"__all__ = ('celery_app',)\" (see the README's Quick start). Without Celery "
            "(suprsend_flush from cron), silence django_suprsend.W005.",
            id="django_suprsend.W005",
        )
    ]
