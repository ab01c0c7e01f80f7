"""Jitsi Meet (Prosody token auth): an HS256 JWT signed with PyJWT, claims as Prosody reads them."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jwt
from jwt.algorithms import HMACAlgorithm

from rooms.providers.base import JoinRole, Provider, Ticket

if TYPE_CHECKING:
    from rooms.models import MediaBackend

# Prosody rejects a header without typ, and checks alg against its own configuration.
HEADER = {"alg": "HS256", "typ": "JWT"}
# Prosody checks nbf without leeway: a server clock a little behind ours must still accept it.
NOT_BEFORE_SKEW = 30
# mod_token_affiliation reads context.user.affiliation: "owner" makes a moderator.
AFFILIATION = {JoinRole.MODERATOR: "owner", JoinRole.PARTICIPANT: "member"}


@lru_cache(maxsize=8)
def _checked_key(key: str | bytes) -> bytes:
    return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)


class _HmacCheckedOnce(HMACAlgorithm):
    """PyJWT's HS256, with its key checks (not empty; not a PEM, SSH, DER or JSON key) run once
    per secret instead of on every token: they were a third of a token's cost, and a backend's
    secret changes only when the operator rotates it. A refused key is checked (and refused)
    every time: exceptions are not cached."""

    def prepare_key(self, key: str | bytes) -> bytes:
        return _checked_key(key)


_JWS = jwt.PyJWS(algorithms=["HS256"])
_JWS.unregister_algorithm("HS256")
_JWS.register_algorithm("HS256", _HmacCheckedOnce(HMACAlgorithm.SHA256))


def sign(claims: Mapping[str, Any], secret: str) -> str:
    """The compact JWS of ``claims`` under ``secret`` with Jitsi's exact header: what
    ``jwt.encode(claims, secret, algorithm="HS256")`` writes, byte for byte (the payload as
    PyJWT encodes it; the header with sorted keys: {"alg":"HS256","typ":"JWT"})."""
    payload = json.dumps(dict(claims), separators=(",", ":")).encode()
    return _JWS.encode(payload, secret, algorithm="HS256", headers={"typ": "JWT"})


def claims_for(
    *,
    backend: MediaBackend,
    room_name: str,
    identity: str,
    name: str,
    email: str,
    role: JoinRole,
    ttl: timedelta,
    now: int,
) -> dict[str, Any]:
    return {
        "iss": backend.api_key,
        "aud": backend.api_key,
        "sub": backend.jitsi_sub,
        # Prosody lower-cases the room it is asked for before comparing it with this claim.
        "room": room_name.lower(),
        "iat": now,
        "nbf": now - NOT_BEFORE_SKEW,
        "exp": now + int(ttl.total_seconds()),
        "context": {
            "user": {
                "id": identity,
                "name": name,
                "email": email,
                "avatar": "",
                "affiliation": AFFILIATION[role],
            }
        },
    }


def join_url(backend: MediaBackend, room_name: str, token: str) -> str:
    """``https://<host>/<room>?jwt=<token>`` (a tenant, if any, is part of the base URL)."""
    return f"{backend.base_url.rstrip('/')}/{quote(room_name.lower())}?jwt={token}"


class JitsiProvider(Provider):
    kind = "jitsi"

    def mint(
        self,
        *,
        backend: MediaBackend,
        room_name: str,
        identity: str,
        name: str,
        email: str,
        role: JoinRole,
        ttl: timedelta,
    ) -> Ticket:
        now = int(time.time())
        claims = claims_for(
            backend=backend,
            room_name=room_name,
            identity=identity,
            name=name,
            email=email,
            role=role,
            ttl=ttl,
            now=now,
        )
        token = sign(claims, backend.secret())
        return Ticket(
            provider=self.kind,
            url=join_url(backend, room_name, token),
            token=token,
            expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
            role=role,
        )
