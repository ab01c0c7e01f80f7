"""GET, PATCH and DELETE /api/v1/meetings/{id}/: visibility, ETag / If-Match, sequence,
cancellation, and whom the key acts for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agencies.models import AuditEvent, Role
from meetings.models import MeetingStatus, PartStat
from meetings.services import AttendeeSpec, meeting_schedule
from rooms.models import RoomReservation
from tests.conftest import api_client
from visio_broker.api import representation_etag
from visio_broker.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

PARIS = ZoneInfo("Europe/Paris")
EXTERN = "extern@example.org"


@pytest.fixture
def meeting(organizer):
    start = datetime(2027, 3, 29, 10, tzinfo=PARIS)
    return meeting_schedule(
        actor=organizer,
        title="Steering",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(EXTERN)],
    )


def url(meeting) -> str:
    return f"/api/v1/meetings/{meeting.pk}/"


def patch(client, meeting, body, **headers):
    return client.patch(
        url(meeting), json.dumps(body), content_type="application/json", headers=headers
    )


# --- GET -------------------------------------------------------------------------------------


def test_api_meetings_retrieve_answers_the_meeting_with_its_etag(meeting, client):
    response = client.get(url(meeting))

    assert response.status_code == 200
    data = response.json()
    assert response["ETag"] == representation_etag(data)
    assert data["id"] == meeting.pk and data["uid"] == meeting.uid
    # 29 March 2027 is after the switch to summer time: +02:00.
    assert data["start"] == "2027-03-29T10:00:00+02:00"
    assert data["end"] == "2027-03-29T11:00:00+02:00"
    assert data["recurrence"] is None


def test_api_meetings_retrieve_with_current_etag_is_304(meeting, client):
    etag = client.get(url(meeting))["ETag"]

    response = client.get(url(meeting), headers={"If-None-Match": etag})

    assert response.status_code == 304 and response["ETag"] == etag


def test_api_meetings_retrieve_of_other_agency_is_404(other_agency, make_member, client):
    theirs = meeting_schedule(
        actor=make_member(other_agency, Role.ORGANIZER),
        title="Theirs",
        start=datetime(2027, 3, 29, 10, tzinfo=PARIS),
        end=datetime(2027, 3, 29, 11, tzinfo=PARIS),
        timezone="Europe/Berlin",
    )

    response = client.get(url(theirs))

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_api_meetings_retrieve_unknown_is_404(client):
    assert client.get("/api/v1/meetings/999999/").status_code == 404


# --- PATCH -----------------------------------------------------------------------------------


def test_api_meetings_patch_time_bumps_sequence_and_sends_updates(meeting, key, client):
    row, _raw = key
    etag = client.get(url(meeting))["ETag"]

    response = patch(
        client,
        meeting,
        {"start": "2027-03-29T14:00:00+02:00", "end": "2027-03-29T15:00:00+02:00"},
        **{"If-Match": etag},
    )

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["sequence"] == 1 and data["start"] == "2027-03-29T14:00:00+02:00"
    assert response["ETag"] == representation_etag(data) != etag
    meeting.refresh_from_db()
    assert meeting.sequence == 1
    assert meeting.start == datetime(2027, 3, 29, 12, tzinfo=UTC)
    assert Notification.objects.filter(
        meeting=meeting, kind="meeting.request", recipient=EXTERN, sequence=1
    ).exists()
    event = AuditEvent.objects.get(action="meeting.updated")
    assert event.api_key == row and event.actor == meeting.organizer


def test_api_meetings_patch_title_keeps_sequence(meeting, client):
    response = patch(client, meeting, {"title": "Steering committee"})

    assert response.status_code == 200
    assert response.json()["title"] == "Steering committee" and response.json()["sequence"] == 0
    meeting.refresh_from_db()
    assert meeting.title == "Steering committee" and meeting.sequence == 0


def test_api_meetings_patch_attendees_replaces_the_list(meeting, client):
    response = patch(
        client,
        meeting,
        {"attendees": [{"email": "new@example.org", "name": "New", "role": "optional"}]},
    )

    assert response.status_code == 200, response.content
    emails = {a.email: a.role for a in meeting.attendees.all()}
    assert emails == {meeting.organizer.email: "chair", "new@example.org": "optional"}
    assert Notification.objects.filter(kind="meeting.cancel", recipient=EXTERN).exists()
    assert Notification.objects.filter(kind="meeting.request", recipient="new@example.org").exists()


def test_api_meetings_patch_with_stale_if_match_is_412_and_changes_nothing(meeting, client):
    stale = client.get(url(meeting))["ETag"]
    assert patch(client, meeting, {"title": "First writer"}).status_code == 200

    response = patch(client, meeting, {"title": "Second writer"}, **{"If-Match": stale})

    assert response.status_code == 412
    assert response.json()["code"] == "precondition_failed"
    meeting.refresh_from_db()
    assert meeting.title == "First writer"


def test_api_meetings_patch_naive_time_is_field_error(meeting, client):
    response = patch(client, meeting, {"start": "2027-03-29T14:00:00"})

    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("start", "naive_datetime")
    ]


def test_api_meetings_patch_end_before_start_names_the_field(meeting, client):
    response = patch(client, meeting, {"end": "2027-03-29T09:00:00+02:00"})

    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("end", "end_before_start")
    ]
    meeting.refresh_from_db()
    assert meeting.sequence == 0


def test_api_meetings_patch_cannot_change_the_organizer(meeting, agency, make_member, client):
    other = make_member(agency, Role.ORGANIZER)

    response = patch(client, meeting, {"organizer": other.email, "title": "Taken"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "organizer"
    meeting.refresh_from_db()
    assert meeting.organizer != other and meeting.title == "Steering"


def test_api_meetings_patch_accepts_back_what_it_read(meeting, client):
    read = client.get(url(meeting)).json()

    response = patch(client, meeting, {**read, "title": "Renamed"})

    assert response.status_code == 200, response.content
    assert response.json()["title"] == "Renamed" and response.json()["sequence"] == 0


def test_api_meetings_patch_of_other_agency_is_404(meeting, other_agency, make_api_key):
    _row, raw = make_api_key(other_agency)

    response = patch(api_client(raw), meeting, {"title": "Hijacked"})

    assert response.status_code == 404
    meeting.refresh_from_db()
    assert meeting.title == "Steering"


def test_api_meetings_patch_of_cancelled_meeting_is_409(meeting, client):
    client.delete(url(meeting))

    response = patch(client, meeting, {"title": "Too late"})

    assert response.status_code == 409
    assert response.json()["code"] == "meeting_cancelled"


def test_api_meetings_patch_with_read_scope_only_is_403(meeting, agency, make_api_key):
    _row, raw = make_api_key(agency, scopes=["meetings:read"])

    response = patch(api_client(raw), meeting, {"title": "Nope"})

    assert response.status_code == 403
    meeting.refresh_from_db()
    assert meeting.title == "Steering"


# --- Whom the key acts for ---------------------------------------------------------------------


def test_api_meetings_patch_of_departed_organizers_meeting_acts_as_an_admin(
    meeting, organizer, agency, make_member, client
):
    admin = make_member(agency, Role.ADMIN, email="admin@test.gouv.example")
    organizer.is_active = False
    organizer.save()

    response = patch(client, meeting, {"title": "Handed over"})

    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="meeting.updated")
    assert event.actor == admin and event.detail["on_behalf_of"] == admin.email


def test_api_meetings_cancel_without_anyone_to_act_for_is_409(meeting, organizer, client):
    organizer.is_active = False
    organizer.save()

    response = client.delete(url(meeting))

    assert response.status_code == 409
    assert response.json()["code"] == "no_acting_member"
    meeting.refresh_from_db()
    assert meeting.status == MeetingStatus.SCHEDULED


# --- DELETE ----------------------------------------------------------------------------------


def test_api_meetings_delete_cancels_and_stays_retrievable(meeting, key, client):
    row, _raw = key
    etag = client.get(url(meeting))["ETag"]

    response = client.delete(url(meeting), headers={"If-Match": etag})

    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "cancelled" and data["sequence"] == 1 and data["room"] is None
    assert data["abilities"]["edit"] is False and data["abilities"]["cancel"] is False
    assert response["ETag"] == representation_etag(data)
    meeting.refresh_from_db()
    assert meeting.status == MeetingStatus.CANCELLED
    assert RoomReservation.objects.get(meeting=meeting).released_at is not None
    assert Notification.objects.filter(kind="meeting.cancel", recipient=EXTERN).exists()
    assert AuditEvent.objects.get(action="meeting.cancelled").api_key == row
    again = client.get(url(meeting))
    assert again.status_code == 200 and again.json() == data


def test_api_meetings_delete_twice_answers_the_same(meeting, client):
    first = client.delete(url(meeting))

    second = client.delete(url(meeting))

    assert second.status_code == 200 and second.json() == first.json()
    assert Notification.objects.filter(kind="meeting.cancel", recipient=EXTERN).count() == 1


def test_api_meetings_delete_with_stale_if_match_is_412_and_cancels_nothing(meeting, client):
    stale = client.get(url(meeting))["ETag"]
    patch(client, meeting, {"title": "Changed meanwhile"})

    response = client.delete(url(meeting), headers={"If-Match": stale})

    assert response.status_code == 412
    meeting.refresh_from_db()
    assert meeting.status == MeetingStatus.SCHEDULED
    assert not Notification.objects.filter(kind="meeting.cancel").exists()


def test_api_meetings_cancel_by_other_agency_is_404(meeting, other_agency, make_api_key):
    _row, raw = make_api_key(other_agency)

    response = api_client(raw).delete(url(meeting))

    assert response.status_code == 404
    meeting.refresh_from_db()
    assert meeting.status == MeetingStatus.SCHEDULED


def test_api_meetings_patch_resets_answers_on_significant_change(meeting, client):
    meeting.attendees.filter(email=EXTERN).update(partstat=PartStat.ACCEPTED)

    patch(
        client, meeting, {"start": "2027-03-29T15:00:00+02:00", "end": "2027-03-29T16:00:00+02:00"}
    )

    assert meeting.attendees.get(email=EXTERN).partstat == PartStat.NEEDS_ACTION


def test_api_meetings_patch_unsupported_recurrence_is_field_error(meeting, client):
    response = patch(client, meeting, {"recurrence": "FREQ=MINUTELY"})

    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("recurrence", "unsupported_recurrence")
    ]
    meeting.refresh_from_db()
    assert meeting.rrule == "" and meeting.sequence == 0


def test_api_meetings_patch_recurrence_then_null_removes_it(meeting, client):
    weekly = patch(client, meeting, {"recurrence": "FREQ=WEEKLY;BYDAY=MO;COUNT=3"})
    assert weekly.status_code == 200 and weekly.json()["sequence"] == 1

    response = patch(client, meeting, {"recurrence": None})

    assert response.status_code == 200
    assert response.json()["recurrence"] is None and response.json()["sequence"] == 2
    meeting.refresh_from_db()
    assert meeting.rrule == ""


def test_api_meetings_patch_attendee_with_email_only_is_required(meeting, client):
    response = patch(client, meeting, {"attendees": [{"email": "New@Example.org"}]})

    assert response.status_code == 200, response.content
    assert meeting.attendees.get(email="new@example.org").role == "required"
