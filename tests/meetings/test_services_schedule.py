"""meeting_schedule: who may book, what is stored, what is refused, and DST-stable series."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from agencies.models import AuditEvent, Role
from meetings.models import Attendee, AttendeeRole, Meeting, MeetingStatus, PartStat
from meetings.recurrence import Recurrence
from meetings.selectors import meeting_occurrences
from meetings.services import AttendeeSpec, meeting_schedule
from tests.factories import MembershipFactory, UserFactory
from visio_broker.errors import Forbidden, InvalidInput

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # Monday 09:00 in Paris
START = datetime(2026, 3, 10, 14, 0, tzinfo=PARIS)  # Tuesday of the next week
END = START + timedelta(hours=1)


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orla@test.gouv.example")


def schedule(actor, **overrides):
    arguments = {"title": "Weekly sync", "start": START, "end": END, "timezone": "Europe/Paris"}
    arguments.update(overrides)
    return meeting_schedule(actor=actor, **arguments)


def attendee_rows(meeting):
    return {
        (a.email, a.user_id, a.role, a.partstat) for a in Attendee.objects.filter(meeting=meeting)
    }


# --- Who may book --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ORGANIZER, Role.ADMIN])
def test_meeting_schedule_by_organizer_or_admin_stores_the_meeting(agency, make_member, role):
    actor = make_member(agency, role)
    meeting = schedule(actor, description="  Agenda: budget  ")
    meeting.refresh_from_db()
    assert (meeting.title, meeting.description) == ("Weekly sync", "Agenda: budget")
    assert (meeting.start, meeting.end) == (
        datetime(2026, 3, 10, 13, tzinfo=UTC),
        datetime(2026, 3, 10, 14, tzinfo=UTC),
    )
    assert meeting.timezone == "Europe/Paris"
    assert (meeting.rrule, meeting.series_end) == ("", meeting.end)
    assert (meeting.organizer, meeting.host_agency) == (actor, agency)
    assert (meeting.status, meeting.sequence, meeting.split_from) == (
        MeetingStatus.SCHEDULED,
        0,
        None,
    )


def test_meeting_schedule_by_member_is_forbidden_and_writes_nothing(agency, make_member):
    member = make_member(agency, Role.MEMBER)
    with pytest.raises(Forbidden) as raised:
        schedule(member)
    assert raised.value.code == "not_organizer"
    assert not Meeting.objects.exists()
    assert not AuditEvent.objects.exists()


def test_meeting_schedule_by_user_without_agency_is_forbidden(db):
    with pytest.raises(Forbidden) as raised:
        schedule(UserFactory())
    assert raised.value.code == "not_organizer"


# --- Attendees -----------------------------------------------------------------------------------


def test_meeting_schedule_makes_organizer_the_accepted_chair(organizer):
    meeting = schedule(organizer)
    chair = Attendee.objects.get(meeting=meeting)
    assert (chair.user, chair.email, chair.role, chair.partstat) == (
        organizer,
        organizer.email,
        AttendeeRole.CHAIR,
        PartStat.ACCEPTED,
    )
    assert chair.responded_at == NOW
    assert chair.display_name == organizer.display_name


def test_meeting_schedule_links_internal_attendees_by_email_in_any_case(
    organizer, agency, other_agency, make_member
):
    colleague = make_member(agency, email="camille@test.gouv.example", display_name="Camille")
    foreign = make_member(other_agency, email="jonas@test.bund.example")
    meeting = schedule(
        organizer,
        attendees=[
            AttendeeSpec("  Camille@TEST.gouv.example "),
            AttendeeSpec("JONAS@test.bund.example", role=AttendeeRole.OPTIONAL),
            AttendeeSpec("Guest@Example.org", display_name=" Guest "),
        ],
    )
    assert attendee_rows(meeting) == {
        (organizer.email, organizer.pk, AttendeeRole.CHAIR, PartStat.ACCEPTED),
        ("camille@test.gouv.example", colleague.pk, AttendeeRole.REQUIRED, PartStat.NEEDS_ACTION),
        ("jonas@test.bund.example", foreign.pk, AttendeeRole.OPTIONAL, PartStat.NEEDS_ACTION),
        ("guest@example.org", None, AttendeeRole.REQUIRED, PartStat.NEEDS_ACTION),
    }
    names = dict(Attendee.objects.filter(meeting=meeting).values_list("email", "display_name"))
    assert names["camille@test.gouv.example"] == "Camille"  # taken from the account
    assert names["guest@example.org"] == "Guest"


def test_meeting_schedule_links_a_user_whose_stored_address_has_capitals(organizer, agency):
    # Addresses edited in the admin keep their case; the database treats them case-insensitively.
    user = MembershipFactory(agency=agency, user__email="Chloe.Martin@test.gouv.example").user
    meeting = schedule(organizer, attendees=[AttendeeSpec("chloe.martin@test.gouv.example")])
    assert Attendee.objects.get(meeting=meeting, role=AttendeeRole.REQUIRED).user == user


def test_meeting_schedule_organizer_with_capitals_listed_as_attendee_stays_one_chair(agency):
    organizer = MembershipFactory(
        agency=agency, role=Role.ORGANIZER, user__email="Orla.Org@test.gouv.example"
    ).user
    meeting = schedule(organizer, attendees=[AttendeeSpec("orla.org@test.gouv.example")])
    assert attendee_rows(meeting) == {
        (organizer.email, organizer.pk, AttendeeRole.CHAIR, PartStat.ACCEPTED)
    }


def test_meeting_schedule_ignores_inactive_accounts_and_duplicates(organizer, agency, make_member):
    gone = make_member(agency, email="gone@test.gouv.example")
    gone.is_active = False
    gone.save(update_fields=["is_active"])
    meeting = schedule(
        organizer,
        attendees=[
            AttendeeSpec("gone@test.gouv.example"),
            AttendeeSpec("guest@example.org", role=AttendeeRole.OPTIONAL),
            AttendeeSpec("GUEST@example.org"),
            AttendeeSpec(organizer.email.upper()),
        ],
    )
    assert attendee_rows(meeting) == {
        (organizer.email, organizer.pk, AttendeeRole.CHAIR, PartStat.ACCEPTED),
        ("gone@test.gouv.example", None, AttendeeRole.REQUIRED, PartStat.NEEDS_ACTION),
        ("guest@example.org", None, AttendeeRole.OPTIONAL, PartStat.NEEDS_ACTION),
    }


def test_meeting_schedule_makes_co_organizers_attendees(organizer, agency, make_member):
    co = make_member(agency, Role.MEMBER, email="cora@test.gouv.example")
    meeting = schedule(organizer, co_organizers=[co, organizer])
    assert list(meeting.co_organizers.all()) == [co]
    assert attendee_rows(meeting) == {
        (organizer.email, organizer.pk, AttendeeRole.CHAIR, PartStat.ACCEPTED),
        (co.email, co.pk, AttendeeRole.REQUIRED, PartStat.NEEDS_ACTION),
    }


def test_meeting_schedule_gives_each_meeting_a_unique_uid_on_this_host(organizer):
    first, second = schedule(organizer), schedule(organizer)
    pattern = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}@testserver"
    assert re.fullmatch(pattern, first.uid)
    assert re.fullmatch(pattern, second.uid)
    assert first.uid != second.uid


def test_meeting_schedule_audits(organizer, agency):
    meeting = schedule(
        organizer,
        attendees=[AttendeeSpec("guest@example.org")],
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",)),
    )
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.agency) == ("meeting.scheduled", organizer, agency)
    assert (event.object_type, event.object_id) == ("meetings.meeting", str(meeting.pk))
    assert event.detail == {"uid": meeting.uid, "recurring": True, "attendees": 2}


# --- Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"end": START}, "end_before_start", id="end-equals-start"),
        pytest.param({"end": START - timedelta(hours=1)}, "end_before_start", id="end-before"),
        pytest.param(
            {"start": NOW - timedelta(hours=1), "end": NOW}, "start_in_past", id="past-start"
        ),
        pytest.param({"attendees": [AttendeeSpec("not-an-email")]}, "invalid_email", id="email"),
        pytest.param(
            {"attendees": [AttendeeSpec("a@example.org", role="boss")]}, "invalid_role", id="role"
        ),
        pytest.param({"timezone": "Mars/Olympus"}, "invalid_timezone", id="unknown-zone"),
        pytest.param({"timezone": ""}, "invalid_timezone", id="empty-zone"),
        pytest.param({"title": "   "}, "title_required", id="blank-title"),
        pytest.param({"access_level": "public"}, "invalid_access_level", id="access-level"),
        pytest.param({"end": START + timedelta(hours=25)}, "too_long", id="over-24-hours"),
        pytest.param(
            {"start": START.replace(tzinfo=None), "end": END.replace(tzinfo=None)},
            "naive_datetime",
            id="naive",
        ),
        pytest.param(
            {
                "all_day": True,
                "end": START + timedelta(days=2),  # the 10th and the 11th
                "recurrence": Recurrence(freq="DAILY", count=5),
            },
            "overlapping_occurrences",
            id="two-day-meeting-daily",
        ),
        pytest.param(
            {
                "all_day": True,
                "end": START + timedelta(days=2),  # the 10th and the 11th
                "recurrence": Recurrence(freq="WEEKLY", weekdays=("TU", "TH", "FR")),
            },
            "overlapping_occurrences",
            id="two-day-meeting-thursday-and-friday",
        ),
        pytest.param(
            {"recurrence": Recurrence(freq="DAILY", until=datetime(2026, 3, 9, tzinfo=UTC))},
            "empty_recurrence",
            id="until-before-start",
        ),
    ],
)
def test_meeting_schedule_rejects_invalid_input(organizer, overrides, code):
    with pytest.raises(InvalidInput) as raised:
        schedule(organizer, **overrides)
    assert raised.value.code == code
    assert raised.value.message
    assert not Meeting.objects.exists()
    assert not AuditEvent.objects.exists()


def test_meeting_schedule_accepts_a_start_a_few_minutes_ago(organizer):
    meeting = schedule(organizer, start=NOW - timedelta(minutes=4), end=NOW + timedelta(hours=1))
    assert meeting.start == NOW - timedelta(minutes=4)


def test_meeting_schedule_accepts_exactly_24_hours(organizer):
    meeting = schedule(organizer, end=START + timedelta(hours=24))
    assert meeting.duration == timedelta(hours=24)


# --- Recurrence and all-day ----------------------------------------------------------------------


def test_meeting_schedule_moves_a_weekly_start_to_the_first_chosen_weekday(organizer):
    # START is a Tuesday; the series runs on Thursdays and Fridays.
    meeting = schedule(
        organizer,
        recurrence=Recurrence(freq="WEEKLY", weekdays=("FR", "TH"), count=4),
        end=START + timedelta(minutes=30),
    )
    meeting.refresh_from_db()
    assert meeting.rrule == "FREQ=WEEKLY;BYDAY=TH,FR;COUNT=4"
    assert meeting.start == datetime(2026, 3, 12, 14, tzinfo=PARIS)  # Thursday
    assert meeting.end == datetime(2026, 3, 12, 14, 30, tzinfo=PARIS)
    assert meeting.series_end == datetime(2026, 3, 20, 14, 30, tzinfo=PARIS)  # 2nd Friday


def test_meeting_schedule_series_without_end_has_no_series_end(organizer):
    meeting = schedule(organizer, recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",)))
    meeting.refresh_from_db()
    assert (meeting.rrule, meeting.series_end) == ("FREQ=WEEKLY;BYDAY=TU", None)


def test_meeting_schedule_all_day_spans_local_midnights(organizer):
    meeting = schedule(
        organizer,
        all_day=True,
        start=datetime(2026, 3, 10, 14, tzinfo=PARIS),
        end=datetime(2026, 3, 10, 15, tzinfo=PARIS),
    )
    meeting.refresh_from_db()
    assert meeting.all_day
    assert (meeting.start, meeting.end) == (
        datetime(2026, 3, 9, 23, tzinfo=UTC),
        datetime(2026, 3, 10, 23, tzinfo=UTC),
    )


def test_meeting_schedule_all_day_over_several_days_ends_at_midnight_of_the_end_date(organizer):
    meeting = schedule(
        organizer,
        all_day=True,
        start=datetime(2026, 3, 10, tzinfo=PARIS),
        end=datetime(2026, 3, 12, tzinfo=PARIS),
    )
    assert (meeting.start, meeting.end) == (
        datetime(2026, 3, 10, tzinfo=PARIS),
        datetime(2026, 3, 12, tzinfo=PARIS),
    )


def test_meeting_schedule_all_day_on_the_spring_dst_day_lasts_23_hours(organizer):
    meeting = schedule(
        organizer,
        all_day=True,
        start=datetime(2026, 3, 29, 9, tzinfo=PARIS),
        end=datetime(2026, 3, 29, 9, tzinfo=PARIS),
    )
    assert (meeting.start, meeting.end) == (
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 29, 22, tzinfo=UTC),
    )


# --- DST -----------------------------------------------------------------------------------------


def utc_starts(meeting, start, end):
    return [occ.start for occ in meeting_occurrences(meeting, start, end)]


def utc(day: str, hour: int) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.mark.parametrize("zone", ["Europe/Paris", "Europe/Berlin"])
def test_weekly_meeting_keeps_10_00_local_across_march_and_october_changes(organizer, zone):
    tz = ZoneInfo(zone)
    meeting = schedule(
        organizer,
        start=datetime(2026, 3, 16, 10, tzinfo=tz),
        end=datetime(2026, 3, 16, 11, tzinfo=tz),
        timezone=zone,
        recurrence=Recurrence(
            freq="WEEKLY", weekdays=("MO",), until=datetime(2026, 10, 31, 23, tzinfo=UTC)
        ),
    )
    meeting.refresh_from_db()
    march = utc_starts(meeting, utc("2026-03-16", 0), utc("2026-04-07", 0))
    assert march == [
        utc("2026-03-16", 9),
        utc("2026-03-23", 9),
        utc("2026-03-30", 8),
        utc("2026-04-06", 8),
    ]
    october = utc_starts(meeting, utc("2026-10-12", 0), utc("2026-11-30", 0))
    assert october == [utc("2026-10-12", 8), utc("2026-10-19", 8), utc("2026-10-26", 9)]
    every = utc_starts(meeting, utc("2026-03-01", 0), utc("2027-01-01", 0))
    assert len(every) == 33
    assert {occ.astimezone(tz).hour for occ in every} == {10}
    assert meeting.series_end == utc("2026-10-26", 10)


@pytest.mark.parametrize("zone", ["Europe/Paris", "Europe/Berlin"])
@pytest.mark.parametrize(
    ("first", "expected", "series_end"),
    [
        pytest.param(
            "2026-03-27",
            [
                utc("2026-03-27", 9),
                utc("2026-03-28", 9),
                utc("2026-03-29", 8),
                utc("2026-03-30", 8),
            ],
            utc("2026-03-30", 9),
            id="march",
        ),
        pytest.param(
            "2026-10-23",
            [
                utc("2026-10-23", 8),
                utc("2026-10-24", 8),
                utc("2026-10-25", 9),
                utc("2026-10-26", 9),
            ],
            utc("2026-10-26", 10),
            id="october",
        ),
    ],
)
def test_daily_meeting_keeps_10_00_local_across_dst_change(
    organizer, zone, first, expected, series_end
):
    tz = ZoneInfo(zone)
    start = datetime.fromisoformat(first).replace(hour=10, tzinfo=tz)
    meeting = schedule(
        organizer,
        start=start,
        end=start + timedelta(hours=1),
        timezone=zone,
        recurrence=Recurrence(freq="DAILY", count=4),
    )
    meeting.refresh_from_db()
    assert utc_starts(meeting, utc("2026-01-01", 0), utc("2027-01-01", 0)) == expected
    assert meeting.series_end == series_end
