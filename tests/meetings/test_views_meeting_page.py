"""The meeting page: who sees it, answering, and the organizer's cancellations."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from django.test import Client
from django.urls import reverse

from agencies.models import Role
from meetings.models import MeetingStatus, OccurrenceException, PartStat
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, meeting_schedule
from tests.conftest import signed_in_client

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SECOND_TUESDAY = "20260310T090000Z"


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orga@test.gouv.example")


@pytest.fixture
def attendee(agency, make_member):
    return make_member(agency, Role.MEMBER, email="att@test.gouv.example", display_name="Alice")


@pytest.fixture
def series(organizer, attendee):
    """Weekly on Tuesdays 10:00 Paris from 3 March 2026, with one internal and one outside guest."""
    return meeting_schedule(
        actor=organizer,
        title="Weekly sync",
        start=datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
        timezone="Europe/Paris",
        recurrence=Recurrence(freq="WEEKLY", weekdays=("TU",), count=10),
        attendees=[
            AttendeeSpec(attendee.email),
            AttendeeSpec("guest@example.org", role="optional"),
        ],
    )


@pytest.fixture
def client_as(agency, other_agency, make_member, organizer, attendee):
    def build(who: str) -> Client:
        if who == "anonymous":
            return Client()
        if who == "organizer":
            return signed_in_client(organizer)
        if who == "attendee":
            return signed_in_client(attendee)
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


# --- Who sees it --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("anonymous", 302),
        ("organizer", 200),
        ("attendee", 200),
        ("admin", 200),
        ("colleague", 404),
        ("other_agency", 404),
        ("other_admin", 404),
    ],
)
def test_meeting_page_visibility(client_as, series, who, status):
    for url in (
        reverse("meeting_detail", args=[series.pk]),
        reverse("occurrence_detail", args=[series.pk, SECOND_TUESDAY]),
    ):
        response = client_as(who).get(url)
        assert response.status_code == status, url
        if status == 302:
            assert response["Location"].startswith(reverse("account_login"))


def test_meeting_page_shows_details_answers_and_a_place_for_join(client_as, series):
    response = client_as("attendee").get(reverse("meeting_detail", args=[series.pk]))
    content = response.content.decode()
    assert "Weekly sync" in content
    assert "Every week on Tuesday, 10 times" in content
    assert "Tuesday 3 March 2026, 10:00" in content
    assert "guest@example.org" in content
    assert dict((v, n) for v, _label, n in response.context["answer_counts"]) == {
        "needs-action": 2,
        "accepted": 1,
        "tentative": 0,
        "declined": 0,
    }
    # The room broker's join section: a day before, it says when the room opens, no button yet.
    assert '<section id="join"' in content
    assert 'data-testid="join-opens"' in content
    assert 'data-testid="join-button"' not in content
    # Attendees answer, they do not organize.
    assert 'name="partstat" value="declined"' in content
    assert reverse("meeting_edit", args=[series.pk]) not in content


def test_occurrence_page_of_the_organizer_offers_the_occurrence_actions(client_as, series):
    response = client_as("organizer").get(
        reverse("occurrence_detail", args=[series.pk, SECOND_TUESDAY])
    )
    content = response.content.decode()
    assert "Tuesday 10 March 2026, 10:00" in content
    for name in ("occurrence_move", "occurrence_edit_following", "occurrence_cancel"):
        assert reverse(name, args=[series.pk, SECOND_TUESDAY]) in content
    assert reverse("meeting_cancel", args=[series.pk]) in content
    assert 'name="partstat"' not in content  # the chair does not answer


def test_a_time_that_is_not_an_occurrence_is_404(client_as, series):
    response = client_as("organizer").get(
        reverse("occurrence_detail", args=[series.pk, "20260311T090000Z"])
    )
    assert response.status_code == 404
    bad_date = client_as("organizer").get(f"/meetings/{series.pk}/occurrences/20261340T090000Z/")
    assert bad_date.status_code == 404


def test_times_are_shown_in_the_users_zone_with_the_meetings_own(
    series, agency, make_member, organizer
):
    helsinki = make_member(agency, Role.MEMBER, timezone="Europe/Helsinki")
    series.attendees.create(user=helsinki, email=helsinki.email)
    content = signed_in_client(helsinki).get(reverse("meeting_detail", args=[series.pk]))
    text = content.content.decode()
    assert "Tuesday 3 March 2026, 11:00" in text
    assert "10:00–11:00" in text and "(Europe/Paris)" in text


# --- Answering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("partstat", [PartStat.ACCEPTED, PartStat.TENTATIVE, PartStat.DECLINED])
def test_attendee_answers_with_the_buttons(client_as, series, attendee, partstat):
    url = reverse("occurrence_respond", args=[series.pk, SECOND_TUESDAY])
    response = client_as("attendee").post(url, {"partstat": partstat})
    assert response.status_code == 302
    assert response["Location"] == reverse("occurrence_detail", args=[series.pk, SECOND_TUESDAY])
    assert series.attendees.get(user=attendee).partstat == partstat


def test_invalid_answer_is_400_and_changes_nothing(client_as, series, attendee):
    response = client_as("attendee").post(
        reverse("meeting_respond", args=[series.pk]), {"partstat": "needs-action"}
    )
    assert response.status_code == 400
    assert "Answer accepted, tentative or declined." in response.content.decode()
    assert series.attendees.get(user=attendee).partstat == PartStat.NEEDS_ACTION


def test_answering_is_for_attendees_only(client_as, series):
    url = reverse("meeting_respond", args=[series.pk])
    assert client_as("admin").post(url, {"partstat": "accepted"}).status_code == 403
    assert client_as("other_agency").post(url, {"partstat": "accepted"}).status_code == 404
    assert client_as("attendee").get(url).status_code == 405


# --- Cancelling ---------------------------------------------------------------------------------


def test_organizer_cancels_one_occurrence_after_confirming(client_as, series):
    client = client_as("organizer")
    url = reverse("occurrence_cancel", args=[series.pk, SECOND_TUESDAY])
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Yes, cancel this occurrence" in confirm.content.decode()
    assert not OccurrenceException.objects.exists()

    response = client.post(url)
    assert response.status_code == 302
    exception = OccurrenceException.objects.get()
    assert exception.recurrence_id == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert exception.cancelled
    page = client.get(response["Location"])
    assert "This occurrence is cancelled." in page.content.decode()
    series.refresh_from_db()
    assert series.status == MeetingStatus.SCHEDULED


def test_organizer_cancels_the_meeting(client_as, series):
    client = client_as("organizer")
    url = reverse("meeting_cancel", args=[series.pk])
    assert client.get(url).status_code == 200
    response = client.post(url)
    assert response.status_code == 302
    series.refresh_from_db()
    assert series.status == MeetingStatus.CANCELLED
    page = client.get(reverse("meeting_detail", args=[series.pk])).content.decode()
    assert "This meeting is cancelled." in page
    assert reverse("meeting_edit", args=[series.pk]) not in page


@pytest.mark.parametrize(("who", "status"), [("attendee", 403), ("other_agency", 404)])
def test_cancelling_is_for_organizers(client_as, series, who, status):
    client = client_as(who)
    assert client.post(reverse("meeting_cancel", args=[series.pk])).status_code == status
    assert (
        client.post(reverse("occurrence_cancel", args=[series.pk, SECOND_TUESDAY])).status_code
        == status
    )
    series.refresh_from_db()
    assert series.status == MeetingStatus.SCHEDULED
    assert not OccurrenceException.objects.exists()


def test_agency_admin_may_cancel_a_meeting_of_the_agency(client_as, series):
    response = client_as("admin").post(reverse("meeting_cancel", args=[series.pk]))
    assert response.status_code == 302
    series.refresh_from_db()
    assert series.status == MeetingStatus.CANCELLED


def test_platform_admin_pages_list_and_show_meetings(series, db):
    from agencies.models import User

    operator = User.objects.create_superuser("root@example.org", "unused-password-1")
    Authenticator.objects.create(
        user=operator, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
    )
    client = signed_in_client(operator)
    listing = client.get("/admin/meetings/meeting/", {"status__exact": "scheduled"})
    assert listing.status_code == 200
    assert "Weekly sync" in listing.content.decode()
    detail = client.get(f"/admin/meetings/meeting/{series.pk}/change/")
    assert detail.status_code == 200
    content = detail.content.decode()
    assert "guest@example.org" in content  # the attendee inline
    assert series.uid in content and 'name="uid"' not in content  # read-only
