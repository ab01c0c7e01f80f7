"""Redis is only a cache and a broker: with it unreachable, people still sign in, book and read
their calendar feed (the outbox holds the messages; the cache degrades to misses)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from agencies.models import Role
from meetings import feeds
from meetings.services import feed_token_create
from tests.meetings.feeds_support import book, fetch
from visio_broker.celery import app as celery_app
from visio_broker.models import Notification, NotificationStatus

pytestmark = pytest.mark.django_db

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused


@pytest.fixture
def redis_down(settings):
    """Cache, feed counters and broker all pointed at a closed port."""
    settings.CACHES = {
        "default": {
            "BACKEND": "visio_broker.cache.ResilientRedisCache",
            "LOCATION": CLOSED,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    settings.REDIS_URL = CLOSED  # Django's settings fixture also resets the cache handlers
    feeds.clear_local_caches()
    previous = celery_app.conf.broker_write_url
    celery_app.conf.broker_write_url = CLOSED
    celery_app.pool.force_close_all()
    yield
    celery_app.conf.broker_write_url = previous
    celery_app.pool.force_close_all()
    feeds.clear_local_caches()


def test_signed_in_pages_booking_and_feeds_work_without_redis(
    redis_down, agency, make_member, django_capture_on_commit_callbacks
):
    organizer = make_member(agency, Role.ORGANIZER)
    colleague = make_member(agency, Role.MEMBER)
    client = Client()
    client.force_login(organizer)  # the session row is in the database; the cache misses
    assert client.get(reverse("home")).status_code == 200

    with time_machine.travel(datetime(2026, 3, 2, 8, 0, tzinfo=UTC), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            meeting = book(organizer, "Budget review", attendees=(colleague.email,))
        invitation = Notification.objects.get(meeting=meeting, recipient=colleague.email)
        # The broker refused the relay: the row waits for the sweeper, nothing was lost.
        assert invitation.status == NotificationStatus.PENDING

        feed = feed_token_create(actor=organizer)
        response = fetch(feed)
        assert response.status_code == 200
        assert b"SUMMARY:Budget review" in response.content
