"""RSVP links in invitations, and the organizer's batched notice of the answers received.

An RSVP link is a signed, single-purpose capability: one attendee, one answer, valid until a day
after the meeting (or the series) ends. It carries a fingerprint of the attendee's
``rsvp_secret``, so rotating the secret (or removing the attendee) kills every link issued.

Every answer, whatever its path (RSVP link, meeting page, API), appends to one outbox row per
organizer and batch window (``ORGANIZER_NOTICE_BATCH_SECONDS``); the row is relayed when its
window closes, so several answers within a minute reach the organizer as one email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone as djtz
from django.utils import translation
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from agencies.models import User
from meetings.models import Attendee, Meeting, PartStat
from visio_broker.models import Notification, NotificationStatus, notification_key
from visio_broker.outbox import (
    PermanentDeliveryError,
    mail_message_id,
    mail_send,
    relay_soon,
    sender,
)

SALT = "visio_broker.rsvp"
ANSWERS = (PartStat.ACCEPTED, PartStat.TENTATIVE, PartStat.DECLINED)
# Links of a series without end stay valid this long after they were issued.
ENDLESS_SERIES_VALIDITY = timedelta(days=400)
AFTER_END_VALIDITY = timedelta(days=1)
REPLIES_KIND = "organizer.replies"


# --- RSVP links ------------------------------------------------------------------------------


class RsvpLinkError(Exception):
    """The link cannot answer: ``expired`` is True when it was genuine but is too old."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


@dataclass(frozen=True)
class RsvpLink:
    attendee: Attendee
    partstat: str

    @property
    def meeting(self) -> Meeting:
        return self.attendee.meeting


def _fingerprint(secret: str) -> str:
    return salted_hmac(f"{SALT}.secret", secret).hexdigest()[:20]


def rsvp_expiry(meeting: Meeting, *, now: datetime | None = None) -> datetime:
    if meeting.rrule and meeting.series_end is None:
        return (now or djtz.now()) + ENDLESS_SERIES_VALIDITY
    return (meeting.series_end or meeting.end) + AFTER_END_VALIDITY


def rsvp_token(attendee: Attendee, partstat: str) -> str:
    if partstat not in ANSWERS:
        raise ValueError(f"not an RSVP answer: {partstat}")
    payload = {
        "a": attendee.pk,
        "p": str(partstat),
        "f": _fingerprint(attendee.rsvp_secret),
        "x": int(rsvp_expiry(attendee.meeting).timestamp()),
    }
    return signing.dumps(payload, salt=SALT)


def rsvp_url(attendee: Attendee, partstat: str) -> str:
    """The absolute link that answers ``partstat`` for ``attendee``, without signing in."""
    path = reverse("rsvp", kwargs={"token": rsvp_token(attendee, partstat)})
    return f"{settings.SITE_URL}{path}"


def rsvp_resolve(token: str, *, now: datetime | None = None) -> RsvpLink:
    """The attendee and answer a link stands for; raises RsvpLinkError when it does not hold."""
    invalid = RsvpLinkError(_("This answer link is not valid. Use the latest invitation."))
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise invalid from None
    if not isinstance(payload, dict):
        raise invalid
    attendee_id, partstat = payload.get("a"), payload.get("p")
    fingerprint, expires = payload.get("f"), payload.get("x")
    if (
        not isinstance(attendee_id, int)
        or partstat not in ANSWERS
        or not isinstance(fingerprint, str)
        or not isinstance(expires, int)
    ):
        raise invalid
    if datetime.fromtimestamp(expires, tz=UTC) <= (now or djtz.now()):
        raise RsvpLinkError(_("This answer link has expired: the meeting is over."), expired=True)
    attendee = (
        Attendee.objects.select_related("meeting", "meeting__organizer", "user")
        .filter(pk=attendee_id)
        .first()
    )
    # A removed attendee, or a rotated secret: the links issued before are dead.
    if attendee is None or not constant_time_compare(
        fingerprint, _fingerprint(attendee.rsvp_secret)
    ):
        raise invalid
    return RsvpLink(attendee=attendee, partstat=partstat)


# --- Organizer notices -----------------------------------------------------------------------


def _bucket_close(bucket: int, width: int) -> datetime:
    return datetime.fromtimestamp((bucket + 1) * width, tz=UTC)


def organizer_reply_notice_enqueue(attendee: Attendee) -> Notification | None:
    """Add ``attendee``'s answer to the organizer's pending notice of this batch window.

    Called inside the answering transaction (``attendee_respond``), after the save.
    """
    meeting = attendee.meeting
    organizer = meeting.organizer
    if attendee.user_id is not None and attendee.user_id == organizer.pk:
        return None
    width = settings.ORGANIZER_NOTICE_BATCH_SECONDS
    now = djtz.now()
    bucket = int(now.timestamp()) // width
    base = notification_key(kind=REPLIES_KIND, recipient=organizer.email, meeting_id=meeting.pk)
    late = 0
    while True:
        # A row already sent (an answer committed after its window's relay ran) is never
        # appended to: the answer opens a follow-up row of the same window.
        suffix = f"b{bucket}" if late == 0 else f"b{bucket}.{late}"
        Notification.objects.get_or_create(
            dedup_key=f"{base}:{suffix}"[:255],
            defaults={
                "kind": REPLIES_KIND,
                "recipient": organizer.email,
                "meeting": meeting,
                "payload": {"answers": []},
            },
        )
        # The row lock orders concurrent answers, and the relay (which locks it to send) never
        # sends a half-written summary.
        notification = Notification.objects.select_for_update().get(
            dedup_key=f"{base}:{suffix}"[:255]
        )
        if notification.status == NotificationStatus.PENDING:
            break
        late += 1
    answers: list[dict[str, Any]] = [
        answer
        for answer in notification.payload.get("answers", [])
        if answer.get("email", "").lower() != attendee.email.lower()
    ]
    answers.append(
        {
            "email": attendee.email,
            "name": attendee.display_name or (attendee.user.display_name if attendee.user else ""),
            "partstat": attendee.partstat,
            "at": now.isoformat(),
        }
    )
    notification.payload = {**notification.payload, "answers": answers}
    notification.save(update_fields=["payload"])
    # Every answer queues a relay for the window's close: if the relay of an earlier answer
    # found the row locked by this transaction, this one still sends it. Extra relays find the
    # row sent and do nothing.
    countdown = max(0, min(width, int((_bucket_close(bucket, width) - now).total_seconds()) + 1))
    notification_id = notification.pk
    transaction.on_commit(lambda: relay_soon(notification_id, countdown=countdown))
    return notification


def _recipient_settings(notification: Notification) -> tuple[str, str]:
    """The organizer's language and zone (the meeting's zone for an unknown address)."""
    meeting = notification.meeting
    user = User.objects.filter(email__iexact=notification.recipient).first()
    if user is not None:
        return user.language, user.timezone
    return settings.LANGUAGE_CODE, meeting.timezone if meeting else "UTC"


def _answer_label(partstat: str) -> str:
    labels: dict[str, str] = {
        PartStat.ACCEPTED: _("accepted"),
        PartStat.TENTATIVE: _("tentatively accepted"),
        PartStat.DECLINED: _("declined"),
    }
    return labels.get(partstat, _("has not answered"))


@sender(REPLIES_KIND)
def organizer_replies_send(notification: Notification) -> None:
    meeting = notification.meeting
    answers = notification.payload.get("answers", [])
    if meeting is None or not answers:
        raise PermanentDeliveryError("nothing to report")
    language, zone = _recipient_settings(notification)
    entries = [
        {
            "who": answer.get("name") or answer["email"],
            "email": answer["email"],
            "answer": "",
            "partstat": answer["partstat"],
            "at": datetime.fromisoformat(answer["at"]),
        }
        for answer in answers
    ]
    with translation.override(language), djtz.override(ZoneInfo(zone)):
        for entry in entries:
            entry["answer"] = _answer_label(entry["partstat"])
        if len(entries) == 1:
            subject = _("%(who)s %(answer)s: %(title)s") % {
                "who": entries[0]["who"],
                "answer": entries[0]["answer"],
                "title": meeting.title,
            }
        else:
            subject = ngettext(
                "%(count)d answer: %(title)s", "%(count)d answers: %(title)s", len(entries)
            ) % {"count": len(entries), "title": meeting.title}
        context = {
            "meeting": meeting,
            "entries": entries,
            "zone": zone,
            "meeting_url": f"{settings.SITE_URL}{reverse('meeting_detail', args=[meeting.pk])}",
            "language": language,
        }
        text = render_to_string("meetings/email/organizer_replies_message.txt", context)
        html = render_to_string("meetings/email/organizer_replies_message.html", context)
    message = EmailMultiAlternatives(
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
        body=text,
        to=[notification.recipient],
        headers={"Message-ID": mail_message_id(notification)},
    )
    message.attach_alternative(html, "text/html")
    mail_send(message)
