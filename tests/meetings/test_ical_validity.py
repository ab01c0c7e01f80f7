"""Feeds parse in icalendar, vobject, ical.js and node-ical, and keep STANDARDS.md's rules.

The feed holds one-off, recurring (with a cancelled and a moved occurrence), all-day and
cancelled meetings in five zones, with non-ASCII titles and descriptions full of the characters
TEXT escaping exists for.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
import time_machine
import vobject
from dateutil.rrule import rrulestr
from django.core.cache import cache
from django.db import connection

from agencies.models import Role
from agencies.reference import timezones
from meetings import ical
from meetings.ical import EventOptions, calendar, event_block, join_url, vtimezone_block
from meetings.models import Meeting
from meetings.recurrence import Recurrence
from meetings.selectors import meeting_occurrences, with_details
from meetings.services import (
    AttendeeSpec,
    attendee_respond,
    meeting_cancel,
    meeting_schedule,
    occurrence_cancel,
    occurrence_move,
)

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
NOW = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
ZONES = ("Europe/Paris", "Europe/Berlin", "Europe/Amsterdam", "America/New_York", "UTC")
LONG_DESCRIPTION = (
    "Ordre du jour; budget, effectifs, calendrier.\n"
    "Points: 1) état des lieux; 2) décisions, suivi\n"
    'Chemin: C:\\partage\\équipe — « guillemets » et "doubles"\n' + "Détails, " * 40
)
TITLES = {
    "Europe/Paris": "Comité de pilotage — réunion mensuelle, étape 2; suite",
    "Europe/Berlin": "Übergabe: Straßenbau, Größe; Ärger über Öffnungszeiten",
    "Europe/Amsterdam": "Overleg één: Zeeuws-Vlaanderen, ‘s-Hertogenbosch",
    "America/New_York": "Budget review 📅 Q3, FY27; follow-up",
    "UTC": "Koordination 日本語のタイトル、長い会議名のテスト",
}


# --- Node ----------------------------------------------------------------------------------------


def require_node(*packages: str) -> str:
    """The node binary, with ``packages`` installed; skip locally, fail in CI when missing."""
    node = shutil.which("node")
    missing = [p for p in packages if not (ROOT / "node_modules" / p / "package.json").exists()]
    if node is None or missing:
        reason = (
            "node is not installed"
            if node is None
            else f"node_modules lacks {', '.join(missing)} (run `npm ci` in the project root)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: the calendar parser checks must run in CI")
        pytest.skip(reason)
    return node


def run_node(script: str, *args: str, stdin: str, packages: tuple[str, ...]) -> object:
    """Run tests/node/<script> with ``stdin``; its JSON output, or a failure with its stderr."""
    node = require_node(*packages)
    result = subprocess.run(
        [node, str(NODE_DIR / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{script} failed:\n{result.stderr}")
    return json.loads(result.stdout)


# --- Data ----------------------------------------------------------------------------------------


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
    return make_member(
        agency, Role.ORGANIZER, email="orla@test.gouv.example", display_name="Orla Dupré, DINUM"
    )


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="camille@test.gouv.example")


def at(zone: str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


def build_meetings(organizer, colleague) -> dict[str, Meeting]:
    """One-off, weekly (one cancelled, one moved), all-day and cancelled meetings per zone."""
    made: dict[str, Meeting] = {}
    people = [
        AttendeeSpec(colleague.email),
        AttendeeSpec("extern@example.org", 'Zoë O\'Brien; "Partner", Ltd', "optional"),
    ]
    for zone in ZONES:
        made[f"{zone} one-off"] = meeting_schedule(
            actor=organizer,
            title=TITLES[zone],
            description=LONG_DESCRIPTION,
            start=at(zone, 2026, 7, 6, 10),
            end=at(zone, 2026, 7, 6, 11, 30),
            timezone=zone,
            attendees=people,
        )
        weekly = meeting_schedule(
            actor=organizer,
            title=f"Hebdo {zone}",
            description="Point d'équipe",
            start=at(zone, 2026, 3, 2, 9, 30),
            end=at(zone, 2026, 3, 2, 10),
            timezone=zone,
            recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",)),
            attendees=people,
        )
        occurrence_cancel(
            actor=organizer, meeting=weekly, recurrence_id=at(zone, 2026, 3, 16, 9, 30)
        )
        occurrence_move(
            actor=organizer,
            meeting=weekly,
            recurrence_id=at(zone, 2026, 3, 30, 9, 30),
            start=at(zone, 2026, 3, 31, 14),
            end=at(zone, 2026, 3, 31, 14, 30),
        )
        made[f"{zone} weekly"] = weekly
    made["all-day"] = meeting_schedule(
        actor=organizer,
        title="Séminaire, journée entière",
        start=at("Europe/Paris", 2026, 6, 15),
        end=at("Europe/Paris", 2026, 6, 17),
        timezone="Europe/Paris",
        all_day=True,
    )
    made["all-day series"] = meeting_schedule(
        actor=organizer,
        title="Permanence",
        start=at("America/New_York", 2026, 3, 6),
        end=at("America/New_York", 2026, 3, 7),
        timezone="America/New_York",
        all_day=True,
        recurrence=Recurrence(
            freq="WEEKLY", weekdays=("FR",), until=datetime(2026, 6, 1, 3, 59, 59, tzinfo=UTC)
        ),
    )
    occurrence_cancel(
        actor=organizer,
        meeting=made["all-day series"],
        recurrence_id=at("America/New_York", 2026, 3, 13),
    )
    occurrence_move(
        actor=organizer,
        meeting=made["all-day series"],
        recurrence_id=at("America/New_York", 2026, 3, 20),
        start=at("America/New_York", 2026, 3, 19),
        end=at("America/New_York", 2026, 3, 20),
    )
    made["until series"] = meeting_schedule(
        actor=organizer,
        title="Série bornée",
        start=at("Europe/Berlin", 2026, 3, 3, 16),
        end=at("Europe/Berlin", 2026, 3, 3, 17),
        timezone="Europe/Berlin",
        recurrence=Recurrence(
            freq="MONTHLY", nth=1, weekdays=("TU",), until=datetime(2027, 3, 31, tzinfo=UTC)
        ),
    )
    made["cancelled"] = meeting_cancel(
        actor=organizer,
        meeting=meeting_schedule(
            actor=organizer,
            title="Annulée",
            start=at("Europe/Amsterdam", 2026, 4, 1, 15),
            end=at("Europe/Amsterdam", 2026, 4, 1, 16),
            timezone="Europe/Amsterdam",
        ),
    )
    return made


def loaded(meetings: dict[str, Meeting]) -> list[Meeting]:
    return list(with_details(Meeting.objects.filter(pk__in=[m.pk for m in meetings.values()])))


def feed(meetings: list[Meeting], options: EventOptions | None = None) -> bytes:
    return calendar(
        name="Agenda d'Orla, DINUM",
        meetings=meetings,
        options_for=lambda _meeting: options or EventOptions(),
        method="PUBLISH",
    )


@pytest.fixture
def meetings(organizer, colleague) -> list[Meeting]:
    return loaded(build_meetings(organizer, colleague))


@pytest.fixture
def data(meetings) -> bytes:
    return feed(meetings)


def unfolded(data: bytes) -> list[str]:
    return data.decode().replace("\r\n ", "").split("\r\n")[:-1]


def vevent_lines(data: bytes) -> list[str]:
    """Content lines of the VEVENTs (VALARMs included), not of the VTIMEZONEs."""
    lines, inside = [], False
    for line in unfolded(data):
        inside = inside or line == "BEGIN:VEVENT"
        if inside:
            lines.append(line)
        inside = inside and line != "END:VEVENT"
    return lines


def utc_occurrences(meetings: list[Meeting], start: datetime, end: datetime) -> set:
    """What the database says: (uid, start, end) of every occurrence that takes place."""
    return {
        (occ.meeting.uid, occ.start, occ.end)
        for meeting in meetings
        for occ in meeting_occurrences(meeting, start, end)
        if not occ.cancelled
    }


# --- Parsers -------------------------------------------------------------------------------------


def test_feed_parses_with_icalendar_and_round_trips_text(data, meetings):
    parsed = icalendar.Calendar.from_ical(data)
    assert not parsed.errors
    events = parsed.walk("VEVENT")
    by_uid = {m.uid: m for m in meetings}
    masters = [e for e in events if "RECURRENCE-ID" not in e]
    assert sorted(str(e["UID"]) for e in masters) == sorted(by_uid)
    for event in events:
        assert not event.errors
        for name in ("UID", "DTSTAMP", "SEQUENCE", "DTSTART", "DTEND", "SUMMARY", "STATUS"):
            assert name in event, name
        assert "DURATION" not in event
        meeting = by_uid[str(event["UID"])]
        assert str(event["SUMMARY"]) == meeting.title
        assert event["DTSTAMP"].dt == meeting.updated_at.replace(microsecond=0)
        assert event["LAST-MODIFIED"].dt == meeting.updated_at.replace(microsecond=0)
        assert event["SEQUENCE"] == meeting.sequence
        url = join_url(meeting)
        expected = url + ("\n\n" + meeting.description if meeting.description else "")
        assert str(event["DESCRIPTION"]) == expected
        assert str(event["LOCATION"]) == url
        assert str(event["URL"]) == url
        if "RECURRENCE-ID" not in event:
            start = event["DTSTART"].dt
            if meeting.all_day:
                zone = ZoneInfo(meeting.timezone)
                assert start == meeting.start.astimezone(zone).date()
                assert event["DTEND"].dt == meeting.end.astimezone(zone).date()
            else:
                assert start == meeting.start
                assert str(start.tzinfo) == meeting.timezone
                assert event["DTEND"].dt == meeting.end
    one_off = next(e for e in masters if str(e["SUMMARY"]) == TITLES["Europe/Paris"])
    assert str(one_off["ORGANIZER"]) == "mailto:orla@test.gouv.example"
    assert one_off["ORGANIZER"].params["CN"] == "Orla Dupré, DINUM"
    guest = next(a for a in one_off["ATTENDEE"] if str(a) == "mailto:extern@example.org")
    assert guest.params["CN"] == "Zoë O'Brien; 'Partner', Ltd"
    assert guest.params["ROLE"] == "OPT-PARTICIPANT"
    assert guest.params["PARTSTAT"] == "NEEDS-ACTION"
    assert guest.params["RSVP"] == "TRUE"
    chair = next(a for a in one_off["ATTENDEE"] if str(a) == "mailto:orla@test.gouv.example")
    assert (chair.params["ROLE"], chair.params["PARTSTAT"]) == ("CHAIR", "ACCEPTED")


def test_feed_parses_with_vobject_and_its_vtimezones_give_the_utc_start(data, meetings):
    parsed = vobject.readOne(data.decode())
    by_uid = {m.uid: m for m in meetings}
    masters = [e for e in parsed.vevent_list if not hasattr(e, "recurrence_id")]
    assert sorted(e.uid.value for e in masters) == sorted(by_uid)
    for event in parsed.vevent_list:
        meeting = by_uid[event.uid.value]
        assert event.summary.value == meeting.title
        assert event.description.value.startswith(join_url(meeting))
        if hasattr(event, "recurrence_id") or meeting.all_day:
            continue
        # vobject converts with the feed's VTIMEZONE, not with its own zone database.
        assert event.dtstart.value.astimezone(UTC) == meeting.start
        assert event.dtend.value.astimezone(UTC) == meeting.end
    assert sorted(tz.tzid.value for tz in parsed.vtimezone_list) == sorted(ZONES)


def test_feed_parses_with_icaljs_without_floating_or_unknown_zones(data, meetings):
    until = NOW + timedelta(days=365)
    found = run_node(
        "icaljs_occurrences.mjs",
        str(int(until.timestamp())),
        stdin=data.decode(),
        packages=("ical.js",),
    )
    assert isinstance(found, list)
    timed = [m for m in meetings if not m.all_day]
    by_uid = {m.uid: m for m in timed}
    icaljs = {
        (o["uid"], datetime.fromtimestamp(o["start"], UTC), datetime.fromtimestamp(o["end"], UTC))
        for o in found
        if o["uid"] in by_uid and o["status"] != "CANCELLED" and o["start"] < until.timestamp()
    }
    expected = utc_occurrences(
        [m for m in timed if not m.is_cancelled], datetime(2026, 1, 1, tzinfo=UTC), until
    )
    assert icaljs == expected
    statuses = {o["uid"]: o["status"] for o in found}
    cancelled = next(m for m in meetings if m.is_cancelled)
    assert statuses[cancelled.uid] == "CANCELLED"


def test_feed_parses_with_node_ical(data, meetings):
    window = (datetime(2026, 1, 1, tzinfo=UTC), NOW + timedelta(days=365))
    found = run_node(
        "nodeical_events.mjs",
        *(str(int(moment.timestamp())) for moment in window),
        stdin=data.decode(),
        packages=("node-ical",),
    )
    assert isinstance(found, list)
    by_uid = {m.uid: m for m in meetings}
    assert sorted(event["uid"] for event in found) == sorted(by_uid)
    for event in found:
        meeting = by_uid[event["uid"]]
        assert event["summary"] == meeting.title
        assert event["recurring"] == meeting.is_recurring
        assert event["dateOnly"] == meeting.all_day
        if meeting.all_day:
            continue
        assert event["tz"] == meeting.timezone
        assert datetime.fromtimestamp(event["start"], UTC) == meeting.start
        assert datetime.fromtimestamp(event["end"], UTC) == meeting.end
        exceptions = list(meeting.exceptions.all())
        assert event["exdates"] == sum(exc.cancelled for exc in exceptions)
        assert event["overrides"] == sum(not exc.cancelled for exc in exceptions)
        if meeting.is_recurring and not meeting.is_cancelled:
            occurrences = {
                (
                    meeting.uid,
                    datetime.fromtimestamp(o["start"], UTC),
                    datetime.fromtimestamp(o["end"], UTC),
                )
                for o in event["occurrences"]
            }
            assert occurrences == utc_occurrences([meeting], *window)


# --- Rules of STANDARDS.md -------------------------------------------------------------------


def test_feed_lines_are_crlf_terminated_and_folded_at_75_octets(data):
    assert data.endswith(b"END:VCALENDAR\r\n")
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert b"\r" not in line and b"\n" not in line
        assert len(line) <= 75, line
        line.decode()  # a fold never splits a UTF-8 sequence
    assert any(line.startswith(b" ") for line in lines), "the long texts were folded"


def test_fold_never_splits_multibyte_characters():
    for text in ("é" * 100, "日本語" * 40, "📅" * 50, "a" + "é" * 80, "ab" + "📅" * 40):
        folded = ical.fold(f"SUMMARY:{text}")
        parts = folded.split(b"\r\n")
        assert parts[-1] == b""
        for index, part in enumerate(parts[:-1]):
            assert len(part) <= 75
            assert (index == 0) != part.startswith(b" ")
            part.decode()
        assert folded.replace(b"\r\n ", b"") == f"SUMMARY:{text}\r\n".encode()


def test_every_tzid_has_a_vtimezone_and_no_time_is_floating(data):
    lines = unfolded(data)
    defined = {line.removeprefix("TZID:") for line in lines if line.startswith("TZID:")}
    used = {m.group(1) for line in lines for m in re.finditer(r";TZID=([^;:]+)", line)}
    assert used == defined == set(ZONES)
    checked = 0
    for line in vevent_lines(data):
        name = re.split(r"[;:]", line, maxsplit=1)[0]
        if name not in ("DTSTART", "DTEND", "EXDATE", "RECURRENCE-ID"):
            continue
        checked += 1
        params, value = line.split(":", 1)
        if ";VALUE=DATE" in params and ";VALUE=DATE-TIME" not in params:
            assert re.fullmatch(r"\d{8}(,\d{8})*", value), line
        else:
            assert ";TZID=" in params or value.endswith("Z"), line
            assert re.fullmatch(r"\d{8}T\d{6}Z?", value), line
    assert checked > 20


def test_rrule_until_is_utc_for_timed_series_and_a_date_for_all_day_ones(meetings):
    rules = {}
    for meeting in meetings:
        for line in unfolded(event_block(meeting, EventOptions())):
            if line.startswith("RRULE:"):
                rules[meeting] = line.removeprefix("RRULE:")
    assert len(rules) == 7
    with_until = {meeting: rule for meeting, rule in rules.items() if "UNTIL=" in rule}
    assert len(with_until) == 2
    for meeting, rule in rules.items():
        if meeting.all_day:
            # DTSTART is a DATE, so UNTIL is too: the local date of 2026-06-01 03:59:59Z.
            assert rule == "FREQ=WEEKLY;BYDAY=FR;UNTIL=20260531", rule
        else:
            assert rule == meeting.rrule  # as stored, UNTIL in UTC
            until = re.search(r"UNTIL=([^;]+)", rule)
            assert until is None or re.fullmatch(r"\d{8}T\d{6}Z", until.group(1)), rule


def test_recurring_meeting_has_exdate_and_an_override_right_after_its_master(data, meetings):
    weekly = next(m for m in meetings if m.title == "Hebdo Europe/Paris")
    blocks = [b for b in data.split(b"BEGIN:VEVENT\r\n")[1:] if weekly.uid.encode() in b]
    assert len(blocks) == 2
    master, override = (unfolded(b"BEGIN:VEVENT\r\n" + b) for b in blocks)
    assert "EXDATE;TZID=Europe/Paris:20260316T093000" in master
    assert "RRULE:FREQ=WEEKLY;BYDAY=MO" in master
    assert "RECURRENCE-ID;TZID=Europe/Paris:20260330T093000" in override
    assert "DTSTART;TZID=Europe/Paris:20260331T140000" in override
    assert "DTEND;TZID=Europe/Paris:20260331T143000" in override
    assert not any(line.startswith(("RRULE", "EXDATE")) for line in override)
    assert f"SEQUENCE:{weekly.sequence}" in override
    uids = [line for line in unfolded(data) if line.startswith("UID:")]
    position = uids.index(f"UID:{weekly.uid}")
    assert uids[position + 1] == f"UID:{weekly.uid}"
    new_york = next(m for m in meetings if m.title == "Hebdo America/New_York")
    new_york_lines = unfolded(event_block(new_york, EventOptions()))
    # The UTC recurrence id is written on the meeting's own clock.
    assert "EXDATE;TZID=America/New_York:20260316T093000" in new_york_lines


def test_cancelled_meeting_says_so_and_keeps_its_bumped_sequence(data, meetings):
    cancelled = next(m for m in meetings if m.is_cancelled)
    assert cancelled.sequence == 1
    lines = unfolded(event_block(cancelled, EventOptions()))
    assert "STATUS:CANCELLED" in lines
    assert "SEQUENCE:1" in lines
    assert "BEGIN:VALARM" not in lines
    others = [m for m in meetings if not m.is_cancelled]
    assert all("STATUS:CONFIRMED" in unfolded(event_block(m, EventOptions())) for m in others)


def test_all_day_meetings_use_dates_exceptions_included(data, meetings):
    all_day = next(m for m in meetings if m.title == "Séminaire, journée entière")
    lines = unfolded(event_block(all_day, EventOptions()))
    assert "DTSTART;VALUE=DATE:20260615" in lines
    assert "DTEND;VALUE=DATE:20260617" in lines
    series = next(m for m in meetings if m.title == "Permanence")
    lines = unfolded(event_block(series, EventOptions()))
    assert "DTSTART;VALUE=DATE:20260306" in lines
    assert "EXDATE;VALUE=DATE:20260313" in lines
    assert "RECURRENCE-ID;VALUE=DATE:20260320" in lines
    assert "DTSTART;VALUE=DATE:20260319" in lines
    zone = ZoneInfo(series.timezone)
    window = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    expected = {
        occ.start.astimezone(zone).date()
        for occ in meeting_occurrences(series, *window)
        if not occ.cancelled
    }
    parsed = icalendar.Calendar.from_ical(data)
    found = {
        event["DTSTART"].dt
        for event in recurring_ical_events.of(parsed).between(date(2026, 3, 1), date(2026, 7, 1))
        if str(event["UID"]) == series.uid
    }
    assert found == expected
    assert date(2026, 3, 19) in found and date(2026, 3, 13) not in found
    assert max(found) == date(2026, 5, 29)  # the last Friday before UNTIL


def test_join_link_is_in_url_location_description_and_an_unquoted_conference(data, meetings):
    meeting = next(m for m in meetings if m.title == TITLES["Europe/Paris"])
    url = join_url(meeting)
    assert url.startswith("http://testserver/")
    lines = unfolded(event_block(meeting, EventOptions()))
    assert f"URL:{url}" in lines
    assert f"LOCATION:{url}" in lines
    assert next(line for line in lines if line.startswith("DESCRIPTION:")).startswith(
        f"DESCRIPTION:{url}\\n\\nOrdre du jour\\; budget\\, effectifs\\, calendrier.\\nPoints"
    )
    assert f"CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL=Join:{url}" in lines
    assert b'FEATURE="' not in data
    without = unfolded(event_block(meeting, EventOptions(include_join_link=False)))
    assert not any(url in line for line in without)


def test_calendar_header(data):
    lines = unfolded(data)
    assert lines[:11] == [
        "BEGIN:VCALENDAR",
        "PRODID:-//Visio Broker//Visio Broker 1.0//EN",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "NAME:Agenda d'Orla\\, DINUM",
        "X-WR-CALNAME:Agenda d'Orla\\, DINUM",
        "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
        "X-PUBLISHED-TTL:PT1H",
        "BEGIN:VTIMEZONE",
        "TZID:America/New_York",
    ]


def test_alarms_follow_the_options(meetings):
    meeting = next(m for m in meetings if m.title == TITLES["UTC"])
    lines = unfolded(event_block(meeting, EventOptions(alarm_minutes=(10, 60))))
    assert [line for line in lines if line.startswith("TRIGGER")] == [
        "TRIGGER:-PT10M",
        "TRIGGER:-PT60M",
    ]
    assert lines.count("ACTION:DISPLAY") == 2
    assert "BEGIN:VALARM" not in unfolded(event_block(meeting, EventOptions(alarm_minutes=())))


def test_titles_only_feed_has_no_people_and_no_description(meetings):
    data = feed(meetings, EventOptions(full_details=False, alarm_minutes=()))
    for event in icalendar.Calendar.from_ical(data).walk("VEVENT"):
        assert "ORGANIZER" not in event
        assert "ATTENDEE" not in event
        assert "DESCRIPTION" not in event
        for name in ("UID", "DTSTAMP", "SEQUENCE", "DTSTART", "DTEND", "SUMMARY", "STATUS"):
            assert name in event, name
    assert b"mailto:" not in data
    assert b"Ordre du jour" not in data


# --- Determinism and caching ---------------------------------------------------------------------


def test_same_data_gives_the_same_bytes_cached_or_not(meetings, data, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert feed(meetings) == data
    cache.clear()
    ical.clear_local_cache()
    assert feed(meetings) == data
    ical.clear_local_cache()
    assert feed(list(reversed(meetings))) == data  # from the shared cache, in pk order
    assert feed(loaded({str(m.pk): m for m in meetings})) == data


def test_dtstamp_comes_from_the_row_not_the_clock(meetings, data, clock):
    clock.shift(timedelta(hours=5))
    cache.clear()
    ical.clear_local_cache()
    assert feed(meetings) == data
    assert NOW.strftime("%Y%m%dT%H%M%SZ").encode() in data  # the rows were written at NOW


def test_an_attendee_answer_changes_the_event_bytes(meetings, colleague):
    meeting = next(m for m in meetings if m.title == TITLES["Europe/Paris"])
    before = event_block(meeting, EventOptions())
    attendee = next(a for a in meeting.attendees.all() if a.user_id == colleague.pk)
    attendee_respond(actor=colleague, attendee=attendee, partstat="accepted")
    after = event_block(with_details(Meeting.objects.filter(pk=meeting.pk)).get(), EventOptions())
    assert after != before
    assert b"PARTSTAT=ACCEPTED;RSVP=TRUE:mailto:camille@test.gouv.example" in after.replace(
        b"\r\n ", b""
    )


_RENDER_IN_ANOTHER_PROCESS = """
import sys, time_machine, django
from datetime import datetime
django.setup()
from meetings.ical import EventOptions, calendar
from meetings.models import Meeting
from meetings.selectors import with_details
with time_machine.travel(datetime.fromisoformat(sys.argv[1]), tick=False):
    meetings = with_details(Meeting.objects.all())
    data = calendar(name=sys.argv[2], meetings=meetings, options_for=lambda m: EventOptions())
sys.stdout.buffer.write(data)
"""


@pytest.mark.django_db(transaction=True)
def test_another_process_renders_the_same_bytes(organizer, colleague):
    meetings = loaded(build_meetings(organizer, colleague))
    data = calendar(name="Agenda", meetings=meetings, options_for=lambda m: EventOptions())
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": (
            f"postgres://{quote(database['USER'] or '')}:{quote(database['PASSWORD'] or '')}"
            f"@{database['HOST']}:"
            f"{database['PORT']}/{database['NAME']}"
        ),
        "CACHE_KEY_PREFIX": "ical-other-process",
        "PYTHONHASHSEED": "12345",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", _RENDER_IN_ANOTHER_PROCESS, NOW.isoformat(), "Agenda"],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data


# --- VTIMEZONE -----------------------------------------------------------------------------------


def vtimezone_offsets(tzid: str) -> tuple[list[datetime], list[timedelta], timedelta]:
    """Onsets (UTC) and offsets read from our VTIMEZONE with dateutil, independently of it."""
    wrapped = b"BEGIN:VCALENDAR\r\n" + vtimezone_block(tzid) + b"END:VCALENDAR\r\n"
    (component,) = icalendar.Calendar.from_ical(wrapped).walk("VTIMEZONE")
    changes: list[tuple[datetime, timedelta, timedelta]] = []
    for observance in component.subcomponents:
        start = observance.decoded("DTSTART")
        offset_from = observance.decoded("TZOFFSETFROM")
        offset_to = observance.decoded("TZOFFSETTO")
        if "RRULE" not in observance:
            changes.append(((start - offset_from).replace(tzinfo=UTC), offset_from, offset_to))
            continue
        rule = dict(observance["RRULE"])
        until = rule.pop("UNTIL", [None])[0]
        text = ";".join(f"{key}={','.join(str(v) for v in values)}" for key, values in rule.items())
        for local in rrulestr(text, dtstart=start):
            onset = (local - offset_from).replace(tzinfo=UTC)
            if (until is not None and onset > until) or onset.year > NOW.year + 5:
                break
            changes.append((onset, offset_from, offset_to))
    changes.sort()
    return [c[0] for c in changes], [c[2] for c in changes], changes[0][1]


def assert_vtimezone_matches_zoneinfo(tzid: str, step: timedelta) -> None:
    onsets, offsets, initial = vtimezone_offsets(tzid)
    zone = ZoneInfo(tzid)
    moment, end = NOW, NOW.replace(year=NOW.year + 3)
    while moment < end:
        index = bisect.bisect_right(onsets, moment) - 1
        ours = offsets[index] if index >= 0 else initial
        assert ours == moment.astimezone(zone).utcoffset(), (tzid, moment)
        moment += step


@pytest.mark.parametrize(
    "tzid",
    [
        *ZONES,
        "Europe/London",
        "Europe/Dublin",
        "Asia/Tokyo",
        "Australia/Sydney",
        "Pacific/Auckland",
        "America/Sao_Paulo",
        "America/Nuuk",
        "Asia/Jerusalem",
        "Africa/Casablanca",
        "Africa/Cairo",
        "America/Santiago",
    ],
)
def test_vtimezone_rules_match_zoneinfo_every_hour_for_three_years(tzid):
    assert_vtimezone_matches_zoneinfo(tzid, timedelta(hours=1))


AREAS = ("Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Pacific")


def area_of(tzid: str) -> str:
    area = tzid.split("/")[0]
    return area if area in AREAS else "other"


@pytest.mark.parametrize("area", [*AREAS, "other"])
def test_vtimezone_rules_match_zoneinfo_every_day_for_three_years_in_every_zone(area):
    zones = [tzid for tzid in timezones() if area_of(tzid) == area]
    assert zones
    for tzid in zones:
        assert_vtimezone_matches_zoneinfo(tzid, timedelta(hours=6))


def test_vtimezone_is_rule_based():
    paris = vtimezone_block("Europe/Paris").decode().split("\r\n")
    assert paris[:2] == ["BEGIN:VTIMEZONE", "TZID:Europe/Paris"]
    assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU" in paris
    assert "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU" in paris
    assert not any(line.startswith("RDATE") for line in paris)
    new_york = vtimezone_block("America/New_York").decode()
    assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU" in new_york
    assert "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU" in new_york
    sydney = vtimezone_block("Australia/Sydney").decode()
    assert "BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+1000\r\nTZOFFSETTO:+1100\r\n" in sydney
    assert "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=1SU" in sydney
    for tzid, offset in (("UTC", "+0000"), ("Asia/Tokyo", "+0900")):
        lines = vtimezone_block(tzid).decode().split("\r\n")
        assert lines.count("BEGIN:STANDARD") == 1
        assert "BEGIN:DAYLIGHT" not in lines
        assert f"TZOFFSETTO:{offset}" in lines
        assert not any(line.startswith(("RRULE", "RDATE")) for line in lines)
