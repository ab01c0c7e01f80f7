"""The seam between the broker and a media backend: one provider per backend kind.

A provider turns an authorized join into a signed, room-scoped, short-lived ticket. It never
stores, logs or returns the token anywhere but in the ticket it hands back.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import jwt
from jwt.algorithms import HMACAlgorithm

if TYPE_CHECKING:
    from rooms.models import MediaBackend


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
    """The compact JWS of ``claims`` under ``secret``, header {"alg":"HS256","typ":"JWT"} (what
    LiveKit's SDK writes; Prosody rejects a header without typ and checks alg against its own
    configuration): what ``jwt.encode(claims, secret,
    algorithm="HS256")`` writes, byte for byte (the payload as PyJWT encodes it; the header with
    sorted keys)."""
    payload = json.dumps(dict(claims), separators=(",", ":")).encode()
    return _JWS.encode(payload, secret, algorithm="HS256", headers={"typ": "JWT"})


class JoinRole(StrEnum):
    MODERATOR = "moderator"
    PARTICIPANT = "participant"


@dataclass(frozen=True)
class Ticket:
    """What a join hands to the browser; ``url`` carries the token, so neither is printed."""

    provider: str
    url: str = field(repr=False)
    token: str = field(repr=False)
    expires_at: datetime
    role: JoinRole


class Provider(ABC):
    """Signs join tokens for one kind of backend."""

    kind: ClassVar[str]

    @abstractmethod
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
        """A token for ``identity`` in ``room_name``, with the grants of ``role``."""
