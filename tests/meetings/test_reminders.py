"""Reminders: planning (horizon, DST, offsets, declines, cancellations, moves) and sending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail

from agencies.models import Role
from meetings.ical import join_url
from meetings.models import Meeting, PartStat, Reminder, ReminderStatus
from meetings.recurrence import Recurrence
from meetings.reminders import reminders_deliver, reminders_plan, reminders_send
from meetings.services import (
    AttendeeSpec,
    attendee_respond,
    meeting_cancel,
    meeting_schedule,
    meeting_update,
    occurrence_cancel,
    occurrence_move,
)
from visio_broker.models import Notification, NotificationStatus
from visio_broker.outbox import notification_deliver

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
# Wednesday 25 March 2026; Paris moves to summer time on Sunday 29 March.
NOW = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)
GUEST = "guest@example.org"


def thursday(n: int, hour: int = 10) -> datetime:
    """The nth Thursday (1-based) from 26 March 2026, at ``hour`` in Paris."""
    return datetime(2026, 3, 26, hour, tzinfo=PARIS) + timedelta(weeks=n - 1)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, reminder_minutes=[15])


@pytest.fixture
def colleague(agency, make_member):
    return make_member(
        agency, Role.MEMBER, email="camille@test.gouv.example", reminder_minutes=[15]
    )


def weekly(organizer, attendees=(), **fields):
    """Thursdays 10:00-11:00 Paris from 26 March 2026."""
    return meeting_schedule(
        actor=organizer,
        title="Weekly sync",
        description="1. Budget\n2. Planning",
        start=thursday(1),
        end=thursday(1, 11),
        timezone="Europe/Paris",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TH",)),
        attendees=[AttendeeSpec(email) for email in attendees],
        **fields,
    )


def one_off(organizer, start, attendees=(), **fields):
    return meeting_schedule(
        actor=organizer,
        title="Budget review",
        description="Figures for Q2",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(email) for email in attendees],
        **fields,
    )


def rows(meeting, **filters):
    return list(
        Reminder.objects.filter(meeting=meeting, **filters).order_by(
            "due_at", "attendee__email", "offset_minutes"
        )
    )


# --- Planning -------------------------------------------------------------------------------


def test_plan_weekly_paris_meeting_keeps_local_due_time_across_dst(
    clock, organizer, settings
) -> None:
    settings.REMINDER_HORIZON_HOURS = 24 * 9  # both sides of the change in one run
    meeting = weekly(organizer)

    reminders_plan()

    due = [row.due_at for row in rows(meeting)]
    assert due == [
        datetime(2026, 3, 26, 8, 45, tzinfo=UTC),  # 09:45 CET
        datetime(2026, 4, 2, 7, 45, tzinfo=UTC),  # 09:45 CEST
    ]
    assert {d.astimezone(PARIS).strftime("%H:%M") for d in due} == {"09:45"}
    assert due[1] - due[0] == timedelta(days=7) - timedelta(hours=1)


def test_plan_recurring_meeting_gets_one_row_per_occurrence_within_horizon_only(
    clock, organizer, colleague
) -> None:
    meeting = weekly(organizer, [colleague.email])

    reminders_plan()
    assert [(r.occurrence_key, r.attendee.email) for r in rows(meeting)] == [
        ("20260326T090000Z", colleague.email),
        ("20260326T090000Z", organizer.email),
    ]

    clock.move_to(datetime(2026, 4, 1, 12, 0, tzinfo=UTC))
    reminders_plan()
    assert sorted({r.occurrence_key for r in rows(meeting)}) == [
        "20260326T090000Z",
        "20260402T080000Z",
    ]


def test_plan_offsets_are_the_attendees_own_plus_the_meeting_level_reminder(
    clock, organizer, colleague
) -> None:
    colleague.reminder_minutes = [5, 60]
    colleague.save()
    organizer.reminder_minutes = []
    organizer.save()
    meeting = one_off(
        organizer,
        datetime(2026, 3, 26, 15, tzinfo=PARIS),
        [colleague.email, GUEST],
        reminder_minutes=1440,
    )

    reminders_plan()

    found = {(r.attendee.email, r.offset_minutes) for r in rows(meeting)}
    assert found == {
        (colleague.email, 5),
        (colleague.email, 60),
        (colleague.email, 1440),
        (GUEST, 15),  # people outside the instance: 15 minutes
        (GUEST, 1440),
        (organizer.email, 1440),  # no reminder of their own, the meeting's one still
    }
    start = datetime(2026, 3, 26, 14, tzinfo=UTC)
    assert {r.due_at for r in rows(meeting, offset_minutes=60)} == {start - timedelta(hours=1)}


def test_meeting_level_reminder_is_changed_through_meeting_update(clock, organizer) -> None:
    meeting = one_off(organizer, datetime(2026, 3, 26, 15, tzinfo=PARIS))

    meeting_update(actor=organizer, meeting=meeting, reminder_minutes=60)
    reminders_plan()

    assert Meeting.objects.get(pk=meeting.pk).reminder_minutes == 60
    assert {r.offset_minutes for r in rows(meeting, status="planned")} == {15, 60}


def test_plan_is_idempotent(clock, organizer, colleague) -> None:
    meeting = weekly(organizer, [colleague.email, GUEST])
    first = reminders_plan()
    before = [(r.pk, r.due_at, r.status) for r in rows(meeting)]

    second = reminders_plan()

    assert first.created == 3
    assert (second.created, second.rescheduled, second.cancelled) == (0, 0, 0)
    assert [(r.pk, r.due_at, r.status) for r in rows(meeting)] == before


def test_plan_gives_declined_attendees_nothing_and_cancels_after_a_decline(
    clock, organizer, colleague, make_member, agency
) -> None:
    declined = make_member(agency, Role.MEMBER, email="dominique@test.gouv.example")
    meeting = one_off(
        organizer, datetime(2026, 3, 26, 15, tzinfo=PARIS), [colleague.email, declined.email]
    )
    attendee_respond(
        actor=declined, attendee=meeting.attendees.get(user=declined), partstat=PartStat.DECLINED
    )
    reminders_plan()
    assert not rows(meeting, attendee__user=declined)
    assert rows(meeting, attendee__user=colleague)[0].status == ReminderStatus.PLANNED

    attendee_respond(
        actor=colleague, attendee=meeting.attendees.get(user=colleague), partstat=PartStat.DECLINED
    )
    reminders_plan()
    assert rows(meeting, attendee__user=colleague)[0].status == ReminderStatus.CANCELLED

    # Changing one's mind brings the reminder back.
    attendee_respond(
        actor=colleague, attendee=meeting.attendees.get(user=colleague), partstat=PartStat.ACCEPTED
    )
    reminders_plan()
    assert rows(meeting, attendee__user=colleague)[0].status == ReminderStatus.PLANNED


def test_plan_cancelled_occurrence_gets_no_rows_and_its_planned_rows_are_cancelled(
    clock, organizer, colleague, settings
) -> None:
    settings.REMINDER_HORIZON_HOURS = 24 * 9
    meeting = weekly(organizer, [colleague.email])
    reminders_plan()

    occurrence_cancel(actor=organizer, meeting=meeting, recurrence_id=thursday(2).astimezone(UTC))
    reminders_plan()

    second = rows(meeting, occurrence_key="20260402T080000Z")
    assert {r.status for r in second} == {ReminderStatus.CANCELLED}
    assert {r.status for r in rows(meeting, occurrence_key="20260326T090000Z")} == {"planned"}


def test_plan_cancelled_meeting_cancels_its_planned_rows(clock, organizer, colleague) -> None:
    meeting = one_off(organizer, datetime(2026, 3, 26, 15, tzinfo=PARIS), [colleague.email])
    reminders_plan()

    meeting_cancel(actor=organizer, meeting=meeting)
    result = reminders_plan()

    assert result.cancelled == 2
    assert {r.status for r in rows(meeting)} == {ReminderStatus.CANCELLED}


def test_plan_moved_occurrence_reschedules_its_rows_under_the_original_key(
    clock, organizer, colleague
) -> None:
    meeting = weekly(organizer, [colleague.email])
    reminders_plan()
    planned = {r.pk for r in rows(meeting)}

    occurrence_move(
        actor=organizer,
        meeting=meeting,
        recurrence_id=thursday(1).astimezone(UTC),
        start=datetime(2026, 3, 26, 14, tzinfo=PARIS),
        end=datetime(2026, 3, 26, 15, tzinfo=PARIS),
    )
    result = reminders_plan()

    moved = rows(meeting)
    assert result.rescheduled == 2
    assert {r.pk for r in moved} == planned
    assert {r.occurrence_key for r in moved} == {"20260326T090000Z"}
    assert {r.due_at for r in moved} == {datetime(2026, 3, 26, 12, 45, tzinfo=UTC)}


# --- Sending --------------------------------------------------------------------------------


def deliver_all(result) -> None:
    reminders_deliver(notification_ids=result.notification_ids)


def test_send_due_reminder_once_even_when_the_sender_runs_twice(
    clock, organizer, colleague
) -> None:
    meeting = one_off(organizer, datetime(2026, 3, 25, 14, tzinfo=PARIS), [colleague.email])
    reminders_plan()
    assert reminders_send().notification_ids == []  # not due yet (12:45Z)

    clock.move_to(datetime(2026, 3, 25, 12, 45, tzinfo=UTC))
    first = reminders_send()
    second = reminders_send()
    deliver_all(first)
    deliver_all(first)  # a redelivered batch task
    for notification in Notification.objects.filter(kind="reminder"):
        assert notification_deliver(notification_id=notification.pk) == "skipped"

    assert len(first.notification_ids) == 2
    assert second.notification_ids == []
    assert Notification.objects.filter(kind="reminder", meeting=meeting).count() == 2
    assert sorted(m.to[0] for m in mail.outbox) == sorted([organizer.email, colleague.email])
    assert {r.status for r in rows(meeting)} == {ReminderStatus.SENT}
    assert all(r.notification_id and r.sent_at for r in rows(meeting))
    assert set(Notification.objects.filter(kind="reminder").values_list("status", flat=True)) == {
        NotificationStatus.SENT
    }


def test_send_reminder_missed_during_an_outage_still_goes_before_the_start(
    clock, organizer
) -> None:
    meeting = one_off(organizer, datetime(2026, 3, 25, 14, tzinfo=PARIS))
    reminders_plan()

    clock.move_to(datetime(2026, 3, 25, 12, 55, tzinfo=UTC))  # due 12:45, beat was down
    deliver_all(reminders_send())

    assert len(mail.outbox) == 1
    assert rows(meeting)[0].status == ReminderStatus.SENT


def test_send_reminder_missed_until_after_the_start_is_dropped(clock, organizer) -> None:
    meeting = one_off(organizer, datetime(2026, 3, 25, 14, tzinfo=PARIS))
    reminders_plan()

    clock.move_to(datetime(2026, 3, 25, 13, 5, tzinfo=UTC))
    result = reminders_send()

    assert (result.notification_ids, result.dropped) == ([], 1)
    assert rows(meeting)[0].status == ReminderStatus.DROPPED
    assert not Notification.objects.filter(kind="reminder").exists()
    assert mail.outbox == []


def test_send_cancels_a_reminder_whose_attendee_declined_since_planning(
    clock, organizer, colleague
) -> None:
    meeting = one_off(organizer, datetime(2026, 3, 25, 14, tzinfo=PARIS), [colleague.email])
    reminders_plan()
    attendee_respond(
        actor=colleague, attendee=meeting.attendees.get(user=colleague), partstat=PartStat.DECLINED
    )

    clock.move_to(datetime(2026, 3, 25, 12, 45, tzinfo=UTC))
    deliver_all(reminders_send())

    assert [m.to for m in mail.outbox] == [[organizer.email]]
    assert rows(meeting, attendee__user=colleague)[0].status == ReminderStatus.CANCELLED


def test_send_follows_an_occurrence_moved_since_planning(clock, organizer) -> None:
    meeting = weekly(organizer)
    reminders_plan()
    occurrence_move(
        actor=organizer,
        meeting=meeting,
        recurrence_id=thursday(1).astimezone(UTC),
        start=datetime(2026, 3, 26, 14, tzinfo=PARIS),
        end=datetime(2026, 3, 26, 15, tzinfo=PARIS),
    )

    clock.move_to(datetime(2026, 3, 26, 8, 45, tzinfo=UTC))  # the old due time
    result = reminders_send()

    assert (result.notification_ids, result.rescheduled) == ([], 1)
    assert rows(meeting)[0].due_at == datetime(2026, 3, 26, 12, 45, tzinfo=UTC)
    assert rows(meeting)[0].status == ReminderStatus.PLANNED


def test_reminder_email_content_in_the_recipients_language_and_zone(
    clock, organizer, colleague
) -> None:
    colleague.language, colleague.timezone = "fr", "America/Montreal"
    colleague.save()
    meeting = one_off(organizer, datetime(2026, 3, 25, 14, tzinfo=PARIS), [colleague.email])
    reminders_plan()
    clock.move_to(datetime(2026, 3, 25, 12, 45, tzinfo=UTC))
    result = reminders_send()
    deliver_all(result)

    message = next(m for m in mail.outbox if m.to == [colleague.email])
    html = message.alternatives[0][0]
    assert message.subject.endswith(
        "Rappel : Budget review, mercredi 25 mars 2026 à 09:00 (America/Montreal)"
    )
    assert "commence dans 15 minutes" in message.body
    assert join_url(meeting) in message.body and join_url(meeting) in html
    assert "Figures for Q2" in message.body and "Figures for Q2" in html
    notification = Notification.objects.get(recipient=colleague.email, kind="reminder")
    assert message.extra_headers["Message-ID"].startswith("<reminder.")
    assert message.extra_headers["Message-ID"] == message_id_of(notification)


def message_id_of(notification):
    from meetings.reminders import reminder_message_id as message_id

    return message_id(notification)


def test_reminder_email_to_an_outside_attendee_uses_the_host_agency_language(
    clock, organizer, agency
) -> None:
    agency.default_language = "fr"
    agency.save()
    one_off(organizer, datetime(2026, 3, 25, 14, tzinfo=PARIS), [GUEST])
    reminders_plan()
    clock.move_to(datetime(2026, 3, 25, 12, 45, tzinfo=UTC))
    deliver_all(reminders_send())

    message = next(m for m in mail.outbox if m.to == [GUEST])
    assert "Rappel" in message.subject
    assert "14:00 (Europe/Paris)" in message.subject


def _due_batch(clock, organizer, colleague) -> list[int]:
    one_off(organizer, datetime(2026, 3, 25, 14, tzinfo=PARIS), [colleague.email, GUEST])
    reminders_plan()
    clock.move_to(datetime(2026, 3, 25, 12, 45, tzinfo=UTC))
    ids = reminders_send().notification_ids
    assert len(ids) == 3
    return ids


def test_deliver_batch_marks_accepted_rows_and_relays_the_rest_after_a_temporary_failure(
    clock, organizer, colleague, monkeypatch
) -> None:
    from meetings import reminders
    from visio_broker.outbox import TemporaryDeliveryError

    ids = _due_batch(clock, organizer, colleague)
    real_send, calls, relayed = reminders.mail_send, [], []

    def flaky(message) -> None:
        calls.append(message)
        if len(calls) == 2:
            raise TemporaryDeliveryError("SMTP 421: busy")
        real_send(message)

    monkeypatch.setattr(reminders, "mail_send", flaky)
    monkeypatch.setattr(reminders, "relay_soon", lambda pk, countdown=0: relayed.append(pk))

    assert reminders_deliver(notification_ids=ids) == {"sent": 1, "relayed": 2}
    found = Notification.objects.in_bulk(ids)
    assert (found[ids[0]].status, found[ids[0]].attempts) == (NotificationStatus.SENT, 1)
    assert (found[ids[1]].status, found[ids[1]].attempts) == (NotificationStatus.PENDING, 1)
    assert "421" in found[ids[1]].last_error
    assert (found[ids[2]].status, found[ids[2]].attempts) == (NotificationStatus.PENDING, 0)
    assert relayed == ids[1:]
    assert len(mail.outbox) == 1


def test_deliver_batch_crashing_mid_chunk_leaves_its_rows_pending_for_the_sweeper(
    clock, organizer, colleague, monkeypatch
) -> None:
    from meetings import reminders

    ids = _due_batch(clock, organizer, colleague)
    real_send, calls = reminders.mail_send, []

    def crash(message) -> None:
        calls.append(message)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        real_send(message)

    monkeypatch.setattr(reminders, "mail_send", crash)
    with pytest.raises(RuntimeError):
        reminders_deliver(notification_ids=ids)
    # Nothing lost: the chunk's marks rolled back; the row SMTP accepted goes again, same ID.
    assert set(Notification.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        NotificationStatus.PENDING
    }
    first_id = mail.outbox[0].extra_headers["Message-ID"]

    monkeypatch.setattr(reminders, "mail_send", real_send)
    assert reminders_deliver(notification_ids=ids) == {"sent": 3}
    assert [m.extra_headers["Message-ID"] for m in mail.outbox].count(first_id) == 2
    assert set(Notification.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        NotificationStatus.SENT
    }


def test_deliver_batch_renders_once_per_language_and_zone(
    clock, organizer, colleague, monkeypatch
) -> None:
    from meetings import reminders

    ids = _due_batch(clock, organizer, colleague)
    real_render, renders = reminders._render, []
    monkeypatch.setattr(reminders, "_render", lambda r: renders.append(r.pk) or real_render(r))

    assert reminders_deliver(notification_ids=ids) == {"sent": 3}
    # Organizer and colleague share language and zone; the guest gets the host agency's.
    assert len(renders) <= 2
    assert len({m.extra_headers["Message-ID"] for m in mail.outbox}) == 3
