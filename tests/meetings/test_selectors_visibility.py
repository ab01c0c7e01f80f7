"""Visibility selectors (who sees a meeting) and the agenda's constant query count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agencies.models import Role
from meetings.recurrence import Recurrence
from meetings.selectors import agenda, meetings_of, meetings_visible_to
from meetings.services import AttendeeSpec, meeting_schedule, occurrence_cancel, occurrence_move

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
START = datetime(2026, 4, 7, 10, tzinfo=PARIS)  # Tuesday

ROLES = [
    "anonymous",
    "organizer",
    "co_organizer",
    "attendee",
    "attendee_from_other_agency",
    "same_agency_member_not_invited",
    "same_agency_organizer_not_invited",
    "host_agency_admin",
    "other_agency_admin",
    "other_agency_member",
]
SEES = {"organizer", "co_organizer", "attendee", "attendee_from_other_agency", "host_agency_admin"}
TAKES_PART = SEES - {"host_agency_admin"}


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def people(agency, other_agency, make_member):
    return {
        "anonymous": AnonymousUser(),
        "organizer": make_member(agency, Role.ORGANIZER),
        "co_organizer": make_member(agency, Role.MEMBER),
        "attendee": make_member(agency, Role.MEMBER),
        "attendee_from_other_agency": make_member(other_agency, Role.MEMBER),
        "same_agency_member_not_invited": make_member(agency, Role.MEMBER),
        "same_agency_organizer_not_invited": make_member(agency, Role.ORGANIZER),
        "host_agency_admin": make_member(agency, Role.ADMIN),
        "other_agency_admin": make_member(other_agency, Role.ADMIN),
        "other_agency_member": make_member(other_agency, Role.MEMBER),
    }


@pytest.fixture
def meeting(people):
    return meeting_schedule(
        actor=people["organizer"],
        title="Budget review",
        start=START,
        end=START + timedelta(hours=1),
        timezone="Europe/Paris",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",)),
        co_organizers=[people["co_organizer"]],
        attendees=[
            AttendeeSpec(people["attendee"].email),
            AttendeeSpec(people["attendee_from_other_agency"].email),
            AttendeeSpec("guest@example.org"),
        ],
    )


@pytest.mark.parametrize("role", ROLES)
def test_meetings_visible_to_by_role(people, meeting, role):
    assert list(meetings_visible_to(user=people[role])) == ([meeting] if role in SEES else [])


@pytest.mark.parametrize("role", sorted(set(ROLES) - {"anonymous"}))
def test_meetings_of_lists_only_meetings_the_user_takes_part_in(people, meeting, role):
    assert list(meetings_of(user=people[role])) == ([meeting] if role in TAKES_PART else [])


def test_meetings_visible_to_lists_each_meeting_once(people, meeting, make_member, agency):
    # The organizer is also chair attendee and admin of the host agency: still one row.
    admin = make_member(agency, Role.ADMIN)
    own = meeting_schedule(
        actor=admin,
        title="Admin's meeting",
        start=START,
        end=START + timedelta(hours=1),
        timezone="Europe/Paris",
        co_organizers=[people["co_organizer"]],
    )
    assert sorted(m.pk for m in meetings_visible_to(user=admin)) == sorted([meeting.pk, own.pk])
    assert sorted(m.pk for m in meetings_visible_to(user=people["co_organizer"])) == sorted(
        [meeting.pk, own.pk]
    )


def test_meetings_visible_to_hides_other_agencies_meetings_from_their_admins(
    people, other_agency, make_member
):
    foreign = meeting_schedule(
        actor=make_member(other_agency, Role.ORGANIZER),
        title="Bundesamt internal",
        start=START,
        end=START + timedelta(hours=1),
        timezone="Europe/Berlin",
    )
    assert list(meetings_visible_to(user=people["host_agency_admin"])) == []
    assert list(meetings_visible_to(user=people["other_agency_admin"])) == [foreign]


# --- Agenda query count --------------------------------------------------------------------------


def book(organizer, attendee, count):
    """``count`` meetings in the week of 7 April: every third one weekly, some with exceptions."""
    for n in range(count):
        start = START + timedelta(hours=n % 8, days=n % 4)
        recurring = n % 3 == 0
        meeting = meeting_schedule(
            actor=organizer,
            title=f"Meeting {n}",
            start=start,
            end=start + timedelta(minutes=30),
            timezone="Europe/Paris",
            recurrence=Recurrence(freq="WEEKLY", weekdays=(("TU", "WE", "TH", "FR")[n % 4],))
            if recurring
            else None,
            attendees=[AttendeeSpec(attendee.email), AttendeeSpec(f"guest{n}@example.org")],
        )
        if recurring and n % 2 == 0:
            occurrence_cancel(
                actor=organizer, meeting=meeting, recurrence_id=meeting.start + timedelta(weeks=1)
            )
        elif recurring:
            occurrence_move(
                actor=organizer,
                meeting=meeting,
                recurrence_id=meeting.start + timedelta(weeks=1),
                start=meeting.start + timedelta(weeks=1, hours=1),
                end=meeting.start + timedelta(weeks=1, hours=2),
            )


def count_agenda_queries(user):
    with CaptureQueriesContext(connection) as queries:
        occurrences = agenda(
            user=user,
            window_start=datetime(2026, 4, 6, tzinfo=PARIS),
            window_end=datetime(2026, 4, 20, tzinfo=PARIS),
        )
        for occ in occurrences:
            # What the agenda page shows: organizer, host agency and the viewer's own answer.
            assert occ.meeting.organizer.email and occ.meeting.host_agency.name
            occ.meeting.attendee_for(user)
            occ.meeting.get_abilities(user)
    return len(queries), len(occurrences)


@pytest.mark.parametrize("count", [5, 50])
def test_agenda_query_count_does_not_grow_with_the_number_of_meetings(agency, make_member, count):
    organizer = make_member(agency, Role.ORGANIZER)
    attendee = make_member(agency, Role.MEMBER)
    attendee.membership  # noqa: B018 - loaded once per request by the middleware's user
    book(organizer, attendee, count)
    queries, shown = count_agenda_queries(attendee)
    recurring = len(range(0, count, 3))
    assert shown == count + recurring  # each series shows in both weeks of the window
    # Meetings, then exceptions, attendees (with their users) and co-organizers prefetched.
    assert queries == 4
