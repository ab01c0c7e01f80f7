"""The agenda: a list by day and a week view of the user's occurrences, in their time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agencies.models import Role
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, attendee_respond, meeting_schedule, occurrence_cancel
from tests.conftest import signed_in_client

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # Monday 2 March 2026, 09:00 in Paris


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orga@test.gouv.example")


@pytest.fixture
def paris_user(agency, make_member):
    return make_member(agency, Role.MEMBER, email="paris@test.gouv.example")


@pytest.fixture
def helsinki_user(other_agency, make_member):
    return make_member(
        other_agency, Role.MEMBER, email="helsinki@test.bund.example", timezone="Europe/Helsinki"
    )


def book(organizer, *, day: int = 3, hour: int = 10, title: str = "Budget review", **kwargs):
    start = datetime(2026, 3, day, hour, 0, tzinfo=PARIS)
    return meeting_schedule(
        actor=organizer,
        title=title,
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        **kwargs,
    )


def test_agenda_sends_anonymous_to_sign_in(db):
    for name in ("agenda", "agenda_week"):
        response = Client().get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


def test_agenda_lists_each_occurrence_by_day_with_badges(organizer, paris_user):
    series = book(
        organizer,
        title="Weekly sync",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=3),
        attendees=[AttendeeSpec(paris_user.email)],
    )
    book(organizer, day=4, title="One-off", attendees=[AttendeeSpec(paris_user.email)])
    book(organizer, day=5, title="Not invited")
    occurrence_cancel(
        actor=organizer, meeting=series, recurrence_id=datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    )
    attendee_respond(
        actor=paris_user,
        attendee=series.attendees.get(user=paris_user),
        partstat="tentative",
    )

    response = signed_in_client(paris_user).get(reverse("agenda"))
    assert response.status_code == 200
    days = response.context["days"]
    assert [d.day.isoformat() for d in days] == [
        "2026-03-03",
        "2026-03-04",
        "2026-03-10",
        "2026-03-17",
    ]
    entries = [(e.meeting.title, e.occurrence.cancelled, e.answer) for d in days for e in d.entries]
    assert entries == [
        ("Weekly sync", False, "tentative"),
        ("One-off", False, "needs-action"),
        ("Weekly sync", True, "tentative"),
        ("Weekly sync", False, "tentative"),
    ]
    content = response.content.decode()
    assert "Tuesday 3 March 2026" in content
    assert "Cancelled" in content and "Recurring" in content
    assert "Tentative" in content and "Not answered" in content
    assert "Not invited" not in content
    # Each occurrence of a series links to its own page.
    assert reverse("occurrence_detail", args=[series.pk, "20260310T090000Z"]) in content


def test_agenda_earlier_and_later(organizer, paris_user):
    book(organizer, day=31, title="End of March", attendees=[AttendeeSpec(paris_user.email)])
    client = signed_in_client(paris_user)
    first = client.get(reverse("agenda"))
    assert "End of March" not in first.content.decode()  # beyond the first four weeks
    assert first.context["later"].isoformat() == "2026-03-30"
    later = client.get(reverse("agenda"), {"start": "2026-03-30"})
    assert "End of March" in later.content.decode()
    assert later.context["earlier"].isoformat() == "2026-03-02"


def test_agenda_with_a_bad_date_is_400(paris_user):
    response = signed_in_client(paris_user).get(reverse("agenda"), {"start": "tomorrow"})
    assert response.status_code == 400
    assert "Choose a valid date." in response.content.decode()
    bad_week = signed_in_client(paris_user).get(reverse("agenda_week"), {"date": "2026-02-30"})
    assert bad_week.status_code == 400


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("name", ["agenda", "agenda_week"])
def test_agenda_query_count_does_not_grow_with_meetings(
    organizer, paris_user, agency, make_member, name
):
    guests = [make_member(agency, Role.MEMBER) for _ in range(3)]

    def book_many(count: int, offset: int) -> None:
        for i in range(offset, offset + count):
            book(
                organizer,
                day=3 + i % 4,
                hour=8 + i % 9,
                title=f"Meeting {i}",
                recurrence=Recurrence(freq="DAILY", count=5) if i % 3 == 0 else None,
                attendees=[
                    AttendeeSpec(paris_user.email),
                    *(AttendeeSpec(g.email) for g in guests),
                ],
                co_organizers=[],
            )

    client = signed_in_client(paris_user)
    url = reverse(name)
    client.get(url)  # the first request of a session also records the session
    book_many(3, 0)
    few = _queries(client, url)
    book_many(27, 3)
    many = _queries(client, url)
    assert len(client.get(url).context["days"]) > 0
    assert few == many


def test_week_view_shows_times_in_each_users_zone(organizer, paris_user, helsinki_user):
    book(
        organizer,
        title="Franco-Finnish call",
        attendees=[AttendeeSpec(paris_user.email), AttendeeSpec(helsinki_user.email)],
    )
    paris = signed_in_client(paris_user).get(reverse("agenda_week"), {"date": "2026-03-04"})
    helsinki = signed_in_client(helsinki_user).get(reverse("agenda_week"), {"date": "2026-03-04"})

    for response in (paris, helsinki):
        assert response.status_code == 200
        assert response.context["monday"].isoformat() == "2026-03-02"
        tuesday = response.context["days"][1]
        assert [e.meeting.title for e in tuesday.entries] == ["Franco-Finnish call"]

    paris_entry = paris.context["days"][1].entries[0]
    helsinki_entry = helsinki.context["days"][1].entries[0]
    assert paris_entry.other_zone is None
    assert helsinki_entry.other_zone == "Europe/Paris"
    # Positioned from the top of the grid (08:00): 10:00 in Paris, 11:00 in Helsinki.
    assert paris_entry.offset == 120
    assert helsinki_entry.offset == 180
    assert paris_entry.length == helsinki_entry.length == 60
    paris_html, helsinki_html = paris.content.decode(), helsinki.content.decode()
    assert ">10:00</time>–<time" in paris_html
    assert ">11:00</time>–<time" in helsinki_html
    assert "(10:00–11:00 Europe/Paris)" in helsinki_html
    assert "Europe/Paris)" not in paris_html.split('class="week"')[1]


def test_week_view_sets_overlapping_meetings_side_by_side(organizer, paris_user):
    # Two at 10:00 share the hour; the 11:00 and 14:00 ones overlap nothing.
    for hour in (10, 10, 11, 14):
        book(organizer, hour=hour, attendees=[AttendeeSpec(paris_user.email)])
    response = signed_in_client(paris_user).get(reverse("agenda_week"))
    entries = response.context["days"][1].entries
    assert [(e.lane, e.lanes) for e in entries] == [(0, 2), (1, 2), (0, 1), (0, 1)]


def test_week_view_widens_its_hours_for_early_meetings(organizer, paris_user):
    book(organizer, hour=6, attendees=[AttendeeSpec(paris_user.email)])
    response = signed_in_client(paris_user).get(reverse("agenda_week"))
    assert response.context["hours"][0].hour == 6
    assert response.context["days"][1].entries[0].offset == 0
