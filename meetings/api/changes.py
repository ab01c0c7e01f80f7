"""REST API: delta sync of the agency's meetings (``changes/``), syncToken style."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agencies.models import ApiKey
from meetings.changes import ChangeEntry, ChangesPage, changes_page
from meetings.models import ChangeType
from meetings.selectors import meetings_visible_to_agency
from meetings.serializers import (
    MeetingSerializer,
    meeting_representations,
    meetings_for_representation,
)
from visio_broker.api import (
    PROBLEM_CONTENT_TYPE,
    ApiView,
    InputSerializer,
    ProblemSerializer,
    api_key,
    query_data,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200

DESCRIPTION = """\
Delta sync of the meetings your agency hosts, in commit order: no change is ever skipped,
also while meetings are being written.

1. **Full sync**: call without `cursor`. The answer lists every meeting of the agency (cancelled
   ones included) as `created` or `cancelled` entries, paged; follow `next_cursor` while
   `has_more` is true.
2. **Delta sync**: keep the last `next_cursor` and call again with it, now and later: you get
   the meetings `created`, `updated` (attendees' answers included) and `cancelled` since, in the
   order they were committed. An empty page still returns a `next_cursor`; keep the latest.

Changes committed while a full sync is under way come again in the delta sync that follows it,
so apply entries as upserts by `meeting_id`. Each entry carries the meeting's current state, so
several entries of one meeting on a page all show its latest version (null if it no longer
exists). Entries are kept for `CHANGES_RETENTION_DAYS` (30 days by default): an older cursor,
or one that was altered or made for another agency, answers **410 Gone** (`cursor_expired`,
`cursor_invalid`) — discard your copy and full sync again."""


class ChangesQuerySerializer(InputSerializer):
    cursor = serializers.CharField(
        required=False,
        help_text="The `next_cursor` of your last call; leave it out to start a full sync.",
    )
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
    )


class ChangeSerializer(serializers.Serializer[ChangeEntry]):
    seq = serializers.IntegerField(
        allow_null=True,
        help_text="Position in the agency's commit order; null for entries of a full sync.",
    )
    type = serializers.ChoiceField(choices=ChangeType.values)
    meeting_id = serializers.IntegerField()
    changed_at = serializers.DateTimeField()
    meeting = MeetingSerializer(
        allow_null=True, help_text="The meeting as it is now; null if it no longer exists."
    )


class ChangesPageSerializer(serializers.Serializer[ChangesPage]):
    changes = ChangeSerializer(source="entries", many=True)
    next_cursor = serializers.CharField(help_text="Send it as `cursor` next time.")
    has_more = serializers.BooleanField(help_text="More entries are waiting: call again now.")


class ChangesView(ApiView):
    scopes = {"GET": "meetings:read"}

    @extend_schema(
        operation_id="changes_list",
        summary="Meetings created, updated and cancelled since a cursor",
        description=DESCRIPTION,
        parameters=[ChangesQuerySerializer],
        responses={
            (200, "application/json"): OpenApiResponse(
                ChangesPageSerializer, description="A page of changes and the cursor to go on."
            ),
            (410, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description=(
                    "The cursor expired (`cursor_expired`) or is not valid (`cursor_invalid`): "
                    "full sync again, without a cursor."
                ),
            ),
        },
        examples=[
            OpenApiExample(
                "A delta page",
                response_only=True,
                status_codes=["200"],
                value={
                    "changes": [
                        {
                            "seq": 4812,
                            "type": "updated",
                            "meeting_id": 1042,
                            "changed_at": "2027-03-01T09:12:44Z",
                            "meeting": {"id": 1042, "title": "Comité de pilotage", "...": "…"},
                        },
                        {
                            "seq": 4813,
                            "type": "cancelled",
                            "meeting_id": 977,
                            "changed_at": "2027-03-01T09:15:02Z",
                            "meeting": {"id": 977, "status": "cancelled", "...": "…"},
                        },
                    ],
                    "next_cursor": "djE6MTI6NDgxMw.Zr4kq1-abc",
                    "has_more": False,
                },
            ),
            OpenApiExample(
                "Cursor expired",
                response_only=True,
                status_codes=["410"],
                value={
                    "type": "urn:visio-broker:problem:cursor_expired",
                    "title": "Gone",
                    "status": 410,
                    "detail": "This cursor is too old; sync again from scratch.",
                    "code": "cursor_expired",
                },
            ),
        ],
    )
    def get(self, request: Request) -> Response:
        query = ChangesQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        page = changes_page(
            agency=self.agency,
            cursor=query.validated_data.get("cursor"),
            limit=query.validated_data["page_size"],
            meetings=meetings_for_representation(meetings_visible_to_agency(agency=self.agency)),
        )
        return Response(changes_page_representation(page, api_key(request)))


_CHANGED_AT = serializers.DateTimeField(read_only=True)


def changes_page_representation(page: ChangesPage, key: ApiKey | None) -> dict[str, Any]:
    """``ChangesPageSerializer(page).data`` as plain dicts: each meeting represented once."""
    meetings = {entry.meeting.pk: entry.meeting for entry in page.entries if entry.meeting}
    shown = dict(zip(meetings, meeting_representations(list(meetings.values()), key), strict=True))
    return {
        "changes": [
            {
                "seq": entry.seq,
                "type": str(entry.type),
                "meeting_id": entry.meeting_id,
                "changed_at": _CHANGED_AT.to_representation(entry.changed_at),
                "meeting": shown[entry.meeting.pk] if entry.meeting else None,
            }
            for entry in page.entries
        ],
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
    }


urlpatterns: list[URLPattern] = [path("changes/", ChangesView.as_view(), name="api_changes")]
