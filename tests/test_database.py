"""PostgreSQL connections bind parameters on the server and prepare the statements they repeat
(DATABASE_PREPARED_STATEMENTS, on by default; off for a transaction-pooling PgBouncer), and a
kept connection is checked without a round trip, and timestamps are parsed by psycopg's compiled
loader."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg.pq import Format

from agencies.models import Agency
from visio_broker.postgresql.base import TIMESTAMPTZ_OID, UtcTimestamptzLoader

ROOT = Path(__file__).resolve().parent.parent
SHOW_OPTIONS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps(settings.DATABASES["default"].get("OPTIONS", {})))
"""


@pytest.mark.django_db
def test_repeated_statements_are_prepared_on_the_server(agency):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    for _ in range(6):  # prepare_threshold is 5
        assert Agency.objects.filter(pk=agency.pk).values_list("slug", flat=True).get()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%"agencies_agency"."slug"%'],
        )
        prepared = [statement for (statement,) in cursor.fetchall()]
    # The server saw placeholders, not the value: one plan for every agency.
    assert prepared and all("$1" in statement for statement in prepared)


def _options(**env: str) -> dict[str, object]:
    shown = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SHOW_OPTIONS],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DJANGO_SETTINGS_MODULE": "visio_broker.settings",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/visio_broker",
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(shown.stdout))


@pytest.mark.slow
def test_prepared_statements_are_on_by_default_and_can_be_turned_off():
    assert _options() == {
        "connect_timeout": 5,
        "server_side_binding": True,
        "prepare_threshold": 5,
    }
    assert _options(DATABASE_PREPARED_STATEMENTS="false") == {"connect_timeout": 5}


# --- The health check of a kept connection (visio_broker.postgresql) -----------------------------


@pytest.fixture
def kept_connections():
    """Two fresh autocommit connections to the test database, outside the test's transaction:
    the one checked and an administrator's."""
    if connection.vendor != "postgresql":
        pytest.skip("the health check is PostgreSQL's")
    opened = [connections.create_connection(DEFAULT_DB_ALIAS) for _ in range(2)]
    for wrapper in opened:
        wrapper.ensure_connection()
    yield opened
    for wrapper in opened:
        wrapper.close()


def _last_query(admin, pid: int) -> str | None:
    with admin.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        found = cursor.fetchone()
    return found[0] if found else None


@pytest.mark.django_db
def test_a_quiet_kept_connection_is_usable_without_a_query(kept_connections):
    checked, admin = kept_connections
    with checked.cursor() as cursor:
        cursor.execute("SELECT 'the last query'")
    assert checked.is_usable()
    # The server ran nothing since: the check cost no round trip.
    assert _last_query(admin, checked.connection.info.backend_pid) == "SELECT 'the last query'"


@pytest.mark.django_db
def test_a_connection_the_server_dropped_is_replaced_before_the_request_queries(kept_connections):
    checked, admin = kept_connections
    pid = checked.connection.info.backend_pid
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while _last_query(admin, pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not checked.is_usable()
    # What Django does at a request's first query: check, close, connect again; no error.
    checked.health_check_done = False
    with checked.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert checked.connection.info.backend_pid != pid


@pytest.mark.django_db
def test_a_connection_the_server_spoke_to_is_asked(kept_connections):
    """A notification makes the socket readable: Django's SELECT 1 decides (it is alive)."""
    checked, admin = kept_connections
    with checked.cursor() as cursor:
        cursor.execute("LISTEN visio_health_check")
    with admin.cursor() as cursor:
        cursor.execute("NOTIFY visio_health_check")
    deadline = time.monotonic() + 10
    poller = select.poll()
    poller.register(checked.connection.fileno(), select.POLLIN)
    while not poller.poll(50) and time.monotonic() < deadline:
        pass
    assert checked.is_usable()
    assert _last_query(admin, checked.connection.info.backend_pid) == "SELECT 1"


# --- Timestamps read by psycopg's compiled loader (visio_broker.postgresql) -----------------------


@pytest.mark.django_db
def test_timestamps_read_back_as_the_same_instants_in_utc(agency):
    if connection.vendor != "postgresql":
        pytest.skip("the loader is PostgreSQL's")
    moments = [
        datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, 0, 1, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    for moment in moments:
        Agency.objects.filter(pk=agency.pk).update(created_at=moment)
        found = Agency.objects.values_list("created_at", flat=True).get(pk=agency.pk)
        assert found == moment
        assert found.tzinfo is UTC
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    assert loader is UtcTimestamptzLoader


@pytest.mark.django_db
def test_a_session_in_another_zone_still_reads_utc(agency):
    if connection.vendor != "postgresql":
        pytest.skip("the loader is PostgreSQL's")
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    Agency.objects.filter(pk=agency.pk).update(created_at=moment)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'America/Sao_Paulo'")
        cursor.execute("SELECT created_at FROM agencies_agency WHERE id = %s", [agency.pk])
        (found,) = cursor.fetchone()
    assert found == moment
    assert found.tzinfo is UTC
