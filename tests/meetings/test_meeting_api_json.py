"""Meeting.api_json_head and api_json_tail: runs of the meeting as the REST API writes it, kept by
the database through every kind of write (the meetings list concatenates them;
tests/api/test_api_representation.py holds the whole page equal to MeetingSerializer)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from agencies.models import Role
from meetings.models import AccessLevel, Meeting
from meetings.serializers import meeting_representation
from meetings.services import meeting_cancel, meeting_schedule, meeting_update

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
START = datetime(2026, 3, 10, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))
AWKWARD = 'Say "hi" \\ C:\\path\nnext\r\ttab \x01\x1f \x7f \u2028 é 中文 😀'
HEAD = ("uid", "title", "description")
TAIL = ("access", "lobby", "listed_publicly", "reminder_minutes", "status", "sequence")


def _runs(meeting: Meeting) -> tuple[dict[str, object], dict[str, object]]:
    """The stored runs, each read as the members of a JSON object, keys in their order."""
    head, tail = Meeting.objects.values_list("api_json_head", "api_json_tail").get(pk=meeting.pk)
    assert head.startswith(",") and tail.startswith(",")
    return json.loads("{" + head[1:] + "}"), json.loads("{" + tail[1:] + "}")


def _expected(meeting: Meeting) -> tuple[dict[str, object], dict[str, object]]:
    data = meeting_representation(Meeting.objects.get(pk=meeting.pk), None)
    return {key: data[key] for key in HEAD}, {key: data[key] for key in TAIL}


def _assert_follows(meeting: Meeting) -> None:
    head, tail = _runs(meeting)
    assert (head, tail) == _expected(meeting)
    assert list(head) == list(HEAD)
    assert list(tail) == list(TAIL)


def test_the_runs_follow_every_write(agency, make_member):
    organizer = make_member(agency, Role.ORGANIZER)
    with time_machine.travel(NOW, tick=False):
        meeting = meeting_schedule(
            actor=organizer,
            title=AWKWARD,
            description=AWKWARD + "\n" + AWKWARD,
            start=START,
            end=START + timedelta(hours=1),
            timezone="Europe/Paris",
            attendees=[],
        )
    _assert_follows(meeting)
    head, tail = _runs(meeting)
    assert head["title"] == AWKWARD
    assert (tail["reminder_minutes"], tail["lobby"], tail["sequence"]) == (None, True, 0)

    with time_machine.travel(NOW, tick=False):
        meeting_update(
            actor=organizer,
            meeting=meeting,
            title="Plain",
            description="",
            access_level=AccessLevel.LINK,
            lobby_enabled=False,
            listed_publicly=True,
            reminder_minutes=60,
            start=START + timedelta(days=1),
            end=START + timedelta(days=1, hours=1),
        )
    _assert_follows(meeting)
    head, tail = _runs(meeting)
    assert head["description"] == ""
    assert tail == {
        "access": "link",
        "lobby": False,
        "listed_publicly": True,
        "reminder_minutes": 60,
        "status": "scheduled",
        "sequence": 1,
    }

    with time_machine.travel(NOW, tick=False):
        meeting_cancel(actor=organizer, meeting=meeting)
    _assert_follows(meeting)
    assert _runs(meeting)[1]["status"] == "cancelled"

    # Writes that bypass the models: the database computes the columns itself.
    Meeting.objects.filter(pk=meeting.pk).update(
        title='back\\slash "quote"', uid='odd"uid\\@example.org', sequence=7
    )
    _assert_follows(meeting)
    assert _runs(meeting)[0]["uid"] == 'odd"uid\\@example.org'
