"""RSVP links: signed, single-purpose answers without signing in, confirmed by a POST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import signing
from django.test import Client

from agencies.models import AuditEvent, Role
from meetings import rsvp
from meetings.models import Attendee, PartStat
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, meeting_cancel, meeting_schedule

PARIS = ZoneInfo("Europe/Paris")
# Monday 2 March 2026, 09:00 in Paris.
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
EXTERNAL = "partner@example.org"


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="orga@test.gouv.example", display_name="Olga")


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="colleague@test.gouv.example", language="fr")


@pytest.fixture
def meeting(organizer, colleague):
    return meeting_schedule(
        actor=organizer,
        title="Budget review",
        start=datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(colleague.email), AttendeeSpec(EXTERNAL, "Pat Partner")],
    )


def _attendee(meeting, email: str) -> Attendee:
    return meeting.attendees.get(email=email)


def _path(url: str) -> str:
    return urlsplit(url).path


def test_rsvp_url_is_absolute_and_opens_without_signing_in(meeting):
    url = rsvp.rsvp_url(_attendee(meeting, EXTERNAL), PartStat.ACCEPTED)

    assert url.startswith("http://testserver/rsvp/")
    assert Client().get(_path(url)).status_code == 200


def test_rsvp_get_asks_for_confirmation_without_answering(meeting):
    attendee = _attendee(meeting, EXTERNAL)

    response = Client().get(_path(rsvp.rsvp_url(attendee, PartStat.ACCEPTED)))

    assert response.status_code == 200
    assert 'Accept "Budget review"?' in response.content.decode()
    assert 'method="post"' in response.content.decode()
    assert response["Referrer-Policy"] == "no-referrer"
    attendee.refresh_from_db()
    assert attendee.partstat == PartStat.NEEDS_ACTION
    assert not AuditEvent.objects.filter(action="attendee.responded").exists()


@pytest.mark.parametrize("partstat", [PartStat.ACCEPTED, PartStat.TENTATIVE, PartStat.DECLINED])
def test_rsvp_post_records_the_answer_and_audits_it(meeting, partstat):
    attendee = _attendee(meeting, EXTERNAL)

    response = Client().post(_path(rsvp.rsvp_url(attendee, partstat)))

    assert response.status_code == 200
    assert b'data-testid="rsvp-done"' in response.content
    attendee.refresh_from_db()
    assert attendee.partstat == partstat
    assert attendee.responded_at == NOW
    event = AuditEvent.objects.get(action="attendee.responded")
    assert event.actor is None
    assert event.actor_label == f"rsvp:{EXTERNAL}"
    assert event.detail == {"attendee": EXTERNAL, "partstat": partstat}


def test_rsvp_page_speaks_the_internal_attendees_language_and_zone(meeting, colleague):
    attendee = _attendee(meeting, colleague.email)

    response = Client().get(_path(rsvp.rsvp_url(attendee, PartStat.DECLINED)))

    body = response.content.decode()
    assert "Refuser « Budget review » ?" in body
    assert "10:00" in body  # Europe/Paris, the colleague's zone
    assert "(Europe/Paris)" in body


def test_rsvp_same_answer_twice_is_recorded_once(meeting):
    attendee = _attendee(meeting, EXTERNAL)
    path = _path(rsvp.rsvp_url(attendee, PartStat.ACCEPTED))

    Client().post(path)
    second = Client().post(path)

    assert second.status_code == 200
    assert AuditEvent.objects.filter(action="attendee.responded").count() == 1


def test_rsvp_tampered_signature_is_404(meeting):
    path = _path(rsvp.rsvp_url(_attendee(meeting, EXTERNAL), PartStat.ACCEPTED))
    tampered = path[:-3] + ("A" if path[-3] != "A" else "B") + path[-2:]

    response = Client().post(tampered)

    assert response.status_code == 404
    assert b'data-testid="rsvp-error"' in response.content
    assert _attendee(meeting, EXTERNAL).partstat == PartStat.NEEDS_ACTION


def test_rsvp_link_cannot_be_turned_into_another_attendees_or_answer(meeting, colleague):
    mine = _attendee(meeting, EXTERNAL)
    other = _attendee(meeting, colleague.email)
    token = rsvp.rsvp_token(mine, PartStat.DECLINED)
    payload = signing.loads(token, salt=rsvp.SALT)
    signature = token.rsplit(":", 1)[1]
    # Same signature on another attendee's id, or on another answer: refused.
    for forged in ({**payload, "a": other.pk}, {**payload, "p": PartStat.ACCEPTED}):
        body = signing.dumps(forged, salt=rsvp.SALT).rsplit(":", 1)[0]
        response = Client().post(f"/rsvp/{body}:{signature}/")
        assert response.status_code == 404
    # A link signed for one attendee, with another's secret fingerprint, answers for nobody.
    stolen = signing.dumps({**payload, "a": other.pk}, salt=rsvp.SALT)
    assert Client().post(f"/rsvp/{stolen}/").status_code == 404

    assert Client().post(f"/rsvp/{token}/").status_code == 200
    mine.refresh_from_db()
    other.refresh_from_db()
    assert (mine.partstat, other.partstat) == (PartStat.DECLINED, PartStat.NEEDS_ACTION)


def test_rsvp_link_of_another_purpose_is_404(meeting):
    other_purpose = signing.dumps(
        {"a": _attendee(meeting, EXTERNAL).pk, "p": "accepted"}, salt="something.else"
    )

    assert Client().get(f"/rsvp/{other_purpose}/").status_code == 404


def test_rsvp_link_expires_a_day_after_the_meeting(meeting):
    attendee = _attendee(meeting, EXTERNAL)
    path = _path(rsvp.rsvp_url(attendee, PartStat.ACCEPTED))
    expiry = meeting.end + timedelta(days=1)

    with time_machine.travel(expiry - timedelta(minutes=1), tick=False):
        assert Client().get(path).status_code == 200
    with time_machine.travel(expiry + timedelta(seconds=1), tick=False):
        response = Client().post(path)

    assert response.status_code == 410
    assert b"expired" in response.content
    attendee.refresh_from_db()
    assert attendee.partstat == PartStat.NEEDS_ACTION


def test_rsvp_link_of_an_endless_series_lasts_400_days(organizer):
    series = meeting_schedule(
        actor=organizer,
        title="Weekly",
        start=datetime(2026, 3, 3, 10, 0, tzinfo=PARIS),
        end=datetime(2026, 3, 3, 11, 0, tzinfo=PARIS),
        timezone="Europe/Paris",
        recurrence=Recurrence.parse("FREQ=WEEKLY;BYDAY=TU"),
        attendees=[AttendeeSpec(EXTERNAL)],
    )
    path = _path(rsvp.rsvp_url(_attendee(series, EXTERNAL), PartStat.TENTATIVE))

    with time_machine.travel(NOW + timedelta(days=399), tick=False):
        assert Client().get(path).status_code == 200
    with time_machine.travel(NOW + timedelta(days=401), tick=False):
        assert Client().get(path).status_code == 410


def test_rsvp_rotated_secret_kills_the_link(meeting):
    attendee = _attendee(meeting, EXTERNAL)
    path = _path(rsvp.rsvp_url(attendee, PartStat.ACCEPTED))
    Attendee.objects.filter(pk=attendee.pk).update(rsvp_secret="rotated-" + "x" * 40)

    response = Client().post(path)

    assert response.status_code == 404
    attendee.refresh_from_db()
    assert attendee.partstat == PartStat.NEEDS_ACTION
    fresh = _path(rsvp.rsvp_url(attendee, PartStat.ACCEPTED))
    assert Client().post(fresh).status_code == 200


def test_rsvp_removed_attendee_link_is_404(meeting):
    attendee = _attendee(meeting, EXTERNAL)
    path = _path(rsvp.rsvp_url(attendee, PartStat.ACCEPTED))
    attendee.delete()

    assert Client().get(path).status_code == 404


def test_rsvp_cancelled_meeting_says_so(meeting, organizer):
    attendee = _attendee(meeting, EXTERNAL)
    path = _path(rsvp.rsvp_url(attendee, PartStat.ACCEPTED))
    meeting_cancel(actor=organizer, meeting=meeting)

    get, post = Client().get(path), Client().post(path)

    assert get.status_code == post.status_code == 410
    assert b"This meeting is cancelled" in post.content
    attendee.refresh_from_db()
    assert attendee.partstat == PartStat.NEEDS_ACTION


def test_rsvp_only_get_and_post(meeting):
    path = _path(rsvp.rsvp_url(_attendee(meeting, EXTERNAL), PartStat.ACCEPTED))

    assert Client().put(path).status_code == 405


def test_rsvp_url_refuses_needs_action(meeting):
    with pytest.raises(ValueError, match="not an RSVP answer"):
        rsvp.rsvp_url(_attendee(meeting, EXTERNAL), PartStat.NEEDS_ACTION)
