"""Free/busy: hand-computed busy intervals, exceptions, DST, privacy and a constant query count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agencies.models import Role
from meetings.freebusy import Busy, FreeBusy, freebusy
from meetings.recurrence import Recurrence
from meetings.selectors import meeting_occurrences
from meetings.services import (
    AttendeeSpec,
    attendee_respond,
    meeting_cancel,
    meeting_schedule,
    occurrence_cancel,
    occurrence_move,
)
from visio_broker.errors import InvalidInput

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # Monday 2 March 2026, before everything below


def utc(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def paris(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=PARIS)


def schedule(organizer, title, start, minutes=60, attendees=(), timezone="Europe/Paris", **extra):
    return meeting_schedule(
        actor=organizer,
        title=title,
        start=start,
        end=start + timedelta(minutes=minutes),
        timezone=timezone,
        attendees=[AttendeeSpec(person.email) for person in attendees],
        **extra,
    )


def spans(result: FreeBusy) -> list[tuple[datetime, datetime]]:
    return [(busy.start, busy.end) for busy in result.busy]


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="org@test.gouv.example")


@pytest.fixture
def alice(agency, make_member):
    return make_member(agency, Role.MEMBER, email="alice@test.gouv.example")


@pytest.fixture
def bob(other_agency, make_member):
    return make_member(other_agency, Role.MEMBER, email="bob@test.bund.example")


def test_freebusy_merges_overlapping_meetings_and_keeps_single_ones_titled(organizer, alice):
    a = schedule(organizer, "A", utc("2026-03-10", 9), 60, [alice])
    b = schedule(organizer, "B", utc("2026-03-10", 9, 30), 90, [alice])
    c = schedule(organizer, "C", utc("2026-03-10", 11), 30, [alice])  # touches B: not merged
    d = schedule(organizer, "D", utc("2026-03-10", 14), 60, [alice])

    result = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-03-10", 0), end=utc("2026-03-11", 0)
    )

    assert result == {
        alice.email: FreeBusy(
            email=alice.email,
            known=True,
            busy=[
                Busy(utc("2026-03-10", 9), utc("2026-03-10", 11), None, None),
                Busy(utc("2026-03-10", 11), utc("2026-03-10", 11, 30), c.pk, "C"),
                Busy(utc("2026-03-10", 14), utc("2026-03-10", 15), d.pk, "D"),
            ],
        )
    }
    assert {a.pk, b.pk}.isdisjoint({busy.meeting_id for busy in result[alice.email].busy})


def test_freebusy_clips_to_the_window(organizer, alice):
    schedule(organizer, "Long", utc("2026-03-10", 8), 120, [alice])

    result = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-03-10", 9), end=utc("2026-03-10", 9, 30)
    )

    assert spans(result[alice.email]) == [(utc("2026-03-10", 9), utc("2026-03-10", 9, 30))]


def test_freebusy_excludes_declined_and_cancelled_meetings(organizer, alice):
    declined = schedule(organizer, "Declined", utc("2026-03-10", 9), 60, [alice])
    attendee_respond(actor=alice, attendee=declined.attendees.get(user=alice), partstat="declined")
    cancelled = schedule(organizer, "Cancelled", utc("2026-03-10", 11), 60, [alice])
    meeting_cancel(actor=organizer, meeting=cancelled)
    tentative = schedule(organizer, "Tentative", utc("2026-03-10", 13), 60, [alice])
    attendee_respond(
        actor=alice, attendee=tentative.attendees.get(user=alice), partstat="tentative"
    )
    schedule(organizer, "Unanswered", utc("2026-03-10", 15), 60, [alice])

    result = freebusy(
        viewer=organizer,
        emails=[alice.email, organizer.email],
        start=utc("2026-03-10", 0),
        end=utc("2026-03-11", 0),
    )

    assert spans(result[alice.email]) == [
        (utc("2026-03-10", 13), utc("2026-03-10", 14)),
        (utc("2026-03-10", 15), utc("2026-03-10", 16)),
    ]
    # The organizer stays busy for a meeting an attendee declined, not for a cancelled one.
    assert spans(result[organizer.email]) == [
        (utc("2026-03-10", 9), utc("2026-03-10", 10)),
        (utc("2026-03-10", 13), utc("2026-03-10", 14)),
        (utc("2026-03-10", 15), utc("2026-03-10", 16)),
    ]


def test_freebusy_counts_co_organizers(organizer, alice, make_member, agency):
    co = make_member(agency, Role.ORGANIZER, email="co@test.gouv.example")
    schedule(organizer, "Planning", utc("2026-03-10", 9), 60, [alice], co_organizers=[co])

    result = freebusy(
        viewer=co, emails=[co.email], start=utc("2026-03-10", 0), end=utc("2026-03-11", 0)
    )

    assert spans(result[co.email]) == [(utc("2026-03-10", 9), utc("2026-03-10", 10))]


def test_freebusy_skips_cancelled_occurrence_and_counts_moved_one_at_its_new_time(organizer, alice):
    series = schedule(
        organizer,
        "Weekly",
        paris("2026-03-03", 10),
        60,
        [alice],
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=4),
    )
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=utc("2026-03-10", 9))
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=utc("2026-03-17", 9),
        start=utc("2026-03-18", 14),
        end=utc("2026-03-18", 15),
    )

    whole = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-03-02", 0), end=utc("2026-03-23", 0)
    )
    # Only the moved occurrence's new day: the series itself has nothing there.
    moved_day = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-03-18", 0), end=utc("2026-03-19", 0)
    )
    original_day = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-03-17", 0), end=utc("2026-03-18", 0)
    )

    assert whole[alice.email].busy == [
        Busy(utc("2026-03-03", 9), utc("2026-03-03", 10), series.pk, "Weekly"),
        Busy(utc("2026-03-18", 14), utc("2026-03-18", 15), series.pk, "Weekly"),
    ]
    assert spans(moved_day[alice.email]) == [(utc("2026-03-18", 14), utc("2026-03-18", 15))]
    assert original_day[alice.email].busy == []


def test_freebusy_expands_a_recurring_meeting_only_inside_the_window(organizer, alice):
    schedule(
        organizer,
        "Stand-up",
        utc("2026-03-02", 8),
        15,
        [alice],
        timezone="UTC",
        recurrence=Recurrence(freq="DAILY", count=30),
    )

    result = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-03-05", 8, 10), end=utc("2026-03-08", 0)
    )

    assert spans(result[alice.email]) == [
        (utc("2026-03-05", 8, 10), utc("2026-03-05", 8, 15)),
        (utc("2026-03-06", 8), utc("2026-03-06", 8, 15)),
        (utc("2026-03-07", 8), utc("2026-03-07", 8, 15)),
    ]


def test_freebusy_keeps_the_wall_clock_time_across_the_march_dst_change(organizer, alice):
    schedule(
        organizer,
        "Weekly",
        paris("2026-03-24", 10),
        60,
        [alice],
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",)),
    )

    result = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-03-23", 0), end=utc("2026-04-01", 0)
    )

    assert spans(result[alice.email]) == [
        (utc("2026-03-24", 9), utc("2026-03-24", 10)),  # 10:00 CET
        (utc("2026-03-31", 8), utc("2026-03-31", 9)),  # 10:00 CEST
    ]


def test_freebusy_expands_an_endless_series_far_from_its_start(organizer, alice):
    schedule(
        organizer,
        "Fortnightly",
        paris("2026-03-03", 10),
        60,
        [alice],
        recurrence=Recurrence(freq="WEEKLY", interval=2, weekdays=("TU",)),
    )
    schedule(
        organizer,
        "Daily",
        paris("2026-03-02", 17),
        30,
        [alice],
        recurrence=Recurrence(freq="DAILY", interval=3),
    )

    # Tuesdays 3, 17, 31 March, 14 and 28 April, 12 May; every third day from 2 March:
    # ... 28 April, 1, 4, 7, 10 and 13 May.
    result = freebusy(
        viewer=alice, emails=[alice.email], start=utc("2026-05-09", 0), end=utc("2026-05-15", 0)
    )

    assert spans(result[alice.email]) == [
        (utc("2026-05-10", 15), utc("2026-05-10", 15, 30)),
        (utc("2026-05-12", 8), utc("2026-05-12", 9)),
        (utc("2026-05-13", 15), utc("2026-05-13", 15, 30)),
    ]


@pytest.mark.parametrize(
    ("viewer_name", "sees_title"),
    [
        ("alice", True),  # attendee
        ("organizer", True),
        ("host_admin", True),  # admin of the host agency may see the meeting
        ("colleague", False),  # same agency, not invited
        ("bob", False),  # another agency
    ],
)
def test_freebusy_shows_titles_only_to_people_sharing_the_meeting(
    viewer_name, sees_title, organizer, alice, bob, agency, make_member
):
    people = {
        "alice": alice,
        "organizer": organizer,
        "bob": bob,
        "host_admin": make_member(agency, Role.ADMIN),
        "colleague": make_member(agency, Role.MEMBER),
    }
    secret = schedule(organizer, "Reorganisation", utc("2026-03-10", 9), 60, [alice])

    result = freebusy(
        viewer=people[viewer_name],
        emails=[alice.email],
        start=utc("2026-03-10", 0),
        end=utc("2026-03-11", 0),
    )

    expected = (secret.pk, "Reorganisation") if sees_title else (None, None)
    assert result[alice.email].busy == [
        Busy(utc("2026-03-10", 9), utc("2026-03-10", 10), *expected)
    ]


def test_freebusy_marks_people_not_on_this_instance_unknown(organizer, alice, make_member, agency):
    gone = make_member(agency, Role.MEMBER, email="gone@test.gouv.example", is_active=False)
    schedule(organizer, "Meeting", utc("2026-03-10", 9), 60, [alice, gone])
    emails = ["ALICE@Test.Gouv.Example", "someone@elsewhere.example", gone.email]

    result = freebusy(
        viewer=organizer, emails=emails, start=utc("2026-03-10", 0), end=utc("2026-03-11", 0)
    )

    assert list(result) == emails
    assert result["ALICE@Test.Gouv.Example"].known is True
    assert spans(result["ALICE@Test.Gouv.Example"]) == [
        (utc("2026-03-10", 9), utc("2026-03-10", 10))
    ]
    assert result["someone@elsewhere.example"] == FreeBusy(
        email="someone@elsewhere.example", known=False, busy=[]
    )
    assert result[gone.email] == FreeBusy(email=gone.email, known=False, busy=[])


def test_freebusy_leaves_the_viewer_out_unless_asked(organizer, alice):
    schedule(organizer, "Meeting", utc("2026-03-10", 9), 60, [alice])

    result = freebusy(
        viewer=organizer, emails=[alice.email], start=utc("2026-03-10", 0), end=utc("2026-03-11", 0)
    )

    assert list(result) == [alice.email]


@pytest.mark.parametrize(
    ("start", "end", "count", "code"),
    [
        (datetime(2026, 3, 10, 9), datetime(2026, 3, 10, 10), 1, "naive_datetime"),  # noqa: DTZ001
        (utc("2026-03-10", 10), utc("2026-03-10", 9), 1, "end_before_start"),
        (utc("2026-03-10", 9), utc("2026-03-10", 9), 1, "end_before_start"),
        (utc("2026-03-01", 0), utc("2026-05-03", 0), 1, "window_too_long"),
        (utc("2026-03-10", 0), utc("2026-03-11", 0), 101, "too_many_attendees"),
    ],
)
def test_freebusy_rejects_invalid_input(alice, start, end, count, code):
    emails = [f"person{n}@elsewhere.example" for n in range(count)]

    with pytest.raises(InvalidInput) as caught:
        freebusy(viewer=alice, emails=emails, start=start, end=end)

    assert caught.value.code == code


def _busy_people(organizer, agency, make_member, count):
    """``count`` people, each in a one-off meeting and a weekly series with both exceptions."""
    people = [
        make_member(agency, Role.MEMBER, email=f"p{n}@test.gouv.example") for n in range(count)
    ]
    for n, person in enumerate(people):
        schedule(
            organizer, f"One-off {n}", utc("2026-03-10", 9) + timedelta(minutes=n), 30, [person]
        )
        series = schedule(
            organizer,
            f"Series {n}",
            paris("2026-03-03", 14),
            60,
            [person],
            recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=5),
        )
        occurrence_cancel(actor=organizer, meeting=series, recurrence_id=utc("2026-03-10", 13))
        occurrence_move(
            actor=organizer,
            meeting=series,
            recurrence_id=utc("2026-03-17", 13),
            start=utc("2026-03-12", 15),
            end=utc("2026-03-12", 16),
        )
    return people


def test_freebusy_query_count_does_not_grow_with_people(
    organizer, agency, make_member, django_assert_max_num_queries
):
    people = _busy_people(organizer, agency, make_member, 20)
    window = {"start": utc("2026-03-09", 0), "end": utc("2026-03-16", 0)}

    with CaptureQueriesContext(connection) as two:
        freebusy(viewer=organizer, emails=[p.email for p in people[:2]], **window)
    # People, (meeting, person) pairs, exceptions of the series, meetings the viewer may see.
    with django_assert_max_num_queries(4):
        result = freebusy(viewer=organizer, emails=[p.email for p in people], **window)

    assert len(two.captured_queries) == 4
    assert all(
        spans(result[person.email])
        == [
            (utc("2026-03-10", 9) + timedelta(minutes=n), utc("2026-03-10", 9, 30 + n)),
            (utc("2026-03-12", 15), utc("2026-03-12", 16)),
        ]
        for n, person in enumerate(people)
    )


@pytest.mark.parametrize(
    "recurrence",
    [
        Recurrence(freq="DAILY"),
        Recurrence(freq="DAILY", interval=4),
        Recurrence(freq="WEEKLY", weekdays=("MO", "WE", "FR")),
        Recurrence(freq="WEEKLY", interval=3, weekdays=("SU", "TH")),
        Recurrence(freq="WEEKLY", weekdays=("TU",), until=datetime(2026, 9, 1, tzinfo=UTC)),
    ],
    ids=str,
)
def test_freebusy_agrees_with_meeting_occurrences_far_from_the_series_start(
    recurrence, organizer, alice
):
    series = schedule(
        organizer, "Series", paris("2026-03-04", 8, 30), 90, [alice], recurrence=recurrence
    )
    far = utc("2026-05-01", 0)
    first, _second, third = (
        occ.start for occ in meeting_occurrences(series, series.start, far)[:3]
    )
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=first)
    moved_start = third + timedelta(days=40, hours=5)  # clear of other occurrences
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=third,
        start=moved_start,
        end=moved_start + timedelta(minutes=90),
    )
    series.refresh_from_db()

    for offset in range(0, 200, 3):
        start = utc("2026-03-02", 0) + timedelta(days=offset, hours=offset % 24)
        end = start + timedelta(days=5)
        expected = [
            (max(occ.start, start), min(occ.end, end))
            for occ in meeting_occurrences(series, start, end)
            if not occ.cancelled
        ]
        result = freebusy(viewer=alice, emails=[alice.email], start=start, end=end)
        assert spans(result[alice.email]) == expected, start
