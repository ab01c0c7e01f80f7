"""Shared infrastructure records: the outbox of outgoing messages, API idempotency keys."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """An email, webhook or federation message, written in the transaction of its cause.

    ``dedup_key`` is unique per (meeting, occurrence, recipient, sequence, kind), so a retried
    transaction or a re-run planner can never queue the same message twice. A relay task sends
    pending rows and marks them; the sweeper picks up rows whose relay never ran, and rows whose
    ``next_attempt_at`` has come.
    """

    kind = models.CharField(max_length=64)
    recipient = models.CharField(max_length=320)
    meeting = models.ForeignKey(
        "meetings.Meeting",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notifications",
    )
    recurrence_id = models.DateTimeField(null=True, blank=True)
    sequence = models.PositiveIntegerField(default=0)
    dedup_key = models.CharField(max_length=255, unique=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Set by a sender that keeps its own retry schedule (webhooks: a day of retries): the row
    # is not delivered before, and the sweeper re-queues it once due. Empty: the relay's backoff.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(status="pending"),
                name="notification_pending_idx",
            ),
            models.Index(fields=["meeting", "kind"], name="notification_meeting_idx"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending", next_attempt_at__isnull=False),
                name="notification_retry_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.recipient} ({self.status})"


def notification_key(
    *,
    kind: str,
    recipient: str,
    meeting_id: int | None = None,
    recurrence_id: str = "",
    sequence: int = 0,
) -> str:
    return f"{kind}:{meeting_id or '-'}:{recurrence_id or '-'}:{recipient.lower()}:{sequence}"


class IdempotentRequest(models.Model):
    """A POST made with an Idempotency-Key, and the response to replay for 24 hours.

    The row is created before the request runs (the unique constraint makes a concurrent
    duplicate wait its turn or get 409) and filled in with the response when it ends.
    """

    api_key = models.ForeignKey(
        "agencies.ApiKey", on_delete=models.CASCADE, related_name="idempotent_requests"
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=JSONEncoder)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code or 'running'})"
