"""The join endpoint's cost (issue 4): its queries are pinned, and its hand-written read of the
meeting, room, backend and the person's ties returns what the ORM would."""

from __future__ import annotations

import secrets

import pytest
import time_machine
from django.db.models import Exists, OuterRef, Subquery, Value
from django.test import Client
from django.urls import reverse

from agencies.models import Membership, User
from meetings.models import Attendee, Meeting
from rooms import selectors
from rooms.models import MediaBackend, RoomReservation
from tests.rooms.join_helpers import *  # noqa: F403  (fixtures)
from tests.rooms.join_helpers import LIVEKIT_MEET, MOMENTS

pytestmark = pytest.mark.django_db

ROLES = ["organizer", "co_organizer", "attendee"]


def browser(people, who: str) -> Client:
    """A signed-in browser that sends the CSRF token as the join page's form does."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(people.user(who))
    client.cookies["csrftoken"] = secrets.token_hex(16)
    return client


def join(client: Client, meeting: Meeting):
    token = client.cookies["csrftoken"].value
    return client.post(reverse("meeting_join", args=[meeting.pk]), HTTP_X_CSRFTOKEN=token)


@pytest.mark.parametrize("who", ROLES)
def test_join_post_reads_in_two_queries(who, people, book, django_assert_num_queries):
    meeting = book()
    with time_machine.travel(MOMENTS["inside"], tick=False):
        client = browser(people, who)
        # The session with its user and their membership, then the meeting with its room,
        # backend and the person's ties.
        with django_assert_num_queries(2):
            response = join(client, meeting)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{LIVEKIT_MEET}/custom?")


def test_join_post_without_the_csrf_token_is_refused(people, book):
    meeting = book()
    with time_machine.travel(MOMENTS["inside"], tick=False):
        client = browser(people, "attendee")
        response = client.post(reverse("meeting_join", args=[meeting.pk]))
    assert response.status_code == 403


def orm_meeting_for_join(pk: int, user) -> Meeting | None:
    """What meeting_for_join read through the ORM before it was written by hand."""
    meetings = Meeting.objects.select_related("reservation__backend")
    if user is not None:
        meetings = meetings.annotate(
            viewer_id=Value(user.pk),
            viewer_co_organizer=Exists(
                Meeting.co_organizers.through.objects.filter(meeting=OuterRef("pk"), user=user.pk)
            ),
            viewer_attendee_role=Subquery(
                Attendee.objects.filter(meeting=OuterRef("pk"), user=user.pk).values("role")[:1]
            ),
            viewer_agency_id=Subquery(
                Membership.objects.filter(user=user.pk).values("agency_id")[:1]
            ),
        )
    return meetings.filter(pk=pk).first()


def values(instance) -> dict:
    """Every field's value; fields a join leaves out are read here, one query each."""
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def left_out(model) -> set[str]:
    return {model._meta.get_field(name).attname for name in selectors._JOIN_LEAVES_OUT[model]}


TIES = ("viewer_id", "viewer_co_organizer", "viewer_attendee_role", "viewer_agency_id")


@pytest.mark.parametrize("who", [*ROLES, "host_member", "other_agency", None])
def test_meeting_for_join_reads_what_the_orm_reads(who, people, book, django_assert_num_queries):
    meeting = book()
    user = people.user(who) if who else None
    expected = orm_meeting_for_join(meeting.pk, user)
    with django_assert_num_queries(1):
        found = selectors.meeting_for_join(pk=meeting.pk, user=user)
        reservation = found.reservation
        backend = reservation.backend
    # The read leaves out what no join uses, and nothing else.
    assert found.get_deferred_fields() == left_out(Meeting)
    assert reservation.get_deferred_fields() == left_out(RoomReservation)
    assert backend.get_deferred_fields() == left_out(MediaBackend)
    assert values(found) == values(expected)
    assert values(reservation) == values(expected.reservation)
    assert values(backend) == values(expected.reservation.backend)
    assert reservation.meeting is found
    assert {tie: getattr(found, tie, None) for tie in TIES} == {
        tie: getattr(expected, tie, None) for tie in TIES
    }
    assert selectors.join_access(meeting=found, user=user) == selectors.join_access(
        meeting=expected, user=user
    )


def test_meeting_for_join_without_a_room_has_no_reservation(people, book):
    meeting = book()
    RoomReservation.objects.filter(meeting=meeting).delete()
    found = selectors.meeting_for_join(pk=meeting.pk, user=people.attendee)
    with pytest.raises(RoomReservation.DoesNotExist):
        found.reservation  # noqa: B018


def test_meeting_for_join_of_an_unknown_meeting_is_none(people):
    assert selectors.meeting_for_join(pk=999_999, user=people.attendee) is None


# --- The API's read: the meeting and the person an address names, in one query ----------------


@pytest.mark.parametrize("who", [*ROLES, "host_member", "other_agency"])
def test_meeting_for_agency_join_reads_the_person_and_what_the_orm_reads(
    who, people, book, django_assert_num_queries
):
    meeting = book()
    user = people.user(who)
    expected = orm_meeting_for_join(meeting.pk, user)
    address = f"  {user.email.upper()} "
    with django_assert_num_queries(1):
        found, person = selectors.meeting_for_agency_join(
            agency=meeting.host_agency, pk=meeting.pk, email=address
        )
        backend = found.reservation.backend
    assert person.get_deferred_fields() == left_out(User)
    assert values(person) == values(user)
    assert values(found) == values(expected)
    assert values(backend) == values(expected.reservation.backend)
    assert {tie: getattr(found, tie) for tie in TIES} == {
        tie: getattr(expected, tie) for tie in TIES
    }
    assert selectors.join_access(meeting=found, user=person) == selectors.join_access(
        meeting=expected, user=user
    )


@pytest.mark.parametrize("address", ["nobody@elsewhere.example", "", None, "inactive"])
def test_meeting_for_agency_join_without_an_active_account_reads_the_meeting_alone(
    address, people, book
):
    meeting = book()
    if address == "inactive":
        people.attendee.is_active = False
        people.attendee.save(update_fields=["is_active"])
        address = people.attendee.email
    found, person = selectors.meeting_for_agency_join(
        agency=meeting.host_agency, pk=meeting.pk, email=address
    )
    assert person is None
    assert found.pk == meeting.pk and found.reservation.backend is not None
    assert not hasattr(found, "viewer_id")
    assert selectors.join_access(meeting=found, user=None) is None  # an invitation-only meeting


def test_meeting_for_agency_join_of_another_agency_or_no_meeting_is_none(
    people, book, other_agency
):
    meeting = book()
    email = people.attendee.email
    assert (
        selectors.meeting_for_agency_join(agency=other_agency, pk=meeting.pk, email=email) is None
    )
    assert (
        selectors.meeting_for_agency_join(agency=meeting.host_agency, pk=999_999, email=email)
        is None
    )
