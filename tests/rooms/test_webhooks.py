"""LiveKit webhooks: only verified events are stored, once each, and keep occupancy and attendance.

Requests are signed the way LiveKit signs them (an API-key JWT carrying the body's SHA-256, sent
as the bare ``Authorization`` header), with livekit-api's AccessToken and, independently, with the
Node livekit-server-sdk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.test import Client
from livekit.api import AccessToken

from agencies.models import Role
from meetings.services import AttendeeSpec, meeting_schedule
from rooms.models import (
    Attendance,
    BackendKind,
    MediaBackend,
    ProviderEvent,
    RoomOccupancy,
    RoomReservation,
)

URL = "/rooms/livekit/webhook/"
API_KEY = "APIvisioTest"
SECRET = "visio-test-secret-0123456789abcdef"
SECRET_ENV = "VB_TEST_LIVEKIT_SECRET"
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# The meeting runs 10:00–11:00 Paris (09:00–10:00 UTC) on 3 March 2026.
T0 = int(datetime(2026, 3, 3, 8, 58, tzinfo=UTC).timestamp())

# livekit-server-sdk (npm), src/WebhookReceiver.test.ts: key, secret, body and its sha256.
VECTOR_KEY = "abcdefg"
VECTOR_SECRET = "abababa"
VECTOR_ENV = "VB_TEST_LIVEKIT_VECTOR_SECRET"
VECTOR_BODY = (
    '{"event":"room_started", "room":{"sid":"RM_TkVjUvAqgzKz", "name":"mytestroom", '
    '"emptyTimeout":300, "creationTime":"1628545903", '
    '"turnPassword":"ICkSr2rEeslkN6e9bXL4Ji5zzMD5Z7zzr6ulOaxMj6N", '
    '"enabledCodecs":[{"mime":"audio/opus"}, {"mime":"video/VP8"}]}}'
)
VECTOR_SHA256 = "CoEQz1chqJ9bnZRcORddjplkvpjmPujmLTR42DbefYI="


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _secrets(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(VECTOR_ENV, VECTOR_SECRET)


@pytest.fixture
def backend(db):
    return MediaBackend.objects.create(
        name="lk-hooks",
        kind=BackendKind.LIVEKIT,
        base_url="wss://lk-hooks.example.org",
        api_key=API_KEY,
        secret_env=SECRET_ENV,
        country="FR",
        capacity=100,
    )


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orga@test.gouv.example")


@pytest.fixture
def alice(agency, make_member):
    return make_member(agency, Role.MEMBER, email="alice@test.gouv.example", display_name="Alice")


@pytest.fixture
def reservation(organizer, alice, backend):
    meeting = meeting_schedule(
        actor=organizer,
        title="Budget review",
        start=datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(alice.email)],
    )
    return reserve(meeting, backend)


def reserve(meeting, backend) -> RoomReservation:
    """The meeting's room on ``backend``: allocation's own reservation if it made one."""
    existing = RoomReservation.objects.filter(meeting=meeting).first()
    if existing is not None:
        existing.backend = backend
        existing.save(update_fields=["backend"])
        return existing
    return RoomReservation.objects.create(
        meeting=meeting, agency=meeting.host_agency, backend=backend, expected_participants=5
    )


def body_sha256(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign(body: bytes, *, key: str = API_KEY, secret: str = SECRET, sha: str | None = None) -> str:
    """The Authorization header LiveKit sends: a 5-minute API-key token carrying the body hash."""
    token = AccessToken(key, secret).with_ttl(timedelta(minutes=5))
    return token.with_sha256(sha or body_sha256(body)).to_jwt()


def post(body: bytes | str, authorization: str | None = None, **extra):
    raw = body.encode() if isinstance(body, str) else body
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    content_type = extra.pop("content_type", "application/webhook+json")
    return Client().post(URL, data=raw, content_type=content_type, **headers, **extra)


def event(
    kind: str,
    room: str,
    *,
    event_id: str,
    at: int,
    sid: str = "",
    identity: str = "",
    name: str = "",
    joined: int = 0,
) -> bytes:
    """An event as LiveKit serialises it (protobuf JSON: camelCase, int64 as strings)."""
    payload: dict = {
        "event": kind,
        "room": {
            "sid": "RM_budget",
            "name": room,
            "emptyTimeout": 300,
            "creationTime": str(T0),
            "turnPassword": "turn-secret",
        },
        "id": event_id,
        "createdAt": str(at),
    }
    if identity:
        payload["participant"] = {
            "sid": sid,
            "identity": identity,
            "name": name,
            "state": "ACTIVE",
            "joinedAt": str(joined or at),
        }
    return json.dumps(payload).encode()


def deliver(body: bytes):
    return post(body, sign(body))


def state() -> tuple:
    """Everything a webhook can change, to compare before and after."""
    return (
        list(ProviderEvent.objects.values_list("event_id", "event").order_by("id")),
        list(RoomOccupancy.objects.values_list("participants", "active_since", "finished_at")),
        list(
            Attendance.objects.values_list(
                "participant_sid", "identity", "joined_at", "left_at"
            ).order_by("id")
        ),
    )


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- The public vector ------------------------------------------------------------------------


def test_webhook_public_vector_body_hash_matches():
    assert body_sha256(VECTOR_BODY.encode()) == VECTOR_SHA256


def test_webhook_public_vector_is_copied_from_the_sdk_tests():
    source = Path(settings.BASE_DIR, "node_modules/livekit-server-sdk/src/WebhookReceiver.test.ts")
    if not source.exists():
        pytest.skip("livekit-server-sdk is not installed (npm install)")
    text = source.read_text(encoding="utf-8")
    assert f"'{VECTOR_BODY}'" in text
    assert f"'{VECTOR_SHA256}'" in text


# The vector's 7-byte secret is below PyJWT's recommended HMAC key length.
vector_key_warning = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.fixture
def vector_backend(db):
    return MediaBackend.objects.create(
        name="lk-vector",
        kind=BackendKind.LIVEKIT,
        base_url="wss://lk-vector.example.org",
        api_key=VECTOR_KEY,
        secret_env=VECTOR_ENV,
        country="FR",
        capacity=10,
    )


@vector_key_warning
def test_webhook_public_vector_signed_is_accepted_and_stored(vector_backend):
    token = sign(b"", key=VECTOR_KEY, secret=VECTOR_SECRET, sha=VECTOR_SHA256)

    response = post(VECTOR_BODY, token)

    assert response.status_code == 200
    stored = ProviderEvent.objects.get()
    assert stored.backend == vector_backend
    assert stored.event == "room_started"
    assert stored.room_name == "mytestroom"
    assert stored.room_sid == "RM_TkVjUvAqgzKz"
    assert stored.reservation is None
    # The vector has no event id: the body hash stands in, so a replay is still recognised.
    assert stored.event_id == f"sha256:{VECTOR_SHA256}"
    assert stored.payload["room"]["name"] == "mytestroom"
    assert "turnPassword" not in stored.payload["room"]
    assert "ICkSr2rEeslkN6e9bXL4Ji5zzMD5Z7zzr6ulOaxMj6N" not in json.dumps(stored.payload)
    # An unknown room: stored, nothing else.
    assert not RoomOccupancy.objects.exists()
    assert not Attendance.objects.exists()


@vector_key_warning
def test_webhook_public_vector_with_one_byte_tampered_is_rejected(vector_backend):
    token = sign(b"", key=VECTOR_KEY, secret=VECTOR_SECRET, sha=VECTOR_SHA256)
    tampered = VECTOR_BODY.replace('"emptyTimeout":300', '"emptyTimeout":301')
    assert len(tampered) == len(VECTOR_BODY)
    assert sum(a != b for a, b in zip(tampered, VECTOR_BODY, strict=True)) == 1

    response = post(tampered, token)

    assert response.status_code == 401
    assert not ProviderEvent.objects.exists()


def _node_sdk_token(body: str) -> str:
    """An Authorization header minted by the Node SDK, an implementation independent of ours."""
    script = (
        "import { AccessToken } from 'livekit-server-sdk';"
        "import { createHash } from 'node:crypto';"
        "const [key, secret, body] = process.argv.slice(1);"
        "const t = new AccessToken(key, secret, { ttl: '5m' });"
        "t.sha256 = createHash('sha256').update(body).digest('base64');"
        "process.stdout.write(await t.toJwt());"
    )
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "--input-type=module", "-e", script, API_KEY, SECRET, body],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def test_webhook_signed_by_node_sdk_is_accepted(reservation):
    if not Path(settings.BASE_DIR, "node_modules/livekit-server-sdk").exists():
        pytest.skip("livekit-server-sdk is not installed (npm install)")
    body = event("room_started", reservation.room_name, event_id="EV_node", at=T0)
    # Node signs with the real clock: leave the travelled time for this one.
    real_now = time_machine.escape_hatch.datetime.datetime.now(tz=UTC)
    with time_machine.travel(real_now, tick=True):
        token = _node_sdk_token(body.decode())
        response = post(body, token)

    assert response.status_code == 200
    assert ProviderEvent.objects.get().event_id == "EV_node"


# --- Valid events keep occupancy and attendance -----------------------------------------------


def test_webhook_room_started_and_participant_joined_update_occupancy_and_attendance(
    reservation, alice
):
    room = reservation.room_name

    started = deliver(event("room_started", room, event_id="EV_start", at=T0))
    joined = deliver(
        event(
            "participant_joined",
            room,
            event_id="EV_join",
            at=T0 + 60,
            sid="PA_alice",
            identity=f"user-{alice.pk}",
            name="Alice Martin",
        )
    )

    assert started.status_code == joined.status_code == 200
    assert joined.json() == {"status": "stored"}
    events = ProviderEvent.objects.order_by("occurred_at")
    assert [(e.event_id, e.event, e.reservation_id) for e in events] == [
        ("EV_start", "room_started", reservation.pk),
        ("EV_join", "participant_joined", reservation.pk),
    ]
    assert events[1].participant_identity == f"user-{alice.pk}"
    assert events[1].participant_name == "Alice Martin"
    assert events[1].occurred_at == at(T0 + 60)
    assert "turnPassword" not in events[0].payload["room"]
    occupancy = RoomOccupancy.objects.get(reservation=reservation)
    assert occupancy.participants == 1
    assert occupancy.active_since == at(T0)
    session = Attendance.objects.get()
    assert session.reservation == reservation
    assert session.user == alice
    assert session.identity == f"user-{alice.pk}"
    assert session.display_name == "Alice Martin"
    assert session.joined_at == at(T0 + 60)
    assert session.left_at is None


def test_webhook_full_session_records_joins_leaves_and_room_end(reservation, alice):
    room = reservation.room_name
    bodies = [
        event("room_started", room, event_id="EV_1", at=T0),
        event(
            "participant_joined",
            room,
            event_id="EV_2",
            at=T0 + 60,
            sid="PA_a",
            identity=f"user-{alice.pk}",
            name="Alice",
        ),
        event(
            "participant_joined",
            room,
            event_id="EV_3",
            at=T0 + 120,
            sid="PA_g",
            identity="lobby-42",
            name="Guest Gaston",
        ),
        event(
            "participant_left",
            room,
            event_id="EV_4",
            at=T0 + 1860,
            sid="PA_a",
            identity=f"user-{alice.pk}",
            name="Alice",
        ),
    ]
    for body in bodies:
        assert deliver(body).status_code == 200

    occupancy = RoomOccupancy.objects.get(reservation=reservation)
    assert occupancy.participants == 1
    alice_session = Attendance.objects.get(participant_sid="PA_a")
    assert alice_session.left_at == at(T0 + 1860)
    assert alice_session.duration == timedelta(minutes=30)
    guest = Attendance.objects.get(participant_sid="PA_g")
    assert guest.user is None
    assert guest.display_name == "Guest Gaston"
    assert guest.left_at is None

    assert deliver(event("room_finished", room, event_id="EV_5", at=T0 + 3600)).status_code == 200

    occupancy.refresh_from_db()
    assert occupancy.participants == 0
    assert occupancy.active_since is None
    assert occupancy.finished_at == at(T0 + 3600)
    guest.refresh_from_db()
    assert guest.left_at == at(T0 + 3600)
    assert ProviderEvent.objects.count() == 5


def test_webhook_left_before_joined_out_of_order_is_one_closed_session(reservation, alice):
    room = reservation.room_name
    person = {"sid": "PA_a", "identity": f"user-{alice.pk}", "name": "Alice"}

    deliver(event("participant_left", room, event_id="EV_L", at=T0 + 600, joined=T0 + 60, **person))
    deliver(event("participant_joined", room, event_id="EV_J", at=T0 + 60, **person))

    session = Attendance.objects.get()
    assert (session.joined_at, session.left_at) == (at(T0 + 60), at(T0 + 600))
    assert RoomOccupancy.objects.get().participants == 0


def test_webhook_replayed_event_is_idempotent(reservation, alice):
    room = reservation.room_name
    deliver(event("room_started", room, event_id="EV_start", at=T0))
    body = event(
        "participant_joined",
        room,
        event_id="EV_join",
        at=T0 + 60,
        sid="PA_a",
        identity=f"user-{alice.pk}",
        name="Alice",
    )
    assert deliver(body).status_code == 200
    before = state()

    # LiveKit retries with a fresh token; an attacker would replay the very same request.
    token = sign(body)
    retried = post(body, sign(body))
    replayed = post(body, token)
    replayed_again = post(body, token)

    assert [r.status_code for r in (retried, replayed, replayed_again)] == [200, 200, 200]
    assert replayed.json() == {"status": "duplicate"}
    assert state() == before
    assert ProviderEvent.objects.filter(event_id="EV_join").count() == 1
    assert RoomOccupancy.objects.get().participants == 1


def test_webhook_same_session_under_a_new_event_id_does_not_double_count(reservation, alice):
    room = reservation.room_name
    person = {"sid": "PA_a", "identity": f"user-{alice.pk}", "name": "Alice"}
    deliver(event("participant_joined", room, event_id="EV_1", at=T0 + 60, **person))
    deliver(event("participant_joined", room, event_id="EV_2", at=T0 + 61, **person))

    assert Attendance.objects.count() == 1
    assert RoomOccupancy.objects.get().participants == 1


def test_webhook_event_for_unknown_room_is_stored_and_changes_nothing_else(reservation):
    response = deliver(event("room_started", "vb-not-ours", event_id="EV_x", at=T0))

    assert response.status_code == 200
    assert ProviderEvent.objects.get().reservation is None
    assert not RoomOccupancy.objects.exists()


def test_webhook_from_another_backend_cannot_touch_this_room(reservation, alice, monkeypatch):
    monkeypatch.setenv("VB_TEST_OTHER_SECRET", "other-backend-secret-0123456789abcdef")
    MediaBackend.objects.create(
        name="lk-other",
        kind=BackendKind.LIVEKIT,
        base_url="wss://lk-other.example.org",
        api_key="APIother",
        secret_env="VB_TEST_OTHER_SECRET",
        country="DE",
        capacity=10,
    )
    body = event(
        "participant_joined",
        reservation.room_name,
        event_id="EV_foreign",
        at=T0,
        sid="PA_x",
        identity=f"user-{alice.pk}",
    )

    response = post(
        body, sign(body, key="APIother", secret="other-backend-secret-0123456789abcdef")
    )

    assert response.status_code == 200
    assert ProviderEvent.objects.get().reservation is None
    assert not Attendance.objects.exists()


# --- Everything else is 401 and writes nothing ------------------------------------------------


@pytest.fixture
def joined_body(reservation, alice) -> bytes:
    return event(
        "participant_joined",
        reservation.room_name,
        event_id="EV_join",
        at=T0,
        sid="PA_a",
        identity=f"user-{alice.pk}",
    )


def _assert_rejected(response) -> None:
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert state() == ([], [], [])


def test_webhook_bad_signature_is_401_and_no_state_change(joined_body):
    _assert_rejected(
        post(joined_body, sign(joined_body, secret="not-the-secret-0123456789abcdefghijkl"))
    )


def test_webhook_bad_body_hash_is_401_and_no_state_change(joined_body):
    token = sign(joined_body)
    tampered = joined_body.replace(b'"EV_join"', b'"EV_jOin"')

    _assert_rejected(post(tampered, token))


def test_webhook_token_without_body_hash_is_401(joined_body):
    token = AccessToken(API_KEY, SECRET).with_ttl(timedelta(minutes=5)).to_jwt()

    _assert_rejected(post(joined_body, token))


def test_webhook_missing_authorization_is_401(joined_body):
    _assert_rejected(post(joined_body))


def test_webhook_garbage_authorization_is_401(joined_body):
    _assert_rejected(post(joined_body, "not-a-jwt"))


def test_webhook_unknown_api_key_is_401(joined_body):
    _assert_rejected(post(joined_body, sign(joined_body, key="APIunknown")))


def test_webhook_disabled_backend_is_401(joined_body, backend):
    backend.enabled = False
    backend.save(update_fields=["enabled"])

    _assert_rejected(post(joined_body, sign(joined_body)))


def test_webhook_backend_without_readable_secret_is_401(joined_body, monkeypatch):
    token = sign(joined_body)
    monkeypatch.delenv(SECRET_ENV)

    _assert_rejected(post(joined_body, token))


def test_webhook_expired_token_is_401(joined_body):
    # Minted ten minutes ago with LiveKit's five-minute validity: past the 60 s leeway.
    with time_machine.travel(NOW - timedelta(minutes=10), tick=False):
        token = sign(joined_body)

    _assert_rejected(post(joined_body, token))


def test_webhook_token_from_the_future_is_401(joined_body):
    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        token = sign(joined_body)

    _assert_rejected(post(joined_body, token))


def test_webhook_malformed_json_correctly_signed_is_401(reservation):
    body = b'{"event": "room_started", "room": {"name": '

    _assert_rejected(post(body, sign(body)))


def test_webhook_wrong_content_type_is_415_and_no_state_change(joined_body):
    response = post(joined_body, sign(joined_body), content_type="text/plain")

    assert response.status_code == 415
    assert state() == ([], [], [])


def test_webhook_plain_json_content_type_is_accepted(joined_body):
    response = post(joined_body, sign(joined_body), content_type="application/json")

    assert response.status_code == 200


def test_webhook_get_is_405(db):
    assert Client().get(URL).status_code == 405


def test_webhook_logs_event_id_never_the_token(joined_body, caplog):
    token = sign(joined_body)
    caplog.set_level("DEBUG")

    post(joined_body, token)
    post(joined_body, sign(joined_body, secret="not-the-secret-0123456789abcdefghijkl"))

    assert "EV_join" in caplog.text
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text
    assert SECRET not in caplog.text
