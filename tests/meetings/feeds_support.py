"""Helpers shared by the calendar feed tests (tests/meetings/test_feeds_*.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
from django.test import Client
from django.urls import reverse

from agencies.models import User
from meetings import feeds
from meetings.models import FeedToken, Meeting
from meetings.services import AttendeeSpec, meeting_schedule

PARIS = ZoneInfo("Europe/Paris")
# Monday 2 March 2026, 09:00 in Paris.
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def feed_path(feed: FeedToken) -> str:
    return reverse("feed", kwargs={"token": feeds.token_of(feed)})


def fetch(feed: FeedToken, client: Client | None = None, **headers: str):
    return (client or Client()).get(feed_path(feed), headers=headers)


def book(
    organizer: User,
    title: str,
    *,
    start: datetime | None = None,
    hours: float = 1,
    attendees: tuple[str, ...] = (),
    **kwargs: object,
) -> Meeting:
    """A meeting booked through the service; by default Tuesday 3 March 2026, 10:00 Paris."""
    start = start or datetime(2026, 3, 3, 10, 0, tzinfo=PARIS)
    return meeting_schedule(
        actor=organizer,
        title=title,
        start=start,
        end=start + timedelta(hours=hours),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(email) for email in attendees],
        **kwargs,  # type: ignore[arg-type]
    )


def summaries(body: bytes) -> dict[str, str]:
    """SUMMARY → STATUS of the master events of a feed, parsed by icalendar."""
    parsed = icalendar.Calendar.from_ical(body)
    return {
        str(event["SUMMARY"]): str(event.get("STATUS", ""))
        for event in parsed.walk("VEVENT")
        if "RECURRENCE-ID" not in event
    }
