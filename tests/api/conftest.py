"""Fixtures shared by the API tests: a frozen clock, an organizer, a key with every scope."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from agencies.models import Role
from tests.conftest import api_client

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    """Frozen at NOW (a Monday, winter time in Paris); modules opt in with usefixtures."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orla@test.gouv.example")


@pytest.fixture
def key(agency, make_api_key):
    """(ApiKey, full key) of the agency, with every scope."""
    return make_api_key(agency)


@pytest.fixture
def client(key):
    return api_client(key[1])
