"""The organizer's notice of answers: one short email per batch window, whatever path answered."""

from __future__ import annotations

import hashlib
import smtplib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.test import Client

from agencies.models import Role
from meetings import rsvp
from meetings.models import PartStat
from meetings.services import AttendeeSpec, attendee_respond, meeting_schedule
from tests.conftest import signed_in_client
from tests.smtp_sink import smtp_sink_fixture, smtp_sink_mail_fixture  # noqa: F401
from visio_broker import outbox
from visio_broker.models import Notification, NotificationStatus
from visio_broker.outbox import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    notification_deliver,
)

PARIS = ZoneInfo("Europe/Paris")
# Monday 2 March 2026, 09:00:10 in Paris: 10 s into a one-minute window.
NOW = datetime(2026, 3, 2, 8, 0, 10, tzinfo=UTC)
EXTERNAL = "partner@example.org"
KIND = rsvp.REPLIES_KIND


@pytest.fixture
def organizer(agency, make_member):
    return make_member(
        agency,
        Role.ORGANIZER,
        email="orga@test.gouv.example",
        display_name="Olga",
        language="fr",
        timezone="America/Montreal",
    )


@pytest.fixture
def colleague(agency, make_member):
    return make_member(
        agency, Role.MEMBER, email="colleague@test.gouv.example", display_name="Colin"
    )


@pytest.fixture
def meeting(organizer, colleague):
    with time_machine.travel(NOW, tick=False):
        return meeting_schedule(
            actor=organizer,
            title="Budget review",
            start=datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
            end=datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
            timezone="Europe/Paris",
            attendees=[AttendeeSpec(colleague.email), AttendeeSpec(EXTERNAL, "Pat Partner")],
        )


def _notices():
    return list(Notification.objects.filter(kind=KIND).order_by("pk"))


def test_two_answers_within_a_minute_make_one_notice_and_one_email(
    meeting, colleague, django_capture_on_commit_callbacks
):
    with time_machine.travel(NOW, tick=False):
        client = signed_in_client(colleague)
        client.post(f"/meetings/{meeting.pk}/respond/", {"partstat": "accepted"})
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        with django_capture_on_commit_callbacks() as callbacks:
            Client().post(
                "/rsvp/"
                + rsvp.rsvp_token(meeting.attendees.get(email=EXTERNAL), PartStat.DECLINED)
                + "/"
            )

    [notice] = _notices()
    assert notice.recipient == "orga@test.gouv.example"
    assert notice.meeting == meeting
    assert [(a["email"], a["partstat"]) for a in notice.payload["answers"]] == [
        (colleague.email, PartStat.ACCEPTED),
        (EXTERNAL, PartStat.DECLINED),
    ]
    assert len(callbacks) == 1  # the relay, queued for the window's close

    assert notification_deliver(notification_id=notice.pk) == "sent"

    [email] = mail.outbox
    assert email.to == ["orga@test.gouv.example"]
    # In the organizer's language and zone: 09:00:10 in Paris is 03:00 in Montreal.
    assert email.subject == "[Visio Broker] 2 réponses : Budget review"
    assert "Colin" in email.body and "a accepté" in email.body
    assert "Pat Partner <partner@example.org>" in email.body and "a refusé" in email.body
    assert "2 mars 2026, 03:00" in email.body
    assert "America/Montreal" in email.body
    assert f"http://testserver/meetings/{meeting.pk}/" in email.body
    html = email.alternatives[0]
    assert html[1] == "text/html" and "Pat Partner" in html[0]
    digest = hashlib.sha256(notice.dedup_key.encode()).hexdigest()[:32]
    assert email.extra_headers["Message-ID"] == f"<{digest}@testserver>"


def test_one_answer_names_who_answered_in_the_subject(meeting, colleague, organizer):
    organizer.language = "en"
    organizer.save(update_fields=["language"])
    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor=colleague,
            attendee=meeting.attendees.get(email=colleague.email),
            partstat=PartStat.TENTATIVE,
        )
    [notice] = _notices()

    notification_deliver(notification_id=notice.pk)

    assert mail.outbox[0].subject == "[Visio Broker] Colin tentatively accepted: Budget review"


def test_a_changed_answer_within_the_window_keeps_only_the_latest(meeting, colleague):
    attendee = meeting.attendees.get(email=colleague.email)
    with time_machine.travel(NOW, tick=False):
        attendee_respond(actor=colleague, attendee=attendee, partstat=PartStat.ACCEPTED)
        attendee_respond(actor=colleague, attendee=attendee, partstat=PartStat.DECLINED)

    [notice] = _notices()
    assert [a["partstat"] for a in notice.payload["answers"]] == [PartStat.DECLINED]


def test_an_answer_in_the_next_minute_makes_a_second_notice(meeting, colleague):
    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor=colleague,
            attendee=meeting.attendees.get(email=colleague.email),
            partstat=PartStat.ACCEPTED,
        )
    with time_machine.travel(NOW + timedelta(seconds=60), tick=False):
        attendee_respond(
            actor=f"rsvp:{EXTERNAL}",
            attendee=meeting.attendees.get(email=EXTERNAL),
            partstat=PartStat.ACCEPTED,
        )

    first, second = _notices()
    assert [a["email"] for a in first.payload["answers"]] == [colleague.email]
    assert [a["email"] for a in second.payload["answers"]] == [EXTERNAL]
    for notice in (first, second):
        notification_deliver(notification_id=notice.pk)
    assert len(mail.outbox) == 2
    assert mail.outbox[0].extra_headers["Message-ID"] != mail.outbox[1].extra_headers["Message-ID"]


def test_a_late_answer_after_the_notice_went_opens_a_new_row(meeting, colleague):
    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor=colleague,
            attendee=meeting.attendees.get(email=colleague.email),
            partstat=PartStat.ACCEPTED,
        )
        [first] = _notices()
        notification_deliver(notification_id=first.pk)
        attendee_respond(
            actor=f"rsvp:{EXTERNAL}",
            attendee=meeting.attendees.get(email=EXTERNAL),
            partstat=PartStat.TENTATIVE,
        )

    first, late = _notices()
    assert first.status == NotificationStatus.SENT
    assert [a["email"] for a in first.payload["answers"]] == [colleague.email]
    assert late.status == NotificationStatus.PENDING
    assert [a["email"] for a in late.payload["answers"]] == [EXTERNAL]


def test_relay_waits_for_the_window_to_close(
    meeting, colleague, django_capture_on_commit_callbacks, settings
):
    from visio_broker import tasks

    queued: list[dict[str, object]] = []

    class Recorder:
        def apply_async(self, *, args, countdown, retry):
            queued.append({"args": args, "countdown": countdown})

    settings.ORGANIZER_NOTICE_BATCH_SECONDS = 60
    original = tasks.outbox_relay
    tasks.outbox_relay = Recorder()  # the broker, not the code under test
    try:
        with time_machine.travel(NOW, tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                attendee_respond(
                    actor=colleague,
                    attendee=meeting.attendees.get(email=colleague.email),
                    partstat=PartStat.ACCEPTED,
                )
    finally:
        tasks.outbox_relay = original

    [notice] = _notices()
    # 10 s into the window: sent 50 s later (plus one for the clock's rounding), never longer.
    assert queued == [{"args": (notice.pk,), "countdown": 51}]


def test_no_duplicate_on_retry(meeting, colleague):
    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor=colleague,
            attendee=meeting.attendees.get(email=colleague.email),
            partstat=PartStat.ACCEPTED,
        )
    [notice] = _notices()

    assert notification_deliver(notification_id=notice.pk) == "sent"
    assert notification_deliver(notification_id=notice.pk) == "skipped"

    assert len(mail.outbox) == 1


def test_organizer_answering_their_own_meeting_gets_no_notice(meeting, organizer):
    assert meeting.attendees.filter(user=organizer).exists()

    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor=organizer,
            attendee=meeting.attendees.get(email=organizer.email),
            partstat=PartStat.ACCEPTED,
        )

    assert _notices() == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (smtplib.SMTPResponseException(451, b"try later"), TemporaryDeliveryError),
        (smtplib.SMTPResponseException(554, b"no"), PermanentDeliveryError),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"unknown")}), PermanentDeliveryError),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (450, b"busy")}), TemporaryDeliveryError),
        (ConnectionRefusedError(), TemporaryDeliveryError),
        (smtplib.SMTPServerDisconnected(), TemporaryDeliveryError),
    ],
)
def test_smtp_errors_are_sorted_into_temporary_and_permanent(error, expected):
    class Failing:
        def send(self):
            raise error

    with pytest.raises(expected):
        outbox.mail_send(Failing())  # type: ignore[arg-type]


def test_notice_goes_over_smtp_with_its_message_id(meeting, colleague, smtp_sink_mail):
    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor=colleague,
            attendee=meeting.attendees.get(email=colleague.email),
            partstat=PartStat.ACCEPTED,
        )
    [notice] = _notices()

    assert notification_deliver(notification_id=notice.pk) == "sent"

    [received] = smtp_sink_mail.to("orga@test.gouv.example")
    assert received.message["Message-ID"] == outbox.mail_message_id(notice)
    assert "a accepté" in received.subject


def test_unreachable_smtp_server_leaves_the_notice_pending(meeting, colleague, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor=colleague,
            attendee=meeting.attendees.get(email=colleague.email),
            partstat=PartStat.ACCEPTED,
        )
    [notice] = _notices()

    with pytest.raises(TemporaryDeliveryError):
        notification_deliver(notification_id=notice.pk)

    notice.refresh_from_db()
    assert notice.status == NotificationStatus.PENDING


def test_notice_window_is_utc_aligned(meeting, colleague):
    start = datetime(2026, 3, 2, 8, 0, 59, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        attendee_respond(
            actor=colleague,
            attendee=meeting.attendees.get(email=colleague.email),
            partstat=PartStat.ACCEPTED,
        )
    with time_machine.travel(start + timedelta(seconds=1), tick=False):
        attendee_respond(
            actor=f"rsvp:{EXTERNAL}",
            attendee=meeting.attendees.get(email=EXTERNAL),
            partstat=PartStat.ACCEPTED,
        )

    assert len(_notices()) == 2
    first_window = int(start.timestamp()) // 60
    assert [n.dedup_key.rsplit(":", 1)[1] for n in _notices()] == [
        f"b{first_window}",
        f"b{first_window + 1}",
    ]
