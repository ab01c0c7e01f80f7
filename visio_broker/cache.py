"""A Redis cache that degrades instead of failing when Redis is unreachable.

The cache only speeds things up (sessions are read through it, feeds and rate limits use it):
a Redis outage must not fail requests. While Redis is down, reads miss, writes are dropped and
rate limits are not enforced (fail-open, logged). The broker side of Redis is covered by the
outbox: rows wait for the sweeper.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)


def _warn(operation: str, exc: Exception) -> None:
    logger.warning(
        "cache unavailable (%s: %s); continuing without it", operation, exc.__class__.__name__
    )


class _ReusedClients(RedisCacheClient):
    """Django builds a new redis.Redis around the pool on every call; that object is
    thread-safe and costs a noticeable share of a short request, so keep one per pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django_client: Any = self  # Django's private helpers, absent from the stubs
        pool = django_client._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = django_client._client(connection_pool=pool)
        return client


_WINDOW_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


# The same hit, and in the same round trip the value of a second counter (false when absent).
_WINDOW_HIT_READING = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('GET', KEYS[2])}
"""


class _Script:
    """A Lua script, run by EVALSHA on a connection of the client's pool, without redis-py's
    client layer (retry wrapper, command dispatch, reply callbacks): half the CPU of a
    ``register_script`` call, and the API's throttle runs one on every request. The pool
    reconnects a connection the server closed before handing it out; a connection that fails
    here is closed and the error raised (the cache treats it as Redis unavailable). When the
    server does not know the script (after a restart or SCRIPT FLUSH), EVAL sends it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        pool = client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            try:
                return connection.read_response()
            except NoScriptError:
                connection.send_command("EVAL", self.source, len(keys), *keys, *args)
                return connection.read_response()
        except _UNAVAILABLE:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)


_WINDOW_HIT_SCRIPT = _Script(_WINDOW_HIT)
_WINDOW_HIT_READING_SCRIPT = _Script(_WINDOW_HIT_READING)


class ResilientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ReusedClients

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except _UNAVAILABLE as exc:
            _warn("get", exc)
            return default

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        try:
            return super().get_many(keys, version)
        except _UNAVAILABLE as exc:
            _warn("get_many", exc)
            return {}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().has_key(key, version)
        except _UNAVAILABLE as exc:
            _warn("has_key", exc)
            return False

    def set(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> None:
        try:
            super().set(key, value, timeout, version)
        except _UNAVAILABLE as exc:
            _warn("set", exc)

    def add(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        try:
            return super().add(key, value, timeout, version)
        except _UNAVAILABLE as exc:
            _warn("add", exc)
            return False

    def set_many(
        self, data: dict[Any, Any], timeout: Any = None, version: int | None = None
    ) -> list[Any]:
        try:
            return super().set_many(data, timeout, version)
        except _UNAVAILABLE as exc:
            _warn("set_many", exc)
            return list(data)

    def touch(self, key: Any, timeout: Any = None, version: int | None = None) -> bool:
        try:
            return super().touch(key, timeout, version)
        except _UNAVAILABLE as exc:
            _warn("touch", exc)
            return False

    def delete(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().delete(key, version)
        except _UNAVAILABLE as exc:
            _warn("delete", exc)
            return False

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        try:
            super().delete_many(keys, version)
        except _UNAVAILABLE as exc:
            _warn("delete_many", exc)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        try:
            return super().incr(key, delta, version)
        except _UNAVAILABLE as exc:
            _warn("incr", exc)
            raise ValueError("cache unavailable") from exc

    def incr_window(self, key: Any, timeout: int, version: int | None = None) -> int | None:
        """One more hit on a fixed-window counter that lives ``timeout`` seconds from its first.

        One script in Redis: INCR, and EXPIRE on the window's first hit, so the counter cannot
        outlive its window (same value as ``add(key, 0, timeout)`` then ``incr(key)``). None
        while Redis is unavailable.
        """
        key = self.make_and_validate_key(key, version=version)
        # Django's RedisCacheClient (not in the type stubs).
        redis_cache: Any = self._cache  # type: ignore[attr-defined]
        try:
            client = redis_cache.get_client(key, write=True)
            count = _WINDOW_HIT_SCRIPT(client, [key], [timeout])
        except _UNAVAILABLE as exc:
            _warn("incr_window", exc)
            return None
        return int(count)

    def incr_window_reading(
        self, key: Any, timeout: int, counter: Any, version: int | None = None
    ) -> tuple[int, int] | None:
        """``incr_window(key, timeout)`` and the value of ``counter`` (0 when it was never
        bumped), in one round trip. None while Redis is unavailable."""
        key = self.make_and_validate_key(key, version=version)
        counter = self.make_and_validate_key(counter, version=version)
        redis_cache: Any = self._cache  # type: ignore[attr-defined]
        try:
            client = redis_cache.get_client(key, write=True)
            count, value = _WINDOW_HIT_READING_SCRIPT(client, [key, counter], [timeout])
        except _UNAVAILABLE as exc:
            _warn("incr_window_reading", exc)
            return None
        return int(count), int(value or 0)

    def counter(self, key: Any, version: int | None = None) -> int | None:
        """The counter ``key`` (0 when it was never bumped); None while Redis is unavailable."""
        key = self.make_and_validate_key(key, version=version)
        redis_cache: Any = self._cache  # type: ignore[attr-defined]
        try:
            value = redis_cache.get_client(key).get(key)
        except _UNAVAILABLE as exc:
            _warn("counter", exc)
            return None
        return int(value or 0)

    def counter_bump(self, key: Any, version: int | None = None) -> bool:
        """Add one to the counter ``key``, which never expires; False while Redis is
        unavailable."""
        key = self.make_and_validate_key(key, version=version)
        redis_cache: Any = self._cache  # type: ignore[attr-defined]
        try:
            redis_cache.get_client(key, write=True).incr(key)
        except _UNAVAILABLE as exc:
            _warn("counter_bump", exc)
            return False
        return True
