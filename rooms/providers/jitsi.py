"""Jitsi Meet (Prosody token auth): an HS256 JWT (``base.sign``, byte for byte what PyJWT
writes), claims as Prosody reads them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rooms.providers.base import JoinRole, Provider, Ticket, sign

if TYPE_CHECKING:
    from rooms.models import MediaBackend

# Prosody checks nbf without leeway: a server clock a little behind ours must still accept it.
NOT_BEFORE_SKEW = 30
# mod_token_affiliation reads context.user.affiliation: "owner" makes a moderator.
AFFILIATION = {JoinRole.MODERATOR: "owner", JoinRole.PARTICIPANT: "member"}


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
