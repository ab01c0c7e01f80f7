"""LiveKit: an AccessToken from livekit-api with every video grant set explicitly per role."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from livekit.api import AccessToken, VideoGrants

from rooms.providers.base import JoinRole, Provider, Ticket

if TYPE_CHECKING:
    from rooms.models import MediaBackend


@dataclass(frozen=True)
class RoleGrants:
    can_publish: bool
    can_subscribe: bool
    can_publish_data: bool
    room_admin: bool
    hidden: bool


# The SDK defaults canPublish/canSubscribe/canPublishData to true and leaves the rest unset:
# each role states all of them, so a change of SDK default cannot widen what a token allows.
GRANTS: dict[JoinRole, RoleGrants] = {
    JoinRole.MODERATOR: RoleGrants(
        can_publish=True, can_subscribe=True, can_publish_data=True, room_admin=True, hidden=False
    ),
    JoinRole.PARTICIPANT: RoleGrants(
        can_publish=True, can_subscribe=True, can_publish_data=True, room_admin=False, hidden=False
    ),
}


def video_grants(role: JoinRole, room_name: str) -> VideoGrants:
    """Join one room, by its exact (case-sensitive) name, with the role's grants."""
    grants = GRANTS[role]
    return VideoGrants(
        room_join=True,
        room=room_name,
        can_publish=grants.can_publish,
        can_subscribe=grants.can_subscribe,
        can_publish_data=grants.can_publish_data,
        room_admin=grants.room_admin,
        hidden=grants.hidden,
    )


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def join_url(backend: MediaBackend, token: str) -> str:
    """LiveKit Meet's ``/custom?liveKitUrl=…&token=…`` page, or the server URL for SDK clients."""
    if not backend.frontend_url:
        return backend.base_url
    # A JWT is base64url segments and dots: nothing to escape. The server URL is.
    server = quote(backend.base_url, safe="")
    return f"{backend.frontend_url.rstrip('/')}/custom?liveKitUrl={server}&token={token}"


class LiveKitProvider(Provider):
    kind = "livekit"

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
        # email is not sent: LiveKit has no claim for it and every participant could read it.
        before = int(time.time())
        token = (
            AccessToken(backend.api_key, backend.secret())
            .with_identity(identity)
            .with_name(name)
            .with_grants(video_grants(role, room_name))
            .with_ttl(ttl)
            .to_jwt()
        )
        # The SDK stamps nbf and exp from its own clock, in whole seconds: within one second,
        # exp is that second plus the TTL; else (rarely) read the exp it wrote.
        seconds = ttl.total_seconds()
        if int(time.time()) == before and seconds.is_integer():
            exp = before + int(seconds)
        else:
            exp = _claims(token)["exp"]
        return Ticket(
            provider=self.kind,
            url=join_url(backend, token),
            token=token,
            expires_at=datetime.fromtimestamp(exp, tz=UTC),
            role=role,
        )
