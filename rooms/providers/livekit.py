"""LiveKit: livekit-api's token claims, with every video grant set explicitly per role, as its
AccessToken writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from livekit.api import VideoGrants
from livekit.api.access_token import Claims

from rooms.providers.base import JoinRole, Provider, Ticket, sign

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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# Stand-ins for the values that change from token to token, in the claims built once per role.
_NAME = "\x00name"
_ROOM = "\x00room"


@cache
def _claims_template(role: JoinRole) -> dict[str, Any]:
    """The SDK's claims for a token of ``role`` (``Claims.asdict``: camelCase names, None and
    "" left out), with stand-ins for the name and the room. Built by the SDK once per role
    instead of per token: its dataclass walk costs several times the rest of the token."""
    return Claims(name=_NAME, video=video_grants(role, _ROOM)).asdict()


def _filled(template: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """``template`` with each stand-in replaced by its value; an empty value is left out, as
    the SDK leaves out empty claims. Keys keep the template's order (the SDK's)."""
    filled: dict[str, Any] = {}
    for claim, item in template.items():
        if isinstance(item, dict):
            filled[claim] = _filled(item, values)
        elif isinstance(item, str) and item in values:
            if values[item] != "":
                filled[claim] = values[item]
        else:
            filled[claim] = item
    return filled


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
        if not identity or not room_name:
            raise ValueError("identity and room must be set when joining a room")
        # What AccessToken(...).with_identity().with_name().with_grants().with_ttl().to_jwt()
        # writes, byte for byte: its claims, then sub, iss, and nbf and exp in whole seconds
        # (its clock read to the microsecond, then truncated), signed by base.sign, which
        # checks the secret once and not on every token as jwt.encode does.
        claims = _filled(_claims_template(role), {_NAME: name, _ROOM: room_name})
        since_epoch = datetime.now(UTC) - _EPOCH
        claims.update(
            sub=identity,
            iss=backend.api_key,
            nbf=since_epoch // _SECOND,
            exp=(since_epoch + ttl) // _SECOND,
        )
        token = sign(claims, backend.secret())
        return Ticket(
            provider=self.kind,
            url=join_url(backend, token),
            token=token,
            expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
            role=role,
        )
