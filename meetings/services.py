"""Every write of the meetings app. Each service runs in one transaction and audits itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone as djtz
from django.utils.translation import gettext as _

from agencies.models import REMINDER_CHOICES_MINUTES, Agency, Role, User
from agencies.reference import timezones
from meetings import feeds, invitations
from meetings.events import MeetingEvent, meeting_event
from meetings.models import (
    SIGNIFICANT_FIELDS,
    AccessLevel,
    Attendee,
    AttendeeRole,
    FeedKind,
    FeedToken,
    Meeting,
    MeetingStatus,
    OccurrenceException,
    PartStat,
)
from meetings.recurrence import Recurrence, expand, last_occurrence_start
from meetings.rsvp import organizer_reply_notice_enqueue
from meetings.selectors import occurrence_at
from rooms.services import room_release_for_meeting, room_rereserve, room_reserve, room_windows_sync
from visio_broker.audit import audit_record
from visio_broker.errors import Forbidden, InvalidInput, NotFound

# Changes that move occurrences, so the room is reserved again (rooms allocation).
ROOM_TIMING_FIELDS = frozenset({"start", "end", "timezone", "all_day", "rrule"})
# How far in the past a new meeting may start (a form submitted a minute late still books).
PAST_TOLERANCE = timedelta(minutes=5)
MAX_DURATION = timedelta(hours=24)
MAX_ATTENDEES = 500


@dataclass(frozen=True)
class AttendeeSpec:
    email: str
    display_name: str = ""
    role: str = AttendeeRole.REQUIRED


@dataclass
class UpdateResult:
    """What changed, for the callers that notify attendees (invitations issue)."""

    meeting: Meeting
    changed: set[str] = field(default_factory=set)
    significant: bool = False
    added: list[Attendee] = field(default_factory=list)
    removed: list[Attendee] = field(default_factory=list)


# --- Validation helpers ---------------------------------------------------------------------


def _require_organizer_role(actor: User) -> None:
    membership = getattr(actor, "membership", None)
    if membership is None or not membership.can_book:
        raise Forbidden(_("Only organizers may book meetings."), code="not_organizer")


def _require_can_edit(actor: User, meeting: Meeting) -> None:
    if not meeting.get_abilities(actor)["edit"]:
        if meeting.is_cancelled:
            raise InvalidInput(_("This meeting is cancelled."), code="meeting_cancelled")
        raise Forbidden(_("You may not change this meeting."), code="forbidden")


def _check_timezone(name: str) -> None:
    if name not in timezones():
        raise InvalidInput(_("%(tz)s is not a time zone.") % {"tz": name}, code="invalid_timezone")


def _check_reminder(minutes: int | None) -> None:
    if minutes is not None and minutes not in REMINDER_CHOICES_MINUTES:
        raise InvalidInput(_("Choose a reminder from the offered ones."), code="invalid_reminder")


def _normalize_times(
    start: datetime, end: datetime, tz: str, all_day: bool
) -> tuple[datetime, datetime]:
    if djtz.is_naive(start) or djtz.is_naive(end):
        raise InvalidInput(_("Times must carry a UTC offset."), code="naive_datetime")
    if all_day:
        # All-day meetings span whole local days: midnight to midnight in the meeting's zone.
        zone = ZoneInfo(tz)
        first = start.astimezone(zone).date()
        last = end.astimezone(zone).date()
        if last <= first:
            last = first + timedelta(days=1)
        start = datetime.combine(first, datetime.min.time(), zone)
        end = datetime.combine(last, datetime.min.time(), zone)
    if end <= start:
        raise InvalidInput(_("The meeting must end after it starts."), code="end_before_start")
    if not all_day and end - start > MAX_DURATION:
        raise InvalidInput(_("A meeting lasts at most 24 hours."), code="too_long")
    return start.astimezone(UTC), end.astimezone(UTC)


def _refuse_past(start: datetime, end: datetime, all_day: bool) -> None:
    # An all-day meeting today began at local midnight: it is still bookable until it ends.
    if (end if all_day else start) < djtz.now() - PAST_TOLERANCE:
        raise InvalidInput(_("The meeting cannot start in the past."), code="start_in_past")


def _series_bounds(
    start: datetime, end: datetime, tz: str, recurrence: Recurrence | None
) -> tuple[datetime, datetime, str, datetime | None]:
    """Align the start on the rule's first occurrence; return start, end, rrule, series_end."""
    if recurrence is None:
        return start, end, "", end
    rrule = recurrence.to_rrule()
    duration = end - start
    # Eight occurrences hold every gap of a pattern: a weekly one repeats its (at most seven)
    # days, the others have near-constant gaps. The first two alone miss TU,TH,FR.
    first = list(
        islice(
            expand(
                rrule=rrule,
                start=start,
                timezone=tz,
                window_start=start,
                window_end=start + timedelta(days=3700),
            ),
            8,
        )
    )
    if not first:
        raise InvalidInput(
            _("This recurrence has no occurrence after the start."), code="empty_recurrence"
        )
    if first[0] != start:
        # Like Outlook: the series starts on the first day that matches the pattern.
        start, end = first[0], first[0] + duration
    if any(later < earlier + duration for earlier, later in pairwise(first)):
        raise InvalidInput(
            _(
                "Occurrences would overlap: the meeting is longer than the "
                "time between two occurrences."
            ),
            code="overlapping_occurrences",
        )
    last = last_occurrence_start(rrule=rrule, start=start, timezone=tz)
    return start, end, rrule, None if last is None else last + duration


def _resolve_attendees(specs: Iterable[AttendeeSpec]) -> list[tuple[AttendeeSpec, User | None]]:
    resolved: dict[str, tuple[AttendeeSpec, User | None]] = {}
    for spec in specs:
        email = spec.email.strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise InvalidInput(
                _("%(email)s is not a valid email address.") % {"email": email},
                code="invalid_email",
            ) from None
        if spec.role not in AttendeeRole.values:
            raise InvalidInput(
                _("Unknown attendee role %(role)s.") % {"role": spec.role}, code="invalid_role"
            )
        resolved.setdefault(
            email, (AttendeeSpec(email, spec.display_name.strip(), spec.role), None)
        )
    if len(resolved) > MAX_ATTENDEES:
        raise InvalidInput(
            _("A meeting can have at most %(n)d attendees.") % {"n": MAX_ATTENDEES},
            code="too_many_attendees",
        )
    # Stored addresses may carry capitals (the admin keeps them); match like the unique index.
    users = {
        u.email.lower(): u
        for u in User.objects.annotate(email_ci=Lower("email")).filter(
            email_ci__in=resolved, is_active=True
        )
    }
    return [(spec, users.get(email)) for email, (spec, _user) in resolved.items()]


def _new_uid() -> str:
    host = settings.SITE_URL.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return f"{uuid.uuid4()}@{host}"


def _add_attendees(
    meeting: Meeting,
    people: Sequence[tuple[AttendeeSpec, User | None]],
) -> list[Attendee]:
    existing = set(meeting.attendees.values_list("email", flat=True))
    rows = [
        Attendee(
            meeting=meeting,
            user=user,
            email=spec.email,
            display_name=spec.display_name or (user.display_name if user else ""),
            role=spec.role,
        )
        for spec, user in people
        if spec.email not in existing
    ]
    return Attendee.objects.bulk_create(rows)


# --- Services -------------------------------------------------------------------------------


def meeting_schedule(
    *,
    actor: User,
    title: str,
    start: datetime,
    end: datetime,
    timezone: str,
    description: str = "",
    all_day: bool = False,
    recurrence: Recurrence | None = None,
    attendees: Iterable[AttendeeSpec] = (),
    co_organizers: Iterable[User] = (),
    access_level: str = AccessLevel.INVITE,
    lobby_enabled: bool = True,
    listed_publicly: bool = False,
    reminder_minutes: int | None = None,
) -> Meeting:
    _require_organizer_role(actor)
    title = title.strip()
    if not title:
        raise InvalidInput(_("Give the meeting a title."), code="title_required")
    if access_level not in AccessLevel.values:
        raise InvalidInput(_("Unknown access level."), code="invalid_access_level")
    _check_timezone(timezone)
    _check_reminder(reminder_minutes)
    start, end = _normalize_times(start, end, timezone, all_day)
    _refuse_past(start, end, all_day)
    start, end, rrule, series_end = _series_bounds(start, end, timezone, recurrence)
    co_organizers = [u for u in co_organizers if u.pk != actor.pk]
    people = _resolve_attendees(
        [
            *attendees,
            *(AttendeeSpec(u.email, u.display_name, AttendeeRole.REQUIRED) for u in co_organizers),
        ]
    )
    people = [(s, u) for s, u in people if s.email != actor.email.lower()]
    with transaction.atomic():
        meeting = Meeting.objects.create(
            uid=_new_uid(),
            title=title,
            description=description.strip(),
            start=start,
            end=end,
            timezone=timezone,
            all_day=all_day,
            rrule=rrule,
            series_end=series_end,
            host_agency=actor.membership.agency,
            organizer=actor,
            access_level=access_level,
            lobby_enabled=lobby_enabled,
            listed_publicly=listed_publicly,
            reminder_minutes=reminder_minutes,
        )
        meeting.co_organizers.set(co_organizers)
        Attendee.objects.create(
            meeting=meeting,
            user=actor,
            email=actor.email,
            display_name=actor.display_name,
            role=AttendeeRole.CHAIR,
            partstat=PartStat.ACCEPTED,
            responded_at=djtz.now(),
        )
        _add_attendees(meeting, people)
        # Inside the transaction: without a room (no_capacity) nothing is booked. Room changes
        # made by these services are covered by the meeting's own audit row (audit=False).
        room_reserve(actor=actor, meeting=meeting, audit=False)
        invitations.invitations_scheduled(meeting)
        feeds_changed(meeting)
        meeting_event(meeting, MeetingEvent.CREATED)
        audit_record(
            actor=actor,
            action="meeting.scheduled",
            obj=meeting,
            agency=meeting.host_agency,
            detail={"uid": meeting.uid, "recurring": bool(rrule), "attendees": len(people) + 1},
        )
    return meeting


_UNSET: Any = object()


def meeting_update(
    *,
    actor: User,
    meeting: Meeting,
    title: str = _UNSET,
    description: str = _UNSET,
    start: datetime = _UNSET,
    end: datetime = _UNSET,
    timezone: str = _UNSET,
    all_day: bool = _UNSET,
    recurrence: Recurrence | None = _UNSET,
    attendees: Iterable[AttendeeSpec] = _UNSET,
    co_organizers: Iterable[User] = _UNSET,
    access_level: str = _UNSET,
    lobby_enabled: bool = _UNSET,
    listed_publicly: bool = _UNSET,
    reminder_minutes: int | None = _UNSET,
    notify: bool = False,
) -> UpdateResult:
    """Change a meeting (the whole series). Significant changes bump ``sequence``.

    Attendees are sent an update for significant changes; ``notify`` sends one for cosmetic
    changes too (same sequence)."""
    with transaction.atomic():
        meeting = Meeting.objects.select_for_update().get(pk=meeting.pk)
        _require_can_edit(actor, meeting)
        proposed: dict[str, Any] = {}
        if title is not _UNSET:
            if not title.strip():
                raise InvalidInput(_("Give the meeting a title."), code="title_required")
            proposed["title"] = title.strip()
        if description is not _UNSET:
            proposed["description"] = description.strip()
        if access_level is not _UNSET:
            if access_level not in AccessLevel.values:
                raise InvalidInput(_("Unknown access level."), code="invalid_access_level")
            proposed["access_level"] = access_level
        if lobby_enabled is not _UNSET:
            proposed["lobby_enabled"] = lobby_enabled
        if listed_publicly is not _UNSET:
            proposed["listed_publicly"] = listed_publicly
        if reminder_minutes is not _UNSET:
            _check_reminder(reminder_minutes)
            proposed["reminder_minutes"] = reminder_minutes
        timing_given = any(v is not _UNSET for v in (start, end, timezone, all_day, recurrence))
        if timing_given:
            tz = meeting.timezone if timezone is _UNSET else timezone
            _check_timezone(tz)
            new_all_day = meeting.all_day if all_day is _UNSET else all_day
            new_start, new_end = _normalize_times(
                meeting.start if start is _UNSET else start,
                meeting.end if end is _UNSET else end,
                tz,
                new_all_day,
            )
            if recurrence is _UNSET:
                rule = Recurrence.parse(meeting.rrule) if meeting.rrule else None
            else:
                rule = recurrence
            if new_start != meeting.start:
                _refuse_past(new_start, new_end, new_all_day)
            new_start, new_end, rrule, series_end = _series_bounds(new_start, new_end, tz, rule)
            proposed.update(
                start=new_start,
                end=new_end,
                timezone=tz,
                all_day=new_all_day,
                rrule=rrule,
                series_end=series_end,
            )
        changed = {name for name, value in proposed.items() if getattr(meeting, name) != value}
        changed.discard("series_end")
        for name in changed | ({"series_end"} if timing_given else set()):
            setattr(meeting, name, proposed[name])
        result = UpdateResult(
            meeting=meeting, changed=changed, significant=bool(changed & SIGNIFICANT_FIELDS)
        )
        if co_organizers is not _UNSET:
            new_co = {u.pk for u in co_organizers if u.pk != meeting.organizer_id}
            if new_co != set(meeting.co_organizers.values_list("pk", flat=True)):
                meeting.co_organizers.set(new_co)
                result.changed.add("co_organizers")
        if attendees is not _UNSET or "co_organizers" in result.changed:
            # Like meeting_schedule: co-organizers are always attendees.
            co_specs = [AttendeeSpec(u.email, u.display_name) for u in meeting.co_organizers.all()]
            if attendees is not _UNSET:
                _replace_attendees(meeting, [*attendees, *co_specs], result)
            else:
                result.added = _add_attendees(meeting, _resolve_attendees(co_specs))
                if result.added:
                    result.changed.add("attendees")
        if result.significant:
            meeting.sequence += 1
            if {"rrule", "start", "timezone", "all_day"} & changed:
                # Exceptions are keyed by the original starts of the old occurrences; once those
                # move, they match nothing (a moved one would show twice). Outlook drops them too.
                meeting.exceptions.all().delete()
            # The time changed: earlier answers no longer hold (RFC 5546 §2.1.4).
            meeting.attendees.exclude(role=AttendeeRole.CHAIR).update(
                partstat=PartStat.NEEDS_ACTION, responded_at=None
            )
        if not result.changed:
            return result
        meeting.save()
        if changed & ROOM_TIMING_FIELDS or len(result.added) != len(result.removed):
            room_rereserve(
                actor=actor,
                meeting=meeting,
                attendee_delta=len(result.added) - len(result.removed),
                audit=False,
            )
        invitations.invitations_updated(
            meeting,
            significant=result.significant,
            added=result.added,
            removed=result.removed,
            notify=notify,
        )
        feeds_changed(meeting, also=[a.user_id for a in result.removed])
        meeting_event(meeting, MeetingEvent.UPDATED)
        audit_record(
            actor=actor,
            action="meeting.updated",
            obj=meeting,
            agency=meeting.host_agency,
            detail={"changed": sorted(result.changed), "sequence": meeting.sequence},
        )
    return result


def _replace_attendees(
    meeting: Meeting, specs: Iterable[AttendeeSpec], result: UpdateResult
) -> None:
    organizer_email = meeting.organizer.email.lower()
    people = [(s, u) for s, u in _resolve_attendees(specs) if s.email != organizer_email]
    wanted = {spec.email: spec for spec, _user in people}
    current = {a.email: a for a in meeting.attendees.exclude(user_id=meeting.organizer_id)}
    removed = [a for email, a in current.items() if email not in wanted]
    for attendee in current.values():
        spec = wanted.get(attendee.email)
        if spec is not None and attendee.role != spec.role:
            attendee.role = spec.role
            attendee.save(update_fields=["role", "updated_at"])
            result.changed.add("attendees")
    if removed:
        Attendee.objects.filter(pk__in=[a.pk for a in removed]).delete()
    added = _add_attendees(meeting, [(s, u) for s, u in people if s.email not in current])
    if added or removed:
        result.changed.add("attendees")
    result.added, result.removed = added, removed


def meeting_cancel(*, actor: User, meeting: Meeting) -> Meeting:
    """Cancel the meeting (the whole series)."""
    with transaction.atomic():
        meeting = Meeting.objects.select_for_update().get(pk=meeting.pk)
        if not meeting.get_abilities(actor)["view"]:
            raise Forbidden(_("You may not change this meeting."), code="forbidden")
        if meeting.is_cancelled:
            return meeting
        _require_can_edit(actor, meeting)
        meeting.status = MeetingStatus.CANCELLED
        meeting.sequence += 1
        meeting.save(update_fields=["status", "sequence", "updated_at"])
        room_release_for_meeting(actor=actor, meeting=meeting, audit=False)
        invitations.invitations_cancelled(meeting)
        feeds_changed(meeting)
        meeting_event(meeting, MeetingEvent.CANCELLED)
        audit_record(
            actor=actor,
            action="meeting.cancelled",
            obj=meeting,
            agency=meeting.host_agency,
            detail={"sequence": meeting.sequence},
        )
    return meeting


def _locked_occurrence(
    actor: User,
    meeting: Meeting,
    recurrence_id: datetime,
) -> tuple[Meeting, OccurrenceException | None]:
    meeting = Meeting.objects.select_for_update().get(pk=meeting.pk)
    _require_can_edit(actor, meeting)
    if not meeting.rrule:
        raise InvalidInput(_("This meeting does not repeat."), code="not_recurring")
    if occurrence_at(meeting, recurrence_id) is None:
        raise NotFound(
            _("This meeting has no occurrence at that time."), code="occurrence_not_found"
        )
    exc = meeting.exceptions.filter(recurrence_id=recurrence_id).first()
    return meeting, exc


def _occurrence_exception_save(
    actor: User,
    meeting: Meeting,
    exc: OccurrenceException,
    *,
    action: str,
    detail: dict[str, str] | None = None,
) -> None:
    """Store a cancelled or moved occurrence; everything that follows from it happens here."""
    exc.save()
    meeting.sequence += 1
    meeting.save(update_fields=["sequence", "updated_at"])
    # A moved occurrence needs room at its new time (no_capacity rolls the change back).
    room_windows_sync(actor=actor, meeting=meeting, audit=False)
    if exc.cancelled:
        invitations.invitations_occurrence_cancelled(meeting, exc.recurrence_id)
    else:
        invitations.invitations_occurrence_moved(meeting, exc.recurrence_id)
    feeds_changed(meeting)
    meeting_event(meeting, MeetingEvent.UPDATED)
    audit_record(
        actor=actor,
        action=action,
        obj=meeting,
        agency=meeting.host_agency,
        detail={
            "recurrence_id": exc.recurrence_id.isoformat(),
            **(detail or {}),
            "sequence": meeting.sequence,
        },
    )


def occurrence_cancel(
    *,
    actor: User,
    meeting: Meeting,
    recurrence_id: datetime,
) -> OccurrenceException:
    with transaction.atomic():
        meeting, exc = _locked_occurrence(actor, meeting, recurrence_id)
        if exc is not None and exc.cancelled:
            return exc
        if exc is None:
            exc = OccurrenceException(meeting=meeting, recurrence_id=recurrence_id)
        exc.cancelled, exc.start, exc.end = True, None, None
        _occurrence_exception_save(actor, meeting, exc, action="occurrence.cancelled")
    return exc


def occurrence_move(
    *, actor: User, meeting: Meeting, recurrence_id: datetime, start: datetime, end: datetime
) -> OccurrenceException:
    with transaction.atomic():
        meeting, exc = _locked_occurrence(actor, meeting, recurrence_id)
        start, end = _normalize_times(start, end, meeting.timezone, meeting.all_day)
        _refuse_past(start, end, meeting.all_day)
        if exc is not None and not exc.cancelled and (exc.start, exc.end) == (start, end):
            return exc
        if exc is None:
            exc = OccurrenceException(meeting=meeting, recurrence_id=recurrence_id)
        exc.cancelled, exc.start, exc.end = False, start, end
        _occurrence_exception_save(
            actor,
            meeting,
            exc,
            action="occurrence.moved",
            detail={"start": start.isoformat(), "end": end.isoformat()},
        )
    return exc


def series_split(
    *, actor: User, meeting: Meeting, recurrence_id: datetime, **changes: Any
) -> Meeting:
    """ "This and all following": end the series before ``recurrence_id``; a new series (new
    uid) continues from there with ``changes`` applied. Returns the new series."""
    with transaction.atomic():
        meeting, _exc = _locked_occurrence(actor, meeting, recurrence_id)
        if recurrence_id == meeting.start:
            # Splitting at the first occurrence is an edit of the whole series.
            return meeting_update(actor=actor, meeting=meeting, **changes).meeting
        old_rule = Recurrence.parse(meeting.rrule)
        before = sum(
            1
            for _o in expand(
                rrule=meeting.rrule,
                start=meeting.start,
                timezone=meeting.timezone,
                window_start=meeting.start,
                window_end=recurrence_id,
            )
        )
        duration = meeting.end - meeting.start
        continuation_rule = old_rule
        if old_rule.count is not None:
            continuation_rule = Recurrence(
                freq=old_rule.freq,
                interval=old_rule.interval,
                weekdays=old_rule.weekdays,
                month_day=old_rule.month_day,
                nth=old_rule.nth,
                month=old_rule.month,
                count=old_rule.count - before,
            )
        attendee_specs = [
            AttendeeSpec(a.email, a.display_name, a.role)
            for a in meeting.attendees.exclude(user_id=meeting.organizer_id)
        ]
        continuation = Meeting.objects.create(
            uid=_new_uid(),
            title=meeting.title,
            description=meeting.description,
            start=recurrence_id,
            end=recurrence_id + duration,
            timezone=meeting.timezone,
            all_day=meeting.all_day,
            rrule=continuation_rule.to_rrule(),
            series_end=meeting.series_end,
            host_agency=meeting.host_agency,
            organizer=meeting.organizer,
            access_level=meeting.access_level,
            lobby_enabled=meeting.lobby_enabled,
            listed_publicly=meeting.listed_publicly,
            split_from=meeting,
        )
        continuation.co_organizers.set(meeting.co_organizers.all())
        for attendee in meeting.attendees.all():
            Attendee.objects.create(
                meeting=continuation,
                user=attendee.user,
                email=attendee.email,
                display_name=attendee.display_name,
                role=attendee.role,
                partstat=attendee.partstat,
                responded_at=attendee.responded_at,
            )
        # Exceptions from the split point on belong to the continuation now.
        meeting.exceptions.filter(recurrence_id__gte=recurrence_id).update(meeting=continuation)
        # The old series ends just before the split occurrence.
        ended = old_rule.with_until(recurrence_id - timedelta(seconds=1))
        meeting.rrule = ended.to_rrule()
        last = last_occurrence_start(
            rrule=meeting.rrule, start=meeting.start, timezone=meeting.timezone
        )
        meeting.series_end = (last or meeting.start) + duration
        meeting.sequence += 1
        meeting.save(update_fields=["rrule", "series_end", "sequence", "updated_at"])
        # The old room gives back the occurrences from the split on; the continuation gets its own.
        old_room = room_windows_sync(actor=actor, meeting=meeting, audit=False)
        room_reserve(
            actor=actor,
            meeting=continuation,
            expected_participants=old_room.expected_participants if old_room else None,
            audit=False,
        )
        feeds_changed(meeting)
        feeds_changed(continuation)
        # Before ``changes`` apply: if they bump the continuation's sequence, these rows are
        # superseded at send time (meetings.invitations).
        invitations.invitations_split(meeting, continuation)
        audit_record(
            actor=actor,
            action="series.split",
            obj=meeting,
            agency=meeting.host_agency,
            detail={
                "recurrence_id": recurrence_id.isoformat(),
                "continuation_uid": continuation.uid,
            },
        )
        if changes:
            changes.setdefault("attendees", attendee_specs)
            meeting_update(actor=actor, meeting=continuation, **changes)
            continuation.refresh_from_db()
        # Last: the agency's change counter stays locked until commit (meetings.changes), so
        # no backend row may be locked after it.
        meeting_event(meeting, MeetingEvent.UPDATED)
        meeting_event(continuation, MeetingEvent.CREATED)
    return continuation


def attendee_respond(*, actor: User | str, attendee: Attendee, partstat: str) -> Attendee:
    """An attendee answers (signed in, or through an RSVP link when ``actor`` is a label)."""
    if partstat not in PartStat.values or partstat == PartStat.NEEDS_ACTION:
        raise InvalidInput(_("Answer accepted, tentative or declined."), code="invalid_answer")
    with transaction.atomic():
        attendee = (
            Attendee.objects.select_for_update().select_related("meeting").get(pk=attendee.pk)
        )
        if isinstance(actor, User) and attendee.user_id != actor.pk:
            raise Forbidden(_("You can only answer for yourself."), code="forbidden")
        if attendee.meeting.is_cancelled:
            raise InvalidInput(_("This meeting is cancelled."), code="meeting_cancelled")
        if attendee.partstat == partstat:
            return attendee
        attendee.partstat = partstat
        attendee.responded_at = djtz.now()
        attendee.save(update_fields=["partstat", "responded_at", "updated_at"])
        organizer_reply_notice_enqueue(attendee)
        feeds_changed(attendee.meeting)
        meeting_event(attendee.meeting, MeetingEvent.ATTENDEE_RESPONDED, attendee=attendee)
        audit_record(
            actor=actor,
            action="attendee.responded",
            obj=attendee.meeting,
            agency=attendee.meeting.host_agency,
            detail={"attendee": attendee.email, "partstat": partstat},
        )
    return attendee


# --- Calendar feeds -------------------------------------------------------------------------


def feeds_changed(meeting: Meeting, *, also: Iterable[int | None] = ()) -> None:
    """The feeds that may show ``meeting`` must look at their rows again (meetings.feeds).

    Called inside the writing service's transaction, after the write: its participants'
    personal feeds (``also``: people just removed from it) and its agency's public feed.
    """
    people = Attendee.objects.filter(meeting=meeting, user__isnull=False).values("user_id")
    co_organizers = Meeting.co_organizers.through.objects.filter(meeting=meeting).values("user_id")
    tokens = FeedToken.objects.filter(
        Q(user_id__in=people)
        | Q(user_id__in=co_organizers)
        | Q(user_id__in=[meeting.organizer_id, *(pk for pk in also if pk is not None)])
        | Q(agency_id=meeting.host_agency_id),
        revoked_at__isnull=True,
    )
    feeds.forget_validators(list(tokens.values_list("token_hash", flat=True)))
    tokens.update(generation=F("generation") + 1)


# last_used_at is a hint for the profile ("last read by a calendar"), not an access log: one
# write a minute at most, so a polling client does not turn every read into a write.
FEED_USE_RESOLUTION = timedelta(minutes=1)


def _feed_owner(actor: User, agency: Agency | None) -> dict[str, Any]:
    if agency is None:
        return {"kind": FeedKind.PERSONAL, "user": actor}
    membership = getattr(actor, "membership", None)
    if membership is None or membership.agency_id != agency.pk or membership.role != Role.ADMIN:
        raise Forbidden(
            _("Only the agency's administrators manage its calendar."), code="forbidden"
        )
    return {"kind": FeedKind.AGENCY, "agency": agency}


def _require_feed_manager(actor: User, feed: FeedToken) -> None:
    if feed.kind == FeedKind.PERSONAL:
        if feed.user_id != actor.pk:
            raise NotFound(_("No such calendar feed."), code="not_found")
    else:
        _feed_owner(actor, feed.agency)


def _lock_owner(owner: dict[str, Any]) -> None:
    # Serializes creations for one owner; the partial unique index is the last word.
    if owner["kind"] == FeedKind.PERSONAL:
        User.objects.select_for_update().filter(pk=owner["user"].pk).first()
    else:
        Agency.objects.select_for_update().filter(pk=owner["agency"].pk).first()


def _set_new_token(feed: FeedToken) -> None:
    feed.nonce = feeds.new_nonce()
    feed.token_hash = feeds.token_hash(feeds.token_of(feed))


def feed_token_create(*, actor: User, agency: Agency | None = None) -> FeedToken:
    """A subscription URL for the actor's calendar, or for ``agency``'s (its admins only)."""
    owner = _feed_owner(actor, agency)
    with transaction.atomic():
        _lock_owner(owner)
        live = FeedToken.objects.filter(revoked_at__isnull=True, **owner).first()
        if live is not None:
            return live
        nonce = feeds.new_nonce()
        # The token needs the primary key: a unique placeholder hash until it exists.
        feed = FeedToken.objects.create(nonce=nonce, token_hash=f"pending:{nonce[:56]}", **owner)
        feed.token_hash = feeds.token_hash(feeds.token_of(feed))
        feed.save(update_fields=["token_hash"])
        audit_record(
            actor=actor,
            action="feed.created",
            obj=feed,
            agency=agency or getattr(getattr(actor, "membership", None), "agency", None),
            detail={"kind": feed.kind},
        )
    return feed


def feed_token_rotate(*, actor: User, feed: FeedToken) -> FeedToken:
    """A new URL for the same feed; the old one answers 404 from now on."""
    _require_feed_manager(actor, feed)
    with transaction.atomic():
        feed = FeedToken.objects.select_for_update().get(pk=feed.pk)
        if feed.is_revoked:
            raise InvalidInput(_("This calendar feed was revoked."), code="feed_revoked")
        feeds.forget_validators([feed.token_hash])
        _set_new_token(feed)
        feed.rotated_at = djtz.now()
        feed.save(update_fields=["nonce", "token_hash", "rotated_at"])
        audit_record(
            actor=actor,
            action="feed.rotated",
            obj=feed,
            agency=feed.agency or getattr(getattr(actor, "membership", None), "agency", None),
            detail={"kind": feed.kind},
        )
    return feed


def feed_token_revoke(*, actor: User | str, feed: FeedToken) -> FeedToken:
    """The URL stops working for good; a new one can be created afterwards."""
    if isinstance(actor, User):
        _require_feed_manager(actor, feed)
    with transaction.atomic():
        feed = FeedToken.objects.select_for_update().get(pk=feed.pk)
        if feed.is_revoked:
            return feed
        feeds.forget_validators([feed.token_hash])
        feed.revoked_at = djtz.now()
        feed.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="feed.revoked",
            obj=feed,
            agency=feed.agency,
            detail={"kind": feed.kind},
        )
    return feed


def feed_token_update(*, actor: User, feed: FeedToken, include_declined: bool) -> FeedToken:
    """The feed's options (personal feeds: whether declined meetings show)."""
    _require_feed_manager(actor, feed)
    with transaction.atomic():
        feed = FeedToken.objects.select_for_update().get(pk=feed.pk)
        if feed.include_declined == include_declined:
            return feed
        feed.include_declined = include_declined
        feeds.forget_validators([feed.token_hash])
        feed.generation += 1
        feed.save(update_fields=["include_declined", "generation"])
        audit_record(
            actor=actor,
            action="feed.updated",
            obj=feed,
            agency=feed.agency,
            detail={"include_declined": include_declined},
        )
    return feed


def feed_token_served(
    *,
    feed: FeedToken,
    etag: str,
    fingerprint: str,
    generation: int | None,
    checked_at: datetime | None,
) -> datetime:
    """Record what a feed request found; returns the feed's Last-Modified.

    Last-Modified moves only when the ETag changes, and only forward (at least one second,
    HTTP dates have no finer grain), so a client's If-Modified-Since never misses a removal.
    ``generation`` is the token's generation read *before* the fingerprint was taken, so a
    write committed in between makes the next request look again. No audit row: this is the
    anonymous calendar client's read, not an action.
    """
    now = djtz.now().replace(microsecond=0)

    def same_check(row: FeedToken) -> bool:
        # A check earlier in the same bucket, at the same generation, is as good as this one.
        return (
            row.checked_generation == generation
            and row.checked_at is not None
            and checked_at is not None
            and feeds.bucket_start(row.checked_at) == feeds.bucket_start(checked_at)
        )

    def changes(row: FeedToken) -> bool:
        return (
            row.etag != etag
            or row.fingerprint != fingerprint
            or row.last_modified is None
            or not same_check(row)
            or row.last_used_at is None
            or now - row.last_used_at >= FEED_USE_RESOLUTION
        )

    if not changes(feed):
        assert feed.last_modified is not None  # noqa: S101 - checked by changes()
        return feed.last_modified
    with transaction.atomic():
        locked = FeedToken.objects.select_for_update().get(pk=feed.pk)
        changed: list[str] = []
        if locked.etag != etag or locked.last_modified is None:
            previous = locked.last_modified
            locked.last_modified = (
                now if previous is None else max(previous + timedelta(seconds=1), now)
            )
            locked.etag = etag
            changed += ["etag", "last_modified"]
        if locked.fingerprint != fingerprint:
            locked.fingerprint = fingerprint
            changed.append("fingerprint")
        if not same_check(locked):
            locked.checked_generation, locked.checked_at = generation, checked_at
            changed += ["checked_generation", "checked_at"]
        if locked.last_used_at is None or now - locked.last_used_at >= FEED_USE_RESOLUTION:
            locked.last_used_at = now
            changed.append("last_used_at")
        if changed:
            locked.save(update_fields=changed)
    for name in (
        "etag",
        "last_modified",
        "fingerprint",
        "checked_generation",
        "checked_at",
        "last_used_at",
    ):
        setattr(feed, name, getattr(locked, name))
    assert locked.last_modified is not None  # noqa: S101 - set above when missing
    return locked.last_modified


def agency_calendar_publish(*, actor: User, agency: Agency) -> FeedToken:
    """Turn the agency's public calendar on; returns its feed (created the first time)."""
    _feed_owner(actor, agency)
    with transaction.atomic():
        locked = Agency.objects.select_for_update().get(pk=agency.pk)
        if not locked.public_calendar_enabled:
            locked.public_calendar_enabled = True
            locked.save(update_fields=["public_calendar_enabled", "updated_at"])
            audit_record(actor=actor, action="agency.calendar_published", obj=locked, agency=locked)
        agency.public_calendar_enabled = True
        return feed_token_create(actor=actor, agency=locked)


def agency_calendar_unpublish(*, actor: User, agency: Agency) -> Agency:
    """Turn the agency's public calendar off; its URL answers 404 until it is on again."""
    _feed_owner(actor, agency)
    with transaction.atomic():
        locked = Agency.objects.select_for_update().get(pk=agency.pk)
        if not locked.public_calendar_enabled:
            return locked
        locked.public_calendar_enabled = False
        locked.save(update_fields=["public_calendar_enabled", "updated_at"])
        feeds.forget_validators(
            list(FeedToken.objects.filter(agency=locked).values_list("token_hash", flat=True))
        )
        audit_record(actor=actor, action="agency.calendar_unpublished", obj=locked, agency=locked)
    agency.public_calendar_enabled = False
    return locked
