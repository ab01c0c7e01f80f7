"""POST /api/v1/feeds/ and feeds/rotate/: a member's calendar feed URL, created once, rotated on
demand, acting as the member with the key recorded in the audit trail."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import icalendar
import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from agencies.models import AuditEvent, Role
from meetings import feeds
from meetings.models import FeedToken
from tests.conftest import api_client
from tests.meetings.feeds_support import NOW, book
from visio_broker.models import IdempotentRequest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def member(agency, make_member):
    return make_member(agency, Role.MEMBER, email="camille@test.gouv.example")


@pytest.fixture
def api_key(agency, make_api_key):
    return make_api_key(agency)


@pytest.fixture
def key(api_key):
    return api_key[1]


def post(raw_key, name, body, **headers):
    return api_client(raw_key).post(
        reverse(name), json.dumps(body), content_type="application/json", headers=headers
    )


def subscribe(url: str):
    """What a calendar client gets from the URL (the test server is SITE_URL)."""
    assert url.startswith("http://testserver/feeds/")
    return Client().get(urlsplit(url).path)


def test_api_feeds_creates_the_url_once_then_returns_the_same(key, member):
    created = post(key, "api-feeds", {"email": member.email})
    again = post(key, "api-feeds", {"email": member.email.upper()})

    assert created.status_code == 201 and again.status_code == 200
    assert created.json() == again.json()
    feed = FeedToken.objects.get(user=member)
    urls = feeds.feed_urls(feed)
    assert created.json() == {"email": member.email, "url": urls.https, "webcal_url": urls.webcal}
    assert created.json()["webcal_url"] == "webcal://" + urls.https.removeprefix("http://")
    assert created["Cache-Control"] == "no-store"


def test_api_feeds_url_serves_the_members_calendar(key, member, make_member, agency):
    organizer = make_member(agency, Role.ORGANIZER)
    book(organizer, "Budget review", attendees=(member.email,))
    book(organizer, "Not for Camille")

    response = subscribe(post(key, "api-feeds", {"email": member.email}).json()["url"])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = icalendar.Calendar.from_ical(response.content)
    assert [str(event["SUMMARY"]) for event in calendar.walk("VEVENT")] == ["Budget review"]


def test_api_feeds_rotate_changes_the_url_and_the_old_one_stops_working(key, member):
    old = post(key, "api-feeds", {"email": member.email}).json()["url"]

    rotated = post(key, "api-feeds-rotate", {"email": member.email})

    assert rotated.status_code == 200
    new = rotated.json()["url"]
    assert new != old
    assert subscribe(old).status_code == 404
    assert subscribe(new).status_code == 200
    feed = FeedToken.objects.get(user=member)  # the same feed, a new token
    assert feed.rotated_at == NOW
    assert post(key, "api-feeds", {"email": member.email}).json()["url"] == new


def test_api_feeds_rotate_without_a_feed_creates_one(key, member):
    response = post(key, "api-feeds-rotate", {"email": member.email})
    assert response.status_code == 200
    assert subscribe(response.json()["url"]).status_code == 200
    assert FeedToken.objects.filter(user=member).count() == 1


def test_api_feeds_act_as_the_member_and_the_audit_names_the_key(api_key, member):
    key, raw = api_key
    post(raw, "api-feeds", {"email": member.email})
    post(raw, "api-feeds", {"email": member.email})  # returns the feed: nothing to audit
    post(raw, "api-feeds-rotate", {"email": member.email})

    events = AuditEvent.objects.order_by("id")
    assert [event.action for event in events if event.action.startswith("feed.")] == [
        "feed.created",
        "feed.rotated",
    ]
    for event in events.filter(action__startswith="feed."):
        assert event.api_key == key
        assert event.actor == member
        assert event.actor_label == f"api-key:vbk_{key.prefix}"
        assert event.detail["on_behalf_of"] == member.email
        assert event.agency == member.membership.agency


@pytest.mark.parametrize(
    "who", ["other_agency", "deactivated", "no_account"], ids=["other-agency", "inactive", "nobody"]
)
@pytest.mark.parametrize("name", ["api-feeds", "api-feeds-rotate"])
def test_api_feeds_for_someone_not_an_active_member_is_404(
    key, member, other_agency, make_member, who, name
):
    if who == "other_agency":
        email = make_member(other_agency, Role.MEMBER).email
    elif who == "deactivated":
        member.is_active = False
        member.save(update_fields=["is_active"])
        email = member.email
    else:
        email = "nobody@test.gouv.example"

    response = post(key, name, {"email": email})

    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"
    assert not FeedToken.objects.exists()


def test_api_feeds_bad_email_is_400(key):
    response = post(key, "api-feeds", {"email": "camille"})
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("email", "invalid")]


def test_api_feeds_without_the_scope_is_403(agency, make_api_key, member):
    _key, raw = make_api_key(agency, scopes=["meetings:read"])
    for name in ("api-feeds", "api-feeds-rotate"):
        response = post(raw, name, {"email": member.email})
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"
    assert not FeedToken.objects.exists()


def test_api_feeds_url_is_never_kept_for_replay(key, member):
    first = post(key, "api-feeds-rotate", {"email": member.email}, **{"Idempotency-Key": "r"})
    second = post(key, "api-feeds-rotate", {"email": member.email}, **{"Idempotency-Key": "r"})
    assert first.json()["url"] != second.json()["url"]  # rotated again, not replayed
    assert "Idempotent-Replayed" not in second
    assert not IdempotentRequest.objects.exists()
