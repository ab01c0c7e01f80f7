"""Background work of the rooms app. Tasks take ids, re-fetch, and call one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from rooms.models import MediaBackend
from rooms.services import backend_probe, reservations_extend_horizon

# --- Backend health ---------------------------------------------------------------------------


@shared_task(name="rooms.probe_backends")
def probe_backends() -> int:
    """Beat, every ROOMS_HEALTH_INTERVAL_SECONDS: one probe task per enabled backend.

    Probes run side by side, so a backend that times out never delays the others' verdicts.
    """
    if not settings.ROOMS_HEALTH_ENABLED:
        return 0
    ids = list(MediaBackend.objects.filter(enabled=True).values_list("pk", flat=True))
    for backend_id in ids:
        probe_backend.apply_async((backend_id,), expires=settings.ROOMS_HEALTH_INTERVAL_SECONDS)
    return len(ids)


@shared_task(name="rooms.probe_backend")
def probe_backend(backend_id: int) -> None:
    backend = MediaBackend.objects.filter(pk=backend_id, enabled=True).first()
    if backend is None:
        return
    backend_probe(backend=backend)


# --- Allocation -----------------------------------------------------------------------------------


@shared_task(name="rooms.reservations_extend_horizon")
def extend_reservation_horizon() -> int:
    """Beat: series get the windows of occurrences the horizon now reaches; returns how many
    reservations changed. Each reservation is its own transaction, so a rerun is harmless."""
    return reservations_extend_horizon().updated
