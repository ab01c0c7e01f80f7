"""Who may join, by access level and time: anonymous, a guest with the link, an attendee, a
co-organizer, a member of the host agency and a member of another agency × invite / agency / link
× before / inside / after the join window, with the lobby off and on. Each case posts the join
form and checks the answer and whether a token left the server (and for whom)."""

from __future__ import annotations

import pytest
import time_machine
from django.urls import reverse

from rooms.models import LobbyEntry, LobbyStatus
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    LIVEKIT_MEET,
    MOMENTS,
    livekit_verify,
    token_from_url,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_deferred_reads")]

PERSONAS = ["anonymous", "guest", "attendee", "co_organizer", "host_member", "other_agency"]

# What each persona is to a meeting of each access level (the spec of the issue):
#   moderator / participant: joins directly; asks: joins through the lobby when it is on;
#   name: a guest who gave no name; login: must sign in; hidden: 404, the meeting stays secret.
AUTHORIZATION = {
    ("anonymous", "invite"): "login",
    ("anonymous", "agency"): "login",
    ("anonymous", "link"): "name",
    ("guest", "invite"): "login",
    ("guest", "agency"): "login",
    ("guest", "link"): "asks",
    ("attendee", "invite"): "participant",
    ("attendee", "agency"): "participant",
    ("attendee", "link"): "participant",
    ("co_organizer", "invite"): "moderator",
    ("co_organizer", "agency"): "moderator",
    ("co_organizer", "link"): "moderator",
    ("host_member", "invite"): "hidden",
    ("host_member", "agency"): "asks",
    ("host_member", "link"): "asks",
    ("other_agency", "invite"): "hidden",
    ("other_agency", "agency"): "hidden",
    ("other_agency", "link"): "asks",
}


@pytest.mark.parametrize("lobby", [False, True], ids=["lobby_off", "lobby_on"])
@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("level", ["invite", "agency", "link"])
@pytest.mark.parametrize("who", PERSONAS)
def test_join_matrix(who, level, moment, lobby, people, book):
    meeting = book(access_level=level, lobby=lobby)
    room = meeting.reservation.room_name
    url = reverse("meeting_join", args=[meeting.pk])
    verdict = AUTHORIZATION[(who, level)]

    with time_machine.travel(MOMENTS[moment], tick=False):
        response = people.client(who).post(url, {"name": "Gabriel Guest"} if who == "guest" else {})
        location = response.get("Location", "")
        token = token_from_url(location) if location.startswith(LIVEKIT_MEET) else None
        claims = livekit_verify(token, room=room) if token else None

    entries = LobbyEntry.objects.filter(meeting=meeting)
    assert "token=" not in response.content.decode()
    if verdict == "login":
        assert response.status_code == 302
        assert location.startswith(reverse("account_login"))
        assert token is None
        return
    if verdict == "hidden":
        assert response.status_code == 404
        assert "Budget review" not in response.content.decode()
        return
    if moment != "inside":
        assert response.status_code == 409
        assert token is None
        assert not entries.exists()
        return
    if verdict == "name":
        assert response.status_code == 400
        assert token is None
        assert not entries.exists()
        return
    if verdict == "asks" and lobby:
        assert response.status_code == 302
        assert location == reverse("lobby_wait", args=[meeting.pk])
        assert token is None
        assert entries.get().status == LobbyStatus.WAITING
        return
    # Into the room: 302 to the provider with a token for this room, role and person.
    assert response.status_code == 302
    assert claims is not None
    assert claims.video.room_admin is (verdict == "moderator")
    user = people.user(who)
    if user is not None:
        assert claims.identity == f"user-{user.pk}"
        assert claims.name == user.display_name
    else:
        guest_entry = entries.get()
        assert guest_entry.status == LobbyStatus.ADMITTED  # no lobby: admitted on arrival
        assert guest_entry.decided_by is None
        assert claims.identity == f"guest-{guest_entry.pk}"
        assert claims.name == "Gabriel Guest"
    assert response["Cache-Control"] == "no-store"
