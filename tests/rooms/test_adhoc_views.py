"""Ad-hoc "meet now" rooms on the web: opening one, its page and link, joining through the
provider, closing it, and what each kind of visitor gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from agencies.models import AuditEvent, Role
from rooms.models import BackendKind, MediaBackend, ReservedWindow, RoomReservation
from rooms.selectors import backends_allowed_for
from rooms.services import adhoc_room_open
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    LIVEKIT_MEET,
    jitsi_backend,
    jitsi_verify,
    livekit_backend,
    livekit_verify,
    token_from_url,
)

pytestmark = pytest.mark.django_db

# Tuesday 3 March 2026, 10:00 in Paris.
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
NEW = "/rooms/now/"


@pytest.fixture
def _test_backends() -> None:
    """Exactly the backends each test creates (the shared per-country ones would always fit)."""


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def room_path(room: RoomReservation, action: str = "") -> str:
    name = {"": "adhoc_room", "join": "adhoc_room_join", "close": "adhoc_room_close"}[action]
    return reverse(name, args=[room.room_name])


def request(user, method: str, path: str, moment: datetime = NOW, data=None):
    with time_machine.travel(moment, tick=False):
        client = client_for(user)
        return client.post(path, data or {}) if method == "post" else client.get(path)


@pytest.fixture
def room(people, join_secrets) -> RoomReservation:
    livekit_backend()
    with time_machine.travel(NOW, tick=False):
        return adhoc_room_open(actor=people.organizer, title="Quick call")


# --- Opening a room ------------------------------------------------------------------------------


def test_adhoc_open_by_an_organizer_reserves_now_and_goes_to_the_room(people, agency, other_agency):
    # A heavier backend of another agency in the same country is not the agency's to use.
    MediaBackend.objects.create(
        name="theirs", kind=BackendKind.LIVEKIT, base_url="wss://theirs.test", api_key="k",
        secret_env="X", country="FR", capacity=1000, weight=900, agency=other_agency,
    )  # fmt: skip
    ours = livekit_backend()
    response = request(people.organizer, "post", NEW, data={"title": "  Quick call "})
    room = RoomReservation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/rooms/now/{room.room_name}/"
    assert (room.title, room.created_by, room.agency, room.meeting) == (
        "Quick call",
        people.organizer,
        agency,
        None,
    )
    assert room.backend == ours
    assert backends_allowed_for(room.agency).filter(pk=room.backend_id).exists()
    assert list(room.windows.values_list("start", "end", "participants")) == [
        (NOW, NOW + timedelta(hours=1), 2)
    ]
    assert AuditEvent.objects.filter(action="room.opened", object_id=str(room.pk)).exists()


def test_adhoc_open_without_a_title_is_called_meet_now(people):
    livekit_backend()
    assert request(people.organizer, "post", NEW).status_code == 302
    assert RoomReservation.objects.get().title == "Meet now"


@pytest.mark.parametrize("method", ["get", "post"])
def test_adhoc_open_by_a_member_is_403_and_writes_nothing(people, method):
    livekit_backend()
    response = request(people.attendee, method, NEW)
    assert response.status_code == 403
    if method == "post":
        assert "Only organizers may open a room." in response.content.decode()
    assert not RoomReservation.objects.exists()


def test_adhoc_open_anonymous_signs_in_first(people):
    response = request(None, "post", NEW)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert not RoomReservation.objects.exists()


def test_adhoc_open_without_capacity_is_409_and_writes_nothing(people):
    livekit_backend()
    MediaBackend.objects.update(capacity=1)  # the room holds two
    response = request(people.organizer, "post", NEW, data={"title": "Too many"})
    page = response.content.decode()
    assert response.status_code == 409
    assert "No video backend has room for 2 participants on 2026-03-03 10:00–11:00" in page
    assert 'value="Too many"' in page  # the form keeps what was typed
    assert not RoomReservation.objects.exists()
    assert not ReservedWindow.objects.exists()
    assert not AuditEvent.objects.filter(action="room.opened").exists()


def test_adhoc_open_without_any_backend_is_503(people):
    response = request(people.organizer, "post", NEW)
    assert response.status_code == 503
    assert "No video backend is configured for your agency" in response.content.decode()
    assert not RoomReservation.objects.exists()


def test_adhoc_open_title_too_long_is_400(people):
    livekit_backend()
    response = request(people.organizer, "post", NEW, data={"title": "x" * 201})
    assert response.status_code == 400
    assert not RoomReservation.objects.exists()


@pytest.mark.parametrize(("who", "shown"), [("organizer", True), ("attendee", False)])
def test_meet_now_button_in_the_header_and_agenda_for_those_who_may_book(people, who, shown):
    page = request(people.user(who), "get", reverse("agenda")).content.decode()
    assert (f'action="{NEW}"' in page) is shown
    assert ('data-testid="meet-now"' in page) is shown


# --- The room's page -----------------------------------------------------------------------------


def test_adhoc_room_page_shows_title_opener_end_and_link(people, room):
    response = request(people.organizer, "get", room_path(room))
    page = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Quick call</h1>" in page
    assert "Opened by Olivia Organizer (Ministère Test)." in page
    assert "Open until 11:00" in page  # Paris time
    assert f'value="{settings.SITE_URL}/rooms/now/{room.room_name}/"' in page
    assert f'action="{room_path(room, "join")}"' in page
    assert f'action="{room_path(room, "close")}"' in page
    assert "token=" not in page and "jwt=" not in page


@pytest.mark.parametrize("who", ["host_member", "other_agency"])
def test_adhoc_room_page_for_others_with_the_link_has_join_but_not_close(people, room, who):
    response = request(people.user(who), "get", room_path(room))
    page = response.content.decode()
    assert response.status_code == 200
    assert f'action="{room_path(room, "join")}"' in page
    assert f'action="{room_path(room, "close")}"' not in page


@pytest.mark.parametrize("action", ["", "join", "close"])
def test_adhoc_room_anonymous_is_sent_to_sign_in_and_back_to_the_page(people, room, action):
    response = request(None, "post" if action else "get", room_path(room, action))
    assert response.status_code == 302
    login = reverse("account_login")
    assert response["Location"] == f"{login}?next=/rooms/now/{room.room_name}/"
    assert RoomReservation.objects.get().released_at is None


def test_adhoc_room_unknown_or_of_a_meeting_is_404(people, book):
    livekit_backend()
    meeting = book()
    assert request(people.organizer, "get", "/rooms/now/vb-unknown/").status_code == 404
    path = f"/rooms/now/{meeting.reservation.room_name}/"
    assert request(people.organizer, "get", path).status_code == 404
    assert request(people.organizer, "post", f"{path}join/").status_code == 404


# --- Joining -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "moderator"),
    [("organizer", True), ("host_member", False), ("other_agency", False)],
)
def test_adhoc_join_redirects_to_livekit_with_a_token_for_the_room(people, room, who, moderator):
    response = request(people.user(who), "post", room_path(room, "join"))
    assert response.status_code == 302
    assert response["Location"].startswith(f"{LIVEKIT_MEET}/custom?")
    assert response["Cache-Control"] == "no-store"
    user = people.user(who)
    with time_machine.travel(NOW, tick=False):
        claims = livekit_verify(token_from_url(response["Location"]), room=room.room_name)
    assert claims.identity == f"user-{user.pk}"
    assert claims.video.room_admin is moderator


@pytest.mark.parametrize(
    ("who", "affiliation"), [("organizer", "owner"), ("host_member", "member")]
)
def test_adhoc_join_on_jitsi_goes_through_the_jitsi_provider(
    people, join_secrets, who, affiliation
):
    backend = jitsi_backend()
    with time_machine.travel(NOW, tick=False):
        room = adhoc_room_open(actor=people.organizer, title="Call")
    assert room.backend == backend
    response = request(people.user(who), "post", room_path(room, "join"))
    assert response.status_code == 302
    with time_machine.travel(NOW, tick=False):
        claims = jitsi_verify(token_from_url(response["Location"]), room=room.room_name)
    assert claims["context"]["user"]["affiliation"] == affiliation


def test_adhoc_join_without_a_web_client_is_503_with_a_message(people, join_secrets):
    livekit_backend(frontend=False)
    with time_machine.travel(NOW, tick=False):
        room = adhoc_room_open(actor=people.organizer, title="Call")
    response = request(people.organizer, "post", room_path(room, "join"))
    assert response.status_code == 503
    assert "This room has no web client." in response.content.decode()
    assert "Location" not in response


def test_adhoc_room_after_its_hour_is_closed(people, room):
    later = NOW + timedelta(hours=1, seconds=1)
    page = request(people.host_member, "get", room_path(room), later)
    assert page.status_code == 410
    assert "This room is closed" in page.content.decode()
    join = request(people.organizer, "post", room_path(room, "join"), later)
    assert join.status_code == 410
    assert "Location" not in join


# --- Closing -------------------------------------------------------------------------------------


def test_adhoc_close_by_the_creator_releases_the_room(people, room):
    response = request(people.organizer, "post", room_path(room, "close"))
    assert response.status_code == 302
    assert response["Location"] == room_path(room)
    room.refresh_from_db()
    assert room.released_at == NOW
    assert not room.windows.exists()  # the capacity is given back
    later = NOW + timedelta(minutes=1)
    page = request(people.organizer, "get", room_path(room), later)
    assert page.status_code == 410
    assert "This room is closed" in page.content.decode()
    join = request(people.host_member, "post", room_path(room, "join"), later)
    assert join.status_code == 410
    assert "Location" not in join


def test_adhoc_close_by_an_admin_of_the_agency_is_allowed(people, room, agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    # Admins set up two-factor sign-in before anything else.
    Authenticator.objects.create(
        user=admin, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
    )
    assert (
        f'action="{room_path(room, "close")}"'
        in request(admin, "get", room_path(room)).content.decode()
    )
    assert request(admin, "post", room_path(room, "close")).status_code == 302
    room.refresh_from_db()
    assert room.released_at == NOW


@pytest.mark.parametrize("who", ["host_member", "other_agency"])
def test_adhoc_close_by_someone_else_is_403(people, room, who):
    response = request(people.user(who), "post", room_path(room, "close"))
    assert response.status_code == 403
    assert "You may not close this room." in response.content.decode()
    room.refresh_from_db()
    assert room.released_at is None
    assert room.windows.count() == 1
