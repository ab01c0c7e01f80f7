"""Invitation emails (iMIP, RFC 6047) as they leave: MIME structure, the iCalendar part read
back by icalendar, vobject and ical.js, languages, Message-IDs and delivery failures."""

from __future__ import annotations

import email
import hashlib
import smtplib
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parseaddr
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import icalendar
import pytest
import time_machine
import vobject
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse

from agencies.models import Role
from meetings import ical
from meetings.invitations import build_itip_message
from meetings.models import Meeting
from meetings.recurrence import Recurrence
from meetings.services import (
    AttendeeSpec,
    meeting_cancel,
    meeting_schedule,
    meeting_update,
    occurrence_cancel,
    occurrence_move,
    series_split,
)
from tests.conftest import signed_in_client
from tests.meetings.test_ical_validity import run_node
from visio_broker.models import Notification, NotificationStatus
from visio_broker.outbox import TemporaryDeliveryError, notification_deliver
from visio_broker.outbox import mail_message_id as message_id

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
EXTERN = "extern@example.org"


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _no_process_cache():
    ical.clear_local_cache()
    yield
    ical.clear_local_cache()


@pytest.fixture
def organizer(agency, make_member):
    return make_member(
        agency, Role.ORGANIZER, email="orla@test.gouv.example", display_name="Orla Dupré"
    )


@pytest.fixture
def colleague(agency, make_member):
    return make_member(
        agency, Role.MEMBER, email="camille@test.gouv.example", display_name="Camille"
    )


@pytest.fixture
def french(agency, make_member):
    return make_member(
        agency,
        Role.MEMBER,
        email="francoise@test.gouv.example",
        language="fr",
        timezone="America/New_York",
    )


def schedule(organizer, *people: str, **kwargs) -> Meeting:
    fields = {
        "title": "Comité; budget, suite",
        "description": "Ordre du jour",
        "start": datetime(2026, 7, 6, 10, tzinfo=BERLIN),
        "end": datetime(2026, 7, 6, 11, tzinfo=BERLIN),
        "timezone": "Europe/Berlin",
    } | kwargs
    return meeting_schedule(actor=organizer, attendees=[AttendeeSpec(p) for p in people], **fields)


def weekly(organizer, *people: str) -> Meeting:
    return schedule(
        organizer,
        *people,
        start=datetime(2026, 3, 2, 9, 30, tzinfo=BERLIN),
        end=datetime(2026, 3, 2, 10, tzinfo=BERLIN),
        recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",)),
    )


def row(kind: str, recipient: str, **filters) -> Notification:
    return Notification.objects.get(kind=kind, recipient=recipient, **filters)


def deliver(notification: Notification) -> Message:
    """Send the row through the outbox (locmem backend) and parse what left."""
    before = len(mail.outbox)
    assert notification_deliver(notification_id=notification.pk) == "sent"
    assert len(mail.outbox) == before + 1
    return email.message_from_bytes(mail.outbox[-1].message().as_bytes())


def parts(message: Message) -> tuple[Message, Message, bytes]:
    """(text/calendar part, attachment, ICS bytes) after checking the RFC 6047 layout."""
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    types = [p.get_content_type() for p in alternative.get_payload()]
    assert types == ["text/plain", "text/html", "text/calendar"]
    calendar_part = alternative.get_payload()[2]
    assert calendar_part.get_content_charset() == "utf-8"
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get("Content-Disposition", "").startswith("attachment")
    ics = calendar_part.get_payload(decode=True)
    assert attachment.get_payload(decode=True) == ics
    return calendar_part, attachment, ics


def read(ics: bytes) -> icalendar.Calendar:
    calendar = icalendar.Calendar.from_ical(ics)
    vobject.readOne(ics.decode())  # raises on anything vobject cannot read
    return calendar


def events(calendar: icalendar.Calendar) -> list[icalendar.Event]:
    return list(calendar.walk("VEVENT"))


def attendees(event: icalendar.Event) -> dict[str, icalendar.vCalAddress]:
    found = event.get("ATTENDEE")
    found = found if isinstance(found, list) else [found]
    return {str(a).removeprefix("mailto:"): a for a in found}


def icaljs(ics: bytes) -> dict:
    return run_node("icaljs_itip.mjs", stdin=ics.decode(), packages=("ical.js",))  # type: ignore[return-value]


# --- REQUEST -------------------------------------------------------------------------------------


def test_invitation_is_rfc6047_request_with_full_itip_content(organizer, colleague, settings):
    meeting = schedule(organizer, colleague.email, EXTERN)
    message = deliver(row("meeting.request", colleague.email))

    calendar_part, _attachment, ics = parts(message)
    assert calendar_part.get_param("method") == "REQUEST"
    calendar = read(ics)
    assert calendar["METHOD"] == "REQUEST"
    [event] = events(calendar)
    assert str(event["UID"]) == meeting.uid
    assert event["SEQUENCE"] == 0
    assert event["STATUS"] == "CONFIRMED"
    assert "RECURRENCE-ID" not in event

    organizer_line = event["ORGANIZER"]
    assert str(organizer_line) == f"mailto:{organizer.email}"
    assert organizer_line.params["CN"] == "Orla Dupré"
    assert organizer_line.params["SENT-BY"] == f"mailto:{parseaddr(settings.DEFAULT_FROM_EMAIL)[1]}"
    people = attendees(event)
    assert set(people) == {organizer.email, colleague.email, EXTERN}
    assert people[organizer.email].params["PARTSTAT"] == "ACCEPTED"
    assert people[organizer.email].params["ROLE"] == "CHAIR"
    for address in (colleague.email, EXTERN):
        assert people[address].params["PARTSTAT"] == "NEEDS-ACTION"
        assert people[address].params["ROLE"] == "REQ-PARTICIPANT"
        assert people[address].params["RSVP"] == "TRUE"
    assert people[colleague.email].params["CN"] == "Camille"

    url = ical.join_url(meeting)
    assert str(event["URL"]) == url
    assert str(event["LOCATION"]) == url
    assert url in str(event["DESCRIPTION"])
    unfolded = ics.replace(b"\r\n ", b"")
    assert b"CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL=Join:" + url.encode() in unfolded
    [alarm] = event.walk("VALARM")
    assert alarm["ACTION"] == "DISPLAY"

    [vtimezone] = calendar.walk("VTIMEZONE")
    assert str(vtimezone["TZID"]) == "Europe/Berlin"
    assert {c.name for c in vtimezone.subcomponents} == {"STANDARD", "DAYLIGHT"}
    assert b"DTSTART;TZID=Europe/Berlin:20260706T100000" in ics
    assert event.decoded("DTSTART") == datetime(2026, 7, 6, 10, tzinfo=BERLIN)

    assert message["Message-ID"] == message_id(row("meeting.request", colleague.email))
    assert message["To"] == colleague.email
    assert message["Reply-To"] == organizer.email
    assert "Comité; budget, suite" in str(make_header(decode_header(message["Subject"])))


def test_invitation_calendar_part_reads_in_icaljs_across_dst(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    _part, _att, ics = parts(deliver(row("meeting.request", colleague.email)))

    seen = icaljs(ics)

    assert seen["method"] == "REQUEST"
    [event] = seen["events"]
    # 10:00 in Berlin in July is summer time (UTC+2): 08:00Z.
    assert event["start"] == "2026-07-06T08:00:00.000Z"
    assert event["end"] == "2026-07-06T09:00:00.000Z"
    assert event["startZone"] == "Europe/Berlin"
    assert event["uid"] == meeting.uid
    assert f"mailto:{colleague.email}" in event["attendees"]
    assert event["alarms"] == ["DISPLAY"]


def test_winter_occurrence_of_a_series_reads_in_winter_offset(organizer, colleague):
    weekly(organizer, colleague.email)
    _part, _att, ics = parts(deliver(row("meeting.request", colleague.email)))

    [master] = icaljs(ics)["events"]

    assert master["start"] == "2026-03-02T08:30:00.000Z"  # 09:30 CET is UTC+1
    assert b"RRULE:FREQ=WEEKLY;BYDAY=MO" in ics


def test_message_id_is_deterministic_per_row(organizer, colleague, settings):
    meeting = schedule(organizer, colleague.email)
    notification = row("meeting.request", colleague.email)

    first = build_itip_message(notification, meeting).message()["Message-ID"]
    again = build_itip_message(notification, Meeting.objects.get(pk=meeting.pk)).message()[
        "Message-ID"
    ]

    digest = hashlib.sha256(notification.dedup_key.encode()).hexdigest()[:32]
    assert first == again == f"<{digest}@{urlsplit(settings.SITE_URL).hostname}>"
    other = row("meeting.request", colleague.email)
    other.dedup_key += ":x"
    assert build_itip_message(other, meeting).message()["Message-ID"] != first


def test_significant_update_keeps_uid_and_renders_the_rows_sequence(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    meeting_update(
        actor=organizer,
        meeting=meeting,
        start=datetime(2026, 7, 6, 14, tzinfo=BERLIN),
        end=datetime(2026, 7, 6, 15, tzinfo=BERLIN),
    )
    update = row("meeting.request", colleague.email, sequence=1)

    [event] = events(read(parts(deliver(update))[2]))

    assert (str(event["UID"]), event["SEQUENCE"]) == (meeting.uid, 1)
    assert event.decoded("DTSTART") == datetime(2026, 7, 6, 14, tzinfo=BERLIN)
    assert "Updated invitation" in mail.outbox[-1].subject


def test_older_row_is_superseded_by_a_later_whole_series_message(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    first = row("meeting.request", colleague.email, sequence=0)
    meeting_update(
        actor=organizer,
        meeting=meeting,
        start=datetime(2026, 7, 6, 14, tzinfo=BERLIN),
        end=datetime(2026, 7, 6, 15, tzinfo=BERLIN),
    )
    later = row("meeting.request", colleague.email, sequence=1)

    assert notification_deliver(notification_id=first.pk) == "sent"

    first.refresh_from_db()
    assert mail.outbox == []
    assert first.status == NotificationStatus.SENT
    assert first.payload["superseded_by"] == later.pk
    deliver(later)
    assert len(mail.outbox) == 1


def test_cosmetic_notify_sends_same_sequence_with_later_dtstamp(organizer, colleague, clock):
    meeting = schedule(organizer, colleague.email)
    first = deliver(row("meeting.request", colleague.email))
    clock.shift(3600)
    meeting_update(actor=organizer, meeting=meeting, title="Nouveau titre", notify=True)
    revision = row("meeting.request", colleague.email, dedup_key__contains=":rev")

    [old] = events(read(parts(first)[2]))
    [new] = events(read(parts(deliver(revision))[2]))

    assert (new["SEQUENCE"], str(new["UID"])) == (0, meeting.uid)
    assert new.decoded("DTSTAMP") > old.decoded("DTSTAMP")
    assert str(new["SUMMARY"]) == "Nouveau titre"


# --- CANCEL and single occurrences ---------------------------------------------------------------


def test_meeting_cancel_is_cancel_with_status_and_no_alarm(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    meeting_cancel(actor=organizer, meeting=meeting)

    message = deliver(row("meeting.cancel", colleague.email))

    calendar_part, _att, ics = parts(message)
    assert calendar_part.get_param("method") == "CANCEL"
    calendar = read(ics)
    assert calendar["METHOD"] == "CANCEL"
    [event] = events(calendar)
    assert (str(event["UID"]), event["SEQUENCE"], event["STATUS"]) == (meeting.uid, 1, "CANCELLED")
    assert colleague.email in attendees(event)
    assert list(event.walk("VALARM")) == []
    assert icaljs(ics)["method"] == "CANCEL"


def test_removed_attendee_gets_cancel_naming_them(organizer, colleague):
    meeting = schedule(organizer, colleague.email, EXTERN)
    meeting_update(actor=organizer, meeting=meeting, attendees=[AttendeeSpec(colleague.email)])

    message = deliver(row("meeting.cancel", EXTERN))

    calendar_part, _att, ics = parts(message)
    assert calendar_part.get_param("method") == "CANCEL"
    [event] = events(read(ics))
    assert list(attendees(event)) == [EXTERN]
    # Uninviting some attendees: no STATUS (RFC 5546 §3.2.5), the event goes on for others.
    assert "STATUS" not in event
    assert event["SEQUENCE"] == 0
    assert not Notification.objects.filter(kind="meeting.cancel", recipient=colleague.email)


def test_occurrence_cancel_carries_only_that_occurrence(organizer, colleague):
    meeting = weekly(organizer, colleague.email)
    third = datetime(2026, 3, 16, 9, 30, tzinfo=BERLIN)
    occurrence_cancel(actor=organizer, meeting=meeting, recurrence_id=third)
    notification = row("occurrence.cancel", colleague.email)
    assert notification.recurrence_id == third

    calendar_part, _att, ics = parts(deliver(notification))

    assert calendar_part.get_param("method") == "CANCEL"
    [event] = events(read(ics))
    assert event.decoded("RECURRENCE-ID") == third
    assert (event["STATUS"], event["SEQUENCE"]) == ("CANCELLED", 1)
    assert "RRULE" not in event
    [seen] = icaljs(ics)["events"]
    assert seen["recurrenceId"] == "2026-03-16T08:30:00.000Z"
    assert seen["status"] == "CANCELLED"


def test_occurrence_move_is_request_for_that_occurrence(organizer, colleague):
    meeting = weekly(organizer, colleague.email)
    original = datetime(2026, 3, 30, 9, 30, tzinfo=BERLIN)  # CEST from 29 March
    occurrence_move(
        actor=organizer,
        meeting=meeting,
        recurrence_id=original,
        start=datetime(2026, 3, 31, 14, tzinfo=BERLIN),
        end=datetime(2026, 3, 31, 14, 30, tzinfo=BERLIN),
    )

    calendar_part, _att, ics = parts(deliver(row("occurrence.request", colleague.email)))

    assert calendar_part.get_param("method") == "REQUEST"
    [event] = events(read(ics))
    assert event.decoded("RECURRENCE-ID") == original
    assert event.decoded("DTSTART") == datetime(2026, 3, 31, 14, tzinfo=BERLIN)
    [seen] = icaljs(ics)["events"]
    assert (seen["recurrenceId"], seen["start"]) == (
        "2026-03-30T07:30:00.000Z",
        "2026-03-31T12:00:00.000Z",
    )
    assert "Occurrence moved" in mail.outbox[-1].subject


def test_series_split_requests_new_series_and_shortened_old_one(organizer, colleague):
    meeting = weekly(organizer, colleague.email)
    split_at = datetime(2026, 4, 6, 9, 30, tzinfo=BERLIN)
    continuation = series_split(
        actor=organizer, meeting=meeting, recurrence_id=split_at, title="Nouvelle série"
    )

    old = row("meeting.request", colleague.email, meeting=meeting, sequence=1)
    new = row("meeting.request", colleague.email, meeting=continuation)

    [old_event] = events(read(parts(deliver(old))[2]))
    [new_event] = events(read(parts(deliver(new))[2]))
    assert str(old_event["UID"]) == meeting.uid
    assert old_event["RRULE"]["UNTIL"][0] < split_at
    assert str(new_event["UID"]) == continuation.uid != meeting.uid
    assert new_event.decoded("DTSTART") == split_at
    assert str(new_event["SUMMARY"]) == "Nouvelle série"


# --- Language, RSVP, failures --------------------------------------------------------------------


def test_french_recipient_gets_french_subject_and_own_time_zone(organizer, french):
    schedule(organizer, french.email)

    deliver(row("meeting.request", french.email))

    sent = mail.outbox[-1]
    assert sent.subject.startswith("[Visio Broker] Invitation : Comité; budget, suite — ")
    assert "lundi 6 juillet 2026, 04:00–05:00 (America/New_York)" in sent.subject
    assert "vous invite" in sent.body


def test_english_outside_recipient_reads_meeting_zone(organizer):
    schedule(organizer, EXTERN)

    deliver(row("meeting.request", EXTERN))

    assert "Monday 6 July 2026, 10:00–11:00 (Europe/Berlin)" in mail.outbox[-1].subject


def test_invitation_carries_rsvp_links(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    rsvp = pytest.importorskip("meetings.rsvp")
    attendee = meeting.attendees.get(email=colleague.email)

    deliver(row("meeting.request", colleague.email))

    sent = mail.outbox[-1]
    html = sent.alternatives[0].content
    for partstat in ("accepted", "tentative", "declined"):
        link = rsvp.rsvp_url(attendee, partstat)
        assert link in sent.body
        assert link.replace("&", "&amp;") in str(html)


class RefusingBackend(BaseEmailBackend):
    """An SMTP server answering RCPT TO with ``code`` (as smtplib reports it)."""

    code = 550

    def send_messages(self, email_messages):
        for message in email_messages:
            if self.code >= 500:
                raise smtplib.SMTPRecipientsRefused(
                    {message.to[0]: (self.code, b"5.1.1 no such user")}
                )
            raise smtplib.SMTPDataError(self.code, b"4.3.0 try again later")
        return 0


class TempRefusingBackend(RefusingBackend):
    code = 451


def test_refused_recipient_fails_the_row_and_shows_on_meeting_page(organizer, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    meeting = schedule(organizer, EXTERN)
    notification = row("meeting.request", EXTERN)

    assert notification_deliver(notification_id=notification.pk) == "failed"

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert "no such user" in notification.last_error
    page = signed_in_client(organizer).get(reverse("meeting_detail", kwargs={"pk": meeting.pk}))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Delivery problems" in body and EXTERN in body and "no such user" in body


def test_delivery_problems_hidden_from_attendees(organizer, colleague, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    meeting = schedule(organizer, colleague.email, EXTERN)
    notification_deliver(notification_id=row("meeting.request", EXTERN).pk)

    body = (
        signed_in_client(colleague)
        .get(reverse("meeting_detail", kwargs={"pk": meeting.pk}))
        .content.decode()
    )

    assert "Delivery problems" not in body


def test_temporary_smtp_error_keeps_the_row_pending(organizer, settings):
    settings.EMAIL_BACKEND = f"{__name__}.TempRefusingBackend"
    schedule(organizer, EXTERN)
    notification = row("meeting.request", EXTERN)

    with pytest.raises(TemporaryDeliveryError):
        notification_deliver(notification_id=notification.pk)

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert mail.outbox == []


def test_failover_notice_is_a_short_plain_email_to_the_organizer(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    from visio_broker.outbox import notification_enqueue

    notice = notification_enqueue(
        kind="room.failover_failed",
        recipient=organizer.email,
        meeting=meeting,
        sequence=meeting.sequence,
        payload={
            "meeting_uid": meeting.uid,
            "title": meeting.title,
            "backend": "lk-paris",
            "reason": "no_capacity",
            "message": "No room is free.",
            "window_start": datetime(2026, 7, 6, 8, tzinfo=UTC).isoformat(),
        },
    )

    message = deliver(notice)

    assert message.get_content_type() == "text/plain"
    sent = mail.outbox[-1]
    assert sent.to == [organizer.email]
    assert meeting.title in sent.subject
    assert "lk-paris" in sent.body and "No room is free." in sent.body
    assert "10:00 (Europe/Paris)" in sent.body
