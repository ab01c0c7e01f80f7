import math

from celery import shared_task
from django.conf import settings
from django.utils import timezone

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
    """Deliver one outbox row; temporary failures retry with exponential backoff (capped), or
    at the time the sender asked for."""
    try:
        return notification_deliver(notification_id=notification_id)
    except TemporaryDeliveryError as exc:
        # Capped well below Redis' visibility timeout: no long ETAs (DESIGN, flow 5).
        if exc.retry_at is not None:
            wait = (exc.retry_at - timezone.now()).total_seconds()
            if wait > settings.OUTBOX_RETRY_MAX_SECONDS:
                return "deferred"  # the sweeper re-queues the row when it is due
            # A second's margin: a relay that runs early finds the row not yet due.
            delay = max(0, math.ceil(wait)) + 1
        else:
            delay = min(settings.OUTBOX_RETRY_MAX_SECONDS, 10 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=delay) from None


@shared_task(name="visio_broker.outbox_sweep")
def outbox_sweep() -> int:
    """Re-queue rows whose relay never ran or whose next attempt is due; returns how many."""
    stale = notifications_stale()
    for notification_id in stale:
        relay_soon(notification_id)
    return len(stale)
