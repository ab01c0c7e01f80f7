"""Capacity is never over-committed under concurrent bookings (PostgreSQL row locks)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections
from django.utils import timezone

from agencies.models import Role
from meetings.models import Attendee, AttendeeRole, Meeting
from rooms.models import BackendKind, MediaBackend, ReservedWindow, RoomReservation
from rooms.selectors import backend_load
from rooms.services import room_reserve
from visio_broker.errors import NoCapacity

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPTS = 100
PARIS = ZoneInfo("Europe/Paris")
# Connections left to other test processes sharing the server.
CONNECTION_MARGIN = 10


@pytest.fixture(autouse=True)
def _test_backends():
    """Exactly the backends of the test (overrides tests/conftest.py)."""


def _free_connections() -> int:
    """Connections the server can still give this test, besides its own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
        (free,) = cursor.fetchone()
    return free - CONNECTION_MARGIN


def _meetings(organizer, start: datetime, count: int) -> list[Meeting]:
    """Meetings without a room yet (booked before any backend existed), all at one time."""
    meetings = []
    for n in range(count):
        meeting = Meeting.objects.create(
            uid=f"concurrency-{n}@testserver",
            title=f"Meeting {n}",
            start=start,
            end=start + timedelta(hours=1),
            series_end=start + timedelta(hours=1),
            timezone="Europe/Paris",
            host_agency=organizer.membership.agency,
            organizer=organizer,
        )
        Attendee.objects.create(
            meeting=meeting, user=organizer, email=organizer.email, role=AttendeeRole.CHAIR
        )
        meetings.append(meeting)
    return meetings


def _backend(name: str, *, agency=None, capacity: int) -> MediaBackend:
    return MediaBackend.objects.create(
        name=name,
        kind=BackendKind.LIVEKIT,
        base_url="https://livekit.example.org",
        api_key="key",
        secret_env="TEST_LIVEKIT_SECRET",
        country="FR",
        agency=agency,
        capacity=capacity,
    )


def test_100_simultaneous_reservations_for_10_seats_give_exactly_10_rooms(agency, make_member):
    assert connection.vendor == "postgresql"
    organizer = make_member(agency, Role.ORGANIZER)
    own = _backend("own", agency=agency, capacity=4)
    shared = _backend("shared", capacity=6)
    tomorrow = timezone.now().astimezone(PARIS) + timedelta(days=1)
    start = tomorrow.replace(hour=10, minute=0, second=0, microsecond=0)
    meetings = _meetings(organizer, start, ATTEMPTS)

    # All threads leave the barrier together. Each holds its own connection while it books; the
    # gate keeps that number within what the server allows (max_connections is often 100).
    free = _free_connections()
    assert free >= 20, f"PostgreSQL has only {free} free connections for this test"
    gate = threading.BoundedSemaphore(min(ATTEMPTS, free))
    barrier = threading.Barrier(ATTEMPTS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(meeting: Meeting) -> None:
        try:
            barrier.wait(timeout=60)
            with gate:
                try:
                    room_reserve(actor=organizer, meeting=meeting, expected_participants=1)
                    outcome = "reserved"
                except NoCapacity as exc:
                    outcome = exc.code
                except Exception as exc:  # every other error fails the test below
                    outcome = f"error: {exc!r}"
                finally:
                    connections.close_all()
        except threading.BrokenBarrierError as exc:
            outcome = f"error: {exc!r}"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=attempt, args=(m,)) for m in meetings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads)
    assert Counter(outcomes) == {"reserved": 10, "no_capacity": 90}
    assert ReservedWindow.objects.count() == 10
    assert RoomReservation.objects.count() == 10
    end = start + timedelta(hours=1)
    assert (backend_load(own, start, end), backend_load(shared, start, end)) == (4, 6)
