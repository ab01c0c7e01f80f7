"""REST API: join tickets, minted for one person by the rules of the web join page.

An agency's system asks for a ticket on behalf of someone (by email) or of a guest (by name) and
hands it to its own client. Everything the web join decides is decided here by the same service
(``join_ticket_issue``): who may join and as which role, the time window, cancellations, the
lobby. An API call cannot wait in a lobby, so when one applies the answer is ``lobby_required``
with the join page the person should open instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agencies.models import ApiScope, User
from meetings.ical import join_url
from meetings.models import Meeting
from meetings.serializers import occurrence_key_parse
from rooms import selectors, services
from rooms.models import BackendKind, LobbyEntry
from rooms.providers import JoinRole, Ticket
from visio_broker.api import (
    PROBLEM_CONTENT_TYPE,
    ApiView,
    JsonBodySerializer,
    ProblemSerializer,
    problem_response,
)
from visio_broker.errors import DomainError, NotFound


class JoinTicketRequestSerializer(JsonBodySerializer):
    email = serializers.EmailField(
        required=False,
        help_text=(
            "The person who joins, by the address of their account on this service. An address "
            "without an account is a guest: only `link` meetings let guests in, under `name`."
        ),
    )
    name = serializers.CharField(
        required=False,
        max_length=services.GUEST_NAME_MAX,
        help_text=(
            "A guest's display name, for a `link` meeting; ignored when `email` names an account."
        ),
    )
    occurrence = serializers.CharField(
        required=False,
        help_text=(
            "One occurrence of a series, by its id (original start in UTC, e.g. "
            "20270329T080000Z). Default: the occurrence open now, else the next one."
        ),
    )

    def validate_occurrence(self, value: str) -> datetime:
        moment = occurrence_key_parse(value)
        if moment is None:
            raise serializers.ValidationError(
                _("Use the occurrence id, such as 20270329T080000Z."), code="invalid_occurrence"
            )
        return moment

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("email") and not attrs.get("name"):
            raise serializers.ValidationError(
                {"email": [_("Give the person's email address, or a guest's name.")]},
                code="required",
            )
        return attrs


class JoinTicketSerializer(serializers.Serializer[Ticket]):
    provider = serializers.ChoiceField(choices=BackendKind.values)
    url = serializers.CharField(
        help_text=(
            "Where the client goes: the backend's web client with the token in it (LiveKit Meet, "
            "Jitsi), or the LiveKit server URL for SDK clients when the backend has no web client."
        )
    )
    token = serializers.CharField(help_text="The signed join token (JWT). Keep it secret.")
    expires_at = serializers.DateTimeField(help_text="When the token stops opening the room.")
    role = serializers.ChoiceField(
        choices=[role.value for role in JoinRole],
        help_text="`moderator` for the organizer, co-organizers and chairs; else `participant`.",
    )


class JoinProblemSerializer(ProblemSerializer):
    join_url = serializers.URLField(
        required=False,
        help_text="With `lobby_required` and `lobby_refused`: the join page to send the person to.",
    )
    opens_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="With `not_in_join_window`: when the room opens (null once it has ended).",
    )


# Shaped like a real one, signed by nothing: documentation only.
_SAMPLE_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ2aWRlbyI6eyJyb29tIjoidmItN3E0In19.c2ln"


class JoinTicketView(ApiView):
    scopes = {"POST": ApiScope.JOIN_ISSUE}
    # The response holds a token: it is never kept for an Idempotency-Key replay. Asking twice
    # is harmless, it only mints a second short-lived token.
    idempotent_replay = False

    @extend_schema(
        operation_id="meetings_join_ticket_create",
        summary="Issue a join ticket",
        description=(
            "A short-lived token for the meeting's room, for one person: an attendee (the "
            "organizer, co-organizers and chairs get `moderator`), any member of the host agency "
            "for `agency` meetings, anyone for `link` meetings (a guest only needs a `name`). "
            "The rules are those of the web join page: the room opens "
            "some minutes before the start and closes some minutes after the end "
            "(`409 not_in_join_window`, with `opens_at`); a cancelled meeting or occurrence "
            "answers `409 meeting_cancelled`; someone who may not join, `403 forbidden`.\n\n"
            "When the lobby applies (guests and uninvited colleagues of a meeting with the lobby "
            "on), the API cannot wait for a moderator: it answers `403 lobby_required` with the "
            "`join_url` of the join page, where the person asks to join. A member a moderator "
            "already admitted there gets their ticket here.\n\n"
            "The token is never stored: the Idempotency-Key header is ignored and every call "
            "mints a new one. Only meetings the key's agency hosts can be joined this way."
        ),
        request=JoinTicketRequestSerializer,
        responses={
            200: JoinTicketSerializer,
            (403, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                JoinProblemSerializer,
                description=(
                    "`forbidden` (this person may not join), `lobby_required` / `lobby_refused` "
                    "(with `join_url`), or `insufficient_scope`."
                ),
            ),
            (409, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                JoinProblemSerializer,
                description=(
                    "`not_in_join_window` (with `opens_at`), `meeting_cancelled`, `no_room`, "
                    "`lobby_full`."
                ),
            ),
        },
        examples=[
            OpenApiExample(
                "An attendee", value={"email": "alice@agency.example"}, request_only=True
            ),
            OpenApiExample(
                "A guest of a link meeting", value={"name": "Gabriel Guest"}, request_only=True
            ),
            OpenApiExample(
                "One occurrence of a series",
                value={"email": "alice@agency.example", "occurrence": "20270329T080000Z"},
                request_only=True,
            ),
            OpenApiExample(
                "A ticket",
                value={
                    "provider": "livekit",
                    "url": f"https://meet.example/custom?liveKitUrl=wss%3A%2F%2Flk.example"
                    f"&token={_SAMPLE_JWT}",
                    "token": _SAMPLE_JWT,
                    "expires_at": "2027-03-29T08:05:00+00:00",
                    "role": "participant",
                },
                response_only=True,
                status_codes=["200"],
            ),
            OpenApiExample(
                "The lobby applies",
                value={
                    "type": "urn:visio-broker:problem:lobby_required",
                    "title": "Forbidden",
                    "status": 403,
                    "detail": "Ask to join first: a moderator lets you in.",
                    "code": "lobby_required",
                    "instance": "/api/v1/meetings/42/join-ticket/",
                    "join_url": "https://visio.example/meetings/42/join/",
                },
                response_only=True,
                status_codes=["403"],
            ),
            OpenApiExample(
                "Too early",
                value={
                    "type": "urn:visio-broker:problem:not_in_join_window",
                    "title": "Conflict",
                    "status": 409,
                    "detail": "The meeting room is not open yet.",
                    "code": "not_in_join_window",
                    "instance": "/api/v1/meetings/42/join-ticket/",
                    "opens_at": "2027-03-29T07:45:00+00:00",
                },
                response_only=True,
                status_codes=["409"],
            ),
        ],
        tags=["join"],
    )
    def post(self, request: Request, id: int) -> Response:
        serializer = JoinTicketRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        found = selectors.meeting_for_agency_join(
            agency=self.agency, pk=id, email=data.get("email")
        )
        if found is None:
            raise NotFound(_("No such meeting."), code="not_found")
        meeting, user = found
        recurrence_id = data.get("occurrence")
        try:
            ticket = _ticket_issue(meeting, recurrence_id, user, data.get("name", ""))
        except services.NotInJoinWindow as exc:
            opens_at = exc.opens_at.isoformat() if exc.opens_at else None
            return self._problem(exc, opens_at=opens_at)
        except services.LobbyRequired as exc:
            return self._problem(exc, join_url=join_url(meeting))
        body = {
            "provider": ticket.provider,
            "url": ticket.url,
            "token": ticket.token,
            "expires_at": ticket.expires_at.isoformat(),
            "role": ticket.role.value,
        }
        return Response(body, headers={"Cache-Control": "no-store"})

    def _problem(self, exc: DomainError, **extra: Any) -> Response:
        return problem_response(
            status=exc.status,
            code=exc.code,
            detail=exc.message,
            instance=self.request.path,
            **extra,
        )


def _ticket_issue(
    meeting: Meeting, recurrence_id: datetime | None, user: User | None, name: str
) -> Ticket:
    """What the web join does for this person, minus waiting in the lobby."""
    access = selectors.join_access(meeting=meeting, user=user)
    if user is None and access is not None and not access.lobby:
        # A guest of a link meeting without a lobby: the entry, admitted at once, is their
        # identity in the room (the web keeps its secret in the session; here nobody needs it).
        admitted = services.lobby_enter(
            meeting=meeting, recurrence_id=recurrence_id, display_name=name
        ).entry
        return services.join_ticket_issue(
            meeting=meeting, recurrence_id=recurrence_id, lobby_entry=admitted
        )
    entry: LobbyEntry | None = None
    if user is not None and access is not None and access.lobby:
        # Admitted from the web lobby already: that decision holds here too.
        entry = selectors.lobby_entry_of(meeting=meeting, user=user)
    # Anyone else, the service refuses with its reason: not invited, window, lobby.
    return services.join_ticket_issue(
        meeting=meeting, recurrence_id=recurrence_id, user=user, lobby_entry=entry
    )


urlpatterns = [
    path(
        "meetings/<int:id>/join-ticket/",
        JoinTicketView.as_view(),
        name="api-meeting-join-ticket",
    ),
]
