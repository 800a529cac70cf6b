"""Real-browser tests: Debian's Chromium driven by Playwright's sync API.

Playwright comes from the ``browser`` extra (``pip install -e ".[browser]"``); the
browser is the system's Chromium (``scripts/install_browser.sh``, or ``apt-get install
chromium``), never one that Playwright downloads. Where either is missing the browser
tests are skipped with a message, except in CI (``CI=true``), where that is a failure.

Use the ``browser_page`` fixture (import it into the test module): a fresh page of a
fresh browser whose relative URLs go to pytest-django's ``live_server``. Screenshots
go to ``test-artifacts/`` (``save_screenshot``), and to ``docs/`` as well when
``SUPRSEND_UPDATE_DOCS=1``; a failing test leaves ``test-artifacts/<test>-failure.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.db import connections

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs"

# CHROMIUM=/path/to/chrome overrides the search.
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

LAUNCH_ARGS = [
    "--no-sandbox",  # root in CI and in containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# A laptop's screen: every admin list must be readable at this width (issue 14, item 7).
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 10_000  # every wait of a locator or an assertion; the pages are local

INSTALL_HINT = (
    "install them with `scripts/install_browser.sh` (Debian's chromium, as root) and "
    '`pip install -e ".[browser]"` (Playwright; never `playwright install`)'
)


def find_chromium() -> str | None:
    """The path of a Chromium executable on this machine, or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _missing(what: str) -> None:
    """Skip the test, or fail it in CI where a missing browser must not pass quietly."""
    message = f"browser test: {what}; {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing browser is a failure)", pytrace=False)
    pytest.skip(message)


def require_browser() -> str:
    """The Chromium path, once Playwright imports; skips or fails the test otherwise."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the Python package `playwright` is not installed")
    chromium = find_chromium()
    if chromium is None:
        override = os.environ.get("CHROMIUM")
        where = f"CHROMIUM={override}" if override else ", ".join(CHROMIUM_CANDIDATES) + " on PATH"
        _missing(f"no Chromium executable found (looked for {where})")
    return chromium  # type: ignore[return-value]


@contextmanager
def _async_unsafe_allowed() -> Iterator[None]:
    """Let the ORM run in the main thread while Playwright's sync API has its event loop
    there (Django raises SynchronousOnlyOperation otherwise); restored on exit."""
    name = "DJANGO_ALLOW_ASYNC_UNSAFE"
    previous = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextmanager
def open_page(base_url: str, *, executable_path: str | None = None) -> Iterator[Page]:
    """A page of a fresh headless Chromium whose relative URLs go to ``base_url``."""
    from playwright.sync_api import expect, sync_playwright

    executable_path = executable_path or require_browser()
    with _async_unsafe_allowed(), sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable_path, args=LAUNCH_ARGS)
            try:
                context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
                context.set_default_timeout(TIMEOUT_MS)
                expect.set_options(timeout=TIMEOUT_MS)
                yield context.new_page()
            finally:
                browser.close()
        finally:
            # With Playwright's event loop running, Django keeps the main thread's
            # connections per async context: those opened in here are not the test's
            # own and would stay open (PostgreSQL then cannot drop the test database).
            connections.close_all()


# The admin list's header cells, where the table's visible area ends (the filters' left edge,
# or the viewport's), and how far its scroll container scrolls sideways.
_LIST_GEOMETRY = """() => {
    const table = document.querySelector("#result_list");
    const filter = document.querySelector("#changelist-filter");
    const results = table.closest(".results") || table.parentElement;
    const viewport = document.documentElement.clientWidth;
    return {
        visibleRight: Math.min(viewport, filter ? filter.getBoundingClientRect().left : viewport),
        sideways: results.scrollWidth - results.clientWidth,
        headers: [...table.querySelectorAll("thead th")].map((th) => {
            const box = th.getBoundingClientRect();
            return {text: th.innerText.trim(), left: box.left, right: box.right};
        }),
    };
}"""


def assert_list_columns_visible(page: Page, *, only: Sequence[str] = ()) -> list[str]:
    """Fail unless every column of the admin list on ``page`` (or those whose headers read
    ``only``, in any case) lies within the viewport and left of the filter sidebar, and,
    for every column, unless there is nothing to scroll sideways; returns the header texts
    in lower case (the admin's CSS shows them in upper case)."""
    geometry = page.evaluate(_LIST_GEOMETRY)
    headers = [{**header, "text": header["text"].lower()} for header in geometry["headers"]]
    checked = [header for header in headers if not only or header["text"] in only]
    assert len(checked) >= len(only), f"no column {only} among {headers}"
    hidden = [
        header
        for header in checked
        if header["left"] < 0 or header["right"] > geometry["visibleRight"] + 0.5
    ]
    assert not hidden, f"columns past {geometry['visibleRight']}px (viewport {VIEWPORT}): {hidden}"
    if not only:
        assert geometry["sideways"] <= 0, f"the list scrolls sideways by {geometry['sideways']}px"
    return [header["text"] for header in headers]


def save_screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """``test-artifacts/<name>.png``, and ``docs/<name>.png`` when ``SUPRSEND_UPDATE_DOCS=1``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("SUPRSEND_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path


def _check_live_server(live_server) -> None:
    """Fail when the live server shares an SQLite connection across its request threads.

    pytest sets up session fixtures first: a ``live_server`` started before the test
    database takes SQLite's ``:memory:`` for an in-memory database and hands one
    connection to every request thread, which crashes the process (a segfault) as soon
    as the browser fetches two things at once. ``django_db_setup`` before
    ``live_server`` in the fixture's arguments keeps the file database of
    tests/settings.py, one connection per thread.
    """
    shared = [
        alias
        for alias, connection in live_server.thread.connections_override.items()
        if not connection.is_in_memory_db()
    ]
    if shared:
        pytest.fail(
            f"live_server shares the connection of {shared} across threads: it was started "
            "before the test database was set up (request django_db_setup before live_server)",
            pytrace=False,
        )


@pytest.fixture
def browser_page(request: pytest.FixtureRequest, django_db_setup, live_server) -> Iterator[Page]:
    """A fresh browser page on ``live_server``; a screenshot of it when the test fails."""
    _check_live_server(live_server)
    executable_path = require_browser()
    failed_before = request.session.testsfailed
    with open_page(live_server.url, executable_path=executable_path) as page:
        yield page
        # The call's report is logged before teardown: a new failure is this test's.
        if request.session.testsfailed > failed_before and not page.is_closed():
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            page.screenshot(path=str(ARTIFACTS / f"{name}-failure.png"), full_page=True)
