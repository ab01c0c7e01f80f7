"""REST API: free/busy of people on this service, for an agency's scheduling system.

The API key is no person and shares no meeting, so it gets what a calendar server gives outside
parties (an iCalendar VFREEBUSY, Exchange's "free/busy time only"): busy intervals, never titles
or meeting ids, whichever agency hosts the meetings. Addresses without an account here are
``unknown``, not free.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, cast

from django.contrib.auth.models import AnonymousUser
from django.urls import path
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.request import Request
from rest_framework.response import Response

from agencies.models import ApiScope, User
from meetings import freebusy as fb
from meetings.serializers import AwareDateTimeField
from visio_broker.api import ApiView, JsonBodySerializer
from visio_broker.errors import InvalidInput

# The free/busy module's refusals → the field of the body they are about.
_FIELD_OF_ERROR = {
    "naive_datetime": "start",
    "end_before_start": "end",
    "window_too_long": "end",
    "too_many_attendees": "attendees",
}


class FreeBusyRequestSerializer(JsonBodySerializer):
    attendees = serializers.ListField(
        child=serializers.EmailField(),
        min_length=1,
        max_length=fb.MAX_PEOPLE,
        help_text=f"Email addresses, at most {fb.MAX_PEOPLE}.",
    )
    start = AwareDateTimeField(help_text="Start of the window (inclusive), with a UTC offset.")
    end = AwareDateTimeField(
        help_text=f"End of the window (exclusive), at most {fb.MAX_WINDOW.days} days after start."
    )


class BusyIntervalSerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField(help_text="UTC, clipped to the window.")
    end = serializers.DateTimeField(help_text="UTC, clipped to the window.")


class AttendeeFreeBusySerializer(serializers.Serializer[Any]):
    email = serializers.CharField(help_text="The address as given.")
    status = serializers.ChoiceField(
        choices=["known", "unknown"],
        help_text="`unknown`: no account on this service, so nothing is known (`busy` is empty).",
    )
    busy = BusyIntervalSerializer(
        many=True, help_text="Busy time, overlapping meetings merged, sorted."
    )


class FreeBusySerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    attendees = AttendeeFreeBusySerializer(many=True)


class FreeBusyView(ApiView):
    scopes = {"POST": ApiScope.FREEBUSY_READ}
    # A read sent as POST (the list of people can be long): nothing to make safe to retry, and
    # people's busy times are not kept for replays.
    idempotent_replay = False

    @extend_schema(
        operation_id="freebusy_query",
        summary="Read free/busy",
        description=(
            "Busy intervals of each address inside a window of at most "
            f"{fb.MAX_WINDOW.days} days, for at most {fb.MAX_PEOPLE} people. Every meeting "
            "they organize or attend counts, unless they declined it; cancelled meetings and "
            "occurrences do not. Times only: titles are never shown to an API key. Addresses "
            "without an account on this service answer `unknown`. A read: nothing changes."
        ),
        request=FreeBusyRequestSerializer,
        responses={200: FreeBusySerializer},
        examples=[
            OpenApiExample(
                "Two people, one week",
                value={
                    "attendees": ["alice@agency.example", "partner@elsewhere.example"],
                    "start": "2027-03-29T00:00:00+02:00",
                    "end": "2027-04-05T00:00:00+02:00",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Their busy time",
                value={
                    "start": "2027-03-28T22:00:00+00:00",
                    "end": "2027-04-04T22:00:00+00:00",
                    "attendees": [
                        {
                            "email": "alice@agency.example",
                            "status": "known",
                            "busy": [
                                {
                                    "start": "2027-03-29T08:00:00+00:00",
                                    "end": "2027-03-29T09:30:00+00:00",
                                }
                            ],
                        },
                        {"email": "partner@elsewhere.example", "status": "unknown", "busy": []},
                    ],
                },
                response_only=True,
                status_codes=["200"],
            ),
        ],
        tags=["freebusy"],
    )
    def post(self, request: Request) -> Response:
        serializer = FreeBusyRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        emails = list(dict.fromkeys(data["attendees"]))
        try:
            # Nobody: meetings_visible_to() shows an anonymous viewer no meeting, so no title.
            found = fb.freebusy(
                viewer=cast(User, AnonymousUser()),
                emails=emails,
                start=data["start"],
                end=data["end"],
            )
        except InvalidInput as exc:
            field = _FIELD_OF_ERROR.get(exc.code, "non_field_errors")
            raise serializers.ValidationError(
                {field: [ErrorDetail(exc.message, code=exc.code)]}
            ) from None
        start, end = (data[name].astimezone(UTC) for name in ("start", "end"))
        body = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "attendees": [
                {
                    "email": email,
                    "status": "known" if found[email].known else "unknown",
                    "busy": [
                        {"start": busy.start.isoformat(), "end": busy.end.isoformat()}
                        for busy in found[email].busy
                    ],
                }
                for email in emails
            ],
        }
        return Response(body)


urlpatterns = [path("freebusy/", FreeBusyView.as_view(), name="api-freebusy")]
