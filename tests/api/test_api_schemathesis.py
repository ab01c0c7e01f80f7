"""Schemathesis against the live schema, in process (WSGI): every operation, every check, at
least 100 generated examples each, with a real key of an agency that has meetings.

One deliberate setting: ``positive_data_acceptance`` also accepts 400 and 422 for writes, because
the schema cannot express the business rules a schema-valid body may still break (the organizer
must be a member with the organizer role, a meeting may not start in the past, the window of a
join ticket), and 410 for the delta sync (an unknown cursor is a string like any other, and 410
is how the API says "sync again from scratch"), and 412 for PATCH and DELETE (a well-formed
If-Match that names another version is refused: that is the point of it). Every other check runs
with its defaults.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from meetings.services import AttendeeSpec, meeting_schedule
from tests.conftest import ALL_SCOPES

EXAMPLES = 100
CONFIG = {
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": [
                *("2xx", "400", "401", "403", "404", "409", "410", "412", "422", "429")
            ]
        }
    },
}


@pytest.fixture
def api_schema(api_context):
    # As django.test.Client does: a request must not close the test's database connection
    # (it holds the test transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        # The key as the schema's own security scheme: negative cases that drop or spoil the
        # Authorization header stay negative.
        auth = {"openapi": {"ApiKey": {"bearer": api_context["key"]}}}
        config = SchemathesisConfig.from_dict({**CONFIG, "auth": auth})
        yield schemathesis.openapi.from_wsgi(
            "/api/v1/schema/?format=json", get_wsgi_application(), config=config
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def api_context(agency, make_member, make_api_key, settings):
    settings.API_RATE_LIMIT = "1000000/m"
    organizer = make_member(agency, "organizer")
    attendee = make_member(agency, "member")
    start = (timezone.now() + timedelta(minutes=5)).replace(second=0, microsecond=0)
    meeting = meeting_schedule(
        actor=organizer,
        title="Schemathesis",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(attendee.email)],
        recurrence=None,
    )
    _key, raw = make_api_key(agency, ALL_SCOPES)
    return {"key": raw, "meeting": meeting}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The same examples on every run: CI must not turn red by chance.
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case):
    case.call_and_validate()
