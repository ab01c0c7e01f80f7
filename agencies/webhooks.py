"""Agency webhooks: events about the agency's meetings and rooms, delivered to its endpoints.

Follows the Standard Webhooks specification (https://www.standardwebhooks.com/):

- ``webhooks_emit`` runs inside the transaction of the change and writes one outbox row per
  subscribed endpoint (kind ``webhook``), so a rolled-back change sends nothing. The message id
  (``webhook-id: msg_…``) is fixed then: every retry reuses it and receivers deduplicate by it.
- The body is ``{"type": …, "timestamp": RFC 3339, "data": {…}}`` with a thin ``data``; the
  agency fetches the full meeting from ``GET /api/v1/meetings/{id}/``.
- ``webhook_deliver`` (the outbox sender) signs each attempt with the endpoint's ``whsec_``
  secret, POSTs it through ``visio_broker.http`` and logs the attempt (``WebhookAttempt``).
  2xx is delivered; 410 Gone disables the endpoint; anything else is retried on
  ``RETRY_DELAYS`` (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then at the day's end) and
  the delivery fails a day after the event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from standardwebhooks import Webhook

from agencies.models import WebhookAttempt, WebhookDisabledReason, WebhookEndpoint
from visio_broker.errors import InvalidInput
from visio_broker.http import HttpError, http_request, redact_url
from visio_broker.outbox import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    notification_enqueue,
    sender,
)

if TYPE_CHECKING:
    from agencies.models import Agency
    from meetings.models import Attendee, Meeting
    from rooms.models import RoomReservation
    from visio_broker.models import Notification

KIND = "webhook"
MAX_ENDPOINTS_PER_AGENCY = 20
MAX_URL_LENGTH = 2000
# Waits after attempt 1, 2, …; the Standard Webhooks / Svix schedule. No attempt is made more
# than RETRY_WINDOW after the event: the last wait is cut short to end there.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
RETRY_WINDOW = timedelta(days=1)
# After a rotation the previous secret signs too (a second signature) for this long.
SECRET_OVERLAP = timedelta(hours=24)
TIMEOUT = (5.0, 15.0)
_MAX_RESPONSE_BYTES = 64 * 1024
_MAX_ERROR_LENGTH = 500


# --- Secrets and signatures -------------------------------------------------------------------


def new_secret_nonce() -> str:
    return secrets.token_urlsafe(24)


def webhook_secret(endpoint_id: int, nonce: str) -> str:
    """The endpoint's ``whsec_`` secret: base64 of HMAC-SHA256(WEBHOOK_SECRET_KEY, "id:nonce")."""
    mac = hmac.new(
        settings.WEBHOOK_SECRET_KEY.encode(), f"{endpoint_id}:{nonce}".encode(), hashlib.sha256
    ).digest()
    return "whsec_" + base64.b64encode(mac).decode()


def webhook_secret_of(endpoint: WebhookEndpoint) -> str:
    return webhook_secret(endpoint.pk, endpoint.secret_nonce)


def webhook_headers(
    endpoint: WebhookEndpoint, *, webhook_id: str, body: str, at: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt; during a rotation, signed with both secrets."""
    signed_at = datetime.fromtimestamp(int(at.timestamp()), tz=UTC)
    nonces = [endpoint.secret_nonce]
    if (
        endpoint.previous_secret_nonce
        and endpoint.previous_secret_until is not None
        and endpoint.previous_secret_until > at
    ):
        nonces.append(endpoint.previous_secret_nonce)
    signatures = [
        Webhook(webhook_secret(endpoint.pk, nonce)).sign(webhook_id, signed_at, body)
        for nonce in nonces
    ]
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "Content-Type": "application/json",
    }


# --- Endpoint URLs (SSRF) ---------------------------------------------------------------------


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


def _is_private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _is_private(host)
    except ValueError:
        return False  # a host name: checked again, resolved, at each delivery


def webhook_url_check(url: str) -> str:
    """The URL if an endpoint may use it; InvalidInput with a precise code otherwise.

    https only (unless WEBHOOK_ALLOW_HTTP), no credentials, no loopback, private or link-local
    address (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS).
    """
    url = url.strip()
    invalid = InvalidInput(_("Enter a valid https:// URL."), code="invalid_url")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise invalid from None
    if len(url) > MAX_URL_LENGTH or parts.scheme not in ("http", "https") or not host:
        raise invalid
    if parts.scheme == "http" and not settings.WEBHOOK_ALLOW_HTTP:
        raise InvalidInput(_("Webhook URLs must use https://."), code="https_required")
    if "@" in parts.netloc:
        raise InvalidInput(
            _("Webhook URLs may not contain a user name or password; requests are signed."),
            code="credentials_in_url",
        )
    if parts.fragment:
        raise InvalidInput(_("Webhook URLs may not contain a #fragment."), code="invalid_url")
    if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and _is_private_host(host):
        raise InvalidInput(
            _("Webhook URLs must point to a public address."), code="private_address"
        )
    return url


def _refuse_private_destination(url: str) -> None:
    """At delivery: a host name may resolve to a private address (or start to, later on)."""
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return  # the request itself reports the resolution failure
    if any(_is_private(str(info[4][0])) for info in infos):
        raise PermanentDeliveryError(f"{redact_url(url)} resolves to a non-public address")


# --- Emitting events ------------------------------------------------------------------------


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _meeting_data(meeting: Meeting) -> dict[str, Any]:
    return {
        "id": meeting.pk,
        "uid": meeting.uid,
        "status": meeting.status,
        "sequence": meeting.sequence,
        "title": meeting.title,
        "start": _rfc3339(meeting.start),
        "end": _rfc3339(meeting.end),
        "timezone": meeting.timezone,
        "updated_at": _rfc3339(meeting.updated_at),
    }


def _event_data(
    agency: Agency,
    event: str,
    *,
    meeting: Meeting | None = None,
    attendee: Attendee | None = None,
    reservation: RoomReservation | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"agency": agency.slug}
    if reservation is not None:
        meeting = meeting or reservation.meeting
        data["room"] = {
            "id": reservation.pk,
            "backend": reservation.backend.name,
            "backend_kind": reservation.backend.kind,
            "title": reservation.title if reservation.meeting_id is None else "",
            "started_at" if event == "room.started" else "finished_at": _rfc3339(occurred_at),
        }
    data["meeting"] = _meeting_data(meeting) if meeting is not None else None
    if attendee is not None:
        data["attendee"] = {
            "email": attendee.email,
            "status": attendee.partstat,
            "responded_at": _rfc3339(attendee.responded_at),
        }
    return data


def _message_id(event_id: str | None) -> str:
    if event_id:
        # An event that may be reported twice (a provider's webhook) keeps one message id.
        return "msg_" + hashlib.sha256(f"event:{event_id}".encode()).hexdigest()[:32]
    return "msg_" + secrets.token_hex(16)


def webhooks_emit(*, agency: Agency, event: str, **context: Any) -> None:
    """Queue ``event`` for every enabled endpoint of ``agency`` subscribed to it.

    Called inside the transaction of the change. ``context``: ``meeting``, ``attendee`` (for
    attendee.responded), ``reservation`` and ``occurred_at`` (room events), ``event_id`` (a
    stable id of the cause, when it may be reported twice).
    """
    # Filtered in Python: JSON containment is not portable to SQLite (the embedded mode), and an
    # agency has a handful of endpoints at most.
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(
            agency=agency, enabled=True, deleted_at__isnull=True
        ).only("pk", "event_types")
        if event in endpoint.event_types
    ]
    if not endpoints:
        return
    webhook_id = _message_id(context.get("event_id"))
    body = {
        "type": str(event),
        "timestamp": _rfc3339(timezone.now()),
        "data": _event_data(
            agency,
            str(event),
            meeting=context.get("meeting"),
            attendee=context.get("attendee"),
            reservation=context.get("reservation"),
            occurred_at=context.get("occurred_at"),
        ),
    }
    for endpoint in endpoints:
        notification_enqueue(
            kind=KIND,
            recipient=f"webhook-endpoint:{endpoint.pk}",
            payload={"endpoint": endpoint.pk, "webhook_id": webhook_id, "body": body},
            dedup_extra=webhook_id,
        )


# --- Delivering -----------------------------------------------------------------------------


def webhook_retry_at(*, first_at: datetime, attempts: int, now: datetime) -> datetime | None:
    """When attempt ``attempts + 1`` is due, or None: give up (schedule done, or a day passed)."""
    deadline = first_at + RETRY_WINDOW
    if attempts > len(RETRY_DELAYS) or now >= deadline:
        return None
    return min(now + RETRY_DELAYS[attempts - 1], deadline)


@sender(KIND)
def webhook_deliver(notification: Notification) -> None:
    """One attempt, logged whatever happens (the log row commits with the outbox row's
    attempt count, also on failure: ``notification_deliver`` catches delivery errors)."""
    payload = notification.payload
    endpoint = WebhookEndpoint.objects.filter(pk=payload.get("endpoint")).first()
    if endpoint is None or endpoint.is_deleted:
        raise PermanentDeliveryError("the endpoint was deleted")
    if not endpoint.enabled:
        raise PermanentDeliveryError("the endpoint is disabled")
    webhook_id: str = payload["webhook_id"]
    event_type = str(payload["body"].get("type", ""))
    body = json.dumps(payload["body"], separators=(",", ":"), ensure_ascii=False)
    now = timezone.now()
    status: int | None = None
    error = ""
    gone = False
    started = time.monotonic()
    try:
        _refuse_private_destination(endpoint.url)
        response = http_request(
            "POST",
            endpoint.url,
            headers=webhook_headers(endpoint, webhook_id=webhook_id, body=body, at=now),
            body=body,
            timeout=TIMEOUT,
            max_bytes=_MAX_RESPONSE_BYTES,
        )
        status = response.status
        if not 200 <= status < 300:
            error = f"{redact_url(endpoint.url)} answered HTTP {status}"
    except HttpError as exc:
        # Every failure is retried, whatever http.py thinks of it (a 404 during a receiver's
        # deployment, a certificate being renewed): the schedule bounds it to a day anyway.
        status, error = exc.status, exc.message
        gone = exc.status == 410
    except PermanentDeliveryError as exc:
        error = str(exc)
        _log_attempt(notification, endpoint, webhook_id, event_type, None, started, error, None)
        raise
    succeeded = not error
    retry_at = None
    if not succeeded and not gone:
        retry_at = webhook_retry_at(
            first_at=notification.created_at, attempts=notification.attempts, now=now
        )
    _log_attempt(notification, endpoint, webhook_id, event_type, status, started, error, retry_at)
    if succeeded:
        return
    if gone:
        from agencies.services import webhook_endpoint_disable
        from visio_broker.audit import SYSTEM

        webhook_endpoint_disable(actor=SYSTEM, endpoint=endpoint, reason=WebhookDisabledReason.GONE)
        raise PermanentDeliveryError(f"{error}: endpoint disabled")
    if retry_at is None:
        raise PermanentDeliveryError(
            f"gave up after {notification.attempts} attempts over a day; last: {error}"
        )
    raise TemporaryDeliveryError(error, retry_at=retry_at)


def _log_attempt(
    notification: Notification,
    endpoint: WebhookEndpoint,
    webhook_id: str,
    event_type: str,
    status: int | None,
    started: float,
    error: str,
    retry_at: datetime | None,
) -> None:
    WebhookAttempt.objects.create(
        endpoint=endpoint,
        notification=notification,
        webhook_id=webhook_id,
        event_type=event_type,
        attempt=notification.attempts,
        succeeded=not error,
        status_code=status,
        duration_ms=int((time.monotonic() - started) * 1000),
        error=error[:_MAX_ERROR_LENGTH],
        next_attempt_at=retry_at,
    )


# --- Reads ----------------------------------------------------------------------------------


def webhook_endpoints_of(*, agency: Agency) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(agency=agency, deleted_at__isnull=True).order_by(
        "created_at", "id"
    )


def webhook_attempts_of(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookAttempt]:
    return WebhookAttempt.objects.filter(endpoint=endpoint).order_by("-id")


def webhook_recent_attempts(*, agency: Agency, limit: int = 50) -> list[WebhookAttempt]:
    """The agency's latest delivery attempts, newest first, with their endpoint."""
    return list(
        WebhookAttempt.objects.filter(endpoint__agency=agency, endpoint__deleted_at__isnull=True)
        .select_related("endpoint")
        .order_by("-id")[:limit]
    )
