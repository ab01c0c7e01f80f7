"""iCalendar (RFC 5545) serialization of meetings: subscription feeds, later iTIP messages.

Written by hand rather than with icalendar: the clients' quirks in STANDARDS.md need exact
control of the bytes (FEATURE unquoted, REFRESH-INTERVAL;VALUE=DURATION, rule-based VTIMEZONE),
and a line writer is an order of magnitude faster. Each event's bytes are cached, so a feed is
assembled, not re-serialized.
"""

from __future__ import annotations

import calendar as _calendar
import hashlib
import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone as djtz

from meetings.models import Attendee, Meeting, MeetingStatus

PRODID = "-//Visio Broker//Visio Broker 1.0//EN"

# Bump when the bytes an event renders to change shape: old cache entries are then ignored.
FORMAT_VERSION = "1"
EVENT_CACHE_TIMEOUT = 7 * 24 * 3600
LOCAL_CACHE_SIZE = 4096

CRLF = b"\r\n"
MAX_LINE_OCTETS = 75

_ROLES = {
    "chair": "CHAIR",
    "required": "REQ-PARTICIPANT",
    "optional": "OPT-PARTICIPANT",
}


@dataclass(frozen=True)
class EventOptions:
    """What one feed shows of an event; part of the cache key."""

    # False (agency feed): SUMMARY, times, UID, SEQUENCE, STATUS; no ORGANIZER, ATTENDEE,
    # DESCRIPTION. The join link (URL, LOCATION, CONFERENCE) follows include_join_link.
    full_details: bool = True
    # One DISPLAY VALARM per value, minutes before the start; () for none.
    alarm_minutes: tuple[int, ...] = (15,)
    include_join_link: bool = True

    def __post_init__(self) -> None:
        if any(minutes < 0 for minutes in self.alarm_minutes):
            raise ValueError("alarm_minutes are minutes before the start: not negative")


def join_url(meeting: Meeting) -> str:
    """Absolute URL of the meeting's join page; never carries a token."""
    return settings.SITE_URL + reverse("meeting_join", kwargs={"pk": meeting.pk})


# --- Line writer ------------------------------------------------------------------------------


# TEXT allows no control character but HTAB; line breaks are escaped before this applies.
_CONTROL = {code: None for code in (*range(32), 127) if code != 9}


def escape_text(value: str) -> str:
    """TEXT value escaping (RFC 5545 §3.3.11)."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\r", "\\n")
        .replace("\n", "\\n")
        .translate(_CONTROL)
    )


# Parameter values allow neither DQUOTE nor control characters, escaped or not.
_PARAM_UNSAFE = {code: " " for code in (*range(32), 127)} | {ord('"'): "'"}


def _param(value: str) -> str:
    """A parameter value, quoted when it holds ; : or ,."""
    cleaned = value.translate(_PARAM_UNSAFE)
    if ";" in cleaned or ":" in cleaned or "," in cleaned:
        return f'"{cleaned}"'
    return cleaned


def fold(line: str) -> bytes:
    """One content line, CRLF-terminated, folded at 75 octets between UTF-8 sequences."""
    raw = line.encode()
    if len(raw) <= MAX_LINE_OCTETS:
        return raw + CRLF
    parts = []
    start, limit = 0, MAX_LINE_OCTETS
    while len(raw) - start > limit:
        cut = start + limit
        # Never cut before a continuation byte (10xxxxxx): it would split a character.
        while raw[cut] & 0xC0 == 0x80:
            cut -= 1
        parts.append(raw[start:cut])
        start, limit = cut, MAX_LINE_OCTETS - 1  # continuation lines begin with a space
    parts.append(raw[start:])
    return b"\r\n ".join(parts) + CRLF


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _offset(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}{minutes:02d}" + (f"{secs:02d}" if secs else "")


# --- VTIMEZONE ----------------------------------------------------------------------------------

_State = tuple[timedelta, timedelta, str]  # UTC offset, DST amount, abbreviation
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = 86400


@dataclass(frozen=True)
class _Transition:
    at: int  # first second (UTC epoch) of the new state
    before: _State
    after: _State

    @property
    def onset(self) -> datetime:
        """The local wall time of the change, on the clock before it (RFC 5545 §3.6.5)."""
        return (_EPOCH + timedelta(seconds=self.at) + self.before[0]).replace(tzinfo=None)

    @property
    def key(self) -> tuple[object, ...]:
        onset = self.onset
        return (self.before, self.after, onset.month, onset.time())

    @property
    def daylight(self) -> bool:
        # Negative DST (Europe/Dublin's winter, Africa/Casablanca's Ramadan) marks the other
        # side as the daylight one, as clients expect summer time to be DAYLIGHT.
        dst_before, dst_after = self.before[1], self.after[1]
        return dst_after > timedelta(0) or (dst_after == timedelta(0) and dst_before < dst_after)

    @property
    def forms(self) -> frozenset[tuple[int, str]]:
        """The yearly rule parts that name this onset's day in its month, most usual first."""
        onset = self.onset
        weekday = _WEEKDAYS[onset.weekday()]
        nth = (onset.day - 1) // 7 + 1
        month_days = _calendar.monthrange(onset.year, onset.month)[1]
        forms = {(3, f"BYMONTHDAY={onset.day}")}
        if nth <= 4:
            forms.add((1, f"BYDAY={nth}{weekday}"))
        if onset.day + 7 > month_days:
            forms.add((0, f"BYDAY=-1{weekday}"))
        # "Saturday before the last Sunday" and the like: the weekday within a 7-day range.
        for first in range(max(1, onset.day - 6), min(onset.day, month_days - 6) + 1):
            days = ",".join(str(day) for day in range(first, first + 7))
            forms.add((2, f"BYDAY={weekday};BYMONTHDAY={days}"))
        return frozenset(forms)


@dataclass
class _Series:
    """Onsets with the same offsets and wall time, one a year, on one nameable day."""

    items: list[_Transition]
    forms: frozenset[tuple[int, str]]
    open_ended: bool = field(default=False)

    def rule_part(self) -> str:
        return min(self.forms)[1]


def _state(zone: ZoneInfo, ts: int) -> _State:
    moment = datetime.fromtimestamp(ts, zone)
    return moment.utcoffset() or timedelta(0), moment.dst() or timedelta(0), moment.tzname() or ""


def _scan(
    zone: ZoneInfo,
    start: int,
    end: int,
    step: int,
    windows: list[tuple[int, int]] | None = None,
) -> Iterator[_Transition]:
    """Changes of state in [start, end), sampling every ``step`` seconds then bisecting.

    ``windows`` (sorted ``(first, last)`` second ranges holding every change of the zone, from
    ``_change_windows``) lets the scan skip, in one move, the samples between them: they would
    all find the state unchanged. The samples taken, hence the changes found, are the same.
    """
    ts, state = start, _state(zone, start)
    index = 0
    while ts < end:
        if windows is not None:
            while index < len(windows) and windows[index][1] <= ts:
                index += 1
            # The samples up to the next window (or the end) find no change: take them at once.
            limit = windows[index][0] if index < len(windows) else end + step
            steps = (limit - ts - 1) // step
            if steps > 0:
                ts = min(ts + steps * step, end)
                continue
        probe = min(ts + step, end)
        probed = _state(zone, probe)
        if probed == state:
            ts = probe
            continue
        low, high = ts, probe
        while high - low > 1:
            middle = (low + high) // 2
            if _state(zone, middle) == state:
                low = middle
            else:
                high = middle
        after = _state(zone, high)
        yield _Transition(high, state, after)
        ts, state = high, after


# Local wall time is within a day of UTC (offsets stay under 26 hours): two days either side.
_WINDOW_MARGIN = 2 * _DAY


def _change_windows(tzid: str, last_year: int) -> list[tuple[int, int]] | None:
    """Ranges of seconds holding every change of state of ``tzid`` up to ``last_year``.

    Read from the zone's compiled data (the pure-Python zoneinfo's parse of the same TZif file
    the C implementation reads): its transitions, then the yearly ones of its POSIX rule. None
    when that data cannot be read: the caller then samples every step.
    """
    try:
        pure = importlib.import_module("zoneinfo._zoneinfo")
        data = pure.ZoneInfo.no_cache(tzid)
        moments = [int(ts) for ts in data._trans_utc]
        after = data._tz_after
        if isinstance(after, pure._TZStr):
            first = datetime.fromtimestamp(moments[-1], UTC).year - 1 if moments else 1969
            for year in range(first, last_year + 2):
                moments += after.transitions(year)  # local wall time, as if UTC
        elif not isinstance(after, pure._ttinfo):
            return None
    except Exception:  # noqa: BLE001 - private data: any surprise falls back to sampling
        return None
    windows: list[tuple[int, int]] = []
    for moment in sorted(moments):
        first, last = moment - _WINDOW_MARGIN, moment + _WINDOW_MARGIN
        if windows and first <= windows[-1][1]:
            windows[-1] = (windows[-1][0], last)
        else:
            windows.append((first, last))
    return windows


def _epoch(year: int) -> int:
    return int((datetime(year, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())


def _series(transitions: list[_Transition], open_from: int) -> list[_Series]:
    """Group onsets into yearly series; a series still going at ``open_from`` is open-ended."""
    found: list[_Series] = []
    current: dict[tuple[object, ...], _Series] = {}
    for transition in transitions:
        series = current.get(transition.key)
        if series is not None:
            forms = series.forms & transition.forms
            if transition.onset.year == series.items[-1].onset.year + 1 and forms:
                series.items.append(transition)
                series.forms = forms
                continue
        series = _Series([transition], transition.forms)
        current[transition.key] = series
        found.append(series)
    for series in found:
        series.open_ended = len(series.items) > 1 and series.items[-1].at >= open_from
    return found


def _observance(series: _Series) -> list[str]:
    first = series.items[0]
    kind = "DAYLIGHT" if first.daylight else "STANDARD"
    lines = [
        f"BEGIN:{kind}",
        f"TZOFFSETFROM:{_offset(first.before[0])}",
        f"TZOFFSETTO:{_offset(first.after[0])}",
        f"TZNAME:{escape_text(first.after[2])}",
        f"DTSTART:{first.onset:%Y%m%dT%H%M%S}",
    ]
    if len(series.items) > 1 or series.open_ended:
        rule = f"RRULE:FREQ=YEARLY;BYMONTH={first.onset.month};{series.rule_part()}"
        if not series.open_ended:
            last = _EPOCH + timedelta(seconds=series.items[-1].at)
            rule += f";UNTIL={_utc(last)}"
        lines.append(rule)
    lines.append(f"END:{kind}")
    return lines


@lru_cache(maxsize=256)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    zone = ZoneInfo(tzid)
    window_start, window_end = _epoch(first_year), _epoch(last_year + 1)
    # One more year decides whether the last rules go on (no UNTIL) or stop.
    lookahead_end = _epoch(last_year + 2)
    # Weekly samples before the window only decide where the current rules began; inside
    # it, daily samples find every change.
    windows = _change_windows(tzid, last_year + 2)
    transitions = [
        *_scan(zone, _epoch(1970), window_start, 7 * _DAY, windows),
        *_scan(zone, window_start, lookahead_end, _DAY, windows),
    ]
    all_series = _series(transitions, open_from=window_end)
    before = [t for t in transitions if t.at < window_start]
    in_force = before[-1] if before else None
    kept, dropped = [], []
    for series in all_series:
        if series.items[-1].at >= window_start or (
            in_force is not None and in_force in series.items
        ):
            kept.append(series)
        else:
            dropped += [t.at for t in series.items]
    # The description starts after the last onset of rules no longer in force; clients
    # extrapolate the first observance's TZOFFSETFROM before that.
    horizon = max(dropped, default=-1)
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    if in_force is None:
        offset, dst, name = _state(zone, window_start)
        kind = "DAYLIGHT" if dst > timedelta(0) else "STANDARD"
        lines += [
            f"BEGIN:{kind}",
            f"TZOFFSETFROM:{_offset(offset)}",
            f"TZOFFSETTO:{_offset(offset)}",
            f"TZNAME:{escape_text(name)}",
            "DTSTART:19700101T000000",
            f"END:{kind}",
        ]
    observances = []
    for series in kept:
        series.items = [t for t in series.items if t.at > horizon]
        if series.items:
            observances.append(series)
    observances.sort(key=lambda s: s.items[0].at)
    for series in observances:
        lines += _observance(series)
    lines.append("END:VTIMEZONE")
    return b"".join(fold(line) for line in lines)


def vtimezone_window(today: date | None = None) -> tuple[int, int]:
    """Years the VTIMEZONE rules are checked against zoneinfo: last year to three years ahead."""
    year = (today or djtz.now().date()).year
    return year - 1, year + 3


def vtimezone_block(tzid: str) -> bytes:
    """A rule-based VTIMEZONE (yearly STANDARD/DAYLIGHT observances), cached per zone."""
    first_year, last_year = vtimezone_window()
    return _vtimezone(tzid, first_year, last_year)


# --- VEVENT -------------------------------------------------------------------------------------


def _attendees(meeting: Meeting) -> list[Attendee]:
    return sorted(meeting.attendees.all(), key=lambda a: a.pk)


def _attendee_name(attendee: Attendee) -> str:
    if attendee.display_name or attendee.user is None:
        return attendee.display_name
    return attendee.user.display_name


def _version(
    meeting: Meeting, options: EventOptions, site_url: str | None = None
) -> tuple[object, ...]:
    """Everything the event's bytes depend on, from the row and its prefetched relations."""
    # ``updated_at`` moves with every save of the row (occurrence exceptions bump it too), but
    # an attendee's answer changes only the attendee row: the related values shown count too.
    exceptions: tuple[object, ...] = ()
    if meeting.rrule:
        exceptions = tuple(
            (e.recurrence_id, e.cancelled, e.start, e.end) for e in meeting.exceptions.all()
        )
    people: tuple[object, ...] = ()
    if options.full_details:
        organizer = meeting.organizer
        people = (
            organizer.email,
            organizer.display_name,
            *(
                (a.pk, a.email, _attendee_name(a), a.role, a.partstat)
                for a in meeting.attendees.all()
            ),
        )
    site_url = settings.SITE_URL if site_url is None else site_url
    return (site_url, meeting.pk, meeting.updated_at, options, exceptions, people)


def _shared_key(version: tuple[object, ...]) -> str:
    digest = hashlib.blake2b(repr(version).encode(), digest_size=16).hexdigest()
    return f"ical:event:{FORMAT_VERSION}:{version[1]}:{digest}"


@dataclass(frozen=True)
class ItipParts:
    """What an iTIP message (meetings.invitations) renders differently from a feed."""

    sequence: int
    stamp: datetime
    # ORGANIZER;SENT-BY: the system's address, as it sends on the organizer's behalf.
    sent_by: str
    # (email, name, ROLE, PARTSTAT) in order; ``None``: the meeting's attendees, each with
    # the stored answer.
    attendees: tuple[tuple[str, str, str, str], ...] | None = None
    # One occurrence only (RECURRENCE-ID); its times are the moved ones when it moved.
    recurrence_id: datetime | None = None
    # STATUS value; "" leaves it out (a CANCEL that uninvites some attendees, RFC 5546 §3.2.5).
    status: str = "CONFIRMED"


class _Batch:
    """What the events rendered together share, worked out once rather than per event."""

    __slots__ = ("attendee_lines", "join_url")

    def __init__(self) -> None:
        self.join_url = _join_urls()
        # Folded ATTENDEE lines by (email, name, role, partstat): colleagues recur across events.
        self.attendee_lines: dict[tuple[str, str, str, str], bytes] = {}


# Any pk would do: the URL's only variable part is the pk, written as int's str().
_PK_MARK = 987654321987


def _join_urls() -> Callable[[int], str]:
    """``join_url`` by pk, with one reverse() for many meetings."""
    mark = str(_PK_MARK)
    sample = settings.SITE_URL + reverse("meeting_join", kwargs={"pk": _PK_MARK})
    head, found, tail = sample.partition(mark)
    if not found or mark in tail:
        return lambda pk: settings.SITE_URL + reverse("meeting_join", kwargs={"pk": pk})
    return lambda pk: f"{head}{pk}{tail}"


def _render_event(
    meeting: Meeting,
    options: EventOptions,
    itip: ItipParts | None = None,
    batch: _Batch | None = None,
) -> bytes:
    zone = ZoneInfo(meeting.timezone)
    tzid = _param(meeting.timezone)
    all_day = meeting.all_day

    def when(name: str, moment: datetime) -> str:
        local = moment.astimezone(zone)
        if all_day:
            return f"{name};VALUE=DATE:{local:%Y%m%d}"
        return f"{name};TZID={tzid}:{local:%Y%m%dT%H%M%S}"

    cancelled = meeting.status == MeetingStatus.CANCELLED
    stamp = _utc(meeting.updated_at)
    head = [
        f"UID:{escape_text(meeting.uid)}",
        f"SEQUENCE:{meeting.sequence if itip is None else itip.sequence}",
        f"DTSTAMP:{stamp if itip is None else _utc(itip.stamp)}",
        f"LAST-MODIFIED:{stamp}",
    ]
    if itip is not None:
        cancelled = itip.status == "CANCELLED"
        status = f"STATUS:{itip.status}" if itip.status else ""
    else:
        status = "STATUS:CANCELLED" if cancelled else "STATUS:CONFIRMED"
    title = escape_text(meeting.title)
    body = [line for line in (status, f"SUMMARY:{title}") if line]
    url = ""
    if options.include_join_link:
        url = join_url(meeting) if batch is None else batch.join_url(meeting.pk)
    if options.full_details:
        text = "\n\n".join(part for part in (url, meeting.description.strip()) if part)
        if text:
            body.append(f"DESCRIPTION:{escape_text(text)}")
    if url:
        body += [
            f"LOCATION:{escape_text(url)}",
            f"URL:{url}",
            # Written by hand: ical.js reads a quoted FEATURE list as one value.
            f"CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL=Join:{url}",
        ]
    # Folded as they come: the attendee lines, the most numerous, may be folded already.
    folded = [fold(line) for line in body]
    if options.full_details:
        organizer = meeting.organizer
        cn = f";CN={_param(organizer.display_name)}" if organizer.display_name else ""
        sent_by = f';SENT-BY="mailto:{itip.sent_by}"' if itip is not None and itip.sent_by else ""
        folded.append(fold(f"ORGANIZER{cn}{sent_by}:mailto:{organizer.email}"))
        if itip is not None and itip.attendees is not None:
            people = list(itip.attendees)
        else:
            people = [
                (a.email, _attendee_name(a), _ROLES[a.role], a.partstat.upper())
                for a in _attendees(meeting)
            ]
        lines = batch.attendee_lines if batch is not None else {}
        for person in people:
            line = lines.get(person)
            if line is None:
                email, name, role, partstat = person
                cn = f";CN={_param(name)}" if name else ""
                line = lines[person] = fold(
                    f"ATTENDEE{cn};ROLE={role};PARTSTAT={partstat};RSVP=TRUE:mailto:{email}"
                )
            folded.append(line)
    # No reminder for a meeting that will not take place.
    alarm_minutes = () if cancelled else options.alarm_minutes
    if alarm_minutes:
        summary = fold(f"DESCRIPTION:{title}")
        for minutes in alarm_minutes:
            folded += [
                b"BEGIN:VALARM\r\n",
                b"ACTION:DISPLAY\r\n",
                summary,
                fold(f"TRIGGER:-PT{minutes}M" if minutes else "TRIGGER:PT0M"),
                b"END:VALARM\r\n",
            ]
    shared_head = b"".join(fold(line) for line in head)
    shared_body = b"".join(folded)

    if itip is not None and itip.recurrence_id is not None:
        return (
            b"BEGIN:VEVENT\r\n"
            + shared_head
            + b"".join(fold(line) for line in _occurrence_times(meeting, itip.recurrence_id, when))
            + shared_body
            + b"END:VEVENT\r\n"
        )
    master = [when("DTSTART", meeting.start), when("DTEND", meeting.end)]
    overrides: list[bytes] = []
    if meeting.rrule:
        master.append(f"RRULE:{_rrule(meeting, zone)}")
        exceptions = sorted(meeting.exceptions.all(), key=lambda e: e.recurrence_id)
        for exc in exceptions:
            if exc.cancelled or exc.start is None or exc.end is None:
                master.append(when("EXDATE", exc.recurrence_id))
        for exc in exceptions:
            if exc.cancelled or exc.start is None or exc.end is None:
                continue
            times = [
                when("RECURRENCE-ID", exc.recurrence_id),
                when("DTSTART", exc.start),
                when("DTEND", exc.end),
            ]
            overrides.append(
                b"BEGIN:VEVENT\r\n"
                + shared_head
                + b"".join(fold(line) for line in times)
                + shared_body
                + b"END:VEVENT\r\n"
            )
    return b"".join(
        [
            b"BEGIN:VEVENT\r\n",
            shared_head,
            *(fold(line) for line in master),
            shared_body,
            b"END:VEVENT\r\n",
            *overrides,
        ]
    )


def _occurrence_times(
    meeting: Meeting, recurrence_id: datetime, when: Callable[[str, datetime], str]
) -> list[str]:
    """RECURRENCE-ID, DTSTART and DTEND of one occurrence: moved times, or the rule's."""
    exc = next((e for e in meeting.exceptions.all() if e.recurrence_id == recurrence_id), None)
    if exc is not None and exc.start is not None and exc.end is not None and not exc.cancelled:
        start, end = exc.start, exc.end
    else:
        # Wall-clock duration (same tzinfo): an all-day occurrence across DST stays whole days.
        zone = ZoneInfo(meeting.timezone)
        start = recurrence_id
        end = recurrence_id.astimezone(zone) + (
            meeting.end.astimezone(zone) - meeting.start.astimezone(zone)
        )
    return [
        when("RECURRENCE-ID", recurrence_id),
        when("DTSTART", start),
        when("DTEND", end),
    ]


def _rrule(meeting: Meeting, zone: ZoneInfo) -> str:
    """The stored rule; for a DATE DTSTART, UNTIL becomes a DATE too (RFC 5545 §3.3.10)."""
    rule = meeting.rrule.strip().removeprefix("RRULE:")
    if not meeting.all_day:
        return rule
    parts = []
    for part in rule.split(";"):
        name, _sep, value = part.partition("=")
        if name.upper() == "UNTIL" and value.endswith("Z"):
            until = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            part = f"UNTIL={until.astimezone(zone):%Y%m%d}"
        parts.append(part)
    return ";".join(parts)


class _LocalCache:
    """A small thread-safe LRU in front of the shared cache: warm feeds skip the round trip."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[object, ...], value: bytes) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_local = _LocalCache(LOCAL_CACHE_SIZE)


def clear_local_cache() -> None:
    """Forget this process's copies (tests, benchmarks); the shared cache is untouched."""
    _local.clear()
    _vtimezone.cache_clear()


def _event_blocks(items: list[tuple[Meeting, EventOptions]]) -> list[bytes]:
    site_url = settings.SITE_URL
    versions = [_version(meeting, options, site_url) for meeting, options in items]
    blocks = [_local.get(version) for version in versions]
    missing = {
        index: _shared_key(version)
        for index, (version, block) in enumerate(zip(versions, blocks, strict=True))
        if block is None
    }
    if missing:
        shared = cache.get_many(list(missing.values()))
        rendered: dict[str, bytes] = {}
        batch = _Batch()
        for index, key in missing.items():
            block = shared.get(key)
            if block is None:
                meeting, options = items[index]
                block = rendered[key] = _render_event(meeting, options, batch=batch)
            _local.put(versions[index], block)
            blocks[index] = block
        if rendered:
            cache.set_many(rendered, EVENT_CACHE_TIMEOUT)
    return [block for block in blocks if block is not None]


def event_block(meeting: Meeting, options: EventOptions) -> bytes:
    """The master VEVENT and its RECURRENCE-ID overrides, folded, CRLF; cached."""
    return _event_blocks([(meeting, options)])[0]


# --- VCALENDAR ----------------------------------------------------------------------------------


def calendar(
    *,
    name: str,
    meetings: Iterable[Meeting],
    options_for: Callable[[Meeting], EventOptions],
    method: str | None = None,
) -> bytes:
    """A VCALENDAR: header, one VTIMEZONE per TZID used, then the events by meeting pk.

    Same data, same bytes, in every process: nothing depends on the clock but the years the
    VTIMEZONE rules cover.
    """
    unique = {meeting.pk: meeting for meeting in meetings}
    ordered = [unique[pk] for pk in sorted(unique)]
    blocks = _event_blocks([(meeting, options_for(meeting)) for meeting in ordered])
    tzids = sorted({meeting.timezone for meeting in ordered if not meeting.all_day})
    header = [
        "BEGIN:VCALENDAR",
        f"PRODID:{PRODID}",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
    ]
    if method:
        header.append(f"METHOD:{method.upper()}")
    header += [
        f"NAME:{escape_text(name)}",
        f"X-WR-CALNAME:{escape_text(name)}",
        "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
        "X-PUBLISHED-TTL:PT1H",
    ]
    return b"".join(
        [
            *(fold(line) for line in header),
            *(vtimezone_block(tzid) for tzid in tzids),
            *blocks,
            b"END:VCALENDAR\r\n",
        ]
    )


def itip_calendar(meeting: Meeting, *, method: str, parts: ItipParts) -> bytes:
    """One iTIP message's VCALENDAR (RFC 5546): METHOD, the zone, one event; never cached.

    The event is the series (master and overrides) or, with ``parts.recurrence_id``, only
    that occurrence. Feeds and invitations share this writer, so both read the same way.
    """
    method = method.upper()
    options = EventOptions(alarm_minutes=() if method == "CANCEL" else (15,))
    header = [
        "BEGIN:VCALENDAR",
        f"PRODID:{PRODID}",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method}",
    ]
    return b"".join(
        [
            *(fold(line) for line in header),
            b"" if meeting.all_day else vtimezone_block(meeting.timezone),
            _render_event(meeting, options, parts),
            b"END:VCALENDAR\r\n",
        ]
    )
