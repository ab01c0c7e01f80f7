"""GET /api/v1/changes/: delta sync in commit order, full sync, 410 Gone, retention."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import signing
from django.db import connection, transaction
from django.utils import timezone

from agencies.models import Role
from meetings.changes import Cursor, changes_purge
from meetings.models import Attendee, ChangeCounter, MeetingChange
from meetings.recurrence import Recurrence
from meetings.services import (
    AttendeeSpec,
    attendee_respond,
    meeting_cancel,
    meeting_schedule,
    meeting_update,
    series_split,
)
from meetings.tasks import changes_purge_task
from tests.conftest import api_client
from visio_broker.api import PROBLEM_CONTENT_TYPE

PARIS = ZoneInfo("Europe/Paris")
URL = "/api/v1/changes/"


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER)


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER)


@pytest.fixture
def client(agency, make_api_key):
    _key, raw = make_api_key(agency, scopes=("meetings:read",))
    return api_client(raw)


def _schedule(organizer, title="Sync", *, days=3, **kwargs):
    start = (timezone.now().astimezone(PARIS) + timedelta(days=days)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    return meeting_schedule(
        actor=organizer,
        title=title,
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        **kwargs,
    )


def _get(client, cursor=None, **params):
    if cursor is not None:
        params["cursor"] = cursor
    return client.get(URL, params)


def _sync(client, cursor=None, **params):
    response = _get(client, cursor, **params)
    assert response.status_code == 200, response.content
    return response.json()


def _head(client) -> str:
    """The cursor at the end of a full sync."""
    body = _sync(client)
    while body["has_more"]:
        body = _sync(client, body["next_cursor"])
    return body["next_cursor"]


def _drain(client, cursor, **params) -> tuple[list[dict], str]:
    changes: list[dict] = []
    while True:
        body = _sync(client, cursor, **params)
        changes += body["changes"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return changes, cursor


# --- Delta sync ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_changes_create_update_response_cancel_each_appear_once_in_commit_order(
    client, organizer, colleague
):
    cursor = _head(client)
    meeting = _schedule(organizer, attendees=[AttendeeSpec(colleague.email)])
    meeting_update(actor=organizer, meeting=meeting, title="Renamed")
    attendee_respond(
        actor=colleague,
        attendee=Attendee.objects.get(meeting=meeting, user=colleague),
        partstat="accepted",
    )
    meeting_cancel(actor=organizer, meeting=meeting)

    body = _sync(client, cursor)

    assert [c["type"] for c in body["changes"]] == ["created", "updated", "updated", "cancelled"]
    assert {c["meeting_id"] for c in body["changes"]} == {meeting.pk}
    seqs = [c["seq"] for c in body["changes"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    # Each entry shows the meeting as it is now: renamed, answered, cancelled.
    latest = body["changes"][0]["meeting"]
    assert (latest["id"], latest["title"], latest["status"]) == (meeting.pk, "Renamed", "cancelled")
    assert {a["email"]: a["status"] for a in latest["attendees"]}[colleague.email] == "accepted"
    assert body["has_more"] is False
    assert _sync(client, body["next_cursor"])["changes"] == []


@pytest.mark.django_db
def test_api_changes_next_cursor_returns_only_newer_changes(client, organizer):
    cursor = _head(client)
    first = _schedule(organizer, "First")
    body = _sync(client, cursor)
    assert [c["meeting_id"] for c in body["changes"]] == [first.pk]

    second = _schedule(organizer, "Second")
    meeting_update(actor=organizer, meeting=first, title="First, renamed")
    again = _sync(client, body["next_cursor"])

    assert [(c["meeting_id"], c["type"]) for c in again["changes"]] == [
        (second.pk, "created"),
        (first.pk, "updated"),
    ]
    # The same cursor can be replayed: a client that lost an answer asks again.
    assert _sync(client, body["next_cursor"]) == again


@pytest.mark.django_db
def test_api_changes_series_split_reports_old_series_updated_then_continuation_created(
    client, organizer
):
    meeting = _schedule(organizer, recurrence=Recurrence(freq="DAILY", count=5))
    cursor = _head(client)
    continuation = series_split(
        actor=organizer, meeting=meeting, recurrence_id=meeting.start + timedelta(days=2)
    )
    body = _sync(client, cursor)
    assert [(c["meeting_id"], c["type"]) for c in body["changes"]] == [
        (meeting.pk, "updated"),
        (continuation.pk, "created"),
    ]


@pytest.mark.django_db
def test_api_changes_pages_with_has_more_in_commit_order(client, organizer):
    cursor = _head(client)
    meetings = [_schedule(organizer, f"M{n}") for n in range(5)]

    pages = []
    while True:
        body = _sync(client, cursor, page_size=2)
        pages.append(body)
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break

    assert [len(p["changes"]) for p in pages] == [2, 2, 1]
    assert [p["has_more"] for p in pages] == [True, True, False]
    listed = [c for p in pages for c in p["changes"]]
    assert [c["meeting_id"] for c in listed] == [m.pk for m in meetings]
    seqs = [c["seq"] for c in listed]
    assert seqs == list(range(seqs[0], seqs[0] + 5))


@pytest.mark.django_db
def test_api_changes_without_cursor_lists_every_meeting_then_continues_with_changes(
    client, organizer
):
    kept = [_schedule(organizer, f"M{n}") for n in range(2)]
    cancelled = meeting_cancel(actor=organizer, meeting=_schedule(organizer, "Cancelled"))

    first = _sync(client, page_size=2)
    assert first["has_more"] is True
    # Written while the full sync is under way: must come later as a change.
    meeting_update(actor=organizer, meeting=kept[0], title="Renamed during the sync")
    added = _schedule(organizer, "Added during the sync")
    second = _sync(client, first["next_cursor"], page_size=2)

    listed = first["changes"] + second["changes"]
    assert [(c["meeting_id"], c["type"], c["seq"]) for c in listed][:3] == [
        (kept[0].pk, "created", None),
        (kept[1].pk, "created", None),
        (cancelled.pk, "cancelled", None),
    ]
    # The meeting added meanwhile has a larger id: listed too, and it comes again below.
    assert [c["meeting_id"] for c in listed[3:]] == [added.pk]
    assert second["has_more"] is False
    delta, _cursor = _drain(client, second["next_cursor"])
    assert [(c["meeting_id"], c["type"]) for c in delta] == [
        (kept[0].pk, "updated"),
        (added.pk, "created"),
    ]
    assert delta[0]["meeting"]["title"] == "Renamed during the sync"


@pytest.mark.django_db
def test_api_changes_of_other_agency_never_appear(
    client, organizer, other_agency, make_member, make_api_key
):
    cursor = _head(client)
    _schedule(make_member(other_agency, Role.ORGANIZER), "Theirs")
    ours = _schedule(organizer, "Ours")

    changes, _cursor = _drain(client, cursor)
    assert [c["meeting_id"] for c in changes] == [ours.pk]
    assert [c["meeting_id"] for c in _drain(client, None)[0]] == [ours.pk]

    # Their cursor is not ours: 410, not their changes.
    _key, raw = make_api_key(other_agency, scopes=("meetings:read",))
    theirs = _head(api_client(raw))
    response = _get(client, theirs)
    assert (response.status_code, response.json()["code"]) == (410, "cursor_invalid")


@pytest.mark.django_db
def test_api_changes_needs_meetings_read_scope(agency, make_api_key):
    _key, raw = make_api_key(agency, scopes=("freebusy:read",))
    response = api_client(raw).get(URL)
    assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", ["0", "201", "many"])
def test_api_changes_page_size_out_of_bounds_is_400(client, page_size):
    response = _get(client, page_size=page_size)
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


@pytest.mark.django_db
def test_api_changes_query_count_does_not_grow_with_page_size(
    client, organizer, colleague, django_assert_num_queries
):
    def changes(count: int) -> str:
        cursor = _head(client)
        for n in range(count):
            _schedule(organizer, f"M{n}", attendees=[AttendeeSpec(colleague.email)])
        return cursor

    # The entries; the counter; the meetings with organizer and room; attendees and
    # co-organizers. (The key was read, and its last use recorded, by the full sync just before.)
    few = changes(3)
    with django_assert_num_queries(4):
        assert len(_sync(client, few, page_size=200)["changes"]) == 3
    many = changes(30)
    with django_assert_num_queries(4):
        assert len(_sync(client, many, page_size=200)["changes"]) == 30


# --- 410 Gone ---------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_cursor",
    [
        pytest.param(lambda agency, head: "not-a-cursor", id="garbage"),
        pytest.param(lambda agency, head: "é" * 10, id="not-ascii"),
        pytest.param(lambda agency, head: _b64(f"v1:{agency.pk}:0"), id="unsigned"),
        pytest.param(
            lambda agency, head: _b64(base64.urlsafe_b64decode(head + "==").decode()[:-1] + "x"),
            id="tampered-signature",
        ),
        pytest.param(
            lambda agency, head: _b64(
                signing.Signer(salt="meetings.changes.cursor").sign(f"v1:{agency.pk}:0")[:-1]
            ),
            id="truncated",
        ),
        pytest.param(
            lambda agency, head: _b64(signing.Signer(salt="other").sign(f"v1:{agency.pk}:0")),
            id="other-salt",
        ),
        pytest.param(
            lambda agency, head: _b64(
                signing.Signer(salt="meetings.changes.cursor").sign(f"v2:{agency.pk}:0")
            ),
            id="unknown-version",
        ),
        pytest.param(lambda agency, head: Cursor(agency.pk, 10_000).encode(), id="unknown-seq"),
        pytest.param(lambda agency, head: "A" * 400, id="too-long"),
    ],
)
def test_api_changes_invalid_cursor_is_410_problem(client, agency, organizer, make_cursor):
    _schedule(organizer)
    head = _head(client)
    response = _get(client, make_cursor(agency, head))
    assert response.status_code == 410
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["code"] == "cursor_invalid"


@pytest.mark.django_db
def test_api_changes_cursor_older_than_retention_is_410_expired(client, organizer, settings):
    settings.CHANGES_RETENTION_DAYS = 30
    start = _head(client)
    _schedule(organizer, "Old")
    after_old = _drain(client, start)[1]
    _schedule(organizer, "Also old")
    at_head = _drain(client, after_old)[1]

    changes_purge(now=timezone.now() + timedelta(days=31))

    for cursor in (start, after_old):
        response = _get(client, cursor)
        assert response.status_code == 410
        assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
        assert response.json()["code"] == "cursor_expired"
    # Up to date: nothing it needs was purged.
    assert _sync(client, at_head)["changes"] == []
    # The way back: a full sync.
    assert len(_drain(client, None)[0]) == 2


@pytest.mark.django_db
def test_changes_purge_task_deletes_only_entries_older_than_retention(
    agency, organizer, other_agency, make_member, settings
):
    settings.CHANGES_RETENTION_DAYS = 30
    old = [_schedule(organizer, f"Old {n}") for n in range(2)]
    recent = _schedule(organizer, "Recent")
    theirs = _schedule(make_member(other_agency, Role.ORGANIZER), "Theirs, old")
    MeetingChange.objects.filter(meeting_id__in=[m.pk for m in [*old, theirs]]).update(
        changed_at=timezone.now() - timedelta(days=31)
    )

    assert changes_purge_task() == 3

    assert list(MeetingChange.objects.values_list("meeting_id", flat=True)) == [recent.pk]
    counters = dict(ChangeCounter.objects.values_list("agency_id", "purged_through"))
    assert counters == {agency.pk: 2, other_agency.pk: 1}
    assert changes_purge_task() == 0


# --- Concurrent writers -----------------------------------------------------------------------

WRITERS = 4
MEETINGS_PER_WRITER = 3
UPDATES_PER_MEETING = 6


@pytest.mark.django_db(transaction=True)
def test_api_changes_skip_no_change_while_several_threads_write(
    agency, make_member, make_api_key, settings
):
    """Writers commit in an order unrelated to the order they started in, while the client
    syncs page after page: in the end it has seen every committed write, in commit order, and
    each meeting's final state."""
    assert connection.vendor == "postgresql"
    settings.API_RATE_LIMIT = "100000/m"
    _key, raw = make_api_key(agency, scopes=("meetings:read",))
    client = api_client(raw)
    organizer = make_member(agency, Role.ORGANIZER)
    guests = [make_member(agency, Role.MEMBER) for _n in range(WRITERS)]
    cursor = _head(client)

    writes: Counter[int] = Counter()  # committed writes per meeting
    final: dict[int, tuple[str, str]] = {}  # meeting → (title, status) last committed
    errors: list[str] = []
    lock = threading.Lock()

    def committed(meeting_id: int, title: str, status: str) -> None:
        with lock:
            writes[meeting_id] += 1
            final[meeting_id] = (title, status)

    def write(work):
        # The service inside a longer transaction (as an API view or a batch would run it):
        # its change is numbered early, the commit comes a random while later.
        with transaction.atomic():
            result = work()
            time.sleep(random.uniform(0, 0.02))  # noqa: S311
        return result

    def writer(number: int) -> None:
        guest = guests[number]
        try:
            for m in range(MEETINGS_PER_WRITER):
                title = f"w{number}-m{m}"
                meeting = write(
                    lambda title=title, days=3 + m: _schedule(
                        organizer, title, days=days, attendees=[AttendeeSpec(guest.email)]
                    )
                )
                committed(meeting.pk, title, "scheduled")
                for u in range(UPDATES_PER_MEETING):
                    title = f"w{number}-m{m}-v{u}"
                    write(
                        lambda title=title, meeting=meeting: meeting_update(
                            actor=organizer, meeting=meeting, title=title
                        )
                    )
                    committed(meeting.pk, title, "scheduled")
                attendee = Attendee.objects.get(meeting=meeting, user=guest)
                write(
                    lambda a=attendee: attendee_respond(
                        actor=guest, attendee=a, partstat="accepted"
                    )
                )
                committed(meeting.pk, title, "scheduled")
                if m == 0:
                    write(lambda meeting=meeting: meeting_cancel(actor=organizer, meeting=meeting))
                    committed(meeting.pk, title, "cancelled")
        except Exception as exc:  # every error fails the test below
            with lock:
                errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    seen: list[dict] = []
    syncs = 0
    deadline = time.monotonic() + 120
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        body = _sync(client, cursor, page_size=3)
        seen += body["changes"]
        cursor = body["next_cursor"]
        syncs += 1
    for thread in threads:
        thread.join(timeout=10)
    changes, _cursor = _drain(client, cursor, page_size=3)
    seen += changes

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert syncs > 10  # the client really synced while the writers wrote
    assert len(writes) == WRITERS * MEETINGS_PER_WRITER
    # Every committed write came exactly once, numbered without gaps in commit order.
    assert Counter(c["meeting_id"] for c in seen) == writes
    seqs = [c["seq"] for c in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    per_meeting: dict[int, list[dict]] = defaultdict(list)
    for change in seen:
        per_meeting[change["meeting_id"]].append(change)
    for meeting_id, entries in per_meeting.items():
        assert entries[0]["type"] == "created"
        last = entries[-1]["meeting"]
        assert (last["title"], last["status"]) == final[meeting_id]
