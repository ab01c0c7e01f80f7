"""meeting_update (sequence rules), meeting_cancel and attendee_respond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from agencies.models import AuditEvent, Role
from meetings.models import (
    SIGNIFICANT_FIELDS,
    Attendee,
    AttendeeRole,
    Meeting,
    MeetingStatus,
    OccurrenceException,
    PartStat,
)
from meetings.recurrence import Recurrence
from meetings.selectors import meeting_occurrences
from meetings.services import (
    AttendeeSpec,
    attendee_respond,
    meeting_cancel,
    meeting_schedule,
    meeting_update,
    occurrence_cancel,
    occurrence_move,
)
from visio_broker.errors import Forbidden, InvalidInput

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
START = datetime(2026, 3, 10, 14, 0, tzinfo=PARIS)  # Tuesday
END = START + timedelta(hours=1)
WEEKLY = Recurrence(freq="WEEKLY", weekdays=("TU",), count=10)
GUEST = "guest@example.org"


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER)


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="camille@test.gouv.example")


@pytest.fixture
def meeting(organizer, colleague):
    """A weekly series both invitees have answered."""
    meeting = meeting_schedule(
        actor=organizer,
        title="Weekly sync",
        start=START,
        end=END,
        timezone="Europe/Paris",
        recurrence=WEEKLY,
        attendees=[AttendeeSpec(colleague.email), AttendeeSpec(GUEST)],
    )
    attendee_respond(
        actor=colleague, attendee=attendee(meeting, colleague.email), partstat="accepted"
    )
    attendee_respond(actor="rsvp-link", attendee=attendee(meeting, GUEST), partstat="tentative")
    AuditEvent.objects.all().delete()
    meeting.refresh_from_db()
    return meeting


def attendee(meeting, email):
    return Attendee.objects.get(meeting=meeting, email=email)


def answers(meeting):
    return dict(Attendee.objects.filter(meeting=meeting).values_list("email", "partstat"))


def audit_actions():
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def test_fixture_meeting_has_answers_for_updates_to_keep_or_reset(meeting, organizer, colleague):
    assert Meeting.objects.get() == meeting
    assert answers(meeting) == {
        organizer.email: PartStat.ACCEPTED,
        colleague.email: PartStat.ACCEPTED,
        GUEST: PartStat.TENTATIVE,
    }


# --- meeting_update: sequence rules ---------------------------------------------------------


def test_significant_fields_are_the_ones_that_move_occurrences_or_status():
    assert frozenset({"start", "end", "timezone", "all_day", "rrule", "status"}) == (
        SIGNIFICANT_FIELDS
    )


@pytest.mark.parametrize(
    ("changes", "changed"),
    [
        ({"title": "Renamed sync"}, {"title"}),
        ({"description": "New agenda"}, {"description"}),
        ({"title": "Renamed sync", "description": "New agenda"}, {"title", "description"}),
        ({"lobby_enabled": False}, {"lobby_enabled"}),
        ({"access_level": "agency"}, {"access_level"}),
    ],
)
def test_meeting_update_cosmetic_change_keeps_sequence_and_answers(
    meeting, organizer, colleague, changes, changed
):
    before = answers(meeting)
    result = meeting_update(actor=organizer, meeting=meeting, **changes)
    assert (result.changed, result.significant) == (changed, False)
    meeting.refresh_from_db()
    for name, value in changes.items():
        assert getattr(meeting, name) == value
    assert meeting.sequence == 0
    assert answers(meeting) == before
    event = AuditEvent.objects.get()
    assert (event.action, event.actor) == ("meeting.updated", organizer)
    assert event.detail == {"changed": sorted(changed), "sequence": 0}


@pytest.mark.parametrize(
    ("changes", "changed"),
    [
        pytest.param(
            {"start": START + timedelta(hours=1), "end": END + timedelta(hours=1)},
            {"start", "end"},
            id="later",
        ),
        pytest.param({"end": END + timedelta(minutes=30)}, {"end"}, id="longer"),
        pytest.param({"timezone": "Europe/London"}, {"timezone"}, id="timezone"),
        pytest.param(
            {"recurrence": Recurrence(freq="WEEKLY", weekdays=("TU",), count=5)},
            {"rrule"},
            id="rrule",
        ),
        pytest.param({"recurrence": None}, {"rrule"}, id="stop-repeating"),
        pytest.param({"all_day": True}, {"all_day", "start", "end"}, id="all-day"),
    ],
)
def test_meeting_update_significant_change_bumps_sequence_and_resets_answers(
    meeting, organizer, colleague, changes, changed
):
    result = meeting_update(actor=organizer, meeting=meeting, **changes)
    assert (result.changed, result.significant) == (changed, True)
    meeting.refresh_from_db()
    assert meeting.sequence == 1
    assert answers(meeting) == {
        organizer.email: PartStat.ACCEPTED,
        colleague.email: PartStat.NEEDS_ACTION,
        GUEST: PartStat.NEEDS_ACTION,
    }
    assert attendee(meeting, colleague.email).responded_at is None
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.agency) == (
        "meeting.updated",
        organizer,
        meeting.host_agency,
    )
    assert event.detail == {"changed": sorted(changed), "sequence": 1}


def test_meeting_update_new_time_is_stored_with_its_series_end(meeting, organizer):
    meeting_update(
        actor=organizer,
        meeting=meeting,
        start=START + timedelta(hours=2),
        end=END + timedelta(hours=2),
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=3),
    )
    meeting.refresh_from_db()
    assert (meeting.start, meeting.end) == (
        datetime(2026, 3, 10, 16, tzinfo=PARIS),
        datetime(2026, 3, 10, 17, tzinfo=PARIS),
    )
    assert meeting.rrule == "FREQ=WEEKLY;BYDAY=TU;COUNT=3"
    assert meeting.series_end == datetime(2026, 3, 24, 17, tzinfo=PARIS)


def test_meeting_update_stop_repeating_makes_a_one_off(meeting, organizer):
    meeting_update(actor=organizer, meeting=meeting, recurrence=None)
    meeting.refresh_from_db()
    assert (meeting.rrule, meeting.series_end) == ("", meeting.end)


def test_meeting_update_without_change_writes_nothing(meeting, organizer, colleague, clock):
    clock.shift(timedelta(hours=1))
    updated_at = meeting.updated_at
    before = answers(meeting)
    result = meeting_update(
        actor=organizer,
        meeting=meeting,
        title=" Weekly sync ",
        description="",
        start=START.astimezone(UTC),
        end=END,
        timezone="Europe/Paris",
        all_day=False,
        recurrence=Recurrence.parse(meeting.rrule),
        attendees=[AttendeeSpec(GUEST), AttendeeSpec(colleague.email.upper())],
        co_organizers=[],
        access_level=meeting.access_level,
        lobby_enabled=meeting.lobby_enabled,
    )
    assert (result.changed, result.significant, result.added, result.removed) == (
        set(),
        False,
        [],
        [],
    )
    meeting.refresh_from_db()
    assert (meeting.sequence, meeting.updated_at) == (0, updated_at)
    assert answers(meeting) == before
    assert not AuditEvent.objects.exists()


def test_meeting_update_replaces_attendees_and_reports_who_came_and_went(
    meeting, organizer, colleague, other_agency, make_member
):
    foreign = make_member(other_agency, email="jonas@test.bund.example")
    result = meeting_update(
        actor=organizer,
        meeting=meeting,
        attendees=[
            AttendeeSpec(GUEST),
            AttendeeSpec(foreign.email),
            AttendeeSpec("new@example.org"),
        ],
    )
    assert (result.changed, result.significant) == ({"attendees"}, False)
    assert sorted(a.email for a in result.added) == [foreign.email, "new@example.org"]
    assert [a.email for a in result.removed] == [colleague.email]
    assert answers(meeting) == {
        organizer.email: PartStat.ACCEPTED,
        GUEST: PartStat.TENTATIVE,
        foreign.email: PartStat.NEEDS_ACTION,
        "new@example.org": PartStat.NEEDS_ACTION,
    }
    assert attendee(meeting, foreign.email).user == foreign
    meeting.refresh_from_db()
    assert meeting.sequence == 0
    assert AuditEvent.objects.get().detail == {"changed": ["attendees"], "sequence": 0}


def test_meeting_update_attendee_role_change_is_a_change_without_arrivals(
    meeting, organizer, colleague
):
    result = meeting_update(
        actor=organizer,
        meeting=meeting,
        attendees=[AttendeeSpec(colleague.email, role=AttendeeRole.OPTIONAL), AttendeeSpec(GUEST)],
    )
    assert (result.changed, result.added, result.removed) == ({"attendees"}, [], [])
    assert attendee(meeting, colleague.email).role == AttendeeRole.OPTIONAL
    assert attendee(meeting, colleague.email).partstat == PartStat.ACCEPTED


def test_meeting_update_cannot_remove_the_organizer_from_the_attendees(meeting, organizer):
    meeting_update(actor=organizer, meeting=meeting, attendees=[])
    assert answers(meeting) == {organizer.email: PartStat.ACCEPTED}


def test_meeting_update_new_co_organizer_becomes_an_attendee(
    meeting, organizer, agency, make_member
):
    co = make_member(agency, Role.MEMBER, email="cora@test.gouv.example")
    result = meeting_update(actor=organizer, meeting=meeting, co_organizers=[co, organizer])
    assert result.changed == {"co_organizers", "attendees"}
    assert [a.email for a in result.added] == [co.email]
    assert list(meeting.co_organizers.all()) == [co]
    assert attendee(meeting, co.email).user == co


def test_meeting_update_replacing_attendees_keeps_co_organizers_invited(
    organizer, agency, make_member
):
    co = make_member(agency, Role.MEMBER, email="cora@test.gouv.example")
    meeting = meeting_schedule(
        actor=organizer,
        title="Sync",
        start=START,
        end=END,
        timezone="Europe/Paris",
        co_organizers=[co],
    )
    result = meeting_update(actor=organizer, meeting=meeting, attendees=[AttendeeSpec(GUEST)])
    assert result.removed == []
    assert set(answers(meeting)) == {organizer.email, co.email, GUEST}


def test_meeting_update_of_the_rule_drops_occurrence_exceptions(meeting, organizer):
    occurrence_cancel(actor=organizer, meeting=meeting, recurrence_id=START + timedelta(weeks=1))
    meeting_update(
        actor=organizer,
        meeting=meeting,
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=4),
    )
    assert not OccurrenceException.objects.filter(meeting=meeting).exists()
    meeting.refresh_from_db()
    assert meeting.sequence == 2


def test_meeting_update_of_the_end_keeps_occurrence_exceptions(meeting, organizer):
    occurrence_cancel(actor=organizer, meeting=meeting, recurrence_id=START + timedelta(weeks=1))
    meeting_update(actor=organizer, meeting=meeting, end=END + timedelta(minutes=30))
    assert OccurrenceException.objects.filter(meeting=meeting, cancelled=True).count() == 1


def test_meeting_update_of_the_series_time_leaves_no_stray_moved_occurrence(meeting, organizer):
    # 17 March moved to Monday 23 March; then the whole series moves one hour later.
    moved_start = datetime(2026, 3, 23, 9, tzinfo=PARIS)
    occurrence_move(
        actor=organizer,
        meeting=meeting,
        recurrence_id=START + timedelta(weeks=1),
        start=moved_start,
        end=moved_start + timedelta(hours=1),
    )
    meeting_update(
        actor=organizer,
        meeting=meeting,
        start=START + timedelta(hours=1),
        end=END + timedelta(hours=1),
    )
    meeting.refresh_from_db()
    week = meeting_occurrences(
        meeting, datetime(2026, 3, 23, tzinfo=PARIS), datetime(2026, 3, 30, tzinfo=PARIS)
    )
    assert [(occ.start, occ.moved) for occ in week] == [
        (datetime(2026, 3, 24, 15, tzinfo=PARIS), False)
    ]
    assert not OccurrenceException.objects.filter(meeting=meeting).exists()


# --- meeting_update: who and when ----------------------------------------------------------------


@pytest.mark.parametrize("who", ["co_organizer", "host_admin"])
def test_meeting_update_by_co_organizer_or_host_admin(organizer, agency, make_member, who):
    editor = make_member(agency, Role.ADMIN if who == "host_admin" else Role.MEMBER)
    meeting = meeting_schedule(
        actor=organizer,
        title="Sync",
        start=START,
        end=END,
        timezone="Europe/Paris",
        co_organizers=[editor] if who == "co_organizer" else [],
    )
    meeting_update(actor=editor, meeting=meeting, title="Renamed")
    meeting.refresh_from_db()
    assert meeting.title == "Renamed"
    event = AuditEvent.objects.get(action="meeting.updated")
    assert event.actor == editor


@pytest.mark.parametrize("who", ["attendee", "colleague_not_invited", "other_agency_admin"])
def test_meeting_update_by_someone_else_is_forbidden(
    meeting, colleague, agency, other_agency, make_member, who
):
    actor = {
        "attendee": lambda: colleague,
        "colleague_not_invited": lambda: make_member(agency, Role.ORGANIZER),
        "other_agency_admin": lambda: make_member(other_agency, Role.ADMIN),
    }[who]()
    with pytest.raises(Forbidden) as raised:
        meeting_update(
            actor=actor, meeting=meeting, title="Hijacked", start=START + timedelta(days=1)
        )
    assert raised.value.code == "forbidden"
    meeting.refresh_from_db()
    assert (meeting.title, meeting.start, meeting.sequence) == ("Weekly sync", START, 0)
    assert not AuditEvent.objects.exists()


def test_meeting_update_of_a_cancelled_meeting_is_refused(meeting, organizer):
    meeting_cancel(actor=organizer, meeting=meeting)
    with pytest.raises(InvalidInput) as raised:
        meeting_update(actor=organizer, meeting=meeting, title="Back again")
    assert raised.value.code == "meeting_cancelled"
    meeting.refresh_from_db()
    assert meeting.title == "Weekly sync"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"title": "  "}, "title_required"),
        ({"end": START}, "end_before_start"),
        ({"timezone": "Europe/Atlantis"}, "invalid_timezone"),
        ({"start": NOW - timedelta(days=1), "end": NOW}, "start_in_past"),
        ({"access_level": "everyone"}, "invalid_access_level"),
        ({"attendees": [AttendeeSpec("bad@")]}, "invalid_email"),
    ],
)
def test_meeting_update_rejects_invalid_input(meeting, organizer, changes, code):
    with pytest.raises(InvalidInput) as raised:
        meeting_update(actor=organizer, meeting=meeting, **changes)
    assert raised.value.code == code
    meeting.refresh_from_db()
    assert (meeting.title, meeting.start, meeting.end, meeting.sequence) == (
        "Weekly sync",
        START,
        END,
        0,
    )
    assert not AuditEvent.objects.exists()


def test_meeting_update_of_a_meeting_under_way_can_rename_it(meeting, organizer, clock):
    clock.move_to(START + timedelta(minutes=30))
    meeting_update(actor=organizer, meeting=meeting, title="Renamed", end=END)
    meeting.refresh_from_db()
    assert meeting.title == "Renamed"


# --- meeting_cancel ------------------------------------------------------------------------------


def test_meeting_cancel_marks_the_series_cancelled_and_bumps_sequence(meeting, organizer):
    returned = meeting_cancel(actor=organizer, meeting=meeting)
    assert returned.pk == meeting.pk
    meeting.refresh_from_db()
    assert (meeting.status, meeting.sequence) == (MeetingStatus.CANCELLED, 1)
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.object_id) == (
        "meeting.cancelled",
        organizer,
        str(meeting.pk),
    )
    assert event.detail == {"sequence": 1}
    occurrences = meeting_occurrences(meeting, START, START + timedelta(weeks=3))
    assert [occ.cancelled for occ in occurrences] == [True, True, True]


def test_meeting_cancel_twice_changes_nothing_the_second_time(meeting, organizer):
    meeting_cancel(actor=organizer, meeting=meeting)
    again = meeting_cancel(actor=organizer, meeting=meeting)
    assert again.sequence == 1
    meeting.refresh_from_db()
    assert meeting.sequence == 1
    assert audit_actions() == ["meeting.cancelled"]


def test_meeting_cancel_by_host_admin(meeting, agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    meeting_cancel(actor=admin, meeting=meeting)
    meeting.refresh_from_db()
    assert meeting.status == MeetingStatus.CANCELLED
    assert AuditEvent.objects.get().actor == admin


def test_meeting_cancel_by_attendee_is_forbidden(meeting, colleague):
    with pytest.raises(Forbidden):
        meeting_cancel(actor=colleague, meeting=meeting)
    meeting.refresh_from_db()
    assert (meeting.status, meeting.sequence) == (MeetingStatus.SCHEDULED, 0)
    assert not AuditEvent.objects.exists()


# --- attendee_respond ----------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [PartStat.ACCEPTED, PartStat.TENTATIVE, PartStat.DECLINED])
def test_attendee_respond_records_the_answer(organizer, colleague, answer, clock):
    meeting = meeting_schedule(
        actor=organizer,
        title="Sync",
        start=START,
        end=END,
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(colleague.email)],
    )
    clock.shift(timedelta(minutes=10))
    returned = attendee_respond(
        actor=colleague, attendee=attendee(meeting, colleague.email), partstat=answer
    )
    assert returned.partstat == answer
    row = attendee(meeting, colleague.email)
    assert (row.partstat, row.responded_at) == (answer, NOW + timedelta(minutes=10))
    meeting.refresh_from_db()
    assert meeting.sequence == 0
    event = AuditEvent.objects.get(action="attendee.responded")
    assert (event.actor, event.object_id) == (colleague, str(meeting.pk))
    assert event.detail == {"attendee": colleague.email, "partstat": answer}


def test_attendee_respond_through_rsvp_link_names_the_link(meeting):
    attendee_respond(actor="rsvp-link", attendee=attendee(meeting, GUEST), partstat="declined")
    assert attendee(meeting, GUEST).partstat == PartStat.DECLINED
    event = AuditEvent.objects.get()
    assert (event.actor, event.actor_label) == (None, "rsvp-link")


def test_attendee_respond_same_answer_again_is_not_audited_twice(meeting, colleague, clock):
    responded_at = attendee(meeting, colleague.email).responded_at
    clock.shift(timedelta(hours=1))
    attendee_respond(
        actor=colleague, attendee=attendee(meeting, colleague.email), partstat="accepted"
    )
    assert attendee(meeting, colleague.email).responded_at == responded_at
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("who", ["organizer", "other_attendee_user", "stranger"])
def test_attendee_respond_for_someone_else_is_forbidden(
    meeting, organizer, colleague, agency, make_member, who
):
    actor = {
        "organizer": lambda: organizer,
        "other_attendee_user": lambda: colleague,
        "stranger": lambda: make_member(agency),
    }[who]()
    target = attendee(meeting, GUEST if who == "other_attendee_user" else colleague.email)
    before = target.partstat
    with pytest.raises(Forbidden) as raised:
        attendee_respond(actor=actor, attendee=target, partstat="declined")
    assert raised.value.code == "forbidden"
    target.refresh_from_db()
    assert target.partstat == before
    assert not AuditEvent.objects.exists()


def test_attendee_respond_to_a_cancelled_meeting_is_refused(meeting, organizer, colleague):
    meeting_cancel(actor=organizer, meeting=meeting)
    with pytest.raises(InvalidInput) as raised:
        attendee_respond(
            actor=colleague, attendee=attendee(meeting, colleague.email), partstat="declined"
        )
    assert raised.value.code == "meeting_cancelled"
    assert attendee(meeting, colleague.email).partstat == PartStat.ACCEPTED


@pytest.mark.parametrize("answer", [PartStat.NEEDS_ACTION, "maybe", ""])
def test_attendee_respond_rejects_what_is_not_an_answer(meeting, colleague, answer):
    with pytest.raises(InvalidInput) as raised:
        attendee_respond(
            actor=colleague, attendee=attendee(meeting, colleague.email), partstat=answer
        )
    assert raised.value.code == "invalid_answer"
    assert attendee(meeting, colleague.email).partstat == PartStat.ACCEPTED
    assert not AuditEvent.objects.exists()
