"""The outbox: every outgoing message is a Notification row written in the transaction that
caused it, then relayed by Celery.

- ``notification_enqueue`` is called inside the service's transaction; the relay task is queued
  only after commit, and a broker that is down never fails or delays the request: the row is
  there, and the periodic sweeper (``visio_broker.outbox_sweep``) sends it later.
- Senders are registered per kind with ``@sender("kind")``; they raise
  ``TemporaryDeliveryError`` (retried with backoff) or ``PermanentDeliveryError`` (recorded on the
  row, never retried). A row already sent is never sent again.
- A sender may keep its own, longer retry schedule (webhooks retry for a day): its
  ``TemporaryDeliveryError(retry_at=...)`` is stored as the row's ``next_attempt_at``; the row is
  not delivered before then, the relay retries it itself only when that is near, and otherwise
  the sweeper re-queues it once due (no long Celery ETAs: Redis redelivers them).
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from visio_broker.models import Notification, NotificationStatus, notification_key

logger = logging.getLogger(__name__)

Sender = Callable[[Notification], None]
_SENDERS: dict[str, Sender] = {}


class DeliveryError(Exception):
    permanent = False


class TemporaryDeliveryError(DeliveryError):
    """Worth retrying: SMTP 4xx, connection refused, timeouts.

    ``retry_at``: when the sender wants the next attempt; None leaves it to the relay's backoff.
    """

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class PermanentDeliveryError(DeliveryError):
    """Never retried: SMTP 5xx, an address that cannot exist, a row whose cause is gone."""

    permanent = True


def sender(kind: str) -> Callable[[Sender], Sender]:
    """Register the function that delivers notifications of ``kind``."""

    def register(function: Sender) -> Sender:
        _SENDERS[kind] = function
        return function

    return register


def registered_kinds() -> set[str]:
    return set(_SENDERS)


def notification_enqueue(
    *,
    kind: str,
    recipient: str,
    meeting: Any = None,
    recurrence_id: datetime | None = None,
    sequence: int = 0,
    payload: dict[str, Any] | None = None,
    dedup_extra: str = "",
) -> Notification:
    """Write the row (once per dedup key) and relay it after commit."""
    key = notification_key(
        kind=kind,
        recipient=recipient,
        meeting_id=getattr(meeting, "pk", None),
        recurrence_id=recurrence_id.strftime("%Y%m%dT%H%M%SZ") if recurrence_id else "",
        sequence=sequence,
    )
    if dedup_extra:
        key = f"{key}:{dedup_extra}"
    notification, created = Notification.objects.get_or_create(
        dedup_key=key[:255],
        defaults={
            "kind": kind,
            "recipient": recipient,
            "meeting": meeting,
            "recurrence_id": recurrence_id,
            "sequence": sequence,
            "payload": payload or {},
        },
    )
    if created:
        notification_id = notification.pk
        transaction.on_commit(lambda: relay_soon(notification_id))
    return notification


def relay_soon(notification_id: int, *, countdown: int = 0) -> None:
    """Queue the relay; if the broker is unreachable, leave the row for the sweeper."""
    from visio_broker.tasks import outbox_relay

    try:
        outbox_relay.apply_async(args=(notification_id,), countdown=countdown, retry=False)
    except Exception:  # kombu raises transport-specific errors; the sweeper covers them all
        logger.warning(
            "outbox: broker unreachable, notification %s left to the sweeper", notification_id
        )


def notification_deliver(*, notification_id: int) -> str:
    """Send one row if it is still pending; returns what happened (for logs and tests).

    The row is claimed under a row lock and marked in the same transaction as the send, so two
    workers never send it twice; a crash between the SMTP acceptance and the commit can resend,
    and the deterministic Message-ID lets the recipient's client collapse that duplicate.
    """
    retry_later: TemporaryDeliveryError | None = None
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(skip_locked=True)
            .filter(pk=notification_id, status=NotificationStatus.PENDING)
            # Not before its sender's next attempt time: an early relay or sweep is a no-op.
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()))
            .first()
        )
        if notification is None:
            return "skipped"
        deliver = _SENDERS.get(notification.kind)
        notification.attempts += 1
        try:
            if deliver is None:
                raise PermanentDeliveryError(f"no sender for kind {notification.kind}")
            deliver(notification)
        except TemporaryDeliveryError as exc:
            # Recorded here and raised after the commit, so the attempt is not rolled back.
            notification.last_error = str(exc)[:2000]
            notification.next_attempt_at = exc.retry_at
            notification.save(update_fields=["attempts", "last_error", "next_attempt_at"])
            retry_later = exc
        except PermanentDeliveryError as exc:
            notification.status = NotificationStatus.FAILED
            notification.last_error = str(exc)[:2000]
            notification.next_attempt_at = None
            notification.save(update_fields=["attempts", "status", "last_error", "next_attempt_at"])
            return "failed"
        else:
            notification.status = NotificationStatus.SENT
            notification.sent_at = timezone.now()
            notification.last_error = ""
            notification.next_attempt_at = None
            notification.save(
                update_fields=["attempts", "status", "sent_at", "last_error", "next_attempt_at"]
            )
    if retry_later is not None:
        raise retry_later
    return "sent"


def notifications_stale(*, older_than: timedelta | None = None, limit: int = 500) -> list[int]:
    """Pending rows whose relay apparently never ran (broker down, crash after commit), and
    rows whose sender's next attempt time has come."""
    age = older_than or timedelta(seconds=settings.OUTBOX_SWEEP_AFTER_SECONDS)
    now = timezone.now()
    return list(
        Notification.objects.filter(status=NotificationStatus.PENDING)
        .filter(
            Q(next_attempt_at__isnull=True, created_at__lt=now - age) | Q(next_attempt_at__lte=now)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- Email delivery shared by the mail senders ---------------------------------------------------


def mail_message_id(notification: Notification, *, prefix: str = "") -> str:
    """Stable per row: a resend after a crash collapses with the first copy in mail clients."""
    digest = hashlib.sha256(notification.dedup_key.encode()).hexdigest()[:32]
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return f"<{prefix}{digest}@{host}>"


def mail_send(message: EmailMessage) -> None:
    """Send through Django's backend (the message's own connection when it has one), sorting
    SMTP failures into temporary and permanent ones."""
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _reply in exc.recipients.values()]
        error = f"recipient refused: {exc.recipients}"
        if codes and all(400 <= code < 500 for code in codes):
            raise TemporaryDeliveryError(error) from exc
        raise PermanentDeliveryError(error) from exc
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as exc:
        raise TemporaryDeliveryError(f"SMTP connection: {exc}") from exc
    except smtplib.SMTPAuthenticationError as exc:
        # Our configuration, not the message: retried until an operator fixes it.
        raise TemporaryDeliveryError(f"SMTP authentication: {exc}") from exc
    except smtplib.SMTPResponseException as exc:
        error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        if exc.smtp_code >= 500:
            raise PermanentDeliveryError(error) from exc
        raise TemporaryDeliveryError(error) from exc
    except (smtplib.SMTPException, OSError) as exc:  # timeouts, refused connections, DNS
        raise TemporaryDeliveryError(f"SMTP: {exc!r}") from exc
