"""Delta sync (``GET /api/v1/changes/``): each agency's meeting changes, numbered in commit order.

Why commit order, and how. Auto-increment ids are handed out at insert, not at commit: a reader
could see change 11 committed while 10 is still in flight, move its cursor past 10 and never see
it. So every change takes its number from a per-agency counter row
(``INSERT … ON CONFLICT DO UPDATE SET value = value + 1 RETURNING value``) inside the writing
transaction, and the row lock that statement takes is held until that transaction ends. A writer
that needs the next number of the same agency waits for that lock, so when it gets number n + 1,
the transaction holding n has already committed (or rolled back, giving n back: numbers have no
gaps). Hence any reader's snapshot that shows change n + 1 also shows every change before it: a
page read in ``seq`` order is always a complete prefix and the cursor can never pass a change
that commits later. On SQLite (embedded mode) writers are serialized anyway and the same code
holds.

The lock is per agency and is taken by ``change_record``, which the services call at the end of
their transaction (meetings.events), so it is held from there to the commit, not through room
allocation. Agencies never wait on each other. It must stay that way: a service that locked other
rows after ``meeting_event`` could deadlock with a writer that holds them and waits for this
counter (PostgreSQL would abort one of the two, not lose a change).

Retention: ``changes_purge`` deletes entries older than ``CHANGES_RETENTION_DAYS``, always a
prefix of an agency's numbers, and records how far in ``ChangeCounter.purged_through``; a cursor
below that answers 410 Gone and the client resyncs in full.

Cursors are opaque: base64url of a signed ``v1:<agency>:<seq>[:<after meeting id>]``, the last
part present while a full listing is under way. A tampered, foreign or unknown cursor is 410 too.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from meetings.models import ChangeCounter, ChangeType, Meeting, MeetingChange, MeetingStatus
from meetings.selectors import meetings_visible_to_agency
from visio_broker.errors import DomainError

if TYPE_CHECKING:
    from agencies.models import Agency
    from meetings.events import MeetingEvent

_CURSOR_SALT = "meetings.changes.cursor"
_CURSOR_VERSION = "v1"
_CURSOR_MAX_LENGTH = 300

_TYPES = {
    "meeting.created": ChangeType.CREATED,
    "meeting.updated": ChangeType.UPDATED,
    "meeting.cancelled": ChangeType.CANCELLED,
    # Answers change what the meeting's representation shows (the attendees' status).
    "attendee.responded": ChangeType.UPDATED,
}


class CursorGone(DomainError):
    """The cursor cannot be served (expired, tampered, foreign): sync again from scratch."""

    code = "cursor_invalid"
    status = 410


# --- Writing ---------------------------------------------------------------------------------


def _next_seq(agency_id: int) -> int:
    table = connection.ops.quote_name(ChangeCounter._meta.db_table)
    # Same statement on PostgreSQL and SQLite (3.35+). The row lock it takes on the agency's
    # counter lasts until the caller's transaction ends: that is what orders numbers by commit.
    # Only the table name (from _meta) is formatted in; the agency is a bound parameter.
    sql = (
        f"INSERT INTO {table} (agency_id, value, purged_through) VALUES (%s, 1, 0) "  # noqa: S608
        f"ON CONFLICT (agency_id) DO UPDATE SET value = {table}.value + 1 RETURNING value"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [agency_id])
        row = cursor.fetchone()
    if row is None:  # cannot happen: the upsert always returns its row
        raise RuntimeError("the change counter upsert returned nothing")
    return int(row[0])


def change_record(*, meeting: Meeting, event: MeetingEvent) -> None:
    """Append a delta-sync entry for ``meeting``; call it last in the writing transaction."""
    # Number and entry must commit together, or a reader could pass a number not written yet.
    with transaction.atomic(savepoint=False):
        MeetingChange.objects.create(
            agency_id=meeting.host_agency_id,
            seq=_next_seq(meeting.host_agency_id),
            meeting_id=meeting.pk,
            type=_TYPES[str(event)],
            changed_at=timezone.now(),
        )


def changes_purge(*, now: datetime | None = None) -> int:
    """Delete entries older than CHANGES_RETENTION_DAYS; returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.CHANGES_RETENTION_DAYS)
    bounds = (
        MeetingChange.objects.filter(changed_at__lt=cutoff)
        .values("agency_id")
        .annotate(through=Max("seq"))
        .order_by()
        .values_list("agency_id", "through")
    )
    deleted = 0
    for agency_id, through in bounds:
        with transaction.atomic():
            # A prefix of the agency's numbers (a few newer entries may go with it), so that
            # purged_through says exactly which cursors can still be served.
            count, _rows = MeetingChange.objects.filter(
                agency_id=agency_id, seq__lte=through
            ).delete()
            # Last: writers of this agency wait on the counter row only for the commit.
            ChangeCounter.objects.filter(agency_id=agency_id, purged_through__lt=through).update(
                purged_through=through
            )
        deleted += count
    return deleted


# --- Cursors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    agency_id: int
    # Every change up to this number was delivered (during a full listing: will have been, once
    # the listing ends; it is the head taken before the listing started).
    seq: int
    # A full listing is under way: meetings with a larger id remain to be listed.
    after_meeting: int | None = None

    def encode(self) -> str:
        body = f"{_CURSOR_VERSION}:{self.agency_id}:{self.seq}"
        if self.after_meeting is not None:
            body += f":{self.after_meeting}"
        signed = signing.Signer(salt=_CURSOR_SALT).sign(body)
        return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")


def _invalid() -> CursorGone:
    return CursorGone(
        _("This sync cursor is not valid; sync again from scratch without a cursor."),
        code="cursor_invalid",
    )


def cursor_decode(raw: str, *, agency: Agency) -> Cursor:
    """The cursor the client sent; CursorGone when it was not made for this agency by us."""
    if len(raw) > _CURSOR_MAX_LENGTH:
        raise _invalid()
    try:
        signed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        body = signing.Signer(salt=_CURSOR_SALT).unsign(signed)
        version, *numbers = body.split(":")
        values = [int(number) for number in numbers]
    except (ValueError, signing.BadSignature):  # bad base64 or ASCII are ValueErrors too
        raise _invalid() from None
    if version != _CURSOR_VERSION or len(values) not in (2, 3) or values[0] != agency.pk:
        raise _invalid()
    return Cursor(agency.pk, values[1], values[2] if len(values) == 3 else None)


# --- Reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeEntry:
    seq: int | None  # None for entries of a full listing
    type: str
    meeting_id: int
    changed_at: datetime
    meeting: Meeting | None  # its current state; None if it no longer exists


@dataclass(frozen=True)
class ChangesPage:
    entries: list[ChangeEntry]
    next_cursor: str
    has_more: bool


def _counter(agency: Agency) -> tuple[int, int]:
    """(head: the last number handed out, purged_through) of the agency."""
    row = ChangeCounter.objects.filter(agency=agency).values_list("value", "purged_through")
    return row.first() or (0, 0)


def _check_position(seq: int, *, head: int, purged_through: int) -> None:
    if seq > head:  # from another database, or from before a restore
        raise _invalid()
    if seq < purged_through:
        raise CursorGone(
            _("This sync cursor has expired; sync again from scratch without a cursor."),
            code="cursor_expired",
        )


def changes_page(
    *,
    agency: Agency,
    cursor: str | None,
    limit: int,
    meetings: QuerySet[Meeting] | None = None,
) -> ChangesPage:
    """One page of the agency's delta sync after ``cursor``, in commit order.

    Without a cursor, a full listing of the agency's meetings (cancelled ones included) as
    ``created`` / ``cancelled`` entries starts, paged by meeting id; its last page's cursor
    continues with the changes made since the listing began. ``meetings`` is the queryset
    the representations are read from (the agency's meetings, prepared for rendering); each
    entry carries its meeting's current state, so several entries of one meeting show the same.
    """
    if meetings is None:
        meetings = meetings_visible_to_agency(agency=agency)
    position = cursor_decode(cursor, agency=agency) if cursor else None
    if position is None or position.after_meeting is not None:
        return _full_listing_page(agency=agency, position=position, limit=limit, meetings=meetings)

    rows = list(
        MeetingChange.objects.filter(agency=agency, seq__gt=position.seq).order_by("seq")[
            : limit + 1
        ]
    )
    # After the rows, not before: if a purge removed entries this cursor still needs, it
    # committed before the rows were read, so this later read sees its purged_through.
    head, purged_through = _counter(agency)
    _check_position(position.seq, head=head, purged_through=purged_through)
    has_more = len(rows) > limit
    rows = rows[:limit]
    by_id = {m.pk: m for m in meetings.filter(pk__in={row.meeting_id for row in rows})}
    entries = [
        ChangeEntry(row.seq, row.type, row.meeting_id, row.changed_at, by_id.get(row.meeting_id))
        for row in rows
    ]
    last = rows[-1].seq if rows else position.seq
    return ChangesPage(entries, Cursor(agency.pk, last).encode(), has_more)


def _full_listing_page(
    *, agency: Agency, position: Cursor | None, limit: int, meetings: QuerySet[Meeting]
) -> ChangesPage:
    # The head is read before the meetings: whatever commits after it comes again as a change.
    head, purged_through = _counter(agency)
    if position is None:
        position = Cursor(agency.pk, head, 0)
    _check_position(position.seq, head=head, purged_through=purged_through)
    page = list(meetings.filter(pk__gt=position.after_meeting).order_by("pk")[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    entries = [
        ChangeEntry(
            None,
            ChangeType.CANCELLED if m.status == MeetingStatus.CANCELLED else ChangeType.CREATED,
            m.pk,
            m.updated_at,
            m,
        )
        for m in page
    ]
    after = page[-1].pk if has_more else None
    return ChangesPage(entries, Cursor(agency.pk, position.seq, after).encode(), has_more)
