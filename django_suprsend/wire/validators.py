"""Checks for the values of a SuprSend profile edit. Pure Python, no Django.

Every check takes the value and the SuprSend field it is meant for, returns
the value to send unchanged (values are never stripped or normalised) and
raises :class:`~django_suprsend.exceptions.SuprsendValidationError` naming
the field, the value and what is wrong with it.

Values that carry credentials (Slack access tokens, webhook URLs, web push
keys) are masked in the error: every non-empty string in them becomes
``'***'``, so the error shows the shape at fault but no secret.
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
import uuid
import zoneinfo
from collections.abc import Container
from functools import lru_cache
from typing import Any, NoReturn

from django_suprsend.exceptions import SuprsendValidationError

CHANNEL_KEYS = (
    "$email",
    "$sms",
    "$whatsapp",
    "$androidpush",
    "$iospush",
    "$webpush",
    "$slack",
    "$ms_teams",
)
ANDROID_PUSH_PROVIDERS = ("fcm", "xiaomi", "oppo")
IOS_PUSH_PROVIDERS = ("apns",)
WEBPUSH_PROVIDERS = ("vapid",)
PUSH_PROVIDERS = {
    "$androidpush": ANDROID_PUSH_PROVIDERS,
    "$iospush": IOS_PUSH_PROVIDERS,
    "$webpush": WEBPUSH_PROVIDERS,
}
PROFILE_SETTING_KEYS = ("$preferred_language", "$timezone", "$locale")
RESERVED_PREFIXES = ("$", "ss_")
MAX_JSON_DEPTH = 32
#: The longest distinct_id the outbox and the sync states hold (their ``CharField``\ s).
#: SuprSend documents no limit of its own; ids are usually a primary key or a UUID.
MAX_DISTINCT_ID_LENGTH = 255

# ISO 639-1: the 184 two-letter language codes (including the withdrawn "bh").
LANGUAGE_CODES = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu
    cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi
    ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks
    ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl
    nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl
    sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
    vi vo wa wo xh yi yo za zh zu
    """.split()  # noqa: SIM905 (184 quoted codes in a list literal read worse)
)

SLACK_SHAPES = (
    frozenset({"email", "access_token"}),
    frozenset({"user_id", "access_token"}),
    frozenset({"channel_id", "access_token"}),
    frozenset({"incoming_webhook"}),
)
MS_TEAMS_SHAPES = (
    frozenset({"tenant_id", "service_url", "conversation_id"}),
    frozenset({"tenant_id", "service_url", "user_id"}),
    frozenset({"incoming_webhook"}),
)
_SLACK_TEXT = (
    "{email, access_token}, {user_id, access_token}, {channel_id, access_token} "
    "or {incoming_webhook: {url}}"
)
_MS_TEAMS_TEXT = (
    "{tenant_id, service_url, conversation_id}, {tenant_id, service_url, user_id} "
    "or {incoming_webhook: {url}}"
)

_EMAIL_RE = re.compile(r"[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+")
# E.164: at most 15 digits; no real number (country code included) has fewer than 7.
_E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")
_LOCALE_RE = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
_TZ_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
_NOT_ZONES = frozenset({"localtime", "posixrules"})
_CONVERSIONS = (
    ((datetime.date, datetime.time), "an ISO 8601 string with value.isoformat()"),
    (decimal.Decimal, "str(value) or float(value)"),
    ((set, frozenset), "a list"),
    (uuid.UUID, "str(value)"),
    ((bytes, bytearray), "a str with value.decode()"),
)


def _fail(field: str, value: Any, reason: str) -> NoReturn:
    raise SuprsendValidationError(field, value, reason)


def _mask(value: Any) -> Any:
    """``value`` with every non-empty string replaced by ``'***'`` (for errors on secrets)."""
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(item) for item in value]
    return "***" if isinstance(value, str) and value else value


def check_storable(value: str, field: str) -> str:
    """``value``, unless a database cannot store it: PostgreSQL refuses a NUL character in
    text and JSON, and no database takes a lone surrogate (which is not UTF-8)."""
    if "\x00" in value:
        _fail(field, value, "contains a NUL character (\\x00), which a database cannot store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _fail(field, value, "is not valid Unicode text (it holds a lone surrogate)")
    return value


def validate_distinct_id(value: Any, field: str = "distinct_id") -> str:
    """A distinct_id the outbox can hold: a string of 1 to ``MAX_DISTINCT_ID_LENGTH``
    characters (given stripped)."""
    if not _filled(value):
        _fail(field, value, "must be a non-empty string")
    if len(value) > MAX_DISTINCT_ID_LENGTH:
        _fail(
            field,
            value,
            f"is {len(value)} characters long; a distinct_id holds at most "
            f"{MAX_DISTINCT_ID_LENGTH}",
        )
    return check_storable(value, field)


def _filled(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def require_str(value: Any, field: str) -> str:
    """A string with something besides whitespace in it (returned as given)."""
    if not _filled(value):
        _fail(field, value, "must be a non-empty string")
    return value


def require_dict(value: Any, field: str) -> dict:
    """A non-empty dict that JSON can carry; errors mask its strings."""
    if not isinstance(value, dict) or not value:
        _fail(field, _mask(value), "must be a non-empty dict")
    try:
        return validate_json_value(value, field)
    except SuprsendValidationError as exc:
        _fail(exc.field, _mask(exc.value), exc.reason)


def validate_email(value: Any, field: str = "$email") -> str:
    """A pragmatic email check: one ``@``, a local part, a dotted domain, no whitespace."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL_RE.fullmatch(value):
        _fail(field, value, "is not a valid email address (expected name@example.com)")
    return check_storable(value, field)


def validate_phone(value: Any, field: str = "$sms") -> str:
    """An E.164 number: ``+``, then 7 to 15 digits, the first not 0."""
    if not isinstance(value, str) or not _E164_RE.fullmatch(value):
        _fail(field, value, "is not a valid phone number: expected E.164 like +15555550123")
    return value


def validate_language(value: Any, field: str = "$preferred_language") -> str:
    """An ISO 639-1 code exactly as listed: two lowercase letters such as ``en``."""
    if isinstance(value, str) and value in LANGUAGE_CODES:
        return value
    guess = value.strip().lower().replace("_", "-").split("-")[0] if isinstance(value, str) else ""
    hint = f"; did you mean {guess!r}?" if guess in LANGUAGE_CODES else ""
    _fail(
        field, value, f"is not an ISO 639-1 language code (two lowercase letters like 'en'){hint}"
    )


@lru_cache(maxsize=1024)
def _is_zone(name: str) -> bool:
    if name in _NOT_ZONES or not _TZ_RE.fullmatch(name):
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:  # ValueError, ZoneInfoNotFoundError, OSError...: all mean "no".
        return False
    return True


def validate_timezone(value: Any, field: str = "$timezone") -> str:
    """An IANA time zone name that :mod:`zoneinfo` can load, such as ``Europe/London``."""
    if not isinstance(value, str) or not _is_zone(value):
        _fail(field, value, "is not an IANA time zone name (like 'Europe/London')")
    return value


def validate_locale(value: Any, field: str = "$locale") -> str:
    """A locale such as ``en``, ``en_GB`` or ``pt-BR``: a lowercase language, then subtags."""
    if not isinstance(value, str) or not _LOCALE_RE.fullmatch(value):
        _fail(
            field, value, "is not a locale (expected a language and optional region like 'en_GB')"
        )
    return value


def validate_property_key(key: Any, field: str, *, allowed: Container[str] = ()) -> str:
    """A property name, ``strip()``ped; names starting with ``$`` or ``ss_`` are reserved.

    ``field`` is the operation (``$set``...), ``allowed`` the reserved names it accepts.
    """
    if not isinstance(key, str):
        _fail(field, key, "is not a property name: keys must be strings")
    name = key.strip()
    if not name:
        _fail(field, key, "is an empty property name")
    if name.startswith(RESERVED_PREFIXES) and name not in allowed:
        if name in PROFILE_SETTING_KEYS:
            hint = "; use set_preferred_language(), set_timezone() or set_locale()"
        elif name in CHANNEL_KEYS:
            hint = "; use the add_*/remove_* methods, append() or remove()"
        else:
            hint = ""
        _fail(field, key, f"is a reserved key (names starting with '$' or 'ss_'){hint}")
    return check_storable(name, field)


def validate_json_value(value: Any, field: str, _depth: int = 0) -> Any:
    """A value JSON can carry: None, bool, int, finite float, str, list, tuple, dict (str keys)."""
    if isinstance(value, str):
        return check_storable(value, field)
    if value is None or isinstance(value, int):  # bool is an int
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(field, value, "is not a finite number (JSON has no NaN or Infinity)")
        return value
    if isinstance(value, (list, tuple, dict)) and _depth >= MAX_JSON_DEPTH:
        _fail(field, value, f"nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            validate_json_value(item, f"{field}[{index}]", _depth + 1)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(field, key, "is not a string key (JSON object keys must be strings)")
            validate_json_value(item, f"{field}.{key}", _depth + 1)
        return value
    hint = next((h for types, h in _CONVERSIONS if isinstance(value, types)), None)
    target = hint or "str, int, float, bool, None, list or dict"
    _fail(
        field,
        value,
        f"is a {type(value).__name__}, which JSON cannot carry; convert it to {target}",
    )


def validate_number(value: Any, field: str) -> int | float:
    """An int or finite float (not a bool), for ``increment``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(field, value, "must be an int or a finite float to increment by")
    return value


def validate_push_token(value: Any, field: str) -> str:
    """A device token: a non-empty string without whitespace."""
    if not _filled(value) or any(char.isspace() for char in value):
        _fail(field, value, "is not a push token (a non-empty string without whitespace)")
    return check_storable(value, field)


def validate_push_provider(channel: str, provider: Any, *, strict: bool = True) -> str | None:
    """``$id_provider`` for ``channel``: None or one of its providers.

    Not ``strict`` (for removals), any non-empty string is accepted.
    """
    allowed = PUSH_PROVIDERS[channel]
    if provider is None or provider in allowed:
        return provider
    if not strict and _filled(provider):
        return check_storable(provider, "$id_provider")
    choices = ", ".join(repr(name) for name in allowed)
    _fail("$id_provider", provider, f"is not a {channel} provider: expected {choices} or None")


def validate_webpush(value: Any, field: str = "$webpush") -> dict:
    """A ``PushSubscription.toJSON()`` dict: ``endpoint`` and ``keys.p256dh``/``keys.auth``."""
    keys = value.get("keys") if isinstance(value, dict) else None
    if not (
        isinstance(keys, dict)
        and _filled(value.get("endpoint"))
        and _filled(keys.get("p256dh"))
        and _filled(keys.get("auth"))
    ):
        _fail(
            field,
            _mask(value),
            "is not a web push subscription: expected "
            "{endpoint: str, keys: {p256dh: str, auth: str}}",
        )
    return require_dict(value, field)


def _validate_shaped(
    value: Any, field: str, name: str, shapes: tuple[frozenset[str], ...], text: str
) -> dict:
    ok = isinstance(value, dict) and frozenset(value) in shapes
    if ok and "incoming_webhook" in value:
        hook = value["incoming_webhook"]
        ok = isinstance(hook, dict) and set(hook) == {"url"} and _filled(hook["url"])
    elif ok:
        ok = all(_filled(item) for item in value.values())
        ok = ok and ("email" not in value or bool(_EMAIL_RE.fullmatch(value["email"])))
    if not ok:
        _fail(
            field,
            _mask(value),
            f"is not a valid {name} identity: expected one of {text} with non-empty string values",
        )
    return require_dict(value, field)


def validate_slack(value: Any, field: str = "$slack") -> dict:
    """One of :data:`SLACK_SHAPES`, values non-empty strings (``incoming_webhook``: {url})."""
    return _validate_shaped(value, field, "Slack", SLACK_SHAPES, _SLACK_TEXT)


def validate_ms_teams(value: Any, field: str = "$ms_teams") -> dict:
    """One of :data:`MS_TEAMS_SHAPES`, values non-empty strings (``incoming_webhook``: {url})."""
    return _validate_shaped(value, field, "MS Teams", MS_TEAMS_SHAPES, _MS_TEAMS_TEXT)
