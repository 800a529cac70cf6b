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
- W004: a workspace secret or API key too short to be a real one.

E001 is not reported to ``migrate``: applying migrations needs no SuprSend credentials.
The check finds ``migrate``'s command on the call stack; no argument tells it apart, as
``migrate`` and ``check --database`` give the checks the same ``databases`` on Django 6.1.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import models

from .client import MIN_CREDENTIAL_LENGTH
from .conf import suprsend_settings
from .exceptions import SuprsendConfigurationError
from .mixins import SuprsendProfileMixin, mapping_problems, source_field

__all__ = ["check_model", "check_profile_models", "check_settings", "profile_models"]


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


def profile_models(app_configs: Sequence[AppConfig] | None = None) -> list[type[models.Model]]:
    """The installed models (of ``app_configs``, when given) that use the mixin."""
    candidates: Iterable[type[models.Model]] = (
        apps.get_models()
        if app_configs is None
        else (model for config in app_configs for model in config.get_models())
    )
    return [model for model in candidates if issubclass(model, SuprsendProfileMixin)]


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
