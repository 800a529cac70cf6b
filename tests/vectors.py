"""Load the wire-format vectors captured from the official SDK.

They live in ``../shared/vectors/`` beside the repository (or wherever
``SUPRSEND_VECTORS_DIR`` points). Where they are absent, tests that need
them are skipped with a message instead of failing.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTORS_DIR = Path(os.environ.get("SUPRSEND_VECTORS_DIR", REPO_ROOT.parent / "shared" / "vectors"))

# The values the capture pinned inside the SDK, so that our client can be
# made to reproduce the same bytes.
SDK_USER_AGENT = "suprsend-py-sdk/0.20.0 (python/3.11.7; linux)"
FIXED_DATE = "Mon, 15 Jan 2024 10:30:00 GMT"
FIXED_TIME_MS = 1705314600500


def fixed_insert_id(n: int) -> str:
    """The n-th (1-based) uuid4 the capture patched in."""
    return f"00000000-0000-4000-8000-{n:012d}"


@cache
def load(name: str) -> dict[str, Any]:
    path = VECTORS_DIR / f"{name}.json"
    if not path.exists():
        pytest.skip(f"wire-format vectors not found at {path} (set SUPRSEND_VECTORS_DIR)")
    return json.loads(path.read_text(encoding="utf-8"))


def cases(name: str, **match: Any) -> list[Any]:
    """The cases of one vector file as ``pytest.param``s, filtered by equal top-level keys.

    Used at collection time for parametrisation. Where the folder is
    missing, one skipped param says where the vectors were looked for.
    """
    path = VECTORS_DIR / f"{name}.json"
    if not path.exists():
        reason = f"wire-format vectors not found at {path} (set SUPRSEND_VECTORS_DIR)"
        return [pytest.param(None, id="no-vectors", marks=pytest.mark.skip(reason=reason))]
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        pytest.param(c, id=c["name"])
        for c in data["cases"]
        if all(c.get(k) == v for k, v in match.items())
    ]


def require_vectors() -> None:
    if not VECTORS_DIR.exists():
        pytest.skip(f"wire-format vectors not found at {VECTORS_DIR} (set SUPRSEND_VECTORS_DIR)")


CREDENTIALS = {
    "workspace_key": "ws_key_0123456789ABCDEF",
    "workspace_secret": "ws_secret_0123456789abcdefghijklmn",
    "workspace_uid": "ws_uid_0123456789abcdef01",
    "api_key": "api_key_0123456789abcdefghijklmnop",
}
