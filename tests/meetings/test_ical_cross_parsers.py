"""Calendar clients compute the same occurrences as our database, across DST changes.

ical.js (Thunderbird, Nextcloud) converts with the feed's own VTIMEZONE blocks;
recurring-ical-events (Python) checks RRULE, EXDATE and RECURRENCE-ID handling; vobject reads
the VTIMEZONE too. Every occurrence's UTC start over the next three years must match
``meeting_occurrences``: cancelled ones absent, moved ones at their new time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
import time_machine
import vobject

from agencies.models import Role
from meetings import ical
from meetings.ical import EventOptions, calendar, vtimezone_block
from meetings.models import Meeting
from meetings.recurrence import Recurrence
from meetings.selectors import meeting_occurrences, with_details
from meetings.services import meeting_schedule, occurrence_cancel, occurrence_move
from tests.meetings.test_ical_validity import ZONES, run_node

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
WINDOW = (NOW, NOW + timedelta(days=3 * 365 + 1))


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _no_process_cache():
    ical.clear_local_cache()
    yield
    ical.clear_local_cache()


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orla@test.gouv.example")


def at(zone: str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


def schedule(organizer, zone: str, title: str, start: tuple, minutes: int, **kwargs) -> Meeting:
    begin = at(zone, *start)
    return meeting_schedule(
        actor=organizer,
        title=f"{title} ({zone})",
        start=begin,
        end=begin + timedelta(minutes=minutes),
        timezone=zone,
        **kwargs,
    )


def zone_meetings(organizer, zone: str) -> list[Meeting]:
    """One-off and recurring meetings whose occurrences straddle the March and October changes
    (Europe: last Sundays; New York: second Sunday of March, first of November)."""
    made = [
        schedule(organizer, zone, "Winter one-off", (2026, 2, 20, 10), 60),
        schedule(organizer, zone, "Summer one-off", (2026, 7, 6, 10), 90),
        schedule(organizer, zone, "Late night", (2026, 10, 24, 23, 30), 120),
    ]
    weekly = schedule(
        organizer,
        zone,
        "Weekly",
        (2026, 2, 16, 9, 30),
        45,
        recurrence=Recurrence(freq="WEEKLY", weekdays=("MO", "TH")),
    )
    occurrence_cancel(actor=organizer, meeting=weekly, recurrence_id=at(zone, 2026, 3, 30, 9, 30))
    occurrence_cancel(actor=organizer, meeting=weekly, recurrence_id=at(zone, 2026, 11, 2, 9, 30))
    # Moved across the change: from before the March Sunday to after it, and the reverse in
    # October; and one moved to another day far ahead.
    moves = [
        ((2026, 3, 26, 9, 30), (2026, 3, 31, 16, 0)),
        ((2026, 10, 29, 9, 30), (2026, 10, 23, 8, 0)),
        ((2027, 6, 14, 9, 30), (2027, 6, 18, 13, 15)),
    ]
    for original, moved in moves:
        occurrence_move(
            actor=organizer,
            meeting=weekly,
            recurrence_id=at(zone, *original),
            start=at(zone, *moved),
            end=at(zone, *moved) + timedelta(minutes=45),
        )
    made.append(weekly)
    made.append(
        schedule(
            organizer,
            zone,
            "Daily spring",
            (2026, 3, 1, 8),
            30,
            recurrence=Recurrence(freq="DAILY", count=60),
        )
    )
    made.append(
        schedule(
            organizer,
            zone,
            "Every other day in autumn",
            (2026, 10, 10, 18),
            30,
            recurrence=Recurrence(
                freq="DAILY", interval=2, until=datetime(2026, 11, 20, 23, tzinfo=UTC)
            ),
        )
    )
    made.append(
        schedule(
            organizer,
            zone,
            "Second Tuesday",
            (2026, 3, 10, 14),
            60,
            recurrence=Recurrence(freq="MONTHLY", nth=2, weekdays=("TU",)),
        )
    )
    made.append(
        schedule(
            organizer,
            zone,
            "Last Sunday",
            (2026, 3, 29, 12),
            60,
            recurrence=Recurrence(freq="MONTHLY", nth=-1, weekdays=("SU",), count=36),
        )
    )
    made.append(
        schedule(
            organizer,
            zone,
            "Monthly on the 31st",
            (2026, 3, 31, 7, 45),
            30,
            recurrence=Recurrence(freq="MONTHLY", month_day=31),
        )
    )
    made.append(
        schedule(
            organizer,
            zone,
            "Yearly first Sunday of November",
            (2026, 11, 1, 11),
            60,
            recurrence=Recurrence(freq="YEARLY", month=11, nth=1, weekdays=("SU",)),
        )
    )
    return made


@pytest.fixture
def meetings(organizer) -> list[Meeting]:
    made = [m for zone in ZONES for m in zone_meetings(organizer, zone)]
    return list(with_details(Meeting.objects.filter(pk__in=[m.pk for m in made])))


@pytest.fixture
def data(meetings) -> bytes:
    return calendar(name="Agenda", meetings=meetings, options_for=lambda _m: EventOptions())


Occurrences = set[tuple[str, datetime, datetime]]


def expected(meetings: list[Meeting]) -> Occurrences:
    """What the database says."""
    found = {
        (occ.meeting.uid, occ.start, occ.end)
        for meeting in meetings
        for occ in meeting_occurrences(meeting, *WINDOW)
        if not occ.cancelled
    }
    assert len(found) > 2000
    return found


def overlapping(uid: str, start: datetime, end: datetime) -> bool:
    return start < WINDOW[1] and end > WINDOW[0]


def test_icaljs_computes_every_occurrence_like_the_database(data, meetings):
    # Past the window: an occurrence moved into it from later still counts.
    until = WINDOW[1] + timedelta(days=400)
    found = run_node(
        "icaljs_occurrences.mjs",
        str(int(until.timestamp())),
        stdin=data.decode(),
        packages=("ical.js",),
    )
    assert isinstance(found, list)
    icaljs = {
        (o["uid"], datetime.fromtimestamp(o["start"], UTC), datetime.fromtimestamp(o["end"], UTC))
        for o in found
    }
    assert {o for o in icaljs if overlapping(*o)} == expected(meetings)


def test_recurring_ical_events_computes_every_occurrence_like_the_database(data, meetings):
    parsed = icalendar.Calendar.from_ical(data)
    found = {
        (str(event["UID"]), event["DTSTART"].dt.astimezone(UTC), event["DTEND"].dt.astimezone(UTC))
        for event in recurring_ical_events.of(parsed).between(*WINDOW)
    }
    assert {o for o in found if overlapping(*o)} == expected(meetings)


def test_moved_and_cancelled_occurrences_are_where_the_database_says(data, meetings):
    """Spot checks of the sets above, in words: a reader sees the DST arithmetic."""
    weekly = next(m for m in meetings if m.title == "Weekly (Europe/Berlin)")
    parsed = icalendar.Calendar.from_ical(data)
    starts = {
        event["DTSTART"].dt.astimezone(UTC)
        for event in recurring_ical_events.of(parsed).between(*WINDOW)
        if str(event["UID"]) == weekly.uid
    }
    assert datetime(2026, 3, 23, 8, 30, tzinfo=UTC) in starts  # 09:30 CET
    assert datetime(2026, 3, 26, 8, 30, tzinfo=UTC) not in starts  # moved …
    assert datetime(2026, 3, 31, 14, tzinfo=UTC) in starts  # … to 16:00 CEST
    assert datetime(2026, 3, 30, 7, 30, tzinfo=UTC) not in starts  # cancelled
    assert datetime(2026, 4, 2, 7, 30, tzinfo=UTC) in starts  # 09:30 CEST


def test_vobject_reads_our_vtimezone_berlin_summer_meeting_at_0800z(data, meetings):
    parsed = vobject.readOne(data.decode())
    event = next(
        e for e in parsed.vevent_list if e.summary.value == "Summer one-off (Europe/Berlin)"
    )
    start = event.dtstart.value
    assert (start.hour, start.minute) == (10, 0)
    assert start.astimezone(UTC) == datetime(2026, 7, 6, 8, 0, tzinfo=UTC)
    winter = next(
        e for e in parsed.vevent_list if e.summary.value == "Winter one-off (Europe/Berlin)"
    )
    assert winter.dtstart.value.astimezone(UTC) == datetime(2026, 2, 20, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "zones",
    [
        ZONES,
        (
            "Europe/London",
            "Asia/Tokyo",
            "Australia/Sydney",
            "America/Sao_Paulo",
            "America/Nuuk",
            "Asia/Jerusalem",
            "Africa/Casablanca",
            "Africa/Cairo",
            "Europe/Dublin",
        ),
    ],
    ids=["feed-zones", "other-rules"],
)
def test_icaljs_reads_our_vtimezones_like_zoneinfo_every_half_hour_for_three_years(zones):
    """Each wall-clock time, as ical.js reads a DTSTART;TZID, lands on zoneinfo's instant.

    Except the times in a spring-forward gap or in the repeated autumn hour: RFC 5545 reads
    them with the offset before the change (zoneinfo's ``fold=0``); ical.js applies the new
    offset whatever the VTIMEZONE says (``Timezone.utcOffset``, "want_daylight = false").
    """
    ics = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:test\r\n"
    ics += b"".join(vtimezone_block(tzid) for tzid in zones) + b"END:VCALENDAR\r\n"
    naive_start = WINDOW[0].replace(tzinfo=None)
    walls = [naive_start + timedelta(minutes=30 * n) for n in range(2 * 24 * (3 * 365 + 1))]
    found = run_node(
        "icaljs_offsets.mjs",
        stdin=json.dumps(
            {
                "ics": ics.decode(),
                "walls": [int(wall.replace(tzinfo=UTC).timestamp()) for wall in walls],
            }
        ),
        packages=("ical.js",),
    )
    assert isinstance(found, dict)
    assert sorted(found) == sorted(zones)
    for tzid in zones:
        zone = ZoneInfo(tzid)
        unambiguous = [
            (wall, theirs)
            for wall, theirs in zip(walls, found[tzid], strict=True)
            if not gap_or_fold(wall, zone)
        ]
        assert len(unambiguous) > 0.99 * len(walls)
        mismatches = [
            (wall, datetime.fromtimestamp(theirs, UTC))
            for wall, theirs in unambiguous
            if wall.replace(tzinfo=zone).timestamp() != theirs
        ]
        assert not mismatches, (tzid, mismatches[:5])


def gap_or_fold(wall: datetime, zone: ZoneInfo) -> bool:
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    return first.utcoffset() != second.utcoffset()
