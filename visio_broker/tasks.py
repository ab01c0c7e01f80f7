from celery import shared_task
from django.conf import settings

from visio_broker.outbox import (
    TemporaryDeliveryError,
    notification_deliver,
    notifications_stale,
    relay_soon,
)


@shared_task(name="visio_broker.ping")
def ping() -> str:
    """Round-trip check used by the embedded-mode smoke test and operators."""
    return "pong"


@shared_task(
    name="visio_broker.outbox_relay",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
)
def outbox_relay(self, notification_id: int) -> str:
    """Deliver one outbox row; temporary failures retry with exponential backoff (capped)."""
    try:
        return notification_deliver(notification_id=notification_id)
    except TemporaryDeliveryError as exc:
        # Capped well below Redis' visibility timeout: no long ETAs (DESIGN, flow 5).
        delay = min(settings.OUTBOX_RETRY_MAX_SECONDS, 10 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=delay) from None


@shared_task(name="visio_broker.outbox_sweep")
def outbox_sweep() -> int:
    """Re-queue rows whose relay never ran; returns how many."""
    stale = notifications_stale()
    for notification_id in stale:
        relay_soon(notification_id)
    return len(stale)
