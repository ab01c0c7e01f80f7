"""Attendance on the meeting page and as CSV: organizers and host admins only, in their zone."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agencies.models import Role
from meetings.services import AttendeeSpec, meeting_schedule
from rooms.models import Attendance, BackendKind, MediaBackend, RoomReservation
from rooms.services import ProviderEventData, provider_event_record
from tests.conftest import signed_in_client

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
# 09:02 UTC is 10:02 in Paris and 04:02 in New York (3 March: no DST on either side yet).
JOINED = datetime(2026, 3, 3, 9, 2, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        yield


@pytest.fixture
def backend(db, monkeypatch):
    monkeypatch.setenv("VB_TEST_ATTENDANCE_SECRET", "attendance-test-secret-0123456789abcdef")
    return MediaBackend.objects.create(
        name="lk-attendance",
        kind=BackendKind.LIVEKIT,
        base_url="wss://lk-attendance.example.org",
        api_key="APIattendance",
        secret_env="VB_TEST_ATTENDANCE_SECRET",
        country="FR",
        capacity=100,
    )


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orga@test.gouv.example")


@pytest.fixture
def co_organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="co@test.gouv.example")


@pytest.fixture
def alice(agency, make_member):
    return make_member(
        agency, Role.MEMBER, email="alice@test.gouv.example", display_name="Alice Martin"
    )


@pytest.fixture
def meeting(organizer, co_organizer, alice, backend):
    meeting = meeting_schedule(
        actor=organizer,
        title="Budget review",
        start=datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(alice.email)],
        co_organizers=[co_organizer],
    )
    existing = RoomReservation.objects.filter(meeting=meeting).first()
    if existing is not None:
        existing.backend = backend
        existing.save(update_fields=["backend"])
    else:
        RoomReservation.objects.create(
            meeting=meeting, agency=meeting.host_agency, backend=backend, expected_participants=5
        )
    return meeting


def record(meeting, kind: str, at: datetime, **participant) -> None:
    reservation = RoomReservation.objects.get(meeting=meeting)
    provider_event_record(
        backend=reservation.backend,
        data=ProviderEventData(
            event_id=f"EV_{kind}_{participant.get('participant_sid', '')}_{at.timestamp()}",
            event=kind,
            occurred_at=at,
            room_name=reservation.room_name,
            room_sid="RM_1",
            **participant,
        ),
    )


def joined(meeting, sid: str, identity: str, name: str, at: datetime) -> None:
    record(
        meeting,
        "participant_joined",
        at,
        participant_sid=sid,
        participant_identity=identity,
        participant_name=name,
    )


def left(meeting, sid: str, identity: str, at: datetime) -> None:
    record(meeting, "participant_left", at, participant_sid=sid, participant_identity=identity)


@pytest.fixture
def session_data(meeting, alice):
    record(meeting, "room_started", JOINED - timedelta(minutes=2))
    joined(meeting, "PA_a", f"user-{alice.pk}", "Alice Martin", JOINED)
    left(meeting, "PA_a", f"user-{alice.pk}", JOINED + timedelta(minutes=42, seconds=10))
    joined(meeting, "PA_g", "lobby-17", "Gaston (guest)", JOINED + timedelta(minutes=5))
    return meeting


@pytest.fixture
def client_as(agency, other_agency, make_member, organizer, co_organizer, alice):
    def build(who: str) -> Client:
        if who == "anonymous":
            return Client()
        if who == "organizer":
            return signed_in_client(organizer)
        if who == "co_organizer":
            return signed_in_client(co_organizer)
        if who == "attendee":
            return signed_in_client(alice)
        if who in ("admin", "other_admin"):
            user = make_member(agency if who == "admin" else other_agency, Role.ADMIN)
            Authenticator.objects.create(
                user=user, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
            )
            return signed_in_client(user)
        if who == "colleague":
            return signed_in_client(make_member(agency, Role.ORGANIZER))
        return signed_in_client(make_member(other_agency, Role.ORGANIZER))

    return build


# --- The meeting page -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        ("organizer", True),
        ("co_organizer", True),
        ("admin", True),
        ("attendee", False),
    ],
)
def test_meeting_page_attendance_section_only_for_editors(session_data, client_as, who, sees):
    response = client_as(who).get(f"/meetings/{session_data.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert ('data-testid="attendance"' in html) is sees
    assert ("Gaston (guest)" in html) is sees
    assert (f"/meetings/{session_data.pk}/attendance.csv" in html) is sees


def test_meeting_page_attendance_shows_occupancy_and_sessions_in_viewer_zone(
    session_data, organizer
):
    organizer.timezone = "America/New_York"
    organizer.save(update_fields=["timezone"])

    response = signed_in_client(organizer).get(f"/meetings/{session_data.pk}/")

    html = response.content.decode()
    section = html[html.index('data-testid="attendance"') :]
    assert "In the room now: 1 participant" in section
    assert "open since 04:00" in section
    assert section.count('data-testid="attendance-row"') == 2
    rows = section.split('data-testid="attendance-row"')[1:]
    assert "Alice Martin" in rows[0]
    assert "04:02" in rows[0]
    assert "04:44" in rows[0]
    assert "42 min" in rows[0]
    assert "Gaston (guest)" in rows[1]
    assert "still in the room" in rows[1]


def test_meeting_page_attendance_without_reservation_says_so(organizer, alice, backend):
    meeting = meeting_schedule(
        actor=organizer,
        title="No room",
        start=datetime(2026, 3, 3, 14, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 15, 0, tzinfo=PARIS),
        timezone="Europe/Paris",
    )
    RoomReservation.objects.filter(meeting=meeting).delete()

    response = signed_in_client(organizer).get(f"/meetings/{meeting.pk}/")

    assert "No room is reserved for this meeting yet." in response.content.decode()


def test_meeting_page_attendance_after_room_finished_is_empty(session_data, organizer):
    record(session_data, "room_finished", JOINED + timedelta(hours=1))

    response = signed_in_client(organizer).get(f"/meetings/{session_data.pk}/")

    html = response.content.decode()
    assert "The room is empty." in html
    assert "still in the room" not in html


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("organizer", 200),
        ("co_organizer", 200),
        ("admin", 200),
        ("attendee", 403),
        ("colleague", 404),
        ("other_admin", 404),
        ("stranger", 404),
    ],
)
def test_attendance_fragment_role_matrix(session_data, client_as, who, status):
    response = client_as(who).get(f"/meetings/{session_data.pk}/attendance/")

    assert response.status_code == status
    if status == 200:
        assert "Alice Martin" in response.content.decode()
        assert "<html" not in response.content.decode()


# --- CSV export -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("organizer", 200),
        ("co_organizer", 200),
        ("admin", 200),
        ("attendee", 403),
        ("colleague", 404),
        ("other_admin", 404),
        ("stranger", 404),
    ],
)
def test_attendance_csv_role_matrix(session_data, client_as, who, status):
    response = client_as(who).get(f"/meetings/{session_data.pk}/attendance.csv")

    assert response.status_code == status
    assert ("Alice Martin" in response.content.decode()) is (status == 200)


def test_attendance_csv_anonymous_is_sent_to_sign_in(session_data, client_as):
    response = client_as("anonymous").get(f"/meetings/{session_data.pk}/attendance.csv")

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_attendance_csv_of_a_missing_meeting_is_404(session_data, client_as):
    assert client_as("organizer").get("/meetings/999999/attendance.csv").status_code == 404


def _rows(response) -> list[list[str]]:
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def test_attendance_csv_content_in_viewer_zone(session_data, organizer, alice):
    organizer.timezone = "America/New_York"
    organizer.save(update_fields=["timezone"])

    response = signed_in_client(organizer).get(f"/meetings/{session_data.pk}/attendance.csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="attendance-budget-review-{session_data.pk}.csv"'
    )
    assert "no-store" in response["Cache-Control"]
    assert _rows(response) == [
        ["Name", "Email", "Joined", "Left", "Duration", "Time zone"],
        [
            "Alice Martin",
            alice.email,
            "2026-03-03 04:02:05",
            "2026-03-03 04:44:15",
            "0:42:10",
            "America/New_York",
        ],
        ["Gaston (guest)", "", "2026-03-03 04:07:05", "", "", "America/New_York"],
    ]


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+33 1 23 45 67 89", "'+33 1 23 45 67 89"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\tTabbed", "'\tTabbed"),
        ('Zoé, the "chair"', 'Zoé, the "chair"'),
        ("Anne-Marie", "Anne-Marie"),
    ],
)
def test_attendance_csv_neutralises_formulas(meeting, organizer, name, cell):
    joined(meeting, "PA_x", "lobby-9", name, JOINED)

    response = signed_in_client(organizer).get(f"/meetings/{meeting.pk}/attendance.csv")

    assert _rows(response)[1][0] == cell


def test_attendance_csv_reads_in_constant_queries(meeting, organizer, django_assert_num_queries):
    client = signed_in_client(organizer)
    for n in range(2):
        joined(meeting, f"PA_{n}", f"lobby-{n}", f"Guest {n}", JOINED + timedelta(minutes=n))
    client.get(f"/meetings/{meeting.pk}/attendance.csv")  # warm the session and user caches
    with CaptureQueriesContext(connection) as few:
        client.get(f"/meetings/{meeting.pk}/attendance.csv")
    baseline = len(few.captured_queries)
    for n in range(2, 12):
        joined(meeting, f"PA_{n}", f"lobby-{n}", f"Guest {n}", JOINED + timedelta(minutes=n))

    with django_assert_num_queries(baseline):
        response = client.get(f"/meetings/{meeting.pk}/attendance.csv")

    assert len(_rows(response)) == 13
    assert Attendance.objects.count() == 12
