"""The seam between the broker and a media backend: one provider per backend kind.

A provider turns an authorized join into a signed, room-scoped, short-lived ticket. It never
stores, logs or returns the token anywhere but in the ticket it hands back.
"""

from __future__ import annotations

import base64
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from jwt.algorithms import HMACAlgorithm

if TYPE_CHECKING:
    from rooms.models import MediaBackend


@lru_cache(maxsize=8)
def _checked_key(key: str | bytes) -> bytes:
    """PyJWT's checks of an HS256 key (not empty; not a PEM, SSH, DER or JSON key), run once
    per secret instead of on every token: they were a third of a token's cost, and a backend's
    secret changes only when the operator rotates it. A refused key is checked (and refused)
    every time: exceptions are not cached."""
    return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)


def _base64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# {"alg":"HS256","typ":"JWT"}: what LiveKit's SDK writes, keys sorted as PyJWT sorts them.
# Prosody rejects a header without typ and checks alg against its own configuration.
_HEADER = _base64url(b'{"alg":"HS256","typ":"JWT"}')


def sign(claims: Mapping[str, Any], secret: str) -> str:
    """The compact JWS (RFC 7515) of ``claims`` under ``secret`` with HMAC-SHA256: what
    ``jwt.encode(claims, secret, algorithm="HS256")`` writes, byte for byte
    (tests/rooms/test_tokens_*.py), without PyJWT's per-call work (header encoding, algorithm
    lookup, key checks): a constant header, the payload as PyJWT encodes it, and one HMAC."""
    payload = json.dumps(dict(claims), separators=(",", ":")).encode()
    signing_input = _HEADER + b"." + _base64url(payload)
    signature = hmac.digest(_checked_key(secret), signing_input, "sha256")
    return (signing_input + b"." + _base64url(signature)).decode("ascii")


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
