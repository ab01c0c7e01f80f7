"""LiveKit webhooks: verify, then record the event through one service.

LiveKit signs each POST with a JWT in ``Authorization`` (no "Bearer"): issued by one of its API
keys, valid for minutes, carrying ``sha256`` = base64 of the SHA-256 of the raw body. Anything that
does not verify answers 401 and writes nothing. The token is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import jwt
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from livekit.api import TokenVerifier, WebhookReceiver
from livekit.protocol.webhook import WebhookEvent

from rooms import services
from rooms.models import BackendKind, MediaBackend

logger = logging.getLogger(__name__)

CONTENT_TYPES = frozenset({"application/webhook+json", "application/json"})
# Payload keys that hold secrets: the room's TURN password is sent with every room object.
SECRET_KEYS = frozenset({"turnPassword", "turn_password"})


class WebhookRejected(Exception):
    """The request is not a webhook we can trust; the reason goes to the log only."""


@csrf_exempt
@require_POST
def livekit_webhook(request: HttpRequest) -> HttpResponse:
    if request.content_type not in CONTENT_TYPES:
        return JsonResponse({"error": "unsupported_media_type"}, status=415)
    body = request.body
    try:
        backend, event = _verify(body, request.headers.get("Authorization", ""))
    except WebhookRejected as exc:
        logger.warning("LiveKit webhook rejected: %s", exc)
        return JsonResponse({"error": "unauthorized"}, status=401)
    data = _event_data(event, body)
    stored, created = services.provider_event_record(backend=backend, data=data)
    logger.info(
        "LiveKit webhook %s %s from %s%s",
        stored.event_id,
        data.event,
        backend.name,
        "" if created else " (replay)",
    )
    return JsonResponse({"status": "stored" if created else "duplicate"})


def _verify(body: bytes, token: str) -> tuple[MediaBackend, WebhookEvent]:
    if not token:
        raise WebhookRejected("no Authorization header")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("body is not UTF-8") from None
    try:
        # Only to learn which key signed it; the signature is checked below with that key.
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise WebhookRejected("malformed token") from None
    if not isinstance(issuer, str) or not issuer:
        raise WebhookRejected("token without issuer")
    candidates = list(
        MediaBackend.objects.filter(kind=BackendKind.LIVEKIT, enabled=True, api_key=issuer)
    )
    if not candidates:
        raise WebhookRejected("unknown API key")
    failure = "signature"
    for backend in candidates:
        try:
            secret = backend.secret()
        except ImproperlyConfigured:
            logger.error("LiveKit backend %s has no readable secret", backend.name)
            continue
        receiver = WebhookReceiver(TokenVerifier(issuer, secret))
        try:
            return backend, receiver.receive(text, token)
        except Exception as exc:  # the SDK raises bare Exception for a hash mismatch
            failure = type(exc).__name__ if type(exc) is not Exception else str(exc)
    raise WebhookRejected(f"verification failed ({failure})")


def _event_data(event: WebhookEvent, body: bytes) -> services.ProviderEventData:
    room = event.room
    participant = event.participant
    return services.ProviderEventData(
        # LiveKit always sends an id; without one, the body itself names the event.
        event_id=event.id[:100]
        or "sha256:" + base64.b64encode(hashlib.sha256(body).digest()).decode(),
        event=event.event[:64],
        occurred_at=_seconds(event.created_at) or timezone.now(),
        room_name=room.name[:200],
        room_sid=room.sid[:100],
        room_started_at=_millis(room.creation_time_ms) or _seconds(room.creation_time),
        participant_sid=participant.sid[:100],
        participant_identity=participant.identity[:200],
        participant_name=participant.name[:200],
        participant_joined_at=_millis(participant.joined_at_ms) or _seconds(participant.joined_at),
        payload=_redacted(json.loads(body)),
    )


def _seconds(value: int) -> datetime | None:
    return _epoch(value)


def _millis(value: int) -> datetime | None:
    return _epoch(value / 1000)


def _epoch(value: float) -> datetime | None:
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items() if k not in SECRET_KEYS}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
