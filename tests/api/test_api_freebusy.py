"""POST /api/v1/freebusy/: busy times of people, by the free/busy module's rules, with no titles
for an API key and "unknown" for people outside the instance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from agencies.models import Role
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, attendee_respond, meeting_cancel, meeting_schedule
from tests.conftest import api_client
from visio_broker.models import IdempotentRequest

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # Monday 2 March 2026, before every meeting below
DAY = {"start": "2026-03-10T00:00:00+00:00", "end": "2026-03-11T00:00:00+00:00"}


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="org@test.gouv.example")


@pytest.fixture
def alice(agency, make_member):
    return make_member(agency, Role.MEMBER, email="alice@test.gouv.example")


@pytest.fixture
def bob(other_agency, make_member):
    return make_member(other_agency, Role.ORGANIZER, email="bob@test.bund.example")


@pytest.fixture
def key(agency, make_api_key):
    return make_api_key(agency)[1]


def utc(day: str, hour: int, minute: int = 0) -> str:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC).isoformat()


def schedule(organizer, title, start, minutes=60, attendees=(), **extra):
    start = datetime.fromisoformat(start)
    return meeting_schedule(
        actor=organizer,
        title=title,
        start=start,
        end=start + timedelta(minutes=minutes),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(person.email) for person in attendees],
        **extra,
    )


def query(raw_key, body, **headers):
    return api_client(raw_key).post(
        reverse("api-freebusy"), json.dumps(body), content_type="application/json", headers=headers
    )


def busy_of(response, email):
    (found,) = [item for item in response.json()["attendees"] if item["email"] == email]
    return found


def test_api_freebusy_busy_intervals_for_a_member_with_meetings(key, organizer, alice):
    schedule(organizer, "A", utc("2026-03-10", 9), 60, [alice])
    schedule(organizer, "B", utc("2026-03-10", 9, 30), 90, [alice])  # overlaps A: merged
    schedule(organizer, "C", utc("2026-03-10", 14), 60, [alice])
    schedule(organizer, "Tomorrow", utc("2026-03-11", 9), 60, [alice])  # outside the window

    response = query(key, {"attendees": [alice.email], **DAY})

    assert response.status_code == 200
    assert response.json() == {
        "start": "2026-03-10T00:00:00+00:00",
        "end": "2026-03-11T00:00:00+00:00",
        "attendees": [
            {
                "email": alice.email,
                "status": "known",
                "busy": [
                    {"start": utc("2026-03-10", 9), "end": utc("2026-03-10", 11)},
                    {"start": utc("2026-03-10", 14), "end": utc("2026-03-10", 15)},
                ],
            }
        ],
    }


def test_api_freebusy_window_with_an_offset_is_answered_in_utc_and_clips(key, organizer, alice):
    schedule(organizer, "Long", utc("2026-03-10", 8), 180, [alice])
    window = {"start": "2026-03-10T10:00:00+01:00", "end": "2026-03-10T10:30:00+01:00"}

    response = query(key, {"attendees": [alice.email], **window})

    assert response.json()["start"] == utc("2026-03-10", 9)
    assert busy_of(response, alice.email)["busy"] == [
        {"start": utc("2026-03-10", 9), "end": utc("2026-03-10", 9, 30)}
    ]


def test_api_freebusy_shows_no_titles_even_of_the_agencys_own_meetings(key, organizer, alice, bob):
    schedule(organizer, "Reorganisation secrète", utc("2026-03-10", 9), 60, [alice])
    # bob's agency hosts this one; alice attends.
    schedule(bob, "Geheime Verhandlung", utc("2026-03-10", 13), 60, [alice])

    response = query(key, {"attendees": [alice.email, bob.email], **DAY})

    assert response.status_code == 200
    text = response.content.decode()
    for secret in ("Reorganisation", "Geheime", "title", "meeting"):
        assert secret not in text
    assert busy_of(response, alice.email)["busy"] == [
        {"start": utc("2026-03-10", 9), "end": utc("2026-03-10", 10)},
        {"start": utc("2026-03-10", 13), "end": utc("2026-03-10", 14)},
    ]
    # Another agency's staff is looked up like anyone on the instance.
    assert busy_of(response, bob.email) == {
        "email": bob.email,
        "status": "known",
        "busy": [{"start": utc("2026-03-10", 13), "end": utc("2026-03-10", 14)}],
    }


def test_api_freebusy_person_outside_the_instance_is_unknown(key, organizer, alice):
    schedule(organizer, "A", utc("2026-03-10", 9), 60, [alice])
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    response = query(key, {"attendees": ["Partner@Elsewhere.example", alice.email], **DAY})

    assert response.json()["attendees"] == [
        {"email": "Partner@Elsewhere.example", "status": "unknown", "busy": []},
        {"email": alice.email, "status": "unknown", "busy": []},
    ]


def test_api_freebusy_skips_declined_and_cancelled_meetings(key, organizer, alice):
    declined = schedule(organizer, "Declined", utc("2026-03-10", 9), 60, [alice])
    attendee_respond(actor=alice, attendee=declined.attendees.get(user=alice), partstat="declined")
    cancelled = schedule(organizer, "Cancelled", utc("2026-03-10", 11), 60, [alice])
    meeting_cancel(actor=organizer, meeting=cancelled)
    schedule(
        organizer,
        "Weekly",
        utc("2026-03-03", 15),
        30,
        [alice],
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=4),
    )

    response = query(key, {"attendees": [alice.email.upper()], **DAY})

    assert busy_of(response, alice.email.upper())["busy"] == [
        {"start": utc("2026-03-10", 15), "end": utc("2026-03-10", 15, 30)}
    ]


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"end": "2026-05-12T00:00:01+00:00"}, "end", "window_too_long"),
        ({"end": "2026-03-09T00:00:00+00:00"}, "end", "end_before_start"),
        ({"start": "2026-03-10T00:00:00"}, "start", "naive_datetime"),
        ({"attendees": []}, "attendees", "min_length"),
        ({"attendees": [f"p{n}@x.example" for n in range(101)]}, "attendees", "max_length"),
        ({"attendees": ["not an address"]}, "attendees.0", "invalid"),
    ],
    ids=["window-too-long", "end-before-start", "naive", "nobody", "too-many", "bad-address"],
)
def test_api_freebusy_bad_query_is_400_with_field_errors(key, alice, change, field, code):
    response = query(key, {"attendees": [alice.email], **DAY, **change})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid"
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]


def test_api_freebusy_sixty_two_days_are_allowed(key, alice):
    window = {"start": "2026-03-10T00:00:00+00:00", "end": "2026-05-11T00:00:00+00:00"}
    assert query(key, {"attendees": [alice.email], **window}).status_code == 200


def test_api_freebusy_without_the_scope_is_403(agency, make_api_key, alice):
    _key, raw = make_api_key(agency, scopes=["meetings:read"])
    response = query(raw, {"attendees": [alice.email], **DAY})
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_api_freebusy_is_not_kept_for_replay(key, organizer, alice):
    schedule(organizer, "A", utc("2026-03-10", 9), 60, [alice])
    first = query(key, {"attendees": [alice.email], **DAY}, **{"Idempotency-Key": "fb"})
    schedule(organizer, "B", utc("2026-03-10", 14), 60, [alice])
    again = query(key, {"attendees": [alice.email], **DAY}, **{"Idempotency-Key": "fb"})
    assert len(busy_of(first, alice.email)["busy"]) == 1
    assert len(busy_of(again, alice.email)["busy"]) == 2  # read afresh
    assert not IdempotentRequest.objects.exists()


def test_api_freebusy_queries_do_not_grow_with_people(
    key, organizer, make_member, agency, django_assert_num_queries
):
    people = [make_member(agency, Role.MEMBER, email=f"p{n}@test.gouv.example") for n in range(6)]
    for n, person in enumerate(people):
        schedule(organizer, f"M{n}", utc("2026-03-10", 8 + n), 30, [person])
    query(key, {"attendees": [people[0].email], **DAY})  # reads the key, writes its last use

    # The people, their (person, meeting) pairs: none of them per person.
    with django_assert_num_queries(2):
        one = query(key, {"attendees": [people[0].email], **DAY})
    with django_assert_num_queries(2):
        many = query(key, {"attendees": [person.email for person in people], **DAY})
    assert one.status_code == many.status_code == 200
    assert all(len(item["busy"]) == 1 for item in many.json()["attendees"])
