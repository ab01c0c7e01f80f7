"""Agency webhooks end to end: events become outbox rows in the change's transaction, are
signed per Standard Webhooks, POSTed to a real local receiver, retried on a day-long schedule
with the same webhook-id, and logged attempt by attempt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from agencies.models import AuditEvent, Role, WebhookAttempt, WebhookDisabledReason
from agencies.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from agencies.webhooks import webhooks_emit
from meetings.models import Attendee
from meetings.services import AttendeeSpec, attendee_respond, meeting_cancel, meeting_schedule
from rooms.models import RoomReservation
from rooms.services import ProviderEventData, provider_event_record
from tests.local_http import LocalServer, free_port
from visio_broker import outbox
from visio_broker.audit import CLI
from visio_broker.models import Notification, NotificationStatus
from visio_broker.tasks import outbox_relay, outbox_sweep

pytestmark = pytest.mark.django_db

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
ALL_MEETING_EVENTS = ["meeting.created", "meeting.updated", "meeting.cancelled"]


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def receiver():
    server = LocalServer().start()
    yield server
    server.stop()


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orga@test.gouv.example")


def _endpoint(agency, url, event_types=ALL_MEETING_EVENTS):
    return webhook_endpoint_create(actor=CLI, agency=agency, url=url, event_types=event_types)


def _book(organizer, title="Steering committee", attendees=()):
    return meeting_schedule(
        actor=organizer,
        title=title,
        start=datetime(2027, 3, 2, 10, 0, tzinfo=UTC),
        end=datetime(2027, 3, 2, 11, 0, tzinfo=UTC),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(email) for email in attendees],
    )


def _webhook_rows():
    return list(Notification.objects.filter(kind="webhook").order_by("pk"))


def _verified(secret, request):
    return Webhook(secret).verify(request.body, request.headers)


def test_webhooks_delivery_is_signed_and_verifies_with_standardwebhooks(
    agency, organizer, receiver
):
    endpoint, secret = _endpoint(agency, receiver.url + "/hooks/visio")
    meeting = _book(organizer)
    [row] = _webhook_rows()

    assert outbox.notification_deliver(notification_id=row.pk) == "sent"

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hooks/visio"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["webhook-timestamp"] == str(int(T0.timestamp()))
    body = _verified(secret, request)
    assert body == {
        "type": "meeting.created",
        "timestamp": "2027-03-01T09:00:00Z",
        "data": {
            "agency": agency.slug,
            "meeting": {
                "id": meeting.pk,
                "uid": meeting.uid,
                "status": "scheduled",
                "sequence": 0,
                "title": "Steering committee",
                "start": "2027-03-02T10:00:00Z",
                "end": "2027-03-02T11:00:00Z",
                "timezone": "Europe/Paris",
                "updated_at": "2027-03-01T09:00:00Z",
            },
        },
    }
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43).verify(request.body, request.headers)
    [attempt] = WebhookAttempt.objects.all()
    assert (attempt.endpoint, attempt.attempt, attempt.status_code, attempt.succeeded) == (
        endpoint,
        1,
        200,
        True,
    )
    assert attempt.webhook_id == request.headers["webhook-id"]
    row.refresh_from_db()
    assert row.status == NotificationStatus.SENT and row.next_attempt_at is None


def test_webhooks_receiver_500_is_retried_with_the_same_webhook_id(
    agency, organizer, receiver, _clock
):
    _endpoint_row, secret = _endpoint(agency, receiver.url + "/hooks")
    _book(organizer)
    [row] = _webhook_rows()
    receiver.answer(500, "boom")

    with pytest.raises(outbox.TemporaryDeliveryError):
        outbox.notification_deliver(notification_id=row.pk)
    row.refresh_from_db()
    assert row.status == NotificationStatus.PENDING
    assert row.next_attempt_at == T0 + timedelta(seconds=5)
    assert "answered HTTP 500" in row.last_error
    # Not due yet: an early relay does nothing.
    assert outbox.notification_deliver(notification_id=row.pk) == "skipped"
    assert len(receiver.requests) == 1

    receiver.answer(200)
    _clock.move_to(T0 + timedelta(seconds=5))
    assert outbox.notification_deliver(notification_id=row.pk) == "sent"

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert _verified(secret, first) == _verified(secret, second)
    assert second.headers["webhook-timestamp"] == str(int(T0.timestamp()) + 5)
    log = list(WebhookAttempt.objects.order_by("attempt"))
    assert [(a.attempt, a.status_code, a.succeeded) for a in log] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert {a.webhook_id for a in log} == {first.headers["webhook-id"]}
    assert log[0].next_attempt_at == T0 + timedelta(seconds=5) and log[1].next_attempt_at is None
    row.refresh_from_db()
    assert (row.status, row.attempts) == (NotificationStatus.SENT, 2)


def test_webhooks_retry_schedule_spans_a_day_then_gives_up(agency, organizer, receiver, _clock):
    _endpoint(agency, receiver.url)
    _book(organizer)
    [row] = _webhook_rows()
    receiver.answer(503)
    attempted_at = []
    while True:
        attempted_at.append(timezone.now())
        try:
            result = outbox.notification_deliver(notification_id=row.pk)
        except outbox.TemporaryDeliveryError:
            row.refresh_from_db()
            _clock.move_to(row.next_attempt_at)
            continue
        break

    assert result == "failed"
    offsets = [moment - T0 for moment in attempted_at]
    assert offsets == [
        timedelta(0),
        timedelta(seconds=5),
        timedelta(minutes=5, seconds=5),
        timedelta(minutes=35, seconds=5),
        timedelta(hours=2, minutes=35, seconds=5),
        timedelta(hours=7, minutes=35, seconds=5),
        timedelta(hours=17, minutes=35, seconds=5),
        timedelta(days=1),  # the last wait is cut short: a day after the event
    ]
    row.refresh_from_db()
    assert row.status == NotificationStatus.FAILED and row.attempts == 8
    assert row.last_error.startswith("gave up after 8 attempts over a day")
    assert len(receiver.requests) == 8
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert WebhookAttempt.objects.filter(succeeded=False, status_code=503).count() == 8


def test_webhooks_sweeper_requeues_a_deferred_row_only_once_due(
    agency, organizer, receiver, _clock, monkeypatch
):
    _endpoint(agency, receiver.url)
    _book(organizer)
    [row] = _webhook_rows()
    receiver.answer(500)
    for moment in (T0, T0 + timedelta(seconds=5), T0 + timedelta(minutes=5, seconds=5)):
        _clock.move_to(moment)
        with pytest.raises(outbox.TemporaryDeliveryError):
            outbox.notification_deliver(notification_id=row.pk)
    row.refresh_from_db()
    assert row.next_attempt_at == T0 + timedelta(minutes=35, seconds=5)

    requeued: list[int] = []
    monkeypatch.setattr("visio_broker.tasks.relay_soon", lambda pk: requeued.append(pk))
    _clock.move_to(T0 + timedelta(minutes=30))
    assert outbox_sweep() == 0  # created long ago, but not due: no re-queue every minute
    _clock.move_to(row.next_attempt_at)
    assert outbox_sweep() == 1 and requeued == [row.pk]


def test_webhooks_relay_leaves_long_waits_to_the_sweeper(agency, organizer, receiver, _clock):
    """No long Celery ETA: past OUTBOX_RETRY_MAX_SECONDS the relay returns and the row waits."""
    _endpoint(agency, receiver.url)
    _book(organizer)
    [row] = _webhook_rows()
    Notification.objects.filter(pk=row.pk).update(attempts=2)  # the next wait is 30 minutes
    receiver.answer(500)

    result = outbox_relay.apply(args=(row.pk,)).get()

    assert result == "deferred"
    row.refresh_from_db()
    assert row.attempts == 3 and row.next_attempt_at == T0 + timedelta(minutes=30)


def test_webhooks_connection_refused_is_retried_and_logged(agency, organizer):
    _endpoint(agency, f"http://127.0.0.1:{free_port()}/hooks")
    _book(organizer)
    [row] = _webhook_rows()

    with pytest.raises(outbox.TemporaryDeliveryError):
        outbox.notification_deliver(notification_id=row.pk)

    [attempt] = WebhookAttempt.objects.all()
    assert attempt.status_code is None and not attempt.succeeded
    assert "connection refused" in attempt.error
    assert attempt.next_attempt_at == T0 + timedelta(seconds=5)


def test_webhooks_410_gone_disables_the_endpoint(agency, organizer, receiver):
    endpoint, _secret = _endpoint(agency, receiver.url)
    _book(organizer)
    [row] = _webhook_rows()
    receiver.answer(410)

    assert outbox.notification_deliver(notification_id=row.pk) == "failed"

    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == WebhookDisabledReason.GONE
    assert AuditEvent.objects.filter(action="webhook.disabled", object_id=str(endpoint.pk)).exists()
    assert WebhookAttempt.objects.get().status_code == 410
    _book(organizer, title="Another one")
    assert len(_webhook_rows()) == 1  # a disabled endpoint gets no new deliveries


def test_webhooks_emit_only_to_enabled_subscribed_endpoints_of_the_agency(
    agency, other_agency, organizer, make_member
):
    url = "http://127.0.0.1:9/"
    subscribed, _ = _endpoint(agency, url, ["meeting.created"])
    _endpoint(agency, url, ["meeting.cancelled"])
    disabled, _ = _endpoint(agency, url, ["meeting.created"])
    webhook_endpoint_update(actor=CLI, endpoint=disabled, enabled=False)
    deleted, _ = _endpoint(agency, url, ["meeting.created"])
    webhook_endpoint_delete(actor=CLI, endpoint=deleted)
    _endpoint(other_agency, url, ["meeting.created"])

    _book(organizer)

    [row] = _webhook_rows()
    assert row.payload["endpoint"] == subscribed.pk
    assert row.recipient == f"webhook-endpoint:{subscribed.pk}"


def test_webhooks_one_event_has_one_webhook_id_across_endpoints(agency, organizer):
    _endpoint(agency, "http://127.0.0.1:9/a")
    _endpoint(agency, "http://127.0.0.1:9/b")
    _book(organizer)
    first, second = _webhook_rows()
    assert first.payload["webhook_id"] == second.payload["webhook_id"]
    assert first.payload["endpoint"] != second.payload["endpoint"]


def test_webhooks_rolled_back_booking_sends_nothing(agency, organizer):
    _endpoint(agency, "http://127.0.0.1:9/")

    with pytest.raises(RuntimeError), transaction.atomic():
        _book(organizer)
        assert len(_webhook_rows()) == 1
        raise RuntimeError("the request failed after the booking")

    assert _webhook_rows() == []


def test_webhooks_relay_is_queued_only_after_commit(
    agency, organizer, django_capture_on_commit_callbacks, monkeypatch
):
    _endpoint(agency, "http://127.0.0.1:9/")
    queued: list[int] = []
    monkeypatch.setattr(outbox, "relay_soon", lambda pk, countdown=0: queued.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        _book(organizer)
        assert queued == []
    [row] = _webhook_rows()
    assert row.pk in queued


def test_webhooks_cancel_and_attendee_answer_events(agency, organizer, make_member, receiver):
    _secret_endpoint, secret = _endpoint(
        agency, receiver.url, ["meeting.cancelled", "attendee.responded"]
    )
    alice = make_member(agency, Role.MEMBER, email="alice@test.gouv.example")
    meeting = _book(organizer, attendees=[alice.email])
    attendee = Attendee.objects.get(meeting=meeting, email=alice.email)
    attendee_respond(actor=alice, attendee=attendee, partstat="accepted")
    meeting_cancel(actor=organizer, meeting=meeting)

    for row in _webhook_rows():
        assert outbox.notification_deliver(notification_id=row.pk) == "sent"
    answered, cancelled = (_verified(secret, request) for request in receiver.requests)
    assert answered["type"] == "attendee.responded"
    assert answered["data"]["attendee"] == {
        "email": "alice@test.gouv.example",
        "status": "accepted",
        "responded_at": "2027-03-01T09:00:00Z",
    }
    assert answered["data"]["meeting"]["id"] == meeting.pk
    assert cancelled["type"] == "meeting.cancelled"
    assert cancelled["data"]["meeting"]["status"] == "cancelled"
    assert cancelled["data"]["meeting"]["sequence"] == 1


def test_webhooks_room_started_and_finished(agency, organizer, receiver):
    _endpoint_row, secret = _endpoint(agency, receiver.url, ["room.started", "room.finished"])
    meeting = _book(organizer)
    reservation = RoomReservation.objects.select_related("backend").get(meeting=meeting)
    started = T0 - timedelta(minutes=1)

    def report(event_id, event, at):
        provider_event_record(
            backend=reservation.backend,
            data=ProviderEventData(
                event_id=event_id,
                event=event,
                occurred_at=at,
                room_name=reservation.room_name,
                room_sid="RM_1",
            ),
        )

    report("EV_1", "room_started", started)
    report("EV_1", "room_started", started)  # the provider retried its webhook
    report("EV_2", "room_finished", T0)

    rows = _webhook_rows()
    assert len(rows) == 2
    for row in rows:
        outbox.notification_deliver(notification_id=row.pk)
    started_body, finished_body = (_verified(secret, request) for request in receiver.requests)
    assert started_body["type"] == "room.started"
    assert started_body["data"]["room"] == {
        "id": reservation.pk,
        "backend": reservation.backend.name,
        "backend_kind": "livekit",
        "title": "",
        "started_at": "2027-03-01T08:59:00Z",
    }
    assert started_body["data"]["meeting"]["id"] == meeting.pk
    assert finished_body["type"] == "room.finished"
    assert finished_body["data"]["room"]["finished_at"] == "2027-03-01T09:00:00Z"


def test_webhooks_rotation_signs_with_both_secrets_for_a_day(agency, receiver, _clock):
    endpoint, old_secret = _endpoint(agency, receiver.url, ["meeting.created"])
    endpoint, new_secret = webhook_endpoint_rotate_secret(actor=CLI, endpoint=endpoint)
    assert new_secret != old_secret and new_secret.startswith("whsec_")

    for moment in (T0, T0 + timedelta(hours=25)):
        _clock.move_to(moment)
        webhooks_emit(agency=agency, event="meeting.created")
        [row] = Notification.objects.filter(kind="webhook", status=NotificationStatus.PENDING)
        assert outbox.notification_deliver(notification_id=row.pk) == "sent"

    during, after = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    _clock.move_to(T0)
    _verified(new_secret, during)
    _verified(old_secret, during)
    _clock.move_to(T0 + timedelta(hours=25))
    _verified(new_secret, after)
    with pytest.raises(WebhookVerificationError):
        _verified(old_secret, after)


def test_webhooks_private_destination_is_refused_at_delivery(agency, organizer, receiver, settings):
    _endpoint(agency, receiver.url)
    _book(organizer)
    [row] = _webhook_rows()
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    assert outbox.notification_deliver(notification_id=row.pk) == "failed"

    assert receiver.requests == []
    assert "non-public address" in WebhookAttempt.objects.get().error


def test_webhooks_deleted_endpoint_stops_queued_deliveries(agency, organizer, receiver):
    endpoint, _secret = _endpoint(agency, receiver.url)
    _book(organizer)
    [row] = _webhook_rows()
    webhook_endpoint_delete(actor=CLI, endpoint=endpoint)

    assert outbox.notification_deliver(notification_id=row.pk) == "failed"
    assert receiver.requests == []
    row.refresh_from_db()
    assert row.last_error == "the endpoint was deleted"


def test_webhooks_secret_is_not_stored(agency):
    endpoint, secret = _endpoint(agency, "https://hooks.example.org/visio")
    stored = json.dumps(
        {field.name: str(getattr(endpoint, field.attname)) for field in endpoint._meta.fields}
    )
    raw = secret.removeprefix("whsec_")
    assert raw not in stored and secret not in stored
