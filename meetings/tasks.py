"""Celery tasks of the meetings app: thin, idempotent, each calling one service."""

from celery import shared_task

from meetings.changes import changes_purge
from meetings.reminders import reminders_deliver, reminders_plan, reminders_send


@shared_task(name="meetings.reminders_plan")
def reminders_plan_task() -> int:
    """Beat, every minute: materialise the reminders of the coming hours."""
    return reminders_plan().created


@shared_task(name="meetings.reminders_send")
def reminders_send_task() -> int:
    """Beat, every 30 seconds: claim due reminders and queue their emails."""
    return len(reminders_send().notification_ids)


@shared_task(
    name="meetings.reminders_deliver",
    acks_late=True,
    reject_on_worker_lost=True,
)
def reminders_deliver_task(notification_ids: list[int]) -> dict[str, int]:
    """Send a batch of reminder emails over one SMTP connection; rows already sent are skipped."""
    return reminders_deliver(notification_ids=notification_ids)


@shared_task(name="meetings.changes_purge")
def changes_purge_task() -> int:
    """Beat, daily: delete delta-sync entries older than CHANGES_RETENTION_DAYS."""
    return changes_purge()
