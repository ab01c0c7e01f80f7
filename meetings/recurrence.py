"""Recurrence rules limited to what Outlook can represent, and their expansion.

A rule is stored as an RFC 5545 RRULE string. ``Recurrence`` is its structured form: the web
form and the API build one, ``Recurrence.parse`` validates what arrives as text, and
``expand`` turns a meeting's rule into occurrences anchored in the meeting's own time zone, so a
weekly 10:00 Europe/Paris meeting stays at 10:00 Paris time across DST changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from visio_broker.errors import InvalidInput

FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# Outlook's "first … fourth, last" weekday of the month.
ORDINALS = (1, 2, 3, 4, -1)
MAX_COUNT = 999
# Expansion never runs unbounded: a rule with no end is cut at this many occurrences per call.
MAX_OCCURRENCES_PER_EXPANSION = 5000

_UNTIL_RE = re.compile(r"^\d{8}T\d{6}Z$")
_BYDAY_RE = re.compile(r"^(-1|[1-4])?(MO|TU|WE|TH|FR|SA|SU)$")


def _unsupported(message: str) -> InvalidInput:
    return InvalidInput(message, code="unsupported_recurrence")


@dataclass(frozen=True)
class Recurrence:
    """One of the patterns Outlook can show. Exactly one way of ending: count, until or never."""

    freq: str
    interval: int = 1
    weekdays: tuple[str, ...] = ()  # WEEKLY: the chosen days
    month_day: int | None = None  # MONTHLY/YEARLY on a day of the month
    nth: int | None = None  # MONTHLY/YEARLY on the nth weekday: nth + weekdays[0]
    month: int | None = None  # YEARLY
    count: int | None = None
    until: datetime | None = None  # UTC

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.freq not in FREQUENCIES:
            raise _unsupported(_("Repeat daily, weekly, monthly or yearly."))
        if not 1 <= self.interval <= 99:
            raise _unsupported(_("The interval must be between 1 and 99."))
        if self.count is not None and self.until is not None:
            raise _unsupported(_("A series ends after a number of times or on a date, not both."))
        if self.count is not None and not 1 <= self.count <= MAX_COUNT:
            raise _unsupported(
                _("A series can have between 1 and %(max)d occurrences.") % {"max": MAX_COUNT}
            )
        if self.until is not None and self.until.utcoffset() != timedelta(0):
            raise _unsupported(_("The end date of a series must be given in UTC."))
        if any(day not in WEEKDAYS for day in self.weekdays):
            raise _unsupported(_("Unknown weekday."))
        if len(set(self.weekdays)) != len(self.weekdays):
            raise _unsupported(_("Each weekday may be chosen once."))
        if self.month_day is not None and not 1 <= self.month_day <= 31:
            raise _unsupported(_("The day of the month must be between 1 and 31."))
        if self.month is not None and not 1 <= self.month <= 12:
            raise _unsupported(_("The month must be between 1 and 12."))
        if self.nth is not None and self.nth not in ORDINALS:
            raise _unsupported(
                _("Choose the first, second, third, fourth or last weekday of the month.")
            )
        self._validate_shape()

    def _validate_shape(self) -> None:
        by_weekday = self.nth is not None
        if self.freq == "DAILY":
            if self.weekdays or self.month_day or by_weekday or self.month:
                raise _unsupported(
                    _("A daily series repeats every N days; for chosen weekdays repeat weekly.")
                )
        elif self.freq == "WEEKLY":
            if not self.weekdays:
                raise _unsupported(_("Choose at least one weekday for a weekly series."))
            if self.month_day or by_weekday or self.month:
                raise _unsupported(_("A weekly series repeats on weekdays only."))
        else:
            if self.month_day is not None and by_weekday:
                raise _unsupported(
                    _("Repeat on a day of the month or on an nth weekday, not both.")
                )
            if by_weekday and len(self.weekdays) != 1:
                raise _unsupported(_("Repeat on one weekday, such as the second Tuesday."))
            if not by_weekday and self.weekdays:
                raise _unsupported(
                    _("Say which weekday of the month: first, second, third, fourth or last.")
                )
            if self.freq == "MONTHLY" and self.month is not None:
                raise _unsupported(_("A monthly series cannot be limited to one month."))
            if self.freq == "YEARLY" and (self.month_day or by_weekday) and self.month is None:
                raise _unsupported(_("Choose the month of a yearly series."))

    # --- Text form ----------------------------------------------------------------------------

    def to_rrule(self) -> str:
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.nth is not None:
            parts.append(f"BYDAY={self.nth}{self.weekdays[0]}")
        elif self.weekdays:
            ordered = sorted(self.weekdays, key=WEEKDAYS.index)
            parts.append(f"BYDAY={','.join(ordered)}")
        if self.month is not None:
            parts.append(f"BYMONTH={self.month}")
        if self.month_day is not None:
            parts.append(f"BYMONTHDAY={self.month_day}")
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until.astimezone(UTC):%Y%m%dT%H%M%SZ}")
        return ";".join(parts)

    @classmethod
    def parse(cls, text: str) -> Recurrence:
        """Validate an RRULE string (with or without the ``RRULE:`` prefix)."""
        text = text.strip().removeprefix("RRULE:")
        if not text:
            raise _unsupported(_("The recurrence rule is empty."))
        values: dict[str, str] = {}
        for part in text.split(";"):
            name, sep, value = part.partition("=")
            name = name.strip().upper()
            if not sep or not value or name in values:
                raise _unsupported(_("The recurrence rule %(rule)s is malformed.") % {"rule": text})
            values[name] = value.strip().upper()
        allowed = {"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "COUNT", "UNTIL", "WKST"}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise _unsupported(
                _("Outlook cannot show a series using %(parts)s.") % {"parts": ", ".join(unknown)}
            )
        try:
            return cls._from_values(values)
        except ValueError:
            raise _unsupported(
                _("The recurrence rule %(rule)s is malformed.") % {"rule": text}
            ) from None

    @classmethod
    def _from_values(cls, values: dict[str, str]) -> Recurrence:
        weekdays: list[str] = []
        nth: int | None = None
        if "BYDAY" in values:
            for item in values["BYDAY"].split(","):
                match = _BYDAY_RE.match(item)
                if match is None:
                    raise _unsupported(
                        _("Outlook cannot show the weekday rule %(rule)s.") % {"rule": item}
                    )
                if match.group(1):
                    if nth is not None:
                        raise _unsupported(_("Repeat on one weekday, such as the second Tuesday."))
                    nth = int(match.group(1))
                weekdays.append(match.group(2))
            if nth is not None and len(weekdays) != 1:
                raise _unsupported(_("Repeat on one weekday, such as the second Tuesday."))
        until = None
        if "UNTIL" in values:
            if not _UNTIL_RE.match(values["UNTIL"]):
                raise _unsupported(
                    _("The end of a series must be a UTC date-time such as 20270630T220000Z.")
                )
            until = datetime.strptime(values["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

        def integer(name: str) -> int | None:
            if name not in values:
                return None
            if "," in values[name]:
                raise _unsupported(
                    _("Outlook cannot show a series with several %(part)s values.") % {"part": name}
                )
            return int(values[name])

        interval = integer("INTERVAL")
        return cls(
            freq=values["FREQ"] if "FREQ" in values else "",
            # INTERVAL=0 is an error to report, not the default.
            interval=1 if interval is None else interval,
            weekdays=tuple(weekdays),
            month_day=integer("BYMONTHDAY"),
            nth=nth,
            month=integer("BYMONTH"),
            count=integer("COUNT"),
            until=until,
        )

    def with_until(self, until: datetime) -> Recurrence:
        """The same pattern ending at ``until`` (used to end a series when it is split)."""
        return Recurrence(
            freq=self.freq,
            interval=self.interval,
            weekdays=self.weekdays,
            month_day=self.month_day,
            nth=self.nth,
            month=self.month,
            until=until.astimezone(UTC),
        )

    # --- Plain language -----------------------------------------------------------------------

    def summary(self, timezone: str = "UTC") -> str:
        """'Every 2 weeks on Tuesday and Thursday, 10 times' in the active language."""
        day_names = _weekday_names()
        if self.freq == "DAILY":
            text = ngettext("Every day", "Every %(n)d days", self.interval) % {"n": self.interval}
        elif self.freq == "WEEKLY":
            days = _join([day_names[day] for day in sorted(self.weekdays, key=WEEKDAYS.index)])
            text = ngettext(
                "Every week on %(days)s", "Every %(n)d weeks on %(days)s", self.interval
            ) % {"n": self.interval, "days": days}
        elif self.freq == "MONTHLY":
            text = ngettext(
                "Every month on %(when)s", "Every %(n)d months on %(when)s", self.interval
            ) % {"n": self.interval, "when": self._month_position(day_names)}
        else:
            text = ngettext("Every year", "Every %(n)d years", self.interval) % {"n": self.interval}
            if self.month is not None and (self.month_day or self.nth):
                text = _("%(every)s on %(when)s of %(month)s") % {
                    "every": text,
                    "when": self._month_position(day_names),
                    "month": _month_names()[self.month - 1],
                }
        if self.count is not None:
            text += ngettext(", %(n)d time", ", %(n)d times", self.count) % {"n": self.count}
        elif self.until is not None:
            last_day = self.until.astimezone(ZoneInfo(timezone)).date()
            text += _(", until %(date)s") % {"date": last_day.isoformat()}
        return text

    def _month_position(self, day_names: dict[str, str]) -> str:
        if self.nth is not None:
            ordinal = {
                1: _("the first"),
                2: _("the second"),
                3: _("the third"),
                4: _("the fourth"),
                -1: _("the last"),
            }[self.nth]
            return f"{ordinal} {day_names[self.weekdays[0]]}"
        if self.month_day is not None:
            return _("day %(day)d") % {"day": self.month_day}
        return _("the same day")


def _weekday_names() -> dict[str, str]:
    return dict(
        zip(
            WEEKDAYS,
            (
                _("Monday"),
                _("Tuesday"),
                _("Wednesday"),
                _("Thursday"),
                _("Friday"),
                _("Saturday"),
                _("Sunday"),
            ),
            strict=True,
        )
    )


def _month_names() -> list[str]:
    return [
        _("January"),
        _("February"),
        _("March"),
        _("April"),
        _("May"),
        _("June"),
        _("July"),
        _("August"),
        _("September"),
        _("October"),
        _("November"),
        _("December"),
    ]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return _("%(items)s and %(last)s") % {"items": ", ".join(items[:-1]), "last": items[-1]}


def expand(
    *,
    rrule: str,
    start: datetime,
    timezone: str,
    window_start: datetime,
    window_end: datetime,
) -> Iterator[datetime]:
    """Starts (UTC) of the occurrences of a series that start inside [window_start, window_end).

    The rule runs on the wall clock of ``timezone``: dateutil keeps the local time of DTSTART
    and the zone supplies each occurrence's own UTC offset.
    """
    zone = ZoneInfo(timezone)
    local_start = start.astimezone(zone)
    rule = rrulestr(rrule, dtstart=local_start, cache=False)
    produced = 0
    for local in rule.xafter(window_start.astimezone(zone), inc=True):
        occurrence = local.astimezone(UTC)
        if occurrence >= window_end or produced >= MAX_OCCURRENCES_PER_EXPANSION:
            return
        produced += 1
        yield occurrence


def last_occurrence_start(*, rrule: str, start: datetime, timezone: str) -> datetime | None:
    """The start of the final occurrence, or None for a series that never ends."""
    recurrence = Recurrence.parse(rrule)
    if recurrence.count is None and recurrence.until is None:
        return None
    zone = ZoneInfo(timezone)
    rule = rrulestr(rrule, dtstart=start.astimezone(zone), cache=False)
    last = None
    for last in rule:  # noqa: B007 - bounded by COUNT or UNTIL
        pass
    return None if last is None else last.astimezone(UTC)


def local_date(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()
