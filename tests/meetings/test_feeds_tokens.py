"""Feed tokens: what is stored, rotation, revocation, deactivation; the profile and agency pages."""

from __future__ import annotations

import base64
import hashlib

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agencies.models import AuditEvent, Role
from agencies.services import member_deactivate
from meetings import feeds
from meetings.models import FeedKind, FeedToken, Meeting
from meetings.services import (
    agency_calendar_publish,
    agency_calendar_unpublish,
    feed_token_create,
    feed_token_revoke,
    feed_token_rotate,
    feed_token_update,
    meeting_update,
)
from tests.conftest import signed_in_client
from tests.meetings.feeds_support import NOW, book, feed_path, fetch
from visio_broker.errors import Forbidden, InvalidInput, NotFound

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="olga@test.gouv.example", display_name="Olga")


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="camille@test.gouv.example")


@pytest.fixture
def admin(agency, make_member):
    """An agency admin with TOTP enrolled, so the MFA middleware lets them through."""
    user = make_member(agency, Role.ADMIN, email="admin@test.gouv.example")
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})
    return user


@pytest.fixture
def feed(organizer):
    book(organizer, "Budget review")
    return feed_token_create(actor=organizer)


# --- What is stored ---------------------------------------------------------------------------


def test_token_is_256_bits_and_only_its_hash_and_nonce_are_stored(feed):
    token = feeds.token_of(feed)
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    stored = FeedToken.objects.filter(pk=feed.pk).values().get()
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert len(stored["nonce"]) == 64
    assert not [name for name, value in stored.items() if token in str(value)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM meetings_feedtoken")
        assert token not in repr(cursor.fetchall())


def test_token_depends_on_the_server_key(feed, settings):
    """The database alone (nonce, hash) yields no URL; a changed key invalidates every URL."""
    path = feed_path(feed)
    assert fetch(feed).status_code == 200
    settings.FEED_TOKEN_KEY = "another-key-" + "0" * 40
    assert feeds.token_of(feed) not in path
    assert Client().get(path).status_code == 404


def test_urls_come_in_https_and_webcal_forms(feed, settings):
    settings.SITE_URL = "https://visio.example.org"
    urls = feeds.feed_urls(feed)
    token = feeds.token_of(feed)
    assert urls.https == f"https://visio.example.org/feeds/{token}.ics"
    assert urls.webcal == f"webcal://visio.example.org/feeds/{token}.ics"


def test_token_opens_only_the_feed_path(feed):
    token = feeds.token_of(feed)
    client = Client()
    assert client.get(f"/feeds/{token}.ics").status_code == 200
    assert client.get(f"/feeds/{token}").status_code == 404
    assert client.get(f"/feeds/{token}.ics/").status_code == 404
    # Not a session: the profile still wants a sign-in.
    assert client.get(reverse("profile")).status_code == 302


def test_create_is_idempotent_and_audited(organizer, feed):
    assert feed_token_create(actor=organizer) == feed
    assert FeedToken.objects.filter(user=organizer).count() == 1
    event = AuditEvent.objects.get(action="feed.created")
    assert event.actor == organizer and event.detail == {"kind": "personal"}


def test_one_live_token_per_user_is_a_database_rule(organizer, feed):
    with pytest.raises(IntegrityError), transaction.atomic():
        FeedToken.objects.create(
            kind=FeedKind.PERSONAL, user=organizer, nonce="n", token_hash="h" * 64
        )


# --- Rotation and revocation ------------------------------------------------------------------


def test_rotated_token_old_url_is_404_and_new_one_works(organizer, feed):
    old_path = feed_path(feed)
    rotated = feed_token_rotate(actor=organizer, feed=feed)
    assert Client().get(old_path).status_code == 404
    new_path = feed_path(rotated)
    assert new_path != old_path
    assert Client().get(new_path).status_code == 200
    assert rotated.rotated_at == NOW
    assert AuditEvent.objects.filter(action="feed.rotated", actor=organizer).count() == 1


def test_revoked_token_is_404_and_a_new_feed_gets_a_new_url(organizer, feed):
    path = feed_path(feed)
    feed_token_revoke(actor=organizer, feed=feed)
    feed_token_revoke(actor=organizer, feed=feed)  # already done: nothing more happens
    assert Client().get(path).status_code == 404
    assert AuditEvent.objects.filter(action="feed.revoked").count() == 1
    with pytest.raises(InvalidInput):
        feed_token_rotate(actor=organizer, feed=FeedToken.objects.get(pk=feed.pk))
    fresh = feed_token_create(actor=organizer)
    assert fresh.pk != feed.pk
    assert Client().get(feed_path(fresh)).status_code == 200
    assert Client().get(path).status_code == 404


def test_someone_elses_feed_cannot_be_changed(feed, colleague):
    with pytest.raises(NotFound):
        feed_token_rotate(actor=colleague, feed=feed)
    with pytest.raises(NotFound):
        feed_token_revoke(actor=colleague, feed=feed)
    with pytest.raises(NotFound):
        feed_token_update(actor=colleague, feed=feed, include_declined=True)
    assert Client().get(feed_path(feed)).status_code == 200


def test_deactivating_a_member_revokes_their_feed(agency, admin, colleague):
    feed = feed_token_create(actor=colleague)
    path = feed_path(feed)
    member_deactivate(actor=admin, membership=colleague.membership)
    assert FeedToken.objects.get(pk=feed.pk).revoked_at == NOW
    assert Client().get(path).status_code == 404
    event = AuditEvent.objects.get(action="member.deactivated")
    assert event.detail == {"sessions_ended": 0, "feeds_revoked": 1}


def test_inactive_user_feed_is_404_even_if_not_revoked(feed, organizer):
    organizer.is_active = False
    organizer.save(update_fields=["is_active"])
    assert FeedToken.objects.get(pk=feed.pk).revoked_at is None
    assert fetch(feed).status_code == 404


# --- Profile page -----------------------------------------------------------------------------


def test_profile_without_feed_offers_to_create_one(organizer):
    client = signed_in_client(organizer)
    response = client.get(reverse("profile"))
    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    body = response.content.decode()
    assert "Calendar subscription" in body
    assert reverse("profile_feed_create") in body
    response = client.post(reverse("profile_feed_create"))
    assert response.status_code == 302
    assert response["Location"] == reverse("profile") + "#calendar-feed"
    assert FeedToken.objects.filter(user=organizer, revoked_at__isnull=True).count() == 1


def test_profile_shows_both_url_forms_with_copy_buttons(organizer, feed):
    response = signed_in_client(organizer).get(reverse("profile"))
    body = response.content.decode()
    urls = feeds.feed_urls(feed)
    assert response["Referrer-Policy"] == "no-referrer"
    assert f'value="{urls.https}"' in body
    assert f'value="{urls.webcal}"' in body
    assert f'href="{urls.webcal}"' in body
    assert 'data-copy="personal-feed-https"' in body and 'data-copy="personal-feed-webcal"' in body
    assert '<label for="personal-feed-https">' in body
    assert "feeds.js" in body


def test_profile_rotate_and_revoke_buttons_post(organizer, feed):
    client = signed_in_client(organizer)
    old_url = feeds.feed_urls(feed).https
    assert client.get(reverse("profile_feed_rotate")).status_code == 405
    response = client.post(reverse("profile_feed_rotate"))
    assert response.status_code == 302
    rotated = FeedToken.objects.get(pk=feed.pk)
    body = client.get(reverse("profile")).content.decode()
    assert old_url not in body and feeds.feed_urls(rotated).https in body
    assert Client().get(feed_path(rotated)).status_code == 200
    response = client.post(reverse("profile_feed_revoke"))
    assert response.status_code == 302
    assert Client().get(feed_path(rotated)).status_code == 404
    body = client.get(reverse("profile")).content.decode()
    assert feeds.feed_urls(rotated).https not in body
    assert reverse("profile_feed_create") in body
    # Nothing left to rotate or revoke.
    assert client.post(reverse("profile_feed_rotate")).status_code == 404


def test_profile_feed_option_include_declined(organizer, feed):
    client = signed_in_client(organizer)
    client.post(reverse("profile_feed_options"), {"include_declined": "on"})
    assert FeedToken.objects.get(pk=feed.pk).include_declined is True
    assert 'id="feed-include-declined" checked' in client.get(reverse("profile")).content.decode()
    client.post(reverse("profile_feed_options"), {})
    assert FeedToken.objects.get(pk=feed.pk).include_declined is False
    assert AuditEvent.objects.filter(action="feed.updated").count() == 2


def test_profile_feed_actions_need_sign_in(feed):
    for name in (
        "profile_feed_create",
        "profile_feed_rotate",
        "profile_feed_revoke",
        "profile_feed_options",
    ):
        response = Client().post(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))
    assert Client().get(feed_path(feed)).status_code == 200


@pytest.mark.parametrize(
    ("choice", "stored", "trigger"),
    [("none", [], None), ("5", [5], "-PT5M"), ("60", [60], "-PT60M"), ("1440", [1440], "-PT1440M")],
)
def test_reminder_preference_saved_and_used_by_the_feed(organizer, feed, choice, stored, trigger):
    client = signed_in_client(organizer)
    response = client.post(
        reverse("profile"),
        {
            "display_name": "Olga",
            "timezone": "Europe/Paris",
            "language": "en",
            "reminder_minutes": choice,
        },
    )
    assert response.status_code == 302
    organizer.refresh_from_db()
    assert organizer.reminder_minutes == stored
    assert f'<option value="{choice}" selected>' in client.get(reverse("profile")).content.decode()
    body = fetch(feed).content
    if trigger is None:
        assert b"BEGIN:VALARM" not in body
    else:
        assert f"TRIGGER:{trigger}\r\n".encode() in body


def test_reminder_preference_defaults_to_15_minutes_and_rejects_others(organizer, feed):
    assert organizer.reminder_minutes == [15]
    assert b"TRIGGER:-PT15M\r\n" in fetch(feed).content
    response = signed_in_client(organizer).post(
        reverse("profile"),
        {"display_name": "", "timezone": "Europe/Paris", "language": "en", "reminder_minutes": "7"},
    )
    assert response.status_code == 400
    organizer.refresh_from_db()
    assert organizer.reminder_minutes == [15]


# --- Agency calendar page ---------------------------------------------------------------------


def test_agency_calendar_page_is_for_agency_admins(organizer, colleague):
    assert Client().get(reverse("agency_calendar")).status_code == 302
    assert signed_in_client(organizer).get(reverse("agency_calendar")).status_code == 403
    assert (
        signed_in_client(colleague).post(reverse("agency_calendar"), {"enabled": "on"}).status_code
        == 403
    )


def test_agency_admin_publishes_rotates_and_unpublishes(admin, organizer, agency):
    client = signed_in_client(admin)
    response = client.get(reverse("agency_calendar"))
    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    assert "/feeds/" not in response.content.decode()

    assert client.post(reverse("agency_calendar"), {"enabled": "on"}).status_code == 302
    agency.refresh_from_db()
    assert agency.public_calendar_enabled
    feed = FeedToken.objects.get(agency=agency, kind=FeedKind.AGENCY)
    body = client.get(reverse("agency_calendar")).content.decode()
    assert feeds.feed_urls(feed).https in body and feeds.feed_urls(feed).webcal in body
    assert Client().get(feed_path(feed)).status_code == 200

    client.post(reverse("agency_calendar_rotate"))
    rotated = FeedToken.objects.get(pk=feed.pk)
    assert Client().get(feed_path(feed)).status_code == 404
    assert Client().get(feed_path(rotated)).status_code == 200

    assert client.post(reverse("agency_calendar"), {}).status_code == 302
    agency.refresh_from_db()
    assert not agency.public_calendar_enabled
    assert Client().get(feed_path(rotated)).status_code == 404
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions[-4:] == [
        "agency.calendar_published",
        "feed.created",
        "feed.rotated",
        "agency.calendar_unpublished",
    ]


def test_only_the_agency_admin_may_publish(organizer, agency, other_agency, make_member):
    with pytest.raises(Forbidden):
        agency_calendar_publish(actor=organizer, agency=agency)
    foreign_admin = make_member(other_agency, Role.ADMIN)
    with pytest.raises(Forbidden):
        agency_calendar_publish(actor=foreign_admin, agency=agency)
    with pytest.raises(Forbidden):
        feed_token_create(actor=foreign_admin, agency=agency)


# --- Listing a meeting publicly ---------------------------------------------------------------


def test_meeting_form_saves_listed_publicly(organizer):
    client = signed_in_client(organizer)
    data = {
        "title": "Open day",
        "description": "",
        "date": "2026-03-03",
        "start_time": "10:00",
        "end_time": "11:00",
        "duration": "",
        "timezone": "Europe/Paris",
        "repeat": "none",
        "interval": "1",
        "monthly_mode": "day",
        "ends": "never",
        "attendees": "",
        "optional_attendees": "",
        "co_organizers": "",
        "access_level": "invite",
        "lobby_enabled": "on",
        "listed_publicly": "on",
    }
    assert 'name="listed_publicly"' in client.get(reverse("meeting_new")).content.decode()
    assert client.post(reverse("meeting_new"), data).status_code == 302
    meeting = Meeting.objects.get(title="Open day")
    assert meeting.listed_publicly
    edit = client.get(reverse("meeting_edit", args=[meeting.pk]))
    assert edit.context["form"]["listed_publicly"].value() is True
    meeting_update(actor=organizer, meeting=meeting, listed_publicly=False)
    meeting.refresh_from_db()
    assert not meeting.listed_publicly


# --- Cached validators never outlive the token ------------------------------------------------


def _primed(feed: FeedToken) -> str:
    """A client's ETag after two polls: the second one answered from the shared cache."""
    etag = fetch(feed)["ETag"]
    with CaptureQueriesContext(connection) as queries:
        assert fetch(feed, if_none_match=etag).status_code == 304
    assert len(queries.captured_queries) == 0
    return etag


def test_rotated_or_revoked_token_is_404_even_for_a_conditional_poll(organizer, feed):
    etag = _primed(feed)
    old_path = feed_path(feed)
    rotated = feed_token_rotate(actor=organizer, feed=feed)
    assert Client().get(old_path, headers={"if-none-match": etag}).status_code == 404
    etag = _primed(rotated)
    feed_token_revoke(actor=organizer, feed=rotated)
    assert fetch(rotated, if_none_match=etag).status_code == 404


def test_deactivated_owner_or_unpublished_agency_is_404_for_a_conditional_poll(
    agency, admin, colleague
):
    personal = feed_token_create(actor=colleague)
    public = agency_calendar_publish(actor=admin, agency=agency)
    personal_etag, public_etag = _primed(personal), _primed(public)
    member_deactivate(actor=admin, membership=colleague.membership)
    agency_calendar_unpublish(actor=admin, agency=agency)
    assert fetch(personal, if_none_match=personal_etag).status_code == 404
    assert fetch(public, if_none_match=public_etag).status_code == 404
