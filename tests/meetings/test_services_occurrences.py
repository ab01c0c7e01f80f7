"""occurrence_cancel, occurrence_move and series_split ("this and all following")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from agencies.models import AuditEvent, Role
from meetings.models import Attendee, Meeting, OccurrenceException, PartStat
from meetings.recurrence import Recurrence
from meetings.selectors import agenda, meeting_occurrences
from meetings.services import (
    AttendeeSpec,
    attendee_respond,
    meeting_schedule,
    occurrence_cancel,
    occurrence_move,
    series_split,
)
from visio_broker.errors import Forbidden, InvalidInput, NotFound

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
GUEST = "guest@example.org"


def monday(n: int, hour: int = 10) -> datetime:
    """The nth Monday (1-based) of the series: 6 April 2026, 13 April, …, in Paris."""
    return datetime(2026, 4, 6, hour, tzinfo=PARIS) + timedelta(weeks=n - 1)


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


def weekly(organizer, attendees=(), **recurrence):
    """Mondays 10:00-11:00 Paris from 6 April 2026."""
    return meeting_schedule(
        actor=organizer,
        title="Weekly sync",
        start=monday(1),
        end=monday(1, 11),
        timezone="Europe/Paris",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",), **recurrence),
        attendees=[AttendeeSpec(email) for email in attendees],
    )


@pytest.fixture
def series(organizer, colleague):
    meeting = weekly(organizer, attendees=[colleague.email, GUEST], count=10)
    AuditEvent.objects.all().delete()
    return meeting


def fresh(meeting):
    return Meeting.objects.prefetch_related("exceptions").get(pk=meeting.pk)


def occurrences(meeting, start, end):
    return [
        (occ.recurrence_id, occ.start, occ.cancelled, occ.moved)
        for occ in meeting_occurrences(fresh(meeting), start, end)
    ]


def all_starts(meeting):
    return [
        occ.start
        for occ in meeting_occurrences(fresh(meeting), monday(-52), monday(200))
        if not occ.cancelled
    ]


# --- occurrence_cancel ---------------------------------------------------------------------------


def test_occurrence_cancel_records_an_exception_and_bumps_sequence(series, organizer):
    exc = occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    assert OccurrenceException.objects.get() == exc
    assert (exc.meeting_id, exc.recurrence_id, exc.cancelled, exc.start, exc.end) == (
        series.pk,
        monday(2),
        True,
        None,
        None,
    )
    series.refresh_from_db()
    assert series.sequence == 1
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.object_id) == (
        "occurrence.cancelled",
        organizer,
        str(series.pk),
    )
    assert event.detail == {"recurrence_id": monday(2).isoformat(), "sequence": 1}


def test_occurrence_cancel_shows_in_occurrences_and_agenda(series, organizer, colleague):
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    assert occurrences(series, monday(1, 0), monday(4, 0)) == [
        (monday(1), monday(1), False, False),
        (monday(2), monday(2), True, False),
        (monday(3), monday(3), False, False),
    ]
    seen = agenda(user=colleague, window_start=monday(2, 0), window_end=monday(3, 0))
    assert [(occ.meeting.pk, occ.start, occ.cancelled) for occ in seen] == [
        (series.pk, monday(2), True)
    ]


def test_occurrence_cancel_twice_changes_nothing_the_second_time(series, organizer):
    first = occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    again = occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    assert again.pk == first.pk
    series.refresh_from_db()
    assert series.sequence == 1
    assert AuditEvent.objects.count() == 1


@pytest.mark.parametrize(
    "recurrence_id",
    [
        pytest.param(monday(2, 11), id="wrong-hour"),
        pytest.param(monday(2) + timedelta(days=1), id="tuesday"),
        pytest.param(monday(0), id="before-the-series"),
        pytest.param(monday(11), id="after-the-count"),
    ],
)
def test_occurrence_cancel_of_an_occurrence_that_does_not_exist_is_not_found(
    series, organizer, recurrence_id
):
    with pytest.raises(NotFound) as raised:
        occurrence_cancel(actor=organizer, meeting=series, recurrence_id=recurrence_id)
    assert raised.value.code == "occurrence_not_found"
    assert not OccurrenceException.objects.exists()
    series.refresh_from_db()
    assert series.sequence == 0
    assert not AuditEvent.objects.exists()


def test_occurrence_cancel_of_a_one_off_meeting_is_refused(organizer):
    one_off = meeting_schedule(
        actor=organizer, title="Once", start=monday(1), end=monday(1, 11), timezone="Europe/Paris"
    )
    with pytest.raises(InvalidInput) as raised:
        occurrence_cancel(actor=organizer, meeting=one_off, recurrence_id=monday(1))
    assert raised.value.code == "not_recurring"
    assert not OccurrenceException.objects.exists()


def test_occurrence_cancel_by_attendee_is_forbidden(series, colleague):
    with pytest.raises(Forbidden):
        occurrence_cancel(actor=colleague, meeting=series, recurrence_id=monday(2))
    assert not OccurrenceException.objects.exists()


def test_occurrence_cancel_by_host_admin(series, agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    occurrence_cancel(actor=admin, meeting=series, recurrence_id=monday(2))
    assert AuditEvent.objects.get().actor == admin


# --- occurrence_move -----------------------------------------------------------------------------


def test_occurrence_move_records_the_new_time_and_bumps_sequence(series, organizer):
    new_start = datetime(2026, 4, 22, 14, tzinfo=PARIS)  # Wednesday of the following week
    exc = occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(2),
        start=new_start,
        end=new_start + timedelta(hours=1),
    )
    exc.refresh_from_db()
    assert (exc.recurrence_id, exc.cancelled, exc.start, exc.end) == (
        monday(2),
        False,
        new_start,
        new_start + timedelta(hours=1),
    )
    series.refresh_from_db()
    assert series.sequence == 1
    event = AuditEvent.objects.get()
    assert (event.action, event.actor) == ("occurrence.moved", organizer)
    assert event.detail == {
        "recurrence_id": monday(2).isoformat(),
        "start": new_start.astimezone(UTC).isoformat(),
        "end": (new_start + timedelta(hours=1)).astimezone(UTC).isoformat(),
        "sequence": 1,
    }


def test_occurrence_moved_out_of_its_week_shows_at_the_new_time_only(series, organizer, colleague):
    new_start = datetime(2026, 4, 22, 14, tzinfo=PARIS)
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(2),
        start=new_start,
        end=new_start + timedelta(hours=1),
    )
    # Its own week: nothing left at the old time.
    assert occurrences(series, monday(2, 0), monday(3, 0)) == []
    # The week it moved to: the regular occurrence and the moved one.
    assert occurrences(series, monday(3, 0), monday(4, 0)) == [
        (monday(3), monday(3), False, False),
        (monday(2), new_start, False, True),
    ]
    # A window holding only the new time, through the agenda's database filter.
    seen = agenda(
        user=colleague,
        window_start=new_start - timedelta(hours=1),
        window_end=new_start + timedelta(hours=2),
    )
    assert [(occ.meeting.pk, occ.recurrence_id, occ.start, occ.moved) for occ in seen] == [
        (series.pk, monday(2), new_start, True)
    ]


def test_occurrence_moved_past_the_end_of_the_series_is_still_found(organizer, colleague):
    series = weekly(organizer, attendees=[colleague.email], count=3)
    new_start = datetime(2026, 6, 3, 9, tzinfo=PARIS)  # weeks after the last Monday (20 April)
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(3),
        start=new_start,
        end=new_start + timedelta(minutes=30),
    )
    seen = agenda(
        user=colleague,
        window_start=datetime(2026, 6, 1, tzinfo=PARIS),
        window_end=datetime(2026, 6, 8, tzinfo=PARIS),
    )
    assert [(occ.recurrence_id, occ.start, occ.end) for occ in seen] == [
        (monday(3), new_start, new_start + timedelta(minutes=30))
    ]
    assert all_starts(series) == [monday(1), monday(2), new_start]


def test_occurrence_move_to_the_same_time_again_changes_nothing(series, organizer):
    new_start = monday(2, 15)
    for _ in range(2):
        occurrence_move(
            actor=organizer,
            meeting=series,
            recurrence_id=monday(2),
            start=new_start,
            end=new_start + timedelta(hours=1),
        )
    series.refresh_from_db()
    assert series.sequence == 1
    assert OccurrenceException.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_occurrence_move_twice_keeps_one_exception_keyed_by_the_original_start(series, organizer):
    for hour in (15, 16):
        occurrence_move(
            actor=organizer,
            meeting=series,
            recurrence_id=monday(2),
            start=monday(2, hour),
            end=monday(2, hour + 1),
        )
    exc = OccurrenceException.objects.get()
    assert (exc.recurrence_id, exc.start) == (monday(2), monday(2, 16))
    series.refresh_from_db()
    assert series.sequence == 2


def test_occurrence_move_of_a_cancelled_occurrence_brings_it_back(series, organizer):
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(2),
        start=monday(2, 15),
        end=monday(2, 16),
    )
    assert occurrences(series, monday(2, 0), monday(3, 0)) == [
        (monday(2), monday(2, 15), False, True)
    ]


def test_occurrence_cancel_of_a_moved_occurrence(series, organizer):
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(2),
        start=monday(3, 15),
        end=monday(3, 16),
    )
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    assert occurrences(series, monday(2, 0), monday(4, 0)) == [
        (monday(2), monday(2), True, False),
        (monday(3), monday(3), False, False),
    ]
    assert [e.action for e in AuditEvent.objects.order_by("id")] == [
        "occurrence.moved",
        "occurrence.cancelled",
    ]


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        pytest.param(NOW - timedelta(days=1), NOW, "start_in_past", id="past"),
        pytest.param(monday(2, 15), monday(2, 15), "end_before_start", id="empty"),
        pytest.param(monday(2, 10), monday(3, 10), "too_long", id="a-week"),
    ],
)
def test_occurrence_move_rejects_invalid_times(series, organizer, start, end, code):
    with pytest.raises(InvalidInput) as raised:
        occurrence_move(
            actor=organizer, meeting=series, recurrence_id=monday(2), start=start, end=end
        )
    assert raised.value.code == code
    assert not OccurrenceException.objects.exists()


def test_occurrence_move_of_an_occurrence_that_does_not_exist_is_not_found(series, organizer):
    with pytest.raises(NotFound) as raised:
        occurrence_move(
            actor=organizer,
            meeting=series,
            recurrence_id=monday(2, 9),
            start=monday(2, 15),
            end=monday(2, 16),
        )
    assert raised.value.code == "occurrence_not_found"


# --- series_split --------------------------------------------------------------------------------


def test_series_split_ends_the_old_series_before_the_split_occurrence(series, organizer):
    continuation = series_split(actor=organizer, meeting=series, recurrence_id=monday(4))
    series.refresh_from_db()
    assert series.rrule == "FREQ=WEEKLY;BYDAY=MO;UNTIL=20260427T075959Z"
    assert all_starts(series) == [monday(1), monday(2), monday(3)]
    assert series.series_end == monday(3, 11)
    assert series.sequence == 1
    assert continuation.pk != series.pk
    assert continuation.uid != series.uid and continuation.uid.endswith("@testserver")
    assert continuation.split_from == series
    assert continuation.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=7"
    assert all_starts(continuation) == [monday(n) for n in range(4, 11)]
    assert (continuation.start, continuation.end) == (monday(4), monday(4, 11))
    assert continuation.series_end == monday(10, 11)
    assert (continuation.title, continuation.timezone, continuation.host_agency) == (
        "Weekly sync",
        "Europe/Paris",
        series.host_agency,
    )
    event = AuditEvent.objects.get()
    assert (event.action, event.object_id) == ("series.split", str(series.pk))
    assert event.detail == {
        "recurrence_id": monday(4).isoformat(),
        "continuation_uid": continuation.uid,
    }


def test_series_split_of_a_series_without_end(organizer):
    series = weekly(organizer)
    continuation = series_split(actor=organizer, meeting=series, recurrence_id=monday(3))
    series.refresh_from_db()
    assert all_starts(series) == [monday(1), monday(2)]
    assert continuation.rrule == "FREQ=WEEKLY;BYDAY=MO"
    assert continuation.series_end is None
    assert all_starts(continuation)[:3] == [monday(3), monday(4), monday(5)]


def test_series_split_of_a_series_with_until_keeps_its_end(organizer):
    series = weekly(organizer, until=monday(5).astimezone(UTC))
    continuation = series_split(actor=organizer, meeting=series, recurrence_id=monday(3))
    assert all_starts(series) == [monday(1), monday(2)]
    assert continuation.rrule == "FREQ=WEEKLY;BYDAY=MO;UNTIL=20260504T080000Z"
    assert all_starts(continuation) == [monday(3), monday(4), monday(5)]


def test_series_split_copies_attendees_with_their_answers(series, organizer, colleague):
    attendee_respond(
        actor=colleague,
        attendee=Attendee.objects.get(meeting=series, user=colleague),
        partstat="declined",
    )
    continuation = series_split(actor=organizer, meeting=series, recurrence_id=monday(4))

    def rows(meeting):
        return {
            (a.email, a.user_id, a.role, a.partstat, a.responded_at)
            for a in Attendee.objects.filter(meeting=meeting)
        }

    assert rows(continuation) == rows(series)
    assert (colleague.email, colleague.pk, "required", PartStat.DECLINED, NOW) in rows(continuation)


def test_series_split_copies_co_organizers(organizer, agency, make_member):
    co = make_member(agency, Role.MEMBER)
    series = meeting_schedule(
        actor=organizer,
        title="Sync",
        start=monday(1),
        end=monday(1, 11),
        timezone="Europe/Paris",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",), count=5),
        co_organizers=[co],
    )
    continuation = series_split(actor=organizer, meeting=series, recurrence_id=monday(2))
    assert list(continuation.co_organizers.all()) == [co]


def test_series_split_moves_later_exceptions_to_the_new_series(series, organizer):
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(6))
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(7),
        start=monday(7, 15),
        end=monday(7, 16),
    )
    continuation = series_split(actor=organizer, meeting=series, recurrence_id=monday(4))
    assert set(series.exceptions.values_list("recurrence_id", flat=True)) == {monday(2)}
    assert set(continuation.exceptions.values_list("recurrence_id", flat=True)) == {
        monday(6),
        monday(7),
    }
    assert all_starts(series) == [monday(1), monday(3)]
    assert all_starts(continuation) == [
        monday(4),
        monday(5),
        monday(7, 15),
        monday(8),
        monday(9),
        monday(10),
    ]


def test_series_split_count_counts_cancelled_occurrences_too(series, organizer):
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    continuation = series_split(actor=organizer, meeting=series, recurrence_id=monday(4))
    assert continuation.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=7"


def test_series_split_applies_a_new_title_to_the_new_series_only(series, organizer):
    continuation = series_split(
        actor=organizer, meeting=series, recurrence_id=monday(4), title="Steering committee"
    )
    series.refresh_from_db()
    continuation.refresh_from_db()
    assert (series.title, continuation.title) == ("Weekly sync", "Steering committee")
    assert continuation.sequence == 0
    assert [e.action for e in AuditEvent.objects.order_by("id")] == [
        "series.split",
        "meeting.updated",
    ]


def test_series_split_applies_a_new_time_to_the_new_series_only(series, organizer, colleague):
    attendee_respond(
        actor=colleague,
        attendee=Attendee.objects.get(meeting=series, user=colleague),
        partstat="accepted",
    )
    continuation = series_split(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(4),
        start=monday(4, 14),
        end=monday(4, 15),
    )
    assert all_starts(series) == [monday(1), monday(2), monday(3)]
    assert all_starts(continuation) == [monday(n, 14) for n in range(4, 11)]
    assert continuation.series_end == monday(10, 15)
    assert continuation.sequence == 1
    # The new time needs new answers; the old series keeps them.
    assert Attendee.objects.get(meeting=continuation, user=colleague).partstat == (
        PartStat.NEEDS_ACTION
    )
    assert Attendee.objects.get(meeting=series, user=colleague).partstat == PartStat.ACCEPTED


def test_series_split_at_the_first_occurrence_is_a_plain_update(series, organizer):
    result = series_split(
        actor=organizer, meeting=series, recurrence_id=monday(1), title="Steering committee"
    )
    assert result.pk == series.pk
    series.refresh_from_db()
    assert (series.uid, series.title, series.rrule) == (
        result.uid,
        "Steering committee",
        "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
    )
    assert Meeting.objects.count() == 1
    assert [e.action for e in AuditEvent.objects.all()] == ["meeting.updated"]


def test_series_split_at_an_occurrence_that_does_not_exist_is_not_found(series, organizer):
    with pytest.raises(NotFound):
        series_split(actor=organizer, meeting=series, recurrence_id=monday(4, 9))
    assert Meeting.objects.count() == 1
    series.refresh_from_db()
    assert series.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=10"


def test_series_split_by_attendee_is_forbidden(series, colleague):
    with pytest.raises(Forbidden):
        series_split(actor=colleague, meeting=series, recurrence_id=monday(4), title="Mine")
    assert Meeting.objects.count() == 1
