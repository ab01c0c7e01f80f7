"""Reminders: a periodic planner materialises them, a periodic sender claims and sends them.

- ``reminders_plan`` (beat, every minute) reconciles ``Reminder`` rows with the occurrences that
  start within ``REMINDER_HORIZON_HOURS``: missing rows are created, a moved occurrence moves its
  planned rows, and rows whose occurrence, meeting or attendee is gone (cancelled, declined) are
  cancelled. Running it twice changes nothing.
- ``reminders_claim`` (beat, every 30 seconds) locks due rows in batches, checks the occurrence
  again, and turns each into an outbox ``Notification`` in the same transaction (status ``sent``),
  or records it ``dropped`` when the occurrence has already started (missed during an outage).
- ``reminders_deliver`` sends a batch of those notifications over one SMTP connection, in chunks
  whose rows are locked in one statement and marked sent in one UPDATE after their messages were
  accepted (see its docstring); the outbox sweeper covers a batch task that never ran or crashed.

No Celery ETA is involved: a reminder is a row with a due time (DESIGN, flow 5).
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import formats, translation
from django.utils import timezone as djtz
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from meetings.ical import join_url
from meetings.models import (
    Attendee,
    Meeting,
    MeetingStatus,
    PartStat,
    Reminder,
    ReminderStatus,
)
from meetings.recurrence import expand
from meetings.selectors import meeting_occurrences, overlapping, with_details
from visio_broker.models import Notification, NotificationStatus, notification_key
from visio_broker.outbox import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    mail_message_id,
    mail_send,
    relay_soon,
    sender,
)

logger = logging.getLogger(__name__)

KIND = "reminder"
# Offsets of people outside this instance: they have no profile to choose from.
EXTERNAL_REMINDER_MINUTES = (15,)
KEY_FORMAT = "%Y%m%dT%H%M%SZ"
CLAIM_BATCH = 500
DELIVER_BATCH = 100
# Rows per database transaction within a batch: what a crash mid-batch can send twice.
DELIVER_CHUNK = 20
# One sender run claims at most this many batches; the next run (30 s later) takes the rest.
CLAIM_BATCHES_PER_RUN = 100
PLAN_CHUNK = 200


def _recurrence_id(key: str) -> datetime:
    return datetime.strptime(key, KEY_FORMAT).replace(tzinfo=UTC)


def attendee_offsets(meeting: Meeting, attendee: Attendee) -> set[int]:
    """Minutes before each start: the attendee's own choice plus the meeting's reminder."""
    chosen = attendee.user.reminder_minutes if attendee.user else EXTERNAL_REMINDER_MINUTES
    offsets = {minutes for minutes in chosen or () if isinstance(minutes, int) and minutes > 0}
    if meeting.reminder_minutes:
        offsets.add(meeting.reminder_minutes)
    return offsets


# --- Planner ------------------------------------------------------------------------------------


@dataclass
class PlanResult:
    created: int = 0
    rescheduled: int = 0
    revived: int = 0
    cancelled: int = 0


Identity = tuple[int, str, int, int]  # meeting, occurrence key, attendee, offset


def _desired(meeting: Meeting, now: datetime, until: datetime) -> dict[Identity, datetime]:
    """Identity → occurrence start, for every reminder the meeting should have in the window."""
    wanted: dict[Identity, datetime] = {}
    attendees = [a for a in meeting.attendees.all() if a.partstat != PartStat.DECLINED]
    for occurrence in meeting_occurrences(meeting, now, until):
        if occurrence.cancelled or occurrence.start < now or occurrence.start >= until:
            continue
        for attendee in attendees:
            for offset in attendee_offsets(meeting, attendee):
                wanted[(meeting.pk, occurrence.key, attendee.pk, offset)] = occurrence.start
    return wanted


def reminders_plan(*, now: datetime | None = None) -> PlanResult:
    """Bring the reminder rows of the coming ``REMINDER_HORIZON_HOURS`` in line; idempotent."""
    now = now or djtz.now()
    until = now + timedelta(hours=settings.REMINDER_HORIZON_HOURS)
    result = PlanResult()
    in_window = overlapping(Meeting.objects.filter(status=MeetingStatus.SCHEDULED), now, until)
    ids = list(in_window.order_by("pk").values_list("pk", flat=True))
    for first in range(0, len(ids), PLAN_CHUNK):
        chunk = ids[first : first + PLAN_CHUNK]
        meetings = with_details(Meeting.objects.filter(pk__in=chunk))
        wanted: dict[Identity, datetime] = {}
        for meeting in meetings:
            wanted.update(_desired(meeting, now, until))
        _reconcile(chunk, wanted, now, result)
    # Planned rows of meetings that left the window altogether (cancelled, moved far away).
    result.cancelled += (
        Reminder.objects.filter(status=ReminderStatus.PLANNED, occurrence_start__gte=now)
        .exclude(meeting__in=in_window.values("pk"))
        .update(status=ReminderStatus.CANCELLED, updated_at=now)
    )
    return result


def _reconcile(
    meeting_ids: Sequence[int], wanted: dict[Identity, datetime], now: datetime, result: PlanResult
) -> None:
    keys = {identity[1] for identity in wanted}
    existing = Reminder.objects.filter(
        meeting_id__in=meeting_ids,
        status__in=(ReminderStatus.PLANNED, ReminderStatus.CANCELLED),
    ).filter(Q(occurrence_start__gte=now) | Q(occurrence_key__in=keys))
    to_cancel: list[int] = []
    done: set[Identity] = set()
    for row in existing.only(
        "pk", "meeting_id", "occurrence_key", "attendee_id", "offset_minutes", "status"
    ).iterator():
        identity = (row.meeting_id, row.occurrence_key, row.attendee_id, row.offset_minutes)
        start = wanted.get(identity)
        if start is None:
            if row.status == ReminderStatus.PLANNED:
                to_cancel.append(row.pk)
            continue
        done.add(identity)
        due = start - timedelta(minutes=row.offset_minutes)
        # Conditional updates: a row the sender claimed meanwhile keeps the sender's status.
        if row.status == ReminderStatus.PLANNED:
            result.rescheduled += (
                Reminder.objects.filter(pk=row.pk, status=ReminderStatus.PLANNED)
                .exclude(occurrence_start=start, due_at=due)
                .update(occurrence_start=start, due_at=due, updated_at=now)
            )
        else:
            # Cancelled earlier (a decline since withdrawn, an occurrence moved back in).
            result.revived += Reminder.objects.filter(
                pk=row.pk, status=ReminderStatus.CANCELLED
            ).update(
                status=ReminderStatus.PLANNED,
                occurrence_start=start,
                due_at=due,
                claimed_at=None,
                updated_at=now,
            )
    if to_cancel:
        result.cancelled += Reminder.objects.filter(
            pk__in=to_cancel, status=ReminderStatus.PLANNED
        ).update(status=ReminderStatus.CANCELLED, updated_at=now)
    new_rows = [
        Reminder(
            meeting_id=meeting_id,
            occurrence_key=key,
            attendee_id=attendee_id,
            offset_minutes=offset,
            occurrence_start=start,
            due_at=start - timedelta(minutes=offset),
        )
        for (meeting_id, key, attendee_id, offset), start in wanted.items()
        if (meeting_id, key, attendee_id, offset) not in done
    ]
    if new_rows:
        # A planner running concurrently may have created some: the unique constraint decides.
        created = Reminder.objects.bulk_create(new_rows, ignore_conflicts=True, batch_size=1000)
        result.created += len(created)


# --- Sender: claim ------------------------------------------------------------------------------


class _Occurrences:
    """The current start of an occurrence by its key, or None when it is gone or cancelled."""

    def __init__(self, meetings: dict[int, Meeting]) -> None:
        self.meetings = meetings
        self.cache: dict[tuple[int, str], datetime | None] = {}

    def start(self, meeting_id: int, key: str) -> datetime | None:
        if (meeting_id, key) not in self.cache:
            self.cache[(meeting_id, key)] = self._compute(self.meetings[meeting_id], key)
        return self.cache[(meeting_id, key)]

    @staticmethod
    def _compute(meeting: Meeting, key: str) -> datetime | None:
        if meeting.status != MeetingStatus.SCHEDULED:
            return None
        original = _recurrence_id(key)
        if not meeting.rrule:
            # A one-off meeting whose time changed has a new key: the planner plans anew.
            return meeting.start if f"{meeting.start:{KEY_FORMAT}}" == key else None
        exception = next((e for e in meeting.exceptions.all() if e.recurrence_id == original), None)
        if exception is not None:
            return None if exception.cancelled else exception.start
        starts = expand(
            rrule=meeting.rrule,
            start=meeting.start,
            timezone=meeting.timezone,
            window_start=original,
            window_end=original + timedelta(seconds=1),
        )
        return original if original in set(starts) else None


@dataclass
class ClaimResult:
    notification_ids: list[int]
    dropped: int = 0
    cancelled: int = 0
    rescheduled: int = 0

    @property
    def claimed(self) -> int:
        return len(self.notification_ids) + self.dropped + self.cancelled + self.rescheduled


def reminders_claim(*, now: datetime | None = None, limit: int = CLAIM_BATCH) -> ClaimResult:
    """Claim up to ``limit`` due reminders and queue their emails in the outbox, atomically.

    Rows are locked with SKIP LOCKED, so concurrent senders take disjoint batches; the outbox
    rows are written in the transaction that marks the reminders sent, so each is queued once.
    """
    now = now or djtz.now()
    result = ClaimResult(notification_ids=[])
    with transaction.atomic():
        rows = list(
            Reminder.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=ReminderStatus.PLANNED, due_at__lte=now)
            .select_related("attendee")
            .order_by("due_at")[:limit]
        )
        if not rows:
            return result
        # The rows stay locked until the commit: ``_save_claimed`` below is the claim itself.
        meetings = Meeting.objects.prefetch_related("exceptions").in_bulk(
            {row.meeting_id for row in rows}
        )
        occurrences = _Occurrences(meetings)
        outbox: list[tuple[Reminder, Notification]] = []
        for row in rows:
            row.claimed_at = row.updated_at = now
            meeting = meetings[row.meeting_id]
            start = occurrences.start(row.meeting_id, row.occurrence_key)
            if start is None or row.attendee.partstat == PartStat.DECLINED:
                row.status = ReminderStatus.CANCELLED
                result.cancelled += 1
            elif start <= now:
                # Missed (beat or workers down): a reminder after the start helps nobody.
                row.status = ReminderStatus.DROPPED
                result.dropped += 1
            elif start != row.occurrence_start:
                # Moved since the planner last ran: follow it, and send when due again.
                row.occurrence_start = start
                row.due_at = start - timedelta(minutes=row.offset_minutes)
                if row.due_at > now:
                    row.claimed_at = None
                    result.rescheduled += 1
                else:
                    outbox.append((row, _notification(row, meeting)))
            else:
                outbox.append((row, _notification(row, meeting)))
        created = Notification.objects.bulk_create([n for _row, n in outbox])
        for (row, _n), notification in zip(outbox, created, strict=True):
            row.notification = notification
            row.status = ReminderStatus.SENT
            row.sent_at = now
        _save_claimed(rows)
        result.notification_ids = [n.pk for n in created]
        ids = list(result.notification_ids)
        transaction.on_commit(lambda: deliver_soon(ids))
    return result


# One UPDATE for a whole claim (table ``Reminder._meta.db_table``), from arrays: ``bulk_update``
# builds a CASE of 500 branches per column, which cost the sender most of its time.
_SAVE_CLAIMED_SQL = """
    UPDATE meetings_reminder AS r
    SET status = v.status, occurrence_start = v.occurrence_start, due_at = v.due_at,
        claimed_at = v.claimed_at, sent_at = v.sent_at, notification_id = v.notification_id,
        updated_at = v.updated_at
    FROM unnest(
        %s::bigint[], %s::varchar[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[],
        %s::timestamptz[], %s::bigint[], %s::timestamptz[]
    ) AS v(id, status, occurrence_start, due_at, claimed_at, sent_at, notification_id, updated_at)
    WHERE r.id = v.id
"""


def _save_claimed(rows: Sequence[Reminder]) -> None:
    """Write the claim's outcome for every row (status, times, outbox row) in one statement."""
    with db_connection.cursor() as cursor:
        cursor.execute(
            _SAVE_CLAIMED_SQL,
            [
                [row.pk for row in rows],
                [str(row.status) for row in rows],
                [row.occurrence_start for row in rows],
                [row.due_at for row in rows],
                [row.claimed_at for row in rows],
                [row.sent_at for row in rows],
                [row.notification_id for row in rows],
                [row.updated_at for row in rows],
            ],
        )


def _notification(row: Reminder, meeting: Meeting) -> Notification:
    """The outbox row of one reminder, keyed like ``notification_enqueue`` plus the reminder."""
    recurrence_id = _recurrence_id(row.occurrence_key) if meeting.rrule else None
    key = notification_key(
        kind=KIND,
        recipient=row.attendee.email,
        meeting_id=meeting.pk,
        recurrence_id=row.occurrence_key if meeting.rrule else "",
        sequence=0,
    )
    return Notification(
        kind=KIND,
        recipient=row.attendee.email,
        meeting=meeting,
        recurrence_id=recurrence_id,
        dedup_key=f"{key}:{row.offset_minutes}m:{row.pk}"[:255],
        payload={"reminder_id": row.pk},
    )


def deliver_soon(notification_ids: Sequence[int]) -> None:
    """Queue delivery in batches; if the broker is down, the outbox sweeper sends them later.

    The outbox rows were written without ``notification_enqueue``'s per-row relay on purpose:
    one task per batch sends over one SMTP connection.
    """
    from meetings.tasks import reminders_deliver_task

    for first in range(0, len(notification_ids), DELIVER_BATCH):
        batch = list(notification_ids[first : first + DELIVER_BATCH])
        try:
            reminders_deliver_task.apply_async(args=(batch,), retry=False)
        except Exception:  # kombu raises transport-specific errors; the sweeper covers them all
            logger.warning("reminders: broker unreachable, %d left to the sweeper", len(batch))


def reminders_send(*, now: datetime | None = None) -> ClaimResult:
    """Claim every due reminder, batch after batch (bounded per run)."""
    total = ClaimResult(notification_ids=[])
    for _batch in range(CLAIM_BATCHES_PER_RUN):
        found = reminders_claim(now=now)
        total.notification_ids += found.notification_ids
        total.dropped += found.dropped
        total.cancelled += found.cancelled
        total.rescheduled += found.rescheduled
        if found.claimed < CLAIM_BATCH:
            break
    return total


# --- Sender: deliver ----------------------------------------------------------------------------

_connection: ContextVar[BaseEmailBackend | None] = ContextVar("reminder_connection", default=None)


@contextmanager
def _shared_connection(connection: BaseEmailBackend) -> Iterator[None]:
    token = _connection.set(connection)
    try:
        yield
    finally:
        _connection.reset(token)


def reminders_deliver(*, notification_ids: Sequence[int]) -> dict[str, int]:
    """Send a batch of reminder emails over one SMTP connection, each row at most once.

    The batch goes in chunks of ``DELIVER_CHUNK`` rows, one database transaction each: one
    statement locks the chunk's pending rows (``SKIP LOCKED``: a row that a relay task or another
    batch holds is skipped, as ``notification_deliver`` does), each message then goes in its own
    SMTP transaction, and one UPDATE marks the rows SMTP accepted as sent just before the commit.
    Each message is still marked sent only after its own SMTP acceptance and never before; a
    crash mid-chunk rolls the chunk's marks back, so its rows stay pending for the outbox sweeper
    and at most ``DELIVER_CHUNK`` already accepted ones go again, with the same Message-ID.
    Messages are rendered once per (meeting, occurrence, offset, language, zone) in a batch.

    A temporary failure hands the rest of the batch to the outbox relay, one task per row, which
    retries with backoff.
    """
    outcomes: dict[str, int] = {}
    remaining = list(notification_ids)
    connection = get_connection()
    try:
        connection.open()
    except (smtplib.SMTPException, OSError):
        logger.warning("reminders: SMTP unreachable, %d handed to the relay", len(remaining))
        for notification_id in remaining:
            relay_soon(notification_id, countdown=30)
        return {"relayed": len(remaining)}
    rendered: dict[tuple[object, ...], _Rendered] = {}
    try:
        with _shared_connection(connection):
            while remaining:
                chunk, remaining = remaining[:DELIVER_CHUNK], remaining[DELIVER_CHUNK:]
                unsent = _deliver_chunk(chunk, rendered, outcomes)
                if unsent:
                    for notification_id in [*unsent, *remaining]:
                        relay_soon(notification_id, countdown=30)
                    outcomes["relayed"] = len(unsent) + len(remaining)
                    break
    finally:
        connection.close()
    return outcomes


def _deliver_chunk(
    ids: list[int], rendered: dict[tuple[object, ...], _Rendered], outcomes: dict[str, int]
) -> list[int]:
    """Send the pending rows among ``ids`` (see ``reminders_deliver``); returns the ids left
    for the relay after a temporary failure, the failing one first (empty otherwise)."""
    position = {notification_id: n for n, notification_id in enumerate(ids)}
    unsent: list[int] = []
    sent: list[int] = []
    with transaction.atomic():
        notifications = sorted(
            Notification.objects.select_for_update(skip_locked=True).filter(
                pk__in=ids, kind=KIND, status=NotificationStatus.PENDING
            ),
            key=lambda notification: position[notification.pk],
        )
        skipped = len(ids) - len(notifications)
        if skipped:
            outcomes["skipped"] = outcomes.get("skipped", 0) + skipped
        reminders = Reminder.objects.select_related(
            "meeting__host_agency", "attendee__user"
        ).in_bulk([n.payload.get("reminder_id") for n in notifications])
        for index, notification in enumerate(notifications):
            try:
                reminder = _sendable(reminders.get(notification.payload.get("reminder_id")))
                mail_send(reminder_message(reminder, notification, rendered=rendered))
            except TemporaryDeliveryError as exc:
                Notification.objects.filter(pk=notification.pk).update(
                    attempts=F("attempts") + 1, last_error=str(exc)[:2000]
                )
                unsent = [n.pk for n in notifications[index:]]
                break
            except PermanentDeliveryError as exc:
                Notification.objects.filter(pk=notification.pk).update(
                    attempts=F("attempts") + 1,
                    status=NotificationStatus.FAILED,
                    last_error=str(exc)[:2000],
                )
                outcomes["failed"] = outcomes.get("failed", 0) + 1
            else:
                sent.append(notification.pk)
        if sent:
            # One UPDATE for the chunk, after each of its messages was accepted by SMTP.
            Notification.objects.filter(pk__in=sent).update(
                attempts=F("attempts") + 1,
                status=NotificationStatus.SENT,
                sent_at=djtz.now(),
                last_error="",
            )
            outcomes["sent"] = outcomes.get("sent", 0) + len(sent)
    return unsent


def reminder_message_id(notification: Notification) -> str:
    return mail_message_id(notification, prefix="reminder.")


def recipient_settings(reminder: Reminder) -> tuple[str, str]:
    """Language and zone of the recipient; the host agency's language for outside people."""
    meeting, user = reminder.meeting, reminder.attendee.user
    language = (user.language if user else "") or meeting.host_agency.default_language
    zone = (user.timezone if user else "") or meeting.timezone
    return language or settings.LANGUAGE_CODE, zone


def _ahead(minutes: int) -> str:
    if minutes % 1440 == 0:
        days = minutes // 1440
        return ngettext("in %(n)d day", "in %(n)d days", days) % {"n": days}
    if minutes % 60 == 0:
        hours = minutes // 60
        return ngettext("in %(n)d hour", "in %(n)d hours", hours) % {"n": hours}
    return ngettext("in %(n)d minute", "in %(n)d minutes", minutes) % {"n": minutes}


@dataclass(frozen=True)
class _Rendered:
    subject: str
    text: str
    html: str


def _render(reminder: Reminder) -> _Rendered:
    """What a reminder says: the same for every recipient sharing its language and zone."""
    meeting = reminder.meeting
    language, zone = recipient_settings(reminder)
    local = reminder.occurrence_start.astimezone(ZoneInfo(zone))
    with translation.override(language):
        when = _("%(date)s at %(time)s") % {
            "date": formats.date_format(local, "l j F Y"),
            "time": formats.time_format(local, "H:i"),
        }
        context = {
            "meeting": meeting,
            "when": when,
            "zone": zone,
            "ahead": _ahead(reminder.offset_minutes),
            "join_url": join_url(meeting),
            "language": language,
        }
        subject = _("Reminder: %(title)s, %(when)s (%(zone)s)") % {
            "title": meeting.title,
            "when": when,
            "zone": zone,
        }
        text = render_to_string("meetings/email/reminder_message.txt", context)
        html = render_to_string("meetings/email/reminder_message.html", context)
    return _Rendered(subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}", text=text, html=html)


def reminder_message(
    reminder: Reminder,
    notification: Notification,
    *,
    rendered: dict[tuple[object, ...], _Rendered] | None = None,
) -> EmailMultiAlternatives:
    """The email of one reminder; ``rendered`` caches the rendering across a batch."""
    key = (
        reminder.meeting_id,
        reminder.occurrence_start,
        reminder.offset_minutes,
        *recipient_settings(reminder),
    )
    cached = None if rendered is None else rendered.get(key)
    content = cached or _render(reminder)
    if rendered is not None and cached is None:
        rendered[key] = content
    message = EmailMultiAlternatives(
        subject=content.subject,
        body=content.text,
        to=[notification.recipient],
        headers={"Message-ID": reminder_message_id(notification)},
        connection=_connection.get(),
    )
    message.attach_alternative(content.html, "text/html")
    return message


def _sendable(reminder: Reminder | None) -> Reminder:
    """The reminder, unless it is gone or could only arrive after the start (then dropped)."""
    if reminder is None:
        raise PermanentDeliveryError("the reminder no longer exists")
    if reminder.occurrence_start <= djtz.now():
        # Retried past the start (SMTP down for long): the reminder is of no use any more.
        Reminder.objects.filter(pk=reminder.pk).update(
            status=ReminderStatus.DROPPED, updated_at=djtz.now()
        )
        raise PermanentDeliveryError("the occurrence started before the reminder could go")
    return reminder


@sender(KIND)
def reminder_send(notification: Notification) -> None:
    """Render and send one reminder; one that could only arrive after the start is dropped."""
    reminder = (
        Reminder.objects.select_related("meeting__host_agency", "attendee__user")
        .filter(pk=notification.payload.get("reminder_id"))
        .first()
    )
    mail_send(reminder_message(_sendable(reminder), notification))
