"""Redis stopped while meetings are booked: every booking returns at once with its outbox rows
written; once Redis is back the sweeper re-queues them and each invitation arrives once."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agencies.models import Role
from meetings.invitations import MEETING_REQUEST
from meetings.services import AttendeeSpec, meeting_schedule
from tests.faults.conftest import message_id_counts
from tests.process_harness import wait_until
from visio_broker.models import Notification, NotificationStatus
from visio_broker.outbox import mail_message_id as message_id

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MEETINGS = 20
BOOKING_LIMIT_SECONDS = 2.0
DELIVERY_LIMIT_SECONDS = 90.0
# Long enough for beat to miss two sweeps and the worker to lose its connection.
OUTAGE_SECONDS = 12.0


def test_bookings_while_redis_is_down_are_fast_and_delivered_once_it_is_back(
    agency, make_member, celery_processes, publish_to_fault_broker, fault_sink
):
    redis = publish_to_fault_broker
    organizer = make_member(agency, Role.ORGANIZER, email="orla@test.gouv.example")
    celery_processes.worker(pool="prefork", concurrency=2)
    celery_processes.beat()
    redis.stop()
    outage_began = time.monotonic()

    start = timezone.now() + timedelta(days=1)
    durations, invited = [], set()
    for number in range(MEETINGS):
        guests = [f"guest{number}.{seat}@partner.example" for seat in range(2)]
        began = time.monotonic()
        meeting = meeting_schedule(
            actor=organizer,
            title=f"Outage drill {number}",
            start=start + timedelta(hours=number),
            end=start + timedelta(hours=number, minutes=30),
            timezone="Europe/Paris",
            attendees=[AttendeeSpec(email) for email in guests],
        )
        durations.append(time.monotonic() - began)
        invited |= {(meeting.pk, email) for email in guests}
    assert max(durations) < BOOKING_LIMIT_SECONDS, durations

    rows = Notification.objects.filter(kind=MEETING_REQUEST)
    assert set(rows.values_list("meeting_id", "recipient")) == invited
    assert set(rows.values_list("status", flat=True)) == {NotificationStatus.PENDING}

    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_began)))
    assert set(rows.values_list("status", flat=True)) == {NotificationStatus.PENDING}
    redis.start()
    began = time.monotonic()
    assert wait_until(
        lambda: (
            not rows.exclude(status=NotificationStatus.SENT).exists()
            and len(fault_sink.messages) >= len(invited)
        ),
        timeout=DELIVERY_LIMIT_SECONDS,
        interval=0.5,
    ), f"{rows.filter(status=NotificationStatus.SENT).count()} of {len(invited)} rows sent"
    delivered_after = time.monotonic() - began
    time.sleep(6)  # one more sweep: a row already sent is never sent again

    counts = message_id_counts(fault_sink)
    assert counts == {message_id(row): 1 for row in rows}
    assert sorted(mail.rcpt_tos[0] for mail in fault_sink.messages) == sorted(
        email for _pk, email in invited
    )
    print(
        f"booking while Redis was down: max {max(durations) * 1000:.0f} ms, "
        f"mean {sum(durations) / len(durations) * 1000:.0f} ms; all {len(invited)} "
        f"invitations delivered {delivered_after:.1f} s after Redis came back"
    )
