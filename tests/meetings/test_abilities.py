"""Meeting.get_abilities: what each kind of user may do with a meeting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser

from agencies.models import Role
from meetings.models import ABILITIES, AttendeeRole
from meetings.services import AttendeeSpec, meeting_cancel, meeting_schedule

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
START = datetime(2026, 4, 7, 10, tzinfo=PARIS)

NOTHING = dict.fromkeys(ABILITIES, False)
SEE = {**NOTHING, "view": True, "view_details": True}
MANAGE = {**SEE, "edit": True, "cancel": True, "view_attendance": True}

EXPECTED = {
    "anonymous": NOTHING,
    "organizer": {**MANAGE, "join_as_moderator": True},
    "co_organizer": {**MANAGE, "respond": True, "join_as_moderator": True},
    "chair_attendee": {**SEE, "respond": True, "join_as_moderator": True},
    "attendee": {**SEE, "respond": True},
    "optional_attendee_from_other_agency": {**SEE, "respond": True},
    "same_agency_member_not_invited": NOTHING,
    "same_agency_organizer_not_invited": NOTHING,
    "host_agency_admin": MANAGE,
    "other_agency_admin": NOTHING,
    "other_agency_member": NOTHING,
}


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def people(agency, other_agency, make_member):
    return {
        "anonymous": AnonymousUser(),
        "organizer": make_member(agency, Role.ORGANIZER),
        "co_organizer": make_member(agency, Role.MEMBER),
        "chair_attendee": make_member(agency, Role.MEMBER),
        "attendee": make_member(agency, Role.MEMBER),
        "optional_attendee_from_other_agency": make_member(other_agency, Role.MEMBER),
        "same_agency_member_not_invited": make_member(agency, Role.MEMBER),
        "same_agency_organizer_not_invited": make_member(agency, Role.ORGANIZER),
        "host_agency_admin": make_member(agency, Role.ADMIN),
        "other_agency_admin": make_member(other_agency, Role.ADMIN),
        "other_agency_member": make_member(other_agency, Role.MEMBER),
    }


@pytest.fixture
def meeting(people):
    return meeting_schedule(
        actor=people["organizer"],
        title="Budget review",
        start=START,
        end=START + timedelta(hours=1),
        timezone="Europe/Paris",
        co_organizers=[people["co_organizer"]],
        attendees=[
            AttendeeSpec(people["chair_attendee"].email, role=AttendeeRole.CHAIR),
            AttendeeSpec(people["attendee"].email),
            AttendeeSpec(
                people["optional_attendee_from_other_agency"].email, role=AttendeeRole.OPTIONAL
            ),
        ],
    )


def test_abilities_cover_every_ability_for_every_role():
    assert all(set(abilities) == set(ABILITIES) for abilities in EXPECTED.values())


@pytest.mark.parametrize("role", EXPECTED)
def test_meeting_abilities_by_role(people, meeting, role):
    assert meeting.get_abilities(people[role]) == EXPECTED[role]


@pytest.mark.parametrize("role", EXPECTED)
def test_cancelled_meeting_abilities_by_role(people, meeting, role):
    meeting_cancel(actor=people["organizer"], meeting=meeting)
    meeting.refresh_from_db()
    abilities = meeting.get_abilities(people[role])
    assert (abilities["view"], abilities["view_details"]) == (
        EXPECTED[role]["view"],
        EXPECTED[role]["view_details"],
    )
    assert (abilities["edit"], abilities["cancel"], abilities["respond"]) == (False, False, False)
    assert abilities["view_attendance"] == EXPECTED[role]["view_attendance"]
    assert abilities["join_as_moderator"] is False
