"""REST API: meetings/ — list, book, read, change and cancel an agency's meetings.

Writes go through meetings.services. The key acts for the agency: a booking names its
organizer; changes and cancellations act as the meeting's organizer, or, once they have left
the agency, as its longest-standing active admin (meetings.selectors.meeting_acting_member).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from functools import partial
from typing import Any

from django.db import DataError, connections, router, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from agencies.models import Agency, User
from meetings.models import Attendee, Meeting
from meetings.selectors import meeting_acting_member, meetings_visible_to_agency
from meetings.serializers import (
    FIELD_OF_ERROR,
    MeetingCreateSerializer,
    MeetingListQuerySerializer,
    MeetingPageSerializer,
    MeetingPatchSerializer,
    MeetingSerializer,
    agency_meeting_row,
    cursor_encode,
    meeting_json_available,
    meeting_json_rows_of_page,
    meeting_representation,
    meeting_representations_of_rows,
    meeting_row_key,
    meeting_rows,
)
from meetings.services import meeting_cancel, meeting_schedule, meeting_update
from visio_broker.api import (
    ApiView,
    CompiledRows,
    api_key,
    etagged_response,
    field_errors,
    if_match_check,
    query_data,
    representation_etag,
)
from visio_broker.errors import Conflict, InvalidInput, NotFound

READ = {"GET": "meetings:read"}
WRITE = "meetings:write"
TAGS = ["meetings"]


# --- Helpers shared with meetings.api.occurrences ---------------------------------------------


def meeting_not_found() -> NotFound:
    return NotFound(_("No such meeting."), code="not_found")


def acting_member(meeting: Meeting) -> User:
    """The member the key acts for on ``meeting``; 409 when the agency has nobody left."""
    actor = meeting_acting_member(meeting=meeting)
    if actor is None:
        raise Conflict(
            _(
                "Nobody can act on this meeting for your agency: its organizer has left and "
                "the agency has no active administrator."
            ),
            code="no_acting_member",
        )
    return actor


@contextmanager
def service_errors() -> Iterator[None]:
    """Service refusals about one field of the body become field errors of that field."""
    try:
        with field_errors(FIELD_OF_ERROR):
            yield
    except InvalidInput as exc:
        if exc.code == "meeting_cancelled":
            raise Conflict(exc.message, code=exc.code) from exc
        raise


def _represent(request: Request, meeting: Meeting) -> dict[str, Any]:
    return meeting_representation(meeting, api_key(request))


def _fresh(request: Request, agency: Agency, pk: int) -> dict[str, Any]:
    row = meeting_rows(meetings_visible_to_agency(agency=agency)).get(pk=pk)
    return meeting_representations_of_rows([row], api_key(request))[0]


# --- OpenAPI examples -------------------------------------------------------------------------

MEETING_EXAMPLE = {
    "id": 42,
    "uid": "0b5c1f7e-5d0e-4a43-9d2f-3c1e4b6f8a90@visio.example.gouv.fr",
    "title": "Weekly steering",
    "description": "Agenda in the shared folder.",
    "start": "2027-03-29T10:00:00+02:00",
    "end": "2027-03-29T11:00:00+02:00",
    "timezone": "Europe/Paris",
    "all_day": False,
    "recurrence": "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
    "organizer": "orla.martin@agency.example.gouv.fr",
    "co_organizers": [],
    "attendees": [
        {
            "email": "orla.martin@agency.example.gouv.fr",
            "name": "Orla Martin",
            "role": "chair",
            "status": "accepted",
        },
        {
            "email": "camille@partner.example.org",
            "name": "Camille",
            "role": "required",
            "status": "needs-action",
        },
    ],
    "access": "invite",
    "lobby": True,
    "listed_publicly": False,
    "reminder_minutes": 15,
    "status": "scheduled",
    "sequence": 0,
    "join_url": "https://visio.example.gouv.fr/meetings/42/join/",
    "room": {"provider": "livekit", "backend": "livekit-paris-1"},
    "abilities": {"view": True, "edit": True, "cancel": True, "issue_join_ticket": True},
    "created_at": "2027-03-01T09:12:03.511204Z",
    "updated_at": "2027-03-01T09:12:03.511204Z",
}
CANCELLED_EXAMPLE = {
    **MEETING_EXAMPLE,
    "status": "cancelled",
    "sequence": 1,
    "room": None,
    "abilities": {"view": True, "edit": False, "cancel": False, "issue_join_ticket": False},
    "updated_at": "2027-03-02T14:00:00.000000Z",
}
CREATE_EXAMPLE = {
    "title": "Weekly steering",
    "description": "Agenda in the shared folder.",
    "start": "2027-03-29T10:00:00+02:00",
    "end": "2027-03-29T11:00:00+02:00",
    "timezone": "Europe/Paris",
    "recurrence": "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
    "organizer": "orla.martin@agency.example.gouv.fr",
    "attendees": [{"email": "camille@partner.example.org", "name": "Camille"}],
    "reminder_minutes": 15,
}
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The meeting's id."
)


# --- Views ------------------------------------------------------------------------------------


class MeetingListView(ApiView):
    scopes = {**READ, "POST": WRITE}

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_list",
        summary="List the agency's meetings",
        description=(
            "Meetings the key's agency hosts, cancelled ones included, ordered by start (the "
            "first occurrence of a series) then id. Filters combine with AND; times need a UTC "
            "offset. Cursor pagination: follow `next` until it is null. A meeting whose start "
            "changes while you walk the pages may move to another page: to keep a copy in "
            "sync, use `updated_since` or the changes/ feed."
        ),
        parameters=[MeetingListQuerySerializer],
        responses={200: MeetingPageSerializer},
        examples=[
            OpenApiExample(
                "A page",
                response_only=True,
                value={
                    "next": "https://visio.example.gouv.fr/api/v1/meetings/?cursor=WyIyMDI3",
                    "results": [MEETING_EXAMPLE],
                },
            )
        ],
    )
    def get(self, request: Request) -> Response | HttpResponse:
        query = MeetingListQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        page_size: int = params["page_size"]
        using = router.db_for_read(Meeting)
        if meeting_json_available(using):
            encoded = _encoded_page(request, self.agency, params, using)
            if encoded is not None:
                return encoded
        meetings = _page(meetings_visible_to_agency(agency=self.agency), params)
        page = list(meeting_rows(meetings)[: page_size + 1])
        next_url = None
        if len(page) > page_size:
            page = page[:page_size]
            next_url = _next_page_url(request, *meeting_row_key(page[-1]))
        results = meeting_representations_of_rows(page, api_key(request))
        return Response({"next": next_url, "results": results})

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_create",
        summary="Book a meeting",
        description=(
            "Books a meeting for `organizer`, an active organizer or admin of the key's "
            "agency: reserves a room (409 `no_capacity` when no allowed backend has room) and "
            "queues the invitations. `timezone` defaults to the organizer's. Answers the "
            "meeting with its `ETag` and `Location`. Field errors name the field "
            "(`organizer_invalid`, `naive_datetime`, `unsupported_recurrence`, "
            "`start_in_past`…)."
        ),
        request=MeetingCreateSerializer,
        responses={201: MeetingSerializer},
        examples=[
            OpenApiExample("A weekly meeting", request_only=True, value=CREATE_EXAMPLE),
            OpenApiExample(
                "Booked", response_only=True, status_codes=["201"], value=MEETING_EXAMPLE
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        body = MeetingCreateSerializer(data=request.data, context={"agency": self.agency})
        body.is_valid(raise_exception=True)
        with service_errors():
            meeting = meeting_schedule(**body.service_kwargs())
        data = _fresh(request, self.agency, meeting.pk)
        location = request.build_absolute_uri(reverse("api-meeting", kwargs={"id": meeting.pk}))
        return etagged_response(data, status=201, Location=location)


def _next_page_url(request: Request, start: datetime, pk: int) -> str:
    return replace_query_param(request.build_absolute_uri(), "cursor", cursor_encode(start, pk))


def _encoded_page(
    request: Request, agency: Agency, params: dict[str, Any], using: str
) -> HttpResponse | None:
    """The page as ``Response({"next": …, "results": […]})`` renders it, from the meetings'
    JSON texts as the database wrote them: neither parsed nor encoded again. None when
    PostgreSQL does not know a meeting's time zone (its tz database older than Python's): the
    caller writes that page in Python."""
    page_size: int = params["page_size"]
    page_sql, page_params = _page_sql(agency, params, using)
    # As the ORM writes a slice: the limit inline, so that the planner knows it.
    page_sql = f"{page_sql} LIMIT {int(page_size) + 1}"
    connection = connections[using]
    # Inside a transaction (a test's), a savepoint keeps the failed statement from ending it.
    guard = transaction.atomic(using=using) if connection.in_atomic_block else nullcontext()
    try:
        with guard:
            page = meeting_json_rows_of_page(page_sql, page_params, api_key(request), using=using)
    except DataError:
        return None
    next_url = None
    if len(page) > page_size:
        page = page[:page_size]
        next_url = _next_page_url(request, *page[-1].sort_key())
    results = ",".join(meeting.json for meeting in page)
    body = f'{{"next":{json.dumps(next_url)},"results":[{results}]}}'
    return HttpResponse(body.encode(), content_type="application/json")


# The list's filters, in the order _page applies them (the cursor is two arguments).
_PAGE_FILTERS = (
    "start_after",
    "start_before",
    "updated_since",
    "organizer",
    "attendee",
    "status",
    "cursor",
)
# One compiled page query per set of filters given: compiling it cost a tenth of a page.
_PAGES: dict[tuple[str, ...], CompiledRows] = {}


def _page_sql(agency: Agency, params: dict[str, Any], using: str) -> tuple[str, list[Any]]:
    """``_page``'s (start, id) of the agency's meetings, as SQL and parameters (no limit)."""
    given = tuple(name for name in _PAGE_FILTERS if name in params)
    pages = _PAGES.get(given)
    if pages is None:
        pages = _PAGES[given] = CompiledRows(partial(_page_of_arguments, given))
    arguments = [agency.pk]
    for name in given:
        arguments.extend(params[name] if name == "cursor" else [params[name]])
    return pages.sql(*arguments, using=using)


def _page_of_arguments(given: tuple[str, ...], agency_id: int, *values: Any) -> QuerySet[Any]:
    taken = iter(values)
    params = {
        name: (next(taken), next(taken)) if name == "cursor" else next(taken) for name in given
    }
    host = Agency(pk=agency_id)
    return _page(meetings_visible_to_agency(agency=host), params).values_list("start", "pk")


def _page(meetings: QuerySet[Meeting], params: dict[str, Any]) -> QuerySet[Meeting]:
    """The list's meetings: filtered, after the cursor, in page order."""
    meetings = _filtered(meetings, params)
    if "cursor" in params:
        start, pk = params["cursor"]
        meetings = meetings.filter(Q(start__gt=start) | Q(start=start, pk__gt=pk))
    return meetings.order_by("start", "pk")


def _filtered(meetings: QuerySet[Meeting], params: dict[str, Any]) -> QuerySet[Meeting]:
    if "start_after" in params:
        meetings = meetings.filter(start__gte=params["start_after"])
    if "start_before" in params:
        meetings = meetings.filter(start__lt=params["start_before"])
    if "updated_since" in params:
        meetings = meetings.filter(updated_at__gte=params["updated_since"])
    if "organizer" in params:
        meetings = meetings.filter(organizer__email__iexact=params["organizer"])
    if "attendee" in params:
        invited = Attendee.objects.filter(meeting=OuterRef("pk"), email__iexact=params["attendee"])
        meetings = meetings.filter(Exists(invited))
    if "status" in params:
        meetings = meetings.filter(status=params["status"])
    return meetings


class MeetingDetailView(ApiView):
    scopes = {**READ, "PATCH": WRITE, "DELETE": WRITE}

    def _locked(self, pk: int) -> Meeting:
        """The meeting, row-locked until the end of the transaction, ready to serialize."""
        meeting = (
            meetings_visible_to_agency(agency=self.agency)
            .select_related("organizer", "reservation__backend")
            .select_for_update(of=("self",))
            .filter(pk=pk)
            .first()
        )
        if meeting is None:
            raise meeting_not_found()
        return meeting

    def _check_precondition(self, request: Request, meeting: Meeting) -> None:
        # The ETag of the locked row: nobody can change it between this check and the write.
        if_match_check(request, representation_etag(_represent(request, meeting)))

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_retrieve",
        summary="Read a meeting",
        description=(
            "The meeting with its `ETag` (send it as `If-Match` on PATCH and DELETE; as "
            "`If-None-Match` it answers 304 while nothing changed). Another agency's meeting "
            "is 404."
        ),
        parameters=[
            ID_PARAMETER,
            OpenApiParameter(
                "If-None-Match",
                str,
                OpenApiParameter.HEADER,
                description="An ETag you hold: 304 Not Modified while it is current.",
            ),
        ],
        responses={
            200: MeetingSerializer,
            304: OpenApiResponse(description="Not modified since the ETag you sent."),
        },
        examples=[OpenApiExample("A meeting", response_only=True, value=MEETING_EXAMPLE)],
    )
    def get(self, request: Request, id: int) -> Response:  # noqa: A002 - the path's name
        row = agency_meeting_row(agency=self.agency, pk=id)
        if row is None:
            raise meeting_not_found()
        data = meeting_representations_of_rows([row], api_key(request))[0]
        etag = representation_etag(data)
        held = [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]
        if etag in held or "*" in held:
            return Response(status=304, headers={"ETag": etag})
        return etagged_response(data)

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_partial_update",
        summary="Change a meeting",
        description=(
            "Changes the fields sent (the whole series). `attendees`, when sent, replaces the "
            "list (the organizer always stays, as chair). Changes of time, recurrence or time "
            "zone bump `sequence`, reset attendees' answers, move the room and send updates; "
            "other changes send updates only with `notify`. The organizer cannot change. "
            "Acts as the meeting's organizer, or, once they have left the agency, as its "
            "longest-standing active admin (409 `no_acting_member` when there is none). "
            "A cancelled meeting cannot change (409 `meeting_cancelled`)."
        ),
        parameters=[ID_PARAMETER],
        request=MeetingPatchSerializer,
        responses={200: MeetingSerializer},
        examples=[
            OpenApiExample(
                "Move one hour later",
                request_only=True,
                value={"start": "2027-03-29T11:00:00+02:00", "end": "2027-03-29T12:00:00+02:00"},
            ),
            OpenApiExample(
                "Changed",
                response_only=True,
                value={
                    **MEETING_EXAMPLE,
                    "start": "2027-03-29T11:00:00+02:00",
                    "end": "2027-03-29T12:00:00+02:00",
                    "sequence": 1,
                },
            ),
        ],
    )
    def patch(self, request: Request, id: int) -> Response:  # noqa: A002 - the path's name
        body = MeetingPatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with transaction.atomic():
            meeting = self._locked(id)
            _refuse_organizer_change(request, meeting)
            self._check_precondition(request, meeting)
            with service_errors():
                meeting_update(
                    actor=acting_member(meeting), meeting=meeting, **body.service_kwargs()
                )
        return etagged_response(_fresh(request, self.agency, id))

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_cancel",
        summary="Cancel a meeting",
        description=(
            "Cancels the meeting (the whole series): attendees get a cancellation, the room is "
            "released. The meeting stays readable with status `cancelled`; the answer is that "
            "representation and its `ETag`. Cancelling a cancelled meeting answers the same. "
            "Acts like PATCH (organizer, else an admin of the agency)."
        ),
        parameters=[ID_PARAMETER],
        request=None,
        responses={200: MeetingSerializer},
        examples=[OpenApiExample("Cancelled", response_only=True, value=CANCELLED_EXAMPLE)],
    )
    def delete(self, request: Request, id: int) -> Response:  # noqa: A002 - the path's name
        with transaction.atomic():
            meeting = self._locked(id)
            self._check_precondition(request, meeting)
            if not meeting.is_cancelled:
                with service_errors():
                    meeting_cancel(actor=acting_member(meeting), meeting=meeting)
        return etagged_response(_fresh(request, self.agency, id))


def _refuse_organizer_change(request: Request, meeting: Meeting) -> None:
    # Ignoring it would look like success; read-only fields of the representation that come
    # back unchanged (a client PATCHing what it read) are fine.
    sent = request.data.get("organizer") if isinstance(request.data, dict) else None
    if sent is not None and str(sent).lower() != meeting.organizer.email.lower():
        raise serializers.ValidationError(
            {"organizer": [_("The organizer of a meeting cannot change.")]}, code="read_only"
        )


urlpatterns = [
    path("meetings/", MeetingListView.as_view(), name="api-meetings"),
    path("meetings/<int:id>/", MeetingDetailView.as_view(), name="api-meeting"),
]
