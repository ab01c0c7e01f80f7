"""An ad-hoc room in a real browser: an organizer opens one from the header with the keyboard,
gets its page (accessible, with the link to share) and joins it as moderator.

The provider's front-end is the stub of test_join_lobby (its host mapped to loopback).
"""

from __future__ import annotations

import pytest
from django.conf import settings
from playwright.sync_api import Browser, expect

from rooms.models import RoomReservation
from tests.browser.test_join_lobby import (  # noqa: F401  (fixtures)
    browser,
    provider,
    signed_in_context,
)
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import livekit_backend, livekit_verify, token_from_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_organizer_opens_a_room_from_the_header_and_joins_it(
    live_server,
    browser: Browser,  # noqa: F811  (the fixture imported above)
    people,
    join_secrets,
    provider,  # noqa: F811
    assert_accessible,
    screenshot_dir,
):
    backend = livekit_backend()
    backend.frontend_url = provider.url
    backend.save(update_fields=["frontend_url"])
    provider.seen.clear()
    context = signed_in_context(browser, live_server.url, people.organizer)
    page = context.new_page()
    page.set_default_timeout(15_000)

    page.goto("/agenda/")
    page.get_by_test_id("meet-now").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/rooms/now/vb-*/")
    room = RoomReservation.objects.get()
    expect(page.get_by_role("heading", name="Meet now", level=1)).to_be_visible()
    share = page.get_by_label("Link to this room")
    expect(share).to_have_value(f"{settings.SITE_URL}/rooms/now/{room.room_name}/")
    assert_accessible(page, "ad-hoc room page")
    page.screenshot(path=str(screenshot_dir / "adhoc_room.png"), full_page=True)

    page.get_by_role("button", name="Join the room").click()
    page.wait_for_url(f"{provider.url}/custom?**")
    claims = livekit_verify(token_from_url(page.url), room=room.room_name)
    assert claims.video.room_admin is True
    context.close()
