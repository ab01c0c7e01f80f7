"""The lobby end to end over HTTP: a guest asks to join and waits (the status fragment says so),
the organizer admits them from the meeting page (audited, recorded on the entry), and the guest's
next poll takes them on to the room. Refusals, permissions and polling economy too."""

from __future__ import annotations

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from agencies.models import AuditEvent
from rooms.models import LobbyEntry, LobbyStatus
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    LIVEKIT_MEET,
    MOMENTS,
    livekit_verify,
    token_from_url,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_deferred_reads")]

INSIDE = MOMENTS["inside"]
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _inside_the_window():
    with time_machine.travel(INSIDE, tick=False):
        yield


@pytest.fixture
def meeting(book):
    return book(access_level="link")


def urls(meeting, entry=None):
    pk = meeting.pk
    found = {
        "join": reverse("meeting_join", args=[pk]),
        "wait": reverse("lobby_wait", args=[pk]),
        "status": reverse("lobby_status", args=[pk]),
        "queue": reverse("lobby_queue", args=[pk, "20260303T090000Z"]),
        "detail": reverse("meeting_detail", args=[pk]),
    }
    if entry is not None:
        found["admit"] = reverse("lobby_admit", args=[pk, entry.pk])
        found["refuse"] = reverse("lobby_refuse", args=[pk, entry.pk])
    return found


def knock(meeting, name="Gabriel Guest") -> tuple[Client, LobbyEntry]:
    guest = Client()
    response = guest.post(urls(meeting)["join"], {"name": name})
    assert response.status_code == 302
    assert response["Location"] == urls(meeting)["wait"]
    return guest, LobbyEntry.objects.get(display_name=name)


def test_lobby_guest_waits_until_admitted_then_goes_to_the_room(people, meeting):
    guest, entry = knock(meeting)
    u = urls(meeting, entry)

    # Waiting: the page and its status fragment say so; the fragment polls every 3 s.
    page = guest.get(u["wait"]).content.decode()
    assert 'data-state="waiting"' in page
    assert "Please wait, Gabriel Guest: a moderator will let you in." in page
    assert f'hx-get="{u["status"]}?since=waiting"' in page
    assert 'hx-trigger="every 3s"' in page
    fragment = guest.get(u["status"], **HTMX)
    assert fragment.status_code == 200
    assert 'data-state="waiting"' in fragment.content.decode()
    assert "HX-Redirect" not in fragment
    # Polls while nothing changed swap nothing.
    assert guest.get(f"{u['status']}?since=waiting", **HTMX).status_code == 204
    # No way round the lobby: the join form gives no token yet.
    assert guest.post(u["join"])["Location"] == u["wait"]

    # The organizer sees the guest on the meeting page and admits them (htmx).
    organizer = Client()
    organizer.force_login(people.organizer)
    assert "Gabriel Guest" in organizer.get(u["detail"]).content.decode()
    queue = organizer.post(u["admit"], **HTMX)
    assert queue.status_code == 200
    assert "Nobody is waiting." in queue.content.decode()
    assert "Gabriel Guest (admitted, Olivia Organizer)" in queue.content.decode()
    entry.refresh_from_db()
    assert entry.status == LobbyStatus.ADMITTED
    assert entry.decided_by == people.organizer
    assert entry.decided_at == INSIDE
    event = AuditEvent.objects.get(action="lobby.admitted")
    assert (event.actor, event.object_id) == (people.organizer, str(entry.pk))
    assert event.detail["name"] == "Gabriel Guest"

    # The guest's next poll brings the join form that lobby.js submits; it leads to the room.
    poll = guest.get(f"{u['status']}?since=waiting", **HTMX)
    assert poll.status_code == 200
    fragment = poll.content.decode()
    assert 'data-state="admitted"' in fragment
    assert f'<form method="post" action="{u["join"]}" data-auto-join>' in fragment
    go = guest.post(u["join"])
    assert go.status_code == 302
    assert go["Location"].startswith(f"{LIVEKIT_MEET}/custom?")
    assert go["Cache-Control"] == "no-store"
    claims = livekit_verify(token_from_url(go["Location"]), room=meeting.reservation.room_name)
    assert claims.identity == f"guest-{entry.pk}"
    assert claims.name == "Gabriel Guest"
    assert claims.video.room_admin is False


def test_lobby_refused_guest_is_told_and_gets_no_token(people, meeting):
    guest, entry = knock(meeting)
    u = urls(meeting, entry)
    organizer = Client()
    organizer.force_login(people.co_organizer)
    response = organizer.post(u["refuse"])  # without htmx: back to the meeting page
    assert response.status_code == 302
    assert response["Location"] == f"{u['detail']}#join"
    poll = guest.get(f"{u['status']}?since=waiting", **HTMX)
    assert 'data-state="refused"' in poll.content.decode()
    assert "A moderator declined your request to join." in poll.content.decode()
    assert "data-auto-join" not in poll.content.decode()
    again = guest.post(u["join"])
    assert again.status_code == 302
    assert again["Location"] == u["wait"]
    assert AuditEvent.objects.get(action="lobby.refused").actor == people.co_organizer


def test_lobby_signed_in_colleague_waits_with_their_own_identity(people, book):
    meeting = book(access_level="agency")
    colleague = Client()
    colleague.force_login(people.host_member)
    assert colleague.post(urls(meeting)["join"])["Location"] == urls(meeting)["wait"]
    entry = LobbyEntry.objects.get()
    assert (entry.user, entry.display_name, entry.secret_hash) == (
        people.host_member,
        "Hugo Host",
        "",
    )
    organizer = Client()
    organizer.force_login(people.organizer)
    organizer.post(urls(meeting, entry)["admit"])
    go = colleague.post(urls(meeting)["join"])
    claims = livekit_verify(token_from_url(go["Location"]), room=meeting.reservation.room_name)
    assert claims.identity == f"user-{people.host_member.pk}"


def test_lobby_status_of_another_browser_is_not_the_guests(meeting):
    knock(meeting)
    stranger = Client()
    assert stranger.get(urls(meeting)["status"]).status_code == 404
    assert stranger.get(urls(meeting)["status"], **HTMX)["HX-Redirect"] == urls(meeting)["join"]
    assert stranger.get(urls(meeting)["wait"])["Location"] == urls(meeting)["join"]
    assert "token=" not in stranger.post(urls(meeting)["join"]).get("Location", "")


def test_lobby_page_loaded_after_admission_waits_for_a_click(people, meeting):
    """Only the live switch from waiting to admitted joins by itself: reloading the page (or
    coming back to it from the room) must not send the guest straight in again."""
    guest, entry = knock(meeting)
    organizer = Client()
    organizer.force_login(people.organizer)
    organizer.post(urls(meeting, entry)["admit"])
    page = guest.get(urls(meeting)["wait"]).content.decode()
    assert 'data-state="admitted"' in page
    assert "Join the meeting" in page
    assert "data-auto-join" not in page
    assert "hx-get" not in page.split('id="lobby-status"')[1].split(">")[0]  # no more polling


@pytest.mark.parametrize(("who", "status"), [("attendee", 403), ("other_agency", 404)])
def test_lobby_decisions_by_others_are_refused(people, meeting, who, status):
    _guest, entry = knock(meeting)
    client = people.client(who)
    u = urls(meeting, entry)
    assert client.post(u["admit"]).status_code == status
    assert client.post(u["refuse"]).status_code == status
    assert client.get(u["queue"]).status_code == status
    entry.refresh_from_db()
    assert entry.status == LobbyStatus.WAITING


def test_lobby_queue_needs_sign_in(meeting):
    _guest, entry = knock(meeting)
    response = Client().post(urls(meeting, entry)["admit"])
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_lobby_queue_polls_swap_only_on_change(people, meeting):
    organizer = Client()
    organizer.force_login(people.organizer)
    first = organizer.get(urls(meeting)["queue"], **HTMX)
    page = first.content.decode()
    assert "Nobody is waiting." in page
    version = page.split("?v=")[1].split('"')[0]
    assert organizer.get(f"{urls(meeting)['queue']}?v={version}", **HTMX).status_code == 204
    knock(meeting)
    changed = organizer.get(f"{urls(meeting)['queue']}?v={version}", **HTMX)
    assert changed.status_code == 200
    assert "1 person is waiting." in changed.content.decode()


def test_lobby_off_lets_link_guests_straight_in(book):
    meeting = book(access_level="link", lobby=False)
    guest = Client()
    response = guest.post(urls(meeting)["join"], {"name": "Gabriel Guest"})
    assert response["Location"].startswith(f"{LIVEKIT_MEET}/custom?")
    entry = LobbyEntry.objects.get()
    assert (entry.status, entry.decided_by) == (LobbyStatus.ADMITTED, None)
    # Back on the join page later (the token expired): the same identity, no new entry.
    again = guest.post(urls(meeting)["join"], {"name": "Someone Else"})
    claims = livekit_verify(token_from_url(again["Location"]), room=meeting.reservation.room_name)
    assert claims.identity == f"guest-{entry.pk}"
    assert LobbyEntry.objects.count() == 1


def test_lobby_guest_without_a_name_is_asked_again(meeting):
    response = Client().post(urls(meeting)["join"], {"name": "  "})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not LobbyEntry.objects.exists()
