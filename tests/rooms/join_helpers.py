"""What the join, token and lobby tests share: backends whose secrets the tests know, a room for
a meeting, people and meetings, and the independent verifiers (livekit-api, Node
livekit-server-sdk, PyJWT with Prosody's rules).

Test modules take the fixtures with ``from tests.rooms.join_helpers import *`` (``__all__`` lists
only them) and import everything else by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import jwt
import pytest
import time_machine
from django.db.models.query_utils import DeferredAttribute
from django.test import Client
from livekit.api import TokenVerifier

from agencies.models import Role, User
from meetings.models import Meeting
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, meeting_schedule
from rooms.models import BackendKind, MediaBackend, RoomReservation

__all__ = ["book", "join_secrets", "no_deferred_reads", "people"]

ROOT = Path(__file__).resolve().parents[2]
NODE_VERIFY = ROOT / "tests" / "node" / "livekit_verify.mjs"
NODE_SDK = ROOT / "node_modules" / "livekit-server-sdk"

LIVEKIT_KEY = "APIjoinTest"
LIVEKIT_SECRET = "join-test-livekit-secret-0123456789abcdef"
LIVEKIT_SECRET_ENV = "VB_TEST_JOIN_LIVEKIT_SECRET"
LIVEKIT_URL = "wss://livekit.join.test"
LIVEKIT_MEET = "https://meet.join.test"

JITSI_APP = "visio-join-app"
JITSI_SECRET = "join-test-jitsi-secret-0123456789abcdef"
JITSI_SECRET_ENV = "VB_TEST_JOIN_JITSI_SECRET"
JITSI_URL = "https://jitsi.join.test"
JITSI_SUB = "meet.jitsi"


@pytest.fixture
def join_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIVEKIT_SECRET_ENV, LIVEKIT_SECRET)
    monkeypatch.setenv(JITSI_SECRET_ENV, JITSI_SECRET)


def livekit_backend(*, frontend: bool = True, name: str = "join-livekit") -> MediaBackend:
    backend, _ = MediaBackend.objects.update_or_create(
        name=name,
        defaults={
            "kind": BackendKind.LIVEKIT,
            "base_url": LIVEKIT_URL,
            "frontend_url": LIVEKIT_MEET if frontend else "",
            "api_key": LIVEKIT_KEY,
            "secret_env": LIVEKIT_SECRET_ENV,
            "country": "FR",
            "capacity": 1000,
        },
    )
    return backend


def jitsi_backend(*, name: str = "join-jitsi") -> MediaBackend:
    backend, _ = MediaBackend.objects.update_or_create(
        name=name,
        defaults={
            "kind": BackendKind.JITSI,
            "base_url": JITSI_URL,
            "api_key": JITSI_APP,
            "secret_env": JITSI_SECRET_ENV,
            "jitsi_sub": JITSI_SUB,
            "country": "FR",
            "capacity": 1000,
        },
    )
    return backend


def reserve(meeting: Meeting, backend: MediaBackend) -> RoomReservation:
    """The meeting's room on ``backend``: booking's reservation moved there, or a new one."""
    reservation = RoomReservation.objects.filter(meeting=meeting).first()
    if reservation is None:
        reservation = RoomReservation.objects.create(
            meeting=meeting,
            agency=meeting.host_agency,
            backend=backend,
            expected_participants=max(meeting.attendees.count(), 1),
        )
    elif reservation.backend_id != backend.pk or reservation.released_at is not None:
        reservation.backend = backend
        reservation.released_at = None
        reservation.save(update_fields=["backend", "released_at", "updated_at"])
    # Forget a cached "no reservation" so the next read of meeting.reservation sees this row.
    meeting._state.fields_cache.pop("reservation", None)
    return reservation


def token_from_url(url: str) -> str:
    """The token a provider URL carries: LiveKit Meet's ``token=``, Jitsi's ``jwt=``."""
    query = parse_qs(urlsplit(url).query)
    values = query.get("token") or query.get("jwt")
    assert values, f"no token in {url}"
    return values[0]


def livekit_verify(token: str, *, room: str, secret: str = LIVEKIT_SECRET) -> Any:
    """livekit-api's TokenVerifier, plus the server's exact room match."""
    claims = TokenVerifier(LIVEKIT_KEY, secret).verify(token)
    if claims.video is None or claims.video.room != room or not claims.video.room_join:
        raise PermissionError(f"token is not for room {room!r}")
    return claims


def node_available() -> bool:
    if shutil.which("node") and NODE_SDK.exists():
        return True
    message = "Node or node_modules/livekit-server-sdk missing: run `make node`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    return False


def node_verify(
    token: str, *, key: str = LIVEKIT_KEY, secret: str = LIVEKIT_SECRET, room: str | None = None
) -> dict[str, Any]:
    """The Node livekit-server-sdk TokenVerifier: the verified claims, or PermissionError."""
    node_available()
    done = subprocess.run(
        ["node", str(NODE_VERIFY)],
        input=json.dumps({"token": token, "key": key, "secret": secret}),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise PermissionError(done.stderr.strip() or "rejected")
    claims: dict[str, Any] = json.loads(done.stdout)
    if room is not None and claims.get("video", {}).get("room") != room:
        raise PermissionError(f"token is not for room {room!r}")
    return claims


def jitsi_verify(
    token: str, *, room: str, secret: str = JITSI_SECRET, app: str = JITSI_APP
) -> dict[str, Any]:
    """What Prosody's token_verification checks, with PyJWT: the exact header, signature, iss and
    aud, the required claims, nbf and exp without leeway, and the room (compared lower-cased)."""
    header = jwt.get_unverified_header(token)
    if header != {"alg": "HS256", "typ": "JWT"}:
        raise jwt.InvalidTokenError(f"header {header}")
    claims: dict[str, Any] = jwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        audience=app,
        issuer=app,
        leeway=0,
        options={"require": ["iss", "aud", "sub", "room", "exp", "nbf"]},
    )
    if claims["room"] != "*" and claims["room"].lower() != room.lower():
        raise jwt.InvalidTokenError(f"token is for room {claims['room']!r}, not {room!r}")
    return claims


# --- People and meetings -------------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")
BOOKED_AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# The meeting: Tuesday 3 March 2026, 10:00–11:00 Paris (09:00–10:00 UTC). The room opens at
# 09:45 Paris and closes at 11:15 (15 minutes each side, the defaults).
START = datetime(2026, 3, 3, 10, 0, tzinfo=PARIS)
END = START + timedelta(hours=1)
MOMENTS = {
    "before": START - timedelta(minutes=20),
    "inside": START + timedelta(minutes=30),
    "after": END + timedelta(minutes=16),
}


@dataclass
class People:
    organizer: User
    co_organizer: User
    attendee: User
    host_member: User
    other_member: User

    def user(self, who: str) -> User | None:
        return {
            "organizer": self.organizer,
            "co_organizer": self.co_organizer,
            "attendee": self.attendee,
            "host_member": self.host_member,
            "other_agency": self.other_member,
        }.get(who)

    def client(self, who: str) -> Client:
        """A browser for ``who``; anonymous and guests have no account. Sign in at the moment
        of the request (inside its time travel): sessions last 12 hours."""
        client = Client()
        user = self.user(who)
        if user is not None:
            client.force_login(user)
        return client


@pytest.fixture
def no_deferred_reads(monkeypatch):
    """Fails the test when anything reads a field that its query left out (rooms.selectors'
    _JOIN_LEAVES_OUT): each such read costs a query of its own. Modules whose flows all go
    through the join's read opt in with usefixtures."""
    read: list[tuple[str, str]] = []
    check = DeferredAttribute._check_parent_chain  # called only for a field not loaded

    def recording(self, instance):
        read.append((type(instance).__name__, self.field.attname))
        return check(self, instance)

    monkeypatch.setattr(DeferredAttribute, "_check_parent_chain", recording)
    yield read
    assert read == [], f"deferred fields read, one query each: {read}"


@pytest.fixture
def people(agency, other_agency, make_member) -> People:
    return People(
        organizer=make_member(agency, Role.ORGANIZER, display_name="Olivia Organizer"),
        co_organizer=make_member(agency, Role.MEMBER, display_name="Colin Co"),
        attendee=make_member(agency, Role.MEMBER, display_name="Alice Attendee"),
        host_member=make_member(agency, Role.MEMBER, display_name="Hugo Host"),
        other_member=make_member(other_agency, Role.ORGANIZER, display_name="Otto Other"),
    )


@pytest.fixture
def book(people, join_secrets) -> Callable[..., Meeting]:
    """book(access_level=…, lobby=…, backend=…, weekly=False) → a meeting with a room on backend."""

    def make(
        *,
        access_level: str = "invite",
        lobby: bool = True,
        backend: MediaBackend | None = None,
        weekly: bool = False,
    ) -> Meeting:
        with time_machine.travel(BOOKED_AT, tick=False):
            meeting = meeting_schedule(
                actor=people.organizer,
                title="Budget review",
                start=START,
                end=END,
                timezone="Europe/Paris",
                recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=5) if weekly else None,
                attendees=[AttendeeSpec(people.attendee.email)],
                co_organizers=[people.co_organizer],
                access_level=access_level,
                lobby_enabled=lobby,
            )
        reserve(meeting, backend or livekit_backend())
        return meeting

    return make
