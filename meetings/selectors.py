"""Reads of the meetings app: visibility and occurrences inside a bounded window."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import Lower

from agencies.models import Agency, Membership, Role, User
from meetings.models import Attendee, Meeting, MeetingStatus, OccurrenceException
from meetings.recurrence import expand


def meetings_visible_to(*, user: User) -> QuerySet[Meeting]:
    """Organizer, co-organizers, attendees and admins of the host agency; nobody else."""
    if not user.is_authenticated:
        return Meeting.objects.none()
    attends = Attendee.objects.filter(meeting=OuterRef("pk"), user=user)
    co_organizes = Meeting.co_organizers.through.objects.filter(meeting=OuterRef("pk"), user=user)
    admin_of = Membership.objects.filter(user=user, role=Role.ADMIN, agency=OuterRef("host_agency"))
    return Meeting.objects.filter(
        Q(organizer=user) | Exists(attends) | Exists(co_organizes) | Exists(admin_of)
    )


def meetings_visible_to_agency(*, agency: Agency) -> QuerySet[Meeting]:
    """What an agency's API key sees: the meetings the agency hosts (its admins see them too).

    Another agency's meeting is invisible even when this agency's staff attend it: that
    agency owns it and answers for it.
    """
    return Meeting.objects.filter(host_agency=agency)


def meetings_of(*, user: User) -> QuerySet[Meeting]:
    """Meetings the user takes part in (organizes, co-organizes or attends): their agenda."""
    attends = Attendee.objects.filter(meeting=OuterRef("pk"), user=user)
    co_organizes = Meeting.co_organizers.through.objects.filter(meeting=OuterRef("pk"), user=user)
    return Meeting.objects.filter(Q(organizer=user) | Exists(attends) | Exists(co_organizes))


def overlapping(queryset: QuerySet[Meeting], start: datetime, end: datetime) -> QuerySet[Meeting]:
    """Meetings (series included) with any occurrence possibly inside [start, end).

    Uses the (start, series_end) index; moved occurrences may leave their series' span, so
    series with an exception inside the window are included too.
    """
    moved_in = OccurrenceException.objects.filter(
        meeting=OuterRef("pk"), cancelled=False, start__lt=end, end__gt=start
    )
    return queryset.filter(
        (Q(start__lt=end) & (Q(series_end__isnull=True) | Q(series_end__gt=start)))
        | Exists(moved_in)
    )


def with_details(queryset: QuerySet[Meeting]) -> QuerySet[Meeting]:
    """Everything occurrence expansion and the agenda need, in a constant number of queries."""
    return queryset.select_related("organizer", "host_agency").prefetch_related(
        Prefetch("exceptions", queryset=OccurrenceException.objects.order_by("recurrence_id")),
        Prefetch("attendees", queryset=Attendee.objects.select_related("user")),
        "co_organizers",
    )


@dataclass(frozen=True)
class Occurrence:
    meeting: Meeting
    recurrence_id: datetime | None  # original start; None for a one-off meeting
    start: datetime
    end: datetime
    cancelled: bool
    moved: bool

    @property
    def key(self) -> str:
        """Stable identifier of the occurrence in URLs: its original start in UTC."""
        moment = self.recurrence_id or self.start
        return f"{moment:%Y%m%dT%H%M%SZ}"


def meeting_occurrences(
    meeting: Meeting, window_start: datetime, window_end: datetime
) -> list[Occurrence]:
    """The meeting's occurrences overlapping [window_start, window_end), exceptions applied."""
    cancelled = meeting.status == MeetingStatus.CANCELLED
    if not meeting.rrule:
        if meeting.start < window_end and meeting.end > window_start:
            return [Occurrence(meeting, None, meeting.start, meeting.end, cancelled, False)]
        return []
    duration = meeting.end - meeting.start
    exceptions = {exc.recurrence_id: exc for exc in meeting.exceptions.all()}
    found: list[Occurrence] = []
    # Occurrences starting up to one duration before the window still overlap it.
    for original in expand(
        rrule=meeting.rrule,
        start=meeting.start,
        timezone=meeting.timezone,
        window_start=window_start - duration,
        window_end=window_end,
    ):
        exc = exceptions.pop(original, None)
        if exc is None:
            occurrence = Occurrence(
                meeting, original, original, original + duration, cancelled, False
            )
        elif exc.cancelled or exc.start is None or exc.end is None:
            occurrence = Occurrence(meeting, original, original, original + duration, True, False)
        else:
            occurrence = Occurrence(meeting, original, exc.start, exc.end, cancelled, True)
        if occurrence.start < window_end and occurrence.end > window_start:
            found.append(occurrence)
    # Occurrences moved into the window from outside it.
    for original, exc in exceptions.items():
        if exc.cancelled or exc.start is None or exc.end is None:
            continue
        if (
            exc.start < window_end
            and exc.end > window_start
            and (original < window_start - duration or original >= window_end)
        ):
            found.append(Occurrence(meeting, original, exc.start, exc.end, cancelled, True))
    found.sort(key=lambda occ: occ.start)
    return found


def occurrences_in_window(
    meetings: Iterable[Meeting], window_start: datetime, window_end: datetime
) -> list[Occurrence]:
    found = [
        occurrence
        for meeting in meetings
        for occurrence in meeting_occurrences(meeting, window_start, window_end)
    ]
    found.sort(key=lambda occ: (occ.start, occ.meeting.pk))
    return found


def agenda(*, user: User, window_start: datetime, window_end: datetime) -> list[Occurrence]:
    meetings = with_details(overlapping(meetings_of(user=user), window_start, window_end))
    return occurrences_in_window(meetings, window_start, window_end)


def occurrence_at(meeting: Meeting, recurrence_id: datetime) -> Occurrence | None:
    """The occurrence of ``meeting`` whose original start is ``recurrence_id``, if it exists."""
    if not meeting.rrule:
        return None
    for occurrence in meeting_occurrences(
        meeting, recurrence_id, recurrence_id + (meeting.end - meeting.start)
    ):
        if occurrence.recurrence_id == recurrence_id:
            return occurrence
    exc = next((e for e in meeting.exceptions.all() if e.recurrence_id == recurrence_id), None)
    if exc is not None and exc.start is not None and exc.end is not None and not exc.cancelled:
        return Occurrence(meeting, recurrence_id, exc.start, exc.end, False, True)
    return None


def people_search(*, query: str, limit: int = 10, exclude: User | None = None) -> list[User]:
    """Active people of any agency on this instance whose name or email contains ``query``."""
    query = query.strip()
    if len(query) < 2:
        return []
    people = User.objects.filter(is_active=True, membership__isnull=False)
    if exclude is not None:
        people = people.exclude(pk=exclude.pk)
    return list(
        people.filter(Q(display_name__icontains=query) | Q(email__icontains=query))
        .select_related("membership__agency")
        .order_by("display_name", "email")[:limit]
    )


def active_users_by_email(emails: Iterable[str]) -> dict[str, User]:
    """Lower-cased address → active user of this instance, for the addresses that have one."""
    wanted = {email.strip().lower() for email in emails}
    if not wanted:
        return {}
    users = User.objects.filter(is_active=True).annotate(email_ci=Lower("email"))
    return {user.email.lower(): user for user in users.filter(email_ci__in=wanted)}


def meeting_acting_member(*, meeting: Meeting) -> User | None:
    """Whom an agency's API key acts for when it changes ``meeting``.

    The organizer while they are an active member of the host agency; once they are gone
    (deactivated, moved agency), the host agency's longest-standing active admin, so the
    agency's system can still change or cancel the meeting. None when there is neither.
    """
    organizer = meeting.organizer
    membership = getattr(organizer, "membership", None)
    if (
        organizer.is_active
        and membership is not None
        and membership.agency_id == meeting.host_agency_id
    ):
        return organizer
    admin = (
        Membership.objects.filter(
            agency_id=meeting.host_agency_id, role=Role.ADMIN, user__is_active=True
        )
        .select_related("user")
        .order_by("created_at", "pk")
        .first()
    )
    return None if admin is None else admin.user
