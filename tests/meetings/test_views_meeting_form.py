"""The booking form: who may open it, what a submission books, and how bad input is answered."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.test import Client
from django.urls import reverse

from agencies.models import Role
from meetings.models import AttendeeRole, Meeting, OccurrenceException
from meetings.services import AttendeeSpec, meeting_schedule
from tests.conftest import signed_in_client

PARIS = ZoneInfo("Europe/Paris")
# Monday 2 March 2026, 09:00 in Paris.
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
EXTERNAL = "partner@example.org"


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orga@test.gouv.example", display_name="Olga")


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="colleague@test.gouv.example")


@pytest.fixture
def foreigner(other_agency, make_member):
    return make_member(other_agency, Role.MEMBER, email="kollege@test.bund.example")


def form_data(**overrides) -> dict[str, object]:
    """A valid submission: Tuesday 3 March 2026, 10:00–11:00 Paris, not repeating."""
    data: dict[str, object] = {
        "title": "Budget review",
        "description": "Q2 figures",
        "date": "2026-03-03",
        "start_time": "10:00",
        "end_time": "11:00",
        "duration": "",
        "timezone": "Europe/Paris",
        "repeat": "none",
        "interval": "1",
        "monthly_mode": "day",
        "ends": "never",
        "attendees": "",
        "optional_attendees": "",
        "co_organizers": "",
        "access_level": "invite",
        "lobby_enabled": "on",
    }
    data.update(overrides)
    return data


def _error_of(response, field: str) -> str:
    errors = response.context["form"].errors.get(field)
    assert errors, f"no error on {field}: {response.context['form'].errors}"
    return " ".join(errors)


# --- Who may open it ----------------------------------------------------------------------------


def test_new_meeting_form_sends_anonymous_to_sign_in(db):
    response = Client().get(reverse("meeting_new"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_new_meeting_form_refused_to_members(agency, make_member):
    client = signed_in_client(make_member(agency, Role.MEMBER))
    assert client.get(reverse("meeting_new")).status_code == 403
    assert client.post(reverse("meeting_new"), form_data()).status_code == 403
    assert not Meeting.objects.exists()


def test_new_meeting_form_open_to_organizers_with_their_time_zone(agency, make_member):
    user = make_member(agency, Role.ORGANIZER, timezone="Europe/Helsinki")
    response = signed_in_client(user).get(reverse("meeting_new"))
    assert response.status_code == 200
    form = response.context["form"]
    assert form["timezone"].value() == "Europe/Helsinki"
    content = response.content.decode()
    # The recurrence builder and the weekdays are fieldsets with a legend.
    assert '<fieldset class="group" id="recurrence">' in content
    assert "<legend>On these days</legend>" in content


def test_new_meeting_form_open_to_agency_admins(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    Authenticator.objects.create(
        user=admin, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
    )
    assert signed_in_client(admin).get(reverse("meeting_new")).status_code == 200


# --- Booking ------------------------------------------------------------------------------------


def test_organizer_books_a_meeting_with_attendees(organizer, colleague, foreigner, agency):
    client = signed_in_client(organizer)
    response = client.post(
        reverse("meeting_new"),
        form_data(
            attendees=f"{colleague.email}\n{foreigner.email.upper()}",
            optional_attendees=f"Partner <{EXTERNAL}>; {colleague.email}",
            co_organizers="",
            lobby_enabled="",
            access_level="agency",
        ),
    )
    meeting = Meeting.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("meeting_detail", args=[meeting.pk])
    assert meeting.title == "Budget review"
    assert meeting.start == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert meeting.end == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    assert meeting.timezone == "Europe/Paris"
    assert meeting.organizer == organizer
    assert meeting.host_agency == agency
    assert meeting.access_level == "agency"
    assert meeting.lobby_enabled is False
    assert meeting.rrule == ""
    attendees = {a.email: (a.role, a.user_id) for a in meeting.attendees.all()}
    assert attendees == {
        organizer.email: (AttendeeRole.CHAIR, organizer.pk),
        colleague.email: (AttendeeRole.REQUIRED, colleague.pk),
        foreigner.email: (AttendeeRole.REQUIRED, foreigner.pk),
        EXTERNAL: (AttendeeRole.OPTIONAL, None),
    }
    assert meeting.attendees.get(email=EXTERNAL).display_name == "Partner"


def test_co_organizers_must_be_people_of_this_service(organizer, colleague, agency, make_member):
    other_organizer = make_member(agency, Role.ORGANIZER, email="second@test.gouv.example")
    client = signed_in_client(organizer)
    response = client.post(
        reverse("meeting_new"), form_data(co_organizers=f"{other_organizer.email}\n{EXTERNAL}")
    )
    assert response.status_code == 400
    assert "partner@example.org is not a person on this service" in _error_of(
        response, "co_organizers"
    )
    assert not Meeting.objects.exists()

    client.post(reverse("meeting_new"), form_data(co_organizers=other_organizer.email))
    meeting = Meeting.objects.get()
    assert list(meeting.co_organizers.all()) == [other_organizer]
    assert meeting.attendees.filter(email=other_organizer.email).exists()


@pytest.mark.parametrize(
    ("fields", "rrule", "summary"),
    [
        (
            {
                "repeat": "WEEKLY",
                "interval": "2",
                "weekdays": ["TU", "TH"],
                "ends": "count",
                "count": "10",
            },
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;COUNT=10",
            "Every 2 weeks on Tuesday and Thursday, 10 times",
        ),
        (
            {"repeat": "WEEKLY"},
            "FREQ=WEEKLY;BYDAY=TU",
            "Every week on Tuesday",
        ),
        (
            {"repeat": "DAILY", "interval": "3", "ends": "until", "until": "2026-03-31"},
            "FREQ=DAILY;INTERVAL=3;UNTIL=20260331T215959Z",
            "Every 3 days, until 2026-03-31",
        ),
        (
            {"repeat": "MONTHLY", "monthly_mode": "nth", "nth": "1", "nth_weekday": "TU"},
            "FREQ=MONTHLY;BYDAY=1TU",
            "Every month on the first Tuesday",
        ),
        (
            {
                "repeat": "MONTHLY",
                "monthly_mode": "day",
                "month_day": "3",
                "ends": "count",
                "count": "6",
            },
            "FREQ=MONTHLY;BYMONTHDAY=3;COUNT=6",
            "Every month on day 3, 6 times",
        ),
        (
            {
                "repeat": "YEARLY",
                "monthly_mode": "nth",
                "nth": "-1",
                "nth_weekday": "TU",
                "month": "3",
            },
            "FREQ=YEARLY;BYDAY=-1TU;BYMONTH=3",
            "Every year on the last Tuesday of March",
        ),
    ],
)
def test_recurrence_builder_books_the_series_it_summarizes(organizer, fields, rrule, summary):
    client = signed_in_client(organizer)
    preview = client.get(reverse("meeting_recurrence_summary"), form_data(**fields))
    assert preview.status_code == 200
    assert summary in preview.content.decode()

    response = client.post(reverse("meeting_new"), form_data(**fields))
    assert response.status_code == 302
    assert Meeting.objects.get().rrule == rrule


def test_recurrence_summary_reports_what_cannot_repeat(organizer):
    response = signed_in_client(organizer).get(
        reverse("meeting_recurrence_summary"),
        form_data(repeat="WEEKLY", ends="count", count="1000"),
    )
    assert response.status_code == 400
    assert "less than or equal to 999" in response.content.decode()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"end_time": "09:30"}, "end_time", "The meeting must end after it starts."),
        ({"end_time": ""}, "end_time", "Give an end time or a duration."),
        ({"date": "2026-02-27"}, "date", "The meeting cannot start in the past."),
        ({"date": "2026-13-45"}, "date", "Enter a valid date."),
        ({"title": ""}, "title", "This field is required."),
        ({"timezone": "Mars/Olympus"}, "timezone", "Select a valid choice."),
        (
            {"attendees": "colleague@test.gouv.example\nnot-an-address"},
            "attendees",
            "not-an-address is not a valid email address.",
        ),
        (
            {"optional_attendees": "a@@b, c@"},
            "optional_attendees",
            "These are not valid email addresses: a@@b, c@.",
        ),
        (
            {"repeat": "YEARLY", "month": "2", "month_day": "30"},
            "repeat",
            "This recurrence has no occurrence after the start.",
        ),
        (
            {"repeat": "DAILY", "ends": "until", "until": "2026-03-01"},
            "until",
            "The series cannot end before its first day.",
        ),
        ({"repeat": "DAILY", "ends": "count", "count": ""}, "count", "Say after how many"),
        ({"repeat": "WEEKLY", "interval": "0"}, "interval", "greater than or equal to 1"),
        ({"repeat": "HOURLY"}, "repeat", "Select a valid choice."),
    ],
)
def test_invalid_submission_is_400_with_the_message_on_its_field(
    organizer, overrides, field, message
):
    data = form_data(**{"attendees": "keep-me@example.org", **overrides})
    response = signed_in_client(organizer).post(reverse("meeting_new"), data)
    assert response.status_code == 400
    assert message in _error_of(response, field)
    assert not Meeting.objects.exists()
    content = response.content.decode()
    # The message is tied to its field, and nothing typed is lost.
    assert 'aria-invalid="true"' in content
    assert f'id="id_{field}_error"' in content
    assert "keep-me@example.org" in content or field == "attendees"
    assert response.context["form"]["title"].value() == data["title"]


def test_duration_sets_the_end(organizer):
    response = signed_in_client(organizer).post(
        reverse("meeting_new"), form_data(end_time="", duration="90")
    )
    assert response.status_code == 302
    meeting = Meeting.objects.get()
    assert meeting.end == datetime(2026, 3, 3, 10, 30, tzinfo=UTC)


def test_all_day_meeting_spans_the_local_day(organizer):
    signed_in_client(organizer).post(
        reverse("meeting_new"), form_data(all_day="on", start_time="", end_time="")
    )
    meeting = Meeting.objects.get()
    assert meeting.all_day
    assert meeting.start == datetime(2026, 3, 3, 0, 0, tzinfo=PARIS)
    assert meeting.end == datetime(2026, 3, 4, 0, 0, tzinfo=PARIS)


# --- Editing ------------------------------------------------------------------------------------


def _book(organizer, **kwargs) -> Meeting:
    defaults = {
        "actor": organizer,
        "title": "Weekly sync",
        "start": datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
        "end": datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
        "timezone": "Europe/Paris",
    }
    return meeting_schedule(**{**defaults, **kwargs})


def test_edit_form_is_prefilled_and_saves(organizer, colleague):
    from meetings.recurrence import Recurrence

    meeting = _book(
        organizer,
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=8),
        attendees=[AttendeeSpec(colleague.email), AttendeeSpec(EXTERNAL, role="optional")],
    )
    client = signed_in_client(organizer)
    response = client.get(reverse("meeting_edit", args=[meeting.pk]))
    assert response.status_code == 200
    form = response.context["form"]
    assert form["date"].value().isoformat() == "2026-03-03"
    assert form["repeat"].value() == "WEEKLY"
    assert form["count"].value() == 8
    assert form["attendees"].value() == colleague.email
    assert form["optional_attendees"].value() == EXTERNAL

    data = form_data(
        title="Weekly sync (new name)",
        repeat="WEEKLY",
        weekdays=["TU"],
        ends="count",
        count="8",
        attendees=colleague.email,
        optional_attendees=EXTERNAL,
    )
    response = client.post(reverse("meeting_edit", args=[meeting.pk]), data)
    assert response.status_code == 302
    meeting.refresh_from_db()
    assert meeting.title == "Weekly sync (new name)"
    # A cosmetic change: the series and the attendees' answers are untouched.
    assert meeting.rrule == "FREQ=WEEKLY;BYDAY=TU;COUNT=8"
    assert meeting.sequence == 0


def test_edit_refused_to_attendees_and_hidden_from_others(organizer, colleague, foreigner):
    meeting = _book(organizer, attendees=[AttendeeSpec(colleague.email)])
    url = reverse("meeting_edit", args=[meeting.pk])
    assert signed_in_client(colleague).get(url).status_code == 403
    assert signed_in_client(colleague).post(url, form_data(title="Hijack")).status_code == 403
    assert signed_in_client(foreigner).get(url).status_code == 404
    assert Meeting.objects.get().title == "Weekly sync"


def test_edit_this_and_following_splits_the_series(organizer, colleague):
    from meetings.recurrence import Recurrence

    meeting = _book(
        organizer,
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=6),
        attendees=[AttendeeSpec(colleague.email)],
    )
    key = "20260317T090000Z"  # the third Tuesday, 10:00 Paris
    client = signed_in_client(organizer)
    url = reverse("occurrence_edit_following", args=[meeting.pk, key])
    response = client.get(url)
    assert response.status_code == 200
    form = response.context["form"]
    assert form["date"].value().isoformat() == "2026-03-17"
    assert form["count"].value() == 4  # what is left of the series from there

    response = client.post(
        url,
        form_data(
            title="Weekly sync",
            date="2026-03-17",
            start_time="14:00",
            end_time="15:00",
            repeat="WEEKLY",
            weekdays=["TU"],
            ends="count",
            count="4",
            attendees=colleague.email,
        ),
    )
    assert response.status_code == 302
    continuation = Meeting.objects.exclude(pk=meeting.pk).get()
    assert response["Location"] == reverse("meeting_detail", args=[continuation.pk])
    assert continuation.split_from == meeting
    assert continuation.start == datetime(2026, 3, 17, 14, 0, tzinfo=PARIS)
    assert continuation.rrule == "FREQ=WEEKLY;BYDAY=TU;COUNT=4"
    meeting.refresh_from_db()
    assert "UNTIL=" in meeting.rrule


def test_move_one_occurrence(organizer):
    from meetings.recurrence import Recurrence

    meeting = _book(organizer, recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",)))
    url = reverse("occurrence_move", args=[meeting.pk, "20260310T090000Z"])
    client = signed_in_client(organizer)
    assert client.get(url).status_code == 200

    bad = client.post(url, {"date": "2026-03-11", "start_time": "15:00", "end_time": "14:00"})
    assert bad.status_code == 400
    assert "The meeting must end after it starts." in _error_of(bad, "end_time")
    assert not OccurrenceException.objects.exists()

    response = client.post(url, {"date": "2026-03-11", "start_time": "14:00", "end_time": "15:00"})
    assert response.status_code == 302
    exception = OccurrenceException.objects.get()
    assert exception.recurrence_id == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert exception.start == datetime(2026, 3, 11, 14, 0, tzinfo=PARIS)
    assert not exception.cancelled


def test_occurrence_pages_of_a_one_off_meeting_do_not_exist(organizer):
    meeting = _book(organizer)
    client = signed_in_client(organizer)
    for name in ("occurrence_move", "occurrence_edit_following"):
        assert client.get(reverse(name, args=[meeting.pk, "20260303T090000Z"])).status_code == 404


# --- The htmx helpers ---------------------------------------------------------------------------


def test_people_search_finds_active_people_of_every_agency(
    organizer, agency, other_agency, make_member
):
    organizer.display_name = "Anna Orga"
    organizer.save()
    make_member(agency, Role.MEMBER, email="anna.roux@test.gouv.example", display_name="Anna Roux")
    make_member(other_agency, Role.MEMBER, email="anna@test.bund.example", display_name="Anna Beck")
    gone = make_member(agency, Role.MEMBER, email="anna.old@test.gouv.example", display_name="Anna")
    gone.is_active = False
    gone.save()
    for i in range(12):
        make_member(agency, Role.MEMBER, email=f"zed{i}@test.gouv.example", display_name=f"Zed {i}")
    client = signed_in_client(organizer)

    response = client.get(reverse("meeting_people_search"), {"q": "anna"})
    content = response.content.decode()
    assert response.status_code == 200
    assert "anna.roux@test.gouv.example" in content
    assert "anna@test.bund.example" in content
    assert "Bundesamt Test" in content
    assert "anna.old@" not in content
    assert organizer.email not in content  # one does not invite oneself
    assert 'data-add-to="id_attendees"' in content

    many = client.get(reverse("meeting_people_search"), {"q": "zed"})
    assert many.context["people"] and len(many.context["people"]) == 10

    outside = client.get(reverse("meeting_people_search"), {"q": EXTERNAL})
    assert outside.context["typed_email"] == EXTERNAL


@pytest.mark.parametrize(
    "name",
    [
        "meeting_people_search",
        "meeting_recurrence_summary",
        "meeting_availability",
        "meeting_find_a_time",
    ],
)
def test_form_helpers_need_a_signed_in_user(db, name):
    response = Client().get(reverse(name), form_data(q="an"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_availability_shows_busy_free_and_unknown(organizer, colleague, foreigner):
    _book(organizer, title="Clash", attendees=[AttendeeSpec(colleague.email)])
    response = signed_in_client(organizer).get(
        reverse("meeting_availability"),
        form_data(
            start_time="10:30",
            end_time="11:30",
            attendees=f"{colleague.email}\n{foreigner.email}",
            optional_attendees=EXTERNAL,
        ),
    )
    assert response.status_code == 200
    states = {row.email: row.state for row in response.context["rows"]}
    assert states == {
        organizer.email: "busy",
        colleague.email: "busy",
        foreigner.email: "free",
        EXTERNAL: "unknown",
    }
    assert "Clash" in response.content.decode()


def test_availability_ignores_the_meeting_being_edited(organizer, colleague):
    meeting = _book(organizer, attendees=[AttendeeSpec(colleague.email)])
    response = signed_in_client(organizer).get(
        reverse("meeting_availability"),
        form_data(attendees=colleague.email, exclude_meeting=str(meeting.pk)),
    )
    assert {row.state for row in response.context["rows"]} == {"free"}


def test_availability_answers_bad_input_with_400(organizer):
    response = signed_in_client(organizer).get(
        reverse("meeting_availability"), form_data(end_time="09:00")
    )
    assert response.status_code == 400
    assert "The meeting must end after it starts." in response.content.decode()


def test_find_a_time_proposes_free_slots_that_fill_the_form(organizer, colleague):
    # The colleague is busy Tuesday 09:00–12:00 Paris; the form asks for one hour.
    _book(
        organizer,
        title="Morning",
        start=datetime(2026, 3, 3, 9, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 12, 0, tzinfo=PARIS),
        attendees=[AttendeeSpec(colleague.email)],
    )
    response = signed_in_client(organizer).get(
        reverse("meeting_find_a_time"),
        form_data(attendees=colleague.email, search_from="2026-03-03", search_to="2026-03-03"),
    )
    assert response.status_code == 200
    slots = response.context["slots"]
    assert slots[0].start == datetime(2026, 3, 3, 12, 0, tzinfo=PARIS)
    content = response.content.decode()
    assert 'data-date="2026-03-03" data-start="12:00" data-end="13:00"' in content


def test_find_a_time_defaults_to_the_next_ten_working_days(organizer):
    response = signed_in_client(organizer).get(reverse("meeting_find_a_time"), form_data())
    assert response.status_code == 200
    assert response.context["first_day"].isoformat() == "2026-03-02"
    assert response.context["last_day"].isoformat() == "2026-03-13"
    # Now is 09:00 on Monday: the first proposal is right away.
    assert response.context["slots"][0].start == datetime(2026, 3, 2, 9, 0, tzinfo=PARIS)
