"""Agency webhooks: to be built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agencies.models import Agency


def webhooks_emit(*, agency: Agency, event: str, **context: Any) -> None:
    return None
