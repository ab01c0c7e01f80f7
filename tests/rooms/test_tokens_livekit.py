"""LiveKit join tokens: every claim per role, verified by livekit-api's TokenVerifier and by the
Node livekit-server-sdk's; expired, wrong-room and wrong-secret tokens are rejected by both."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import time_machine
from livekit.api import AccessToken
from livekit.api.access_token import Claims

from rooms.providers import JoinRole, provider_for
from rooms.providers.livekit import (
    _NAME,
    _ROOM,
    LiveKitProvider,
    _claims_template,
    _filled,
    video_grants,
)
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import (
    LIVEKIT_KEY,
    LIVEKIT_MEET,
    LIVEKIT_SECRET,
    LIVEKIT_URL,
    livekit_backend,
    livekit_verify,
    node_verify,
    token_from_url,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("join_secrets")]

ROOM = "vb-0123456789abcdef0123456789abcdef"
TTL = timedelta(minutes=5)

EXPECTED_GRANTS = {
    JoinRole.MODERATOR: {
        "roomJoin": True,
        "room": ROOM,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "roomAdmin": True,
        "hidden": False,
    },
    JoinRole.PARTICIPANT: {
        "roomJoin": True,
        "room": ROOM,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "roomAdmin": False,
        "hidden": False,
    },
}


def mint(
    role: JoinRole,
    *,
    frontend: bool = True,
    ttl: timedelta = TTL,
    room: str = ROOM,
    identity: str = "user-42",
):
    return provider_for("livekit").mint(
        backend=livekit_backend(frontend=frontend),
        room_name=room,
        identity=identity,
        name="Amélie Dupont",
        email="amelie@test.gouv.example",
        role=role,
        ttl=ttl,
    )


def test_registry_has_one_provider_per_backend_kind():
    assert isinstance(provider_for("livekit"), LiveKitProvider)
    with pytest.raises(LookupError):
        provider_for("zoom")


@pytest.mark.parametrize("role", list(JoinRole))
def test_tokens_livekit_every_claim_per_role(role):
    before = int(datetime.now(UTC).timestamp())
    ticket = mint(role)
    after = int(datetime.now(UTC).timestamp())

    header = jwt.get_unverified_header(ticket.token)
    claims = jwt.decode(ticket.token, options={"verify_signature": False})
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert set(claims) == {"iss", "sub", "name", "nbf", "exp", "video"}
    assert claims["iss"] == LIVEKIT_KEY
    assert claims["sub"] == "user-42"
    assert claims["name"] == "Amélie Dupont"
    # The SDK stamps nbf itself (now; the server allows 60 s of clock skew).
    assert before <= claims["nbf"] <= after
    assert claims["exp"] - claims["nbf"] == 300
    assert claims["video"] == EXPECTED_GRANTS[role]
    assert "amelie@" not in ticket.token  # no email in LiveKit tokens: every participant sees them
    assert ticket.provider == "livekit"
    assert ticket.role == role
    assert ticket.expires_at == datetime.fromtimestamp(claims["exp"], tz=UTC)


@pytest.mark.parametrize("role", list(JoinRole))
def test_tokens_livekit_verify_with_python_sdk(role):
    ticket = mint(role)
    claims = livekit_verify(ticket.token, room=ROOM)
    assert claims.identity == "user-42"
    assert claims.name == "Amélie Dupont"
    assert claims.video.room_join is True
    assert claims.video.room_admin is (role == JoinRole.MODERATOR)
    assert claims.video.can_publish is True
    assert claims.video.can_subscribe is True
    assert claims.video.can_publish_data is True
    assert claims.video.hidden is False


@pytest.mark.parametrize("role", list(JoinRole))
def test_tokens_livekit_verify_with_node_sdk(role):
    ticket = mint(role)
    claims = node_verify(ticket.token, room=ROOM)
    assert claims["iss"] == LIVEKIT_KEY
    assert claims["sub"] == "user-42"
    assert claims["name"] == "Amélie Dupont"
    assert claims["video"] == EXPECTED_GRANTS[role]


def test_tokens_livekit_expired_token_is_rejected_by_both_verifiers():
    minted_at = datetime.now(UTC) - timedelta(minutes=10)
    with time_machine.travel(minted_at, tick=False):
        token = mint(JoinRole.PARTICIPANT).token
    # Five minutes of life ended five minutes ago: beyond LiveKit's 60 s leeway.
    with pytest.raises(jwt.ExpiredSignatureError):
        livekit_verify(token, room=ROOM)
    with pytest.raises(PermissionError, match="exp"):
        node_verify(token, room=ROOM)


def test_tokens_livekit_wrong_secret_is_rejected_by_both_verifiers():
    token = mint(JoinRole.MODERATOR).token
    with pytest.raises(jwt.InvalidSignatureError):
        livekit_verify(token, room=ROOM, secret="another-secret-0123456789abcdef0123")
    with pytest.raises(PermissionError, match="signature"):
        node_verify(token, secret="another-secret-0123456789abcdef0123")


def test_tokens_livekit_token_for_another_room_is_rejected():
    token = mint(JoinRole.MODERATOR).token
    with pytest.raises(PermissionError, match="not for room"):
        livekit_verify(token, room="vb-another-room")
    # Room names are exact: the server does not fold case for LiveKit.
    with pytest.raises(PermissionError, match="not for room"):
        livekit_verify(token, room=ROOM.upper())
    with pytest.raises(PermissionError, match="not for room"):
        node_verify(token, room="vb-another-room")


def test_tokens_livekit_url_follows_livekit_meet_custom_convention():
    ticket = mint(JoinRole.PARTICIPANT)
    parts = urlsplit(ticket.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{LIVEKIT_MEET}/custom"
    query = parse_qs(parts.query, strict_parsing=True)
    assert query == {"liveKitUrl": [LIVEKIT_URL], "token": [ticket.token]}
    assert token_from_url(ticket.url) == ticket.token
    # Urlencoded: the server URL's "://" does not appear raw in the query.
    assert "liveKitUrl=wss%3A%2F%2Flivekit.join.test" in ticket.url


def test_tokens_livekit_without_frontend_url_gives_the_server_url_for_sdk_clients():
    ticket = mint(JoinRole.PARTICIPANT, frontend=False)
    assert ticket.url == LIVEKIT_URL
    livekit_verify(ticket.token, room=ROOM)


def test_tokens_livekit_ticket_repr_hides_the_token():
    ticket = mint(JoinRole.PARTICIPANT)
    assert ticket.token not in repr(ticket)
    assert LIVEKIT_SECRET not in ticket.token


@pytest.mark.parametrize("role", list(JoinRole))
@pytest.mark.parametrize(
    ("moment", "ttl"),
    [
        (datetime(2027, 3, 29, 8, 0, 30, tzinfo=UTC), TTL),
        # The SDK truncates its clock to the second for nbf and after adding the TTL for exp:
        # a moment just before a second and a TTL with a fraction must round alike.
        (
            datetime(2027, 3, 29, 8, 0, 30, 999_999, tzinfo=UTC),
            timedelta(seconds=299, microseconds=1),
        ),
        (datetime(2027, 3, 29, 8, 0, 30, 500_000, tzinfo=UTC), timedelta(seconds=90.5)),
        (datetime(2027, 3, 29, 8, 0, 30, 400_000, tzinfo=UTC), timedelta(seconds=90.5)),
    ],
)
def test_tokens_livekit_are_byte_identical_to_the_sdks_own(role, moment, ttl):
    """The adapter writes the SDK's claims and signs them itself; the token must not change."""
    with time_machine.travel(moment, tick=False):
        ticket = mint(role, ttl=ttl)
        sdk_token = (
            AccessToken(LIVEKIT_KEY, LIVEKIT_SECRET)
            .with_identity("user-42")
            .with_name("Amélie Dupont")
            .with_grants(video_grants(role, ROOM))
            .with_ttl(ttl)
            .to_jwt()
        )
    assert ticket.token == sdk_token
    exp = jwt.decode(sdk_token, options={"verify_signature": False})["exp"]
    assert ticket.expires_at == datetime.fromtimestamp(exp, tz=UTC)


@pytest.mark.parametrize(("identity", "room"), [("", ROOM), ("user-42", "")])
def test_tokens_livekit_refuses_a_token_without_identity_or_room(identity, room):
    """As the SDK's to_jwt does: a room-join token must name who joins which room."""
    with pytest.raises(ValueError, match="identity and room"):
        mint(JoinRole.PARTICIPANT, room=room, identity=identity)


@pytest.mark.parametrize("role", list(JoinRole))
@pytest.mark.parametrize("name", ["Amélie", "", " ", "\x00room"])
def test_tokens_livekit_claims_are_the_sdks_for_every_role_and_name(role, name):
    """The claims built once per role and filled per token are the SDK's Claims.asdict, in the
    same order (so the same JSON text): an empty name left out, any other kept as given."""
    ours = _filled(_claims_template(role), {_NAME: name, _ROOM: ROOM})
    sdks = Claims(name=name, video=video_grants(role, ROOM)).asdict()
    assert json.dumps(ours) == json.dumps(sdks)
    assert ("name" in ours) == (name != "")
