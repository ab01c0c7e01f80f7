"""Shared fixtures. The environment (PostgreSQL, Redis) is set in tests/env_defaults.py."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import AgencyFactory, MembershipFactory
from visio_broker.api_key_cache import forget_kept_keys


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    """Rate-limit counters live in Redis: every test starts from zero, and with no API key
    kept from an earlier test."""
    cache.clear()
    forget_kept_keys()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """PBKDF2 costs 0.3 s a hash; tests hash with MD5 but still verify the real hashers."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]


@pytest.fixture
def agency(db):
    return AgencyFactory(
        slug="fr-test",
        name="Ministère Test",
        country="FR",
        default_timezone="Europe/Paris",
        email_domains=["test.gouv.example"],
    )


@pytest.fixture
def other_agency(db):
    return AgencyFactory(
        slug="de-test",
        name="Bundesamt Test",
        country="DE",
        default_timezone="Europe/Berlin",
        email_domains=["test.bund.example"],
    )


@pytest.fixture
def make_member(db):
    """make_member(agency, role) → a user with a usable password and a verified address."""

    def make(agency, role="member", **user_fields):
        return MembershipFactory(
            agency=agency, role=role, **{f"user__{k}": v for k, v in user_fields.items()}
        ).user

    return make


def signed_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# Countries agencies of the tests live in; each gets a shared backend (sovereignty: an agency
# uses backends of its own country unless its policy says otherwise).
TEST_BACKEND_COUNTRIES = (
    *("FR", "DE", "NL", "BE", "LU", "AT", "CH", "IT", "ES", "PT", "IE", "DK", "SE", "FI", "PL"),
    *("GB", "US", "CA"),
)


@pytest.fixture(autouse=True)
def _test_backends(request) -> None:
    """Every database test gets one huge shared LiveKit backend per country, so that booking
    (which reserves a room) works without setting backends up.

    Weight 0: any backend a test creates (default weight 100) is preferred over these. Tests
    that need an exact set of backends override this fixture with a no-op of the same name.
    """
    db_fixtures = {"db", "transactional_db", "live_server", "django_db_reset_sequences"}
    if request.node.get_closest_marker("django_db") is None and not (
        db_fixtures & set(request.fixturenames)
    ):
        return
    request.getfixturevalue("db")
    from rooms.models import BackendKind, MediaBackend

    MediaBackend.objects.bulk_create(
        [
            MediaBackend(
                name=f"test-shared-{country.lower()}",
                kind=BackendKind.LIVEKIT,
                # Nothing listens there: a health probe fails at once, without leaving the host.
                base_url="http://127.0.0.1:9",
                api_key="test-key",
                secret_env="TEST_LIVEKIT_SECRET",
                country=country,
                agency=None,
                capacity=100_000,
                weight=0,
            )
            for country in TEST_BACKEND_COUNTRIES
        ]
    )


ALL_SCOPES = (
    "meetings:read",
    "meetings:write",
    "join:issue",
    "freebusy:read",
    "feeds:manage",
    "webhooks:manage",
)


@pytest.fixture
def make_api_key(db):
    """make_api_key(agency, scopes=ALL_SCOPES, **fields) → (ApiKey row, the full key string)."""
    from agencies.services import apikey_create
    from visio_broker.audit import CLI

    def make(agency, scopes=ALL_SCOPES, *, name=None, expires_days=None):
        make.count += 1
        return apikey_create(
            actor=CLI,
            agency=agency,
            name=name or f"integration-{make.count}",
            scopes=scopes,
            expires_days=expires_days,
        )

    make.count = 0
    return make


def api_client(raw_key: str | None) -> Client:
    """A Django test client that sends the key as a Bearer token (JSON by default)."""
    headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
    return Client(headers=headers)
