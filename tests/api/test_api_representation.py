"""The fast meeting representation of the API equals MeetingSerializer, its documented schema."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.request import Request

from agencies.models import Role, User
from meetings.api.changes import ChangesPageSerializer, changes_page_representation
from meetings.changes import changes_page
from meetings.models import Attendee, AttendeeRole, Meeting
from meetings.recurrence import Recurrence
from meetings.selectors import meetings_visible_to_agency
from meetings.serializers import (
    MeetingSerializer,
    cursor_decode,
    meeting_json_available,
    meeting_json_rows,
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
from tests.api.conftest import NOW
from tests.conftest import api_client

# The clock and the organizer: tests/api/conftest.py.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

PARIS = ZoneInfo("Europe/Paris")


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


# --- The representation PostgreSQL writes (meeting_json_rows) -------------------------------------

# Everything JSON must escape, and what it need not: quotes, backslashes, newlines and other
# control characters, DEL, the line and paragraph separators, accents, CJK and an emoji.
AWKWARD = 'Say "hi" \\ C:\\path\nnext line\r\ttab \x01\x07\x1f \x7f \u2028\u2029 é 中文 😀'

# A locale's collation would sort them adam, émile, _x, Zed (or so): Python sorts by code point.
CO_ORGANIZERS = (
    "émile@test.gouv.example",
    "adam@test.gouv.example",
    "Zed@test.gouv.example",
    "_x@t.example",
)


@pytest.fixture
def awkward(agency, organizer, make_member):
    """Meetings whose JSON is easy to get wrong: offsets on DST-change days, half hours, local
    mean time with seconds, UTC, microseconds or none, all-day, recurring, cancelled, a released
    room and none, co-organizers whose emails sort differently by code point than by locale, and
    awkward text everywhere."""
    co_organizers = [make_member(agency, Role.ORGANIZER) for _ in range(4)]

    def book(title: str, zone: str, start: datetime, **fields) -> Meeting:
        return meeting_schedule(
            actor=organizer,
            title=title,
            start=start,
            end=start + timedelta(hours=2),
            timezone=zone,
            **fields,
        )

    meetings = {
        # Paris springs forward at 01:00 UTC: starts at +01:00, ends at +02:00.
        "paris_dst": book(
            "DST",
            "Europe/Paris",
            datetime(2027, 3, 28, 0, 30, tzinfo=UTC),
            co_organizers=co_organizers,
            attendees=[
                AttendeeSpec("zoe@partner.example.org", "Zoé 😀", AttendeeRole.OPTIONAL),
                AttendeeSpec("adam@partner.example.org", "", AttendeeRole.CHAIR),
                AttendeeSpec("odd@partner.example.org", "placeholder"),
            ],
            reminder_minutes=15,
        ),
        # St John's springs forward at 02:00 local: -03:30, then -02:30.
        "st_johns_dst": book("NL", "America/St_Johns", datetime(2027, 3, 14, 4, 45, tzinfo=UTC)),
        "kolkata": book(
            "Kolkata",
            "Asia/Kolkata",
            datetime(2027, 4, 2, 3, 4, 5, 123456, tzinfo=UTC),
            recurrence=Recurrence.parse("FREQ=WEEKLY;BYDAY=FR;COUNT=10"),
        ),
        "utc": book("UTC", "UTC", datetime(2027, 4, 3, 8, 0, 0, 10, tzinfo=UTC)),
        # Zero offset in a zone: +00:00 for start and end (only timestamps say Z).
        "london": book("London", "Europe/London", datetime(2027, 3, 20, 9, tzinfo=UTC)),
        "all_day": book(
            "All day", "Europe/Paris", datetime(2027, 5, 1, 8, tzinfo=UTC), all_day=True
        ),
        "cancelled": book("Cancelled", "Europe/Berlin", datetime(2027, 6, 1, 8, tzinfo=UTC)),
        "released": book("Released", "Europe/Paris", datetime(2027, 6, 2, 8, tzinfo=UTC)),
        "no_room": book("No room", "Europe/Paris", datetime(2027, 6, 3, 8, tzinfo=UTC)),
        # Before standard time: offsets with seconds (+00:09:21, -03:30:52).
        "paris_lmt": book("LMT", "Europe/Paris", datetime(2027, 6, 4, 8, tzinfo=UTC)),
        "st_johns_lmt": book("LMT", "America/St_Johns", datetime(2027, 6, 5, 8, tzinfo=UTC)),
    }
    # After booking, which would refuse "émile" as an attendee's address.
    for user, email in zip(co_organizers, CO_ORGANIZERS, strict=True):
        User.objects.filter(pk=user.pk).update(email=email)
    meeting_cancel(actor=organizer, meeting=meetings["cancelled"])
    RoomReservation.objects.filter(meeting=meetings["released"]).update(released_at=NOW)
    RoomReservation.objects.filter(meeting=meetings["no_room"]).delete()
    for key, year in (("paris_lmt", 1890), ("st_johns_lmt", 1900)):
        start = datetime(year, 7, 14, 12, 0, 0, 500000, tzinfo=UTC)
        Meeting.objects.filter(pk=meetings[key].pk).update(
            start=start, end=start + timedelta(hours=1)
        )
    Meeting.objects.filter(pk=meetings["paris_dst"].pk).update(
        title=AWKWARD,
        description=AWKWARD + "\n" + AWKWARD,
        uid=f'quote"back\\slash-{meetings["paris_dst"].pk}@test',
        created_at=datetime(2027, 2, 1, 12, 0, 0, tzinfo=UTC),
        updated_at=datetime(2027, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
    )
    Meeting.objects.filter(pk=meetings["utc"].pk).update(
        created_at=datetime(2027, 2, 1, 12, 0, 0, 1, tzinfo=UTC), title="ends with a backslash \\"
    )
    Attendee.objects.filter(meeting=meetings["paris_dst"], email="odd@partner.example.org").update(
        display_name=AWKWARD, email='"odd\\"quoted"@partner.example.org'
    )
    return meetings


def _serialized(meetings, key) -> list[dict]:
    """MeetingSerializer's output in (start, id) order, as the JSON it renders parses back."""
    ordered = meetings_for_api(meetings).order_by("start", "pk")
    data = MeetingSerializer(ordered, many=True, context={"request": _request(key)}).data
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns", "Europe/London"])
@pytest.mark.parametrize("scopes", [("meetings:read", "meetings:write", "join:issue"), None])
def test_api_representation_in_sql_equals_meeting_serializer(
    agency, make_api_key, awkward, zone, scopes
):
    key = make_api_key(agency, scopes)[0] if scopes else None
    meetings = Meeting.objects.filter(pk__in=[meeting.pk for meeting in awkward.values()])
    with timezone.override(zone):
        assert meeting_json_available("default")
        rows = meeting_json_rows(meetings.order_by("start", "pk"), key)
        documented = _serialized(meetings, key)
    parsed = [json.loads(row.json) for row in rows]

    for one, expected in zip(parsed, documented, strict=True):
        assert one == expected
        assert json.dumps(one) == json.dumps(expected)  # the same keys in the same order
    assert [row.sort_key() for row in rows] == [
        (meeting.start, meeting.pk) for meeting in meetings.order_by("start", "pk")
    ]
    by_id = {item["id"]: item for item in parsed}
    assert by_id[awkward["paris_dst"].pk]["start"] == "2027-03-28T01:30:00+01:00"
    assert by_id[awkward["paris_dst"].pk]["end"] == "2027-03-28T04:30:00+02:00"
    assert by_id[awkward["st_johns_dst"].pk]["end"] == "2027-03-14T04:15:00-02:30"
    assert by_id[awkward["paris_lmt"].pk]["start"] == "1890-07-14T12:09:21.500000+00:09:21"
    assert by_id[awkward["london"].pk]["start"].endswith("+00:00")
    # Code point order: upper case, then "_", then lower case, then accented letters.
    assert by_id[awkward["paris_dst"].pk]["co_organizers"] == [
        "Zed@test.gouv.example",
        "_x@t.example",
        "adam@test.gouv.example",
        "émile@test.gouv.example",
    ]


def test_api_representation_in_sql_of_no_meetings_is_empty(agency, make_api_key):
    assert meeting_json_rows(Meeting.objects.none().order_by("start", "pk"), None) == []


def test_api_meetings_list_pages_equal_meeting_serializer(agency, make_api_key, awkward):
    key, raw = make_api_key(agency, ["meetings:read"])
    client = api_client(raw)
    seen: list[dict] = []
    url, params = "/api/v1/meetings/", {"page_size": "4"}
    while url:
        response = client.get(url, params)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        page = response.json()
        seen += page["results"]
        if page["next"]:
            cursor = page["next"].split("cursor=")[1].split("&")[0]
            last = Meeting.objects.get(pk=page["results"][-1]["id"])
            assert cursor_decode(cursor) == (last.start, last.pk)
        url, params = page["next"], None

    assert seen == _serialized(meetings_visible_to_agency(agency=agency), key)
    assert len(seen) == len(awkward)


def test_api_meetings_list_in_a_zone_postgresql_lacks_is_written_by_python(
    agency, make_api_key, organizer, tmp_path
):
    """A zone Python knows and PostgreSQL's tz database does not (a newer tzdata on the web
    nodes): the page comes from the Python path instead of failing."""
    key, raw = make_api_key(agency, ["meetings:read"])
    zones = tmp_path / "zoneinfo" / "Visio"
    zones.mkdir(parents=True)
    (zones / "Newzone").write_bytes((Path(zoneinfo.TZPATH[0]) / "Europe" / "Paris").read_bytes())
    start = timezone.now() + timedelta(days=3)
    meeting = meeting_schedule(
        actor=organizer,
        title="Elsewhere",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
    )
    zoneinfo.reset_tzpath([str(tmp_path / "zoneinfo"), *zoneinfo.TZPATH])
    try:
        Meeting.objects.filter(pk=meeting.pk).update(timezone="Visio/Newzone")
        response = api_client(raw).get("/api/v1/meetings/")
        assert response.status_code == 200, response.content
        (shown,) = response.json()["results"]
        assert shown["timezone"] == "Visio/Newzone"
        assert shown == _serialized(Meeting.objects.filter(pk=meeting.pk), key)[0]
    finally:
        zoneinfo.reset_tzpath()
