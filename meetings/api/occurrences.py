"""REST API: meetings/{id}/occurrences/ — a meeting's occurrences in a window; cancel or move one.

An occurrence's id is its original start in UTC (``20270329T080000Z``, the iCalendar
RECURRENCE-ID): it stays the same when the occurrence is moved.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from agencies.models import Agency
from meetings.api.meetings import acting_member, meeting_not_found, service_errors
from meetings.models import Meeting, OccurrenceException
from meetings.selectors import meeting_occurrences, meetings_visible_to_agency, occurrence_at
from meetings.serializers import (
    OccurrenceListSerializer,
    OccurrenceMoveSerializer,
    OccurrenceSerializer,
    OccurrenceWindowSerializer,
    occurrence_key_parse,
)
from meetings.services import occurrence_cancel, occurrence_move
from visio_broker.api import ApiView, query_data
from visio_broker.errors import NotFound

TAGS = ["meetings"]
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The meeting's id."
)
OCCURRENCE_ID_PARAMETER = OpenApiParameter(
    "occurrence_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=r"^[0-9]{8}T[0-9]{6}Z$",
    description=(
        "The occurrence's original start in UTC, e.g. 20270329T080000Z. An id that is not "
        "an occurrence of the meeting, malformed ones included, is 404 `occurrence_not_found`."
    ),
)
OCCURRENCE_EXAMPLE = {
    "id": "20270405T080000Z",
    "start": "2027-04-05T10:00:00+02:00",
    "end": "2027-04-05T11:00:00+02:00",
    "status": "confirmed",
    "moved": False,
}


def _meeting(agency: Agency, pk: int) -> Meeting:
    meeting = (
        meetings_visible_to_agency(agency=agency)
        .select_related("organizer")
        .prefetch_related(
            Prefetch("exceptions", queryset=OccurrenceException.objects.order_by("recurrence_id"))
        )
        .filter(pk=pk)
        .first()
    )
    if meeting is None:
        raise meeting_not_found()
    return meeting


def _occurrence_not_found() -> NotFound:
    return NotFound(_("This meeting has no occurrence at that time."), code="occurrence_not_found")


def _recurrence_id(occurrence_id: str) -> datetime:
    moment = occurrence_key_parse(occurrence_id)
    if moment is None:
        raise _occurrence_not_found()
    return moment


def _answer(agency: Agency, pk: int, recurrence_id: datetime) -> Response:
    occurrence = occurrence_at(_meeting(agency, pk), recurrence_id)
    if occurrence is None:  # pragma: no cover - the service just found it
        raise _occurrence_not_found()
    return Response(OccurrenceSerializer(occurrence).data)


class OccurrenceListView(ApiView):
    scopes = {"GET": "meetings:read"}

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_occurrences_list",
        summary="List a meeting's occurrences in a window",
        description=(
            "Occurrences overlapping [`from`, `to`), at most 366 days apart, ordered by start. "
            "Moved occurrences show their new times (and `moved`); cancelled ones stay listed "
            "with status `cancelled`. A one-off meeting has one occurrence."
        ),
        parameters=[
            ID_PARAMETER,
            OpenApiParameter(
                "from",
                OpenApiTypes.DATETIME,
                OpenApiParameter.QUERY,
                required=True,
                description="Start of the window, RFC 3339 with a UTC offset (inclusive).",
            ),
            OpenApiParameter(
                "to",
                OpenApiTypes.DATETIME,
                OpenApiParameter.QUERY,
                required=True,
                description="End of the window (exclusive), at most 366 days after `from`.",
            ),
        ],
        responses={200: OccurrenceListSerializer},
        examples=[
            OpenApiExample(
                "Two Mondays, the second moved",
                response_only=True,
                value={
                    "results": [
                        OCCURRENCE_EXAMPLE,
                        {
                            "id": "20270412T080000Z",
                            "start": "2027-04-13T14:00:00+02:00",
                            "end": "2027-04-13T15:00:00+02:00",
                            "status": "confirmed",
                            "moved": True,
                        },
                    ]
                },
            )
        ],
    )
    def get(self, request: Request, id: int) -> Response:  # noqa: A002 - the path's name
        window = OccurrenceWindowSerializer(data=query_data(request))
        window.is_valid(raise_exception=True)
        meeting = _meeting(self.agency, id)
        found = meeting_occurrences(
            meeting, window.validated_data["from"], window.validated_data["to"]
        )
        return Response({"results": OccurrenceSerializer(found, many=True).data})


class OccurrenceCancelView(ApiView):
    scopes = {"POST": "meetings:write"}

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_occurrences_cancel",
        summary="Cancel one occurrence of a series",
        description=(
            "Cancels this occurrence only (attendees get a cancellation for it, `sequence` "
            "goes up); answers the occurrence. Cancelling it again answers the same. A one-off "
            "meeting is cancelled with DELETE meetings/{id}/ (`not_recurring`)."
        ),
        parameters=[ID_PARAMETER, OCCURRENCE_ID_PARAMETER],
        request=None,
        responses={200: OccurrenceSerializer},
        examples=[
            OpenApiExample(
                "Cancelled",
                response_only=True,
                value={**OCCURRENCE_EXAMPLE, "status": "cancelled"},
            )
        ],
    )
    def post(self, request: Request, id: int, occurrence_id: str) -> Response:  # noqa: A002
        recurrence_id = _recurrence_id(occurrence_id)
        meeting = _meeting(self.agency, id)
        with service_errors():
            occurrence_cancel(
                actor=acting_member(meeting), meeting=meeting, recurrence_id=recurrence_id
            )
        return _answer(self.agency, id, recurrence_id)


class OccurrenceMoveView(ApiView):
    scopes = {"POST": "meetings:write"}

    @extend_schema(
        tags=TAGS,
        operation_id="meetings_occurrences_move",
        summary="Move one occurrence of a series",
        description=(
            "Gives this occurrence new times (the room follows: 409 `no_capacity` when it "
            "cannot); the rest of the series stays. The id stays the original start."
        ),
        parameters=[ID_PARAMETER, OCCURRENCE_ID_PARAMETER],
        request=OccurrenceMoveSerializer,
        responses={200: OccurrenceSerializer},
        examples=[
            OpenApiExample(
                "To Tuesday afternoon",
                request_only=True,
                value={"start": "2027-04-06T14:00:00+02:00", "end": "2027-04-06T15:00:00+02:00"},
            ),
            OpenApiExample(
                "Moved",
                response_only=True,
                value={
                    **OCCURRENCE_EXAMPLE,
                    "start": "2027-04-06T14:00:00+02:00",
                    "end": "2027-04-06T15:00:00+02:00",
                    "moved": True,
                },
            ),
        ],
    )
    def post(self, request: Request, id: int, occurrence_id: str) -> Response:  # noqa: A002
        recurrence_id = _recurrence_id(occurrence_id)
        meeting = _meeting(self.agency, id)
        body = OccurrenceMoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with service_errors():
            occurrence_move(
                actor=acting_member(meeting),
                meeting=meeting,
                recurrence_id=recurrence_id,
                start=body.validated_data["start"],
                end=body.validated_data["end"],
            )
        return _answer(self.agency, id, recurrence_id)


urlpatterns = [
    path(
        "meetings/<int:id>/occurrences/",
        OccurrenceListView.as_view(),
        name="api-meeting-occurrences",
    ),
    path(
        "meetings/<int:id>/occurrences/<str:occurrence_id>/cancel/",
        OccurrenceCancelView.as_view(),
        name="api-occurrence-cancel",
    ),
    path(
        "meetings/<int:id>/occurrences/<str:occurrence_id>/move/",
        OccurrenceMoveView.as_view(),
        name="api-occurrence-move",
    ),
]
