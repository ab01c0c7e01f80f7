"""Which outbox rows each meetings service writes for invitations (kinds, recipients,
sequences), that they are written once, and that they are relayed only after commit."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from agencies.models import Role
from meetings.invitations import invitations_scheduled
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
from visio_broker import tasks
from visio_broker.models import Notification, NotificationStatus
from visio_broker.outbox import notification_deliver

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
EXTERN = "extern@example.org"
ITIP = ("meeting.request", "meeting.cancel", "occurrence.request", "occurrence.cancel")


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orla@test.gouv.example")


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="camille@test.gouv.example")


def schedule(organizer, *people: str, **kwargs) -> Meeting:
    fields = {
        "title": "Point",
        "start": datetime(2026, 3, 2, 10, tzinfo=PARIS),
        "end": datetime(2026, 3, 2, 11, tzinfo=PARIS),
        "timezone": "Europe/Paris",
    } | kwargs
    return meeting_schedule(actor=organizer, attendees=[AttendeeSpec(p) for p in people], **fields)


def weekly(organizer, *people: str) -> Meeting:
    return schedule(organizer, *people, recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",)))


def rows(meeting: Meeting | None = None, **filters) -> set[tuple]:
    query = Notification.objects.filter(kind__in=ITIP, **filters)
    if meeting is not None:
        query = query.filter(meeting=meeting)
    return set(query.values_list("kind", "recipient", "sequence", "recurrence_id"))


def test_schedule_invites_everyone_but_the_organizer(organizer, colleague):
    meeting = schedule(organizer, colleague.email, EXTERN)

    assert rows(meeting) == {
        ("meeting.request", colleague.email, 0, None),
        ("meeting.request", EXTERN, 0, None),
    }
    assert Notification.objects.get(recipient=EXTERN).payload == {
        "meeting_id": meeting.pk,
        "reason": "new",
    }


def test_enqueue_again_writes_no_duplicate(organizer, colleague):
    meeting = schedule(organizer, colleague.email)

    invitations_scheduled(meeting)

    assert Notification.objects.filter(kind="meeting.request").count() == 1


def test_significant_update_reinvites_everyone_at_new_sequence(organizer, colleague):
    meeting = schedule(organizer, colleague.email, EXTERN)

    meeting_update(
        actor=organizer,
        meeting=meeting,
        start=datetime(2026, 3, 2, 14, tzinfo=PARIS),
        end=datetime(2026, 3, 2, 15, tzinfo=PARIS),
        attendees=[AttendeeSpec(colleague.email), AttendeeSpec("new@example.org")],
    )

    assert rows(meeting, sequence=1) == {
        ("meeting.request", colleague.email, 1, None),
        ("meeting.request", "new@example.org", 1, None),
        ("meeting.cancel", EXTERN, 1, None),
    }


def test_cosmetic_edit_enqueues_nothing(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    before = Notification.objects.count()

    meeting_update(actor=organizer, meeting=meeting, title="Autre titre", description="x")

    assert Notification.objects.count() == before
    assert Meeting.objects.get(pk=meeting.pk).sequence == 0


def test_cosmetic_edit_with_notify_sends_same_sequence_as_new_rows(organizer, colleague, clock):
    meeting = schedule(organizer, colleague.email)

    meeting_update(actor=organizer, meeting=meeting, title="Autre titre", notify=True)
    clock.shift(60)
    meeting_update(actor=organizer, meeting=meeting, title="Encore", notify=True)

    requests = Notification.objects.filter(kind="meeting.request", recipient=colleague.email)
    assert [r.sequence for r in requests] == [0, 0, 0]
    assert len({r.dedup_key for r in requests}) == 3


def test_added_and_removed_without_significant_change(organizer, colleague):
    meeting = schedule(organizer, colleague.email, EXTERN)

    meeting_update(
        actor=organizer,
        meeting=meeting,
        attendees=[AttendeeSpec(colleague.email), AttendeeSpec("new@example.org")],
    )

    assert rows(meeting) == {
        ("meeting.request", colleague.email, 0, None),
        ("meeting.request", EXTERN, 0, None),
        ("meeting.request", "new@example.org", 0, None),
        ("meeting.cancel", EXTERN, 0, None),
    }
    assert Notification.objects.filter(recipient=colleague.email).count() == 1


def test_readded_attendee_is_invited_again(organizer, colleague):
    meeting = schedule(organizer, colleague.email, EXTERN)
    meeting_update(actor=organizer, meeting=meeting, attendees=[AttendeeSpec(colleague.email)])

    meeting_update(
        actor=organizer,
        meeting=meeting,
        attendees=[AttendeeSpec(colleague.email), AttendeeSpec(EXTERN)],
    )

    kinds = list(
        Notification.objects.filter(recipient=EXTERN).order_by("pk").values_list("kind", flat=True)
    )
    assert kinds == ["meeting.request", "meeting.cancel", "meeting.request"]


def test_request_to_someone_removed_since_is_not_sent(organizer):
    meeting = schedule(organizer, EXTERN, "other@example.org")
    invite = Notification.objects.get(kind="meeting.request", recipient=EXTERN)
    meeting_update(actor=organizer, meeting=meeting, attendees=[AttendeeSpec("other@example.org")])

    assert notification_deliver(notification_id=invite.pk) == "sent"

    invite.refresh_from_db()
    assert mail.outbox == []
    assert invite.payload["superseded_by"] == (
        Notification.objects.get(kind="meeting.cancel", recipient=EXTERN).pk
    )


def test_meeting_cancel_cancels_for_everyone(organizer, colleague):
    meeting = schedule(organizer, colleague.email, EXTERN)

    meeting_cancel(actor=organizer, meeting=meeting)
    meeting_cancel(actor=organizer, meeting=meeting)  # already done: nothing more

    assert rows(meeting, kind="meeting.cancel") == {
        ("meeting.cancel", colleague.email, 1, None),
        ("meeting.cancel", EXTERN, 1, None),
    }


def test_occurrence_cancel_and_move_name_the_occurrence(organizer, colleague):
    meeting = weekly(organizer, colleague.email)
    second = datetime(2026, 3, 9, 10, tzinfo=PARIS)
    third = datetime(2026, 3, 16, 10, tzinfo=PARIS)

    occurrence_cancel(actor=organizer, meeting=meeting, recurrence_id=second)
    occurrence_move(
        actor=organizer,
        meeting=meeting,
        recurrence_id=third,
        start=datetime(2026, 3, 17, 10, tzinfo=PARIS),
        end=datetime(2026, 3, 17, 11, tzinfo=PARIS),
    )

    assert rows(meeting, kind__startswith="occurrence.") == {
        ("occurrence.cancel", colleague.email, 1, second),
        ("occurrence.request", colleague.email, 2, third),
    }


def test_series_split_requests_both_series(organizer, colleague):
    meeting = weekly(organizer, colleague.email)

    continuation = series_split(
        actor=organizer,
        meeting=meeting,
        recurrence_id=datetime(2026, 3, 16, 10, tzinfo=PARIS),
        title="Suite",
    )

    assert rows(meeting, sequence=1) == {("meeting.request", colleague.email, 1, None)}
    assert rows(continuation) == {("meeting.request", colleague.email, 0, None)}


def test_rows_are_relayed_only_after_commit(
    organizer, colleague, django_capture_on_commit_callbacks, monkeypatch
):
    relayed: list[int] = []

    def run_now(args, **_options):
        # Stands in for the broker and worker: the outbox part under test is the commit hook.
        relayed.append(args[0])
        notification_deliver(notification_id=args[0])

    monkeypatch.setattr(tasks.outbox_relay, "apply_async", run_now)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        schedule(organizer, colleague.email, EXTERN)
    assert relayed == [] and len(callbacks) == 2

    for callback in callbacks:
        callback()

    assert sorted(m.to[0] for m in mail.outbox) == sorted([colleague.email, EXTERN])
    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.SENT}


def test_edit_form_notify_checkbox_sends_update(organizer, colleague):
    meeting = schedule(organizer, colleague.email)
    client = signed_in_client(organizer)
    form = client.get(reverse("meeting_edit", kwargs={"pk": meeting.pk}))
    assert 'name="notify"' in form.content.decode()
    data = {
        "title": "Renamed",
        "description": "",
        "date": "2026-03-02",
        "start_time": "10:00",
        "end_time": "11:00",
        "duration": "60",
        "timezone": "Europe/Paris",
        "repeat": "",
        "ends": "never",
        "interval": "1",
        "attendees": colleague.email,
        "access_level": "invite",
        "lobby_enabled": "on",
    }

    quiet = client.post(reverse("meeting_edit", kwargs={"pk": meeting.pk}), data)
    assert quiet.status_code == 302, quiet.content.decode()[:2000]
    assert Notification.objects.filter(kind="meeting.request").count() == 1

    loud = client.post(
        reverse("meeting_edit", kwargs={"pk": meeting.pk}),
        data | {"title": "Renamed again", "notify": "on"},
    )
    assert loud.status_code == 302
    assert Notification.objects.filter(kind="meeting.request").count() == 2
