"""Web pages of the meetings app: agenda, meeting page, booking form and its htmx helpers.

Every page renders times in the signed-in user's time zone (``signed_in`` activates it) and
shows the meeting's own zone beside them when it differs.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotFound,
    HttpResponseNotModified,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone as djtz
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.http import http_date
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agencies.models import Membership, User
from agencies.selectors import membership_of
from agencies.views import agency_admin_required
from meetings import feeds, freebusy, invitations, rsvp, selectors, services
from meetings.forms import (
    AgencyCalendarForm,
    AgendaRangeForm,
    AvailabilityForm,
    FeedOptionsForm,
    FindATimeForm,
    MeetingForm,
    OccurrenceMoveForm,
    PeopleSearchForm,
    RecurrencePreviewForm,
    RespondForm,
    WeekForm,
    initial_for_new,
    initial_from_meeting,
)
from meetings.models import AttendeeRole, FeedToken, Meeting, PartStat
from meetings.recurrence import Recurrence
from meetings.selectors import Occurrence
from visio_broker.errors import DomainError
from visio_broker.redaction import redact_request

View = Callable[..., HttpResponse]

AGENDA_DAYS = 28
UPCOMING_HORIZON = dt.timedelta(days=400)
UPCOMING_SHOWN = 10
FIND_A_TIME_WORKING_DAYS = 10
KEY_FORMAT = "%Y%m%dT%H%M%SZ"
# Week view: the hours always shown; earlier or later meetings widen the range.
WEEK_FIRST_HOUR, WEEK_LAST_HOUR = 8, 18


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)


def signed_in(view: View) -> View:
    """Signed-in users only; dates and times render in their own time zone."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with djtz.override(ZoneInfo(_user(request).timezone)):
            return view(request, *args, **kwargs)

    return wrapper


def booking_required(view: View) -> View:
    """Organizers and agency admins (``Membership.can_book``) only."""

    @signed_in
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = membership_of(_user(request))
        if membership is None or not membership.can_book:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def _raise_for_access(exc: DomainError) -> None:
    if exc.status == 403:
        raise PermissionDenied(exc.message)
    if exc.status == 404:
        raise Http404(exc.message)


def _meeting(user: User, pk: int) -> Meeting:
    # Through the visibility selector: someone else's meeting is a 404, not a 403.
    return get_object_or_404(
        selectors.with_details(selectors.meetings_visible_to(user=user)), pk=pk
    )


def _occurrence(meeting: Meeting, key: str) -> Occurrence:
    try:
        recurrence_id = dt.datetime.strptime(key, KEY_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise Http404 from None
    occurrence = selectors.occurrence_at(meeting, recurrence_id)
    if occurrence is None:
        raise Http404
    return occurrence


def _page_url(meeting: Meeting, occurrence: Occurrence | None = None) -> str:
    if occurrence is not None and occurrence.recurrence_id is not None:
        return reverse("occurrence_detail", args=[meeting.pk, occurrence.key])
    return reverse("meeting_detail", args=[meeting.pk])


# --- Agenda --------------------------------------------------------------------------------------


@dataclass
class AgendaEntry:
    occurrence: Occurrence
    url: str
    organizer: bool
    answer: str | None  # a PartStat value; None when the user organizes
    answer_label: str
    other_zone: str | None  # the meeting's zone when it is not the user's
    # Week view only: minutes from the top of the grid, length, and side-by-side lanes.
    offset: int = 0
    length: int = 0
    lane: int = 0
    lanes: int = 1

    @property
    def meeting(self) -> Meeting:
        return self.occurrence.meeting


@dataclass
class AgendaDay:
    day: dt.date
    entries: list[AgendaEntry] = field(default_factory=list)
    all_day: list[AgendaEntry] = field(default_factory=list)
    today: bool = False


def _entry(occurrence: Occurrence, user: User) -> AgendaEntry:
    meeting = occurrence.meeting
    organizer = meeting.is_organizer(user)
    attendee = meeting.attendee_for(user)
    answer = None if organizer or attendee is None else attendee.partstat
    return AgendaEntry(
        occurrence=occurrence,
        url=_page_url(meeting, occurrence),
        organizer=organizer,
        answer=answer,
        answer_label=str(PartStat(answer).label) if answer else "",
        other_zone=meeting.timezone if meeting.timezone != user.timezone else None,
    )


def _local_date(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    return moment.astimezone(zone).date()


@signed_in
@require_GET
def agenda(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    zone = ZoneInfo(user.timezone)
    form = AgendaRangeForm(request.GET)
    valid = form.is_valid()
    today = djtz.localdate()
    first_day = (form.cleaned_data.get("start") if valid else None) or today
    window_start = dt.datetime.combine(first_day, dt.time(), zone)
    window_end = dt.datetime.combine(first_day + dt.timedelta(days=AGENDA_DAYS), dt.time(), zone)
    days: dict[dt.date, AgendaDay] = {}
    for occurrence in selectors.agenda(user=user, window_start=window_start, window_end=window_end):
        # A meeting begun the evening before the window still shows, on the window's first day.
        day = max(_local_date(occurrence.start, zone), first_day)
        bucket = days.setdefault(day, AgendaDay(day=day, today=day == today))
        bucket.entries.append(_entry(occurrence, user))
    if not valid:
        messages.error(request, _("Choose a valid date."))
    return render(
        request,
        "meetings/agenda.html",
        {
            "days": list(days.values()),
            "first_day": first_day,
            "last_day": first_day + dt.timedelta(days=AGENDA_DAYS - 1),
            "earlier": first_day - dt.timedelta(days=AGENDA_DAYS),
            "later": first_day + dt.timedelta(days=AGENDA_DAYS),
            "today": today,
        },
        status=200 if valid else 400,
    )


@signed_in
@require_GET
def agenda_week(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    zone = ZoneInfo(user.timezone)
    form = WeekForm(request.GET)
    valid = form.is_valid()
    today = djtz.localdate()
    chosen = (form.cleaned_data.get("date") if valid else None) or today
    monday = chosen - dt.timedelta(days=chosen.weekday())
    window_start = dt.datetime.combine(monday, dt.time(), zone)
    window_end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(), zone)
    occurrences = selectors.agenda(user=user, window_start=window_start, window_end=window_end)
    days = [
        AgendaDay(day=monday + dt.timedelta(days=i), today=monday + dt.timedelta(days=i) == today)
        for i in range(7)
    ]
    first_hour, last_hour = _hour_range(occurrences, zone)
    for occurrence in occurrences:
        entry = _entry(occurrence, user)
        start = occurrence.start.astimezone(zone)
        end = occurrence.end.astimezone(zone)
        index = max(0, (start.date() - monday).days)
        if occurrence.meeting.all_day:
            last = min(
                6, (_local_date(occurrence.end - dt.timedelta(seconds=1), zone) - monday).days
            )
            for i in range(index, last + 1):
                days[i].all_day.append(entry)
            continue
        top = first_hour * 60
        begin = 0 if start.date() < days[index].day else start.hour * 60 + start.minute
        finish = 24 * 60 if end.date() > days[index].day else end.hour * 60 + end.minute
        entry.offset = max(begin, top) - top
        entry.length = max(min(finish, last_hour * 60) - max(begin, top), 15)
        days[index].entries.append(entry)
    for day in days:
        _assign_lanes(day.entries)
    if not valid:
        messages.error(request, _("Choose a valid date."))
    return render(
        request,
        "meetings/agenda_week.html",
        {
            "days": days,
            "monday": monday,
            "sunday": monday + dt.timedelta(days=6),
            "previous": monday - dt.timedelta(days=7),
            "next": monday + dt.timedelta(days=7),
            "today": today,
            "hours": [dt.time(hour) for hour in range(first_hour, last_hour)],
        },
        status=200 if valid else 400,
    )


def _hour_range(occurrences: list[Occurrence], zone: ZoneInfo) -> tuple[int, int]:
    first, last = WEEK_FIRST_HOUR, WEEK_LAST_HOUR
    for occurrence in occurrences:
        if occurrence.meeting.all_day:
            continue
        start, end = occurrence.start.astimezone(zone), occurrence.end.astimezone(zone)
        first = min(first, start.hour if start.date() == end.date() else 0)
        end_hour = end.hour + (1 if end.minute else 0)
        last = max(last, end_hour if end.date() == start.date() else 24)
    return first, last


def _assign_lanes(entries: list[AgendaEntry]) -> None:
    """Overlapping meetings of one day sit side by side: each cluster shares its lane count."""
    cluster: list[AgendaEntry] = []
    lane_ends: list[int] = []
    cluster_end = -1
    for entry in sorted(entries, key=lambda e: (e.offset, -e.length)):
        if entry.offset >= cluster_end and cluster:
            for member in cluster:
                member.lanes = len(lane_ends)
            cluster, lane_ends = [], []
        lane = next((i for i, end in enumerate(lane_ends) if end <= entry.offset), None)
        if lane is None:
            lane = len(lane_ends)
            lane_ends.append(0)
        lane_ends[lane] = entry.offset + entry.length
        entry.lane = lane
        cluster.append(entry)
        cluster_end = max(cluster_end, entry.offset + entry.length)
    for member in cluster:
        member.lanes = len(lane_ends)


# --- Meeting page --------------------------------------------------------------------------------


def _render_meeting(
    request: HttpRequest, meeting: Meeting, occurrence: Occurrence | None, status: int = 200
) -> HttpResponse:
    user = _user(request)
    attendees = list(meeting.attendees.all())
    counts = Counter(attendee.partstat for attendee in attendees)
    upcoming: list[Occurrence] = []
    if meeting.rrule and occurrence is None:
        now = djtz.now()
        upcoming = selectors.meeting_occurrences(meeting, now, now + UPCOMING_HORIZON)
    me = meeting.attendee_for(user)
    abilities = meeting.get_abilities(user)
    return render(
        request,
        "meetings/meeting_detail.html",
        {
            "meeting": meeting,
            "occurrence": occurrence,
            "start": occurrence.start if occurrence else meeting.start,
            "end": occurrence.end if occurrence else meeting.end,
            "cancelled": meeting.is_cancelled or bool(occurrence and occurrence.cancelled),
            "abilities": abilities,
            "failed_deliveries": (
                invitations.failed_deliveries(meeting) if abilities["view_attendance"] else []
            ),
            "attendees": attendees,
            "answer_counts": [(value, label, counts[value]) for value, label in PartStat.choices],
            "me": me,
            "is_chair": me is not None and me.role == AttendeeRole.CHAIR,
            "other_zone": meeting.timezone != user.timezone,
            "summary": (
                Recurrence.parse(meeting.rrule).summary(meeting.timezone) if meeting.rrule else ""
            ),
            "upcoming": upcoming[:UPCOMING_SHOWN],
            "more_upcoming": len(upcoming) > UPCOMING_SHOWN,
            "page_url": _page_url(meeting, occurrence),
        },
        status=status,
    )


@signed_in
@require_GET
def meeting_detail(request: HttpRequest, pk: int, key: str | None = None) -> HttpResponse:
    meeting = _meeting(_user(request), pk)
    if key is not None and not meeting.rrule:
        return redirect("meeting_detail", pk=meeting.pk)
    occurrence = _occurrence(meeting, key) if key is not None else None
    return _render_meeting(request, meeting, occurrence)


def _answered(partstat: str) -> str:
    if partstat == PartStat.ACCEPTED:
        return _("You accepted the invitation.")
    if partstat == PartStat.TENTATIVE:
        return _("You answered: tentative.")
    return _("You declined the invitation.")


@signed_in
@require_POST
def meeting_respond(request: HttpRequest, pk: int, key: str | None = None) -> HttpResponse:
    user = _user(request)
    meeting = _meeting(user, pk)
    occurrence = _occurrence(meeting, key) if key is not None and meeting.rrule else None
    attendee = meeting.attendee_for(user)
    if attendee is None:
        raise PermissionDenied
    form = RespondForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Answer accepted, tentative or declined."))
        return _render_meeting(request, meeting, occurrence, status=400)
    partstat = form.cleaned_data["partstat"]
    try:
        services.attendee_respond(actor=user, attendee=attendee, partstat=partstat)
    except DomainError as exc:
        _raise_for_access(exc)
        messages.error(request, exc.message)
        return _render_meeting(request, meeting, occurrence, status=exc.status)
    messages.success(request, _answered(partstat))
    return redirect(_page_url(meeting, occurrence))


@signed_in
def meeting_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    user = _user(request)
    meeting = _meeting(user, pk)
    if not meeting.get_abilities(user)["cancel"]:
        raise PermissionDenied
    if request.method == "POST":
        try:
            services.meeting_cancel(actor=user, meeting=meeting)
        except DomainError as exc:
            _raise_for_access(exc)
            messages.error(request, exc.message)
            return _render_confirm(request, meeting, None, status=exc.status)
        messages.success(request, _("The meeting is cancelled."))
        return redirect("meeting_detail", pk=meeting.pk)
    return _render_confirm(request, meeting, None)


@signed_in
def occurrence_cancel(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    user = _user(request)
    meeting = _meeting(user, pk)
    occurrence = _occurrence(meeting, key)
    if not meeting.get_abilities(user)["cancel"]:
        raise PermissionDenied
    if request.method == "POST":
        try:
            services.occurrence_cancel(
                actor=user,
                meeting=meeting,
                recurrence_id=cast(dt.datetime, occurrence.recurrence_id),
            )
        except DomainError as exc:
            _raise_for_access(exc)
            messages.error(request, exc.message)
            return _render_confirm(request, meeting, occurrence, status=exc.status)
        messages.success(request, _("This occurrence is cancelled."))
        return redirect(_page_url(meeting, occurrence))
    return _render_confirm(request, meeting, occurrence)


def _render_confirm(
    request: HttpRequest, meeting: Meeting, occurrence: Occurrence | None, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "meetings/confirm_cancel.html",
        {
            "meeting": meeting,
            "occurrence": occurrence,
            "start": occurrence.start if occurrence else meeting.start,
            "end": occurrence.end if occurrence else meeting.end,
            "page_url": _page_url(meeting, occurrence),
        },
        status=status,
    )


# --- Booking form --------------------------------------------------------------------------------


def _render_form(
    request: HttpRequest,
    form: MeetingForm,
    *,
    mode: str,
    meeting: Meeting | None = None,
    occurrence: Occurrence | None = None,
    status: int = 200,
) -> HttpResponse:
    # Unbound, the summary is fetched by htmx as the page loads (it depends on the fields).
    summary = form.recurrence_summary() if form.is_bound else ""
    return render(
        request,
        "meetings/meeting_form.html",
        {
            "form": form,
            "mode": mode,
            "meeting": meeting,
            "occurrence": occurrence,
            "summary": summary,
            "page_url": _page_url(meeting, occurrence) if meeting else reverse("agenda"),
        },
        status=status,
    )


@booking_required
def meeting_new(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    data = request.POST if request.method == "POST" else None
    form = MeetingForm(data, initial=initial_for_new(user))
    if data is None:
        return _render_form(request, form, mode="new")
    if form.is_valid():
        try:
            meeting = services.meeting_schedule(actor=user, **form.service_kwargs())
        except DomainError as exc:
            _raise_for_access(exc)
            form.add_domain_error(exc)
        else:
            messages.success(request, _("The meeting is booked."))
            return redirect("meeting_detail", pk=meeting.pk)
    return _render_form(request, form, mode="new", status=400)


@signed_in
def meeting_edit(request: HttpRequest, pk: int) -> HttpResponse:
    user = _user(request)
    meeting = _meeting(user, pk)
    if not meeting.get_abilities(user)["edit"]:
        raise PermissionDenied
    data = request.POST if request.method == "POST" else None
    form = MeetingForm(
        data,
        initial=initial_from_meeting(meeting),
        initial_recurrence=Recurrence.parse(meeting.rrule) if meeting.rrule else None,
    )
    if data is None:
        return _render_form(request, form, mode="edit", meeting=meeting)
    if form.is_valid():
        try:
            services.meeting_update(
                actor=user,
                meeting=meeting,
                notify=form.cleaned_data.get("notify", False),
                **form.service_kwargs(),
            )
        except DomainError as exc:
            _raise_for_access(exc)
            form.add_domain_error(exc)
        else:
            messages.success(request, _("The meeting is saved."))
            return redirect("meeting_detail", pk=meeting.pk)
    return _render_form(request, form, mode="edit", meeting=meeting, status=400)


@signed_in
def meeting_edit_following(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """ "This and all following": the series splits at the occurrence; the form edits the rest."""
    user = _user(request)
    meeting = _meeting(user, pk)
    if not meeting.rrule:
        raise Http404
    occurrence = _occurrence(meeting, key)
    if not meeting.get_abilities(user)["edit"]:
        raise PermissionDenied
    data = request.POST if request.method == "POST" else None
    form = MeetingForm(
        data,
        initial=initial_from_meeting(meeting, occurrence),
        initial_recurrence=Recurrence.parse(meeting.rrule),
    )
    if data is None:
        return _render_form(request, form, mode="following", meeting=meeting, occurrence=occurrence)
    if form.is_valid():
        try:
            continuation = services.series_split(
                actor=user,
                meeting=meeting,
                recurrence_id=cast(dt.datetime, occurrence.recurrence_id),
                **form.service_kwargs(),
            )
        except DomainError as exc:
            _raise_for_access(exc)
            form.add_domain_error(exc)
        else:
            messages.success(request, _("This and the following occurrences are saved."))
            return redirect("meeting_detail", pk=continuation.pk)
    return _render_form(
        request, form, mode="following", meeting=meeting, occurrence=occurrence, status=400
    )


@signed_in
def occurrence_move(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    user = _user(request)
    meeting = _meeting(user, pk)
    if not meeting.rrule:
        raise Http404
    occurrence = _occurrence(meeting, key)
    if not meeting.get_abilities(user)["edit"]:
        raise PermissionDenied
    zone = ZoneInfo(meeting.timezone)
    start, end = occurrence.start.astimezone(zone), occurrence.end.astimezone(zone)
    data = request.POST if request.method == "POST" else None
    form = OccurrenceMoveForm(
        data,
        timezone=meeting.timezone,
        initial={"date": start.date(), "start_time": start.time(), "end_time": end.time()},
    )
    if data is not None and form.is_valid():
        try:
            services.occurrence_move(
                actor=user,
                meeting=meeting,
                recurrence_id=cast(dt.datetime, occurrence.recurrence_id),
                start=form.cleaned_data["start"],
                end=form.cleaned_data["end"],
            )
        except DomainError as exc:
            _raise_for_access(exc)
            form.add_domain_error(exc)
        else:
            messages.success(request, _("The occurrence is moved."))
            return redirect(_page_url(meeting, occurrence))
    return render(
        request,
        "meetings/occurrence_move.html",
        {
            "form": form,
            "meeting": meeting,
            "occurrence": occurrence,
            "page_url": _page_url(meeting, occurrence),
        },
        status=400 if data is not None else 200,
    )


# --- htmx helpers of the booking form ------------------------------------------------------------
# Open to everyone signed in, not only to bookers: a co-organizer with the member role edits
# meetings with the same form. They read, never write.


@signed_in
@require_GET
def recurrence_summary(request: HttpRequest) -> HttpResponse:
    form = RecurrencePreviewForm(request.GET)
    valid = form.is_valid()
    errors = [str(error) for errors in form.errors.values() for error in errors]
    return render(
        request,
        "meetings/_recurrence_summary.html",
        {"summary": form.recurrence_summary() if valid else "", "errors": errors},
        status=200 if valid else 400,
    )


@signed_in
@require_GET
def people_search(request: HttpRequest) -> HttpResponse:
    form = PeopleSearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    people = selectors.people_search(query=query, exclude=_user(request)) if query else []
    typed_email = query.strip().lower() if "@" in query else ""
    if typed_email and any(person.email.lower() == typed_email for person in people):
        typed_email = ""
    return render(
        request,
        "meetings/_people_results.html",
        {"people": people, "query": query, "typed_email": typed_email},
        status=200 if form.is_valid() else 400,
    )


@dataclass(frozen=True)
class Availability:
    email: str
    name: str
    role: str
    state: str  # free | busy | unknown
    busy: list[freebusy.Busy]


@signed_in
@require_GET
def availability(request: HttpRequest) -> HttpResponse:
    """Free/busy of the organizer and every attendee during the chosen time."""
    user = _user(request)
    form = AvailabilityForm(request.GET)
    if not form.is_valid() or "start" not in form.cleaned_data:
        return _render_panel(request, "meetings/_availability.html", form, status=400)
    required, optional = form.emails()
    roles = {user.email.lower(): _("Organizer")}
    for emails, role in ((required, _("Required")), (optional, _("Optional"))):
        for email in emails:
            roles.setdefault(email, role)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    try:
        found = freebusy.freebusy(viewer=user, emails=list(roles), start=start, end=end)
    except DomainError as exc:
        return _render_panel(
            request, "meetings/_availability.html", form, error=exc.message, status=400
        )
    names = {person.email.lower(): str(person) for person in _people(list(roles))}
    exclude = form.cleaned_data.get("exclude_meeting")
    rows = []
    for email, role in roles.items():
        info = found[email]
        busy = [b for b in info.busy if exclude is None or b.meeting_id != exclude]
        state = "unknown" if not info.known else ("busy" if busy else "free")
        rows.append(Availability(email, names.get(email, email), str(role), state, busy))
    return _render_panel(
        request,
        "meetings/_availability.html",
        form,
        rows=rows,
        start=start,
        end=end,
        zone=form.cleaned_data["timezone"],
    )


def _people(emails: list[str]) -> list[User]:
    return list(selectors.active_users_by_email(emails).values())


def _working_days_after(first: dt.date, count: int) -> dt.date:
    day, seen = first, 0
    while True:
        if day.weekday() < 5:
            seen += 1
            if seen == count:
                return day
        day += dt.timedelta(days=1)


@signed_in
@require_GET
def find_a_time(request: HttpRequest) -> HttpResponse:
    """The earliest slots in working hours where the organizer and required attendees are free."""
    user = _user(request)
    form = FindATimeForm(request.GET)
    if not form.is_valid() or "start" not in form.cleaned_data:
        return _render_panel(request, "meetings/_find_a_time.html", form, status=400)
    data = form.cleaned_data
    zone = ZoneInfo(data["timezone"])
    today = djtz.now().astimezone(zone).date()
    first_day = data.get("search_from") or today
    last_day = data.get("search_to") or _working_days_after(first_day, FIND_A_TIME_WORKING_DAYS)
    required, optional = form.emails()
    try:
        slots = freebusy.find_a_time(
            viewer=user,
            required=[user.email, *required],
            optional=optional,
            duration=data["end"] - data["start"],
            first_day=first_day,
            last_day=last_day,
            timezone=data["timezone"],
        )
    except DomainError as exc:
        return _render_panel(
            request, "meetings/_find_a_time.html", form, error=exc.message, status=400
        )
    return _render_panel(
        request,
        "meetings/_find_a_time.html",
        form,
        slots=slots,
        zone=data["timezone"],
        first_day=first_day,
        last_day=last_day,
    )


def _render_panel(
    request: HttpRequest, template: str, form: Any, status: int = 200, **context: Any
) -> HttpResponse:
    errors = [str(error) for errors in form.errors.values() for error in errors]
    return render(request, template, {"form": form, "errors": errors, **context}, status=status)


# --- Calendar feeds ------------------------------------------------------------------------------


def _feed_not_found() -> HttpResponse:
    # Plain and small: a calendar client shows nothing of it, and it names no token.
    return HttpResponseNotFound(
        _("No calendar feed at this address."), content_type="text/plain; charset=utf-8"
    )


def _feed_headers(response: HttpResponse, etag: str, last_modified: dt.datetime) -> HttpResponse:
    response["ETag"] = etag
    response["Last-Modified"] = http_date(last_modified.timestamp())
    response["Cache-Control"] = feeds.CACHE_CONTROL
    patch_vary_headers(response, ["Accept-Encoding"])
    return response


@sensitive_variables("token")
@require_http_methods(["GET", "HEAD"])
def feed(request: HttpRequest, token: str) -> HttpResponse:
    """A calendar subscription: /feeds/<token>.ics, the token being the only credential."""
    redact_request(request)
    now = djtz.now()
    wants_gzip = feeds.accepts_gzip(request)
    conditional = "If-None-Match" in request.headers or "If-Modified-Since" in request.headers
    polled = feeds.poll(request, token, now=now, conditional=conditional)
    if polled.retry_after is not None:
        response = HttpResponse(
            _("Too many requests; try again later."),
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(polled.retry_after)
        return response
    cached = polled.validators
    if cached is not None and feeds.not_modified(request, cached.etag, cached.last_modified):
        etag = feeds.gzip_etag(cached.etag) if wants_gzip else cached.etag
        return _feed_headers(HttpResponseNotModified(), etag, cached.last_modified)
    found = feeds.feed_token_lookup(token)
    if found is None:
        return _feed_not_found()
    # Read before the rows: a write committed after this leaves the cached validators stale.
    cache_generation = feeds.cache_generation(found)
    plan: feeds.FeedPlan | None = None
    if conditional and feeds.validators_still_hold(found, now=now):
        # No write to the feed's rows since its fingerprint was taken: nothing to read.
        fingerprint, generation, checked_at = (
            found.fingerprint,
            found.checked_generation,
            found.checked_at,
        )
    else:
        # The generation is read (with the token) before the rows the fingerprint sums up.
        plan = feeds.feed_plan(found, now=now)
        fingerprint, generation, checked_at = feeds.feed_fingerprint(plan), found.generation, now
    if conditional and fingerprint == found.fingerprint and found.etag:
        last_modified = services.feed_token_served(
            feed=found,
            etag=found.etag,
            fingerprint=fingerprint,
            generation=generation,
            checked_at=checked_at,
        )
        feeds.remember_validators(found, generation=cache_generation, now=now)
        if feeds.not_modified(request, found.etag, last_modified):
            etag = feeds.gzip_etag(found.etag) if wants_gzip else found.etag
            return _feed_headers(HttpResponseNotModified(), etag, last_modified)
    if plan is None:
        plan = feeds.feed_plan(found, now=now)
    body, etag = feeds.feed_body(plan, fingerprint)
    last_modified = services.feed_token_served(
        feed=found, etag=etag, fingerprint=fingerprint, generation=generation, checked_at=checked_at
    )
    feeds.remember_validators(found, generation=cache_generation, now=now)
    shown_etag = etag
    if wants_gzip:
        body, shown_etag = feeds.gzipped(body, etag), feeds.gzip_etag(etag)
    if feeds.not_modified(request, etag, last_modified):
        return _feed_headers(HttpResponseNotModified(), shown_etag, last_modified)
    response = HttpResponse(
        b"" if request.method == "HEAD" else body, content_type=feeds.CONTENT_TYPE
    )
    response["Content-Length"] = str(len(body))
    if wants_gzip:
        response["Content-Encoding"] = "gzip"
    return _feed_headers(response, shown_etag, last_modified)


def _feed_action(request: HttpRequest, action: Callable[[], Any], success: str) -> None:
    try:
        action()
    except DomainError as exc:
        _raise_for_access(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, success)


def _own_feed(user: User) -> FeedToken:
    found = feeds.personal_feed_of(user)
    if found is None:
        raise Http404
    return found


@login_required
@require_POST
def profile_feed_create(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    _feed_action(
        request,
        lambda: services.feed_token_create(actor=user),
        _("Your calendar feed is ready: subscribe to its address in your calendar app."),
    )
    return redirect(reverse("profile") + "#calendar-feed")


@login_required
@require_POST
def profile_feed_rotate(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    found = _own_feed(user)
    _feed_action(
        request,
        lambda: services.feed_token_rotate(actor=user, feed=found),
        _("Your calendar feed has a new address; the old one no longer works."),
    )
    return redirect(reverse("profile") + "#calendar-feed")


@login_required
@require_POST
def profile_feed_revoke(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    found = _own_feed(user)
    _feed_action(
        request,
        lambda: services.feed_token_revoke(actor=user, feed=found),
        _("Your calendar feed is turned off; its address no longer works."),
    )
    return redirect(reverse("profile") + "#calendar-feed")


@login_required
@require_POST
def profile_feed_options(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    found = _own_feed(user)
    form = FeedOptionsForm(request.POST)
    if form.is_valid():
        _feed_action(
            request,
            lambda: services.feed_token_update(
                actor=user, feed=found, include_declined=form.cleaned_data["include_declined"]
            ),
            _("Your calendar feed options are saved."),
        )
    return redirect(reverse("profile") + "#calendar-feed")


@agency_admin_required
def agency_calendar(request: HttpRequest, admin: Membership) -> HttpResponse:
    """The agency's public calendar: on or off, and its subscription URL."""
    agency = admin.agency
    if request.method == "POST":
        form = AgencyCalendarForm(request.POST)
        if form.is_valid():
            if form.cleaned_data["enabled"]:
                _feed_action(
                    request,
                    lambda: services.agency_calendar_publish(actor=_user(request), agency=agency),
                    _("The public calendar is on."),
                )
            else:
                _feed_action(
                    request,
                    lambda: services.agency_calendar_unpublish(actor=_user(request), agency=agency),
                    _("The public calendar is off; its address answers nothing."),
                )
            return redirect("agency_calendar")
    else:
        form = AgencyCalendarForm(initial={"enabled": agency.public_calendar_enabled})
    response = render(
        request,
        "meetings/agency_calendar.html",
        {
            "agency": agency,
            "form": form,
            "calendar_feed": feeds.agency_feed_section(agency),
        },
        status=400 if form.errors else 200,
    )
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_POST
@agency_admin_required
def agency_calendar_rotate(request: HttpRequest, admin: Membership) -> HttpResponse:
    found = feeds.agency_feed_of(admin.agency)
    if found is None:
        raise Http404
    _feed_action(
        request,
        lambda: services.feed_token_rotate(actor=_user(request), feed=found),
        _("The public calendar has a new address; the old one no longer works."),
    )
    return redirect("agency_calendar")


# --- RSVP links ----------------------------------------------------------------------------------


def _rsvp_render(
    request: HttpRequest,
    template: str,
    link: rsvp.RsvpLink | None,
    *,
    status: int = 200,
    **context: Any,
) -> HttpResponse:
    meeting = link.meeting if link else None
    attendee = link.attendee if link else None
    # The attendee may be anyone: the page speaks their language and zone when we know them.
    zone = attendee.user.timezone if attendee and attendee.user else None
    zone = zone or (meeting.timezone if meeting else settings.TIME_ZONE)
    language = attendee.user.language if attendee and attendee.user else None
    with translation.override(language or translation.get_language()), djtz.override(zone):
        if meeting is not None:
            context.update(
                meeting=meeting,
                attendee=attendee,
                zone=zone,
                summary=(
                    Recurrence.parse(meeting.rrule).summary(meeting.timezone)
                    if meeting.rrule
                    else ""
                ),
            )
        response = render(request, template, context, status=status)
    # The token in the address is a capability: never leak it to the pages it links to.
    response["Referrer-Policy"] = "no-referrer"
    return response


@sensitive_variables("token")
@never_cache
@require_http_methods(["GET", "POST"])
def rsvp_answer(request: HttpRequest, token: str) -> HttpResponse:
    """Answer an invitation from its signed link, without signing in.

    GET only asks: mail scanners and link previews fetch every link of a message, so a GET that
    answered would accept (or decline) on the attendee's behalf. Only the POST of the
    confirmation page records the answer.
    """
    try:
        link = rsvp.rsvp_resolve(token)
    except rsvp.RsvpLinkError as exc:
        return _rsvp_render(
            request,
            "meetings/rsvp_unavailable.html",
            None,
            status=410 if exc.expired else 404,
            message=exc.message,
        )
    if link.meeting.is_cancelled:
        return _rsvp_render(
            request,
            "meetings/rsvp_unavailable.html",
            link,
            status=410,
            message=_("This meeting is cancelled: there is nothing to answer."),
        )
    if request.method == "POST":
        try:
            services.attendee_respond(
                actor=f"rsvp:{link.attendee.email}",
                attendee=link.attendee,
                partstat=link.partstat,
            )
        except DomainError as exc:
            return _rsvp_render(
                request,
                "meetings/rsvp_unavailable.html",
                link,
                status=exc.status,
                message=exc.message,
            )
        return _rsvp_render(request, "meetings/rsvp_done.html", link, partstat=link.partstat)
    return _rsvp_render(
        request,
        "meetings/rsvp_confirm.html",
        link,
        partstat=link.partstat,
        current=link.attendee.partstat,
        current_label=link.attendee.get_partstat_display(),
    )
