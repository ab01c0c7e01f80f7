"""The outbox: one row per message, relayed after commit, sent once, failures recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from visio_broker import outbox
from visio_broker.models import Notification, NotificationStatus
from visio_broker.tasks import outbox_sweep

pytestmark = pytest.mark.django_db

SENT: list[int] = []


@pytest.fixture(autouse=True)
def _test_senders():
    """Senders for kinds only this module uses; the registry is restored afterwards."""
    SENT.clear()
    saved = dict(outbox._SENDERS)

    @outbox.sender("test.ok")
    def ok(notification):
        SENT.append(notification.pk)

    @outbox.sender("test.busy")
    def busy(notification):
        raise outbox.TemporaryDeliveryError("451 try again later")

    @outbox.sender("test.refused")
    def refused(notification):
        raise outbox.PermanentDeliveryError("550 no such user")

    yield
    outbox._SENDERS.clear()
    outbox._SENDERS.update(saved)


def _enqueue(kind="test.ok", recipient="a@example.org", sequence=0):
    return outbox.notification_enqueue(kind=kind, recipient=recipient, sequence=sequence)


def test_enqueue_is_idempotent_per_dedup_key():
    first = _enqueue()
    again = _enqueue()
    other_sequence = _enqueue(sequence=1)
    assert first.pk == again.pk
    assert other_sequence.pk != first.pk
    assert Notification.objects.count() == 2


def test_relay_is_queued_only_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    queued: list[int] = []
    monkeypatch.setattr(outbox, "relay_soon", lambda pk, countdown=0: queued.append(pk))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification = _enqueue()
        _enqueue()  # the same message again: no second relay
    assert queued == []
    for callback in callbacks:
        callback()
    assert queued == [notification.pk]


def test_deliver_sends_once_and_marks_the_row():
    notification = _enqueue()
    assert outbox.notification_deliver(notification_id=notification.pk) == "sent"
    assert outbox.notification_deliver(notification_id=notification.pk) == "skipped"
    notification.refresh_from_db()
    assert SENT == [notification.pk]
    assert notification.status == NotificationStatus.SENT
    assert notification.sent_at is not None
    assert notification.attempts == 1


def test_temporary_failure_keeps_the_row_pending_and_records_the_attempt():
    notification = _enqueue(kind="test.busy")
    with pytest.raises(outbox.TemporaryDeliveryError):
        outbox.notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert notification.attempts == 1
    assert notification.last_error == "451 try again later"


def test_permanent_failure_is_recorded_and_never_retried():
    notification = _enqueue(kind="test.refused")
    assert outbox.notification_deliver(notification_id=notification.pk) == "failed"
    assert outbox.notification_deliver(notification_id=notification.pk) == "skipped"
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.last_error == "550 no such user"


def test_a_kind_without_sender_fails_permanently():
    notification = _enqueue(kind="test.unknown")
    assert outbox.notification_deliver(notification_id=notification.pk) == "failed"
    notification.refresh_from_db()
    assert "no sender" in notification.last_error


def test_sweeper_requeues_only_rows_whose_relay_never_ran(monkeypatch, settings):
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 120
    requeued: list[int] = []
    monkeypatch.setattr("visio_broker.tasks.relay_soon", lambda pk: requeued.append(pk))
    now = timezone.now()
    with time_machine.travel(now - timedelta(minutes=5)):
        stale = _enqueue(recipient="old@example.org")
        sent = _enqueue(recipient="done@example.org")
    outbox.notification_deliver(notification_id=sent.pk)
    fresh = _enqueue(recipient="new@example.org")
    assert outbox_sweep() == 1
    assert requeued == [stale.pk]
    assert fresh.pk not in requeued


def test_relay_soon_with_an_unreachable_broker_returns_at_once(caplog):
    from visio_broker.celery import app

    previous = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app.pool.force_close_all()
    try:
        began = timezone.now()
        outbox.relay_soon(12345)  # logs and returns: the sweeper will send the row
        assert timezone.now() - began < timedelta(seconds=5)
        assert "broker unreachable, notification 12345 left to the sweeper" in caplog.text
    finally:
        app.conf.broker_write_url = previous
        # force_close_all closes the pool for good: later tests in this process get a new one.
        app.pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None
