"""Audit trail: services call ``audit_record`` inside their transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:
    from agencies.models import Agency, ApiKey, AuditEvent, User

# Actors that are not users: operator commands and background tasks.
CLI = "cli"
SYSTEM = "system"

# The API key a request authenticated with. Services keep taking the member they act for as
# ``actor``; the audit row then names the key as the actor and the member as "on behalf of".
_acting_key: ContextVar[ApiKey | None] = ContextVar("acting_api_key", default=None)


@contextmanager
def acting_through(key: ApiKey | None) -> Iterator[None]:
    token = _acting_key.set(key)
    try:
        yield
    finally:
        _acting_key.reset(token)


def audit_record(
    *,
    actor: User | str,
    action: str,
    obj: models.Model,
    agency: Agency | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    from agencies.models import AuditEvent

    user = None if isinstance(actor, str) else actor
    label = actor if isinstance(actor, str) else actor.email
    detail = dict(detail or {})
    key = _acting_key.get()
    if key is not None:
        detail["on_behalf_of"] = label
        label = f"api-key:vbk_{key.prefix}"
    return AuditEvent.objects.create(
        actor=user,
        actor_label=label,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        agency=agency,
        detail=detail,
        api_key=key,
    )
