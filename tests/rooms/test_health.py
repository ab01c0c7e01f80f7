"""Backend health: probes through the HTTP seam against a real local server, the state
machine healthy → degraded → down → healthy, its audit trail and the failover hand-off."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection, transaction

from agencies.models import AuditEvent
from rooms import services, tasks
from rooms.models import (
    BackendKind,
    HealthState,
    MediaBackend,
    ReservedWindow,
    RoomReservation,
)
from tests.local_http import LocalServer
from visio_broker.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROUND = timedelta(seconds=30)


@pytest.fixture(autouse=True)
def _health_settings(settings):
    settings.ROOMS_HEALTH_INTERVAL_SECONDS = 30
    settings.ROOMS_HEALTH_DOWN_AFTER = 3
    settings.ROOMS_HEALTH_UP_AFTER = 2
    settings.ROOMS_HEALTH_TIMEOUT_SECONDS = 0.3


@pytest.fixture
def server():
    running = LocalServer().start()
    yield running
    running.stop()


@pytest.fixture
def failovers(monkeypatch):
    """Records backend_failover calls instead of moving rooms (that has a test of its own)."""
    calls: list[int] = []
    monkeypatch.setattr(services, "backend_failover", lambda *, backend: calls.append(backend.pk))
    return calls


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=True) as traveller:
        yield traveller


def _backend(name: str, url: str, kind: str = BackendKind.LIVEKIT, **fields) -> MediaBackend:
    return MediaBackend.objects.create(
        name=name,
        kind=kind,
        base_url=url,
        api_key="key",
        secret_env="HEALTH_TEST_SECRET",
        country="FR",
        capacity=10,
        **fields,
    )


def _probe(backend: MediaBackend, clock) -> MediaBackend:
    clock.shift(ROUND)
    services.backend_probe(backend=backend)
    backend.refresh_from_db()
    return backend


def _state(backend: MediaBackend) -> tuple[str, int, int]:
    return backend.health_state, backend.consecutive_failures, backend.consecutive_successes


def _transitions(backend: MediaBackend) -> list[tuple[str, str]]:
    events = AuditEvent.objects.filter(
        action="backend.health_changed", object_id=str(backend.pk)
    ).order_by("created_at", "id")
    assert {e.actor_label for e in events} <= {"system"}
    assert all(e.actor is None and e.object_type == "rooms.mediabackend" for e in events)
    return [(e.detail["from"], e.detail["to"]) for e in events]


# --- The state machine, end to end ------------------------------------------------------------


@pytest.mark.django_db
def test_health_story_ok_500_refused_timeout_ok(server, failovers, clock):
    backend = _backend("health-story", server.url.replace("http://", "ws://"))
    port = server.port

    server.answer(200, b"OK")
    backend = _probe(backend, clock)
    assert _state(backend) == (HealthState.HEALTHY, 0, 1)
    assert backend.last_error == ""
    assert backend.last_checked_at >= START + ROUND
    assert _transitions(backend) == []

    server.answer(500, b"boom")
    backend = _probe(backend, clock)
    assert _state(backend) == (HealthState.DEGRADED, 1, 0)
    assert "HTTP 500" in backend.last_error
    assert _transitions(backend) == [("healthy", "degraded")]

    server.stop()  # the port is closed: connection refused
    backend = _probe(backend, clock)
    assert _state(backend) == (HealthState.DEGRADED, 2, 0)
    assert "connection refused" in backend.last_error
    assert failovers == []

    server.start()  # the same port again, now hanging past the probe's timeout
    assert server.port == port
    server.answer(200, b"OK", delay=5)
    backend = _probe(backend, clock)
    assert _state(backend) == (HealthState.DOWN, 3, 0)
    assert "timed out" in backend.last_error
    assert _transitions(backend) == [("healthy", "degraded"), ("degraded", "down")]
    assert failovers == [backend.pk]

    backend = _probe(backend, clock)  # still hanging: down stays down, no second failover
    assert _state(backend) == (HealthState.DOWN, 4, 0)
    assert failovers == [backend.pk]

    server.answer(200, b"OK")
    backend = _probe(backend, clock)
    assert _state(backend) == (HealthState.DOWN, 0, 1)  # one success is not enough
    assert backend.last_error == ""

    backend = _probe(backend, clock)
    assert _state(backend) == (HealthState.HEALTHY, 0, 2)
    assert _transitions(backend) == [
        ("healthy", "degraded"),
        ("degraded", "down"),
        ("down", "healthy"),
    ]
    assert failovers == [backend.pk]
    # Every probe reached the server's root, over plain HTTP for a ws:// URL.
    assert {(r.method, r.path) for r in server.requests} == {("GET", "/")}


@pytest.mark.django_db
def test_health_transition_audit_says_from_to_and_why(server, failovers, clock):
    backend = _backend("health-audit", server.url)
    server.answer(503, b"")

    _probe(backend, clock)

    event = AuditEvent.objects.get(action="backend.health_changed", object_id=str(backend.pk))
    assert event.detail["from"] == "healthy"
    assert event.detail["to"] == "degraded"
    assert "HTTP 503" in event.detail["error"]
    assert event.detail["consecutive_failures"] == 1


@pytest.mark.django_db
def test_health_degraded_recovers_after_up_after_successes(server, failovers, clock):
    backend = _backend("health-recover", server.url)
    server.answer(500)
    _probe(backend, clock)
    server.answer(200, b"OK")

    assert _state(_probe(backend, clock)) == (HealthState.DEGRADED, 0, 1)
    assert _state(_probe(backend, clock)) == (HealthState.HEALTHY, 0, 2)
    assert _transitions(backend) == [("healthy", "degraded"), ("degraded", "healthy")]
    assert failovers == []


@pytest.mark.django_db
def test_health_a_success_between_failures_restarts_the_count(server, failovers, clock):
    backend = _backend("health-flap", server.url)
    for answer in (500, 500, 200, 500, 500):
        server.answer(answer, b"OK")
        backend = _probe(backend, clock)

    assert _state(backend) == (HealthState.DEGRADED, 2, 0)
    assert failovers == []


@pytest.mark.django_db
def test_health_down_after_one_goes_straight_to_down(server, failovers, clock, settings):
    settings.ROOMS_HEALTH_DOWN_AFTER = 1
    backend = _backend("health-one", server.url)
    server.answer(502)

    backend = _probe(backend, clock)

    assert _state(backend) == (HealthState.DOWN, 1, 0)
    assert _transitions(backend) == [("healthy", "down")]
    assert failovers == [backend.pk]


@pytest.mark.django_db
def test_health_turning_down_moves_upcoming_rooms_to_another_backend(
    server, clock, settings, agency, make_member
):
    """The real failover, no stand-in: the room keeps its name and changes backend."""
    settings.ROOMS_HEALTH_DOWN_AFTER = 1
    failing = _backend("health-fo-failing", server.url, agency=agency)
    spare = _backend("health-fo-spare", "wss://spare.invalid", agency=agency, weight=1000)
    reservation = RoomReservation.objects.create(
        agency=agency,
        backend=failing,
        title="Ad-hoc",
        created_by=make_member(agency, "organizer"),
        expected_participants=3,
    )
    start = START + timedelta(days=1)
    ReservedWindow.objects.create(
        reservation=reservation,
        backend=failing,
        start=start,
        end=start + timedelta(hours=1),
        participants=3,
    )
    room_name = reservation.room_name
    server.answer(500)

    _probe(failing, clock)

    reservation.refresh_from_db()
    assert (reservation.backend, reservation.room_name) == (spare, room_name)
    assert list(reservation.windows.values_list("backend__name", flat=True)) == [spare.name]
    assert AuditEvent.objects.filter(action="room.failed_over", object_id=str(reservation.pk))


# --- What each kind must answer ---------------------------------------------------------------


@pytest.mark.django_db
def test_health_livekit_needs_the_ok_body(server, failovers, clock):
    backend = _backend("health-lk-body", server.url.replace("http://", "ws://"))
    server.answer(200, b"<html>not livekit</html>")

    backend = _probe(backend, clock)

    assert _state(backend) == (HealthState.DEGRADED, 1, 0)
    assert "without the LiveKit OK" in backend.last_error


@pytest.mark.django_db
def test_health_livekit_behind_a_path_is_probed_at_that_path(server, failovers, clock):
    backend = _backend("health-lk-path", server.url.replace("http://", "ws://") + "/livekit")

    _probe(backend, clock)

    assert [r.path for r in server.requests] == ["/livekit/"]


@pytest.mark.django_db
def test_health_jitsi_probes_its_health_url_and_accepts_any_2xx(server, failovers, clock):
    backend = _backend(
        "health-jitsi",
        "https://meet.invalid",
        kind=BackendKind.JITSI,
        health_url=f"{server.url}/about/health",
    )
    server.answer(204, b"", path="/about/health")

    backend = _probe(backend, clock)

    assert _state(backend) == (HealthState.HEALTHY, 0, 1)
    assert [r.path for r in server.requests] == ["/about/health"]


@pytest.mark.django_db
def test_health_jitsi_without_health_url_probes_the_base_url(server, failovers, clock):
    backend = _backend("health-jitsi-base", server.url, kind=BackendKind.JITSI)
    server.answer(404, b"gone")

    backend = _probe(backend, clock)

    assert _state(backend) == (HealthState.DEGRADED, 1, 0)
    assert "HTTP 404" in backend.last_error
    assert [r.path for r in server.requests] == ["/"]


@pytest.mark.django_db
def test_health_error_text_never_keeps_a_query_string(server, failovers, clock):
    backend = _backend(
        "health-query",
        "https://meet.invalid",
        kind=BackendKind.JITSI,
        health_url=f"{server.url}/health?token=SECRET-IN-QUERY",
    )
    server.answer(500)

    backend = _probe(backend, clock)

    assert backend.last_error
    assert "SECRET-IN-QUERY" not in backend.last_error
    event = AuditEvent.objects.get(action="backend.health_changed", object_id=str(backend.pk))
    assert "SECRET-IN-QUERY" not in str(event.detail)


# --- Counting each round once -----------------------------------------------------------------


@pytest.mark.django_db
def test_health_second_probe_in_the_same_round_counts_nothing(server, failovers, clock):
    backend = _backend("health-twice", server.url)
    server.answer(500)
    _probe(backend, clock)

    services.backend_probe(backend=backend)  # same round: a duplicate beat or a retried task
    backend.refresh_from_db()

    assert _state(backend) == (HealthState.DEGRADED, 1, 0)
    assert len(server.requests) == 1


@pytest.mark.django_db
def test_health_disabled_backend_is_not_probed(server, failovers, clock):
    backend = _backend("health-off", server.url, enabled=False)

    backend = _probe(backend, clock)

    assert backend.last_checked_at is None
    assert server.requests == []


@pytest.mark.django_db(transaction=True)
def test_health_backend_locked_by_another_probe_is_skipped(server, failovers):
    backend = _backend("health-locked", server.url)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                MediaBackend.objects.select_for_update().get(pk=backend.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        services.backend_probe(backend=backend)
    finally:
        release.set()
        holder.join()

    backend.refresh_from_db()
    assert (backend.last_checked_at, backend.consecutive_successes) == (None, 0)
    assert server.requests == []


# --- The beat task ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_health_task_probes_every_enabled_backend(server, failovers, monkeypatch):
    # Other tests' fixtures may add backends with made-up hosts: this test probes only its own.
    MediaBackend.objects.update(enabled=False)
    up = _backend("health-task-up", server.url)
    down = _backend("health-task-down", server.url, kind=BackendKind.JITSI)
    off = _backend("health-task-off", server.url, enabled=False)
    server.answer(200, b"OK", path="/")
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)

    assert tasks.probe_backends.delay().get() == 2

    for backend in (up, down, off):
        backend.refresh_from_db()
    assert up.consecutive_successes == down.consecutive_successes == 1
    assert off.last_checked_at is None
    assert len(server.requests) == 2


@pytest.mark.django_db
def test_health_task_switched_off_probes_nothing(server, failovers, monkeypatch, settings):
    settings.ROOMS_HEALTH_ENABLED = False
    backend = _backend("health-task-switched-off", server.url)
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)

    assert tasks.probe_backends.delay().get() == 0

    backend.refresh_from_db()
    assert backend.last_checked_at is None
    assert server.requests == []


@pytest.mark.django_db
def test_health_task_for_a_deleted_backend_does_nothing(failovers):
    assert tasks.probe_backend(backend_id=987654321) is None


def test_health_probe_runs_on_beat_every_interval(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["rooms.probe_backends"]
    assert entry["task"] == "rooms.probe_backends"
    assert entry["schedule"] == float(settings.ROOMS_HEALTH_INTERVAL_SECONDS)
    assert "rooms.probe_backends" in celery_app.tasks


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ROOMS_HEALTH_INTERVAL_SECONDS": "10", "ROOMS_HEALTH_TIMEOUT_SECONDS": "5"},
            "ROOMS_HEALTH_TIMEOUT_SECONDS must be at most a quarter",
        ),
        ({"ROOMS_HEALTH_DOWN_AFTER": "0"}, "ROOMS_HEALTH_DOWN_AFTER must be at least 1"),
        ({"ROOMS_HEALTH_INTERVAL_SECONDS": "often"}, "ROOMS_HEALTH_INTERVAL_SECONDS must be an"),
    ],
)
def test_health_settings_refuse_bad_values(tmp_path, env, message):
    result = subprocess.run(
        [sys.executable, "-c", "import visio_broker.settings"],
        cwd=ROOT,
        env={**os.environ, "VISIO_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert message in result.stderr
