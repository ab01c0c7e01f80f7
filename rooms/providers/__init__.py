"""Providers by backend kind: ``provider_for(backend.kind).mint(...)``."""

from __future__ import annotations

from rooms.providers.base import JoinRole, Provider, Ticket
from rooms.providers.jitsi import JitsiProvider
from rooms.providers.livekit import LiveKitProvider

PROVIDERS: dict[str, Provider] = {
    LiveKitProvider.kind: LiveKitProvider(),
    JitsiProvider.kind: JitsiProvider(),
}


def provider_for(kind: str) -> Provider:
    try:
        return PROVIDERS[kind]
    except KeyError:
        raise LookupError(f"No provider for backend kind {kind!r}") from None


__all__ = ["PROVIDERS", "JoinRole", "Provider", "Ticket", "provider_for"]
