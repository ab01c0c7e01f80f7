"""POST /api/v1/meetings/: booking for an organizer of the key's agency, validation, rooms,
invitations, audit and Idempotency-Key."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agencies.models import AuditEvent, Role
from meetings.models import Attendee, AttendeeRole, Meeting, PartStat
from rooms.models import BackendKind, MediaBackend, RoomReservation
from tests.conftest import api_client
from visio_broker.api import representation_etag
from visio_broker.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

URL = "/api/v1/meetings/"
EXTERN = "extern@example.org"


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="camille@test.gouv.example")


def create(raw_key, body, **headers):
    return api_client(raw_key).post(
        URL, json.dumps(body), content_type="application/json", headers=headers
    )


def weekly_body(organizer, **overrides):
    """Mondays 10:00-11:00 Paris, four times, from 22 March 2027 (the week before DST)."""
    return {
        "title": "Weekly steering",
        "description": "Agenda in the shared folder.",
        "start": "2027-03-22T10:00:00+01:00",
        "end": "2027-03-22T11:00:00+01:00",
        "timezone": "Europe/Paris",
        "recurrence": "FREQ=WEEKLY;BYDAY=MO;COUNT=4",
        "organizer": getattr(organizer, "email", organizer),
        **overrides,
    }


def field_errors(response):
    return {(error["field"], error["code"]) for error in response.json()["errors"]}


def test_api_meetings_create_books_series_with_attendees_room_and_invitations(
    organizer, colleague, key
):
    row, raw = key
    body = weekly_body(
        organizer,
        attendees=[
            {"email": colleague.email},
            {"email": EXTERN, "name": "Extern Person", "role": "optional"},
        ],
        reminder_minutes=15,
    )

    response = create(raw, body)

    assert response.status_code == 201, response.content
    data = response.json()
    assert response["ETag"] == representation_etag(data)
    assert response["Location"] == f"http://testserver/api/v1/meetings/{data['id']}/"
    meeting = Meeting.objects.get(pk=data["id"])
    assert meeting.organizer == organizer and meeting.host_agency == organizer.membership.agency
    assert meeting.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=4"
    assert meeting.start == datetime(2027, 3, 22, 9, 0, tzinfo=UTC)
    assert meeting.reminder_minutes == 15
    attendees = {a.email: (a.role, a.partstat) for a in Attendee.objects.filter(meeting=meeting)}
    assert attendees == {
        organizer.email: (AttendeeRole.CHAIR, PartStat.ACCEPTED),
        colleague.email: (AttendeeRole.REQUIRED, PartStat.NEEDS_ACTION),
        EXTERN: (AttendeeRole.OPTIONAL, PartStat.NEEDS_ACTION),
    }
    reservation = RoomReservation.objects.get(meeting=meeting)
    invitations = Notification.objects.filter(meeting=meeting, kind="meeting.request")
    assert set(invitations.values_list("recipient", flat=True)) == {colleague.email, EXTERN}
    # The representation: times in the meeting's own offset, the join page, the room.
    assert data["start"] == "2027-03-22T10:00:00+01:00"
    assert data["end"] == "2027-03-22T11:00:00+01:00"
    assert data["recurrence"] == "FREQ=WEEKLY;BYDAY=MO;COUNT=4"
    assert data["organizer"] == organizer.email
    assert data["status"] == "scheduled" and data["sequence"] == 0
    assert data["join_url"] == f"http://testserver/meetings/{meeting.pk}/join/"
    assert data["room"] == {"provider": BackendKind.LIVEKIT, "backend": reservation.backend.name}
    assert data["abilities"] == {
        "view": True,
        "edit": True,
        "cancel": True,
        "issue_join_ticket": True,
    }
    assert {a["email"]: a["status"] for a in data["attendees"]} == {
        organizer.email: "accepted",
        colleague.email: "needs-action",
        EXTERN: "needs-action",
    }


def test_api_meetings_create_audit_names_the_key_and_the_organizer(organizer, key):
    row, raw = key

    response = create(raw, weekly_body(organizer))

    assert response.status_code == 201
    event = AuditEvent.objects.get(action="meeting.scheduled")
    assert event.api_key == row
    assert event.actor == organizer
    assert event.actor_label == f"api-key:vbk_{row.prefix}"
    assert event.detail["on_behalf_of"] == organizer.email
    assert event.object_id == str(response.json()["id"])


def test_api_meetings_create_timezone_defaults_to_the_organizers(organizer, key):
    organizer.timezone = "America/New_York"
    organizer.save()
    body = weekly_body(
        organizer, start="2027-04-01T10:00:00-04:00", end="2027-04-01T11:00:00-04:00"
    )
    del body["timezone"], body["recurrence"]

    response = create(key[1], body)

    assert response.status_code == 201, response.content
    assert response.json()["timezone"] == "America/New_York"
    assert Meeting.objects.get().timezone == "America/New_York"


@pytest.mark.parametrize(
    "who",
    ["member", "organizer_of_other_agency", "inactive_organizer", "unknown"],
)
def test_api_meetings_create_organizer_must_be_an_active_booker_of_the_agency(
    who, agency, other_agency, make_member, key
):
    emails = {
        "member": lambda: make_member(agency, Role.MEMBER).email,
        "organizer_of_other_agency": lambda: make_member(other_agency, Role.ORGANIZER).email,
        "inactive_organizer": lambda: make_member(agency, Role.ADMIN, is_active=False).email,
        "unknown": lambda: "nobody@test.gouv.example",
    }

    response = create(key[1], weekly_body(emails[who]()))

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field_errors(response) == {("organizer", "organizer_invalid")}
    assert not Meeting.objects.exists()
    assert not Notification.objects.exists()


def test_api_meetings_create_admin_may_organize(agency, make_member, key):
    admin = make_member(agency, Role.ADMIN)

    response = create(key[1], weekly_body(admin))

    assert response.status_code == 201
    assert Meeting.objects.get().organizer == admin


@pytest.mark.parametrize("field", ["start", "end"])
def test_api_meetings_create_time_without_offset_is_field_error(field, organizer, key):
    body = weekly_body(
        organizer, **{field: f"2027-03-22T{'10' if field == 'start' else '11'}:00:00"}
    )

    response = create(key[1], body)

    assert response.status_code == 400
    assert field_errors(response) == {(field, "naive_datetime")}
    assert not Meeting.objects.exists()


@pytest.mark.parametrize(
    "rule",
    ["FREQ=HOURLY", "FREQ=WEEKLY;BYDAY=MO;BYSETPOS=1", "FREQ=MONTHLY;BYDAY=MO,TU", "nonsense"],
)
def test_api_meetings_create_unsupported_recurrence_is_field_error(rule, organizer, key):
    response = create(key[1], weekly_body(organizer, recurrence=rule))

    assert response.status_code == 400
    assert field_errors(response) == {("recurrence", "unsupported_recurrence")}
    assert not Meeting.objects.exists()


def test_api_meetings_create_service_refusal_names_its_field(organizer, key):
    body = weekly_body(
        organizer, start="2027-02-01T10:00:00+01:00", end="2027-02-01T11:00:00+01:00"
    )

    response = create(key[1], body)

    assert response.status_code == 400
    assert field_errors(response) == {("start", "start_in_past")}
    assert not Meeting.objects.exists()


def test_api_meetings_create_unknown_co_organizer_is_field_error(organizer, key):
    response = create(key[1], weekly_body(organizer, co_organizers=["ghost@example.org"]))

    assert response.status_code == 400
    assert field_errors(response) == {("co_organizers", "unknown_co_organizer")}


def test_api_meetings_create_co_organizers_attend(organizer, colleague, key):
    response = create(key[1], weekly_body(organizer, co_organizers=[colleague.email.upper()]))

    assert response.status_code == 201, response.content
    meeting = Meeting.objects.get()
    assert list(meeting.co_organizers.all()) == [colleague]
    assert meeting.attendees.filter(user=colleague).exists()
    assert response.json()["co_organizers"] == [colleague.email]


def test_api_meetings_create_without_capacity_is_409_and_books_nothing(agency, organizer, key):
    agency.allow_shared_backends = False
    agency.save()
    MediaBackend.objects.create(
        name="own-small",
        kind=BackendKind.LIVEKIT,
        base_url="https://livekit.example.org",
        api_key="key",
        secret_env="TEST_LIVEKIT_SECRET",
        country="FR",
        agency=agency,
        capacity=1,
    )

    response = create(key[1], weekly_body(organizer, attendees=[{"email": EXTERN}]))

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "no_capacity"
    assert not Meeting.objects.exists()
    assert not Notification.objects.exists()


def test_api_meetings_create_needs_the_write_scope(organizer, agency, make_api_key):
    _row, raw = make_api_key(agency, scopes=["meetings:read"])

    response = create(raw, weekly_body(organizer))

    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert not Meeting.objects.exists()


def test_api_meetings_create_same_idempotency_key_and_body_books_once(organizer, key):
    body = weekly_body(organizer, attendees=[{"email": EXTERN}])

    first = create(key[1], body, **{"Idempotency-Key": "booking-1"})
    again = create(key[1], body, **{"Idempotency-Key": "booking-1"})

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again["ETag"] == first["ETag"] and again["Location"] == first["Location"]
    assert Meeting.objects.count() == 1
    assert Notification.objects.filter(kind="meeting.request", recipient=EXTERN).count() == 1


def test_api_meetings_create_same_idempotency_key_other_body_is_422(organizer, key):
    create(key[1], weekly_body(organizer), **{"Idempotency-Key": "booking-1"})

    response = create(
        key[1], weekly_body(organizer, title="Another"), **{"Idempotency-Key": "booking-1"}
    )

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert list(Meeting.objects.values_list("title", flat=True)) == ["Weekly steering"]
