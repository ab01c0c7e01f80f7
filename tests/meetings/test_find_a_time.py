"""Find a time: working hours in the organizer's zone across DST, weekends, ranking, validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from agencies.models import Role
from meetings.freebusy import Slot, find_a_time
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, meeting_schedule
from visio_broker.errors import InvalidInput

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # Friday 20 March 2026


def utc(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def schedule(organizer, start, minutes, attendees, **extra):
    return meeting_schedule(
        actor=organizer,
        title="Busy",
        start=start,
        end=start + timedelta(minutes=minutes),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(person.email) for person in attendees],
        **extra,
    )


def starts(slots: list[Slot]) -> list[datetime]:
    return [slot.start for slot in slots]


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


@pytest.fixture
def find(organizer):
    def run(**arguments):
        arguments.setdefault("optional", [])
        arguments.setdefault("duration", timedelta(hours=1))
        arguments.setdefault("timezone", "Europe/Paris")
        arguments.setdefault("last_day", arguments["first_day"])
        return find_a_time(viewer=organizer, **arguments)

    return run


@pytest.mark.parametrize(
    ("day", "first_start"),
    [
        (date(2026, 3, 27), utc("2026-03-27", 8)),  # Friday before the change: 09:00 CET
        (date(2026, 3, 30), utc("2026-03-30", 7)),  # Monday after it: 09:00 CEST
    ],
)
def test_find_a_time_starts_at_nine_local_time_on_either_side_of_dst(find, alice, day, first_start):
    slots = find(required=[alice.email], first_day=day, limit=3)

    assert slots == [
        Slot(first_start, first_start + timedelta(hours=1), 0, 0),
        Slot(first_start + timedelta(minutes=15), first_start + timedelta(minutes=75), 0, 0),
        Slot(first_start + timedelta(minutes=30), first_start + timedelta(minutes=90), 0, 0),
    ]


def test_find_a_time_ends_slots_by_the_end_of_working_hours(find, organizer, alice):
    # Busy 09:00-16:30 Paris on Monday 30 March (07:00-14:30 UTC).
    schedule(organizer, utc("2026-03-30", 7), 450, [alice])

    hour = find(required=[alice.email], first_day=date(2026, 3, 30), last_day=date(2026, 3, 31))
    half_hour = find(
        required=[alice.email],
        first_day=date(2026, 3, 30),
        duration=timedelta(minutes=30),
        limit=2,
    )

    # 16:30-17:30 would run past 17:00: the next hour-long slot is Tuesday 09:00 Paris.
    assert starts(hour)[0] == utc("2026-03-31", 7)
    assert half_hour == [Slot(utc("2026-03-30", 14, 30), utc("2026-03-30", 15), 0, 0)]


def test_find_a_time_respects_the_working_hours_given(find, alice):
    slots = find(
        required=[alice.email],
        first_day=date(2026, 3, 30),
        work_start=time(8, 30),
        work_end=time(12, 0),
        duration=timedelta(hours=2),
        step=timedelta(minutes=30),
        limit=10,
    )

    # 08:30, 09:00, 09:30 and 10:00 Paris; 10:30 would end after 12:00.
    assert starts(slots) == [
        utc("2026-03-30", 6, 30),
        utc("2026-03-30", 7),
        utc("2026-03-30", 7, 30),
        utc("2026-03-30", 8),
    ]


def test_find_a_time_skips_weekends_unless_asked(find, organizer, alice):
    schedule(organizer, utc("2026-04-03", 7), 480, [alice])  # all of Friday 3 April

    weekdays = find(required=[alice.email], first_day=date(2026, 4, 3), last_day=date(2026, 4, 6))
    weekends = find(
        required=[alice.email],
        first_day=date(2026, 4, 3),
        last_day=date(2026, 4, 6),
        include_weekends=True,
    )

    assert starts(weekdays)[0] == utc("2026-04-06", 7)  # Monday
    assert starts(weekends)[0] == utc("2026-04-04", 7)  # Saturday


def test_find_a_time_returns_the_earliest_slots_where_all_required_are_free(
    find, organizer, alice, bob
):
    # Alice busy 09:00-10:00 Paris, Bob 10:00-11:30 Paris on Monday 30 March.
    schedule(organizer, utc("2026-03-30", 7), 60, [alice])
    schedule(organizer, utc("2026-03-30", 8), 90, [bob])

    slots = find(
        required=[alice.email, bob.email],
        first_day=date(2026, 3, 30),
        duration=timedelta(minutes=30),
        limit=4,
    )

    assert starts(slots) == [
        utc("2026-03-30", 9, 30),
        utc("2026-03-30", 9, 45),
        utc("2026-03-30", 10),
        utc("2026-03-30", 10, 15),
    ]


def test_find_a_time_counts_series_occurrences_across_the_dst_change(find, organizer, alice):
    # A daily stand-up at 09:00 Paris from Thursday 26 March, across the change on the 29th.
    schedule(
        organizer,
        datetime(2026, 3, 26, 9, 0, tzinfo=PARIS),
        30,
        [alice],
        recurrence=Recurrence(freq="DAILY"),
    )

    before = find(required=[alice.email], first_day=date(2026, 3, 27), limit=1)
    after = find(required=[alice.email], first_day=date(2026, 3, 30), limit=1)

    assert starts(before) == [utc("2026-03-27", 8, 30)]  # 09:30 CET
    assert starts(after) == [utc("2026-03-30", 7, 30)]  # 09:30 CEST


def test_find_a_time_scores_optional_attendees(find, organizer, alice, bob, agency, make_member):
    carol = make_member(agency, Role.MEMBER, email="carol@test.gouv.example")
    schedule(organizer, utc("2026-03-30", 7), 60, [bob])  # Bob busy 09:00-10:00 Paris

    slots = find(
        required=[alice.email],
        optional=[bob.email, carol.email, "guest@elsewhere.example"],
        first_day=date(2026, 3, 30),
        step=timedelta(minutes=30),
        limit=3,
    )

    # The external guest is unknown: not counted either way.
    assert slots == [
        Slot(utc("2026-03-30", 7), utc("2026-03-30", 8), 1, 2),
        Slot(utc("2026-03-30", 7, 30), utc("2026-03-30", 8, 30), 1, 2),
        Slot(utc("2026-03-30", 8), utc("2026-03-30", 9), 2, 2),
    ]


def test_find_a_time_ignores_unknown_required_people_and_the_viewer_unless_listed(
    find, organizer, alice
):
    schedule(organizer, utc("2026-03-30", 7), 60, [alice])  # the organizer is busy too

    without_viewer = find(
        required=["guest@elsewhere.example"], first_day=date(2026, 3, 30), limit=1
    )
    with_viewer = find(required=[organizer.email], first_day=date(2026, 3, 30), limit=1)

    assert starts(without_viewer) == [utc("2026-03-30", 7)]
    assert starts(with_viewer) == [utc("2026-03-30", 8)]


def test_find_a_time_proposes_nothing_before_now(find, alice):
    with time_machine.travel(utc("2026-03-30", 10, 7), tick=False):
        slots = find(required=[alice.email], first_day=date(2026, 3, 30), limit=2)
        explicit = find(
            required=[alice.email],
            first_day=date(2026, 3, 30),
            limit=1,
            not_before=utc("2026-03-30", 14, 55),
        )

    # Slots stay aligned on 09:00 Paris (07:00 UTC) every 15 minutes.
    assert starts(slots) == [utc("2026-03-30", 10, 15), utc("2026-03-30", 10, 30)]
    assert explicit == []  # 17:00 Paris would be the next slot start: past working hours


def test_find_a_time_answers_nothing_for_a_past_range(find, alice):
    assert find(required=[alice.email], first_day=date(2026, 3, 2), last_day=date(2026, 3, 6)) == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"duration": timedelta(0)}, "invalid_duration"),
        ({"duration": timedelta(minutes=-30)}, "invalid_duration"),
        ({"duration": timedelta(hours=8, minutes=15)}, "duration_too_long"),
        ({"last_day": date(2026, 3, 29)}, "invalid_date_range"),
        ({"last_day": date(2026, 5, 31)}, "date_range_too_long"),
        ({"timezone": "Europe/Atlantis"}, "invalid_timezone"),
        ({"work_start": time(17), "work_end": time(9)}, "invalid_working_hours"),
        ({"required": [f"p{n}@elsewhere.example" for n in range(101)]}, "too_many_attendees"),
        ({"limit": 0}, "invalid_limit"),
        ({"step": timedelta(minutes=1)}, "invalid_step"),
        ({"not_before": datetime(2026, 3, 30, 9)}, "naive_datetime"),  # noqa: DTZ001
    ],
)
def test_find_a_time_rejects_invalid_input(find, alice, overrides, code):
    arguments = {"required": [alice.email], "first_day": date(2026, 3, 30), **overrides}

    with pytest.raises(InvalidInput) as caught:
        find(**arguments)

    assert caught.value.code == code
    assert caught.value.message


def test_find_a_time_accepts_sixty_two_days_and_a_full_working_day(find, alice):
    slots = find(
        required=[alice.email],
        first_day=date(2026, 3, 30),
        last_day=date(2026, 5, 30),
        duration=timedelta(hours=8),
        limit=2,
    )

    assert starts(slots) == [utc("2026-03-30", 7), utc("2026-03-31", 7)]


def test_find_a_time_query_count_does_not_grow_with_people(
    find, organizer, agency, make_member, django_assert_max_num_queries
):
    people = [make_member(agency, Role.MEMBER, email=f"p{n}@test.gouv.example") for n in range(12)]
    for n, person in enumerate(people):
        schedule(
            organizer,
            utc("2026-03-30", 7) + timedelta(minutes=15 * n),
            15,
            [person],
            recurrence=Recurrence(freq="DAILY", count=3),
        )

    # People, (meeting, person) pairs, exceptions of the series.
    with django_assert_max_num_queries(3):
        slots = find(
            required=[p.email for p in people[:8]],
            optional=[p.email for p in people[8:]],
            first_day=date(2026, 3, 30),
            last_day=date(2026, 4, 10),
            limit=1,
        )

    # The eight required people fill 09:00-11:00 Paris; the optional ones 11:00-12:00.
    assert slots == [Slot(utc("2026-03-30", 9), utc("2026-03-30", 10), 0, 4)]
