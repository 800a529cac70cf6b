"""The admin: the SyncState list and detail, the summary, the actions, the user-admin mixin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_suprsend import paused
from django_suprsend.models import OutboxEntry, SyncState, SyncStatus
from django_suprsend.wire.bulk import NO_ANSWER, REFUSED_LOCALLY
from tests.testapp.factories import clear, entries, make_user, override_suprsend
from tests.testapp.models import User

pytestmark = pytest.mark.django_db

STATES = reverse("admin:django_suprsend_syncstate_changelist")
USERS = reverse("admin:testapp_user_changelist")
FAILED_RECORD = {
    "record": {"distinct_id": "x", "$append": {"$email": "<script>alert(1)</script>"}},
    "error": "invalid email <script>alert(1)</script>",
    "code": 400,
}


def make_state(
    user: User | None = None,
    *,
    distinct_id: str | None = None,
    status: str = SyncStatus.SYNCED,
    **fields: Any,
) -> SyncState:
    return SyncState.objects.create(
        distinct_id=distinct_id or str(user.pk),
        content_type=ContentType.objects.get_for_model(User) if user else None,
        object_id=str(user.pk) if user else "",
        status=status,
        **fields,
    )


def quiet_user(**fields: Any) -> User:
    """A saved user that queued nothing."""
    with paused():
        return make_user(**fields)


def shown(response: Any) -> list[Any]:
    """The rows of a changelist response."""
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


def run_action(client: Client, url: str, action: str, rows: list[Any], **data: Any) -> Any:
    return client.post(
        url, {"action": action, ACTION_CHECKBOX_NAME: [row.pk for row in rows], **data}
    )


@pytest.fixture
def admin_user(django_user_model: type[User]) -> User:
    """pytest-django's superuser, created without queueing its profile."""
    with paused():
        return django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")


@pytest.fixture
def failing() -> SyncState:
    """A failed profile with a failed entry, a pending one and a sent one."""
    user = quiet_user(email="fail@example.com")
    for status, error in [("sent", ""), ("failed", "invalid email <b>x</b>"), ("pending", "")]:
        OutboxEntry.objects.create(
            distinct_id=str(user.pk),
            operations=[{"$append": {"$email": f"{status}@example.com"}}],
            status=status,
            attempts=3 if status == "failed" else 0,
            last_error=error,
            sent_at=timezone.now() if status == "sent" else None,
        )
    return make_state(
        user,
        status=SyncStatus.FAILED,
        attempts=3,
        last_error=FAILED_RECORD["error"],
        last_error_code=400,
        last_failed_record=FAILED_RECORD,
    )


@pytest.fixture
def staff(client: Client) -> User:
    """A logged-in staff user who may view sync states and users, and nothing more."""
    user = quiet_user(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_syncstate", "view_user"])
    )
    client.force_login(user)
    return user


def grant(user: User, codename: str) -> None:
    user.user_permissions.add(Permission.objects.get(codename=codename))


# -- the list --------------------------------------------------------------------------


def test_list_shows_each_profile_linked_to_its_object(admin_client: Client) -> None:
    user = quiet_user()
    make_state(user, last_synced_at=timezone.now())
    make_state(distinct_id="orphan", status=SyncStatus.RETRYING, last_error="x" * 300)
    response = admin_client.get(STATES)
    assert len(shown(response)) == 2
    html = response.content.decode()
    user_url = reverse("admin:testapp_user_change", args=[user.pk])
    assert f'<a href="{user_url}">user {user.pk}</a>' in html
    assert 'style="color: #e65100; font-weight: bold">retrying</span>' in html
    assert "x" * 79 + "…" in html
    assert "x" * 81 not in html.split('title="')[0]


def test_columns_claim_no_sync_nor_attempts_that_did_not_happen(admin_client: Client) -> None:
    """A failed row shows no "successful sync" time (its valid values may have reached the hub
    at ``last_synced_at``), a synced row no attempts; the error's title holds all of it."""
    now = timezone.now()
    long_error = "refused: " + "y" * 1000
    make_state(distinct_id="good", last_synced_at=now)
    make_state(distinct_id="bad", status=SyncStatus.FAILED, attempts=3, last_synced_at=now)
    make_state(distinct_id="refused", status=SyncStatus.FAILED, last_error=long_error)
    response = admin_client.get(STATES)
    cl = response.context["cl"]
    assert cl.list_display[1:] == [
        "distinct_id",
        "django_object",
        "coloured_status",
        "failed_attempts",
        "last_successful_sync",
        "short_error",
    ]
    model_admin = cl.model_admin
    cells = {
        state.distinct_id: (
            str(model_admin.failed_attempts(state)),
            str(model_admin.last_successful_sync(state)),
        )
        for state in shown(response)
    }
    assert cells["good"][0] == "-"
    assert cells["good"][1] not in ("-", "None")
    assert cells["bad"] == ("3", "-")
    assert cells["refused"] == ("-", "-")  # refused before sending: no attempt failed
    html = response.content.decode()
    assert f'<span class="suprsend-error" title="{long_error}">' in html
    for header in ("Failed attempts", "Last successful sync", "Last error"):
        assert header in html
    assert "Last synced at" not in html


def test_a_profiles_page_names_the_delivery_time_for_what_it_is(
    admin_client: Client, failing: SyncState
) -> None:
    SyncState.objects.filter(pk=failing.pk).update(last_synced_at=timezone.now())
    page = admin_client.get(
        reverse("admin:django_suprsend_syncstate_change", args=[failing.pk])
    ).content.decode()
    assert "Last delivered to the hub:" in page
    assert "Last synced at" not in page
    assert "Failed attempts:" in page


def test_summary_counts_statuses_backlog_and_recent_failures(admin_client: Client) -> None:
    make_state(distinct_id="a", status=SyncStatus.FAILED)
    make_state(
        distinct_id="b", status=SyncStatus.FAILED, updated_at=timezone.now() - timedelta(days=2)
    )
    make_state(distinct_id="c", status=SyncStatus.SYNCED)
    OutboxEntry.objects.create(distinct_id="a", created_at=timezone.now() - timedelta(hours=3))
    OutboxEntry.objects.create(distinct_id="b")
    OutboxEntry.objects.create(distinct_id="c", status="sent")
    summary = admin_client.get(STATES).context["suprsend_summary"]
    counts = dict(zip(SyncStatus.values, [count for _, count in summary["statuses"]], strict=True))
    assert counts == {"synced": 1, "pending": 0, "retrying": 0, "failed": 2}
    assert summary["failed_24h"] == 1
    assert summary["pending_entries"] == 2
    assert summary["oldest_pending_age"].startswith("3")
    html = admin_client.get(STATES).content.decode()
    assert 'id="suprsend-summary"' in html
    assert "Pending outbox entries" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "failed"}, ["bad"]),
        ({"error_code": "429"}, ["slow"]),
        ({"q": "good"}, ["good"]),
        ({"q": "quota"}, ["slow"]),
        ({"last_synced_at__isnull": "True"}, ["bad", "slow"]),
        ({"last_synced_at__year": "2020"}, ["good"]),
    ],
)
def test_filters_search_and_date_hierarchy(
    admin_client: Client, query: dict[str, str], expected: list[str]
) -> None:
    make_state(distinct_id="good", last_synced_at=timezone.now().replace(year=2020))
    make_state(
        distinct_id="bad", status=SyncStatus.FAILED, last_error="bad email", last_error_code=400
    )
    make_state(
        distinct_id="slow", status=SyncStatus.RETRYING, last_error="quota", last_error_code=429
    )
    rows = shown(admin_client.get(STATES, query))
    assert sorted(state.distinct_id for state in rows) == expected


def test_error_code_filter_names_local_refusals_apart_from_hub_statuses(
    admin_client: Client,
) -> None:
    make_state(distinct_id="local", last_error_code=REFUSED_LOCALLY)
    make_state(distinct_id="silent", last_error_code=NO_ANSWER)
    make_state(distinct_id="hub", last_error_code=500)
    response = admin_client.get(STATES)
    spec = next(s for s in response.context["cl"].filter_specs if s.title == "error code")
    assert spec.lookup_choices == [
        ("0", "refused before sending (0)"),
        ("1", "no answer from the hub (1)"),
        ("500", "500"),
    ]
    assert [s.distinct_id for s in shown(admin_client.get(STATES, {"error_code": "0"}))] == [
        "local"
    ]


def test_error_code_filter_offers_the_codes_present(admin_client: Client) -> None:
    make_state(distinct_id="a", last_error_code=400)
    make_state(distinct_id="b", last_error_code=429)
    make_state(distinct_id="c", last_error_code=400)
    response = admin_client.get(STATES)
    spec = next(s for s in response.context["cl"].filter_specs if s.title == "error code")
    assert spec.lookup_choices == [("400", "400"), ("429", "429")]


def test_list_takes_the_same_queries_for_10_and_100_rows(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    def count_queries(rows: int) -> int:
        SyncState.objects.all().delete()
        with paused():
            users = User.objects.bulk_create(User(username=f"q{rows}-{i}") for i in range(rows))
        now = timezone.now()
        SyncState.objects.bulk_create(
            SyncState(
                distinct_id=str(u.pk),
                content_type=ContentType.objects.get_for_model(User),
                object_id=str(u.pk),
                status=SyncStatus.FAILED,
                last_error="error",
                last_error_code=500,
                last_synced_at=now,
            )
            for u in users
        )
        with django_assert_max_num_queries(12), CaptureQueriesContext(connection) as queries:
            assert len(shown(admin_client.get(STATES, {"o": "1"}))) == rows
        return len(queries)

    admin_client.get(STATES)  # caches (content types) warmed
    assert count_queries(10) == count_queries(100)


def test_full_result_count_is_not_computed() -> None:
    from django_suprsend.admin import SyncStateAdmin

    assert SyncStateAdmin.show_full_result_count is False


# -- read-only -----------------------------------------------------------------------


def test_sync_states_cannot_be_added_or_changed(admin_client: Client, failing: SyncState) -> None:
    change = reverse("admin:django_suprsend_syncstate_change", args=[failing.pk])
    assert admin_client.get(reverse("admin:django_suprsend_syncstate_add")).status_code == 403
    assert admin_client.post(change, {"status": "synced", "attempts": 0}).status_code == 403
    failing.refresh_from_db()
    assert failing.status == SyncStatus.FAILED
    page = admin_client.get(change).content.decode()
    assert 'name="_save"' not in page
    assert "Delete" in page  # superusers may delete


def test_staff_cannot_delete_sync_states(client: Client, staff: User, failing: SyncState) -> None:
    grant(staff, "delete_syncstate")
    delete = reverse("admin:django_suprsend_syncstate_delete", args=[failing.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert SyncState.objects.filter(pk=failing.pk).exists()


# -- the detail page -------------------------------------------------------------------


def test_detail_shows_failed_record_pending_operations_and_history(
    admin_client: Client, failing: SyncState
) -> None:
    html = admin_client.get(
        reverse("admin:django_suprsend_syncstate_change", args=[failing.pk])
    ).content.decode()
    assert "<pre>{\n  &quot;code&quot;: 400," in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    pending = html.split("Pending operations")[1].split("Recent outbox history")[0]
    assert "pending@example.com" in pending
    assert "failed@example.com" not in pending
    history = html.split("Recent outbox history")[1]
    assert history.count("<tr>") == 4  # the header and three entries
    assert "invalid email &lt;b&gt;x&lt;/b&gt;" in history


def test_history_keeps_the_latest_20_entries(admin_client: Client) -> None:
    state = make_state(distinct_id="busy")
    OutboxEntry.objects.bulk_create(
        OutboxEntry(distinct_id="busy", status="sent", last_error=f"e{i:02}") for i in range(25)
    )
    html = admin_client.get(
        reverse("admin:django_suprsend_syncstate_change", args=[state.pk])
    ).content.decode()
    history = html.split("Recent outbox history")[1]
    assert history.count("<tr>") == 21
    assert "e24" in history
    assert "e05" in history
    assert "e04" not in history


# -- actions on sync states -----------------------------------------------------------------


def test_resync_queues_the_full_push_of_each_profile(admin_client: Client) -> None:
    users = [quiet_user(email=f"u{i}@example.com") for i in range(3)]
    states = [make_state(user) for user in users]
    gone = quiet_user()
    states.append(make_state(gone))
    gone.delete()
    clear()
    response = run_action(admin_client, STATES, "resync_profiles", states)
    assert response.status_code == 302
    assert sorted(d for _, d, _, _ in entries()) == sorted(str(u.pk) for u in users)
    assert entries()[0][2] == users[0].build_suprsend_profile()[0]
    notes = [str(m) for m in response.wsgi_request._messages]
    assert notes == [
        "3 profiles queued for a resync.",
        "1 profile skipped: its object no longer exists.",
    ]


def test_unset_channels_asks_for_the_channels_first(admin_client: Client) -> None:
    user = quiet_user()
    states = [make_state(user), make_state(distinct_id="orphan")]
    response = run_action(admin_client, STATES, "unset_profile_channels", states)
    assert response.status_code == 200
    html = response.content.decode()
    assert "2 SuprSend profiles" in html
    for channel in ("$email", "$sms", "$whatsapp", "$androidpush", "$iospush", "$slack"):
        assert f'name="channels" value="{channel}"' in html
    for state in states:
        assert f'name="{ACTION_CHECKBOX_NAME}" value="{state.pk}"' in html
    assert 'name="post" value="yes"' in html
    assert "csrfmiddlewaretoken" in html
    assert OutboxEntry.objects.count() == 0

    response = run_action(
        admin_client,
        STATES,
        "unset_profile_channels",
        states,
        post="yes",
        channels=["$email", "$sms"],
    )
    assert response.status_code == 302
    rows = OutboxEntry.objects.order_by("distinct_id")
    assert {(e.distinct_id, e.content_type_id) for e in rows} == {
        ("orphan", None),
        (str(user.pk), ContentType.objects.get_for_model(User).pk),
    }
    assert {e.operations == [{"$unset": ["$email", "$sms"]}] for e in rows} == {True}


def test_unset_channels_without_a_channel_queues_nothing(admin_client: Client) -> None:
    states = [make_state(quiet_user())]
    response = run_action(admin_client, STATES, "unset_profile_channels", states, post="yes")
    assert response.status_code == 200
    assert "Choose at least one channel." in response.content.decode()
    assert OutboxEntry.objects.count() == 0


def test_get_with_action_parameters_does_nothing(admin_client: Client) -> None:
    state = make_state(quiet_user())
    data = {
        "action": "unset_profile_channels",
        ACTION_CHECKBOX_NAME: [state.pk],
        "post": "yes",
        "channels": ["$email"],
    }
    admin_client.get(STATES, data)
    assert OutboxEntry.objects.count() == 0


def test_actions_need_the_csrf_token(admin_user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    state = make_state(quiet_user())
    response = run_action(client, STATES, "resync_profiles", [state])
    assert response.status_code == 403
    assert OutboxEntry.objects.count() == 0


def test_retry_failed_queues_a_fresh_full_push_of_failed_profiles(
    admin_client: Client, failing: SyncState
) -> None:
    synced = make_state(quiet_user(email="fine@example.com"))
    response = run_action(admin_client, STATES, "retry_failed", [failing, synced])
    assert [str(m) for m in response.wsgi_request._messages] == [
        "1 failed profile queued for a retry."
    ]
    failing.refresh_from_db()
    synced.refresh_from_db()
    assert (failing.status, synced.status) == (SyncStatus.PENDING, SyncStatus.SYNCED)
    # The old failed entry stays failed: a newer change may have reached the hub since.
    assert OutboxEntry.objects.filter(status="failed").count() == 1
    fresh = OutboxEntry.objects.filter(distinct_id=failing.distinct_id).latest("id")
    assert fresh.status == "pending"
    assert {"$append": {"$email": "fail@example.com"}} in fresh.operations
    assert not OutboxEntry.objects.filter(distinct_id=synced.distinct_id).exists()


# -- permissions -----------------------------------------------------------------------


def offered(client: Client, url: str) -> set[str]:
    form = client.get(url).context["action_form"]
    return {name for name, _ in form.fields["action"].choices} - {""} if form else set()


def test_actions_need_their_permissions(client: Client, staff: User, failing: SyncState) -> None:
    assert offered(client, STATES) == set()
    assert offered(client, USERS) == set()
    for action in ("resync_profiles", "retry_failed"):
        run_action(client, STATES, action, [failing])
    run_action(client, STATES, "unset_profile_channels", [failing], post="yes", channels=["$email"])
    failing.refresh_from_db()
    assert failing.status == SyncStatus.FAILED
    assert OutboxEntry.objects.filter(status="pending").count() == 1  # the fixture's

    grant(staff, "resync_profile")
    assert offered(client, STATES) == {"resync_profiles", "retry_failed"}
    grant(staff, "unset_channels")
    assert offered(client, USERS) == {
        "resync_profiles",
        "retry_failed",
        "unset_profile_channels",
    }


def test_changelist_refused_without_view_permission(client: Client) -> None:
    user = quiet_user(is_staff=True)
    grant(user, "resync_profile")
    client.force_login(user)
    assert client.get(STATES).status_code == 403


# -- the user admin mixin ---------------------------------------------------------------------


def test_user_list_has_a_suprsend_column_and_filter(admin_client: Client, admin_user: User) -> None:
    synced, failed, never = quiet_user(), quiet_user(), quiet_user()
    make_state(synced)
    make_state(failed, status=SyncStatus.FAILED)
    response = admin_client.get(USERS)
    # Second, after the link: a list wider than the screen hides its last columns.
    assert response.context["cl"].list_display[1:3] == ["username", "suprsend_status"]
    assert {u.pk: u.suprsend_status for u in shown(response)} == {
        synced.pk: "synced",
        failed.pk: "failed",
        never.pk: None,
        admin_user.pk: None,
    }
    assert "never synced" in response.content.decode()
    assert [u.pk for u in shown(admin_client.get(USERS, {"suprsend": "failed"}))] == [failed.pk]
    assert {u.pk for u in shown(admin_client.get(USERS, {"suprsend": "none"}))} == {
        never.pk,
        admin_user.pk,
    }


def test_user_list_takes_the_same_queries_for_10_and_100_rows(admin_client: Client) -> None:
    def count_queries(rows: int) -> int:
        with paused():
            users = User.objects.bulk_create(User(username=f"l{rows}-{i}") for i in range(rows))
        SyncState.objects.bulk_create(SyncState(distinct_id=str(u.pk)) for u in users)
        with CaptureQueriesContext(connection) as queries:
            shown(admin_client.get(USERS, {"username__startswith": f"l{rows}-"}))
        return len(queries)

    admin_client.get(USERS)
    assert count_queries(10) == count_queries(100)


def test_user_admin_actions(admin_client: Client) -> None:
    users = [quiet_user(), quiet_user(is_active=False)]
    response = run_action(admin_client, USERS, "resync_profiles", users)
    assert [str(m) for m in response.wsgi_request._messages] == ["1 profile queued for a resync."]
    assert [d for _, d, _, _ in entries()] == [str(users[0].pk)]
    clear()

    run_action(admin_client, USERS, "unset_profile_channels", users, post="yes", channels=["$sms"])
    assert sorted((d, ops) for _, d, ops, _ in entries()) == sorted(
        (str(u.pk), [{"$unset": ["$sms"]}]) for u in users
    )
    clear()

    state = make_state(users[0], status=SyncStatus.FAILED)
    OutboxEntry.objects.create(distinct_id=str(users[0].pk), status="failed", attempts=5)
    run_action(admin_client, USERS, "retry_failed", users)
    state.refresh_from_db()
    assert state.status == SyncStatus.PENDING
    pending = OutboxEntry.objects.filter(status="pending")
    assert list(pending.values_list("distinct_id", flat=True)) == [str(users[0].pk)]


# -- scale --------------------------------------------------------------------------------


def test_resync_of_10000_users_is_queued(admin_client: Client) -> None:
    with paused():
        User.objects.bulk_create(
            User(username=f"bulk{i}", email=f"b{i}@example.com") for i in range(10_000)
        )
    response = admin_client.post(
        f"{USERS}?username__startswith=bulk",
        {"action": "resync_profiles", "select_across": "1", ACTION_CHECKBOX_NAME: ["0"]},
    )
    assert response.status_code == 302
    assert OutboxEntry.objects.count() == 10_000
    assert [str(m) for m in response.wsgi_request._messages] == [
        "10000 profiles queued for a resync."
    ]


def test_resync_of_10000_sync_states_is_queued(admin_client: Client) -> None:
    with paused():
        users = User.objects.bulk_create(User(username=f"s{i}") for i in range(10_000))
    content_type = ContentType.objects.get_for_model(User)
    SyncState.objects.bulk_create(
        SyncState(distinct_id=str(u.pk), content_type=content_type, object_id=str(u.pk))
        for u in users
    )
    response = admin_client.post(
        STATES, {"action": "resync_profiles", "select_across": "1", ACTION_CHECKBOX_NAME: ["0"]}
    )
    assert response.status_code == 302
    assert OutboxEntry.objects.count() == 10_000


# -- safety ------------------------------------------------------------------------------


def test_no_page_shows_the_credentials(admin_client: Client, failing: SyncState) -> None:
    secret, api_key = "S3CRET-do-not-show-4711", "APIKEY-do-not-show-0815"
    with override_suprsend(WORKSPACE_SECRET=secret, API_KEY=api_key):
        pages = [
            admin_client.get(STATES),
            admin_client.get(reverse("admin:django_suprsend_syncstate_change", args=[failing.pk])),
            admin_client.get(USERS),
            run_action(admin_client, STATES, "unset_profile_channels", [failing]),
        ]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert secret not in html
        assert api_key not in html
        assert "ws_test_key" not in html


def test_errors_are_escaped_in_the_list(admin_client: Client, failing: SyncState) -> None:
    html = admin_client.get(STATES).content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_date_hierarchy_reads_only_the_first_and_last_date(admin_client: Client) -> None:
    make_state(distinct_id="old", last_synced_at=timezone.now().replace(year=2020))
    make_state(distinct_id="new", last_synced_at=timezone.now().replace(year=2022))
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(STATES)
    html = response.content.decode()
    # Every year between the first and the last, without SELECT DISTINCT over the table.
    for year in ("2020", "2021", "2022"):
        assert f"last_synced_at__year={year}" in html
    assert not [q for q in queries.captured_queries if "DISTINCT DATE" in q["sql"].upper()]


def test_search_finds_a_distinct_id_exactly_or_words_of_an_error(admin_client: Client) -> None:
    make_state(distinct_id="user-42")
    make_state(distinct_id="user-420", status=SyncStatus.FAILED, last_error="user-42 refused")
    make_state(distinct_id="user-421", last_error="stale text on a synced row")
    assert sorted(s.distinct_id for s in shown(admin_client.get(STATES, {"q": "user-42"}))) == [
        "user-42",
        "user-420",
    ]
    assert shown(admin_client.get(STATES, {"q": "stale"})) == []
