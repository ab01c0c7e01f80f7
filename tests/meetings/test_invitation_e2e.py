"""End to end on real parts: a meeting booked in the web UI reaches the invitee through a Celery
worker on Redis and an SMTP server; the RSVP link in that mail answers, and the organizer hears.

Throwaway Redis and worker processes on free loopback ports, stopped by their PID; the worker
reads the test database of this test (``transaction=True``, so what the test writes is committed).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone as djtz

from agencies.models import Role
from meetings import rsvp
from meetings.models import Meeting, PartStat
from tests.conftest import signed_in_client
from tests.smtp_sink import ReceivedMail, SmtpSink, smtp_sink_fixture  # noqa: F401
from visio_broker.celery import app as celery_app

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CELERY = ROOT / ".venv" / "bin" / "celery"
PARIS = ZoneInfo("Europe/Paris")
BATCH_SECONDS = 2
RSVP_LINK = re.compile(r"https?://[^\s\"'<>]+/rsvp/[^\s\"'<>/]+/")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(
    condition: Callable[[], object], timeout: float, what: str, log: Path | None = None
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    tail = log.read_text()[-4000:] if log is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "redis.log").open("wb")
    process = subprocess.Popen(
        [
            "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: _accepts(port), 15, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)
        log.close()


def _reset_producer_pools() -> None:
    # Connections already made to the suite's shared broker would otherwise be reused.
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def producer_on_throwaway_broker(redis_url: str, settings) -> Iterator[None]:
    """This process's after-commit relays go to the throwaway Redis the worker consumes."""
    settings.CELERY_BROKER_URL = redis_url
    # The CELERY_-namespaced broker_url read from the settings wins over a plain assignment;
    # the write URL (what producers use) has no such twin, and None falls back to broker_url.
    celery_app.conf.broker_write_url = redis_url
    _reset_producer_pools()
    try:
        yield
    finally:
        celery_app.conf.broker_write_url = None
        _reset_producer_pools()


def _test_database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(
    transactional_db, redis_url: str, smtp_sink: SmtpSink, settings, tmp_path: Path
) -> Iterator[Path]:
    """A real Celery worker on the throwaway broker, this test's database and the SMTP sink."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "visio_broker.settings",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "EMAIL_DELIVERY": "smtp",
        "EMAIL_HOST": smtp_sink.host,
        "EMAIL_PORT": str(smtp_sink.port),
        "SITE_URL": settings.SITE_URL,
        # RSVP links are signed in the worker and checked here: one key for both.
        "SECRET_KEY": settings.SECRET_KEY,
        "ORGANIZER_NOTICE_BATCH_SECONDS": str(BATCH_SECONDS),
    }
    log_path = tmp_path / "worker.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            str(CELERY),
            *("-A", "visio_broker", "worker", "--pool", "solo", "--concurrency", "1"),
            *("--loglevel", "INFO", "--without-mingle", "--without-gossip"),
            *("--hostname", f"e2e-{os.getpid()}@localhost"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(
            lambda: process.poll() is not None or " ready." in log_path.read_text(),
            60,
            "the Celery worker",
        )
        assert process.poll() is None, log_path.read_text()
        yield log_path
    finally:
        _stop(process)
        log.close()


def _has_calendar(received: ReceivedMail) -> bool:
    return any(part.get_content_type() == "text/calendar" for part in received.message.walk())


def _invitation_for(sink: SmtpSink, address: str) -> ReceivedMail | None:
    return next((mail for mail in sink.to(address) if _has_calendar(mail)), None)


def _notices_for(sink: SmtpSink, address: str) -> list[ReceivedMail]:
    return [mail for mail in sink.to(address) if not _has_calendar(mail)]


def _accept_link(received: ReceivedMail) -> str:
    """The Accept link of the mail, whatever its layout: the one whose token says accepted."""
    text = received.body("plain") + received.body("html")
    for url in dict.fromkeys(RSVP_LINK.findall(text)):
        token = urlsplit(url).path.rstrip("/").rsplit("/", 1)[1]
        if rsvp.rsvp_resolve(token).partstat == PartStat.ACCEPTED:
            return url
    raise AssertionError(f"no Accept link in the invitation: {text[:2000]}")


def test_booked_in_the_web_ui_invited_by_mail_answered_by_link_organizer_told(
    agency, make_member, smtp_sink, worker, producer_on_throwaway_broker, settings
):
    settings.ORGANIZER_NOTICE_BATCH_SECONDS = BATCH_SECONDS
    organizer = make_member(
        agency, Role.ORGANIZER, email="orga@test.gouv.example", display_name="Olga"
    )
    colleague = make_member(
        agency, Role.MEMBER, email="colleague@test.gouv.example", display_name="Colin"
    )
    day = (djtz.now().astimezone(PARIS) + timedelta(days=2)).date()

    response = signed_in_client(organizer).post(
        reverse("meeting_new"),
        {
            "title": "Budget review",
            "description": "Q2 figures",
            "date": day.isoformat(),
            "start_time": "10:00",
            "end_time": "11:00",
            "duration": "",
            "timezone": "Europe/Paris",
            "repeat": "none",
            "interval": "1",
            "monthly_mode": "day",
            "ends": "never",
            "attendees": colleague.email,
            "optional_attendees": "",
            "co_organizers": "",
            "access_level": "invite",
            "lobby_enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    meeting = Meeting.objects.get(title="Budget review")

    invitation = _wait_for(
        lambda: _invitation_for(smtp_sink, colleague.email),
        60,
        "the invitation at the sink",
        worker,
    )
    assert isinstance(invitation, ReceivedMail)
    assert "Budget review" in invitation.subject
    accept = _accept_link(invitation)
    assert accept.startswith(f"{settings.SITE_URL}/rsvp/")

    path = urlsplit(accept).path
    anonymous = Client()
    confirm = anonymous.get(path)
    assert confirm.status_code == 200
    assert meeting.attendees.get(email=colleague.email).partstat == PartStat.NEEDS_ACTION
    done = anonymous.post(path)
    assert done.status_code == 200
    assert meeting.attendees.get(email=colleague.email).partstat == PartStat.ACCEPTED

    _wait_for(
        lambda: _notices_for(smtp_sink, organizer.email),
        BATCH_SECONDS + 60,
        "the organizer's notice at the sink",
        worker,
    )
    [received] = _notices_for(smtp_sink, organizer.email)
    assert received.subject == "[Visio Broker] Colin accepted: Budget review"
    assert "Colin" in received.body("plain")
    assert received.message["Message-ID"].endswith("@testserver>")
    # Exactly once: nothing more arrives for the organizer after the batch window.
    time.sleep(BATCH_SECONDS + 1)
    assert len(_notices_for(smtp_sink, organizer.email)) == 1
