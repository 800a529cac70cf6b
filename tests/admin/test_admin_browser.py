"""The SyncState admin in a real browser: log in, find a failed profile, read its error,
unset channels of a synced one through the action's intermediate page; the sync state list
and the user list readable at 1280 x 800 (no column clipped, the error on one line).

Headless Chromium (Debian's) driven by Playwright against pytest-django's
``live_server``; the flushes run in the test process, sending to the hub emulator.
Saves ``test-artifacts/admin-list.png``, ``admin-detail.png`` and ``admin-user-list.png``
(and the ones in
``docs/`` with ``SUPRSEND_UPDATE_DOCS=1``). See ``tests/browser.py`` for the setup.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from django_suprsend.delivery.flush import flush
from django_suprsend.models import SyncState, SyncStatus
from tests.browser import (  # noqa: F401 - browser_page is the fixture
    VIEWPORT,
    assert_list_columns_visible,
    browser_page,
    save_screenshot,
)
from tests.testapp.factories import make_user
from tests.testapp.models import User

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
LIST_URL = "/admin/django_suprsend/syncstate/"


def exactly(text: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def row_with(page: Page, cell: str, text: str) -> Locator:
    """The row of the admin list whose ``cell`` (a selector) reads exactly ``text``."""
    rows = page.locator("#result_list tbody tr")
    return rows.filter(has=page.locator(cell, has_text=exactly(text)))


def make_profiles(hub) -> dict[str, User]:
    """Three synced users and one whose invalid email failed its sync."""
    users = {
        "ada": make_user(
            first_name="Ada", last_name="Lovelace", email="ada@example.com", phone="+441234567890"
        ),
        "grace": make_user(
            first_name="Grace", last_name="Hopper", email="grace@example.com", phone="+15555550101"
        ),
        "alan": make_user(
            first_name="Alan", last_name="Turing", email="alan@example.com", phone="+441234567891"
        ),
        "bad": make_user(first_name="Bob", last_name="Broken", email="not-an-email"),
    }
    flush()
    states = {s.distinct_id: s.status for s in SyncState.objects.all()}
    for name, user in users.items():
        expected = SyncStatus.FAILED if name == "bad" else SyncStatus.SYNCED
        assert states[str(user.pk)] == expected, (name, states)
    assert hub.channel_values(str(users["ada"].pk), "$email") == ["ada@example.com"]
    return users


def test_failed_profile_and_unset_channels_action(hub, browser_page):  # noqa: F811
    from playwright.sync_api import expect

    page = browser_page
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    users = make_profiles(hub)
    bad_id, ada_id = str(users["bad"].pk), str(users["ada"].pk)

    # Log in through the form; the admin sends us on to the list.
    page.goto(f"/admin/login/?next={LIST_URL}")
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("#login-form [type=submit]").click()
    expect(page).to_have_url(re.compile(re.escape(LIST_URL) + "$"))

    # The list: the summary, and the failed profile with its status and error.
    expect(page.locator("#suprsend-summary")).to_contain_text("failed")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(len(users) + 1)  # and the superuser's own profile

    def row_of(distinct_id: str) -> Locator:
        return row_with(page, "th.field-distinct_id", distinct_id)

    bad_row = row_of(bad_id)
    expect(bad_row.locator("td.field-coloured_status")).to_have_text(exactly("failed"))
    expect(bad_row.locator("td.field-short_error")).to_contain_text("not-an-email")
    expect(row_of(ada_id).locator("td.field-coloured_status")).to_have_text(exactly("synced"))

    # Readable at 1280 px: every column beside the filters, named for what it shows; the
    # failed row claims no sync (its valid values did reach the hub), the synced ones no
    # attempts; the error on one line, all of it in the title.
    assert page.viewport_size == VIEWPORT == {"width": 1280, "height": 800}
    headers = assert_list_columns_visible(page)
    assert headers[1:] == [
        "distinct id",
        "object",
        "status",
        "failed attempts",
        "last successful sync",
        "last error",
    ]
    expect(bad_row.locator("td.field-last_successful_sync")).to_have_text(exactly("-"))
    expect(row_of(ada_id).locator("td.field-failed_attempts")).to_have_text(exactly("-"))
    expect(row_of(ada_id).locator("td.field-last_successful_sync")).not_to_have_text(exactly("-"))
    error = bad_row.locator("td.field-short_error .suprsend-error")
    expect(error).to_have_attribute("title", SyncState.objects.get(distinct_id=bad_id).last_error)
    one_line = bad_row.locator("td.field-coloured_status span").bounding_box()["height"]
    assert error.bounding_box()["height"] <= one_line * 1.2, "the error wraps"
    save_screenshot(page, "admin-list")

    # Its page: the error, and the failed record as the flush recorded it.
    bad_row.locator("th.field-distinct_id a").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(LIST_URL)}\d+/change/$"))
    expect(page.locator(".field-distinct_id .readonly")).to_have_text(exactly(bad_id))
    expect(page.locator(".field-coloured_status .readonly")).to_have_text(exactly("failed"))
    expect(page.locator(".field-last_error .readonly")).to_contain_text(
        "$email: 'not-an-email' is not a valid email address"
    )
    expect(page.locator(".field-failed_record pre")).to_contain_text("not-an-email")
    save_screenshot(page, "admin-detail")

    # Back on the list: unset $email and $sms of Ada's profile through the intermediate page.
    page.go_back()
    expect(page).to_have_url(re.compile(re.escape(LIST_URL) + "$"))
    ada_state = SyncState.objects.get(distinct_id=ada_id)
    page.locator(f"input[name=_selected_action][value='{ada_state.pk}']").check()
    page.locator("select[name=action]").select_option("unset_profile_channels")
    page.locator("button[name=index]").first.click()

    expect(page.locator("body")).to_have_class(re.compile(r"\bsuprsend-unset-channels\b"))
    form = page.locator("#content form")
    expect(form.locator("input[name=_selected_action]")).to_have_value(str(ada_state.pk))
    form.locator("input[name=channels][value='$email']").check()
    form.locator("input[name=channels][value='$sms']").check()
    form.locator("input[type=submit]").click()

    expect(page).to_have_url(re.compile(re.escape(LIST_URL) + "$"))
    expect(page.locator("ul.messagelist li.success")).to_contain_text(
        "1 profile queued to unset $email, $sms"
    )

    # The workers' path, in this process: the hub's profile loses the two channels.
    flush()
    assert hub.channel_values(ada_id, "$email") == []
    assert hub.channel_values(ada_id, "$sms") == []
    assert hub.properties(ada_id)["name"] == "Ada Lovelace"  # the rest is untouched
    grace_id = str(users["grace"].pk)
    assert hub.channel_values(grace_id, "$email") == ["grace@example.com"]  # not selected
    assert SyncState.objects.get(distinct_id=ada_id).status == SyncStatus.SYNCED

    # The user list at 1280 px: the SuprSend column comes second, in sight whatever follows
    # it (the auth admin's own columns, here, reach under the filters).
    page.goto("/admin/testapp/user/")
    headers = assert_list_columns_visible(page, only=["suprsend"])
    assert headers[1:3] == ["username", "suprsend"]
    bad_user_row = row_with(page, "th.field-username", users["bad"].username)
    expect(bad_user_row.locator("td.field-suprsend_status")).to_have_text(exactly("failed"))
    save_screenshot(page, "admin-user-list")
