"""Web forms of the meetings app: they validate input and shape it for the services.

The booking form works without JavaScript: attendees are typed one address per line, and the
recurrence builder is plain radio buttons, checkboxes and selects. The htmx helpers (people
search, recurrence summary, free/busy, find a time) only fill or read these same fields.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, cast
from zoneinfo import ZoneInfo

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone as djtz
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from agencies.models import User
from agencies.reference import timezones
from meetings.models import AccessLevel, AttendeeRole, Meeting
from meetings.recurrence import MAX_COUNT, WEEKDAYS, Recurrence, expand
from meetings.selectors import Occurrence, active_users_by_email
from meetings.services import AttendeeSpec
from visio_broker.errors import DomainError

NO_REPEAT = "none"
REPEAT_CHOICES = [
    (NO_REPEAT, _("Does not repeat")),
    ("DAILY", _("Daily")),
    ("WEEKLY", _("Weekly")),
    ("MONTHLY", _("Monthly")),
    ("YEARLY", _("Yearly")),
]
WEEKDAY_CHOICES = list(
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
NTH_CHOICES = [
    ("", _("as the date")),
    ("1", _("first")),
    ("2", _("second")),
    ("3", _("third")),
    ("4", _("fourth")),
    ("-1", _("last")),
]
MONTH_CHOICES = [
    (str(number), name)
    for number, name in enumerate(
        (
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
        ),
        start=1,
    )
]
MONTHLY_MODE_CHOICES = [("day", _("On a day of the month")), ("nth", _("On a weekday"))]
ENDS_CHOICES = [
    ("never", _("Never")),
    ("count", _("After a number of occurrences")),
    ("until", _("On a date")),
]
DURATIONS = (15, 30, 45, 60, 90, 120, 180, 240, 480)
MEETING_REMINDER_CHOICES = [
    ("", _("None")),
    (5, _("5 minutes before")),
    (15, _("15 minutes before")),
    (60, _("1 hour before")),
    (1440, _("1 day before")),
]
RECURRENCE_FIELDS = (
    "repeat",
    "interval",
    "weekdays",
    "monthly_mode",
    "month_day",
    "nth",
    "nth_weekday",
    "month",
    "ends",
    "count",
    "until",
)
# Service error codes → the field the message belongs to (None: the form as a whole).
FIELD_OF_ERROR = {
    "title_required": "title",
    "invalid_timezone": "timezone",
    "end_before_start": "end_time",
    "too_long": "end_time",
    "start_in_past": "date",
    "empty_recurrence": "repeat",
    "overlapping_occurrences": "repeat",
    "unsupported_recurrence": "repeat",
    "invalid_email": "attendees",
    "too_many_attendees": "attendees",
    "invalid_role": "attendees",
    "invalid_access_level": "access_level",
    "invalid_reminder": "reminder_minutes",
}
DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
TIME_INPUT = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
_SEPARATORS = re.compile(r"[\n,;]+")
_NAMED_ADDRESS = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^<>]+)>$")


def _timezone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in timezones()]


def _duration_label(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return ngettext("%(n)d minute", "%(n)d minutes", rest) % {"n": rest}
    text = ngettext("%(n)d hour", "%(n)d hours", hours) % {"n": hours}
    if rest:
        text += " " + ngettext("%(n)d minute", "%(n)d minutes", rest) % {"n": rest}
    return text


def _duration_choices() -> list[tuple[Any, str]]:
    return [("", "—"), *((minutes, _duration_label(minutes)) for minutes in DURATIONS)]


def _date_field(label: Any = None, required: bool = True) -> forms.DateField:
    return forms.DateField(label=label or _("Date"), required=required, widget=DATE_INPUT)


def _timezone_field() -> forms.ChoiceField:
    return forms.ChoiceField(label=_("Time zone"), choices=_timezone_choices)


def _nth_of(day: dt.date) -> int:
    """Which weekday of its month ``day`` is: 1 … 4, or -1 for a fifth one (the last)."""
    nth = (day.day - 1) // 7 + 1
    return -1 if nth == 5 else nth


def parse_addresses(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(email, name) pairs from one address per line (commas and semicolons work too), and
    the items that are not email addresses. Accepts ``Name <email>`` as mail clients paste it."""
    found: dict[str, str] = {}
    invalid: list[str] = []
    for raw in _SEPARATORS.split(text):
        item = raw.strip()
        if not item:
            continue
        name = ""
        match = _NAMED_ADDRESS.match(item)
        if match:
            item, name = match.group("email").strip(), match.group("name").strip().strip('"')
        email = item.lower()
        try:
            validate_email(email)
        except ValidationError:
            invalid.append(raw.strip())
            continue
        found.setdefault(email, name)
    return list(found.items()), invalid


def _clean_addresses(text: str) -> list[tuple[str, str]]:
    addresses, invalid = parse_addresses(text)
    if invalid:
        raise ValidationError(
            ngettext(
                "%(items)s is not a valid email address.",
                "These are not valid email addresses: %(items)s.",
                len(invalid),
            )
            % {"items": ", ".join(invalid)},
            code="invalid_email",
        )
    return addresses


# --- Building blocks -----------------------------------------------------------------------------


class TimingFields(forms.Form):
    """Date, start, end or duration, all-day and time zone: ``clean_timing`` builds the times."""

    date = _date_field()
    start_time = forms.TimeField(label=_("Start time"), required=False, widget=TIME_INPUT)
    end_time = forms.TimeField(label=_("End time"), required=False, widget=TIME_INPUT)
    duration = forms.TypedChoiceField(
        label=_("Or duration"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=_duration_choices,
        help_text=_("A duration, when chosen, sets the end time."),
    )
    all_day = forms.BooleanField(label=_("All day"), required=False)
    timezone = _timezone_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An existing meeting may last longer than the usual choices (or cross midnight).
        current = self.data.get("duration") if self.is_bound else self.initial.get("duration")
        duration = cast(forms.TypedChoiceField, self.fields["duration"])
        if current and str(current).isdigit():
            minutes = int(current)
            if 0 < minutes <= 24 * 60 and minutes not in DURATIONS:
                duration.choices = [*_duration_choices(), (minutes, _duration_label(minutes))]

    def clean_timing(self) -> None:
        data = self.cleaned_data
        day, tz = data.get("date"), data.get("timezone")
        if day is None or tz is None:
            return
        zone = ZoneInfo(tz)
        if data.get("all_day"):
            start = dt.datetime.combine(day, dt.time(), zone)
            end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
        else:
            start_time, end_time = data.get("start_time"), data.get("end_time")
            if start_time is None:
                if "start_time" not in self.errors:
                    self.add_error("start_time", _("Give a start time."))
                return
            start = dt.datetime.combine(day, start_time, zone)
            if data.get("duration"):
                end = start + dt.timedelta(minutes=data["duration"])
            elif end_time is not None:
                end = dt.datetime.combine(day, end_time, zone)
                if end <= start:
                    self.add_error("end_time", _("The meeting must end after it starts."))
                    return
            else:
                if "end_time" not in self.errors:
                    self.add_error("end_time", _("Give an end time or a duration."))
                return
        data["start"], data["end"] = start, end


class AttendeeFields(forms.Form):
    """Attendees as text, one address per line: the path that works without JavaScript."""

    attendees = forms.CharField(
        label=_("Required attendees"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            "One email address per line. Anyone may be invited, also people outside your agency."
        ),
    )
    optional_attendees = forms.CharField(
        label=_("Optional attendees"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_("One email address per line."),
    )
    co_organizers = forms.CharField(
        label=_("Co-organizers"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            "People of an agency on this service who may also change the meeting. "
            "One email address per line."
        ),
    )

    def clean_attendees(self) -> list[tuple[str, str]]:
        return _clean_addresses(self.cleaned_data["attendees"])

    def clean_optional_attendees(self) -> list[tuple[str, str]]:
        return _clean_addresses(self.cleaned_data["optional_attendees"])

    def clean_co_organizers(self) -> list[User]:
        emails = [email for email, _name in _clean_addresses(self.cleaned_data["co_organizers"])]
        users = active_users_by_email(emails)
        unknown = [email for email in emails if email not in users]
        if unknown:
            raise ValidationError(
                ngettext(
                    "%(emails)s is not a person on this service: co-organizers must be.",
                    "%(emails)s are not people on this service: co-organizers must be.",
                    len(unknown),
                )
                % {"emails": ", ".join(unknown)},
                code="unknown_co_organizer",
            )
        return [users[email] for email in emails]

    def attendee_specs(self) -> list[AttendeeSpec]:
        """Required first (an address in both lists is required), then optional, then the
        co-organizers who are not listed: they attend too, as the service expects."""
        data = self.cleaned_data
        specs: dict[str, AttendeeSpec] = {}
        for key, role in (
            ("attendees", AttendeeRole.REQUIRED),
            ("optional_attendees", AttendeeRole.OPTIONAL),
        ):
            for email, name in data.get(key) or []:
                specs.setdefault(email, AttendeeSpec(email, name, role))
        for user in data.get("co_organizers") or []:
            specs.setdefault(
                user.email.lower(),
                AttendeeSpec(user.email.lower(), user.display_name, AttendeeRole.REQUIRED),
            )
        return list(specs.values())

    def emails(self) -> tuple[list[str], list[str]]:
        """Required (co-organizers included) and optional addresses, for free/busy."""
        required = [spec.email for spec in self.attendee_specs() if spec.role != "optional"]
        optional = [spec.email for spec in self.attendee_specs() if spec.role == "optional"]
        return required, optional


class RecurrenceFields(forms.Form):
    """The recurrence builder; ``clean_recurrence`` turns it into a ``Recurrence``."""

    repeat = forms.ChoiceField(
        label=_("Repeats"),
        choices=REPEAT_CHOICES,
        required=False,
        initial=NO_REPEAT,
        widget=forms.RadioSelect,
    )
    interval = forms.IntegerField(
        label=_("Every"), min_value=1, max_value=99, required=False, initial=1
    )
    weekdays = forms.MultipleChoiceField(
        label=_("On these days"),
        choices=WEEKDAY_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None chosen: the weekday of the date."),
    )
    monthly_mode = forms.ChoiceField(
        label=_("On which day"),
        choices=MONTHLY_MODE_CHOICES,
        required=False,
        initial="day",
        widget=forms.RadioSelect,
    )
    month_day = forms.IntegerField(
        label=_("Day of the month"), min_value=1, max_value=31, required=False
    )
    nth = forms.ChoiceField(label=_("Which one"), choices=NTH_CHOICES, required=False)
    nth_weekday = forms.ChoiceField(
        label=_("Weekday"),
        choices=[("", _("the date's weekday")), *WEEKDAY_CHOICES],
        required=False,
    )
    month = forms.TypedChoiceField(
        label=_("Month"),
        choices=[("", _("the date's month")), *MONTH_CHOICES],
        coerce=int,
        empty_value=None,
        required=False,
    )
    ends = forms.ChoiceField(
        label=_("Ends"),
        choices=ENDS_CHOICES,
        required=False,
        initial="never",
        widget=forms.RadioSelect,
    )
    count = forms.IntegerField(
        label=_("Number of occurrences"), min_value=1, max_value=MAX_COUNT, required=False
    )
    until = _date_field(_("Last day"), required=False)

    def __init__(self, *args: Any, initial_recurrence: Recurrence | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.initial_recurrence = initial_recurrence

    def clean_recurrence(self, day: dt.date | None, tz: str | None) -> None:
        data = self.cleaned_data
        data["recurrence"] = None
        freq = data.get("repeat") or NO_REPEAT
        if freq == NO_REPEAT:
            # The builder's other fields are hidden then: what they hold does not matter.
            for name in RECURRENCE_FIELDS[1:]:
                self.errors.pop(name, None)
            return
        if day is None or tz is None:
            return
        if any(name in self.errors for name in RECURRENCE_FIELDS):
            return
        weekdays: tuple[str, ...] = ()
        month_day = nth = month = None
        if freq == "WEEKLY":
            # Like Outlook: a weekly series repeats on the weekday of its date unless told.
            weekdays = tuple(data.get("weekdays") or ()) or (WEEKDAYS[day.weekday()],)
        elif freq in ("MONTHLY", "YEARLY"):
            if data.get("monthly_mode") == "nth":
                nth = int(data.get("nth") or _nth_of(day))
                weekdays = (data.get("nth_weekday") or WEEKDAYS[day.weekday()],)
            else:
                month_day = data.get("month_day") or day.day
            if freq == "YEARLY":
                month = data.get("month") or day.month
        count = until = None
        ends = data.get("ends") or "never"
        if ends == "count":
            count = data.get("count")
            if count is None:
                self.add_error("count", _("Say after how many occurrences the series ends."))
                return
        elif ends == "until":
            last_day = data.get("until")
            if last_day is None:
                self.add_error("until", _("Choose the day of the last occurrence."))
                return
            if last_day < day:
                self.add_error("until", _("The series cannot end before its first day."))
                return
            until = self._until(last_day, tz)
        try:
            data["recurrence"] = Recurrence(
                freq=freq,
                interval=data.get("interval") or 1,
                weekdays=weekdays,
                month_day=month_day,
                nth=nth,
                month=month,
                count=count,
                until=until,
            )
        except DomainError as exc:
            field = {"WEEKLY": "weekdays", "MONTHLY": "monthly_mode", "YEARLY": "monthly_mode"}
            self.add_error(field.get(freq, "repeat"), exc.message)

    def _until(self, last_day: dt.date, tz: str) -> dt.datetime:
        """The end of ``last_day`` in the meeting's zone, in UTC; an unchanged end date keeps
        the series' own UNTIL (a split series ends at an exact moment, not at midnight)."""
        zone = ZoneInfo(tz)
        kept = self.initial_recurrence.until if self.initial_recurrence else None
        if kept is not None and kept.astimezone(zone).date() == last_day:
            return kept
        end_of_day = dt.datetime.combine(last_day, dt.time(23, 59, 59), zone)
        return end_of_day.astimezone(dt.UTC)

    def recurrence_summary(self) -> str:
        recurrence = self.cleaned_data.get("recurrence") if hasattr(self, "cleaned_data") else None
        if recurrence is None:
            return ""
        return recurrence.summary(self.cleaned_data.get("timezone") or "UTC")


# --- The forms -----------------------------------------------------------------------------------


class MeetingForm(TimingFields, RecurrenceFields, AttendeeFields):
    """New meeting, edit of a series, and "this and following": the same fields."""

    # The order of the page, so that the error summary lists the errors as they appear.
    field_order = [
        "title",
        "description",
        "date",
        "start_time",
        "end_time",
        "duration",
        "all_day",
        "timezone",
        *RECURRENCE_FIELDS,
        "attendees",
        "optional_attendees",
        "co_organizers",
        "access_level",
        "lobby_enabled",
        "listed_publicly",
        "reminder_minutes",
    ]

    title = forms.CharField(label=_("Title"), max_length=200)
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    access_level = forms.ChoiceField(
        label=_("Who may join"),
        choices=AccessLevel.choices,
        initial=AccessLevel.INVITE,
        required=False,
        widget=forms.RadioSelect,
    )
    lobby_enabled = forms.BooleanField(
        label=_("Lobby"),
        required=False,
        initial=True,
        help_text=_("People who join through the link wait until an organizer lets them in."),
    )
    listed_publicly = forms.BooleanField(
        label=_("List in the agency's public calendar"),
        required=False,
        initial=False,
        help_text=_(
            "When the agency publishes a public calendar, it shows this meeting's title and "
            "time (nothing else)."
        ),
    )

    notify = forms.BooleanField(
        label=_("Notify attendees"),
        required=False,
        help_text=_(
            "Changes of time or recurrence always send an update; tick this to send one for "
            "other changes too (title, description)."
        ),
    )
    reminder_minutes = forms.TypedChoiceField(
        label=_("Reminder for everyone"),
        choices=MEETING_REMINDER_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
        help_text=_("Sent to every attendee on top of the reminders they chose themselves."),
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        self.clean_timing()
        self.clean_recurrence(data.get("date"), data.get("timezone"))
        return data

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "title": data["title"],
            "description": data["description"],
            "start": data["start"],
            "end": data["end"],
            "timezone": data["timezone"],
            "all_day": data["all_day"],
            "recurrence": data["recurrence"],
            "attendees": self.attendee_specs(),
            "co_organizers": data["co_organizers"],
            "access_level": data["access_level"] or AccessLevel.INVITE,
            "lobby_enabled": data["lobby_enabled"],
            "listed_publicly": data["listed_publicly"],
            "reminder_minutes": data.get("reminder_minutes"),
        }

    def add_domain_error(self, exc: DomainError) -> None:
        field = FIELD_OF_ERROR.get(exc.code)
        if field == "end_time" and self.cleaned_data.get("all_day"):
            field = "date"
        self.add_error(field, exc.message)


class RecurrencePreviewForm(RecurrenceFields):
    """What the live summary reads: the recurrence builder, the date and the zone."""

    date = _date_field(required=False)
    timezone = _timezone_field()

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        day = data.get("date") or djtz.localdate()
        self.clean_recurrence(day, data.get("timezone"))
        return data


class AvailabilityForm(TimingFields, AttendeeFields):
    """What the free/busy panel reads from the booking form."""

    exclude_meeting = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        self.clean_timing()
        return data


class FindATimeForm(AvailabilityForm):
    search_from = _date_field(_("From"), required=False)
    search_to = _date_field(_("To"), required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        first, last = data.get("search_from"), data.get("search_to")
        if first and last and last < first:
            self.add_error("search_to", _("The last day must not come before the first day."))
        return data


class OccurrenceMoveForm(forms.Form):
    """New date and times of one occurrence, in the meeting's own time zone."""

    date = _date_field()
    start_time = forms.TimeField(label=_("Start time"), widget=TIME_INPUT)
    end_time = forms.TimeField(label=_("End time"), widget=TIME_INPUT)

    def __init__(self, *args: Any, timezone: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = ZoneInfo(timezone)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        day, start_time, end_time = data.get("date"), data.get("start_time"), data.get("end_time")
        if day is None or start_time is None or end_time is None:
            return data
        data["start"] = dt.datetime.combine(day, start_time, self.zone)
        data["end"] = dt.datetime.combine(day, end_time, self.zone)
        if data["end"] <= data["start"]:
            self.add_error("end_time", _("The meeting must end after it starts."))
        return data

    def add_domain_error(self, exc: DomainError) -> None:
        self.add_error(FIELD_OF_ERROR.get(exc.code), exc.message)


class RespondForm(forms.Form):
    partstat = forms.ChoiceField(
        choices=[("accepted", "accepted"), ("tentative", "tentative"), ("declined", "declined")]
    )


class AgendaRangeForm(forms.Form):
    start = _date_field(required=False)


class WeekForm(forms.Form):
    date = _date_field(required=False)


class PeopleSearchForm(forms.Form):
    q = forms.CharField(max_length=100, required=False)


class FeedOptionsForm(forms.Form):
    include_declined = forms.BooleanField(
        label=_("Include meetings I declined"),
        required=False,
        help_text=_("They show in your calendar app with your answer."),
    )


class AgencyCalendarForm(forms.Form):
    enabled = forms.BooleanField(
        label=_("Publish the agency's public calendar"),
        required=False,
        help_text=_(
            "Anyone with its address sees the title and time of the meetings whose organizers "
            "listed them in it; nothing else."
        ),
    )


# --- Initial values ------------------------------------------------------------------------------


def initial_for_new(user: User) -> dict[str, Any]:
    """Outlook's default: the next half hour today (or 09:00 on the next working day), 30 min."""
    zone = ZoneInfo(user.timezone)
    now = djtz.now().astimezone(zone)
    start = (now + dt.timedelta(minutes=30)).replace(second=0, microsecond=0)
    start -= dt.timedelta(minutes=start.minute % 30)
    if start.date() != now.date() or start.time() > dt.time(17, 30):
        day = now.date() + dt.timedelta(days=1)
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
        start = dt.datetime.combine(day, dt.time(9), zone)
    end = start + dt.timedelta(minutes=30)
    return {
        "date": start.date(),
        "start_time": start.time(),
        "end_time": end.time(),
        "timezone": user.timezone,
        "repeat": NO_REPEAT,
        "interval": 1,
        "monthly_mode": "day",
        "ends": "never",
        "access_level": AccessLevel.INVITE,
        "lobby_enabled": True,
    }


def initial_from_meeting(meeting: Meeting, occurrence: Occurrence | None = None) -> dict[str, Any]:
    """The form's values for a meeting, or for its series from ``occurrence`` on."""
    zone = ZoneInfo(meeting.timezone)
    start_utc = occurrence.recurrence_id if occurrence and occurrence.recurrence_id else None
    start = (start_utc or meeting.start).astimezone(zone)
    end = start + meeting.duration
    initial: dict[str, Any] = {
        "title": meeting.title,
        "description": meeting.description,
        "date": start.date(),
        "timezone": meeting.timezone,
        "all_day": meeting.all_day,
        "access_level": meeting.access_level,
        "lobby_enabled": meeting.lobby_enabled,
        "listed_publicly": meeting.listed_publicly,
        "reminder_minutes": meeting.reminder_minutes or "",
    }
    if not meeting.all_day:
        initial["start_time"] = start.time()
        if end.date() == start.date():
            initial["end_time"] = end.time()
        else:
            initial["duration"] = int(meeting.duration.total_seconds() // 60)
    people = [a for a in meeting.attendees.all() if a.role != AttendeeRole.CHAIR]
    initial["attendees"] = "\n".join(a.email for a in people if a.role == AttendeeRole.REQUIRED)
    initial["optional_attendees"] = "\n".join(
        a.email for a in people if a.role == AttendeeRole.OPTIONAL
    )
    initial["co_organizers"] = "\n".join(user.email for user in meeting.co_organizers.all())
    rule = Recurrence.parse(meeting.rrule) if meeting.rrule else None
    initial.update(recurrence_initial(rule, zone))
    if rule is not None and rule.count is not None and start_utc is not None:
        initial["count"] = rule.count - _occurrences_before(meeting, start_utc)
    return initial


def recurrence_initial(rule: Recurrence | None, zone: ZoneInfo) -> dict[str, Any]:
    if rule is None:
        return {"repeat": NO_REPEAT, "interval": 1, "monthly_mode": "day", "ends": "never"}
    initial: dict[str, Any] = {
        "repeat": rule.freq,
        "interval": rule.interval,
        "monthly_mode": "nth" if rule.nth is not None else "day",
        "ends": "count" if rule.count else ("until" if rule.until else "never"),
        "count": rule.count,
        "until": rule.until.astimezone(zone).date() if rule.until else None,
        "month_day": rule.month_day,
        "month": rule.month,
    }
    if rule.nth is not None:
        initial.update(nth=str(rule.nth), nth_weekday=rule.weekdays[0])
    elif rule.freq == "WEEKLY":
        initial["weekdays"] = list(rule.weekdays)
    return initial


def _occurrences_before(meeting: Meeting, moment: dt.datetime) -> int:
    """How many occurrences of the series start before ``moment`` (what a split leaves behind)."""
    return sum(
        1
        for _start in expand(
            rrule=meeting.rrule,
            start=meeting.start,
            timezone=meeting.timezone,
            window_start=meeting.start,
            window_end=moment,
        )
    )
