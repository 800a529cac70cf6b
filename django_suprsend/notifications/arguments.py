"""The arguments of :func:`~django_suprsend.notifications.api.trigger` and
:func:`~django_suprsend.notifications.api.track_event`, checked at the call: recipients
as instances, distinct_ids or dicts; data that JSON can carry; attachments read now.

A bad argument is a programming error: it raises :class:`SuprsendValidationError`
naming the argument and the value, and nothing is queued.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.files import File
from django.core.serializers.json import DjangoJSONEncoder

from django_suprsend.exceptions import SuprsendValidationError
from django_suprsend.profiles.builder import distinct_id_of
from django_suprsend.profiles.mapping import ProfileModel
from django_suprsend.wire.attachments import (
    attachment_from_bytes,
    attachment_from_file,
    check_attachment,
)
from django_suprsend.wire.notifications import check_recipient
from django_suprsend.wire.validators import validate_distinct_id

Recipient = Any  # a model instance with the mixin, a distinct_id, or a dict


def json_value(value: Any, argument: str) -> Any:
    """``value`` as JSON will carry it, by Django's rules (:class:`DjangoJSONEncoder`):
    ``datetime``/``date``/``time`` in ISO 8601, ``Decimal`` and ``UUID`` as strings,
    lazy translations as the text they are now, ``timedelta`` in ISO 8601 durations."""
    try:
        return json.loads(json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise SuprsendValidationError(argument, value, f"cannot be sent as JSON ({exc})") from exc


def recipient(value: Recipient, argument: str) -> str | dict[str, Any]:
    """One recipient (or the actor): its distinct_id, or its dict, checked."""
    if isinstance(value, ProfileModel):
        distinct_id = distinct_id_of(value)
        if not distinct_id:
            raise SuprsendValidationError(argument, value, "has no distinct_id (is it saved?)")
        return distinct_id
    if isinstance(value, str):
        return validate_distinct_id(value.strip() if value.strip() else value)
    if isinstance(value, Mapping):
        record = json_value(dict(value), argument)
        check_recipient(record, argument)
        if "distinct_id" in record:
            validate_distinct_id(record["distinct_id"])
        return record  # type: ignore[no-any-return]
    raise SuprsendValidationError(
        argument,
        value,
        "must be a model instance with SuprsendProfileMixin, a distinct_id or a dict",
    )


def recipients(values: Any) -> list[str | dict[str, Any]]:
    if isinstance(values, (str, Mapping, ProfileModel)):
        values = [values]
    if not isinstance(values, Iterable):
        raise SuprsendValidationError("recipients", values, "must be a list of recipients")
    resolved = [recipient(value, f"recipients[{i}]") for i, value in enumerate(values)]
    if not resolved:
        raise SuprsendValidationError("recipients", values, "is empty: name at least one")
    return resolved


def first_distinct_id(values: list[str | dict[str, Any]]) -> str:
    for value in values:
        distinct_id = value.get("distinct_id") if isinstance(value, dict) else value
        if isinstance(distinct_id, str) and distinct_id:
            return distinct_id
    return ""


def attachment(value: Any, argument: str) -> dict[str, Any] | None:
    """An attachment, read now: a path, a Django ``File``/``FieldFile``, ``(name, bytes)``,
    or a dict built with :mod:`django_suprsend.wire.attachments`."""
    if isinstance(value, (str, os.PathLike)):
        return attachment_from_file(value)
    if isinstance(value, File):
        name = os.path.basename(value.name or "")
        value.open("rb")
        try:
            value.seek(0)
            content = value.read()
        finally:
            value.close()
        if isinstance(content, str):
            content = content.encode()
        return attachment_from_bytes(content, name or "attachment")
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (bytes, bytearray)):
        return attachment_from_bytes(bytes(value[1]), value[0])
    if isinstance(value, Mapping):
        return check_attachment(dict(value), argument)
    raise SuprsendValidationError(
        argument, value, "must be a file path, a Django File, (name, bytes) or an attachment dict"
    )


def attachments(values: Iterable[Any]) -> list[dict[str, Any]]:
    built = (attachment(value, f"attachments[{i}]") for i, value in enumerate(values))
    return [a for a in built if a is not None]
