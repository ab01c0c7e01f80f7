"""What agencies' own systems hear about a change: a delta-sync entry and webhooks.

Every meetings service that changes what an API client sees calls ``meeting_event`` inside
its transaction, after the write, so the entry commits (or rolls back) with the change.
"""

from __future__ import annotations

from enum import StrEnum

from meetings.models import Attendee, Meeting


class MeetingEvent(StrEnum):
    CREATED = "meeting.created"
    UPDATED = "meeting.updated"
    CANCELLED = "meeting.cancelled"
    ATTENDEE_RESPONDED = "attendee.responded"


def meeting_event(
    meeting: Meeting, event: MeetingEvent, *, attendee: Attendee | None = None
) -> None:
    from agencies.webhooks import webhooks_emit
    from meetings.changes import change_record

    change_record(meeting=meeting, event=event)
    webhooks_emit(agency=meeting.host_agency, event=event, meeting=meeting, attendee=attendee)
