"""API keys kept between requests (visio_broker.api_key_cache): used while nothing changed,
never after a revocation, scope change, deletion or agency change, and not at all without
Redis."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agencies.models import ApiKey
from agencies.services import apikey_revoke
from tests.conftest import api_client
from visio_broker import api_key_cache
from visio_broker.api import apikey_with_agency
from visio_broker.api_key_cache import api_key_lookup
from visio_broker.audit import CLI
from visio_broker.cache import ResilientRedisCache

pytestmark = pytest.mark.django_db

URL = "/api/v1/meetings/"
CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused


def _key_reads(client: Any) -> tuple[int, int]:
    """(status, how many times the request read an API key row)."""
    with CaptureQueriesContext(connection) as queries:
        status = client.get(URL).status_code
    return status, sum('FROM "agencies_apikey"' in query["sql"] for query in queries)


class _Reads:
    """``read`` for api_key_lookup that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, prefix: str) -> ApiKey | None:
        self.count += 1
        return apikey_with_agency(prefix)


def _lookup(prefix: str, read: Any = apikey_with_agency) -> api_key_cache.KeyLookup:
    return api_key_lookup(
        prefix,
        read=read,
        presented=lambda _key: True,
        counter=f"test-throttle:{prefix}",
        timeout=60,
    )


def test_api_key_is_read_once_then_kept(key):
    client = api_client(key[1])
    assert _key_reads(client) == (200, 1)
    assert _key_reads(client) == (200, 0)
    assert _key_reads(client) == (200, 0)


def test_api_kept_key_is_refused_right_after_its_revocation(key):
    row, raw = key
    client = api_client(raw)
    assert _key_reads(client) == (200, 1)
    apikey_revoke(actor=CLI, key=row)
    response = client.get(URL)
    assert (response.status_code, response.json()["code"]) == (401, "key_revoked")


def test_api_kept_key_follows_a_scope_change_and_a_deletion(key):
    row, raw = key
    client = api_client(raw)
    assert _key_reads(client) == (200, 1)
    row.scopes = ["join:issue"]
    row.save(update_fields=["scopes"])  # as the admin saves it
    response = client.get(URL)
    assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")
    row.delete()
    assert client.get(URL).status_code == 401


def test_api_kept_key_carries_the_agency_as_last_saved(key, agency):
    prefix = key[0].prefix
    assert _lookup(prefix).key.agency.name == agency.name
    agency.name = "Renamed agency"
    agency.save()
    assert _lookup(prefix).key.agency.name == "Renamed agency"


def test_api_kept_key_is_handed_out_as_copies(key):
    prefix = key[0].prefix
    first = _lookup(prefix).key
    second = _lookup(prefix).key
    assert first is not None and second is not None
    assert first.pk == second.pk and first is not second and first.agency is not second.agency
    first.revoked_at = first.created_at  # a request changing its copy changes no other
    assert _lookup(prefix).key.revoked_at is None


def test_api_key_revoked_while_its_row_is_read_is_not_kept(key):
    """The generation is read before the row: a revocation landing after the row was read
    (valid) outdates what was kept."""
    row, _raw = key

    def read_then_revoked(prefix: str) -> ApiKey | None:
        found = apikey_with_agency(prefix)
        apikey_revoke(actor=CLI, key=row)
        return found

    assert _lookup(row.prefix, read_then_revoked).key.revoked_at is None  # read before it
    reads = _Reads()
    assert _lookup(row.prefix, reads).key.revoked_at is not None
    assert reads.count == 1


def test_api_kept_key_is_read_again_after_max_age(key, monkeypatch):
    prefix = key[0].prefix
    reads = _Reads()
    _lookup(prefix, reads)
    _lookup(prefix, reads)
    assert reads.count == 1
    monkeypatch.setattr(api_key_cache, "MAX_AGE", 0.0)
    _lookup(prefix, reads)
    assert reads.count == 2


def test_api_kept_key_bounds_a_lost_invalidation_by_max_age(key, monkeypatch):
    """Redis lost the bump (down at the revocation): the kept key lasts MAX_AGE at most."""
    row, raw = key
    client = api_client(raw)
    assert _key_reads(client) == (200, 1)
    monkeypatch.setattr(ResilientRedisCache, "counter_bump", lambda *_args, **_kw: False)
    apikey_revoke(actor=CLI, key=row)
    monkeypatch.setattr(api_key_cache, "MAX_AGE", 0.0)
    assert client.get(URL).status_code == 401


def test_api_keys_are_read_every_time_while_redis_is_down(settings, key):
    settings.CACHES = {
        "default": {
            "BACKEND": "visio_broker.cache.ResilientRedisCache",
            "LOCATION": CLOSED,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    assert caches["default"].counter(api_key_cache.GENERATION) is None
    client = api_client(key[1])
    assert [_key_reads(client) for _ in range(3)] == [(200, 1)] * 3
    assert api_key_cache._KEPT == {}


def test_api_keys_are_not_kept_without_redis(settings, key):
    """The embedded mode's file cache is no shared counter: every lookup reads the row."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    reads = _Reads()
    for _ in range(3):
        assert _lookup(key[0].prefix, reads).key is not None
    assert reads.count == 3


def test_api_throttle_counts_kept_and_read_keys_alike(settings, key):
    settings.API_RATE_LIMIT = "3/m"
    client = api_client(key[1])
    reads = [_key_reads(client) for _ in range(4)]
    assert reads[:3] == [(200, 1), (200, 0), (200, 0)]
    response = client.get(URL)
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert reads[3][0] == 429


def test_api_wrong_secret_never_uses_up_the_keys_rate_limit(settings, key):
    """Prefixes appear in logs: requests with a known prefix and a wrong secret are refused
    and not counted, so nobody can throttle an integration they do not hold the key of."""
    settings.API_RATE_LIMIT = "2/m"
    row, raw = key
    client = api_client(raw)
    assert _key_reads(client) == (200, 1)  # the key is kept from here on
    forged = api_client(f"vbk_{row.prefix}_{'0' * 64}")
    assert [forged.get(URL).status_code for _ in range(4)] == [401] * 4
    assert client.get(URL).status_code == 200
    assert client.get(URL).status_code == 429
