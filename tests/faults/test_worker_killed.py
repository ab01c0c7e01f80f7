"""A worker killed with SIGKILL in the middle of 1,000 invitations: all are delivered, and a
duplicate (the crash fell between SMTP acceptance and the commit) carries the same Message-ID
as its original, at most once."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from agencies.models import Role
from meetings.invitations import MEETING_REQUEST, invitations_scheduled
from meetings.models import Attendee, Meeting
from tests.faults.conftest import message_id_counts
from tests.process_harness import wait_until
from tests.smtp_sink import ReceivedMail
from visio_broker.models import Notification, NotificationStatus
from visio_broker.outbox import mail_message_id as message_id

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MEETINGS, INVITEES = 500, 2  # 1,000 invitations
KILL_AFTER = 300


def calendar_uid(mail: ReceivedMail) -> str:
    for part in mail.message.walk():
        if part.get_content_type() == "text/calendar":
            text = part.get_payload(decode=True).decode().replace("\r\n ", "")
            found = re.search(r"^UID:(.+?)\r?$", text, re.MULTILINE)
            if found:
                return found.group(1)
    raise AssertionError(f"no calendar UID in {mail.message['Message-ID']}")


def book_meetings(organizer) -> list[Meeting]:
    """Rows straight from the ORM: the subject is delivery, not booking."""
    start = timezone.now() + timedelta(days=2)
    meetings = Meeting.objects.bulk_create(
        Meeting(
            uid=f"{uuid.uuid4()}@fault.test",
            title=f"Crash drill {number}",
            start=start + timedelta(minutes=30 * number),
            end=start + timedelta(minutes=30 * number + 30),
            series_end=start + timedelta(minutes=30 * number + 30),
            timezone="Europe/Paris",
            host_agency=organizer.membership.agency,
            organizer=organizer,
        )
        for number in range(MEETINGS)
    )
    Attendee.objects.bulk_create(
        Attendee(meeting=meeting, email=f"guest{number}.{seat}@partner.example")
        for number, meeting in enumerate(meetings)
        for seat in range(INVITEES)
    )
    return meetings


def test_worker_sigkilled_mid_batch_delivers_all_invitations_with_stable_message_ids(
    agency, make_member, celery_processes, publish_to_fault_broker, fault_sink
):
    organizer = make_member(agency, Role.ORGANIZER, email="orla@test.gouv.example")
    meetings = book_meetings(organizer)
    first = celery_processes.worker(pool="prefork", concurrency=2)
    celery_processes.beat()  # the sweeper re-queues what the killed worker had taken

    with transaction.atomic():
        for meeting in meetings:
            invitations_scheduled(meeting)
    rows = Notification.objects.filter(kind=MEETING_REQUEST)
    assert rows.count() == MEETINGS * INVITEES

    assert wait_until(lambda: len(fault_sink.messages) >= KILL_AFTER, timeout=120, interval=0.05)
    first.kill()
    delivered_before_kill = len(fault_sink.messages)
    assert delivered_before_kill < MEETINGS * INVITEES, "the batch ended before the kill"
    began = time.monotonic()
    celery_processes.worker(pool="prefork", concurrency=2)

    def all_delivered() -> bool:
        return (
            not rows.exclude(status=NotificationStatus.SENT).exists()
            and len(message_id_counts(fault_sink)) >= MEETINGS * INVITEES
        )

    assert wait_until(all_delivered, timeout=240, interval=1), (
        f"{rows.filter(status=NotificationStatus.SENT).count()} rows sent, "
        f"{len(message_id_counts(fault_sink))} distinct messages at the sink"
    )
    recovery = time.monotonic() - began
    time.sleep(6)  # one more sweep: nothing re-sent after the rows are marked

    counts = message_id_counts(fault_sink)
    assert set(counts) == {message_id(row) for row in rows}
    assert max(counts.values()) <= 2, [m for m, n in counts.items() if n > 2]
    ids_per_invitation: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for mail in fault_sink.messages:
        (recipient,) = mail.rcpt_tos
        ids_per_invitation[(recipient, calendar_uid(mail))].add(str(mail.message["Message-ID"]))
    assert len(ids_per_invitation) == MEETINGS * INVITEES
    assert all(len(ids) == 1 for ids in ids_per_invitation.values())
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"killed after {delivered_before_kill} deliveries; all {len(counts)} delivered "
        f"{recovery:.1f} s after the restart; {duplicates} duplicates "
        f"(Counter of copies: {Counter(counts.values())})"
    )
