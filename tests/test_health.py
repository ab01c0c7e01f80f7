"""/healthz (the process is alive) and /readyz (its database, migrations and broker are usable)."""

from __future__ import annotations

import copy
import socket

import pytest
from django.db import connections
from django.test import Client

from tests.conftest import signed_in_client
from visio_broker import views
from visio_broker.celery import app as celery_app


def _closed_port() -> int:
    """A loopback port nobody listens on: bound once to pick it, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable_database(monkeypatch):
    """The readiness view talks to a fresh connection whose server is not there.

    The test's own connection (and its transaction) is left alone, so nothing leaks into
    other tests.
    """
    real = connections["default"]
    settings_dict = copy.deepcopy(real.settings_dict)
    if real.vendor == "postgresql":
        settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
        settings_dict.setdefault("OPTIONS", {})["connect_timeout"] = 2
    else:
        settings_dict["NAME"] = "/nonexistent-directory/visio-broker.sqlite3"
    broken = type(real)(settings_dict, alias="default")
    monkeypatch.setattr(views, "connection", broken)
    yield broken
    broken.close()


def _point_broker_at(monkeypatch, url: str) -> None:
    # Celery's broker_url prefers the CELERY_BROKER_URL variable over the configured value.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setitem(celery_app.conf, "broker_url", url)


@pytest.fixture
def unreachable_broker(monkeypatch):
    _point_broker_at(monkeypatch, f"redis://127.0.0.1:{_closed_port()}/0")


def test_healthz_answers_ok_without_dependencies():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_refuses_post():
    assert Client().post("/healthz").status_code == 405


@pytest.mark.django_db
def test_readyz_answers_ok_when_everything_is_up():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok"},
    }
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_is_unreachable(unreachable_database):
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "unreachable: OperationalError"
    # Without a database the migration state is unknown: not reported as fine.
    assert body["checks"]["migrations"] == "unknown: no database"
    assert body["checks"]["broker"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_unreachable(unreachable_broker):
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable: ")


@pytest.mark.django_db
def test_readyz_recovers_once_the_broker_is_back(monkeypatch):
    good = celery_app.conf.broker_url
    _point_broker_at(monkeypatch, f"redis://127.0.0.1:{_closed_port()}/0")
    assert Client().get("/readyz").status_code == 503
    _point_broker_at(monkeypatch, good)
    assert Client().get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_is_not_behind_mfa_setup(agency, make_member):
    admin = make_member(agency, "admin")  # no TOTP yet: every other page sends them to set-up
    client = signed_in_client(admin)
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200
