"""Attendee.api_json: the attendee as the REST API writes it, kept by the database through every
kind of write (the meetings list concatenates it; tests/api/test_api_representation.py holds the
whole page equal to MeetingSerializer)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

from agencies.models import Role
from meetings.models import Attendee, AttendeeRole
from meetings.serializers import AttendeeSerializer
from meetings.services import AttendeeSpec, attendee_respond, meeting_schedule, meeting_update

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
START = datetime(2026, 3, 10, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))
AWKWARD = 'Say "hi" \\ C:\\path\nnext\r\ttab \x01\x1f \x7f \u2028 é 中文 😀'
GUEST = "guest@example.org"


def _as_the_api_writes_it(attendee: Attendee) -> str:
    data = AttendeeSerializer(attendee).data
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _stored(meeting) -> dict[str, str]:
    return dict(meeting.attendees.values_list("email", "api_json"))


def _expected(meeting) -> dict[str, str]:
    return {attendee.email: _as_the_api_writes_it(attendee) for attendee in meeting.attendees.all()}


@pytest.fixture
def meeting(agency, make_member):
    organizer = make_member(agency, Role.ORGANIZER)
    with time_machine.travel(NOW, tick=False):
        return meeting_schedule(
            actor=organizer,
            title="Weekly sync",
            start=START,
            end=START + timedelta(hours=1),
            timezone="Europe/Paris",
            attendees=[AttendeeSpec(GUEST, display_name=AWKWARD)],
        )


def test_api_json_follows_every_write(meeting):
    if connection.vendor != "postgresql":
        pytest.skip("the list reads it on PostgreSQL only")
    assert _stored(meeting) == _expected(meeting)  # booked: the organizer (chair) and the guest
    assert json.loads(_stored(meeting)[GUEST])["name"] == AWKWARD

    with time_machine.travel(NOW, tick=False):
        guest = meeting.attendees.get(email=GUEST)
        attendee_respond(actor="rsvp-link", attendee=guest, partstat="tentative")
        meeting_update(
            actor=meeting.organizer,
            meeting=meeting,
            attendees=[
                AttendeeSpec(GUEST, role=AttendeeRole.OPTIONAL),
                AttendeeSpec("new@example.org"),
            ],
        )
    assert json.loads(_stored(meeting)[GUEST])["status"] == "tentative"
    assert json.loads(_stored(meeting)[GUEST])["role"] == "optional"
    assert _stored(meeting) == _expected(meeting)

    # Writes that bypass the models too: the database computes the column itself.
    Attendee.objects.filter(email=GUEST).update(
        display_name='back\\slash "quote"', email='"odd\\"quoted"@example.org'
    )
    assert _stored(meeting) == _expected(meeting)
    assert '"odd\\"quoted"@example.org' in _stored(meeting)
