"""The meeting page's join section: ``{% load rooms_join %}{% join_panel meeting occurrence %}``."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.urls import reverse

from meetings.models import AccessLevel, Meeting
from meetings.selectors import Occurrence
from rooms import selectors
from rooms.providers import JoinRole

register = template.Library()


@register.inclusion_tag("rooms/join_panel.html", takes_context=True)
def join_panel(
    context: template.Context, meeting: Meeting, occurrence: Occurrence | None = None
) -> dict[str, Any]:
    """Join button when the room is open, its opening time before; moderators get the lobby."""
    request = context["request"]
    access = selectors.join_access(meeting=meeting, user=request.user)
    window = selectors.join_window(
        meeting=meeting, recurrence_id=occurrence.recurrence_id if occurrence else None
    )
    try:
        reservation = meeting.reservation
    except ObjectDoesNotExist:
        reservation = None
    moderator = access is not None and access.role == JoinRole.MODERATOR
    with_lobby = meeting.lobby_enabled and meeting.access_level != AccessLevel.INVITE
    win_occurrence = window.occurrence
    if win_occurrence is not None and win_occurrence.recurrence_id is not None:
        join_path = reverse("occurrence_join", args=[meeting.pk, win_occurrence.key])
    else:
        join_path = reverse("meeting_join", args=[meeting.pk])
    return {
        "meeting": meeting,
        "access": access,
        "window": window,
        "has_room": reservation is not None and reservation.released_at is None,
        "moderator": moderator,
        "join_path": join_path,
        "share_url": settings.SITE_URL + reverse("meeting_join", args=[meeting.pk]),
        "queue": (
            selectors.lobby_queue(meeting=meeting, occurrence_key=window.key)
            if moderator and with_lobby and window.is_open
            else None
        ),
        "key": window.key,
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }
