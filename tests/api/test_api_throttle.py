"""The per-key throttle's counter: one Redis round trip, a window that expires, fail-open."""

from __future__ import annotations

import pytest
from django.core.cache import cache, caches

from tests.conftest import api_client

pytestmark = pytest.mark.django_db

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused


def test_api_throttle_window_counts_and_expires():
    assert [cache.incr_window("window-test", 30) for _ in range(3)] == [1, 2, 3]
    assert cache.get("window-test") == 3  # the same counter as add() + incr() kept
    key = cache.make_and_validate_key("window-test")
    assert 0 < cache._cache.get_client(key).ttl(key) <= 30


def test_api_with_redis_down_is_not_throttled(settings, agency, make_api_key):
    settings.API_RATE_LIMIT = "1/m"
    settings.CACHES = {
        "default": {
            "BACKEND": "visio_broker.cache.ResilientRedisCache",
            "LOCATION": CLOSED,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    assert caches["default"].incr_window("window-test", 30) is None
    _key, raw = make_api_key(agency)
    client = api_client(raw)
    statuses = [client.get("/api/v1/meetings/").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
