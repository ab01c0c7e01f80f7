"""POST /api/v1/meetings/{id}/join-ticket/: the web join's rules through an agency's key, and a
token that verifies with the providers' own verifiers and is never kept."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.urls import reverse

from agencies.models import AuditEvent
from meetings.services import meeting_cancel, occurrence_cancel
from rooms.models import LobbyEntry, LobbyStatus
from rooms.services import lobby_admit, lobby_enter
from tests.conftest import api_client
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    JITSI_URL,
    LIVEKIT_MEET,
    MOMENTS,
    START,
    jitsi_backend,
    jitsi_verify,
    livekit_verify,
    token_from_url,
)
from visio_broker.models import IdempotentRequest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_deferred_reads")]

OPENS_AT = START - timedelta(minutes=settings.JOIN_WINDOW_OPENS_MINUTES)


@pytest.fixture
def key(agency, make_api_key):
    """A key of the host agency (people.organizer's agency), with every scope."""
    return make_api_key(agency)[1]


def ticket(raw_key, meeting, body, moment=MOMENTS["inside"], **headers):
    with time_machine.travel(moment, tick=False):
        return api_client(raw_key).post(
            reverse("api-meeting-join-ticket", args=[meeting.pk]),
            json.dumps(body),
            content_type="application/json",
            headers=headers,
        )


def verified(response, meeting, moment=MOMENTS["inside"]):
    """The LiveKit claims of the returned token, checked by livekit-api's TokenVerifier."""
    with time_machine.travel(moment, tick=False):
        return livekit_verify(response.json()["token"], room=meeting.reservation.room_name)


# --- Who gets which role ----------------------------------------------------------------------


def test_api_join_ticket_attendee_in_window_gets_a_participant_token(people, book, key):
    meeting = book()
    response = ticket(key, meeting, {"email": people.attendee.email})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"provider", "url", "token", "expires_at", "role"}
    assert body["provider"] == "livekit" and body["role"] == "participant"
    assert body["url"].startswith(f"{LIVEKIT_MEET}/custom?")
    assert token_from_url(body["url"]) == body["token"]
    expires = MOMENTS["inside"] + timedelta(seconds=settings.JOIN_TOKEN_TTL_SECONDS)
    assert body["expires_at"] == expires.astimezone(UTC).isoformat()  # RFC 3339, UTC
    claims = verified(response, meeting)
    assert claims.identity == f"user-{people.attendee.pk}"
    assert claims.name == "Alice Attendee"
    assert claims.video.room_admin is False and claims.video.can_publish is True


@pytest.mark.parametrize("who", ["organizer", "co_organizer"])
def test_api_join_ticket_organizers_get_a_moderator_token(people, book, key, who):
    meeting = book()
    response = ticket(key, meeting, {"email": people.user(who).email})
    assert response.status_code == 200
    assert response.json()["role"] == "moderator"
    claims = verified(response, meeting)
    assert claims.video.room_admin is True
    assert claims.identity == f"user-{people.user(who).pk}"


def test_api_join_ticket_chair_gets_a_moderator_token(people, book, key):
    meeting = book()
    meeting.attendees.filter(user=people.attendee).update(role="chair")
    response = ticket(key, meeting, {"email": people.attendee.email.upper()})
    assert response.status_code == 200
    assert response.json()["role"] == "moderator"
    assert verified(response, meeting).video.room_admin is True


def test_api_join_ticket_on_jitsi_verifies_with_prosodys_rules(people, book, key):
    meeting = book(backend=jitsi_backend())
    response = ticket(key, meeting, {"email": people.organizer.email})
    assert response.status_code == 200
    body = response.json()
    assert body["provider"] == "jitsi" and body["role"] == "moderator"
    assert body["url"].startswith(f"{JITSI_URL}/{meeting.reservation.room_name}?jwt=")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        claims = jitsi_verify(body["token"], room=meeting.reservation.room_name)
    assert claims["context"]["user"]["email"] == people.organizer.email
    assert claims["context"]["user"]["affiliation"] == "owner"


# --- Refusals: the service's codes ------------------------------------------------------------


def test_api_join_ticket_before_window_is_409_with_opening_time(people, book, key):
    meeting = book()
    response = ticket(key, meeting, {"email": people.attendee.email}, MOMENTS["before"])
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_in_join_window"
    assert datetime.fromisoformat(body["opens_at"]) == OPENS_AT
    assert "token" not in body


def test_api_join_ticket_after_window_is_409_without_opening(people, book, key):
    meeting = book()
    response = ticket(key, meeting, {"email": people.attendee.email}, MOMENTS["after"])
    assert response.status_code == 409
    assert response.json()["code"] == "not_in_join_window"
    assert response.json()["opens_at"] is None


def test_api_join_ticket_of_a_cancelled_meeting_is_409(people, book, key):
    meeting = book()
    with time_machine.travel(MOMENTS["before"], tick=False):
        meeting_cancel(actor=people.organizer, meeting=meeting)
    response = ticket(key, meeting, {"email": people.attendee.email})
    assert response.status_code == 409
    assert response.json()["code"] == "meeting_cancelled"


def test_api_join_ticket_of_a_cancelled_occurrence_is_409(people, book, key):
    meeting = book(weekly=True)
    with time_machine.travel(MOMENTS["before"], tick=False):
        occurrence_cancel(actor=people.organizer, meeting=meeting, recurrence_id=START)
    body = {"email": people.attendee.email, "occurrence": "20260303T090000Z"}
    response = ticket(key, meeting, body)
    assert response.status_code == 409
    assert response.json()["code"] == "meeting_cancelled"
    # Without an occurrence, the series' next one is meant: not open yet.
    again = ticket(key, meeting, {"email": people.attendee.email})
    assert again.json()["code"] == "not_in_join_window"
    opens = START + timedelta(days=7) - timedelta(minutes=settings.JOIN_WINDOW_OPENS_MINUTES)
    assert datetime.fromisoformat(again.json()["opens_at"]) == opens


def test_api_join_ticket_for_an_occurrence_of_a_series(people, book, key):
    meeting = book(weekly=True)
    next_week = MOMENTS["inside"] + timedelta(days=7)
    body = {"email": people.attendee.email, "occurrence": "20260310T090000Z"}
    response = ticket(key, meeting, body, next_week)
    assert response.status_code == 200
    verified(response, meeting, next_week)
    unknown = {"email": people.attendee.email, "occurrence": "20260311T090000Z"}
    assert ticket(key, meeting, unknown, next_week).status_code == 404


@pytest.mark.parametrize(
    "email",
    ["host_member", "other_agency", "stranger@elsewhere.example"],
    ids=["colleague", "other-agency-user", "no-account"],
)
def test_api_join_ticket_for_someone_not_invited_is_403(people, book, key, email):
    meeting = book(access_level="invite")
    user = people.user(email)
    response = ticket(key, meeting, {"email": user.email if user else email})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "token" not in response.json()


def test_api_join_ticket_for_a_deactivated_attendee_is_403(people, book, key):
    meeting = book()
    people.attendee.is_active = False
    people.attendee.save(update_fields=["is_active"])
    response = ticket(key, meeting, {"email": people.attendee.email})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


# --- Access levels and the lobby --------------------------------------------------------------


def test_api_join_ticket_agency_meeting_lets_a_member_in(people, book, key):
    meeting = book(access_level="agency", lobby=False)
    response = ticket(key, meeting, {"email": people.host_member.email})
    assert response.status_code == 200
    assert response.json()["role"] == "participant"
    assert verified(response, meeting).identity == f"user-{people.host_member.pk}"
    # Another agency's staff is no member of the host agency.
    refused = ticket(key, meeting, {"email": people.other_member.email})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


def test_api_join_ticket_agency_meeting_with_lobby_is_403_lobby_required(people, book, key):
    meeting = book(access_level="agency", lobby=True)
    response = ticket(key, meeting, {"email": people.host_member.email})
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "lobby_required"
    assert body["join_url"] == f"http://testserver/meetings/{meeting.pk}/join/"
    assert "token" not in body
    # The API does not queue anyone: moderators see no phantom waiting entry.
    assert not LobbyEntry.objects.exists()


def test_api_join_ticket_member_admitted_from_the_web_lobby_gets_a_ticket(people, book, key):
    meeting = book(access_level="agency", lobby=True)
    with time_machine.travel(MOMENTS["inside"], tick=False):
        entry = lobby_enter(meeting=meeting, user=people.host_member).entry
        lobby_admit(actor=people.organizer, entry=entry)
    response = ticket(key, meeting, {"email": people.host_member.email})
    assert response.status_code == 200
    assert verified(response, meeting).identity == f"user-{people.host_member.pk}"


def test_api_join_ticket_member_refused_in_the_lobby_is_403(people, book, key):
    meeting = book(access_level="agency", lobby=True)
    with time_machine.travel(MOMENTS["inside"], tick=False):
        entry = lobby_enter(meeting=meeting, user=people.host_member).entry
        LobbyEntry.objects.filter(pk=entry.pk).update(
            status=LobbyStatus.REFUSED, decided_at=MOMENTS["inside"]
        )
    response = ticket(key, meeting, {"email": people.host_member.email})
    assert response.status_code == 403
    assert response.json()["code"] == "lobby_refused"


def test_api_join_ticket_link_guest_without_lobby_gets_a_guest_token(people, book, key):
    meeting = book(access_level="link", lobby=False)
    response = ticket(key, meeting, {"name": "  Gabriel   Guest "})
    assert response.status_code == 200
    assert response.json()["role"] == "participant"
    entry = LobbyEntry.objects.get(meeting=meeting)
    assert entry.status == LobbyStatus.ADMITTED and entry.user is None
    claims = verified(response, meeting)
    assert claims.identity == f"guest-{entry.pk}"
    assert claims.name == "Gabriel Guest"
    assert claims.video.room_admin is False


def test_api_join_ticket_link_guest_with_lobby_is_403_lobby_required(people, book, key):
    meeting = book(access_level="link", lobby=True)
    response = ticket(key, meeting, {"name": "Gabriel Guest"})
    assert response.status_code == 403
    assert response.json()["code"] == "lobby_required"
    assert response.json()["join_url"].endswith(f"/meetings/{meeting.pk}/join/")
    assert not LobbyEntry.objects.exists()


def test_api_join_ticket_link_guest_outside_the_window_is_409(people, book, key):
    meeting = book(access_level="link", lobby=True)
    response = ticket(key, meeting, {"name": "Gabriel Guest"}, MOMENTS["before"])
    assert response.status_code == 409
    assert response.json()["code"] == "not_in_join_window"


def test_api_join_ticket_link_unknown_email_without_name_is_400(people, book, key):
    meeting = book(access_level="link", lobby=False)
    response = ticket(key, meeting, {"email": "stranger@elsewhere.example"})
    assert response.status_code == 400
    assert response.json()["code"] == "name_required"
    assert not LobbyEntry.objects.exists()


# --- Input, visibility, scope -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "email", "required"),
        ({"email": "not-an-address"}, "email", "invalid"),
        ({"name": "x" * 81}, "name", "max_length"),
        ({"email": "a@b.example", "occurrence": "2026-03-03"}, "occurrence", "invalid_occurrence"),
    ],
)
def test_api_join_ticket_bad_body_is_400_with_field_errors(people, book, key, body, field, code):
    meeting = book()
    response = ticket(key, meeting, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert {(e["field"], e["code"]) for e in response.json()["errors"]} == {(field, code)}


def test_api_join_ticket_of_another_agencys_meeting_is_404(
    people, book, other_agency, make_api_key
):
    meeting = book()
    _key, other_key = make_api_key(other_agency)
    # Even for someone of the other agency who could join on the web.
    meeting.attendees.create(user=people.other_member, email=people.other_member.email)
    for email in (people.attendee.email, people.other_member.email):
        response = ticket(other_key, meeting, {"email": email})
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_api_join_ticket_of_an_unknown_meeting_is_404(people, book, key):
    meeting = book()
    meeting.pk += 1000
    assert ticket(key, meeting, {"email": people.attendee.email}).status_code == 404


def test_api_join_ticket_without_the_scope_is_403(people, book, agency, make_api_key):
    meeting = book()
    _key, raw = make_api_key(agency, scopes=["meetings:read", "meetings:write"])
    response = ticket(raw, meeting, {"email": people.attendee.email})
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert "join:issue" in response.json()["detail"]


# --- The token is never kept ------------------------------------------------------------------


def test_api_join_ticket_token_is_not_stored_nor_replayed_nor_logged(people, book, key, caplog):
    meeting = book()
    caplog.set_level(logging.DEBUG)
    first = ticket(key, meeting, {"email": people.attendee.email}, **{"Idempotency-Key": "k1"})
    later = MOMENTS["inside"] + timedelta(seconds=5)
    again = ticket(
        key, meeting, {"email": people.attendee.email}, later, **{"Idempotency-Key": "k1"}
    )
    assert first.status_code == again.status_code == 200
    assert "Idempotent-Replayed" not in again
    token = first.json()["token"]
    assert again.json()["token"] != token  # minted anew, not read back
    assert not IdempotentRequest.objects.exists()
    assert token not in caplog.text
    assert not any(token in json.dumps(event.detail) for event in AuditEvent.objects.all())


@pytest.mark.parametrize(("weekly", "queries"), [(False, 1), (True, 2)])
def test_api_join_ticket_reads_a_constant_handful_of_queries(
    people, book, key, django_assert_num_queries, weekly, queries
):
    meeting = book(weekly=weekly)
    ticket(key, meeting, {"email": people.attendee.email})  # reads the key, writes its last use
    # The meeting with its room, the person and their ties to it in one query (and a series'
    # exceptions): no write, nothing per attendee or per occurrence.
    with django_assert_num_queries(queries):
        response = ticket(key, meeting, {"email": people.attendee.email})
    assert response.status_code == 200
