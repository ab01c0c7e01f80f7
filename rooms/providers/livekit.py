"""LiveKit: livekit-api's token claims, with every video grant set explicitly per role, as its
AccessToken writes them."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from google.protobuf.json_format import MessageToDict
from livekit.api import VideoGrants
from livekit.api.access_token import Claims, snake_to_lower_camel

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


@cache
def _claim_names(kind: type) -> tuple[tuple[str, str], ...]:
    """(attribute, claim name) of a claims dataclass's fields, camelCased as the SDK does."""
    return tuple((field.name, snake_to_lower_camel(field.name)) for field in fields(kind))


def _claims_dict(value: Any) -> Any:
    """``dataclasses.asdict`` with the SDK's dict_factory (camelCase names, None and "" left
    out), without deep-copying every leaf: that copy was a tenth of a join's time."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            claim: _claims_dict(item)
            for name, claim in _claim_names(type(value))
            if (item := getattr(value, name)) is not None and item != ""
        }
    if isinstance(value, list | tuple):
        return type(value)(_claims_dict(item) for item in value)
    if isinstance(value, dict):
        return {_claims_dict(key): _claims_dict(item) for key, item in value.items()}
    return value


class _Claims(Claims):
    """The SDK's claims, written out by ``_claims_dict``: tokens byte-identical to the SDK's own
    (tests/rooms/test_tokens_livekit.py)."""

    def asdict(self) -> dict[str, Any]:
        claims: dict[str, Any] = _claims_dict(self)
        if self.room_config:
            claims["roomConfig"] = MessageToDict(self.room_config)
        return claims


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
        claims = _Claims(name=name, video=video_grants(role, room_name)).asdict()
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
