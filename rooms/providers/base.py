"""The seam between the broker and a media backend: one provider per backend kind.

A provider turns an authorized join into a signed, room-scoped, short-lived ticket. It never
stores, logs or returns the token anywhere but in the ticket it hands back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from rooms.models import MediaBackend


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
