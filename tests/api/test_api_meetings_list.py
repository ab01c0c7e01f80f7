"""GET /api/v1/meetings/: the agency's meetings only, filters, cursor pages, query count."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from agencies.models import Role
from meetings.models import Meeting
from meetings.services import AttendeeSpec, meeting_cancel, meeting_schedule
from tests.conftest import api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

PARIS = ZoneInfo("Europe/Paris")
URL = "/api/v1/meetings/"


@pytest.fixture
def client(agency, make_api_key):
    return api_client(make_api_key(agency, scopes=["meetings:read"])[1])


def book(organizer, day: int, hour: int = 10, *, attendees=(), title="Point") -> Meeting:
    start = datetime(2027, 3, day, hour, tzinfo=PARIS)
    return meeting_schedule(
        actor=organizer,
        title=title,
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(email) for email in attendees],
    )


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def test_api_meetings_list_shows_only_the_agencys_meetings_in_start_order(
    organizer, other_agency, make_member, client
):
    later = book(organizer, 10)
    earlier = book(organizer, 5)
    book(make_member(other_agency, Role.ORGANIZER), 6)

    response = client.get(URL)

    assert ids(response) == [earlier.pk, later.pk]
    assert response.json()["next"] is None
    # Read-only key: the abilities say so.
    assert response.json()["results"][0]["abilities"] == {
        "view": True,
        "edit": False,
        "cancel": False,
        "issue_join_ticket": False,
    }


def test_api_meetings_list_filters_by_start_range(organizer, client):
    book(organizer, 5)
    inside = [book(organizer, 10), book(organizer, 11)]
    book(organizer, 12)

    response = client.get(
        URL, {"start_after": "2027-03-10T10:00:00+01:00", "start_before": "2027-03-12T00:00:00Z"}
    )

    assert ids(response) == [m.pk for m in inside]


def test_api_meetings_list_filters_by_updated_since(organizer, client, clock):
    book(organizer, 5)
    clock.shift(timedelta(hours=1))
    recent = book(organizer, 6)

    response = client.get(URL, {"updated_since": "2027-03-01T09:30:00Z"})

    assert ids(response) == [recent.pk]


def test_api_meetings_list_filters_by_organizer_attendee_and_status(
    organizer, agency, make_member, client
):
    other_organizer = make_member(agency, Role.ORGANIZER, email="olga@test.gouv.example")
    with_guest = book(organizer, 5, attendees=["Guest@Example.org"])
    cancelled = book(organizer, 6)
    meeting_cancel(actor=organizer, meeting=cancelled)
    by_other = book(other_organizer, 7, attendees=["guest@example.org"])

    assert ids(client.get(URL, {"organizer": "OLGA@test.gouv.example"})) == [by_other.pk]
    assert ids(client.get(URL, {"attendee": "guest@example.org"})) == [with_guest.pk, by_other.pk]
    # The organizer attends their own meetings.
    assert ids(client.get(URL, {"attendee": organizer.email})) == [with_guest.pk, cancelled.pk]
    assert ids(client.get(URL, {"status": "cancelled"})) == [cancelled.pk]
    assert ids(client.get(URL, {"status": "scheduled", "attendee": "guest@example.org"})) == [
        with_guest.pk,
        by_other.pk,
    ]


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"start_after": "2027-03-10T10:00:00"}, "start_after", "naive_datetime"),
        ({"updated_since": "yesterday"}, "updated_since", "invalid"),
        ({"page_size": "0"}, "page_size", "min_value"),
        ({"page_size": "201"}, "page_size", "max_value"),
        ({"status": "maybe"}, "status", "invalid_choice"),
        ({"cursor": "not-a-cursor"}, "cursor", "invalid_cursor"),
    ],
)
def test_api_meetings_list_bad_parameters_are_field_errors(params, field, code, client):
    response = client.get(URL, params)

    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]


def test_api_meetings_list_cursor_pages_walk_everything_once(organizer, client):
    # Ties on start, to check that the cursor also orders by id.
    meetings = [book(organizer, day, hour) for day in (3, 4, 5) for hour in (9, 9, 10)]
    expected = [m.pk for m in sorted(meetings, key=lambda m: (m.start, m.pk))]

    seen: list[int] = []
    pages = 0
    url, params = URL, {"page_size": "2"}
    while url:
        response = client.get(url, params)
        page = ids(response)
        assert len(page) <= 2
        seen += page
        pages += 1
        url, params = response.json()["next"], None

    assert seen == expected
    assert pages == 5


def test_api_meetings_list_next_link_keeps_the_filters(organizer, client):
    for day in (3, 4, 5):
        book(organizer, day)
    book(organizer, 20)

    first = client.get(URL, {"page_size": "2", "start_before": "2027-03-10T00:00:00Z"})
    query = parse_qs(urlsplit(first.json()["next"]).query)
    second = client.get(first.json()["next"])

    assert query["start_before"] == ["2027-03-10T00:00:00Z"] and query["page_size"] == ["2"]
    assert len(ids(first)) == 2 and len(ids(second)) == 1
    assert second.json()["next"] is None


def test_api_meetings_list_default_page_is_50(organizer, client):
    for n in range(51):
        book(organizer, 2 + n // 10, 8 + n % 10)

    response = client.get(URL)

    assert len(ids(response)) == 50
    assert response.json()["next"] is not None


# Committed data, as in production: no test transaction around the request (inside one, the
# list's PostgreSQL page runs under a savepoint; see meetings.api.meetings._encoded_page).
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("count", [3, 30])
def test_api_meetings_list_query_count_does_not_grow_with_the_page(
    count, organizer, agency, make_member, client, django_assert_num_queries
):
    co_organizer = make_member(agency, Role.ORGANIZER)
    for n in range(count):
        meeting = book(organizer, 2 + n % 25, 8 + n // 25, attendees=[f"guest{n}@example.org"])
        meeting.co_organizers.add(co_organizer)
    client.get(URL)  # reads the key and writes its last use (once a minute): not counted below

    # The page with its attendees and co-organizers, written as JSON by PostgreSQL.
    with django_assert_num_queries(1):
        response = client.get(URL, {"page_size": "200"})

    assert len(ids(response)) == count
    assert all(item["room"] is not None for item in response.json()["results"])
    assert all(item["co_organizers"] == [co_organizer.email] for item in response.json()["results"])
