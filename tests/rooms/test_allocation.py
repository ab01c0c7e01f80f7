"""Room allocation: sovereignty, preference order, recurring windows, capacity, failover, ad-hoc."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from agencies.models import AuditEvent, Role, User
from meetings.models import Meeting, OccurrenceException
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
from rooms.models import BackendKind, HealthState, MediaBackend, ReservedWindow, RoomReservation
from rooms.selectors import backend_load, backends_allowed_for, peak_load
from rooms.services import (
    adhoc_room_open,
    backend_failover,
    reservations_extend_horizon,
    room_release,
    room_reserve,
)
from rooms.tasks import extend_reservation_horizon
from visio_broker.celery import app
from visio_broker.errors import BackendUnavailable, Forbidden, NoCapacity
from visio_broker.models import Notification, notification_key

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)  # Wednesday 10:00 in Paris
DAY = datetime(2026, 4, 7, tzinfo=PARIS)  # a Tuesday: one-off meetings happen that day


def at(hour: int, minute: int = 0, *, day: datetime = DAY) -> datetime:
    return day.replace(hour=hour, minute=minute)


def monday(n: int, hour: int = 10) -> datetime:
    """The nth Monday (1-based) from 6 April 2026, in Paris."""
    return datetime(2026, 4, 6, hour, tzinfo=PARIS) + timedelta(weeks=n - 1)


@pytest.fixture(autouse=True)
def _test_backends():
    """These tests set up exactly the backends they need (overrides tests/conftest.py)."""


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orla@test.gouv.example")


def backend(
    name: str,
    *,
    agency=None,
    country: str = "FR",
    capacity: int = 100,
    weight: int = 100,
    enabled: bool = True,
    health: str = HealthState.HEALTHY,
) -> MediaBackend:
    return MediaBackend.objects.create(
        name=name,
        kind=BackendKind.LIVEKIT,
        base_url="https://livekit.example.org",
        api_key="key",
        secret_env="TEST_LIVEKIT_SECRET",
        country=country,
        agency=agency,
        capacity=capacity,
        weight=weight,
        enabled=enabled,
        health_state=health,
    )


def book(actor, start: datetime, end: datetime, *, people: int = 1, **extra) -> Meeting:
    """A meeting of ``people`` (the organizer plus guests), reserved by meeting_schedule."""
    return meeting_schedule(
        actor=actor,
        title="Sync",
        start=start,
        end=end,
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(f"guest{n}@example.org") for n in range(1, people)],
        **extra,
    )


def weekly(actor, *, people: int = 1, **recurrence) -> Meeting:
    """Mondays 10:00-11:00 Paris from 6 April 2026."""
    return book(
        actor,
        monday(1),
        monday(1, 11),
        people=people,
        recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",), **recurrence),
    )


def room_of(meeting: Meeting) -> RoomReservation:
    return RoomReservation.objects.select_related("backend").get(meeting=meeting)


def spans(reservation: RoomReservation) -> list[tuple[datetime, datetime]]:
    return [(w.start, w.end) for w in reservation.windows.order_by("start")]


# --- Sovereignty --------------------------------------------------------------------------------


def test_backends_allowed_for_follows_countries_and_ownership(agency, other_agency):
    own_fr = backend("own-fr", agency=agency)
    own_de = backend("own-de", agency=agency, country="DE")
    shared_fr = backend("shared-fr")
    shared_de = backend("shared-de", country="DE")
    backend("theirs-fr", agency=other_agency)  # another agency's own: never
    backend("off-fr", agency=agency, enabled=False, health=HealthState.DOWN)

    allowed = set(backends_allowed_for(agency).values_list("name", flat=True))
    assert allowed == {"own-fr", "shared-fr", "off-fr"}

    agency.allowed_backend_countries = ["FR", "DE"]
    assert set(backends_allowed_for(agency)) >= {own_fr, own_de, shared_fr, shared_de}
    assert "theirs-fr" not in set(backends_allowed_for(agency).values_list("name", flat=True))

    agency.allow_shared_backends = False
    names = set(backends_allowed_for(agency).values_list("name", flat=True))
    assert names == {"own-fr", "own-de", "off-fr"}


def test_room_goes_to_a_backend_of_an_allowed_country(agency, organizer):
    backend("shared-fr")
    backend("shared-de", country="DE", weight=1000)
    meeting = book(organizer, at(14), at(15))
    assert room_of(meeting).backend.name == "shared-fr"

    agency.allowed_backend_countries = ["DE"]
    agency.save()
    meeting = book(organizer, at(16), at(17))
    assert room_of(meeting).backend.name == "shared-de"


def test_another_agencys_backend_is_never_used(agency, other_agency, organizer):
    other_agency.country = "FR"
    other_agency.save()
    backend("theirs-fr", agency=other_agency)
    with pytest.raises(BackendUnavailable) as raised:
        book(organizer, at(14), at(15))
    assert raised.value.code == "backend_unavailable"
    assert raised.value.message == (
        "No video backend is configured for your agency; ask your administrator."
    )
    assert not Meeting.objects.exists()
    assert not RoomReservation.objects.exists()


def test_shared_backends_are_skipped_when_the_policy_forbids_them(agency, organizer):
    agency.allow_shared_backends = False
    agency.save()
    backend("own-fr", agency=agency, capacity=2)
    backend("shared-fr", capacity=1000, weight=1000)
    assert room_of(book(organizer, at(9), at(10), people=2)).backend.name == "own-fr"
    with pytest.raises(NoCapacity):
        book(organizer, at(9), at(10), people=1)
    assert Meeting.objects.count() == 1


def test_disabled_and_down_backends_are_not_used(agency, organizer):
    backend("off", enabled=False, weight=1000)
    backend("down", health=HealthState.DOWN, weight=1000)
    backend("degraded", health=HealthState.DEGRADED, weight=1)
    assert room_of(book(organizer, at(9), at(10))).backend.name == "degraded"


def test_all_allowed_backends_down_is_backend_unavailable(agency, organizer):
    backend("down", health=HealthState.DOWN)
    with pytest.raises(BackendUnavailable) as raised:
        book(organizer, at(9), at(10))
    assert "available right now" in raised.value.message
    assert not Meeting.objects.exists()


# --- Preference order ---------------------------------------------------------------------------


def test_own_backend_comes_before_a_heavier_shared_one(agency, organizer):
    backend("shared", weight=1000, capacity=1000)
    backend("own", agency=agency, weight=1, capacity=5)
    assert room_of(book(organizer, at(9), at(10))).backend.name == "own"


def test_higher_weight_comes_first(organizer):
    backend("light", weight=50, capacity=1000)
    backend("heavy", weight=200, capacity=10)
    assert room_of(book(organizer, at(9), at(10))).backend.name == "heavy"


def test_equal_weight_goes_to_the_most_headroom(organizer):
    roomy = backend("roomy", capacity=10)
    backend("small", capacity=8)
    # 5 of roomy's 10 seats are taken at that time: 3 left after this booking, against 6.
    first = book(organizer, at(9), at(10), people=5)
    assert room_of(first).backend == roomy  # 10 - 5 > 8 - 5
    assert room_of(book(organizer, at(9), at(10), people=2)).backend.name == "small"


def test_a_full_preferred_backend_passes_the_room_to_the_next(agency, organizer):
    backend("own", agency=agency, capacity=2)
    backend("shared", capacity=100)
    assert room_of(book(organizer, at(9), at(10), people=3)).backend.name == "shared"


# --- Recurring windows --------------------------------------------------------------------------


def test_weekly_series_holds_one_window_per_occurrence_in_the_horizon(organizer, settings):
    backend("shared")
    endless = weekly(organizer)
    windows = spans(room_of(endless))
    # 180 days from 1 April 2026: every Monday from 6 April to 21 September.
    assert len(windows) == 25
    assert windows[0] == (monday(1), monday(1, 11))
    assert windows[-1] == (monday(25), monday(25, 11))
    assert all(end - start == timedelta(hours=1) for start, end in windows)

    settings.ROOM_RESERVATION_HORIZON_DAYS = 28
    short = book(
        organizer,
        monday(1, 12),
        monday(1, 13),
        recurrence=Recurrence(freq="WEEKLY", weekdays=("MO",)),
    )
    assert spans(room_of(short)) == [(monday(n, 12), monday(n, 13)) for n in (1, 2, 3, 4)]


def test_series_with_a_count_holds_exactly_its_occurrences(organizer):
    backend("shared")
    meeting = weekly(organizer, count=3)
    assert spans(room_of(meeting)) == [(monday(n), monday(n, 11)) for n in (1, 2, 3)]


def test_cancelled_occurrence_frees_its_window(organizer):
    shared = backend("shared", capacity=2)
    series = weekly(organizer, people=2, count=3)
    assert backend_load(shared, monday(2), monday(2, 11)) == 2
    occurrence_cancel(actor=organizer, meeting=series, recurrence_id=monday(2))
    assert spans(room_of(series)) == [(monday(1), monday(1, 11)), (monday(3), monday(3, 11))]
    assert backend_load(shared, monday(2), monday(2, 11)) == 0
    # The freed seats take another meeting at that time.
    assert room_of(book(organizer, monday(2), monday(2, 11), people=2)).backend == shared


def test_moved_occurrence_moves_its_window(organizer):
    backend("shared")
    series = weekly(organizer, count=3)
    room_name = room_of(series).room_name
    occurrence_move(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(2),
        start=monday(2, 15),
        end=monday(2, 16),
    )
    room = room_of(series)
    assert spans(room) == [
        (monday(1), monday(1, 11)),
        (monday(2, 15), monday(2, 16)),
        (monday(3), monday(3, 11)),
    ]
    assert room.room_name == room_name


def test_moving_an_occurrence_into_a_full_slot_is_no_capacity_and_changes_nothing(organizer):
    backend("shared", capacity=3)
    series = weekly(organizer, people=2, count=3)
    book(organizer, monday(2, 15), monday(2, 16), people=2)
    before = spans(room_of(series))
    with pytest.raises(NoCapacity) as raised:
        occurrence_move(
            actor=organizer,
            meeting=series,
            recurrence_id=monday(2),
            start=monday(2, 15),
            end=monday(2, 16),
        )
    assert "2026-04-13 15:00–16:00 (Europe/Paris)" in raised.value.message
    assert spans(room_of(series)) == before
    assert not OccurrenceException.objects.exists()
    series.refresh_from_db()
    assert series.sequence == 0


def test_extending_the_horizon_adds_new_occurrences_and_drops_ended_ones(
    organizer, settings, clock
):
    settings.ROOM_RESERVATION_HORIZON_DAYS = 28
    backend("shared")
    series = weekly(organizer)
    assert len(spans(room_of(series))) == 4
    clock.move_to(NOW + timedelta(weeks=2))  # 15 April: the first two Mondays are over
    result = reservations_extend_horizon()
    assert (result.checked, result.updated, result.short) == (1, 1, [])
    assert spans(room_of(series)) == [(monday(n), monday(n, 11)) for n in (3, 4, 5, 6)]
    assert reservations_extend_horizon().updated == 0


def test_extending_the_horizon_reports_series_that_no_longer_fit(organizer, settings, clock):
    settings.ROOM_RESERVATION_HORIZON_DAYS = 28
    backend("shared", capacity=2)
    series = weekly(organizer, people=2)
    # Week 5 enters the horizon later; another meeting takes its seats first.
    book(organizer, monday(5), monday(5, 11), people=2)
    clock.move_to(NOW + timedelta(weeks=1))
    result = reservations_extend_horizon()
    assert [r.pk for r in result.short] == [room_of(series).pk]
    # The series keeps what it held: week 5 cannot be added, nothing else changes either.
    assert spans(room_of(series)) == [(monday(n), monday(n, 11)) for n in (1, 2, 3, 4)]
    assert AuditEvent.objects.filter(action="room.horizon_short").count() == 1


def test_series_split_trims_the_old_room_and_reserves_the_continuation(organizer):
    backend("shared")
    series = weekly(organizer, people=3, count=6)
    old_name = room_of(series).room_name
    continuation = series_split(
        actor=organizer, meeting=series, recurrence_id=monday(4), title="New sync"
    )
    old, new = room_of(series), room_of(continuation)
    assert spans(old) == [(monday(n), monday(n, 11)) for n in (1, 2, 3)]
    assert spans(new) == [(monday(n), monday(n, 11)) for n in (4, 5, 6)]
    assert old.room_name == old_name and new.room_name != old_name
    assert new.expected_participants == 3


def test_series_split_with_a_new_time_reserves_the_new_time(organizer):
    backend("shared")
    series = weekly(organizer, count=4)
    continuation = series_split(
        actor=organizer,
        meeting=series,
        recurrence_id=monday(3),
        start=monday(3, 14),
        end=monday(3, 15),
    )
    assert spans(room_of(continuation)) == [(monday(n, 14), monday(n, 15)) for n in (3, 4)]
    assert spans(room_of(series)) == [(monday(n), monday(n, 11)) for n in (1, 2)]


# --- Capacity -----------------------------------------------------------------------------------


def test_peak_load_counts_people_present_at_once_not_the_sum():
    t = [at(h) for h in range(8, 13)]
    loads = [(t[1], t[2], 4), (t[2], t[3], 4), (t[1], t[3], 2)]
    assert peak_load(loads, t[0], t[4]) == 6  # back to back: 4 then 4, each with the 2
    assert peak_load(loads, t[0], t[1]) == 0
    assert peak_load([*loads, (t[1], t[2], 1)], t[1], t[4]) == 7


def test_overlapping_windows_count_their_peak(organizer):
    shared = backend("shared", capacity=10)
    book(organizer, at(9), at(10), people=4)
    book(organizer, at(10), at(11), people=4)
    # 9:00-11:00 meets 4 people at any instant, not 8: six more fit exactly.
    long = book(organizer, at(9), at(11), people=6)
    assert room_of(long).backend == shared
    assert backend_load(shared, at(9), at(11)) == 10
    with pytest.raises(NoCapacity):
        book(organizer, at(10, 30), at(10, 45))


def test_no_capacity_names_the_window_in_local_time_and_writes_nothing(organizer):
    backend("shared", capacity=3)
    book(organizer, at(14), at(15), people=3)
    meetings, windows, audits = (
        Meeting.objects.count(),
        ReservedWindow.objects.count(),
        AuditEvent.objects.count(),
    )
    with pytest.raises(NoCapacity) as raised:
        book(organizer, at(14, 30), at(15, 30), people=2)
    error = raised.value
    assert (error.code, error.status) == ("no_capacity", 409)
    assert "2026-04-07 14:30–15:30 (Europe/Paris)" in error.message
    assert "2 participants" in error.message
    assert (error.window_start, error.window_end) == (at(14, 30), at(15, 30))
    assert Meeting.objects.count() == meetings
    assert ReservedWindow.objects.count() == windows
    assert AuditEvent.objects.count() == audits


def test_no_capacity_names_the_first_occurrence_that_does_not_fit(organizer):
    backend("shared", capacity=2)
    book(organizer, monday(3), monday(3, 11), people=2)
    with pytest.raises(NoCapacity) as raised:
        weekly(organizer, people=1, count=5)
    assert "2026-04-20 10:00–11:00 (Europe/Paris)" in raised.value.message
    assert Meeting.objects.count() == 1


def test_a_daily_series_is_checked_in_every_one_of_its_many_windows(organizer):
    backend("shared", capacity=1)
    first = datetime(2026, 4, 2, 10, tzinfo=PARIS)
    late = first + timedelta(days=149)  # the 150th occurrence: far beyond the first 100
    book(organizer, late, late + timedelta(hours=1))
    with pytest.raises(NoCapacity) as raised:
        book(
            organizer,
            first,
            first + timedelta(hours=1),
            recurrence=Recurrence(freq="DAILY"),
        )
    assert "2026-08-29 10:00–11:00 (Europe/Paris)" in raised.value.message


# --- Re-reserving and releasing -----------------------------------------------------------------


def test_time_change_keeps_the_room_name_and_backend(organizer):
    backend("a", weight=200)
    meeting = book(organizer, at(9), at(10))
    before = room_of(meeting)
    backend("b", weight=500)  # now preferred for new rooms, but this one stays where it is
    meeting_update(actor=organizer, meeting=meeting, start=at(11), end=at(12))
    after = room_of(meeting)
    assert (after.pk, after.room_name, after.backend) == (
        before.pk,
        before.room_name,
        before.backend,
    )
    assert spans(after) == [(at(11), at(12))]


def test_time_change_to_a_full_slot_moves_the_room_elsewhere_with_its_name(agency, organizer):
    own = backend("own", agency=agency, capacity=4)
    backend("shared", capacity=100)
    meeting = book(organizer, at(9), at(10), people=2)
    room_name = room_of(meeting).room_name
    book(organizer, at(11), at(12), people=3)  # own: 3 of 4 seats at 11:00
    assert room_of(meeting).backend == own
    meeting_update(actor=organizer, meeting=meeting, start=at(11), end=at(12))
    after = room_of(meeting)
    assert (after.room_name, after.backend.name) == (room_name, "shared")


def test_time_change_that_fits_nowhere_is_refused_and_changes_nothing(organizer):
    backend("shared", capacity=2)
    meeting = book(organizer, at(9), at(10), people=2)
    book(organizer, at(11), at(12), people=2)
    with pytest.raises(NoCapacity):
        meeting_update(actor=organizer, meeting=meeting, start=at(11), end=at(12))
    meeting.refresh_from_db()
    assert (meeting.start, meeting.sequence) == (at(9), 0)
    assert spans(room_of(meeting)) == [(at(9), at(10))]


def test_more_attendees_reserve_more_seats(organizer):
    backend("shared")
    meeting = book(organizer, at(9), at(10), people=2)
    meeting_update(
        actor=organizer,
        meeting=meeting,
        attendees=[AttendeeSpec(f"guest{n}@example.org") for n in range(1, 5)],
    )
    room = room_of(meeting)
    assert room.expected_participants == 5
    assert list(room.windows.values_list("participants", flat=True)) == [5]


def test_a_stated_size_is_kept_until_the_attendees_outnumber_it(organizer):
    backend("shared")
    meeting = book(organizer, at(9), at(10), people=2)
    room_reserve(actor=organizer, meeting=meeting, expected_participants=6)
    meeting_update(
        actor=organizer,
        meeting=meeting,
        attendees=[AttendeeSpec(f"guest{n}@example.org") for n in range(1, 3)],
    )
    assert room_of(meeting).expected_participants == 6
    meeting_update(
        actor=organizer,
        meeting=meeting,
        attendees=[AttendeeSpec(f"guest{n}@example.org") for n in range(1, 9)],
    )
    assert room_of(meeting).expected_participants == 9


def test_room_reserve_by_someone_who_may_not_edit_is_forbidden(agency, organizer, make_member):
    backend("shared")
    meeting = book(organizer, at(9), at(10))
    with pytest.raises(Forbidden):
        room_reserve(actor=make_member(agency, Role.MEMBER), meeting=meeting)


def test_meeting_cancel_releases_the_room(organizer):
    shared = backend("shared", capacity=2)
    meeting = book(organizer, at(9), at(10), people=2)
    meeting_cancel(actor=organizer, meeting=meeting)
    room = room_of(meeting)
    assert room.released_at == NOW
    assert not room.windows.exists()
    assert backend_load(shared, at(9), at(10)) == 0
    book(organizer, at(9), at(10), people=2)


# --- Failover -----------------------------------------------------------------------------------


def test_failover_moves_what_fits_and_tells_organizers_of_the_rest(agency, organizer, clock):
    down = backend("own", agency=agency, capacity=100)
    backend("shared", capacity=5)
    small = book(organizer, at(9), at(10), people=3)
    big = book(organizer, at(11), at(12), people=8)
    today = NOW.astimezone(PARIS)
    past = book(organizer, at(10, 30, day=today), at(11, day=today))
    names = {m.pk: room_of(m).room_name for m in (small, big, past)}
    clock.move_to(NOW + timedelta(days=1))  # the meeting of today is over
    MediaBackend.objects.filter(pk=down.pk).update(health_state=HealthState.DOWN)
    AuditEvent.objects.all().delete()

    result = backend_failover(backend=down)

    assert [r.meeting_id for r in result.moved] == [small.pk]
    assert [r.meeting_id for r in result.stranded] == [big.pk]
    assert room_of(small).backend.name == "shared"
    assert room_of(big).backend == down
    assert room_of(past).backend == down  # ended: nothing to move
    assert {m.pk: room_of(m).room_name for m in (small, big, past)} == names
    assert spans(room_of(small)) == [(at(9), at(10))]

    # The meetings' invitations are outbox rows too (meetings.invitations).
    note = Notification.objects.get(kind="room.failover_failed")
    assert (note.kind, note.recipient, note.meeting_id, note.sequence) == (
        "room.failover_failed",
        organizer.email,
        big.pk,
        big.sequence,
    )
    assert note.dedup_key == notification_key(
        kind="room.failover_failed",
        recipient=organizer.email,
        meeting_id=big.pk,
        sequence=big.sequence,
    )
    assert note.payload["backend"] == "own" and note.payload["reason"] == "no_capacity"
    assert sorted(AuditEvent.objects.values_list("action", "object_id")) == sorted(
        [
            ("room.failed_over", str(room_of(small).pk)),
            ("room.failover_stranded", str(room_of(big).pk)),
        ]
    )

    again = backend_failover(backend=down)
    assert (again.moved, [r.pk for r in again.stranded]) == ([], [room_of(big).pk])
    assert Notification.objects.filter(kind="room.failover_failed").count() == 1


def test_failover_without_any_other_backend_strands_every_room(agency, organizer):
    down = backend("only", agency=agency)
    meeting = book(organizer, at(9), at(10))
    MediaBackend.objects.filter(pk=down.pk).update(health_state=HealthState.DOWN)
    result = backend_failover(backend=down)
    assert (result.moved, [r.meeting_id for r in result.stranded]) == ([], [meeting.pk])
    assert Notification.objects.get().payload["reason"] == "backend_unavailable"


def test_failover_never_crosses_sovereignty(agency, other_agency, organizer):
    down = backend("own", agency=agency)
    backend("theirs", agency=other_agency, country="FR", capacity=1000)
    backend("shared-de", country="DE", capacity=1000)
    book(organizer, at(9), at(10))
    MediaBackend.objects.filter(pk=down.pk).update(health_state=HealthState.DOWN)
    result = backend_failover(backend=down)
    assert (len(result.moved), len(result.stranded)) == (0, 1)


def test_failover_moves_a_series_with_all_its_windows(organizer):
    down = backend("a", weight=500)
    backend("b", weight=1)
    series = weekly(organizer, count=4)
    assert room_of(series).backend == down
    MediaBackend.objects.filter(pk=down.pk).update(health_state=HealthState.DOWN)
    result = backend_failover(backend=down)
    assert len(result.moved) == 1
    room = room_of(series)
    assert room.backend.name == "b"
    assert set(room.windows.values_list("backend__name", flat=True)) == {"b"}
    assert len(spans(room)) == 4


# --- Ad-hoc rooms -------------------------------------------------------------------------------


def test_adhoc_room_opens_now_for_an_organizer(agency, organizer):
    backend("shared", capacity=10)
    room = adhoc_room_open(actor=organizer, title="  Quick call ", expected_participants=3)
    assert (room.title, room.created_by, room.agency, room.meeting) == (
        "Quick call",
        organizer,
        agency,
        None,
    )
    assert spans(room) == [(NOW, NOW + timedelta(hours=1))]
    assert list(room.windows.values_list("participants", flat=True)) == [3]
    assert AuditEvent.objects.filter(action="room.opened", object_id=str(room.pk)).exists()


def test_adhoc_room_follows_capacity_and_sovereignty(agency, other_agency, organizer):
    backend("theirs", agency=other_agency, country="FR")
    backend("shared", capacity=4)
    adhoc_room_open(actor=organizer, title="One", expected_participants=3)
    with pytest.raises(NoCapacity) as raised:
        adhoc_room_open(actor=organizer, title="Two", expected_participants=2)
    assert "2026-04-01 10:00–11:00 (Europe/Paris)" in raised.value.message
    assert RoomReservation.objects.count() == 1


def test_adhoc_room_is_for_organizers_only(agency, make_member):
    backend("shared")
    with pytest.raises(Forbidden) as raised:
        adhoc_room_open(actor=make_member(agency, Role.MEMBER), title="Hi")
    assert raised.value.code == "not_organizer"
    assert not RoomReservation.objects.exists()


@pytest.mark.parametrize(
    ("who", "allowed"), [("creator", True), ("admin", True), ("other_organizer", False)]
)
def test_room_release_of_an_adhoc_room(agency, organizer, make_member, who, allowed):
    shared = backend("shared", capacity=2)
    room = adhoc_room_open(actor=organizer, title="Call", expected_participants=2)
    actor = {
        "creator": organizer,
        "admin": make_member(agency, Role.ADMIN),
        "other_organizer": make_member(agency, Role.ORGANIZER),
    }[who]
    if not allowed:
        with pytest.raises(Forbidden):
            room_release(actor=actor, reservation=room)
        assert backend_load(shared, NOW, NOW + timedelta(hours=1)) == 2
        return
    released = room_release(actor=actor, reservation=room)
    assert released.released_at == NOW
    assert backend_load(shared, NOW, NOW + timedelta(hours=1)) == 0
    assert room_release(actor=actor, reservation=room).released_at == NOW  # already done


def test_adhoc_room_moves_on_failover(organizer):
    down = backend("a", weight=500)
    backend("b", weight=1)
    room = adhoc_room_open(actor=organizer, title="Call")
    MediaBackend.objects.filter(pk=down.pk).update(health_state=HealthState.DOWN)
    result = backend_failover(backend=down)
    assert [r.pk for r in result.moved] == [room.pk]
    room.refresh_from_db()
    assert room.backend.name == "b"
    assert spans(room) == [(NOW, NOW + timedelta(hours=1))]


def test_extend_horizon_task_is_scheduled_and_calls_the_service(organizer, settings, clock):
    entry = settings.CELERY_BEAT_SCHEDULE["rooms.reservations_extend_horizon"]
    app.loader.import_default_modules()
    assert app.tasks[entry["task"]].name == extend_reservation_horizon.name
    settings.ROOM_RESERVATION_HORIZON_DAYS = 14
    backend("shared")
    series = weekly(organizer)
    clock.move_to(NOW + timedelta(weeks=1))
    assert extend_reservation_horizon() == 1
    assert spans(room_of(series)) == [(monday(n), monday(n, 11)) for n in (2, 3)]


# --- Demo data ----------------------------------------------------------------------------------


def test_seed_demo_gives_every_agency_its_own_livekit_and_jitsi_plus_a_shared_one():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "Demo video backends: 7 new" in out.getvalue()
    owned = {
        (b.agency.slug if b.agency else None, b.kind, b.country, b.secret_env)
        for b in MediaBackend.objects.select_related("agency")
    }
    assert owned == {
        (None, "livekit", "FR", "DEMO_LIVEKIT_SECRET"),
        *(
            (slug, kind, country, f"DEMO_{kind.upper()}_SECRET")
            for slug, country in (("fr-numerique", "FR"), ("de-bdv", "DE"), ("nl-bzk", "NL"))
            for kind in ("livekit", "jitsi")
        ),
    }
    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert "Demo video backends: 0 new" in again.getvalue()
    assert MediaBackend.objects.count() == 7
    # A demo organizer books on their agency's own LiveKit.
    daan = User.objects.get(email="organizer@minbzk.overheid.example")
    assert room_of(book(daan, at(9), at(10))).backend.name == "nl-bzk-livekit"
