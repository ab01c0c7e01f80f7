"""Authorization matrix of the REST API, generated from one declarative table.

Every endpoint and method × {no key, revoked key, expired key, key without the scope, key of
this agency, key of another agency} × {this agency's object, the other agency's object}: each
cell asserts the status and whether the database changed.

The rule the table encodes: a bad key is 401 before anything else, a missing scope 403, and a
key acts only on its own agency's objects — another agency's object is 404 (or, in a list, simply
absent; in a body that names a person, refused as that endpoint documents).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from agencies.models import ApiKey
from agencies.services import apikey_revoke, webhook_endpoint_create
from meetings.models import Attendee, FeedToken, Meeting, OccurrenceException
from meetings.recurrence import Recurrence
from meetings.services import AttendeeSpec, feed_token_create, meeting_schedule
from tests.conftest import ALL_SCOPES, api_client
from visio_broker.audit import CLI

SIDES = ("own", "other")
KEYS = ("none", "revoked", "expired", "without_scope", "this_agency", "other_agency")
HIDDEN = "hidden"  # lists: 200, and the other agency's object is not in the answer


@dataclass
class Side:
    agency: Any
    organizer: Any
    member: Any
    meeting: Meeting
    occurrence: str
    webhook: Any


@dataclass
class World:
    sides: dict[str, Side]
    start: Any


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    scope: str
    path: Callable[[World, Side], str]
    body: Callable[[World, Side], dict[str, Any]] | None = None
    success: int = 200
    writes: bool = False
    # What a key gets for the other agency's object (see the module docstring).
    foreign: int | str = 404
    # Where a listed object's id is found in the answer, for HIDDEN.
    listed_ids: Callable[[Any], set[int]] | None = None


def _meeting_path(suffix: str = "") -> Callable[[World, Side], str]:
    return lambda world, side: f"/api/v1/meetings/{side.meeting.pk}/{suffix}"


def _occurrence_path(action: str) -> Callable[[World, Side], str]:
    return lambda world, side: (
        f"/api/v1/meetings/{side.meeting.pk}/occurrences/{side.occurrence}/{action}/"
    )


def _webhook_path(suffix: str = "") -> Callable[[World, Side], str]:
    return lambda world, side: f"/api/v1/webhooks/{side.webhook.pk}/{suffix}"


def _new_meeting(world: World, side: Side) -> dict[str, Any]:
    start = world.start + timedelta(days=2)
    return {
        "title": "Matrix booking",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "timezone": "Europe/Paris",
        "organizer": side.organizer.email,
        "attendees": [{"email": side.member.email}],
    }


def _window(world: World, side: Side) -> str:
    end = world.start + timedelta(days=21)
    return f"?from={world.start.isoformat()}&to={end.isoformat()}".replace("+", "%2B")


def _moved(world: World, side: Side) -> dict[str, Any]:
    start = world.start + timedelta(days=1, hours=2)
    return {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}


def _result_ids(body: dict[str, Any]) -> set[int]:
    return {item["id"] for item in body["results"]}


def _item_ids(body: list[dict[str, Any]]) -> set[int]:
    return {item["id"] for item in body}


def _change_ids(body: dict[str, Any]) -> set[int]:
    return {item["meeting_id"] for item in body["changes"]}


ENDPOINTS = [
    Endpoint(
        "meetings-list",
        "GET",
        "meetings:read",
        lambda world, side: "/api/v1/meetings/",
        foreign=HIDDEN,
        listed_ids=_result_ids,
    ),
    Endpoint(
        "meetings-create",
        "POST",
        "meetings:write",
        lambda world, side: "/api/v1/meetings/",
        body=_new_meeting,
        success=201,
        writes=True,
        # The organizer must be a member of the key's agency.
        foreign=400,
    ),
    Endpoint("meetings-retrieve", "GET", "meetings:read", _meeting_path()),
    Endpoint(
        "meetings-update",
        "PATCH",
        "meetings:write",
        _meeting_path(),
        body=lambda world, side: {"title": "Renamed by the matrix"},
        writes=True,
    ),
    Endpoint("meetings-cancel", "DELETE", "meetings:write", _meeting_path(), writes=True),
    Endpoint(
        "occurrences-list",
        "GET",
        "meetings:read",
        lambda world, side: _meeting_path("occurrences/")(world, side) + _window(world, side),
    ),
    Endpoint(
        "occurrence-cancel", "POST", "meetings:write", _occurrence_path("cancel"), writes=True
    ),
    Endpoint(
        "occurrence-move",
        "POST",
        "meetings:write",
        _occurrence_path("move"),
        body=_moved,
        writes=True,
    ),
    Endpoint(
        "join-ticket",
        "POST",
        "join:issue",
        _meeting_path("join-ticket/"),
        body=lambda world, side: {"email": side.member.email},
    ),
    Endpoint(
        "freebusy",
        "POST",
        "freebusy:read",
        lambda world, side: "/api/v1/freebusy/",
        body=lambda world, side: {
            "attendees": [side.member.email],
            "start": world.start.isoformat(),
            "end": (world.start + timedelta(days=7)).isoformat(),
        },
        # Busy times of anyone on the instance, as in the web UI (never titles through the API).
        foreign=200,
    ),
    Endpoint(
        "changes",
        "GET",
        "meetings:read",
        lambda world, side: "/api/v1/changes/",
        foreign=HIDDEN,
        listed_ids=_change_ids,
    ),
    Endpoint(
        "feeds-create",
        "POST",
        "feeds:manage",
        lambda world, side: "/api/v1/feeds/",
        body=lambda world, side: {"email": side.member.email},
        success=201,
        writes=True,
    ),
    Endpoint(
        "feeds-rotate",
        "POST",
        "feeds:manage",
        lambda world, side: "/api/v1/feeds/rotate/",
        body=lambda world, side: {"email": side.organizer.email},
        writes=True,
    ),
    Endpoint(
        "webhooks-list",
        "GET",
        "webhooks:manage",
        lambda world, side: "/api/v1/webhooks/",
        foreign=HIDDEN,
        listed_ids=_item_ids,
    ),
    Endpoint(
        "webhooks-create",
        "POST",
        "webhooks:manage",
        lambda world, side: "/api/v1/webhooks/",
        body=lambda world, side: {
            "url": f"https://hooks.{side.agency.slug}.example/visio",
            "event_types": ["meeting.created"],
        },
        success=201,
        writes=True,
        # Names no object: the other column is the same request, and succeeds the same way.
        foreign=201,
    ),
    Endpoint("webhooks-retrieve", "GET", "webhooks:manage", _webhook_path()),
    Endpoint(
        "webhooks-update",
        "PATCH",
        "webhooks:manage",
        _webhook_path(),
        body=lambda world, side: {"description": "changed by the matrix"},
        writes=True,
    ),
    Endpoint(
        "webhooks-delete", "DELETE", "webhooks:manage", _webhook_path(), success=204, writes=True
    ),
    Endpoint(
        "webhooks-rotate-secret",
        "POST",
        "webhooks:manage",
        _webhook_path("rotate-secret/"),
        writes=True,
    ),
    Endpoint("webhooks-deliveries", "GET", "webhooks:manage", _webhook_path("deliveries/")),
]


def expected(endpoint: Endpoint, key: str, side: str) -> int | str:
    if key in ("none", "revoked", "expired"):
        return 401
    if key == "without_scope":
        return 403
    same_agency = (key == "this_agency") == (side == "own")
    if same_agency:
        return endpoint.success
    return endpoint.foreign


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Everything an API write may change, row by row."""
    from agencies.models import WebhookEndpoint

    return {
        model.__name__: sorted(model.objects.values_list(), key=repr)
        for model in (Meeting, Attendee, OccurrenceException, FeedToken, WebhookEndpoint)
    }


def _side(agency, make_member, start) -> Side:
    organizer = make_member(agency, "organizer")
    member = make_member(agency, "member")
    meeting = meeting_schedule(
        actor=organizer,
        title=f"Daily of {agency.slug}",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        recurrence=Recurrence.parse("FREQ=DAILY;COUNT=10"),
        attendees=[AttendeeSpec(member.email)],
    )
    feed_token_create(actor=organizer)
    webhook, _secret = webhook_endpoint_create(
        actor=CLI,
        agency=agency,
        url=f"https://hooks.{agency.slug}.example/visio",
        event_types=["meeting.updated"],
    )
    occurrence = (meeting.start + timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
    return Side(agency, organizer, member, meeting, occurrence, webhook)


@pytest.fixture
def world(agency, other_agency, make_member, settings) -> World:
    settings.API_RATE_LIMIT = "100000/m"
    # Inside the join window of the first occurrence (it opens 15 minutes before).
    start = (timezone.now() + timedelta(minutes=5)).replace(second=0, microsecond=0)
    return World(
        sides={
            "own": _side(agency, make_member, start),
            "other": _side(other_agency, make_member, start),
        },
        start=start,
    )


def _key(kind: str, endpoint: Endpoint, world: World, make_api_key) -> str | None:
    this, other = world.sides["own"].agency, world.sides["other"].agency
    if kind == "none":
        return None
    if kind == "revoked":
        key, raw = make_api_key(this)
        apikey_revoke(actor=CLI, key=key)
        return raw
    if kind == "expired":
        key, raw = make_api_key(this, expires_days=1)
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        return raw
    if kind == "without_scope":
        return make_api_key(this, [s for s in ALL_SCOPES if s != endpoint.scope])[1]
    return make_api_key(this if kind == "this_agency" else other)[1]


CELLS = [
    pytest.param(endpoint, key, side, id=f"{endpoint.name}-{key}-{side}-object")
    for endpoint in ENDPOINTS
    for key in KEYS
    for side in SIDES
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "key", "side"), CELLS)
def test_api_authorization_matrix(endpoint, key, side, world, make_api_key):
    raw = _key(key, endpoint, world, make_api_key)
    target = world.sides[side]
    path = endpoint.path(world, target)
    body = endpoint.body(world, target) if endpoint.body else None
    before = snapshot()

    response = api_client(raw).generic(
        endpoint.method,
        path,
        json.dumps(body) if body is not None else "",
        content_type="application/json",
    )

    want = expected(endpoint, key, side)
    status = endpoint.success if want == HIDDEN else want
    assert response.status_code == status, response.content[:500]
    if status >= 400:
        assert response["Content-Type"] == "application/problem+json"
    changed = snapshot() != before
    succeeded = response.status_code < 300 and want != HIDDEN and status == endpoint.success
    assert changed == (endpoint.writes and succeeded), (
        "database changed" if changed else "no change"
    )
    if endpoint.listed_ids is not None and response.status_code == 200:
        listed = endpoint.listed_ids(response.json())
        object_id = target.meeting.pk if endpoint.name != "webhooks-list" else target.webhook.pk
        assert (object_id in listed) == (want != HIDDEN)
