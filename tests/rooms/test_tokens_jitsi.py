"""Jitsi join tokens: Prosody's rules, checked with PyJWT — the exact header, the required claims,
a short exp, nbf slightly in the past, a lower-case room, string-only context.user and the
owner affiliation for moderators; plus the jwt.io public vector through our signer."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import jwt
import pytest
import time_machine

from rooms.providers import JoinRole, provider_for
from rooms.providers.base import sign
from rooms.providers.jitsi import JitsiProvider
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    JITSI_APP,
    JITSI_SECRET,
    JITSI_SUB,
    JITSI_URL,
    jitsi_backend,
    jitsi_verify,
    token_from_url,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("join_secrets")]

ROOM = "vb-0123456789abcdef0123456789abcdef"
TTL = timedelta(minutes=5)

# The HS256 example of jwt.io, which Jitsi's token documentation points to.
JWT_IO_CLAIMS = {"sub": "1234567890", "name": "John Doe", "iat": 1516239022}
JWT_IO_SECRET = "your-256-bit-secret"
JWT_IO_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def mint(role: JoinRole, *, room: str = ROOM, name: str = "Amélie Dupont", email: str = "a@b.fr"):
    return provider_for("jitsi").mint(
        backend=jitsi_backend(),
        room_name=room,
        identity="user-42",
        name=name,
        email=email,
        role=role,
        ttl=TTL,
    )


def segment(token: str, index: int) -> bytes:
    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_registry_has_the_jitsi_provider():
    assert isinstance(provider_for("jitsi"), JitsiProvider)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_tokens_jitsi_signer_reproduces_the_jwt_io_vector_byte_for_byte():
    assert sign(JWT_IO_CLAIMS, JWT_IO_SECRET) == JWT_IO_TOKEN


@pytest.mark.parametrize(
    "claims",
    [
        JWT_IO_CLAIMS,
        {"room": "vb-0a", "context": {"user": {"name": "Amélie Dupont", "avatar": ""}}, "exp": 9},
        {"iss": "app", "aud": "app", "sub": "meet.jitsi", "nbf": 1, "weird": 'quote " and \\'},
    ],
)
def test_tokens_jitsi_signer_writes_what_pyjwt_encode_writes(claims):
    for secret in ("first-secret-0123456789abcdef0123", "rotated-secret-0123456789abcdef01"):
        assert sign(claims, secret) == jwt.encode(claims, secret, algorithm="HS256")


def test_tokens_jitsi_signer_refuses_what_pyjwt_refuses_every_time():
    """The key checks run once per accepted secret; a refused one is refused on every call."""
    public_key = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        "-----END PUBLIC KEY-----\n"
    )
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError):
            jwt.encode(JWT_IO_CLAIMS, public_key, algorithm="HS256")
        with pytest.raises(jwt.InvalidKeyError):
            sign(JWT_IO_CLAIMS, public_key)
    with pytest.raises(jwt.InvalidKeyError):
        sign(JWT_IO_CLAIMS, "")


def test_tokens_jitsi_header_is_exactly_alg_and_typ():
    token = mint(JoinRole.PARTICIPANT).token
    assert segment(token, 0) == b'{"alg":"HS256","typ":"JWT"}'


@pytest.mark.parametrize(
    ("role", "affiliation"), [(JoinRole.MODERATOR, "owner"), (JoinRole.PARTICIPANT, "member")]
)
def test_tokens_jitsi_every_claim_per_role(role, affiliation):
    now = int(time.time())
    ticket = mint(role)
    claims = json.loads(segment(ticket.token, 1))

    assert set(claims) == {"iss", "aud", "sub", "room", "iat", "nbf", "exp", "context"}
    assert claims["iss"] == JITSI_APP
    assert claims["aud"] == JITSI_APP
    assert claims["sub"] == JITSI_SUB
    assert claims["room"] == ROOM
    assert abs(claims["iat"] - now) <= 1
    assert claims["nbf"] == claims["iat"] - 30  # Prosody has no leeway: a slow clock still accepts
    assert claims["exp"] == claims["iat"] + 300
    assert claims["context"] == {
        "user": {
            "id": "user-42",
            "name": "Amélie Dupont",
            "email": "a@b.fr",
            "avatar": "",
            "affiliation": affiliation,
        }
    }
    assert all(isinstance(value, str) for value in claims["context"]["user"].values())
    assert ticket.provider == "jitsi"
    assert ticket.role == role
    assert ticket.expires_at == datetime.fromtimestamp(claims["exp"], tz=UTC)


@pytest.mark.parametrize("role", list(JoinRole))
def test_tokens_jitsi_verify_under_prosody_rules(role):
    ticket = mint(role)
    claims = jitsi_verify(ticket.token, room=ROOM)
    assert claims["exp"] - time.time() <= 300  # short: minutes, not hours


def test_tokens_jitsi_room_claim_is_lower_case_and_matches_the_url():
    ticket = mint(JoinRole.PARTICIPANT, room="VB-Mixed-Case-Room")
    claims = jitsi_verify(ticket.token, room="vb-mixed-case-room")
    assert claims["room"] == "vb-mixed-case-room"
    assert urlsplit(ticket.url).path == "/vb-mixed-case-room"


def test_tokens_jitsi_guest_context_is_all_strings():
    ticket = mint(JoinRole.PARTICIPANT, name="Guest <b>", email="")
    user = jitsi_verify(ticket.token, room=ROOM)["context"]["user"]
    assert user == {
        "id": "user-42",
        "name": "Guest <b>",
        "email": "",
        "avatar": "",
        "affiliation": "member",
    }


def test_tokens_jitsi_url_is_host_room_and_jwt():
    ticket = mint(JoinRole.MODERATOR)
    assert ticket.url == f"{JITSI_URL}/{ROOM}?jwt={ticket.token}"
    assert token_from_url(ticket.url) == ticket.token


def test_tokens_jitsi_expired_token_is_rejected():
    with time_machine.travel(datetime.now(UTC) - timedelta(minutes=6), tick=False):
        token = mint(JoinRole.PARTICIPANT).token
    with pytest.raises(jwt.ExpiredSignatureError):
        jitsi_verify(token, room=ROOM)


def test_tokens_jitsi_not_yet_valid_token_is_rejected():
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=2), tick=False):
        token = mint(JoinRole.PARTICIPANT).token
    with pytest.raises(jwt.ImmatureSignatureError):
        jitsi_verify(token, room=ROOM)


def test_tokens_jitsi_wrong_secret_is_rejected():
    token = mint(JoinRole.MODERATOR).token
    with pytest.raises(jwt.InvalidSignatureError):
        jitsi_verify(token, room=ROOM, secret="another-secret-0123456789abcdef0123")


def test_tokens_jitsi_wrong_room_is_rejected():
    token = mint(JoinRole.MODERATOR).token
    with pytest.raises(jwt.InvalidTokenError, match="not 'vb-another-room'"):
        jitsi_verify(token, room="vb-another-room")


def test_tokens_jitsi_wrong_app_id_is_rejected():
    token = mint(JoinRole.MODERATOR).token
    with pytest.raises((jwt.InvalidIssuerError, jwt.InvalidAudienceError)):
        jitsi_verify(token, room=ROOM, app="another-app")


def test_tokens_jitsi_verifier_rejects_a_header_without_typ():
    """The check our tokens pass is a real one: Prosody refuses a header without typ."""
    claims = json.loads(segment(mint(JoinRole.PARTICIPANT).token, 1))
    bare = jwt.encode(claims, JITSI_SECRET, algorithm="HS256", headers={"typ": None})
    assert segment(bare, 0) == b'{"alg":"HS256"}'
    with pytest.raises(jwt.InvalidTokenError, match="header"):
        jitsi_verify(bare, room=ROOM)
