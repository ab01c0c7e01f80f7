"""/api/v1/meetings/{id}/occurrences/: the window (across a DST change), and cancelling or
moving one occurrence through the services."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agencies.models import AuditEvent
from meetings.models import Meeting, OccurrenceException
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, meeting_schedule, occurrence_cancel
from rooms.models import BackendKind, MediaBackend
from tests.conftest import api_client
from visio_broker.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

PARIS = ZoneInfo("Europe/Paris")
EXTERN = "extern@example.org"
# Mondays 10:00 Paris: 22 March is still winter time (09:00Z), 29 March summer time (08:00Z).
FIRST, SECOND, THIRD, FOURTH = (
    "20270322T090000Z",
    "20270329T080000Z",
    "20270405T080000Z",
    ("20270412T080000Z"),
)


@pytest.fixture
def series(organizer) -> Meeting:
    start = datetime(2027, 3, 22, 10, tzinfo=PARIS)
    return meeting_schedule(
        actor=organizer,
        title="Weekly",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",), count=4),
        attendees=[AttendeeSpec(EXTERN)],
    )


def occurrences_url(meeting) -> str:
    return f"/api/v1/meetings/{meeting.pk}/occurrences/"


def action(client, meeting, occurrence_id, verb, body=None):
    return client.post(
        f"{occurrences_url(meeting)}{occurrence_id}/{verb}/",
        json.dumps(body or {}),
        content_type="application/json",
    )


def listed(client, meeting, start="2027-03-01T00:00:00Z", end="2027-05-01T00:00:00Z"):
    response = client.get(occurrences_url(meeting), {"from": start, "to": end})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_api_occurrences_window_lists_each_in_its_local_offset(series, client):
    results = listed(client, series)

    assert results == [
        {
            "id": FIRST,
            "start": "2027-03-22T10:00:00+01:00",
            "end": "2027-03-22T11:00:00+01:00",
            "status": "confirmed",
            "moved": False,
        },
        {
            "id": SECOND,
            "start": "2027-03-29T10:00:00+02:00",
            "end": "2027-03-29T11:00:00+02:00",
            "status": "confirmed",
            "moved": False,
        },
        {
            "id": THIRD,
            "start": "2027-04-05T10:00:00+02:00",
            "end": "2027-04-05T11:00:00+02:00",
            "status": "confirmed",
            "moved": False,
        },
        {
            "id": FOURTH,
            "start": "2027-04-12T10:00:00+02:00",
            "end": "2027-04-12T11:00:00+02:00",
            "status": "confirmed",
            "moved": False,
        },
    ]


def test_api_occurrences_window_is_half_open(series, client):
    results = listed(client, series, "2027-03-29T08:30:00Z", "2027-04-05T08:00:00Z")

    assert [item["id"] for item in results] == [SECOND]


def test_api_occurrences_of_one_off_meeting_is_the_meeting(organizer, client):
    start = datetime(2027, 3, 10, 14, tzinfo=PARIS)
    one_off = meeting_schedule(
        actor=organizer,
        title="Once",
        start=start,
        end=start + timedelta(minutes=30),
        timezone="Europe/Paris",
    )

    assert [item["id"] for item in listed(client, one_off)] == ["20270310T130000Z"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "2027-04-01T00:00:00Z"}, "from"),
        ({"from": "2027-03-01T00:00:00Z"}, "to"),
        ({"from": "2027-03-01T00:00:00", "to": "2027-04-01T00:00:00Z"}, "from"),
        ({"from": "2027-04-01T00:00:00Z", "to": "2027-03-01T00:00:00Z"}, "to"),
        ({"from": "2027-01-01T00:00:00Z", "to": "2028-01-03T00:00:00Z"}, "to"),
    ],
)
def test_api_occurrences_window_must_be_given_and_bounded(params, field, series, client):
    response = client.get(occurrences_url(series), params)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_api_occurrences_window_of_366_days_is_allowed(series, client):
    results = listed(client, series, "2027-01-01T00:00:00Z", "2028-01-02T00:00:00Z")

    assert len(results) == 4


def test_api_occurrences_of_other_agency_is_404(series, other_agency, make_api_key):
    client = api_client(make_api_key(other_agency)[1])

    response = client.get(
        occurrences_url(series), {"from": "2027-03-01T00:00:00Z", "to": "2027-05-01T00:00:00Z"}
    )

    assert response.status_code == 404


def test_api_occurrences_cancel_one_occurrence(series, key, client):
    row, _raw = key

    response = action(client, series, SECOND, "cancel")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "id": SECOND,
        "start": "2027-03-29T10:00:00+02:00",
        "end": "2027-03-29T11:00:00+02:00",
        "status": "cancelled",
        "moved": False,
    }
    exc = OccurrenceException.objects.get(meeting=series)
    assert exc.cancelled and exc.recurrence_id == datetime(2027, 3, 29, 8, tzinfo=UTC)
    series.refresh_from_db()
    assert series.sequence == 1
    assert Notification.objects.filter(
        meeting=series, kind="occurrence.cancel", recipient=EXTERN
    ).exists()
    event = AuditEvent.objects.get(action="occurrence.cancelled")
    assert event.api_key == row and event.actor == series.organizer
    assert [item["status"] for item in listed(client, series)] == [
        "confirmed",
        "cancelled",
        "confirmed",
        "confirmed",
    ]


def test_api_occurrences_cancel_twice_answers_the_same(series, client):
    first = action(client, series, SECOND, "cancel")

    second = action(client, series, SECOND, "cancel")

    assert second.status_code == 200 and second.json() == first.json()
    series.refresh_from_db()
    assert series.sequence == 1


def test_api_occurrences_move_one_occurrence(series, key, client):
    row, _raw = key

    response = action(
        client,
        series,
        THIRD,
        "move",
        {"start": "2027-04-06T14:00:00+02:00", "end": "2027-04-06T15:00:00+02:00"},
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "id": THIRD,
        "start": "2027-04-06T14:00:00+02:00",
        "end": "2027-04-06T15:00:00+02:00",
        "status": "confirmed",
        "moved": True,
    }
    exc = OccurrenceException.objects.get(meeting=series)
    assert not exc.cancelled and exc.start == datetime(2027, 4, 6, 12, tzinfo=UTC)
    assert Notification.objects.filter(
        meeting=series, kind="occurrence.request", recipient=EXTERN
    ).exists()
    assert AuditEvent.objects.get(action="occurrence.moved").api_key == row
    assert [(item["id"], item["start"]) for item in listed(client, series)][2] == (
        THIRD,
        "2027-04-06T14:00:00+02:00",
    )


def test_api_occurrences_move_naive_time_is_field_error(series, client):
    response = action(
        client,
        series,
        THIRD,
        "move",
        {"start": "2027-04-06T14:00:00", "end": "2027-04-06T15:00:00Z"},
    )

    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("start", "naive_datetime")
    ]
    assert not OccurrenceException.objects.exists()


def test_api_occurrences_move_into_the_past_names_the_field(series, client):
    response = action(
        client,
        series,
        THIRD,
        "move",
        {"start": "2027-02-01T14:00:00+01:00", "end": "2027-02-01T15:00:00+01:00"},
    )

    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("start", "start_in_past")
    ]


def test_api_occurrences_move_without_capacity_is_409(series, agency, client):
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

    response = action(
        client,
        series,
        THIRD,
        "move",
        {"start": "2027-04-06T14:00:00+02:00", "end": "2027-04-06T15:00:00+02:00"},
    )

    assert response.status_code == 409
    assert response.json()["code"] == "no_capacity"
    assert not OccurrenceException.objects.exists()


@pytest.mark.parametrize(
    "occurrence_id",
    ["20270330T080000Z", "20270419T080000Z", "20270329T090000Z", "2027-03-29", "20271399T000000Z"],
)
@pytest.mark.parametrize("verb", ["cancel", "move"])
def test_api_occurrences_unknown_or_malformed_occurrence_is_404(
    occurrence_id, verb, series, client
):
    body = {"start": "2027-04-06T14:00:00+02:00", "end": "2027-04-06T15:00:00+02:00"}

    response = action(client, series, occurrence_id, verb, body)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "occurrence_not_found"
    assert not OccurrenceException.objects.exists()


def test_api_occurrences_cancel_of_other_agency_is_404(series, other_agency, make_api_key):
    response = action(api_client(make_api_key(other_agency)[1]), series, SECOND, "cancel")

    assert response.status_code == 404
    assert not OccurrenceException.objects.exists()


def test_api_occurrences_cancel_needs_the_write_scope(series, agency, make_api_key):
    client = api_client(make_api_key(agency, scopes=["meetings:read"])[1])

    response = action(client, series, SECOND, "cancel")

    assert response.status_code == 403
    assert not OccurrenceException.objects.exists()


def test_api_occurrences_cancelled_occurrence_stays_listed_when_series_is_cancelled(
    series, organizer, client
):
    occurrence_cancel(
        actor=organizer, meeting=series, recurrence_id=datetime(2027, 3, 29, 8, tzinfo=UTC)
    )
    client.delete(f"/api/v1/meetings/{series.pk}/")

    assert {item["status"] for item in listed(client, series)} == {"cancelled"}
