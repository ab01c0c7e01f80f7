"""What a feed holds: the owner's own meetings in the window, declined and cancelled rules,
the agency feed's titles only; never a meeting its owner may not see."""

from __future__ import annotations

from datetime import datetime, timedelta

import icalendar
import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agencies.models import Role
from meetings import feeds
from meetings.models import Attendee, FeedToken
from meetings.recurrence import Recurrence
from meetings.selectors import meetings_of, meetings_visible_to
from meetings.services import (
    AttendeeSpec,
    agency_calendar_publish,
    agency_calendar_unpublish,
    attendee_respond,
    feed_token_create,
    feed_token_update,
    meeting_cancel,
    meeting_schedule,
)
from tests.meetings.feeds_support import NOW, PARIS, book, feed_path, fetch, summaries

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    feeds.clear_local_caches()
    yield
    feeds.clear_local_caches()


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="olga@test.gouv.example", display_name="Olga")


@pytest.fixture
def owner(agency, make_member):
    """The feed's owner: an agency admin, who may *see* every meeting of the agency."""
    return make_member(agency, Role.ADMIN, email="ana@test.gouv.example", display_name="Ana")


@pytest.fixture
def foreign_organizer(other_agency, make_member):
    return make_member(other_agency, Role.ORGANIZER, email="otto@test.bund.example")


def _feed_of(user) -> FeedToken:
    return feed_token_create(actor=user)


def _attendee(meeting, user) -> Attendee:
    return meeting.attendees.get(user=user)


def test_personal_feed_holds_what_the_owner_organizes_co_organizes_and_attends(
    owner, organizer, foreign_organizer
):
    book(owner, "Own meeting")
    book(organizer, "Co-organized", co_organizers=[owner])
    book(organizer, "Invited", attendees=(owner.email,))
    book(foreign_organizer, "Invited abroad", attendees=(owner.email,))
    colleague_only = book(organizer, "Colleague's meeting")
    book(foreign_organizer, "Other agency's meeting")
    # The admin may see the colleague's meeting on its page, but it is not in their calendar.
    assert meetings_visible_to(user=owner).filter(pk=colleague_only.pk).exists()

    body = fetch(_feed_of(owner)).content
    assert set(summaries(body)) == {"Own meeting", "Co-organized", "Invited", "Invited abroad"}


def test_feed_never_shows_a_meeting_its_owner_may_not_see(owner, organizer, foreign_organizer):
    meetings = [
        book(owner, "Mine"),
        book(organizer, "Theirs"),
        book(organizer, "Shared", attendees=(owner.email,)),
        book(foreign_organizer, "Foreign", attendees=("someone@example.org",)),
    ]
    body = fetch(_feed_of(owner)).content
    parsed = icalendar.Calendar.from_ical(body)
    uids = {str(event["UID"]) for event in parsed.walk("VEVENT")}
    visible = {m.uid for m in meetings if m.get_abilities(owner)["view"]}
    assert uids and uids <= visible
    assert "Foreign" not in summaries(body)


def test_declined_meetings_are_left_out_unless_the_option_says_otherwise(owner, organizer):
    meeting = book(organizer, "Declined one", attendees=(owner.email,))
    book(organizer, "Accepted one", attendees=(owner.email,))
    attendee_respond(actor=owner, attendee=_attendee(meeting, owner), partstat="declined")
    feed = _feed_of(owner)
    assert set(summaries(fetch(feed).content)) == {"Accepted one"}
    feed_token_update(actor=owner, feed=feed, include_declined=True)
    body = fetch(feed).content
    assert set(summaries(body)) == {"Accepted one", "Declined one"}
    declined = next(
        event
        for event in icalendar.Calendar.from_ical(body).walk("VEVENT")
        if str(event["SUMMARY"]) == "Declined one"
    )
    answers = {str(a): a.params["PARTSTAT"] for a in declined["ATTENDEE"]}
    assert answers[f"mailto:{owner.email}"] == "DECLINED"


def test_cancelled_meeting_stays_cancelled_for_the_grace_period_then_goes(owner, organizer, clock):
    meeting = book(
        organizer,
        "Far meeting",
        attendees=(owner.email,),
        start=datetime(2026, 6, 2, 10, 0, tzinfo=PARIS),
    )
    feed = _feed_of(owner)
    clock.shift(timedelta(hours=1))
    meeting_cancel(actor=organizer, meeting=meeting)
    cancelled = fetch(feed)
    assert summaries(cancelled.content) == {"Far meeting": "CANCELLED"}
    assert b"BEGIN:VALARM" not in cancelled.content
    clock.shift(timedelta(days=29, hours=23))
    assert summaries(fetch(feed).content) == {"Far meeting": "CANCELLED"}
    clock.shift(timedelta(hours=2))
    gone = fetch(feed)
    assert summaries(gone.content) == {}
    assert gone["ETag"] != cancelled["ETag"]
    assert gone["Last-Modified"] != cancelled["Last-Modified"]


def test_window_is_90_days_back_to_18_months_ahead(owner, clock):
    clock.move_to(NOW - timedelta(days=100))
    book(owner, "Long ago", start=datetime(2025, 11, 24, 10, 0, tzinfo=PARIS))  # NOW - 98 days
    book(owner, "Two months ago", start=datetime(2026, 1, 5, 10, 0, tzinfo=PARIS))
    clock.move_to(NOW)
    book(owner, "Next year", start=datetime(2027, 6, 1, 10, 0, tzinfo=PARIS))
    book(owner, "Too far", start=datetime(2027, 9, 7, 10, 0, tzinfo=PARIS))  # NOW + 554 days
    assert set(summaries(fetch(_feed_of(owner)).content)) == {"Two months ago", "Next year"}


def test_recurring_meeting_is_one_master_not_expanded(owner):
    meeting_schedule(
        actor=owner,
        title="Weekly",
        start=datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
        timezone="Europe/Paris",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",)),
    )
    body = fetch(_feed_of(owner)).content
    parsed = icalendar.Calendar.from_ical(body)
    (event,) = parsed.walk("VEVENT")
    assert event["RRULE"]["FREQ"] == ["WEEKLY"]
    assert [tz["TZID"] for tz in parsed.walk("VTIMEZONE")] == ["Europe/Paris"]


def test_personal_feed_carries_details_and_the_owners_reminder(owner, organizer):
    owner.reminder_minutes = [60]
    owner.save(update_fields=["reminder_minutes"])
    book(organizer, "Detailed", attendees=(owner.email,), description="Agenda: budget")
    body = fetch(_feed_of(owner)).content
    assert b"ORGANIZER;CN=Olga:mailto:olga@test.gouv.example" in body
    assert b"ATTENDEE" in body and b"Agenda: budget" in body
    assert b"TRIGGER:-PT60M\r\n" in body
    assert b"X-WR-CALNAME:Ana \xc2\xb7 Visio Broker" in body


def test_personal_feed_name_follows_the_owners_language(owner):
    owner.language = "fr"
    owner.save(update_fields=["language"])
    book(owner, "Réunion")
    body = fetch(_feed_of(owner)).content
    assert b"X-WR-CALNAME:Ana \xc2\xb7 Visio Broker" in body


# --- Agency feed ------------------------------------------------------------------------------


@pytest.fixture
def agency_feed(agency, owner):
    return agency_calendar_publish(actor=owner, agency=agency)


def test_agency_feed_shows_only_listed_scheduled_meetings_titles_only(
    agency_feed, organizer, foreign_organizer
):
    book(
        organizer,
        "Open day",
        listed_publicly=True,
        description="Secret agenda",
        attendees=("guest@example.org",),
    )
    book(organizer, "Internal", attendees=("guest@example.org",))
    cancelled = book(organizer, "Cancelled open day", listed_publicly=True)
    meeting_cancel(actor=organizer, meeting=cancelled)
    book(foreign_organizer, "Other agency's open day", listed_publicly=True)

    response = fetch(agency_feed)
    assert response.status_code == 200
    body = response.content
    assert summaries(body) == {"Open day": "CONFIRMED"}
    for secret in (b"ORGANIZER", b"ATTENDEE", b"guest@example.org", b"Secret agenda", b"VALARM"):
        assert secret not in body
    assert b"X-WR-CALNAME:Minist\xc3\xa8re Test" in body


def test_agency_feed_answers_only_while_enabled(agency, owner, agency_feed, organizer):
    book(organizer, "Open day", listed_publicly=True)
    assert fetch(agency_feed).status_code == 200
    agency_calendar_unpublish(actor=owner, agency=agency)
    assert fetch(agency_feed).status_code == 404
    again = agency_calendar_publish(actor=owner, agency=agency)
    assert again.pk == agency_feed.pk
    assert Client().get(feed_path(again)).status_code == 200


def test_agency_feed_of_an_agency_without_listed_meetings_is_empty(agency_feed, organizer):
    book(organizer, "Internal")
    body = fetch(agency_feed).content
    assert summaries(body) == {}
    icalendar.Calendar.from_ical(body)


def _cold_queries(feed: FeedToken) -> int:
    feeds.clear_local_caches()
    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        assert fetch(feed).status_code == 200
    return len(queries.captured_queries)


def test_agency_feed_query_count_does_not_grow(agency_feed, organizer):
    book(organizer, "Open 0", listed_publicly=True)
    small = _cold_queries(agency_feed)
    for n in range(1, 30):
        book(
            organizer,
            f"Open {n}",
            listed_publicly=True,
            attendees=(f"g{n}@example.org",),
            start=NOW + timedelta(days=1 + n),
        )
    assert _cold_queries(agency_feed) == small


def test_attendees_and_meeting_changes_reach_the_feed(owner, organizer, clock):
    meeting = book(organizer, "Sync", attendees=(owner.email, "guest@example.org"))
    feed = _feed_of(owner)
    first = fetch(feed)
    clock.shift(timedelta(minutes=1))
    attendee_respond(
        actor="rsvp", attendee=meeting.attendees.get(email="guest@example.org"), partstat="accepted"
    )
    second = fetch(feed)
    assert second["ETag"] != first["ETag"]
    (event,) = icalendar.Calendar.from_ical(second.content).walk("VEVENT")
    answers = {str(a): a.params["PARTSTAT"] for a in event["ATTENDEE"]}
    assert answers["mailto:guest@example.org"] == "ACCEPTED"


def test_meetings_booked_by_the_service_are_all_in_the_feed(owner):
    specs = [AttendeeSpec(f"p{n}@example.org") for n in range(3)]
    for n in range(5):
        meeting_schedule(
            actor=owner,
            title=f"M{n}",
            start=NOW + timedelta(days=n + 1),
            end=NOW + timedelta(days=n + 1, hours=1),
            timezone="America/New_York",
            attendees=specs,
        )
    body = fetch(_feed_of(owner)).content
    assert set(summaries(body)) == {f"M{n}" for n in range(5)}
    assert b"TZID:America/New_York" in body


def test_feed_selection_matches_the_agenda_selector(owner, organizer, foreign_organizer):
    """The feed finds the owner's meetings through a UNION; the set is meetings_of's."""
    book(owner, "Own")
    book(organizer, "Co", co_organizers=[owner])
    book(organizer, "Invited", attendees=(owner.email,))
    book(organizer, "Not theirs")
    book(foreign_organizer, "Abroad", attendees=(owner.email,))
    feed_rows = feeds.personal_feed_meetings(user=owner, include_declined=True, now=NOW)
    assert set(feed_rows) == set(meetings_of(user=owner))
    assert feed_rows.count() == 4


def test_unnamed_attendee_shows_their_users_name_without_a_query_each(owner, organizer, clock):
    meeting = book(organizer, "Sync", attendees=(owner.email, "nameless@example.org"))
    clock.shift(timedelta(seconds=1))
    meeting.attendees.filter(user=owner).update(display_name="", updated_at=NOW)
    feed = _feed_of(owner)
    with CaptureQueriesContext(connection) as queries:
        body = fetch(feed).content
    (event,) = icalendar.Calendar.from_ical(body).walk("VEVENT")
    names = {str(a): a.params.get("CN") for a in event["ATTENDEE"]}
    assert names[f"mailto:{owner.email}"] == "Ana"
    assert names["mailto:nameless@example.org"] is None
    # One user row is read: the feed's owner (its name and reminders), none per attendee.
    user_loads = [
        q for q in queries.captured_queries if q["sql"].startswith('SELECT "agencies_user"')
    ]
    assert len(user_loads) == 1
