"""Web pages of the rooms app."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils import timezone as djtz
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agencies.models import Membership, User
from agencies.selectors import membership_of
from agencies.views import agency_admin_required
from meetings import selectors as meeting_selectors
from meetings.models import Meeting
from meetings.views import signed_in
from rooms import selectors, services
from rooms.forms import AdhocRoomForm, GuestNameForm
from rooms.models import LobbyEntry, LobbyStatus
from rooms.providers import JoinRole, Ticket
from visio_broker.errors import BackendUnavailable, DomainError, NotFound

# --- Attendance (organizers): live section and CSV export ----------------------------------------

# Spreadsheets run cells that start with these as formulas (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _attendance_meeting(request: HttpRequest, pk: int) -> Meeting:
    """The meeting if the user may see its attendance: 404 if invisible, else 403 unless ran it."""
    user = cast(User, request.user)
    meeting = get_object_or_404(
        meeting_selectors.with_details(meeting_selectors.meetings_visible_to(user=user)), pk=pk
    )
    if not meeting.get_abilities(user)["view_attendance"]:
        raise PermissionDenied
    return meeting


@signed_in
@require_GET
def meeting_attendance(request: HttpRequest, pk: int) -> HttpResponse:
    """The attendance section alone: the meeting page polls it to keep occupancy current."""
    meeting = _attendance_meeting(request, pk)
    return render(request, "rooms/_attendance.html", {"meeting": meeting})


@signed_in
@require_GET
def meeting_attendance_csv(request: HttpRequest, pk: int) -> HttpResponse:
    meeting = _attendance_meeting(request, pk)
    filename = f"attendance-{slugify(meeting.title) or 'meeting'}-{meeting.pk}.csv"
    response = HttpResponse(
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": content_disposition_header(True, filename),
            # Personal data: no shared or stored copies.
            "Cache-Control": "private, no-store",
        },
    )
    # A byte-order mark so that spreadsheet programs read the names as UTF-8.
    response.write("\ufeff")
    writer = csv.writer(response)
    writer.writerow([_("Name"), _("Email"), _("Joined"), _("Left"), _("Duration"), _("Time zone")])
    zone = str(timezone.get_current_timezone())
    for session in selectors.attendance_of_meeting(meeting=meeting):
        writer.writerow(
            [
                _csv_safe(session.display_name or session.identity),
                _csv_safe(session.user.email if session.user else ""),
                _local(session.joined_at),
                _local(session.left_at),
                _clock(session.duration),
                zone,
            ]
        )
    return response


def _csv_safe(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_PREFIXES) else text


def _local(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _clock(duration: timedelta | None) -> str:
    if duration is None:
        return ""
    seconds = int(duration.total_seconds())
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# --- Video backends (agency admins, read-only) ----------------------------------------------------


@agency_admin_required
@require_GET
def backend_list(request: HttpRequest, admin: Membership) -> HttpResponse:
    """The backends the admin's agency may use; operators change them, admins only see them."""
    return render(
        request,
        "rooms/backends.html",
        {"agency": admin.agency, "backends": selectors.backends_allowed_for(admin.agency)},
    )


# --- Join and lobby ------------------------------------------------------------------------------
#
# The join page is the link of invitations and feeds. It is not behind the visibility selector:
# agency and link meetings are joined by people who cannot see the meeting page. join_access
# decides; signed-in people it turns away get a 404 (nothing leaks), anonymous ones sign in.

# Session key: meeting pk → the secret of the guest's latest lobby entry for that meeting.
LOBBY_SESSION_KEY = "lobby_entries"
OCCURRENCE_KEY_FORMAT = "%Y%m%dT%H%M%SZ"


def _join_meeting(request: HttpRequest, pk: int) -> Meeting:
    meeting = selectors.meeting_for_join(pk=pk, user=request.user)
    if meeting is None:
        raise Http404
    return meeting


def _recurrence_id(key: str | None) -> datetime | None:
    if key is None:
        return None
    try:
        return datetime.strptime(key, OCCURRENCE_KEY_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise Http404 from None


def _entry_recurrence_id(meeting: Meeting, entry: LobbyEntry) -> datetime | None:
    return _recurrence_id(entry.occurrence_key) if meeting.rrule else None


def _zone(request: HttpRequest, meeting: Meeting) -> ZoneInfo:
    user = request.user
    return ZoneInfo(cast(User, user).timezone if user.is_authenticated else meeting.timezone)


def _guest_secret(request: HttpRequest, meeting: Meeting) -> str:
    if request.user.is_authenticated:
        return ""
    return str(request.session.get(LOBBY_SESSION_KEY, {}).get(str(meeting.pk), ""))


def _remember_guest(request: HttpRequest, meeting: Meeting, secret: str) -> None:
    entries = dict(request.session.get(LOBBY_SESSION_KEY, {}))
    entries[str(meeting.pk)] = secret
    request.session[LOBBY_SESSION_KEY] = entries


def _my_entry(
    request: HttpRequest, meeting: Meeting, occurrence_key: str | None = None
) -> LobbyEntry | None:
    return selectors.lobby_entry_of(
        meeting=meeting,
        occurrence_key=occurrence_key,
        user=request.user,
        secret=_guest_secret(request, meeting),
    )


def _join_path(meeting: Meeting, window: selectors.JoinWindow | None = None) -> str:
    occurrence = window.occurrence if window else None
    if occurrence is not None and occurrence.recurrence_id is not None:
        return reverse("occurrence_join", args=[meeting.pk, occurrence.key])
    return reverse("meeting_join", args=[meeting.pk])


def _to_provider(ticket: Ticket) -> HttpResponse:
    """The only place a token leaves the server: the Location of this redirect."""
    if urlsplit(ticket.url).scheme not in ("http", "https"):
        # A LiveKit backend without a web front-end: only SDK clients (the API) can use it.
        raise BackendUnavailable(
            _("This room has no web client. Ask the organizer for another way to join."),
            code="no_web_client",
        )
    response = HttpResponseRedirect(ticket.url)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _render_join(
    request: HttpRequest,
    meeting: Meeting,
    access: selectors.JoinAccess,
    window: selectors.JoinWindow,
    entry: LobbyEntry | None,
    form: GuestNameForm | None,
    status: int = 200,
) -> HttpResponse:
    occurrence = window.occurrence
    user = request.user
    return render(
        request,
        "rooms/join.html",
        {
            "meeting": meeting,
            "window": window,
            "access": access,
            "entry": entry,
            "form": form,
            "asks": access.lobby or not user.is_authenticated,
            "start": occurrence.start if occurrence else None,
            "end": occurrence.end if occurrence else None,
            "zone": str(djtz.get_current_timezone()),
            "action": _join_path(meeting, window),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def meeting_join(request: HttpRequest, pk: int, key: str | None = None) -> HttpResponse:
    """GET: the meeting's join page. POST: ask to join (lobby), or go straight to the room."""
    meeting = _join_meeting(request, pk)
    if key is not None and not meeting.rrule:
        return redirect("meeting_join", pk=meeting.pk)
    recurrence_id = _recurrence_id(key)
    user = request.user
    access = selectors.join_access(meeting=meeting, user=user)
    if access is None:
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise Http404
    with djtz.override(_zone(request, meeting)):
        try:
            window = selectors.join_window(meeting=meeting, recurrence_id=recurrence_id)
        except NotFound:
            raise Http404 from None
        asks = access.lobby or not user.is_authenticated
        entry = _my_entry(request, meeting, window.key) if asks and window.key else None
        if request.method == "POST":
            return _join_post(request, meeting, recurrence_id, access, window, entry)
        if entry is not None and entry.status != LobbyStatus.ADMITTED and window.is_open:
            return redirect("lobby_wait", pk=meeting.pk)
        form = GuestNameForm() if not user.is_authenticated and entry is None else None
        return _render_join(request, meeting, access, window, entry, form)


def _join_post(
    request: HttpRequest,
    meeting: Meeting,
    recurrence_id: datetime | None,
    access: selectors.JoinAccess,
    window: selectors.JoinWindow,
    entry: LobbyEntry | None,
) -> HttpResponse:
    user = request.user
    form = None
    if not window.is_open:
        # The page says why (opens at, ended, cancelled); nothing is asked of the visitor.
        return _render_join(request, meeting, access, window, entry, None, status=409)
    try:
        if (access.lobby or not user.is_authenticated) and entry is None:
            if not user.is_authenticated:
                form = GuestNameForm(request.POST)
                if not form.is_valid():
                    return _render_join(request, meeting, access, window, None, form, status=400)
            lobby_pass = services.lobby_enter(
                meeting=meeting,
                recurrence_id=recurrence_id,
                user=user,
                display_name=form.cleaned_data["name"] if form is not None else "",
            )
            entry = lobby_pass.entry
            if lobby_pass.secret:
                _remember_guest(request, meeting, lobby_pass.secret)
        if entry is not None and entry.status != LobbyStatus.ADMITTED:
            return redirect("lobby_wait", pk=meeting.pk)
        ticket = services.join_ticket_issue(
            meeting=meeting, recurrence_id=recurrence_id, user=user, lobby_entry=entry
        )
        return _to_provider(ticket)
    except DomainError as exc:
        messages.error(request, exc.message)
        return _render_join(request, meeting, access, window, entry, form, status=exc.status)


def _lobby_context(request: HttpRequest, meeting: Meeting, entry: LobbyEntry) -> dict[str, Any]:
    try:
        window = selectors.join_window(
            meeting=meeting, recurrence_id=_entry_recurrence_id(meeting, entry)
        )
    except NotFound:
        window = None
    occurrence = window.occurrence if window else None
    return {
        "meeting": meeting,
        "entry": entry,
        "start": occurrence.start if occurrence else None,
        "end": occurrence.end if occurrence else None,
        "zone": str(djtz.get_current_timezone()),
        "join_path": _join_path(meeting, window),
    }


@require_GET
def lobby_wait(request: HttpRequest, pk: int) -> HttpResponse:
    """The waiting page; its status fragment polls until a moderator decides."""
    meeting = _join_meeting(request, pk)
    entry = _my_entry(request, meeting)
    if entry is None:
        return redirect("meeting_join", pk=meeting.pk)
    with djtz.override(_zone(request, meeting)):
        return render(request, "rooms/lobby.html", _lobby_context(request, meeting, entry))


@require_GET
def lobby_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The waiting page's status. Once admitted it carries the join form, which static/js/lobby.js
    submits (a POST from our own page: the only way a token is minted)."""
    meeting = get_object_or_404(Meeting, pk=pk)
    entry = _my_entry(request, meeting)
    htmx = request.headers.get("HX-Request") == "true"
    if entry is None:
        response = HttpResponse(status=204 if htmx else 404)
        if htmx:
            response["HX-Redirect"] = reverse("meeting_join", args=[meeting.pk])
        return response
    if entry.status == LobbyStatus.WAITING and request.GET.get("since") == LobbyStatus.WAITING:
        return HttpResponse(status=204)  # nothing changed: htmx leaves the page alone
    with djtz.override(_zone(request, meeting)):
        return render(
            request,
            "rooms/lobby_status.html",
            {**_lobby_context(request, meeting, entry), "auto_join": htmx},
        )


def _moderated_meeting(request: HttpRequest, pk: int) -> Meeting:
    user = cast(User, request.user)
    meeting = get_object_or_404(
        meeting_selectors.with_details(meeting_selectors.meetings_visible_to(user=user)), pk=pk
    )
    access = selectors.join_access(meeting=meeting, user=user)
    if access is None or access.role != JoinRole.MODERATOR:
        raise PermissionDenied
    return meeting


def _render_queue(request: HttpRequest, meeting: Meeting, key: str) -> HttpResponse:
    queue = selectors.lobby_queue(meeting=meeting, occurrence_key=key)
    if request.GET.get("v") == queue.version:
        return HttpResponse(status=204)  # unchanged: keeps the moderator's focus where it is
    return render(
        request, "rooms/lobby_queue.html", {"meeting": meeting, "queue": queue, "key": key}
    )


@signed_in
@require_GET
def lobby_queue(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """Moderators' list of who waits at one occurrence (the meeting page polls it)."""
    meeting = _moderated_meeting(request, pk)
    return _render_queue(request, meeting, key)


@signed_in
@require_POST
def lobby_decide(request: HttpRequest, pk: int, entry_pk: int, decision: str) -> HttpResponse:
    meeting = _moderated_meeting(request, pk)
    entry = get_object_or_404(LobbyEntry, pk=entry_pk, meeting=meeting)
    entry.meeting = meeting  # already loaded with what join_access reads
    decide = services.lobby_admit if decision == "admit" else services.lobby_refuse
    try:
        decided = decide(actor=cast(User, request.user), entry=entry)
    except DomainError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        messages.error(request, exc.message)
        decided = entry
    if request.headers.get("HX-Request") == "true":
        return _render_queue(request, meeting, decided.occurrence_key)
    if decided.status == LobbyStatus.ADMITTED:
        messages.success(request, _("%(name)s may join now.") % {"name": decided.display_name})
    elif decided.status == LobbyStatus.REFUSED:
        messages.success(request, _("%(name)s was turned away.") % {"name": decided.display_name})
    return redirect(f"{reverse('meeting_detail', args=[meeting.pk])}#join")


# --- Ad-hoc rooms ("meet now") -------------------------------------------------------------------
#
# Organizers open a room for now (the header's "Meet now" button). Its page is the invitation:
# the room name in the URL is 128 random bits, so holding the link is what lets one in.

AdhocView = Callable[[HttpRequest, str], HttpResponse]


def _adhoc_signed_in(view: AdhocView) -> AdhocView:
    """Anonymous visitors sign in and come back to the room's page (not to a POST-only URL);
    times render in the user's own zone."""

    @wraps(view)
    def wrapper(request: HttpRequest, room_name: str) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(reverse("adhoc_room", args=[room_name]))
        with djtz.override(ZoneInfo(cast(User, request.user).timezone)):
            return view(request, room_name)

    return wrapper


def _adhoc_room(room_name: str) -> selectors.AdhocRoom:
    room = selectors.adhoc_room_of(room_name=room_name)
    if room is None:
        raise Http404
    return room


def _render_adhoc_new(request: HttpRequest, form: AdhocRoomForm, status: int = 200) -> HttpResponse:
    return render(request, "rooms/adhoc_new.html", {"form": form}, status=status)


def _render_adhoc(
    request: HttpRequest, room: selectors.AdhocRoom, status: int = 200
) -> HttpResponse:
    """The room's page while it is open; once closed or over, a 410 saying so."""
    reservation = room.reservation
    if not room.is_open:
        return render(request, "rooms/adhoc_closed.html", {"room": room}, status=410)
    return render(
        request,
        "rooms/adhoc_room.html",
        {
            "room": room,
            "abilities": selectors.adhoc_room_abilities(reservation=reservation, user=request.user),
            "share_url": settings.SITE_URL + reverse("adhoc_room", args=[reservation.room_name]),
            "today": djtz.localdate(),
            "zone": str(djtz.get_current_timezone()),
        },
        status=status,
    )


@signed_in
@require_http_methods(["GET", "POST"])
def adhoc_room_new(request: HttpRequest) -> HttpResponse:
    """GET: the form to open a room now. POST (also the header's button): open it, go there."""
    user = cast(User, request.user)
    if request.method == "GET":
        membership = membership_of(user)
        if membership is None or not membership.can_book:
            raise PermissionDenied
        return _render_adhoc_new(request, AdhocRoomForm())
    form = AdhocRoomForm(request.POST)
    if not form.is_valid():
        return _render_adhoc_new(request, form, status=400)
    try:
        reservation = services.adhoc_room_open(actor=user, title=form.cleaned_data["title"])
    except DomainError as exc:  # not_organizer 403, no_capacity 409, backend_unavailable 503
        messages.error(request, exc.message)
        return _render_adhoc_new(request, form, status=exc.status)
    return redirect("adhoc_room", room_name=reservation.room_name)


@_adhoc_signed_in
@require_GET
def adhoc_room(request: HttpRequest, room_name: str) -> HttpResponse:
    """The room's page: title, who opened it, until when, its link, Join, and Close for those
    who may. Shown to anyone signed in who has the link, members of other agencies included:
    the link is the invitation, as for a meeting open to anyone with its link."""
    return _render_adhoc(request, _adhoc_room(room_name))


@_adhoc_signed_in
@require_POST
def adhoc_room_join(request: HttpRequest, room_name: str) -> HttpResponse:
    """Go to the provider with a fresh token: the creator as moderator, anyone else signed in
    (own agency or another one: they hold the link) as participant."""
    room = _adhoc_room(room_name)
    if not room.is_open:
        return _render_adhoc(request, room)
    try:
        ticket = services.adhoc_join_ticket_issue(reservation=room.reservation, user=request.user)
        return _to_provider(ticket)
    except services.RoomClosed:
        return _render_adhoc(request, replace(room, is_open=False))
    except DomainError as exc:
        messages.error(request, exc.message)
        return _render_adhoc(request, room, status=exc.status)


@_adhoc_signed_in
@require_POST
def adhoc_room_close(request: HttpRequest, room_name: str) -> HttpResponse:
    """Close the room (its creator, or an admin of its agency): nobody else can join."""
    room = _adhoc_room(room_name)
    try:
        services.room_release(actor=cast(User, request.user), reservation=room.reservation)
    except DomainError as exc:
        messages.error(request, exc.message)
        return _render_adhoc(request, room, status=exc.status)
    messages.success(request, _("You closed the room."))
    return redirect("adhoc_room", room_name=room_name)
