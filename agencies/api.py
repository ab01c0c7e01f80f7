"""REST API: webhooks/ — the agency's webhook endpoints, their secrets and delivery log.

Every operation needs the ``webhooks:manage`` scope. A secret is answered twice only: when the
endpoint is created and when it is rotated; it is never stored in clear (agencies.webhooks).
"""

from __future__ import annotations

import base64
from typing import Any

from django.db import transaction
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from agencies.models import (
    WebhookAttempt,
    WebhookDisabledReason,
    WebhookEndpoint,
    WebhookEventType,
)
from agencies.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from agencies.webhooks import webhook_attempts_of, webhook_endpoints_of, webhook_url_check
from visio_broker.api import (
    ApiView,
    InputSerializer,
    InsufficientScope,
    JsonBodySerializer,
    etagged_response,
    field_errors,
    if_match_check,
    query_data,
    representation_etag,
)
from visio_broker.errors import InvalidInput, NotFound
from visio_broker.models import NotificationStatus

TAGS = ["webhooks"]
SCOPE = "webhooks:manage"
MEETINGS_READ = "meetings:read"
_URL_CODES = {"invalid_url", "https_required", "credentials_in_url", "private_address"}
# Refusals of the subscription services about one field of the body.
_FIELD_OF_ERROR = {**dict.fromkeys(_URL_CODES, "url"), "invalid_event_types": "event_types"}


# --- Serializers ------------------------------------------------------------------------------


class _EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(choices=WebhookEventType.choices)


class WebhookEndpointSerializer(serializers.ModelSerializer[WebhookEndpoint]):
    event_types = _EventTypesField(help_text="The events this endpoint receives.")
    enabled = serializers.BooleanField(
        help_text="False: nothing is delivered (see `disabled_reason`)."
    )
    disabled_reason = serializers.ChoiceField(
        choices=WebhookDisabledReason.choices,
        help_text="Empty while enabled; `admin`: turned off by the agency; `gone`: the receiver "
        "answered 410 Gone.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "event_types",
            "description",
            "enabled",
            "disabled_reason",
            "disabled_at",
            "secret_rotated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        help_text="The signing secret (`whsec_…`), shown this once: store it now. Verify each "
        "delivery's `webhook-signature` with it (Standard Webhooks)."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


def _url_checked(value: str) -> str:
    try:
        return webhook_url_check(value)
    except InvalidInput as exc:
        raise serializers.ValidationError(exc.message, code=exc.code) from None


class WebhookEndpointCreateSerializer(JsonBodySerializer):
    url = serializers.CharField(
        max_length=2000,
        help_text="Where deliveries are POSTed: https://, no user name or password, a public "
        "address.",
    )
    event_types = _EventTypesField(allow_empty=False, help_text="The events to receive.")
    description = serializers.CharField(
        max_length=200, allow_blank=True, required=False, default=""
    )

    def validate_url(self, value: str) -> str:
        return _url_checked(value)

    def validate_event_types(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError(_("List each event type once."), code="duplicate")
        return value


class WebhookEndpointPatchSerializer(WebhookEndpointCreateSerializer):
    url = serializers.CharField(max_length=2000, required=False)
    event_types = _EventTypesField(allow_empty=False, required=False)
    description = serializers.CharField(max_length=200, allow_blank=True, required=False)
    enabled = serializers.BooleanField(
        required=False, help_text="Turn deliveries off, or back on (also after a 410 Gone)."
    )


class WebhookAttemptSerializer(serializers.ModelSerializer[WebhookAttempt]):
    delivery_status = serializers.ChoiceField(
        source="notification.status",
        choices=NotificationStatus.choices,
        allow_null=True,
        read_only=True,
        help_text="Where the message stands now: `pending` (more attempts to come), `sent` or "
        "`failed` (no more attempts).",
    )

    class Meta:
        model = WebhookAttempt
        fields = [
            "id",
            "webhook_id",
            "event_type",
            "attempt",
            "succeeded",
            "status_code",
            "duration_ms",
            "error",
            "next_attempt_at",
            "delivery_status",
            "at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "webhook_id": {"help_text": "The `webhook-id` header: the same on every attempt."},
            "status_code": {"help_text": "The receiver's HTTP status; null without an answer."},
            "next_attempt_at": {"help_text": "When the message is tried again, if it is."},
        }


class WebhookAttemptPageSerializer(serializers.Serializer[Any]):
    next = serializers.URLField(allow_null=True, help_text="The next page; null on the last one.")
    results = WebhookAttemptSerializer(many=True)


class DeliveryListQuerySerializer(InputSerializer):
    page_size = serializers.IntegerField(min_value=1, max_value=200, default=50, required=False)
    cursor = serializers.CharField(required=False, help_text="From a previous page's `next`.")

    def validate_cursor(self, value: str) -> int:
        try:
            pk = int(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode())
        except ValueError:
            pk = 0
        if pk <= 0:
            raise serializers.ValidationError(_("This cursor is not valid."), code="invalid_cursor")
        return pk


def _cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


# --- Helpers ----------------------------------------------------------------------------------


def _actor(request: Request) -> str:
    return str(request.user)  # "api-key:vbk_<prefix>": the audit trail names the key


def _represent(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return dict(WebhookEndpointSerializer(endpoint).data)


# --- OpenAPI examples -------------------------------------------------------------------------

ENDPOINT_EXAMPLE = {
    "id": 7,
    "url": "https://agenda.agency.example.gouv.fr/hooks/visio",
    "event_types": ["meeting.created", "meeting.updated", "meeting.cancelled"],
    "description": "Sync to the agency's room booking system",
    "enabled": True,
    "disabled_reason": "",
    "disabled_at": None,
    "secret_rotated_at": None,
    "created_at": "2027-03-01T09:30:00Z",
    "updated_at": "2027-03-01T09:30:00Z",
}
SECRET_EXAMPLE = {**ENDPOINT_EXAMPLE, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
CREATE_EXAMPLE = {
    "url": "https://agenda.agency.example.gouv.fr/hooks/visio",
    "event_types": ["meeting.created", "meeting.updated", "meeting.cancelled"],
    "description": "Sync to the agency's room booking system",
}
ATTEMPT_EXAMPLE = {
    "id": 912,
    "webhook_id": "msg_5f0c9a2be4d14c7f8e2a6b1d3c9e7f01",
    "event_type": "meeting.updated",
    "attempt": 2,
    "succeeded": False,
    "status_code": 503,
    "duration_ms": 184,
    "error": "https://agenda.agency.example.gouv.fr/hooks/visio answered HTTP 503",
    "next_attempt_at": "2027-03-01T10:05:05Z",
    "delivery_status": "pending",
    "at": "2027-03-01T10:00:05Z",
}
DELIVERY_BODY_DOC = (
    'Each delivery is a POST with a JSON body `{"type": "meeting.updated", "timestamp": '
    '"2027-03-01T10:00:00Z", "data": {…}}` and the Standard Webhooks headers `webhook-id`, '
    "`webhook-timestamp` and `webhook-signature` (HMAC-SHA256 with the endpoint's secret). "
    "`data` is thin: the meeting's id, uid, status, sequence, title, start, end and updated_at "
    "(fetch the rest from `GET /api/v1/meetings/{id}/`), the attendee's email and status for "
    "`attendee.responded`, the room and backend for `room.*`. Answer 2xx quickly; anything else "
    "is retried with the same `webhook-id` after 5 s, 5 min, 30 min, 2 h, 5 h and 10 h, for a "
    "day; 410 Gone disables the endpoint."
)
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The endpoint's id."
)


# --- Views ------------------------------------------------------------------------------------


class WebhookListView(ApiView):
    scopes = {"GET": SCOPE, "POST": SCOPE}
    # The creation answers the secret: it must not be kept for an Idempotency-Key replay.
    idempotent_replay = False

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_list",
        summary="List the agency's webhook endpoints",
        description="Every endpoint of the key's agency, enabled or not, oldest first. Secrets "
        "are never listed.",
        responses={200: WebhookEndpointSerializer(many=True)},
        examples=[OpenApiExample("Endpoints", response_only=True, value=[ENDPOINT_EXAMPLE])],
    )
    def get(self, request: Request) -> Response:
        endpoints = webhook_endpoints_of(agency=self.agency)
        return Response(WebhookEndpointSerializer(endpoints, many=True).data)

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_create",
        summary="Register a webhook endpoint",
        description="Registers a URL of the agency's system for the given event types and "
        "answers its signing `secret`, shown this once. " + DELIVERY_BODY_DOC + " URL errors: "
        "`https_required`, `credentials_in_url`, `private_address`, `invalid_url`; 409 "
        "`too_many_endpoints` past 20 endpoints.",
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointWithSecretSerializer},
        examples=[
            OpenApiExample("An endpoint", request_only=True, value=CREATE_EXAMPLE),
            OpenApiExample(
                "Registered", response_only=True, status_codes=["201"], value=SECRET_EXAMPLE
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        body = WebhookEndpointCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _require_meetings_read(request)
        with field_errors(_FIELD_OF_ERROR):
            endpoint, secret = webhook_endpoint_create(
                actor=_actor(request), agency=self.agency, **body.validated_data
            )
        location = request.build_absolute_uri(reverse("api-webhook", kwargs={"id": endpoint.pk}))
        data = {**_represent(endpoint), "secret": secret}
        return Response(data, status=201, headers={"Location": location})


def _require_meetings_read(request: Request) -> None:
    """Every event carries meeting data: pointing deliveries somewhere is reading meetings."""
    if not request.auth.has_scope(MEETINGS_READ):  # type: ignore[union-attr]
        raise InsufficientScope(
            _("Choosing where events go also needs the %(scope)s scope.") % {"scope": MEETINGS_READ}
        )


class _EndpointView(ApiView):
    def _endpoint(self, pk: int, *, lock: bool = False) -> WebhookEndpoint:
        # Scoped to the key's agency: another agency's endpoint is a 404.
        endpoints = webhook_endpoints_of(agency=self.agency)
        if lock:
            endpoints = endpoints.select_for_update(of=("self",))
        endpoint = endpoints.filter(pk=pk).first()
        if endpoint is None:
            raise NotFound(_("No such webhook endpoint."))
        return endpoint

    def _endpoint_matching(self, request: Request, pk: int) -> WebhookEndpoint:
        """The endpoint, row-locked, if the client's If-Match names its current version: two
        systems cannot overwrite each other between the check and the write."""
        endpoint = self._endpoint(pk, lock=True)
        if_match_check(request, representation_etag(_represent(endpoint)))
        return endpoint


class WebhookDetailView(_EndpointView):
    scopes = {"GET": SCOPE, "PATCH": SCOPE, "DELETE": SCOPE}

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_retrieve",
        summary="Read a webhook endpoint",
        description="The endpoint with its `ETag`; the secret is not part of it.",
        parameters=[ID_PARAMETER],
        responses={200: WebhookEndpointSerializer},
        examples=[OpenApiExample("An endpoint", response_only=True, value=ENDPOINT_EXAMPLE)],
    )
    def get(self, request: Request, id: int) -> Response:
        return etagged_response(_represent(self._endpoint(id)))

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_partial_update",
        summary="Change a webhook endpoint",
        description="Changes the fields sent: URL, event types, description, `enabled`. "
        "Turning it back on clears `disabled_reason` (e.g. after a 410 Gone). Deliveries "
        "already queued go to the new URL.",
        parameters=[ID_PARAMETER],
        request=WebhookEndpointPatchSerializer,
        responses={200: WebhookEndpointSerializer},
        examples=[
            OpenApiExample("Pause it", request_only=True, value={"enabled": False}),
            OpenApiExample(
                "Paused",
                response_only=True,
                value={
                    **ENDPOINT_EXAMPLE,
                    "enabled": False,
                    "disabled_reason": "admin",
                    "disabled_at": "2027-03-02T08:00:00Z",
                },
            ),
        ],
    )
    def patch(self, request: Request, id: int) -> Response:
        body = WebhookEndpointPatchSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        if "event_types" in body.validated_data or "url" in body.validated_data:
            _require_meetings_read(request)
        with transaction.atomic():
            endpoint = self._endpoint_matching(request, id)
            with field_errors(_FIELD_OF_ERROR):
                endpoint = webhook_endpoint_update(
                    actor=_actor(request), endpoint=endpoint, **body.validated_data
                )
        return etagged_response(_represent(endpoint))

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_destroy",
        summary="Delete a webhook endpoint",
        description="Stops deliveries at once, queued retries included. The endpoint is gone "
        "from the API (404 afterwards).",
        parameters=[ID_PARAMETER],
        request=None,
        responses={204: OpenApiResponse(description="Deleted.")},
    )
    def delete(self, request: Request, id: int) -> Response:
        with transaction.atomic():
            endpoint = self._endpoint_matching(request, id)
            webhook_endpoint_delete(actor=_actor(request), endpoint=endpoint)
        return Response(status=204)


class WebhookRotateSecretView(_EndpointView):
    scopes = {"POST": SCOPE}
    idempotent_replay = False

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_rotate_secret",
        summary="Rotate a webhook endpoint's secret",
        description="Answers a new signing `secret`, shown this once. For 24 hours deliveries "
        "carry two signatures (new and previous secret) in `webhook-signature`, so the receiver "
        "can switch without losing events; then the previous secret stops signing.",
        parameters=[ID_PARAMETER],
        request=None,
        responses={200: WebhookEndpointWithSecretSerializer},
        examples=[
            OpenApiExample(
                "Rotated",
                response_only=True,
                value={**SECRET_EXAMPLE, "secret_rotated_at": "2027-04-01T08:00:00Z"},
            )
        ],
    )
    def post(self, request: Request, id: int) -> Response:
        endpoint, secret = webhook_endpoint_rotate_secret(
            actor=_actor(request), endpoint=self._endpoint(id)
        )
        return Response({**_represent(endpoint), "secret": secret})


class WebhookDeliveriesView(_EndpointView):
    scopes = {"GET": SCOPE}

    @extend_schema(
        tags=TAGS,
        operation_id="webhooks_deliveries_list",
        summary="List an endpoint's delivery attempts",
        description="The delivery log, newest attempt first: one entry per attempt, with the "
        "receiver's status code or the network error, and when the next attempt is due. Cursor "
        "pagination: follow `next` until it is null.",
        parameters=[ID_PARAMETER, DeliveryListQuerySerializer],
        responses={200: WebhookAttemptPageSerializer},
        examples=[
            OpenApiExample(
                "A page",
                response_only=True,
                value={
                    "next": "https://visio.example.gouv.fr/api/v1/webhooks/7/deliveries/"
                    "?cursor=OTEy",
                    "results": [ATTEMPT_EXAMPLE],
                },
            )
        ],
    )
    def get(self, request: Request, id: int) -> Response:
        endpoint = self._endpoint(id)
        query = DeliveryListQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        page_size: int = query.validated_data["page_size"]
        attempts = webhook_attempts_of(endpoint=endpoint).select_related("notification")
        if "cursor" in query.validated_data:
            attempts = attempts.filter(pk__lt=query.validated_data["cursor"])
        page = list(attempts[: page_size + 1])
        next_url = None
        if len(page) > page_size:
            page = page[:page_size]
            next_url = replace_query_param(
                request.build_absolute_uri(), "cursor", _cursor(page[-1].pk)
            )
        results = WebhookAttemptSerializer(page, many=True).data
        return Response({"next": next_url, "results": results})


urlpatterns: list[URLPattern] = [
    path("webhooks/", WebhookListView.as_view(), name="api-webhooks"),
    path("webhooks/<int:id>/", WebhookDetailView.as_view(), name="api-webhook"),
    path(
        "webhooks/<int:id>/rotate-secret/",
        WebhookRotateSecretView.as_view(),
        name="api-webhook-rotate-secret",
    ),
    path(
        "webhooks/<int:id>/deliveries/",
        WebhookDeliveriesView.as_view(),
        name="api-webhook-deliveries",
    ),
]
