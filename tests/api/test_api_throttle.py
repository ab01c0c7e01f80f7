"""The per-key throttle's counter: one Redis round trip, a window that expires, fail-open."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from redis import Redis
from redis.exceptions import ResponseError

from tests.conftest import api_client
from visio_broker import cache as visio_cache

pytestmark = pytest.mark.django_db

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused


def test_api_throttle_window_counts_and_expires():
    assert [cache.incr_window("window-test", 30) for _ in range(3)] == [1, 2, 3]
    assert cache.get("window-test") == 3  # the same counter as add() + incr() kept
    key = cache.make_and_validate_key("window-test")
    assert 0 < cache._cache.get_client(key).ttl(key) <= 30


def _redis(key: str):
    return cache._cache.get_client(cache.make_and_validate_key(key), write=True)


def test_api_throttle_script_is_sent_again_when_redis_forgot_it():
    """After a Redis restart or SCRIPT FLUSH, EVALSHA answers NOSCRIPT: the hit still counts."""
    assert cache.incr_window("window-test", 30) == 1
    redis = _redis("window-test")
    redis.script_flush()
    assert cache.incr_window_reading("window-test", 30, "window-counter") == (2, 0)
    assert cache.incr_window("window-test", 30) == 3
    assert redis.script_exists(visio_cache._WINDOW_HIT_SCRIPT.sha) == [True]


def test_api_throttle_counts_on_when_redis_closed_its_connection():
    """A pooled connection the server closed (restart, idle timeout) is replaced, not an
    outage: no hit is lost."""
    assert cache.incr_window("window-test", 30) == 1
    redis = _redis("window-test")
    pool = redis.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("CLIENT", "ID")
        client_id = connection.read_response()
    finally:
        pool.release(connection)
    other = Redis.from_url(settings.REDIS_URL)
    try:
        assert other.client_kill_filter(_id=client_id) == 1
    finally:
        other.close()
    assert cache.incr_window("window-test", 30) == 2


def test_api_throttle_reply_error_is_raised_and_the_connection_stays_usable():
    """A counter that is not a number is a bug to see, not an outage to hide; the connection
    goes back to the pool ready for the next command."""
    key = cache.make_and_validate_key("window-test")
    redis = _redis("window-test")
    redis.set(key, "not a number")
    with pytest.raises(ResponseError):
        cache.incr_window("window-test", 30)
    redis.delete(key)
    assert cache.incr_window("window-test", 30) == 1
    assert cache.incr_window_reading("window-test", 30, "window-counter") == (2, 0)


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
