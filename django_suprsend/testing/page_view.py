"""Serving the page for people: ``/`` and ``_emulator/`` (HTML), ``_emulator/state.json``.

Kept apart from the hub's routes: no auth (a local dev tool), no fault, and not
logged, so tests asserting on ``requests`` never see it.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from typing import Any

from django_suprsend.testing import page
from django_suprsend.testing.page_html import render_page
from django_suprsend.testing.responses import Response
from django_suprsend.testing.state import HubState

__all__ = ["PageView"]

# The page's paths below path_prefix: HTML for people, JSON for scripts.
_PAGE_PATHS = {"/": "html", "/_emulator/": "html", "/_emulator/state.json": "json"}
# no script may run even if a value escaped escaping; never cached, so a reload is fresh
_PAGE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Content-Type-Options", "nosniff"),
)


class PageView:
    def __init__(self, state: HubState, describe_hub: Callable[[], dict[str, Any]]) -> None:
        self._state = state
        self._describe_hub = describe_hub  # url, path_prefix, workspace_key, auth

    def snapshot(self) -> dict[str, Any]:
        """What the page shows, JSON-able: the newest profiles, notifications and requests."""
        state = self._state
        with state.lock:
            store = state.store
            newest = store.newest(page.PROFILE_LIMIT)
            profiles = [store.get(distinct_id) for distinct_id in newest]
            profile_total = len(store)
            recent = state.requests[-page.REQUEST_LIMIT :]
            request_total = len(state.requests)
            notifications = [
                page.notification_summary(n, self._profiles_before(n.recipients, n.sequence))
                for n in state.notifications[-page.NOTIFICATION_LIMIT :]
            ]
            notification_total = len(state.notifications)
            now, monotonic_now = time.time(), time.monotonic()
        return page.build_state(
            hub=self._describe_hub(),
            profiles=[p for p in profiles if p is not None],
            profile_total=profile_total,
            requests=recent,
            request_total=request_total,
            now=now,
            monotonic_now=monotonic_now,
            notifications=notifications,
            notification_total=notification_total,
        )

    def _profiles_before(self, distinct_ids: tuple[str, ...], sequence: int) -> dict[str, bool]:
        """Per distinct_id, whether an edit of its profile arrived before ``sequence``."""
        arrivals = self._state.arrivals
        return {
            distinct_id: any(
                number < sequence and kind == "profile"
                for number, kind, _ in arrivals.get(distinct_id, ())
            )
            for distinct_id in distinct_ids
        }

    def answer(self, local_path: str) -> Response | None:
        """The page for a GET of one of its paths, else None (the hub's routes answer)."""
        kind = _PAGE_PATHS.get(local_path)
        if kind is None:
            return None
        try:
            snapshot = self.snapshot()
            if kind == "json":  # ASCII-escaped: a lone surrogate in a value cannot break it
                return Response(200, json.dumps(snapshot, indent=1).encode(), _PAGE_HEADERS)
            text = render_page(snapshot).encode("utf-8", "replace")
            return Response(200, text, _PAGE_HEADERS, "text/html; charset=utf-8")
        except Exception as error:  # a bug in the page must not take the connection down
            traceback.print_exc()
            message = f"emulator page error: {error!r}".encode()
            return Response(500, message, _PAGE_HEADERS, "text/plain; charset=utf-8")
