"""REST API: members' personal calendar feed URLs, for an agency's intranet or directory.

The agency's system acts as the member: the services run with the member as ``actor`` and the
audit row names the API key, on the member's behalf (visio_broker.audit). The URL is a secret
capability, so responses are never kept for Idempotency-Key replays.
"""

from __future__ import annotations

from typing import Any

from django.db.models.functions import Lower
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agencies.models import Agency, ApiScope, User
from agencies.selectors import agency_members
from meetings import feeds
from meetings.models import FeedToken
from meetings.services import feed_token_create, feed_token_rotate
from visio_broker.api import PROBLEM_CONTENT_TYPE, ApiView, JsonBodySerializer, ProblemSerializer
from visio_broker.errors import NotFound


class FeedRequestSerializer(JsonBodySerializer):
    email = serializers.EmailField(help_text="An active member of the key's agency.")


class FeedSerializer(serializers.Serializer[Any]):
    email = serializers.EmailField(help_text="The member whose meetings the feed holds.")
    url = serializers.URLField(help_text="The subscription URL (https). Keep it secret.")
    webcal_url = serializers.CharField(
        help_text="The same feed as a webcal:// link, which opens calendar apps directly."
    )


def _member(agency: Agency, email: str) -> User:
    membership = (
        agency_members(agency=agency)
        .annotate(email_ci=Lower("user__email"))
        .filter(email_ci=email.strip().lower(), user__is_active=True)
        .first()
    )
    if membership is None:
        raise NotFound(
            _("No active member of your agency has this email address."), code="member_not_found"
        )
    return membership.user


def _body(member: User, feed: FeedToken) -> dict[str, str]:
    urls = feeds.feed_urls(feed)
    return {"email": member.email, "url": urls.https, "webcal_url": urls.webcal}


_NOT_A_MEMBER = {
    (404, PROBLEM_CONTENT_TYPE): OpenApiResponse(
        ProblemSerializer,
        description="`member_not_found`: no active member of the key's agency has this address.",
    )
}
_REQUEST_EXAMPLE = OpenApiExample(
    "A member", value={"email": "alice@agency.example"}, request_only=True
)
_SAMPLE_URL = "visio.example/feeds/q1Xb0VpZr3yH9mKc2sTnW4aLd8eJfU6oGiBhN5vR7tY.ics"


def _response_example(status_code: str) -> OpenApiExample:
    return OpenApiExample(
        "The feed URL",
        value={
            "email": "alice@agency.example",
            "url": f"https://{_SAMPLE_URL}",
            "webcal_url": f"webcal://{_SAMPLE_URL}",
        },
        response_only=True,
        status_codes=[status_code],
    )


class FeedView(ApiView):
    scopes = {"POST": ApiScope.FEEDS_MANAGE}
    # The response holds a secret URL: never kept for an Idempotency-Key replay. The call
    # returns the same URL when repeated anyway.
    idempotent_replay = False

    @extend_schema(
        operation_id="feeds_get_or_create",
        summary="Get a member's calendar feed URL",
        description=(
            "The subscription URL of the member's personal calendar (every meeting they "
            "organize or attend), created on the first call; later calls return the same URL "
            "until it is rotated. The member must be an active member of the key's agency "
            "(`404 member_not_found` otherwise). The URL is the only credential a calendar "
            "client needs: hand it to the member only."
        ),
        request=FeedRequestSerializer,
        responses={
            200: OpenApiResponse(FeedSerializer, description="The member's existing feed."),
            201: OpenApiResponse(FeedSerializer, description="A feed created by this call."),
            **_NOT_A_MEMBER,
        },
        examples=[_REQUEST_EXAMPLE, _response_example("200"), _response_example("201")],
        tags=["feeds"],
    )
    def post(self, request: Request) -> Response:
        serializer = FeedRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member = _member(self.agency, serializer.validated_data["email"])
        feed = feeds.personal_feed_of(member)
        created = feed is None
        if feed is None:
            feed = feed_token_create(actor=member)
        return Response(
            _body(member, feed),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Cache-Control": "no-store"},
        )


class FeedRotateView(ApiView):
    scopes = {"POST": ApiScope.FEEDS_MANAGE}
    # The response holds a secret URL: never kept for an Idempotency-Key replay.
    idempotent_replay = False

    @extend_schema(
        operation_id="feeds_rotate",
        summary="Replace a member's calendar feed URL",
        description=(
            "A new subscription URL for the member's calendar; the previous one stops working "
            "at once (404), so calendars subscribed to it must subscribe again. Use it when a "
            "URL leaked. A member without a feed gets a new one. Each call rotates again."
        ),
        request=FeedRequestSerializer,
        responses={200: FeedSerializer, **_NOT_A_MEMBER},
        examples=[_REQUEST_EXAMPLE, _response_example("200")],
        tags=["feeds"],
    )
    def post(self, request: Request) -> Response:
        serializer = FeedRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member = _member(self.agency, serializer.validated_data["email"])
        feed = feeds.personal_feed_of(member)
        if feed is None:
            feed = feed_token_create(actor=member)
        else:
            feed = feed_token_rotate(actor=member, feed=feed)
        return Response(_body(member, feed), headers={"Cache-Control": "no-store"})


urlpatterns = [
    path("feeds/", FeedView.as_view(), name="api-feeds"),
    path("feeds/rotate/", FeedRotateView.as_view(), name="api-feeds-rotate"),
]
