"""The join page and the meeting page's join section: what each moment shows, series and
occurrences, and that a token only ever leaves in the redirect to the provider."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.urls import reverse

from meetings.ical import join_url
from meetings.services import occurrence_cancel
from rooms.models import LobbyEntry, RoomReservation
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    JITSI_URL,
    LIVEKIT_MEET,
    MOMENTS,
    START,
    jitsi_backend,
    jitsi_verify,
    livekit_backend,
    livekit_verify,
    token_from_url,
)

pytestmark = pytest.mark.django_db

NEXT_TUESDAY = START + timedelta(days=7)


def join_path(meeting) -> str:
    return reverse("meeting_join", args=[meeting.pk])


def get(people, who, path, moment):
    with time_machine.travel(moment, tick=False):
        return people.client(who).get(path)


def post(people, who, path, moment, data=None):
    with time_machine.travel(moment, tick=False):
        return people.client(who).post(path, data or {})


def test_join_page_before_the_window_says_when_it_opens(people, book):
    meeting = book()
    response = get(people, "attendee", join_path(meeting), MOMENTS["before"])
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-state="not_yet"' in page
    assert "The room opens on Tuesday 3 March 2026 at 09:45." in page  # Paris time
    assert "<button" not in page.split('id="main"')[1]


def test_join_page_inside_the_window_has_the_join_button(people, book):
    meeting = book()
    page = get(people, "attendee", join_path(meeting), MOMENTS["inside"]).content.decode()
    assert 'data-state="open"' in page
    assert "Join the meeting" in page
    assert 'name="name"' not in page  # signed-in people are not asked for a name


def test_join_page_for_a_link_guest_asks_for_a_name(people, book):
    meeting = book(access_level="link")
    page = get(people, "anonymous", join_path(meeting), MOMENTS["inside"]).content.decode()
    assert '<label for="id_name">Your name' in page
    assert 'autocomplete="name"' in page
    assert "Ask to join" in page
    assert "Europe/Paris" in page  # guests see the meeting's own time zone


def test_join_page_after_the_window_says_it_ended(people, book):
    meeting = book()
    page = get(people, "attendee", join_path(meeting), MOMENTS["after"]).content.decode()
    assert 'data-state="ended"' in page
    assert "This meeting has ended." in page


def test_join_page_of_a_cancelled_occurrence_says_so(people, book):
    meeting = book(weekly=True)
    with time_machine.travel(MOMENTS["before"], tick=False):
        occurrence_cancel(actor=people.organizer, meeting=meeting, recurrence_id=START)
    path = reverse("occurrence_join", args=[meeting.pk, "20260303T090000Z"])
    response = get(people, "attendee", path, MOMENTS["inside"])
    assert "This occurrence is cancelled." in response.content.decode()
    assert post(people, "attendee", path, MOMENTS["inside"]).status_code == 409
    # The series' own join link points at the next occurrence instead.
    page = get(people, "attendee", join_path(meeting), MOMENTS["inside"]).content.decode()
    assert "The room opens on Tuesday 10 March 2026 at 09:45." in page


def test_join_series_inside_an_occurrence_window_joins_that_occurrence(people, book):
    meeting = book(weekly=True, access_level="link")
    moment = NEXT_TUESDAY + timedelta(minutes=5)
    response = post(people, "guest", join_path(meeting), moment, {"name": "Gabriel"})
    assert response.status_code == 302
    assert LobbyEntry.objects.get().occurrence_key == "20260310T090000Z"


def test_join_occurrence_link_gives_a_token_for_that_occurrence(people, book):
    meeting = book(weekly=True)
    path = reverse("occurrence_join", args=[meeting.pk, "20260310T090000Z"])
    response = post(people, "attendee", path, NEXT_TUESDAY)
    assert response.status_code == 302
    with time_machine.travel(NEXT_TUESDAY, tick=False):
        livekit_verify(token_from_url(response["Location"]), room=meeting.reservation.room_name)


def test_join_occurrence_link_of_another_occurrence_is_not_open(people, book):
    meeting = book(weekly=True)
    path = reverse("occurrence_join", args=[meeting.pk, "20260317T090000Z"])
    assert post(people, "attendee", path, NEXT_TUESDAY).status_code == 409


def test_join_unknown_occurrence_is_404(people, book):
    meeting = book(weekly=True)
    path = reverse("occurrence_join", args=[meeting.pk, "20260304T090000Z"])
    assert get(people, "attendee", path, MOMENTS["inside"]).status_code == 404


def test_join_occurrence_link_of_a_one_off_meeting_redirects(people, book):
    meeting = book()
    path = reverse("occurrence_join", args=[meeting.pk, "20260303T090000Z"])
    response = get(people, "attendee", path, MOMENTS["inside"])
    assert response.status_code == 302
    assert response["Location"] == join_path(meeting)


def test_join_unknown_meeting_is_404(people):
    assert get(people, "attendee", "/meetings/999999/join/", MOMENTS["inside"]).status_code == 404


def test_join_redirect_is_the_only_place_the_token_appears(people, book):
    meeting = book()
    page = get(people, "organizer", join_path(meeting), MOMENTS["inside"])
    response = post(people, "organizer", join_path(meeting), MOMENTS["inside"])
    token = token_from_url(response["Location"])
    assert response["Location"].startswith(f"{LIVEKIT_MEET}/custom?")
    assert token not in page.content.decode()
    assert token not in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"


def test_join_to_jitsi_redirects_to_host_room_jwt(people, book):
    meeting = book(backend=jitsi_backend())
    room = meeting.reservation.room_name
    response = post(people, "co_organizer", join_path(meeting), MOMENTS["inside"])
    assert response.status_code == 302
    assert response["Location"].startswith(f"{JITSI_URL}/{room}?jwt=")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        claims = jitsi_verify(token_from_url(response["Location"]), room=room)
    assert claims["context"]["user"]["name"] == "Colin Co"
    assert claims["context"]["user"]["affiliation"] == "owner"


def test_join_without_web_client_explains_instead_of_redirecting(people, book):
    meeting = book(backend=livekit_backend(frontend=False, name="join-livekit-sdk-only"))
    response = post(people, "attendee", join_path(meeting), MOMENTS["inside"])
    assert response.status_code == 503
    assert "This room has no web client" in response.content.decode()


def test_join_without_room_says_so(people, book):
    meeting = book()
    RoomReservation.objects.filter(meeting=meeting).delete()
    response = post(people, "attendee", join_path(meeting), MOMENTS["inside"])
    assert response.status_code == 409
    assert "No room is reserved for this meeting." in response.content.decode()


def test_join_with_backend_secret_missing_is_503(people, book, monkeypatch):
    meeting = book()
    monkeypatch.delenv("VB_TEST_JOIN_LIVEKIT_SECRET")
    response = post(people, "attendee", join_path(meeting), MOMENTS["inside"])
    assert response.status_code == 503
    assert "cannot be reached right now" in response.content.decode()


def test_join_page_get_for_waiting_person_goes_to_the_lobby(people, book):
    meeting = book(access_level="agency")
    client = people.client("host_member")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        client.post(join_path(meeting))
        response = client.get(join_path(meeting))
    assert response.status_code == 302
    assert response["Location"] == reverse("lobby_wait", args=[meeting.pk])


def test_ical_join_url_is_the_join_page():
    from meetings.models import Meeting

    meeting = Meeting(pk=42)
    assert join_url(meeting) == f"{settings.SITE_URL}/meetings/42/join/"


# --- The meeting page's join section --------------------------------------------------------


def detail(people, who, meeting, moment):
    return get(people, who, reverse("meeting_detail", args=[meeting.pk]), moment).content.decode()


def test_meeting_page_before_the_window_shows_the_opening_time(people, book):
    page = detail(people, "attendee", book(), MOMENTS["before"])
    assert 'data-testid="join-opens"' in page
    assert "The room opens on Tuesday 3 March 2026 at 09:45." in page
    assert 'data-testid="join-button"' not in page


def test_meeting_page_inside_the_window_has_a_join_button(people, book):
    meeting = book()
    page = detail(people, "attendee", meeting, MOMENTS["inside"])
    assert 'data-testid="join-button"' in page
    assert f'action="{join_path(meeting)}"' in page
    assert "lobby-queue" not in page  # invite-only: nobody waits


def test_meeting_page_shows_moderators_the_lobby_queue(people, book):
    meeting = book(access_level="link")
    with time_machine.travel(MOMENTS["inside"], tick=False):
        people.client("guest").post(join_path(meeting), {"name": "Gabriel Guest"})
    page = detail(people, "organizer", meeting, MOMENTS["inside"])
    assert 'data-testid="lobby-queue"' in page
    assert "1 person is waiting." in page
    assert "Gabriel Guest" in page
    assert 'aria-label="Admit Gabriel Guest"' in page
    assert f"{settings.SITE_URL}{join_path(meeting)}" in page  # the link to share
    attendee_page = detail(people, "attendee", meeting, MOMENTS["inside"])
    assert "lobby-queue" not in attendee_page
    assert "Gabriel Guest" not in attendee_page


def test_meeting_page_of_a_series_occurrence_joins_that_occurrence(people, book):
    meeting = book(weekly=True)
    path = reverse("occurrence_detail", args=[meeting.pk, "20260310T090000Z"])
    page = get(people, "attendee", path, NEXT_TUESDAY).content.decode()
    target = reverse("occurrence_join", args=[meeting.pk, "20260310T090000Z"])
    assert f'action="{target}"' in page
