"""Invitations, updates and cancellations by email (iTIP REQUEST/CANCEL over iMIP, RFC 6047).

Services call the ``invitations_*`` functions inside their transaction: each writes outbox
rows (``visio_broker.outbox``), one per recipient, keyed by (meeting, occurrence, recipient,
sequence, kind). The senders registered here re-read the meeting when the row is relayed and
render the SEQUENCE stored on the row.

Superseded rows: a pending REQUEST or CANCEL is not sent (the row is marked sent, with
``payload["superseded_by"]``) when a later whole-series message to the same recipient exists
(higher sequence, not failed) — that message carries everything the older one did — or, for
one occurrence, a later message about the same occurrence. A REQUEST to someone no longer
invited is dropped the same way (their CANCEL went out). Everything else is sent, even if the
meeting moved on: the recipient's client keeps the highest SEQUENCE, then the latest DTSTAMP
(the row's creation time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from email.mime.text import MIMEText
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import dateformat, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agencies.models import User
from meetings import ical
from meetings.models import Attendee, AttendeeRole, Meeting, MeetingStatus
from meetings.recurrence import Recurrence
from visio_broker.models import Notification, NotificationStatus
from visio_broker.outbox import (
    PermanentDeliveryError,
    mail_message_id,
    mail_send,
    notification_enqueue,
    sender,
)

logger = logging.getLogger(__name__)

MEETING_REQUEST = "meeting.request"
MEETING_CANCEL = "meeting.cancel"
OCCURRENCE_REQUEST = "occurrence.request"
OCCURRENCE_CANCEL = "occurrence.cancel"
FAILOVER_FAILED = "room.failover_failed"
ITIP_KINDS = (MEETING_REQUEST, MEETING_CANCEL, OCCURRENCE_REQUEST, OCCURRENCE_CANCEL)

KIND_LABELS = {
    MEETING_REQUEST: gettext_lazy("Invitation"),
    MEETING_CANCEL: gettext_lazy("Cancellation"),
    OCCURRENCE_REQUEST: gettext_lazy("Occurrence update"),
    OCCURRENCE_CANCEL: gettext_lazy("Occurrence cancellation"),
    FAILOVER_FAILED: gettext_lazy("Room move failure notice"),
}

_ROLES: dict[str, str] = {
    AttendeeRole.CHAIR.value: "CHAIR",
    AttendeeRole.REQUIRED.value: "REQ-PARTICIPANT",
    AttendeeRole.OPTIONAL.value: "OPT-PARTICIPANT",
}


# --- Enqueueing (inside the services' transactions) ------------------------------------------


def _invitees(meeting: Meeting) -> list[Attendee]:
    """Everyone invited but the organizer, who sends the messages."""
    organizer_email = meeting.organizer.email.lower()
    return [
        a
        for a in meeting.attendees.all().order_by("pk")
        if a.user_id != meeting.organizer_id and a.email.lower() != organizer_email
    ]


def _enqueue(
    kind: str,
    meeting: Meeting,
    attendees: list[Attendee],
    *,
    recurrence_id: datetime | None = None,
    reason: str,
    extra: str = "",
    payload: dict[str, Any] | None = None,
) -> None:
    for attendee in attendees:
        notification_enqueue(
            kind=kind,
            recipient=attendee.email,
            meeting=meeting,
            recurrence_id=recurrence_id,
            sequence=meeting.sequence,
            payload={"meeting_id": meeting.pk, "reason": reason, **(payload or {})},
            dedup_extra=extra.format(pk=attendee.pk),
        )


def invitations_scheduled(meeting: Meeting) -> None:
    _enqueue(MEETING_REQUEST, meeting, _invitees(meeting), reason="new")


def invitations_updated(
    meeting: Meeting,
    *,
    significant: bool,
    added: list[Attendee],
    removed: list[Attendee],
    notify: bool = False,
) -> None:
    """A significant change re-invites everyone; otherwise only the added (and, with
    ``notify``, everyone at the same sequence, as a new revision). Removed people get CANCEL."""
    added_pks = {a.pk for a in added}
    if significant:
        _enqueue(MEETING_REQUEST, meeting, _invitees(meeting), reason="update")
    else:
        # Re-added people are new rows (new pk): they get a REQUEST again at the same sequence.
        new = [a for a in _invitees(meeting) if a.pk in added_pks]
        _enqueue(MEETING_REQUEST, meeting, new, reason="added", extra="add{pk}")
        if notify:
            others = [a for a in _invitees(meeting) if a.pk not in added_pks]
            revision = f"rev{int(meeting.updated_at.timestamp())}"
            _enqueue(MEETING_REQUEST, meeting, others, reason="update", extra=revision)
    for attendee in removed:
        # The attendee row is gone by the time it is sent: the payload keeps what the ICS needs.
        _enqueue(
            MEETING_CANCEL,
            meeting,
            [attendee],
            reason="removed",
            extra="rm{pk}",
            payload={
                "attendee": {
                    "email": attendee.email,
                    "name": attendee.display_name,
                    "role": attendee.role,
                    "user_id": attendee.user_id,
                }
            },
        )


def invitations_cancelled(meeting: Meeting) -> None:
    _enqueue(MEETING_CANCEL, meeting, _invitees(meeting), reason="cancelled")


def invitations_occurrence_cancelled(meeting: Meeting, recurrence_id: datetime) -> None:
    _enqueue(
        OCCURRENCE_CANCEL,
        meeting,
        _invitees(meeting),
        recurrence_id=recurrence_id,
        reason="cancelled",
    )


def invitations_occurrence_moved(meeting: Meeting, recurrence_id: datetime) -> None:
    _enqueue(
        OCCURRENCE_REQUEST, meeting, _invitees(meeting), recurrence_id=recurrence_id, reason="moved"
    )


def invitations_split(meeting: Meeting, continuation: Meeting) -> None:
    """The old series with its new UNTIL, and the continuation (a new UID) from scratch."""
    _enqueue(MEETING_REQUEST, meeting, _invitees(meeting), reason="update")
    _enqueue(MEETING_REQUEST, continuation, _invitees(continuation), reason="new")


# --- Reading for the meeting page ------------------------------------------------------------


def failed_deliveries(meeting: Meeting, *, limit: int = 50) -> list[Notification]:
    """Messages about ``meeting`` that could not be delivered, newest first, labelled."""
    rows = list(
        Notification.objects.filter(meeting=meeting, status=NotificationStatus.FAILED).order_by(
            "-created_at", "-pk"
        )[:limit]
    )
    for row in rows:
        row.kind_label = str(KIND_LABELS.get(row.kind, row.kind))  # type: ignore[attr-defined]
    return rows


# --- Sending ---------------------------------------------------------------------------------


def _system_address() -> str:
    return parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or settings.DEFAULT_FROM_EMAIL


class ItipEmail(EmailMultiAlternatives):
    """multipart/mixed → [multipart/alternative → text, HTML, text/calendar] + invite.ics."""

    def __init__(self, *, method: str, ics: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.ics = ics
        self.attach("invite.ics", ics, "application/ics")

    def _create_alternatives(self, msg: Any) -> Any:
        # Django's own step, not in the stubs: it builds text + HTML, then this part follows.
        msg = super()._create_alternatives(msg)  # type: ignore[misc]
        # Outlook shows Accept/Decline only for this inline part; its method equals METHOD.
        # Base64 (stdlib's UTF-8 default): the CRLF line ends of iCalendar survive every hop.
        part = MIMEText(self.ics.decode(), "calendar", "utf-8")
        part.set_param("method", self.method)
        msg.attach(part)
        return msg


@dataclass(frozen=True)
class _Recipient:
    email: str
    attendee: Attendee | None
    user: User | None
    language: str
    timezone: str


def _recipient(meeting: Meeting, email: str, user_id: int | None = None) -> _Recipient:
    attendee = next((a for a in meeting.attendees.all() if a.email.lower() == email.lower()), None)
    user: User | None = attendee.user if attendee is not None else None
    if user is None:
        user = (
            User.objects.filter(pk=user_id).first()
            if user_id
            else User.objects.filter(email__iexact=email, is_active=True).first()
        )
    language = (user.language if user else "") or meeting.host_agency.default_language or "en"
    return _Recipient(
        email=email,
        attendee=attendee,
        user=user,
        language=language,
        timezone=(user.timezone if user else "") or meeting.timezone,
    )


def _superseded_by(notification: Notification, meeting: Meeting) -> int | None:
    later = Notification.objects.filter(
        meeting=meeting,
        recipient__iexact=notification.recipient,
        sequence__gt=notification.sequence,
    ).exclude(status=NotificationStatus.FAILED)
    scope = Q(kind__in=(MEETING_REQUEST, MEETING_CANCEL))
    if notification.recurrence_id is not None:
        scope |= Q(
            kind__in=(OCCURRENCE_REQUEST, OCCURRENCE_CANCEL),
            recurrence_id=notification.recurrence_id,
        )
    newer = later.filter(scope).order_by("sequence").values_list("pk", flat=True).first()
    if newer is not None:
        return newer
    if notification.kind in (MEETING_REQUEST, OCCURRENCE_REQUEST) and not any(
        a.email.lower() == notification.recipient.lower() for a in meeting.attendees.all()
    ):
        # No longer invited: their CANCEL is the message that counts.
        return (
            Notification.objects.filter(
                meeting=meeting,
                recipient__iexact=notification.recipient,
                kind=MEETING_CANCEL,
            )
            .order_by("-pk")
            .values_list("pk", flat=True)
            .first()
            or 0
        )
    return None


def _attendee_lines(
    meeting: Meeting, method: str, recipient: str, removed: dict[str, Any] | None
) -> tuple[tuple[str, str, str, str], ...]:
    if removed is not None:
        role = _ROLES.get(removed.get("role", ""), "REQ-PARTICIPANT")
        return ((removed["email"], removed.get("name", ""), role, "NEEDS-ACTION"),)
    lines = []
    for attendee in sorted(meeting.attendees.all(), key=lambda a: a.pk):
        is_organizer = attendee.user_id == meeting.organizer_id
        if method == "REQUEST":
            partstat = "ACCEPTED" if is_organizer else "NEEDS-ACTION"
        else:
            partstat = attendee.partstat.upper()
        name = attendee.display_name or (attendee.user.display_name if attendee.user else "")
        lines.append((attendee.email, name, _ROLES[attendee.role], partstat))
    if not any(email.lower() == recipient.lower() for email, *_rest in lines):
        lines.append((recipient, "", "REQ-PARTICIPANT", "NEEDS-ACTION"))
    return tuple(lines)


def _when(start: datetime, end: datetime, zone_name: str, all_day: bool) -> str:
    """'Monday 6 July 2026, 10:00–11:30 (Europe/Paris)' in the active language."""
    zone = ZoneInfo(zone_name)
    first, last = start.astimezone(zone), end.astimezone(zone)
    if all_day:
        text = dateformat.format(first, "l j F Y")
        return _("%(date)s (all day)") % {"date": text}
    day = dateformat.format(first, "l j F Y")
    if first.date() == last.date():
        span = f"{day}, {first:%H:%M}–{last:%H:%M}"
    else:
        span = f"{day}, {first:%H:%M} – {dateformat.format(last, 'l j F Y')}, {last:%H:%M}"
    return f"{span} ({zone_name})"


def _occurrence_span(meeting: Meeting, recurrence_id: datetime) -> tuple[datetime, datetime]:
    exc = next((e for e in meeting.exceptions.all() if e.recurrence_id == recurrence_id), None)
    if exc is not None and exc.start is not None and exc.end is not None and not exc.cancelled:
        return exc.start, exc.end
    zone = ZoneInfo(meeting.timezone)
    # Wall-clock duration, like meetings.ical: an all-day occurrence stays whole days.
    return recurrence_id, recurrence_id.astimezone(zone) + (
        meeting.end.astimezone(zone) - meeting.start.astimezone(zone)
    )


def _rsvp_links(attendee: Attendee | None) -> list[tuple[str, str]]:
    if attendee is None:
        return []
    try:
        from meetings.rsvp import rsvp_url  # another part of issue 5; absent until it lands
    except ImportError:
        return []
    return [
        (_("Accept"), rsvp_url(attendee, "accepted")),
        (_("Tentative"), rsvp_url(attendee, "tentative")),
        (_("Decline"), rsvp_url(attendee, "declined")),
    ]


def _subject(kind: str, reason: str, title: str, when: str) -> str:
    context = {"title": title, "when": when}
    if kind == MEETING_CANCEL and reason == "removed":
        text = _("You are no longer invited: %(title)s")
    elif kind == MEETING_CANCEL:
        text = _("Cancelled: %(title)s — %(when)s")
    elif kind == OCCURRENCE_CANCEL:
        text = _("Occurrence cancelled: %(title)s — %(when)s")
    elif kind == OCCURRENCE_REQUEST:
        text = _("Occurrence moved: %(title)s — %(when)s")
    elif reason in ("update", "split"):
        text = _("Updated invitation: %(title)s — %(when)s")
    else:
        text = _("Invitation: %(title)s — %(when)s")
    return text % context


def build_itip_message(notification: Notification, meeting: Meeting) -> ItipEmail:
    """The email for one row, in the recipient's language and time zone."""
    method = "CANCEL" if notification.kind.endswith(".cancel") else "REQUEST"
    payload = notification.payload or {}
    reason = str(payload.get("reason", ""))
    removed = payload.get("attendee") if reason == "removed" else None
    recipient = _recipient(
        meeting, notification.recipient, (removed or {}).get("user_id") if removed else None
    )
    recurrence_id = notification.recurrence_id
    if notification.kind == MEETING_CANCEL:
        status = "" if removed is not None else "CANCELLED"
    elif notification.kind == OCCURRENCE_CANCEL:
        status = "CANCELLED"
    else:
        status = "CANCELLED" if meeting.status == MeetingStatus.CANCELLED else "CONFIRMED"
    parts = ical.ItipParts(
        sequence=notification.sequence,
        stamp=notification.created_at,
        sent_by=_system_address(),
        attendees=_attendee_lines(meeting, method, notification.recipient, removed),
        recurrence_id=recurrence_id,
        status=status,
    )
    ics = ical.itip_calendar(meeting, method=method, parts=parts)
    if recurrence_id is not None:
        start, end = _occurrence_span(meeting, recurrence_id)
    else:
        start, end = meeting.start, meeting.end
    organizer = meeting.organizer
    with translation.override(recipient.language):
        when = _when(start, end, recipient.timezone, meeting.all_day)
        repeats = ""
        if meeting.rrule and recurrence_id is None:
            repeats = Recurrence.parse(meeting.rrule).summary(recipient.timezone)
        context = {
            "kind": notification.kind,
            "method": method,
            "reason": reason,
            "meeting": meeting,
            "title": meeting.title,
            "description": meeting.description,
            "when": when,
            "repeats": repeats,
            "organizer_name": organizer.display_name or organizer.email,
            "organizer_email": organizer.email,
            "join_url": ical.join_url(meeting),
            "meeting_url": settings.SITE_URL + reverse("meeting_detail", kwargs={"pk": meeting.pk}),
            "internal": recipient.user is not None,
            "rsvp_links": _rsvp_links(recipient.attendee) if method == "REQUEST" else [],
        }
        subject = _subject(notification.kind, reason, meeting.title, when)
        text = render_to_string("meetings/email/itip_message.txt", context)
        html = render_to_string("meetings/email/itip_message.html", context)
    message = ItipEmail(
        method=method,
        ics=ics,
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.recipient],
        reply_to=[organizer.email],
        headers={"Message-ID": mail_message_id(notification)},
    )
    message.attach_alternative(html, "text/html")
    return message


def _mark_superseded(notification: Notification, newer: int) -> None:
    payload = {**(notification.payload or {}), "superseded_by": newer}
    # Only the payload: the outbox saves status and attempts on the same row afterwards.
    Notification.objects.filter(pk=notification.pk).update(payload=payload)
    notification.payload = payload
    logger.info("outbox: notification %s superseded by %s", notification.pk, newer)


@sender(MEETING_REQUEST)
@sender(MEETING_CANCEL)
@sender(OCCURRENCE_REQUEST)
@sender(OCCURRENCE_CANCEL)
def send_itip(notification: Notification) -> None:
    meeting = None
    if notification.meeting_id is not None:
        meeting = (
            Meeting.objects.select_related("organizer", "host_agency")
            .prefetch_related("attendees__user", "exceptions")
            .filter(pk=notification.meeting_id)
            .first()
        )
    if meeting is None:
        raise PermanentDeliveryError("the meeting no longer exists")
    newer = _superseded_by(notification, meeting)
    if newer is not None:
        _mark_superseded(notification, newer)
        return
    mail_send(build_itip_message(notification, meeting))


def build_failover_message(notification: Notification) -> EmailMultiAlternatives:
    """The organizer's notice that a room stays on a backend that is down (plain text)."""
    payload = notification.payload or {}
    meeting = notification.meeting
    user = User.objects.filter(email__iexact=notification.recipient).first()
    agency_language = meeting.host_agency.default_language if meeting is not None else ""
    language = (user.language if user else "") or agency_language or "en"
    zone = (user.timezone if user else "") or (meeting.timezone if meeting else "UTC")
    window = payload.get("window_start")
    with translation.override(language):
        when = ""
        if window:
            moment = datetime.fromisoformat(window).astimezone(ZoneInfo(zone))
            when = f"{dateformat.format(moment, 'l j F Y')}, {moment:%H:%M} ({zone})"
        context = {
            "title": payload.get("title") or "",
            "backend": payload.get("backend") or "",
            "reason": payload.get("message") or payload.get("reason") or "",
            "when": when,
            "meeting_url": (
                settings.SITE_URL + reverse("meeting_detail", kwargs={"pk": meeting.pk})
                if meeting is not None
                else ""
            ),
        }
        subject = _("The room of “%(title)s” could not be moved") % {"title": context["title"]}
        text = render_to_string("meetings/email/failover_message.txt", context)
    return EmailMultiAlternatives(
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.recipient],
        headers={"Message-ID": mail_message_id(notification)},
    )


@sender(FAILOVER_FAILED)
def send_failover_notice(notification: Notification) -> None:
    mail_send(build_failover_message(notification))
