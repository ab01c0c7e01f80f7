"""AttendeeList: PostgreSQL keeps each meeting's attendee JSON array through every kind of write
to meetings_attendee, also under concurrent transactions (the meetings list reads it; its page
is held equal to MeetingSerializer in tests/api/test_api_representation.py)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib import import_module
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction

from agencies.models import Role
from meetings.models import Attendee, AttendeeList, AttendeeRole, Meeting
from meetings.serializers import AttendeeSerializer
from meetings.services import AttendeeSpec, attendee_respond, meeting_schedule, meeting_update

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
START = datetime(2026, 3, 10, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))
GUEST = "guest@example.org"


@pytest.fixture(autouse=True)
def _postgresql_only(db):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL keeps the lists; the list is written in Python elsewhere")


def _stored(meeting: Meeting) -> list[dict[str, str]] | None:
    found = AttendeeList.objects.filter(meeting=meeting).values_list("json", flat=True).first()
    return None if found is None else json.loads(found)


def _expected(meeting: Meeting) -> list[dict[str, str]]:
    return [dict(AttendeeSerializer(attendee).data) for attendee in meeting.attendees.all()]


def _book(organizer, title: str = "Weekly sync", guests: tuple[str, ...] = (GUEST,)) -> Meeting:
    with time_machine.travel(NOW, tick=False):
        return meeting_schedule(
            actor=organizer,
            title=title,
            start=START,
            end=START + timedelta(hours=1),
            timezone="Europe/Paris",
            attendees=[AttendeeSpec(email, display_name='Ann "A" \\ é') for email in guests],
        )


def test_the_list_follows_every_write(agency, make_member):
    organizer = make_member(agency, Role.ORGANIZER)
    meeting = _book(organizer)
    other = _book(organizer, "Other", guests=("other@example.org",))
    assert _stored(meeting) == _expected(meeting)
    assert [person["email"] for person in _stored(meeting)] == [organizer.email, GUEST]
    raw = AttendeeList.objects.get(meeting=meeting).json
    assert raw == "[" + ",".join(meeting.attendees.values_list("api_json", flat=True)) + "]"

    with time_machine.travel(NOW, tick=False):
        attendee_respond(
            actor="rsvp-link", attendee=meeting.attendees.get(email=GUEST), partstat="accepted"
        )
        meeting_update(
            actor=organizer,
            meeting=meeting,
            attendees=[AttendeeSpec(GUEST, role=AttendeeRole.OPTIONAL), AttendeeSpec("n@x.org")],
        )
    assert _stored(meeting) == _expected(meeting)
    guest = next(person for person in _stored(meeting) if person["email"] == GUEST)
    assert (guest["status"], guest["role"]) == ("accepted", "optional")

    # Writes that bypass the models: raw updates, bulk inserts, moves between meetings, deletes.
    Attendee.objects.filter(email=GUEST).update(display_name="Renamed")
    Attendee.objects.bulk_create(
        [Attendee(meeting=meeting, email=f"bulk{n}@example.org") for n in range(3)]
        + [Attendee(meeting=other, email="bulk@example.org")]
    )
    assert _stored(meeting) == _expected(meeting)
    assert _stored(other) == _expected(other)
    Attendee.objects.filter(email="bulk0@example.org").update(meeting=other)
    assert _stored(meeting) == _expected(meeting)
    assert _stored(other) == _expected(other)
    assert "bulk0@example.org" in [person["email"] for person in _stored(other)]
    Attendee.objects.filter(meeting=meeting).delete()
    assert _stored(meeting) == [] == _expected(meeting)
    assert _stored(other) == _expected(other)

    # Deleting the meeting deletes its list, whichever goes first.
    other_pk = other.pk
    other.delete()
    assert not AttendeeList.objects.filter(meeting_id=other_pk).exists()


def test_the_migration_fills_the_lists_of_existing_attendees(agency, make_member):
    organizer = make_member(agency, Role.ORGANIZER)
    meeting = _book(organizer, guests=(GUEST, "second@example.org"))
    AttendeeList.objects.all().delete()
    backfill = import_module("meetings.migrations.0008_attendee_list").CREATE[-1]
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    assert _stored(meeting) == _expected(meeting)
    assert len(_stored(meeting) or []) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", ["insert", "delete"])
def test_concurrent_transactions_on_one_meeting_lose_no_change(agency, make_member, write):
    """The second writer waits for the first to commit, then reads the attendees anew: without
    the lock it would write the list from a snapshot taken before the first commit."""
    organizer = make_member(agency, Role.ORGANIZER)
    meeting = _book(organizer, guests=(GUEST, "first@example.org", "second@example.org"))
    if write == "insert":
        Attendee.objects.filter(email__in=["first@example.org", "second@example.org"]).delete()

    def change(email: str) -> None:
        if write == "insert":
            Attendee.objects.create(meeting_id=meeting.pk, email=email)
        else:
            Attendee.objects.filter(meeting_id=meeting.pk, email=email).delete()

    first_changed, first_may_commit = threading.Event(), threading.Event()
    committed_at: dict[str, float] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                change("first@example.org")
                first_changed.set()
                first_may_commit.wait(10)
                time.sleep(0.3)  # the second writer is blocked by now
            committed_at["first"] = time.monotonic()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    def second() -> None:
        try:
            first_changed.wait(10)
            with transaction.atomic():
                first_may_commit.set()
                change("second@example.org")
            committed_at["second"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    assert committed_at["first"] <= committed_at["second"]
    emails = [person["email"] for person in _stored(meeting) or []]
    if write == "insert":
        assert emails == [organizer.email, GUEST, "first@example.org", "second@example.org"]
    else:
        assert emails == [organizer.email, GUEST]
    assert _stored(meeting) == _expected(meeting)
