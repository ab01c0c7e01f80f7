"""Audit trail: services call ``audit_record`` inside their transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:
    from agencies.models import Agency, AuditEvent, User

# Actors that are not users: operator commands and background tasks.
CLI = "cli"
SYSTEM = "system"


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
    return AuditEvent.objects.create(
        actor=user,
        actor_label=actor if isinstance(actor, str) else actor.email,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        agency=agency,
        detail=detail or {},
    )
