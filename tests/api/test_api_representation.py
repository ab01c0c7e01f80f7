"""The fast meeting representation of the API equals MeetingSerializer, its documented schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.request import Request

from agencies.models import Role
from meetings.api.changes import ChangesPageSerializer, changes_page_representation
from meetings.changes import changes_page
from meetings.models import AttendeeRole, Meeting
from meetings.recurrence import Recurrence
from meetings.selectors import meetings_visible_to_agency
from meetings.serializers import (
    MeetingSerializer,
    meeting_representation,
    meeting_representations,
    meeting_representations_of_rows,
    meeting_row_key,
    meeting_rows,
    meetings_for_api,
    meetings_for_representation,
)
from meetings.services import AttendeeSpec, meeting_cancel, meeting_schedule
from rooms.models import RoomReservation

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER)


@pytest.fixture
def varied(agency, organizer, make_member):
    """A one-off with external attendees, a series with co-organizers, a cancelled meeting and
    one whose room was released."""
    colleague = make_member(agency, Role.MEMBER)
    deputy = make_member(agency, Role.ORGANIZER)
    second = make_member(agency, Role.ORGANIZER)
    start = datetime(2027, 3, 29, 10, tzinfo=PARIS)

    def book(title: str, **fields):
        return meeting_schedule(
            actor=organizer,
            title=title,
            start=start,
            end=start + timedelta(hours=1),
            **{"timezone": "Europe/Paris", **fields},
        )

    one_off = book(
        "One-off",
        attendees=[
            AttendeeSpec("zoe@partner.example.org", "Zoé", AttendeeRole.OPTIONAL),
            AttendeeSpec("adam@partner.example.org"),
            AttendeeSpec(colleague.email, "", AttendeeRole.CHAIR),
        ],
        reminder_minutes=15,
    )
    series = book(
        "Series",
        recurrence=Recurrence.parse("FREQ=WEEKLY;BYDAY=MO;COUNT=10"),
        co_organizers=[second, deputy],
        timezone="America/New_York",
        description="Agenda\nin the folder",
    )
    cancelled = book("Cancelled", attendees=[AttendeeSpec(colleague.email)])
    meeting_cancel(actor=organizer, meeting=cancelled)
    no_room = book("No room", all_day=True)
    RoomReservation.objects.filter(meeting=no_room).delete()
    return [one_off, series, cancelled, no_room]


def _request(key):
    request = Request(RequestFactory().get("/api/v1/meetings/"))
    request._authenticator = None
    request._user, request._auth = None, key
    return request


@pytest.mark.parametrize(
    "scopes",
    [
        ("meetings:read", "meetings:write", "join:issue"),
        ("meetings:read",),
        ("join:issue",),
    ],
)
def test_api_representation_equals_meeting_serializer(agency, make_api_key, varied, scopes):
    key, _raw = make_api_key(agency, scopes)
    ids = [meeting.pk for meeting in varied]
    sorted_by_pk = sorted(varied, key=lambda meeting: meeting.pk)
    documented = MeetingSerializer(
        meetings_for_api(Meeting.objects.filter(pk__in=ids)).order_by("pk"),
        many=True,
        context={"request": _request(key)},
    ).data
    fast = meeting_representations(
        list(meetings_for_representation(Meeting.objects.filter(pk__in=ids)).order_by("pk")), key
    )
    rows = list(meeting_rows(Meeting.objects.filter(pk__in=ids).order_by("pk")))
    assert fast == [dict(item) for item in documented]
    assert meeting_representations_of_rows(rows, key) == fast
    assert [meeting_row_key(row) for row in rows] == [(m.start, m.pk) for m in sorted_by_pk]
    assert any(item["co_organizers"] for item in fast)
    assert any(item["room"] is None for item in fast)
    assert any(item["recurrence"] for item in fast)


def test_api_representation_of_a_full_row_equals_meeting_serializer(agency, make_api_key, varied):
    key, _raw = make_api_key(agency)
    for meeting in Meeting.objects.filter(pk__in=[m.pk for m in varied]):
        documented = MeetingSerializer(meeting, context={"request": _request(key)}).data
        assert meeting_representation(meeting, key) == dict(documented)


def test_api_representation_follows_the_active_time_zone(agency, make_api_key, varied):
    """DRF writes created_at / updated_at in the active zone; so does the fast path."""
    key, _raw = make_api_key(agency)
    with timezone.override("Asia/Kolkata"):
        documented = MeetingSerializer(
            meetings_for_api(Meeting.objects.filter(pk=varied[0].pk)).get(),
            context={"request": _request(key)},
        ).data
        fast = meeting_representation(varied[0], key)
    assert fast == dict(documented)
    assert fast["created_at"].endswith("+05:30")


def test_api_representation_without_meetings_reads_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert meeting_representations([], None) == []


def test_api_representation_of_changes_equals_changes_page_serializer(agency, make_api_key, varied):
    key, _raw = make_api_key(agency)
    documented_page = changes_page(
        agency=agency,
        cursor=None,
        limit=10,
        meetings=meetings_for_api(meetings_visible_to_agency(agency=agency)),
    )
    fast_page = changes_page(
        agency=agency,
        cursor=None,
        limit=10,
        meetings=meetings_for_representation(meetings_visible_to_agency(agency=agency)),
    )
    documented = ChangesPageSerializer(documented_page, context={"request": _request(key)}).data
    fast = changes_page_representation(fast_page, key)
    assert len(fast["changes"]) == len(varied)
    assert fast["changes"] == [
        {**change, "meeting": dict(change["meeting"])} for change in documented["changes"]
    ]
    assert {k: v for k, v in fast.items() if k != "changes"} == {
        k: v for k, v in documented.items() if k != "changes"
    }
