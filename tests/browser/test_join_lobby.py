"""Joining in a real browser: an attendee joins at the right time and reaches the provider with a
token that verifies; a guest waits in the lobby until the organizer, in another browser, admits
them, and then reaches the provider by themself.

We run no LiveKit server: the provider's web front-end is the one seam mocked. Its host
(meet.join.test) resolves, in this browser only, to a stub on loopback that records the URLs the
browser was sent to. Not ``page.route``: Playwright does not route the hop of a redirect that a
script started (the lobby's automatic join), so the stub has to answer at the network level.
Real dates (the live server does not share time-machine's clock): the meeting starts in five
minutes, so its room is open now.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone as djtz
from playwright.sync_api import Browser, BrowserContext, BrowserType, Page, expect

from meetings.services import AttendeeSpec, meeting_schedule
from rooms.models import LobbyEntry, LobbyStatus
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    livekit_backend,
    livekit_verify,
    reserve,
    token_from_url,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in_context(browser: Browser, base_url: str, user) -> BrowserContext:
    """A browser context holding ``user``'s session (made by Django's test client)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=base_url)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context


class ProviderStub(ThreadingHTTPServer):
    """LiveKit Meet's stand-in: answers every GET with a page and keeps the URLs asked for."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{PROVIDER_HOST}:{self.server_port}"


class _StubHandler(BaseHTTPRequestHandler):
    server: ProviderStub

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/custom"):
            self.server.seen.append(f"http://{self.headers['Host']}{self.path}")
        body = b"<!doctype html><html lang='en'><title>LiveKit Meet</title><h1>Room</h1></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


PROVIDER_HOST = "meet.join.test"


@pytest.fixture(scope="module")
def provider() -> Iterator[ProviderStub]:
    stub = ProviderStub()
    thread = threading.Thread(target=stub.serve_forever, daemon=True)
    thread.start()
    yield stub
    stub.shutdown()
    stub.server_close()


@pytest.fixture(scope="module")
def browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    """Debian's Chromium as configured for every browser test, plus one host name mapped to
    loopback: the provider's front-end, served by the stub."""
    args = [
        *browser_type_launch_args.get("args", []),
        f"--host-resolver-rules=MAP {PROVIDER_HOST} 127.0.0.1",
    ]
    browser = browser_type.launch(**{**browser_type_launch_args, "args": args})
    yield browser
    browser.close()


@pytest.fixture
def meeting_now(people, join_secrets, provider):
    """book(access_level) → a meeting starting in five minutes, its room on the test backend."""

    provider.seen.clear()

    def book(access_level: str):
        start = (djtz.now() + timedelta(minutes=5)).replace(second=0, microsecond=0)
        meeting = meeting_schedule(
            actor=people.organizer,
            title="Budget review",
            start=start,
            end=start + timedelta(hours=1),
            timezone="Europe/Paris",
            attendees=[AttendeeSpec(people.attendee.email)],
            access_level=access_level,
            lobby_enabled=True,
        )
        backend = livekit_backend()
        backend.frontend_url = provider.url
        backend.save(update_fields=["frontend_url"])
        reserve(meeting, backend)
        return meeting

    return book


def test_attendee_joins_from_the_meeting_page(
    live_server, browser: Browser, people, meeting_now, provider, assert_accessible
):
    meeting = meeting_now("invite")
    context = signed_in_context(browser, live_server.url, people.attendee)
    page = context.new_page()
    page.set_default_timeout(15_000)

    page.goto(reverse("meeting_detail", args=[meeting.pk]))
    join = page.get_by_role("button", name="Join the meeting")
    expect(join).to_be_visible()
    assert_accessible(page, "meeting page with its join section")
    join.click()

    page.wait_for_url(f"{provider.url}/custom?**")
    expect(page.get_by_role("heading", name="Room")).to_be_visible()
    assert provider.seen == [page.url]
    claims = livekit_verify(token_from_url(page.url), room=meeting.reservation.room_name)
    assert claims.identity == f"user-{people.attendee.pk}"
    assert claims.video.room_admin is False
    context.close()


def test_guest_waits_in_the_lobby_until_the_organizer_admits_them(
    live_server, browser: Browser, people, meeting_now, provider, assert_accessible
):
    meeting = meeting_now("link")
    guest_context = browser.new_context(base_url=live_server.url)
    guest: Page = guest_context.new_page()
    guest.set_default_timeout(15_000)

    # The guest opens the link from the invitation, gives a name and asks to join.
    guest.goto(reverse("meeting_join", args=[meeting.pk]))
    assert_accessible(guest, "join page (guest)")
    guest.get_by_label("Your name").fill("Gabriel Guest")
    guest.get_by_role("button", name="Ask to join").click()
    guest.wait_for_url(f"**{reverse('lobby_wait', args=[meeting.pk])}")
    status = guest.get_by_test_id("lobby-state")
    expect(status).to_have_attribute("data-state", "waiting")
    expect(status).to_contain_text("Please wait, Gabriel Guest")
    assert_accessible(guest, "lobby page (waiting)")
    guest.wait_for_timeout(3_500)  # at least one poll: still waiting, still here
    expect(status).to_have_attribute("data-state", "waiting")
    assert provider.seen == []

    # The organizer, in another browser, sees the guest in the lobby list and admits them.
    organizer_context = signed_in_context(browser, live_server.url, people.organizer)
    organizer = organizer_context.new_page()
    organizer.set_default_timeout(15_000)
    organizer.goto(reverse("meeting_detail", args=[meeting.pk]))
    queue = organizer.get_by_test_id("lobby-queue")
    expect(queue.get_by_test_id("lobby-entry")).to_contain_text("Gabriel Guest")
    assert_accessible(organizer, "meeting page with the lobby")
    queue.get_by_role("button", name="Admit Gabriel Guest").click()
    expect(queue).to_contain_text("Nobody is waiting.")
    entry = LobbyEntry.objects.get(meeting=meeting)
    assert (entry.status, entry.decided_by) == (LobbyStatus.ADMITTED, people.organizer)

    # The guest's page notices by itself and goes on to the room.
    guest.wait_for_url(f"{provider.url}/custom?**")
    expect(guest.get_by_role("heading", name="Room")).to_be_visible()
    assert provider.seen == [guest.url]
    claims = livekit_verify(token_from_url(guest.url), room=meeting.reservation.room_name)
    assert claims.identity == f"guest-{entry.pk}"
    assert claims.name == "Gabriel Guest"
    organizer_context.close()
    guest_context.close()
