"""join_ticket_issue and the lobby services: the error codes callers (web, API) rely on."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from agencies.models import AuditEvent
from meetings.services import meeting_cancel
from rooms.models import LobbyStatus, RoomReservation
from rooms.providers import JoinRole
from rooms.selectors import JoinState, join_window
from rooms.services import (
    LobbyRequired,
    NotInJoinWindow,
    join_ticket_issue,
    lobby_admit,
    lobby_enter,
    lobby_refuse,
)
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    END,
    MOMENTS,
    START,
    jitsi_backend,
    jitsi_verify,
    livekit_verify,
)
from visio_broker.errors import DomainError

pytestmark = pytest.mark.django_db


def test_join_ticket_for_attendee_inside_the_window(people, book):
    meeting = book()
    with time_machine.travel(MOMENTS["inside"], tick=False):
        ticket = join_ticket_issue(meeting=meeting, user=people.attendee)
        claims = livekit_verify(ticket.token, room=meeting.reservation.room_name)
    assert ticket.role == JoinRole.PARTICIPANT
    assert claims.identity == f"user-{people.attendee.pk}"


@pytest.mark.parametrize("who", ["organizer", "co_organizer"])
def test_join_ticket_organizers_are_moderators(people, book, who):
    meeting = book()
    with time_machine.travel(MOMENTS["inside"], tick=False):
        ticket = join_ticket_issue(meeting=meeting, user=people.user(who))
    assert ticket.role == JoinRole.MODERATOR


def test_join_ticket_chair_is_moderator(people, book):
    meeting = book()
    meeting.attendees.filter(user=people.attendee).update(role="chair")
    meeting.refresh_from_db()
    with time_machine.travel(MOMENTS["inside"], tick=False):
        assert join_ticket_issue(meeting=meeting, user=people.attendee).role == JoinRole.MODERATOR


def test_join_window_bounds_are_inclusive_at_opening_and_exclusive_at_closing(book):
    meeting = book()
    opens = START - timedelta(minutes=15)
    closes = END + timedelta(minutes=15)
    assert join_window(meeting=meeting, now=opens - timedelta(seconds=1)).state == "not_yet"
    assert join_window(meeting=meeting, now=opens).state == JoinState.OPEN
    assert join_window(meeting=meeting, now=closes - timedelta(seconds=1)).is_open
    assert join_window(meeting=meeting, now=closes).state == JoinState.ENDED


def test_join_window_follows_settings(book, settings):
    settings.JOIN_WINDOW_OPENS_MINUTES = 5
    settings.JOIN_GRACE_MINUTES = 0
    meeting = book()
    assert not join_window(meeting=meeting, now=START - timedelta(minutes=6)).is_open
    assert join_window(meeting=meeting, now=START - timedelta(minutes=5)).is_open
    assert not join_window(meeting=meeting, now=END).is_open


def test_join_ticket_before_the_window_says_when_it_opens(people, book):
    meeting = book()
    with time_machine.travel(MOMENTS["before"], tick=False), pytest.raises(NotInJoinWindow) as err:
        join_ticket_issue(meeting=meeting, user=people.attendee)
    assert err.value.code == "not_in_join_window"
    assert err.value.status == 409
    assert err.value.opens_at == START - timedelta(minutes=15)


def test_join_ticket_after_the_window_has_no_opening(people, book):
    meeting = book()
    with time_machine.travel(MOMENTS["after"], tick=False), pytest.raises(NotInJoinWindow) as err:
        join_ticket_issue(meeting=meeting, user=people.attendee)
    assert err.value.opens_at is None


def test_join_ticket_for_cancelled_meeting_is_refused(people, book):
    meeting = book()
    with time_machine.travel(MOMENTS["before"], tick=False):
        meeting = meeting_cancel(actor=people.organizer, meeting=meeting)
    RoomReservation.objects.filter(meeting=meeting).update(released_at=None)
    with time_machine.travel(MOMENTS["inside"], tick=False), pytest.raises(DomainError) as err:
        join_ticket_issue(meeting=meeting, user=people.organizer)
    assert err.value.code == "meeting_cancelled"


def test_join_ticket_for_someone_not_invited_is_forbidden(people, book):
    meeting = book()
    with time_machine.travel(MOMENTS["inside"], tick=False), pytest.raises(DomainError) as err:
        join_ticket_issue(meeting=meeting, user=people.host_member)
    assert (err.value.code, err.value.status) == ("forbidden", 403)


def test_join_ticket_without_reservation_is_no_room(people, book):
    meeting = book()
    RoomReservation.objects.filter(meeting=meeting).delete()
    meeting.refresh_from_db()
    meeting._state.fields_cache.pop("reservation", None)
    with time_machine.travel(MOMENTS["inside"], tick=False), pytest.raises(DomainError) as err:
        join_ticket_issue(meeting=meeting, user=people.attendee)
    assert err.value.code == "no_room"


def test_join_ticket_for_released_reservation_is_no_room(people, book):
    meeting = book()
    RoomReservation.objects.filter(meeting=meeting).update(released_at=MOMENTS["before"])
    meeting.refresh_from_db()
    meeting._state.fields_cache.pop("reservation", None)
    with time_machine.travel(MOMENTS["inside"], tick=False), pytest.raises(DomainError) as err:
        join_ticket_issue(meeting=meeting, user=people.attendee)
    assert err.value.code == "no_room"


def test_join_ticket_with_missing_backend_secret_is_backend_unavailable(
    people, book, monkeypatch, caplog
):
    meeting = book()
    monkeypatch.delenv("VB_TEST_JOIN_LIVEKIT_SECRET")
    with time_machine.travel(MOMENTS["inside"], tick=False), pytest.raises(DomainError) as err:
        join_ticket_issue(meeting=meeting, user=people.attendee)
    assert (err.value.code, err.value.status) == ("backend_unavailable", 503)
    assert "join-livekit" in caplog.text


def test_join_ticket_uses_the_reserved_backend_kind(people, book):
    meeting = book(backend=jitsi_backend())
    with time_machine.travel(MOMENTS["inside"], tick=False):
        ticket = join_ticket_issue(meeting=meeting, user=people.organizer)
        claims = jitsi_verify(ticket.token, room=meeting.reservation.room_name)
    assert ticket.provider == "jitsi"
    assert claims["context"]["user"]["id"] == f"user-{people.organizer.pk}"
    assert claims["context"]["user"]["email"] == people.organizer.email
    assert claims["context"]["user"]["affiliation"] == "owner"


def test_join_ticket_for_guest_needs_an_admitted_entry(people, book):
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        with pytest.raises(LobbyRequired) as err:
            join_ticket_issue(meeting=meeting)
        assert err.value.code == "lobby_required"
        entry = lobby_enter(meeting=meeting, display_name="  Gabriel   Guest ").entry
        assert entry.display_name == "Gabriel Guest"
        with pytest.raises(LobbyRequired):
            join_ticket_issue(meeting=meeting, lobby_entry=entry)
        lobby_refuse(actor=people.organizer, entry=entry)
        entry.refresh_from_db()
        with pytest.raises(LobbyRequired) as err:
            join_ticket_issue(meeting=meeting, lobby_entry=entry)
        assert err.value.code == "lobby_refused"
        lobby_admit(actor=people.co_organizer, entry=entry)
        entry.refresh_from_db()
        ticket = join_ticket_issue(meeting=meeting, lobby_entry=entry)
    assert ticket.role == JoinRole.PARTICIPANT
    assert list(
        AuditEvent.objects.filter(object_id=str(entry.pk)).values_list("action", flat=True)
    ) == ["lobby.admitted", "lobby.refused"]  # newest first


def test_join_ticket_refuses_someone_elses_lobby_entry(people, book):
    meeting = book(access_level="agency")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        guest_entry = lobby_enter(meeting=meeting, user=people.host_member).entry
        lobby_admit(actor=people.organizer, entry=guest_entry)
        guest_entry.refresh_from_db()
        with pytest.raises(DomainError):
            join_ticket_issue(meeting=meeting, user=people.other_member, lobby_entry=guest_entry)
        other = book(access_level="link")
        with pytest.raises(LobbyRequired):
            join_ticket_issue(meeting=other, user=people.host_member, lobby_entry=guest_entry)


def test_lobby_enter_is_idempotent_for_signed_in_people(people, book):
    meeting = book(access_level="agency")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        first = lobby_enter(meeting=meeting, user=people.host_member)
        again = lobby_enter(meeting=meeting, user=people.host_member)
    assert first.entry.pk == again.entry.pk
    assert first.secret == ""
    assert first.entry.status == LobbyStatus.WAITING
    assert first.entry.display_name == "Hugo Host"


def test_lobby_enter_not_needed_for_attendees(people, book):
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["inside"], tick=False), pytest.raises(DomainError) as err:
        lobby_enter(meeting=meeting, user=people.attendee)
    assert err.value.code == "lobby_not_needed"


@pytest.mark.parametrize(("name", "code"), [("   ", "name_required"), ("x" * 81, "name_too_long")])
def test_lobby_enter_guest_name_is_checked(book, name, code):
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["inside"], tick=False), pytest.raises(DomainError) as err:
        lobby_enter(meeting=meeting, display_name=name)
    assert err.value.code == code


def test_lobby_enter_outside_the_window_is_refused(book):
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["before"], tick=False), pytest.raises(NotInJoinWindow):
        lobby_enter(meeting=meeting, display_name="Early Bird")


def test_lobby_is_capped(book, monkeypatch):
    monkeypatch.setattr("rooms.services.LOBBY_MAX_WAITING", 2)
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        lobby_enter(meeting=meeting, display_name="One")
        lobby_enter(meeting=meeting, display_name="Two")
        with pytest.raises(DomainError) as err:
            lobby_enter(meeting=meeting, display_name="Three")
    assert err.value.code == "lobby_full"


@pytest.mark.parametrize("who", ["attendee", "host_member", "other_agency"])
def test_lobby_decisions_only_by_moderators(people, book, who):
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        entry = lobby_enter(meeting=meeting, display_name="Gabriel").entry
        for decide in (lobby_admit, lobby_refuse):
            with pytest.raises(DomainError) as err:
                decide(actor=people.user(who), entry=entry)
            assert err.value.status == 403
    entry.refresh_from_db()
    assert entry.status == LobbyStatus.WAITING
    assert not AuditEvent.objects.filter(action__startswith="lobby.").exists()


def test_lobby_admit_twice_records_once(people, book):
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        entry = lobby_enter(meeting=meeting, display_name="Gabriel").entry
        lobby_admit(actor=people.organizer, entry=entry)
        lobby_admit(actor=people.co_organizer, entry=entry)
    entry.refresh_from_db()
    assert entry.decided_by == people.organizer
    event = AuditEvent.objects.get(action="lobby.admitted")
    assert event.actor == people.organizer
    assert event.agency == meeting.host_agency
    assert event.detail == {
        "meeting": meeting.pk,
        "occurrence": "20260303T090000Z",
        "name": "Gabriel",
        "user": None,
        "previous": "waiting",
    }
