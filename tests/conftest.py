"""Shared fixtures. The environment (PostgreSQL, Redis) is set in tests/env_defaults.py."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import AgencyFactory, MembershipFactory


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    """Rate-limit counters live in Redis: every test starts from zero."""
    cache.clear()


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
