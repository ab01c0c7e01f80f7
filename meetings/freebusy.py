"""Free/busy of people on this instance, and the find-a-time assistant built on it.

Both read through one index-backed query for all the people at once: their (person, meeting)
pairs inside the window. Only recurring meetings are expanded in Python, and only inside the
window; nothing loops over the meetings table.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone as djtz
from django.utils.translation import gettext as _

from agencies.models import User
from agencies.reference import timezones
from meetings.models import Meeting, MeetingStatus, OccurrenceException, PartStat
from meetings.recurrence import Recurrence, expand
from meetings.selectors import meetings_visible_to, overlapping
from visio_broker.errors import InvalidInput

MAX_PEOPLE = 100
MAX_WINDOW = timedelta(days=62)
MAX_DAYS = 62
MAX_SLOTS = 50
MIN_STEP = timedelta(minutes=5)
# Everything but "declined" blocks the person's time, including unanswered invitations.
BUSY_PARTSTATS = tuple(value for value in PartStat.values if value != PartStat.DECLINED)
# What occurrence expansion reads (see _Meeting).
_MEETING_FIELDS = ("id", "title", "start", "end", "timezone", "rrule")


@dataclass(frozen=True)
class Busy:
    start: datetime  # UTC, clipped to the window
    end: datetime
    meeting_id: int | None  # only when the viewer may see that meeting, else None
    title: str | None  # same rule: titles never leak to someone who doesn't share the meeting


@dataclass(frozen=True)
class FreeBusy:
    email: str
    known: bool  # False: not a user of this instance -> "unknown", busy == []
    busy: list[Busy]  # merged overlapping intervals, sorted


@dataclass(frozen=True)
class Slot:
    start: datetime  # UTC
    end: datetime
    optional_free: int  # how many optional attendees (known ones) are free then
    optional_total: int  # how many optional attendees are known on this instance


# (start, end, meeting id) of one busy occurrence, before merging.
_Interval = tuple[datetime, datetime, int]


def freebusy(
    *, viewer: User, emails: Sequence[str], start: datetime, end: datetime
) -> dict[str, FreeBusy]:
    """Busy intervals of each address in [start, end), keyed by the address as given.

    Addresses match active users case-insensitively; any other address is "unknown". Titles and
    meeting ids appear only for meetings the viewer may see.
    """
    _check_window(start, end)
    normalized = {email: _normalize(email) for email in emails}
    _check_people_count(set(normalized.values()))
    people = _resolve_people(normalized.values())
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    titles, intervals = _busy_intervals(set(people.values()), start, end)
    merged = {user_id: _merge(found) for user_id, found in intervals.items()}
    single = {ids[0] for groups in merged.values() for _s, _e, ids in groups if len(ids) == 1}
    visible: set[int] = set()
    if single:
        visible = set(
            meetings_visible_to(user=viewer).filter(pk__in=single).values_list("pk", flat=True)
        )
    result: dict[str, FreeBusy] = {}
    for email, key in normalized.items():
        user_id = people.get(key)
        if user_id is None:
            result[email] = FreeBusy(email=email, known=False, busy=[])
            continue
        busy = []
        for group_start, group_end, ids in merged.get(user_id, []):
            shown = ids[0] if len(ids) == 1 and ids[0] in visible else None
            busy.append(
                Busy(
                    start=max(group_start, start),
                    end=min(group_end, end),
                    meeting_id=shown,
                    title=None if shown is None else titles[shown],
                )
            )
        result[email] = FreeBusy(email=email, known=True, busy=busy)
    return result


def find_a_time(
    *,
    viewer: User,
    required: Sequence[str],
    optional: Sequence[str],
    duration: timedelta,
    first_day: date,
    last_day: date,
    timezone: str,
    work_start: time = time(9, 0),
    work_end: time = time(17, 0),
    include_weekends: bool = False,
    limit: int = 5,
    step: timedelta = timedelta(minutes=15),
    not_before: datetime | None = None,
) -> list[Slot]:
    """The earliest ``limit`` slots, sorted by start, where every known required person is free.

    Candidates start at ``work_start`` on each working day of ``timezone`` and every ``step``
    after it, and end by ``work_end``. People unknown to this instance are ignored (freebusy
    shows them as unknown). ``viewer`` is accepted for symmetry with freebusy: slots carry no
    meeting details, so nothing about anyone's meetings can leak through them.
    """
    zone = _check_find_a_time(
        duration=duration,
        first_day=first_day,
        last_day=last_day,
        timezone=timezone,
        work_start=work_start,
        work_end=work_end,
        limit=limit,
        step=step,
        not_before=not_before,
    )
    required_keys = list(dict.fromkeys(_normalize(email) for email in required))
    # Someone listed both ways is required.
    optional_keys = list(
        dict.fromkeys(_normalize(email) for email in optional).keys() - set(required_keys)
    )
    _check_people_count({*required_keys, *optional_keys})
    floor = (not_before or djtz.now()).astimezone(UTC)
    window_start = max(_at(first_day, work_start, zone), floor)
    window_end = _at(last_day, work_end, zone)
    if window_start >= window_end:
        return []
    people = _resolve_people([*required_keys, *optional_keys])
    _titles, intervals = _busy_intervals(set(people.values()), window_start, window_end)
    required_busy = _Timeline(
        found for key in required_keys if key in people for found in intervals[people[key]]
    )
    optional_busy = [_Timeline(intervals[people[key]]) for key in optional_keys if key in people]

    slots: list[Slot] = []
    day = first_day
    while day <= last_day and len(slots) < limit:
        if include_weekends or day.weekday() < 5:
            candidate, day_end = _at(day, work_start, zone), _at(day, work_end, zone)
            while candidate + duration <= day_end and len(slots) < limit:
                slot_end = candidate + duration
                if candidate >= floor and required_busy.is_free(candidate, slot_end):
                    slots.append(
                        Slot(
                            start=candidate,
                            end=slot_end,
                            optional_free=sum(
                                timeline.is_free(candidate, slot_end) for timeline in optional_busy
                            ),
                            optional_total=len(optional_busy),
                        )
                    )
                candidate += step
        day += timedelta(days=1)
    return slots


# --- Reading -----------------------------------------------------------------------------------


def _resolve_people(emails: Iterable[str]) -> dict[str, int]:
    """Normalized address → id of the active user it belongs to (through the LOWER(email) index)."""
    wanted = set(emails)
    if not wanted:
        return {}
    rows = (
        User.objects.filter(is_active=True)
        .annotate(email_ci=Lower("email"))
        .filter(email_ci__in=wanted)
        .values_list("email_ci", "pk")
    )
    return dict(rows)


def _busy_intervals(
    user_ids: set[int], start: datetime, end: datetime
) -> tuple[dict[int, str], defaultdict[int, list[_Interval]]]:
    """Titles of the meetings keeping these people busy in [start, end), and each one's times.

    One query for the (meeting, person) pairs, one for the exceptions of the recurring ones.
    """
    intervals: defaultdict[int, list[_Interval]] = defaultdict(list)
    if not user_ids:
        return {}, intervals
    scheduled = Meeting.objects.filter(status=MeetingStatus.SCHEDULED)
    # F() on the relation reuses the join of the filter just before it: the person is the
    # attendee (or co-organizer) row that matched, not any row of the meeting.
    branches = [
        scheduled.filter(
            attendees__user__in=user_ids, attendees__partstat__in=BUSY_PARTSTATS
        ).annotate(person=F("attendees__user")),
        scheduled.filter(organizer__in=user_ids).annotate(person=F("organizer")),
        scheduled.filter(co_organizers__in=user_ids).annotate(person=F("co_organizers")),
    ]
    first, *others = [
        overlapping(branch, start, end).values_list(*_MEETING_FIELDS, "person")
        for branch in branches
    ]
    meetings: dict[int, _Meeting] = {}
    people: defaultdict[int, set[int]] = defaultdict(set)
    # UNION ALL: an organizer is also the chair attendee; duplicates are dropped here.
    for *fields, person in first.union(*others, all=True):
        meeting = _Meeting(*fields)
        meetings.setdefault(meeting.id, meeting)
        people[meeting.id].add(person)
    exceptions: defaultdict[int, dict[datetime, _Exception]] = defaultdict(dict)
    recurring = [meeting.id for meeting in meetings.values() if meeting.rrule]
    if recurring:
        rows = OccurrenceException.objects.filter(meeting__in=recurring).values_list(
            "meeting", "recurrence_id", "cancelled", "start", "end"
        )
        for meeting_id, recurrence_id, cancelled, moved_start, moved_end in rows:
            exceptions[meeting_id][recurrence_id] = _Exception(cancelled, moved_start, moved_end)
    for meeting in meetings.values():
        found = [
            (busy_start, busy_end, meeting.id)
            for busy_start, busy_end in _occurrences(meeting, exceptions[meeting.id], start, end)
        ]
        for user_id in people[meeting.id]:
            intervals[user_id].extend(found)
    return {meeting.id: meeting.title for meeting in meetings.values()}, intervals


class _Meeting(NamedTuple):
    id: int
    title: str
    start: datetime
    end: datetime
    timezone: str
    rrule: str


class _Exception(NamedTuple):
    cancelled: bool
    start: datetime | None
    end: datetime | None


def _occurrences(
    meeting: _Meeting,
    exceptions: dict[datetime, _Exception],
    window_start: datetime,
    window_end: datetime,
) -> list[tuple[datetime, datetime]]:
    """Start and end of the meeting's occurrences overlapping the window, exceptions applied.

    The rules of ``selectors.meeting_occurrences`` (tests hold the two together), on plain
    tuples: free/busy reads many meetings and needs neither model instances nor prefetching.
    """
    if not meeting.rrule:
        if meeting.start < window_end and meeting.end > window_start:
            return [(meeting.start, meeting.end)]
        return []
    duration = meeting.end - meeting.start
    pending = dict(exceptions)
    found = []
    # Occurrences starting up to one duration before the window still overlap it.
    for original in expand(
        rrule=meeting.rrule,
        start=_anchor(meeting, window_start - duration),
        timezone=meeting.timezone,
        window_start=window_start - duration,
        window_end=window_end,
    ):
        exc = pending.pop(original, None)
        if exc is None:
            busy = (original, original + duration)
        elif exc.cancelled or exc.start is None or exc.end is None:
            continue
        else:
            busy = (exc.start, exc.end)
        if busy[0] < window_end and busy[1] > window_start:
            found.append(busy)
    # Occurrences moved into the window from outside it.
    for original, exc in pending.items():
        if exc.cancelled or exc.start is None or exc.end is None:
            continue
        if (
            exc.start < window_end
            and exc.end > window_start
            and (original < window_start - duration or original >= window_end)
        ):
            found.append((exc.start, exc.end))
    return found


def _anchor(meeting: _Meeting, earliest: datetime) -> datetime:
    """The series' first start, or a later occurrence's start before ``earliest``.

    dateutil walks a rule from its first occurrence, so a daily series begun a year ago yields
    hundreds of occurrences before reaching the window. Without COUNT, moving the start forward
    by whole periods of the wall clock (INTERVAL days or weeks) yields the same occurrences.
    """
    rule = _parse_rule(meeting.rrule)
    if rule.count is not None or rule.freq not in ("DAILY", "WEEKLY"):
        return meeting.start
    period = rule.interval * (7 if rule.freq == "WEEKLY" else 1)
    local = meeting.start.astimezone(ZoneInfo(meeting.timezone))
    # One period of margin: the anchor must stay before ``earliest`` whatever the DST offset.
    periods = ((earliest.astimezone(local.tzinfo).date() - local.date()).days // period) - 1
    if periods <= 0:
        return meeting.start
    moved = local.date() + timedelta(days=periods * period)
    return datetime.combine(moved, local.timetz()).astimezone(UTC)


@lru_cache(maxsize=512)
def _parse_rule(rrule: str) -> Recurrence:
    return Recurrence.parse(rrule)


# --- Intervals ---------------------------------------------------------------------------------


def _merge(intervals: list[_Interval]) -> list[tuple[datetime, datetime, list[int]]]:
    """Overlapping intervals merged, sorted; each with the distinct meetings it covers."""
    merged: list[tuple[datetime, datetime, list[int]]] = []
    for start, end, meeting_id in sorted(intervals):
        if merged and start < merged[-1][1]:
            last_start, last_end, ids = merged[-1]
            if meeting_id not in ids:
                ids.append(meeting_id)
            merged[-1] = (last_start, max(last_end, end), ids)
        else:
            merged.append((start, end, [meeting_id]))
    return merged


class _Timeline:
    """Busy time of one person (or several, merged): "free during [start, end)?" by bisection."""

    def __init__(self, intervals: Iterable[_Interval]) -> None:
        merged = _merge(list(intervals))
        self.starts = [start for start, _end, _ids in merged]
        self.ends = [end for _start, end, _ids in merged]

    def is_free(self, start: datetime, end: datetime) -> bool:
        # Merged intervals are disjoint, so their ends are sorted too: the first one ending
        # after ``start`` is the only one that can overlap.
        index = bisect_right(self.ends, start)
        return index == len(self.ends) or self.starts[index] >= end


# --- Validation --------------------------------------------------------------------------------


def _normalize(email: str) -> str:
    return email.strip().lower()


def _at(day: date, moment: time, zone: ZoneInfo) -> datetime:
    """The wall-clock ``moment`` of ``day`` in ``zone``, in UTC, with that day's DST offset."""
    return datetime.combine(day, moment.replace(tzinfo=None), zone).astimezone(UTC)


def _check_window(start: datetime, end: datetime) -> None:
    if djtz.is_naive(start) or djtz.is_naive(end):
        raise InvalidInput(_("Times must carry a UTC offset."), code="naive_datetime")
    if end <= start:
        raise InvalidInput(_("The end must come after the start."), code="end_before_start")
    if end - start > MAX_WINDOW:
        raise InvalidInput(
            _("Free/busy covers at most %(days)d days.") % {"days": MAX_WINDOW.days},
            code="window_too_long",
        )


def _check_people_count(people: set[str]) -> None:
    if len(people) > MAX_PEOPLE:
        raise InvalidInput(
            _("Look up at most %(n)d people at once.") % {"n": MAX_PEOPLE},
            code="too_many_attendees",
        )


def _check_find_a_time(
    *,
    duration: timedelta,
    first_day: date,
    last_day: date,
    timezone: str,
    work_start: time,
    work_end: time,
    limit: int,
    step: timedelta,
    not_before: datetime | None,
) -> ZoneInfo:
    if timezone not in timezones():
        raise InvalidInput(
            _("%(tz)s is not a time zone.") % {"tz": timezone}, code="invalid_timezone"
        )
    if work_end <= work_start:
        raise InvalidInput(
            _("Working hours must end after they start."), code="invalid_working_hours"
        )
    work_day = datetime.combine(date.min, work_end) - datetime.combine(date.min, work_start)
    if duration <= timedelta(0):
        raise InvalidInput(_("The duration must be positive."), code="invalid_duration")
    if duration > work_day:
        raise InvalidInput(
            _("The meeting is longer than the working hours."), code="duration_too_long"
        )
    if last_day < first_day:
        raise InvalidInput(
            _("The last day must not come before the first day."), code="invalid_date_range"
        )
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise InvalidInput(
            _("Search at most %(days)d days at once.") % {"days": MAX_DAYS},
            code="date_range_too_long",
        )
    if not 1 <= limit <= MAX_SLOTS:
        raise InvalidInput(
            _("Ask for between 1 and %(n)d slots.") % {"n": MAX_SLOTS}, code="invalid_limit"
        )
    if step < MIN_STEP:
        raise InvalidInput(
            _("Slots must be at least %(minutes)d minutes apart.")
            % {"minutes": MIN_STEP.seconds // 60},
            code="invalid_step",
        )
    if not_before is not None and djtz.is_naive(not_before):
        raise InvalidInput(_("Times must carry a UTC offset."), code="naive_datetime")
    return ZoneInfo(timezone)
