"""Template helpers for the attendance section of the meeting page."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils.translation import gettext as _

from meetings.models import Meeting
from rooms import selectors

register = template.Library()


@register.simple_tag
def meeting_attendance(meeting: Meeting) -> selectors.MeetingAttendance:
    """``{% meeting_attendance meeting as attendance %}``: occupancy and latest sessions."""
    return selectors.meeting_attendance(meeting=meeting)


@register.filter
def session_length(duration: timedelta | None) -> str:
    """A session's length for people: "42 min", "1 h 05 min"."""
    if duration is None:
        return ""
    minutes = int(duration.total_seconds()) // 60
    if minutes < 60:
        return _("%(minutes)d min") % {"minutes": minutes}
    return _("%(hours)d h %(minutes)02d min") % {"hours": minutes // 60, "minutes": minutes % 60}
