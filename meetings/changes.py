"""Delta sync for the REST API (``changes/``): to be built."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meetings.events import MeetingEvent
    from meetings.models import Meeting


def change_record(*, meeting: Meeting, event: MeetingEvent) -> None:
    return None
