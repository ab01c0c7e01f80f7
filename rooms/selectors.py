"""Reads of the rooms app."""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Max, Model, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from agencies.models import Agency, Membership, User
from agencies.selectors import Columns, membership_of
from meetings.models import AccessLevel, Attendee, AttendeeRole, Meeting
from meetings.selectors import Occurrence, meeting_occurrences, occurrence_at
from rooms.models import (
    Attendance,
    LobbyEntry,
    LobbyStatus,
    MediaBackend,
    ReservedWindow,
    RoomOccupancy,
    RoomReservation,
)
from rooms.providers.base import JoinRole
from visio_broker.errors import NotFound

# --- Occupancy and attendance (from provider events) ---------------------------------------------

# The meeting page shows the latest sessions; the CSV export has them all.
ATTENDANCE_SHOWN = 100


@dataclass(frozen=True)
class Occupancy:
    """A room right now, as its provider last told us."""

    participants: int = 0
    active_since: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.active_since is not None


@dataclass(frozen=True)
class MeetingAttendance:
    """What organizers see of a meeting's room: who is inside now, who came and went."""

    has_room: bool
    occupancy: Occupancy
    sessions: list[Attendance]
    more: bool


def reservation_occupancy(*, reservation: RoomReservation) -> Occupancy:
    row = RoomOccupancy.objects.filter(reservation=reservation).first()
    if row is None:
        return Occupancy()
    return Occupancy(participants=row.participants, active_since=row.active_since)


def attendance_of_meeting(*, meeting: Meeting) -> QuerySet[Attendance]:
    """Every participant session in the meeting's room, oldest first."""
    return (
        Attendance.objects.filter(reservation__meeting=meeting)
        .select_related("user")
        .order_by(Coalesce("joined_at", "left_at").asc(), "id")
    )


def meeting_attendance(*, meeting: Meeting, limit: int = ATTENDANCE_SHOWN) -> MeetingAttendance:
    reservation = RoomReservation.objects.filter(meeting=meeting).first()
    if reservation is None:
        return MeetingAttendance(has_room=False, occupancy=Occupancy(), sessions=[], more=False)
    latest = list(
        Attendance.objects.filter(reservation=reservation)
        .select_related("user")
        .order_by(Coalesce("joined_at", "left_at").desc(), "-id")[: limit + 1]
    )
    return MeetingAttendance(
        has_room=True,
        occupancy=reservation_occupancy(reservation=reservation),
        sessions=latest[:limit][::-1],
        more=len(latest) > limit,
    )


# --- Allocation ---------------------------------------------------------------------------------

# A span of time a reservation holds: [start, end), aware datetimes.
Span = tuple[datetime, datetime]
# One reserved window as the capacity arithmetic sees it: start, end, participants.
Load = tuple[datetime, datetime, int]

# Spans per ledger query: each adds one arm to the overlap condition.
SPANS_PER_QUERY = 100


def backends_allowed_for(agency: Agency) -> QuerySet[MediaBackend]:
    """Backends the agency's sovereignty policy allows, in any state; its own first, by weight.

    Allowed: located in one of ``agency.backend_countries()``, and owned by the agency, or shared
    when the agency accepts shared backends. Another agency's own backend never is.
    """
    owned = Q(agency=agency)
    if agency.allow_shared_backends:
        owned |= Q(agency__isnull=True)
    countries = [code.upper() for code in agency.backend_countries()]
    return MediaBackend.objects.filter(owned, country__in=countries).order_by(
        F("agency_id").asc(nulls_last=True), "-weight", "name"
    )


def peak_load(loads: Iterable[Load], start: datetime, end: datetime) -> int:
    """Most participants present at the same instant within [start, end): a peak, not a sum."""
    events: list[tuple[datetime, int]] = []
    for load_start, load_end, participants in loads:
        clipped_start, clipped_end = max(load_start, start), min(load_end, end)
        if clipped_start < clipped_end:
            events.append((clipped_start, participants))
            events.append((clipped_end, -participants))
    # At one instant, departures sort before arrivals: back-to-back meetings do not add up.
    events.sort()
    current = peak = 0
    for _moment, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


class Ledger:
    """One backend's reserved windows, for peak-load questions over many spans."""

    def __init__(self, loads: Iterable[Load]) -> None:
        self._loads = sorted(loads)
        self._starts = [load[0] for load in self._loads]
        self._longest = max((e - s for s, e, _n in self._loads), default=timedelta(0))

    def peak(self, start: datetime, end: datetime) -> int:
        # Only windows starting in [start - longest, end) can overlap the span.
        first = bisect_left(self._starts, start - self._longest)
        last = bisect_left(self._starts, end)
        return peak_load(self._loads[first:last], start, end)


def window_loads(
    *,
    backend_ids: Sequence[int],
    spans: Sequence[Span],
    exclude_reservation: RoomReservation | None = None,
) -> dict[int, list[Load]]:
    """Per backend, the active reserved windows overlapping any of ``spans``."""
    if not backend_ids or not spans:
        return {pk: [] for pk in backend_ids}
    # By window id: a window overlapping spans of two chunks is found twice.
    found: dict[int, dict[int, Load]] = {pk: {} for pk in backend_ids}
    for offset in range(0, len(spans), SPANS_PER_QUERY):
        overlap = Q()
        for start, end in spans[offset : offset + SPANS_PER_QUERY]:
            overlap |= Q(start__lt=end, end__gt=start)
        rows = ReservedWindow.objects.filter(
            overlap, backend_id__in=backend_ids, reservation__released_at__isnull=True
        )
        if exclude_reservation is not None:
            rows = rows.exclude(reservation=exclude_reservation)
        for pk, backend_id, start, end, participants in rows.values_list(
            "pk", "backend_id", "start", "end", "participants"
        ):
            found[backend_id][pk] = (start, end, participants)
    return {backend_id: list(rows_by_pk.values()) for backend_id, rows_by_pk in found.items()}


def backend_load(backend: MediaBackend, start: datetime, end: datetime) -> int:
    """Peak of participants the backend's reservations hold at once within [start, end)."""
    loads = window_loads(backend_ids=[backend.pk], spans=[(start, end)])[backend.pk]
    return peak_load(loads, start, end)


# --- Join and lobby: who may join, when, and who is waiting -------------------------------------

# How far ahead the join page looks for a series' next occurrence, to say when it opens.
JOIN_LOOKAHEAD = timedelta(days=400)
# Decisions the moderators' lobby list keeps showing after the waiting entries.
LOBBY_DECIDED_SHOWN = 5


class JoinState(StrEnum):
    OPEN = "open"
    NOT_YET = "not_yet"
    ENDED = "ended"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JoinWindow:
    """The occurrence a join is about, and when its room may be entered."""

    occurrence: Occurrence | None  # None: a series with no occurrence left
    opens_at: datetime | None
    closes_at: datetime | None
    now: datetime

    @property
    def state(self) -> JoinState:
        if self.occurrence is None or self.opens_at is None or self.closes_at is None:
            return JoinState.ENDED
        if self.occurrence.cancelled or self.occurrence.meeting.is_cancelled:
            return JoinState.CANCELLED
        if self.now < self.opens_at:
            return JoinState.NOT_YET
        if self.now >= self.closes_at:
            return JoinState.ENDED
        return JoinState.OPEN

    @property
    def is_open(self) -> bool:
        return self.state == JoinState.OPEN

    @property
    def key(self) -> str:
        return self.occurrence.key if self.occurrence is not None else ""


@dataclass(frozen=True)
class JoinAccess:
    """How someone may join: as whom, and whether a moderator must admit them first."""

    role: JoinRole
    lobby: bool


def _windowed(occurrence: Occurrence | None, now: datetime) -> JoinWindow:
    if occurrence is None:
        return JoinWindow(None, None, None, now)
    opens = timedelta(minutes=settings.JOIN_WINDOW_OPENS_MINUTES)
    grace = timedelta(minutes=settings.JOIN_GRACE_MINUTES)
    return JoinWindow(occurrence, occurrence.start - opens, occurrence.end + grace, now)


def join_window(
    *, meeting: Meeting, recurrence_id: datetime | None = None, now: datetime | None = None
) -> JoinWindow:
    """The join window of one occurrence (by its original start) or, without one, of the
    occurrence open now, else the next one. Raises NotFound for an occurrence that does not exist.
    """
    now = now or timezone.now()
    if not meeting.rrule:
        if recurrence_id is not None and recurrence_id != meeting.start:
            raise NotFound(_("This meeting has no such occurrence."), code="not_found")
        single = Occurrence(meeting, None, meeting.start, meeting.end, meeting.is_cancelled, False)
        return _windowed(single, now)
    if recurrence_id is not None:
        occurrence = occurrence_at(meeting, recurrence_id)
        if occurrence is None:
            raise NotFound(_("This meeting has no such occurrence."), code="not_found")
        return _windowed(occurrence, now)
    opens = timedelta(minutes=settings.JOIN_WINDOW_OPENS_MINUTES)
    grace = timedelta(minutes=settings.JOIN_GRACE_MINUTES)
    # Overlapping [now - grace, now + opens) is the same as having its join window around now.
    current = meeting_occurrences(meeting, now - grace, now + opens)
    live = [occurrence for occurrence in current if not occurrence.cancelled]
    if live:
        return _windowed(live[0], now)
    upcoming = meeting_occurrences(meeting, now, now + JOIN_LOOKAHEAD)
    following = next((occ for occ in upcoming if not occ.cancelled and occ.start >= now), None)
    if following is not None:
        return _windowed(following, now)
    return _windowed(current[0] if current else None, now)


@dataclass(frozen=True)
class _JoinQuery:
    anonymous: str
    signed_in: str
    by_address: str  # the person named by an address, read in the same query (the API)
    meeting: Columns[Meeting]
    reservation: Columns[RoomReservation]
    backend: Columns[MediaBackend]
    person: Columns[User]


# What no join reads (page, lobby, ticket, API): the API's cached JSON and the description (the
# biggest columns), health bookkeeping, timestamps, the password hash. Deferred: a use reads it
# with a query of its own, which the joins' pinned query counts would show (tests/rooms).
_JOIN_LEAVES_OUT: dict[type[Model], tuple[str, ...]] = {
    Meeting: (
        *("description", "api_json_head", "api_json_tail", "reminder_minutes"),
        *("listed_publicly", "split_from", "created_at", "updated_at"),
    ),
    RoomReservation: ("expected_participants", "created_at", "updated_at"),
    MediaBackend: (
        *("health_url", "country", "region", "capacity", "weight", "consecutive_failures"),
        *("consecutive_successes", "last_checked_at", "last_error", "created_at", "updated_at"),
    ),
    User: (
        *("password", "last_login", "is_superuser", "is_staff", "date_joined"),
        "reminder_minutes",
    ),
}


@cache
def _join_query() -> _JoinQuery:
    """meeting_for_join's SQL, built once per process from the models' metadata: what
    ``select_related("reservation__backend")`` and the ties' subqueries would read, without the
    ORM compiling it on every join (3.5 of the join's 8 ms, issue 4)."""
    meeting = Columns.of(Meeting, "m", leave_out=_JOIN_LEAVES_OUT[Meeting])
    reservation = Columns.of(RoomReservation, "r", leave_out=_JOIN_LEAVES_OUT[RoomReservation])
    backend = Columns.of(MediaBackend, "b", leave_out=_JOIN_LEAVES_OUT[MediaBackend])
    co_organizer = Columns.of(Meeting.co_organizers.through, "co")
    attendee = Columns.of(Attendee, "at")
    membership = Columns.of(Membership, "ms")
    # Identifiers from the models' metadata; ids and the address are parameters.
    own_room = f"{reservation.column('meeting')} = {meeting.column('id')}"
    tables = (
        f"FROM {meeting.table} LEFT JOIN {reservation.table} ON {own_room} "
        f"LEFT JOIN {backend.table} ON {backend.column('id')} = {reservation.column('backend')}"
    )
    where = f"WHERE {meeting.column('id')} = %(pk)s"
    person = Columns.of(User, "u", leave_out=_JOIN_LEAVES_OUT[User])
    # LOWER(email) is the unique index user_email_ci_unique: one person at most.
    named = (
        f"LEFT JOIN {person.table} ON LOWER({person.column('email')}) = %(email)s "
        f"AND {person.column('is_active')}"
    )
    columns = f"SELECT {meeting.sql}, {reservation.sql}, {backend.sql}"

    def ties(user: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM {co_organizer.table} "  # noqa: S608
            f"WHERE {co_organizer.column('meeting')} = {meeting.column('id')} "
            f"AND {co_organizer.column('user')} = {user}), "
            f"(SELECT {attendee.column('role')} FROM {attendee.table} "
            f"WHERE {attendee.column('meeting')} = {meeting.column('id')} "
            f"AND {attendee.column('user')} = {user} ORDER BY {attendee.column('id')} LIMIT 1), "
            f"(SELECT {membership.column('agency')} FROM {membership.table} "
            f"WHERE {membership.column('user')} = {user} LIMIT 1)"
        )

    return _JoinQuery(
        anonymous=f"{columns} {tables} {where}",
        signed_in=f"{columns}, {ties('%(user)s')} {tables} {where}",
        by_address=f"{columns}, {person.sql}, {ties(person.column('id'))} {tables} {named} {where}",
        meeting=meeting,
        reservation=reservation,
        backend=backend,
        person=person,
    )


def meeting_for_join(*, pk: int, user: User | AnonymousUser | None) -> Meeting | None:
    """The meeting with its room and backend and, for a signed-in caller, their ties to it
    (co-organizer, attendee role, home agency) read in the same query: join_access needs no
    other. Any meeting: the join page is reachable by people who cannot see the meeting page."""
    query = _join_query()
    signed_in = user is not None and user.is_authenticated
    connection = connections[router.db_for_read(Meeting)]
    with connection.cursor() as cursor:
        if signed_in:
            cursor.execute(query.signed_in, {"pk": pk, "user": cast(User, user).pk})
        else:
            cursor.execute(query.anonymous, {"pk": pk})
        row = cursor.fetchone()
    if row is None:
        return None
    meeting, at = _joined_meeting(query, row, connection)
    if signed_in:
        _set_ties(meeting, cast(User, user).pk, row[at:])
    return meeting


def _joined_meeting(
    query: _JoinQuery, row: Sequence[Any], connection: BaseDatabaseWrapper
) -> tuple[Meeting, int]:
    """The meeting with its room and backend at the start of a join query's row (read on
    ``connection``), and where the rest of the row starts."""
    meeting = cast(Meeting, query.meeting.instance(row, connection=connection))
    at = query.meeting.width
    reservation = query.reservation.instance(row, at, connection=connection)
    at += query.reservation.width
    # As select_related leaves them: meeting.reservation raises DoesNotExist when there is none.
    Meeting.reservation.related.set_cached_value(meeting, reservation)
    if reservation is not None:
        backend = query.backend.instance(row, at, connection=connection)
        RoomReservation.meeting.field.set_cached_value(reservation, meeting)
        RoomReservation.backend.field.set_cached_value(reservation, backend)
    return meeting, at + query.backend.width


def _set_ties(meeting: Meeting, user_id: int, found: Sequence[Any]) -> None:
    ties = cast(Any, meeting)
    ties.viewer_id = user_id
    ties.viewer_co_organizer, ties.viewer_attendee_role, ties.viewer_agency_id = found


def join_access(*, meeting: Meeting, user: User | AnonymousUser | None) -> JoinAccess | None:
    """Who may join, by the meeting's access level; None: not this person.

    Organizers, co-organizers and chairs moderate; other attendees join directly; with the lobby
    on, uninvited colleagues (agency) and anyone else (link) wait to be admitted. Reads the ties
    meeting_for_join annotated for this user, else the meeting's (prefetched) relations.
    """
    lobby = meeting.lobby_enabled
    if user is None or not user.is_authenticated:
        if meeting.access_level == AccessLevel.LINK:
            return JoinAccess(JoinRole.PARTICIPANT, lobby=lobby)
        return None
    signed_in = cast(User, user)
    ties = cast(Any, meeting)  # meeting_for_join's annotations, when it was read there
    annotated = getattr(ties, "viewer_id", None) == signed_in.pk
    if annotated:
        organizer = meeting.organizer_id == signed_in.pk or ties.viewer_co_organizer
        attendee_role = ties.viewer_attendee_role
    else:
        organizer = meeting.is_organizer(signed_in)
        attendee = meeting.attendee_for(signed_in)
        attendee_role = attendee.role if attendee is not None else None
    if organizer:
        return JoinAccess(JoinRole.MODERATOR, lobby=False)
    if attendee_role is not None:
        role = JoinRole.MODERATOR if attendee_role == AttendeeRole.CHAIR else JoinRole.PARTICIPANT
        return JoinAccess(role, lobby=False)
    if meeting.access_level == AccessLevel.LINK:
        return JoinAccess(JoinRole.PARTICIPANT, lobby=lobby)
    if meeting.access_level == AccessLevel.AGENCY:
        if annotated:
            agency_id = ties.viewer_agency_id
        else:
            membership = membership_of(signed_in)
            agency_id = membership.agency_id if membership is not None else None
        if agency_id == meeting.host_agency_id:
            return JoinAccess(JoinRole.PARTICIPANT, lobby=lobby)
    return None


def lobby_secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def lobby_entry_of(
    *,
    meeting: Meeting,
    occurrence_key: str | None = None,
    user: User | AnonymousUser | None = None,
    secret: str = "",
) -> LobbyEntry | None:
    """The caller's own lobby entry: a signed-in person's, else the guest's (by its secret).

    Without ``occurrence_key``, the latest of the meeting.
    """
    entries = LobbyEntry.objects.filter(meeting=meeting)
    if occurrence_key is not None:
        entries = entries.filter(occurrence_key=occurrence_key)
    if user is not None and user.is_authenticated:
        entries = entries.filter(user_id=user.pk)
    elif secret:
        entries = entries.filter(secret_hash=lobby_secret_hash(secret))
    else:
        return None
    return entries.order_by("-created_at", "-id").first()


@dataclass(frozen=True)
class LobbyQueue:
    waiting: list[LobbyEntry]
    decided: list[LobbyEntry]

    @property
    def version(self) -> str:
        """Changes whenever the list would: the moderators' page re-renders only then."""
        seen = ",".join(f"{e.pk}:{e.status}" for e in [*self.waiting, *self.decided])
        return hashlib.sha256(seen.encode()).hexdigest()[:16]


def lobby_queue(*, meeting: Meeting, occurrence_key: str) -> LobbyQueue:
    """Who waits at one occurrence (first come, first listed) and the latest decisions."""
    entries = LobbyEntry.objects.filter(
        meeting=meeting, occurrence_key=occurrence_key
    ).select_related("user", "decided_by")
    return LobbyQueue(
        waiting=list(entries.filter(status=LobbyStatus.WAITING).order_by("created_at", "id")),
        decided=list(
            entries.exclude(status=LobbyStatus.WAITING).order_by("-decided_at", "-id")[
                :LOBBY_DECIDED_SHOWN
            ]
        ),
    )


# --- Ad-hoc rooms --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdhocRoom:
    """An ad-hoc "meet now" room as its page shows it."""

    reservation: RoomReservation
    # The end of its window; None once closed (closing gives the window back).
    until: datetime | None
    is_open: bool


def adhoc_room_state(*, reservation: RoomReservation, now: datetime | None = None) -> AdhocRoom:
    """Open while not released and its window has not ended."""
    until = reservation.windows.aggregate(until=Max("end"))["until"]
    now = now or timezone.now()
    is_open = reservation.released_at is None and until is not None and now < until
    return AdhocRoom(reservation=reservation, until=until, is_open=is_open)


def adhoc_room_of(*, room_name: str) -> AdhocRoom | None:
    """The ad-hoc room called ``room_name``, open or closed; None for unknown and meeting rooms."""
    reservation = (
        RoomReservation.objects.filter(room_name=room_name, meeting__isnull=True)
        .select_related("backend", "created_by", "agency")
        .first()
    )
    return None if reservation is None else adhoc_room_state(reservation=reservation)


def adhoc_room_abilities(
    *, reservation: RoomReservation, user: User | AnonymousUser
) -> dict[str, bool]:
    """Anyone signed in who holds the link joins; the creator moderates; the creator and the
    agency's admins may close it (``room_release`` decides the same)."""
    if not user.is_authenticated:
        return {"join": False, "join_as_moderator": False, "close": False}
    user = cast(User, user)
    creator = reservation.created_by_id == user.pk
    membership = membership_of(user)
    admin = (
        membership is not None
        and membership.is_admin
        and membership.agency_id == reservation.agency_id
    )
    return {"join": True, "join_as_moderator": creator, "close": creator or admin}


# --- Join through an agency's API ---------------------------------------------------------------


def meeting_for_agency_join(
    *, agency: Agency, pk: int, email: str | None
) -> tuple[Meeting, User | None] | None:
    """meeting_for_join among the meetings ``agency``'s API key sees, with the active account
    ``email`` names (case-insensitive; None without an address or an account) and its ties to
    the meeting, all in one query. Another agency's meeting is None, whoever asks.

    meetings_visible_to_agency's rule (the agency hosts it), checked on the row read.
    """
    if not email:
        meeting = meeting_for_join(pk=pk, user=None)
        person = None
    else:
        query = _join_query()
        connection = connections[router.db_for_read(Meeting)]
        with connection.cursor() as cursor:
            cursor.execute(query.by_address, {"pk": pk, "email": email.strip().lower()})
            row = cursor.fetchone()
        if row is None:
            return None
        meeting, at = _joined_meeting(query, row, connection)
        person = query.person.instance(row, at, connection=connection)
        if person is not None:
            _set_ties(meeting, person.pk, row[at + query.person.width :])
    if meeting is None or meeting.host_agency_id != agency.pk:
        return None
    return meeting, person
