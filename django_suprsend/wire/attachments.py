"""Attachments of workflow triggers and events, built as suprsend-py-sdk 0.20.0 builds them.

An attachment is the plain dict the SDK's ``add_attachment`` appends to
``data.$attachments`` (workflows) or ``properties.$attachments`` (events)::

    {"filename": "invoice.txt", "contentType": "text/plain",
     "data": "<base64 of the bytes>", "url": None, "ignore_if_error": False}

or, for a web URL, ``{"filename", "contentType": None, "data": None, "url",
"ignore_if_error"}``. The content is read and encoded when the function is
called, so the dict can be stored (in an outbox row) and sent later as it is,
whatever happens to the file meanwhile.

The MIME type is ``mimetypes.guess_type(file name)`` (``application/octet-stream``
when unknown), as the SDK guesses it when python-magic is not installed, the
case the vectors were captured in: the same file gives the same bytes on every
machine. There is no size limit of attachments of their own: the base64 data
counts in the record, whose limit is the SDK's 800KB body.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
import mimetypes
import os
from collections.abc import Mapping, Sequence
from typing import Any

from django_suprsend.exceptions import SuprsendValidationError

logger = logging.getLogger("django_suprsend.wire.attachments")

Attachment = dict[str, Any]

#: The SDK's budget of one request body (and of one bulk request's records).
MAX_BODY_BYTES = 800 * 1024
_URL_SCHEMES = ("https://", "http://")


def _size_checked(attachment: Attachment, source: str) -> Attachment:
    # base64 grows 4/3: a content whose base64 alone is over the body limit can go in no
    # record, and is refused here rather than when the record is built.
    data = attachment["data"]
    if data is not None and len(data) > MAX_BODY_BYTES:
        reason = (
            f"takes {len(data)} bytes in base64, over the {MAX_BODY_BYTES}-byte (800KB) "
            "limit of one request body"
        )
        raise SuprsendValidationError("$attachments", source, reason)
    return attachment


def _file_name(file_name: str | None, default: str) -> str:
    if file_name is not None and not isinstance(file_name, str):
        raise SuprsendValidationError("filename", file_name, "must be a string or None")
    return file_name.strip() if file_name and file_name.strip() else default


def _mime_type(name: str, mime_type: str | None) -> str:
    if mime_type is not None:
        if not isinstance(mime_type, str) or "/" not in mime_type:
            raise SuprsendValidationError("contentType", mime_type, "is not a MIME type")
        return mime_type
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def attachment_from_bytes(
    content: bytes,
    file_name: str,
    *,
    mime_type: str | None = None,
    ignore_if_error: bool = False,
) -> Attachment:
    """An attachment of ``content`` named ``file_name`` (stripped); ``mime_type`` is
    guessed from the name unless given."""
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise SuprsendValidationError("data", type(content).__name__, "must be bytes")
    name = _file_name(file_name, "")
    if not name:
        raise SuprsendValidationError("filename", file_name, "must be a non-empty string")
    attachment = {
        "filename": name,
        "contentType": _mime_type(name, mime_type),
        "data": base64.b64encode(bytes(content)).decode(),
        "url": None,
        "ignore_if_error": bool(ignore_if_error),
    }
    return _size_checked(attachment, name)


def attachment_from_url(
    url: str, file_name: str | None = None, *, ignore_if_error: bool = False
) -> Attachment:
    """An attachment the hub fetches from ``url`` (``http://`` or ``https://``)."""
    if not isinstance(url, str) or not url.startswith(_URL_SCHEMES):
        raise SuprsendValidationError("url", url, "must start with https:// or http://")
    return {
        "filename": file_name,
        "contentType": None,
        "data": None,
        "url": url,
        "ignore_if_error": bool(ignore_if_error),
    }


def attachment_from_file(
    path: str | os.PathLike[str],
    file_name: str | None = None,
    *,
    mime_type: str | None = None,
    ignore_if_error: bool = False,
) -> Attachment | None:
    """The SDK's ``add_attachment(file_path, file_name, ignore_if_error)``, as a dict.

    A ``path`` starting with ``http(s)://`` gives :func:`attachment_from_url`.
    Otherwise the file is read now (``~`` expanded); its name is the file's base
    name unless ``file_name`` is given. A file that cannot be read raises
    :class:`SuprsendValidationError` (the SDK: the ``OSError``), or, with
    ``ignore_if_error``, is logged and gives None, as in the SDK.
    """
    text = os.fspath(path)
    if isinstance(text, str) and text.startswith(_URL_SCHEMES):
        return attachment_from_url(text, file_name, ignore_if_error=ignore_if_error)
    abs_path = os.path.abspath(os.path.expanduser(text))
    try:
        with open(abs_path, "rb") as f:
            content = f.read()
    except OSError as exc:
        if ignore_if_error:
            logger.warning("Ignoring attachment %s: %s: %s", abs_path, type(exc).__name__, exc)
            return None
        reason = f"cannot be read ({type(exc).__name__}: {exc.strerror or exc})"
        raise SuprsendValidationError("$attachments", abs_path, reason) from exc
    name = _file_name(file_name, os.path.basename(abs_path))
    return attachment_from_bytes(
        content,
        name,
        mime_type=mime_type or _mime_type(abs_path, None),
        ignore_if_error=ignore_if_error,
    )


def check_attachment(attachment: Any, field: str = "$attachments") -> Attachment:
    """An attachment dict as made here (one read back from storage, say)."""
    keys = ("filename", "contentType", "data", "url", "ignore_if_error")
    if not isinstance(attachment, Mapping) or tuple(attachment) != keys:
        raise SuprsendValidationError(field, attachment, f"must be a dict of the keys {keys}")
    if attachment["data"] is not None:
        try:
            base64.b64decode(attachment["data"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise SuprsendValidationError(
                f"{field}.data", attachment["filename"], "is not base64"
            ) from None
    elif not isinstance(attachment["url"], str):
        raise SuprsendValidationError(field, attachment["filename"], "has neither data nor url")
    return dict(attachment)


def add_attachments(record: dict[str, Any], key: str, attachments: Sequence[Any]) -> None:
    """Append ``attachments`` (None items skipped, as the SDK skips an ignored file) to
    ``record[key]["$attachments"]``, as the SDK's ``add_attachment`` does: ``record[key]``
    is created if None, then ``$attachments`` if None."""
    kept = [check_attachment(a) for a in attachments if a is not None]
    if not kept:
        return
    if record.get(key) is None:
        record[key] = {}
    target = record[key]
    if not isinstance(target, dict):
        raise SuprsendValidationError(key, target, "must be a dict to take attachments")
    if target.get("$attachments") is None:
        target["$attachments"] = []
    if not isinstance(target["$attachments"], list):
        raise SuprsendValidationError(
            f"{key}.$attachments", target["$attachments"], "must be a list"
        )
    target["$attachments"].extend(copy.deepcopy(kept))
