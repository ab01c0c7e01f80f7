"""Every write of the rooms app. Each service runs in one transaction and audits itself.

Sections: backends and their health (below); allocation, join and webhooks are appended by
their own sections. Append new sections; keep imports at the top.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from agencies.models import Agency, User
from meetings.models import Meeting, MeetingStatus
from meetings.selectors import meeting_occurrences
from rooms.models import (
    Attendance,
    BackendKind,
    HealthState,
    LobbyEntry,
    LobbyStatus,
    MediaBackend,
    ProviderEvent,
    ReservedWindow,
    RoomOccupancy,
    RoomReservation,
)
from rooms.providers import Ticket, provider_for
from rooms.providers.base import JoinRole
from rooms.selectors import (
    JoinAccess,
    JoinState,
    JoinWindow,
    Ledger,
    Span,
    adhoc_room_abilities,
    adhoc_room_state,
    backends_allowed_for,
    join_access,
    join_window,
    lobby_secret_hash,
    window_loads,
)
from visio_broker import http
from visio_broker.audit import SYSTEM, audit_record
from visio_broker.errors import (
    BackendUnavailable,
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NoCapacity,
)
from visio_broker.models import Notification
from visio_broker.outbox import notification_enqueue

logger = logging.getLogger(__name__)

Actor = User | str


# --- Backends ---------------------------------------------------------------------------------

# What clients (LiveKit: the SDK's signalling socket) or browsers (Jitsi) may be sent to.
BASE_URL_SCHEMES = {
    BackendKind.LIVEKIT: ("wss", "ws", "https", "http"),
    BackendKind.JITSI: ("https", "http"),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _checked_url(value: str, *, schemes: tuple[str, ...], label: str) -> str:
    value = value.strip()
    # URLValidator knows only http(s)/ftp(s) by default: MediaBackend.base_url's own validator
    # would refuse wss://, so the scheme is checked here, per kind.
    try:
        URLValidator(schemes=list(schemes))(value)
    except ValidationError:
        raise InvalidInput(
            _("%(label)s: expected a URL starting with %(schemes)s, got %(value)s.")
            % {"label": label, "schemes": ", ".join(f"{s}://" for s in schemes), "value": value},
            code="invalid_url",
        ) from None
    parts = urlsplit(value)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput(
            _("%(label)s must not contain credentials, a query or a fragment.") % {"label": label},
            code="invalid_url",
        )
    return value.rstrip("/") if parts.path not in ("", "/") else f"{parts.scheme}://{parts.netloc}"


def validate_backend_urls(
    *, kind: str, base_url: str, frontend_url: str = "", health_url: str = ""
) -> tuple[str, str, str]:
    """The three URLs of a backend, checked for its kind and normalised; raises InvalidInput."""
    base_url = _checked_url(base_url, schemes=BASE_URL_SCHEMES[BackendKind(kind)], label=_("URL"))
    if frontend_url.strip():
        if kind != BackendKind.LIVEKIT:
            raise InvalidInput(
                _("A front-end URL applies to LiveKit backends only."),
                code="invalid_frontend_url",
            )
        frontend_url = _checked_url(
            frontend_url, schemes=("https", "http"), label=_("Front-end URL")
        )
    if health_url.strip():
        health_url = _checked_url(health_url, schemes=("https", "http"), label=_("Health URL"))
    return base_url, frontend_url.strip(), health_url.strip()


def validate_jitsi_sub(*, kind: str, base_url: str, jitsi_sub: str) -> str:
    """Jitsi: the token ``sub``, by default the base URL's host (a Debian install's XMPP
    domain; docker-jitsi-meet uses ``meet.jitsi``). Other kinds have none."""
    if kind != BackendKind.JITSI:
        if jitsi_sub.strip():
            raise InvalidInput(_("A Jitsi sub applies to Jitsi backends only."), code="invalid_sub")
        return ""
    return jitsi_sub.strip() or (urlsplit(base_url).hostname or "")


def validate_backend_capacity(capacity: int) -> None:
    if capacity < 1:
        raise InvalidInput(
            _("Capacity must be at least 1 participant, got %(n)s.") % {"n": capacity},
            code="invalid_capacity",
        )


def validate_backend_secret(backend: MediaBackend) -> None:
    """Exactly one secret source, and a secret readable there now; raises InvalidInput.

    A backend without its secret could not sign a single join token: it is refused now rather
    than at the first meeting. The value is read and dropped, never shown.
    """
    if bool(backend.secret_env) == bool(backend.secret_file):
        raise InvalidInput(
            _("Give exactly one secret source: an environment variable or a file."),
            code="backend_secret_source",
        )
    if backend.secret_env and not _ENV_NAME.match(backend.secret_env):
        raise InvalidInput(
            _("%(name)s is not a valid environment variable name.") % {"name": backend.secret_env},
            code="backend_secret_source",
        )
    if backend.secret_file and not Path(backend.secret_file).is_absolute():
        # Every process (web, workers) must find the same file whatever its working directory.
        raise InvalidInput(
            _("The secret file must be an absolute path, got %(path)s.")
            % {"path": backend.secret_file},
            code="backend_secret_source",
        )
    try:
        backend.secret()
    except ImproperlyConfigured:
        if backend.secret_env:
            message = _("The environment variable %(name)s is not set or empty.") % {
                "name": backend.secret_env
            }
        elif not Path(backend.secret_file).is_file() or not os.access(backend.secret_file, os.R_OK):
            message = _("The secret file %(path)s cannot be read.") % {"path": backend.secret_file}
        else:
            message = _("The secret file %(path)s is empty.") % {"path": backend.secret_file}
        raise InvalidInput(message, code="backend_secret_missing") from None


def backend_create(
    *,
    actor: Actor,
    name: str,
    kind: str,
    base_url: str,
    capacity: int,
    country: str,
    api_key: str,
    agency: Agency | None = None,
    secret_env: str = "",
    secret_file: str = "",
    jitsi_sub: str = "",
    frontend_url: str = "",
    health_url: str = "",
    region: str = "",
    weight: int = 100,
) -> MediaBackend:
    """Register a LiveKit or Jitsi backend, owned by ``agency`` or shared when it is None.

    The signing secret must be readable now from ``secret_env`` or ``secret_file`` (exactly
    one); only its source is stored. Jitsi backends without ``jitsi_sub`` get the base URL's
    host name as the token ``sub`` (the XMPP domain of a standard Debian install).
    """
    if kind not in BackendKind.values:
        raise InvalidInput(
            _("Kind must be one of: %s.") % ", ".join(BackendKind.values), code="invalid_kind"
        )
    kind = BackendKind(kind)
    base_url, frontend_url, health_url = validate_backend_urls(
        kind=kind, base_url=base_url, frontend_url=frontend_url, health_url=health_url
    )
    jitsi_sub = validate_jitsi_sub(kind=kind, base_url=base_url, jitsi_sub=jitsi_sub)
    validate_backend_capacity(capacity)
    if weight < 0:
        raise InvalidInput(
            _("Weight must be 0 or more, got %(n)s.") % {"n": weight}, code="invalid_weight"
        )
    if not api_key.strip():
        raise InvalidInput(_("The API key (Jitsi: app id) is required."), code="invalid_api_key")
    backend = MediaBackend(
        name=name.strip(),
        kind=kind,
        base_url=base_url,
        frontend_url=frontend_url,
        health_url=health_url,
        api_key=api_key.strip(),
        secret_env=secret_env.strip(),
        secret_file=secret_file.strip(),
        jitsi_sub=jitsi_sub,
        country=country.strip().upper(),
        region=region.strip(),
        agency=agency,
        capacity=capacity,
        weight=weight,
    )
    try:
        # URL fields were checked above with the schemes each kind allows.
        backend.full_clean(
            exclude=["base_url", "frontend_url", "health_url"],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as exc:
        raise InvalidInput(
            " ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()),
        ) from None
    validate_backend_secret(backend)
    duplicate = Conflict(
        _("A backend named %(name)s already exists.") % {"name": backend.name},
        code="backend_exists",
    )
    try:
        with transaction.atomic():
            if MediaBackend.objects.filter(name=backend.name).exists():
                raise duplicate
            backend.save()
            audit_record(
                actor=actor,
                action="backend.created",
                obj=backend,
                agency=agency,
                detail={
                    "name": backend.name,
                    "kind": backend.kind,
                    "base_url": backend.base_url,
                    "country": backend.country,
                    "capacity": backend.capacity,
                    "owner": agency.slug if agency else "shared",
                    # Where the secret lives, never the secret.
                    "secret_source": (
                        f"env:{backend.secret_env}"
                        if backend.secret_env
                        else f"file:{backend.secret_file}"
                    ),
                },
            )
    except IntegrityError:
        # Two operators adding the same name at once: the unique index decides.
        raise duplicate from None
    return backend


# --- Backend health ---------------------------------------------------------------------------


def backend_probe_url(backend: MediaBackend) -> str:
    """Where the probe looks: the health URL when set, else the base URL over HTTP(S)."""
    if backend.health_url:
        return backend.health_url
    parts = urlsplit(backend.base_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path.endswith("/") else f"{parts.path}/"
    return f"{scheme}://{parts.netloc}{path}"


def _probe(backend: MediaBackend) -> str:
    """One health request; the error text, or "" when the backend answered as expected."""
    url = backend_probe_url(backend)
    seconds = float(settings.ROOMS_HEALTH_TIMEOUT_SECONDS)
    try:
        response = http.http_request("GET", url, timeout=(seconds, seconds), max_bytes=64 * 1024)
    except http.HttpError as exc:
        return exc.message
    if backend.kind == BackendKind.LIVEKIT:
        # LiveKit's server answers its root with exactly "OK"; anything else is not LiveKit.
        if response.status != 200 or response.body.strip() != b"OK":
            return f"{http.redact_url(url)} answered HTTP {response.status} without the LiveKit OK"
    elif not 200 <= response.status < 300:
        return f"{http.redact_url(url)} answered HTTP {response.status}"
    return ""


def _probe_claim(backend_id: int) -> MediaBackend | None:
    """Claim this round's probe of the backend, or None when it is gone, disabled or taken.

    Two beats (or a retried task) must not both count a probe: the row lock decides who
    probes, and a probe started less than half an interval ago means this round is done.
    """
    now = timezone.now()
    round_gap = timedelta(seconds=settings.ROOMS_HEALTH_INTERVAL_SECONDS / 2)
    with transaction.atomic():
        backend = (
            MediaBackend.objects.select_for_update(skip_locked=True)
            .filter(pk=backend_id, enabled=True)
            .first()
        )
        if backend is None:
            return None
        if backend.last_checked_at and backend.last_checked_at > now - round_gap:
            return None
        # A queryset update: health bookkeeping is not a configuration change (updated_at).
        MediaBackend.objects.filter(pk=backend_id).update(last_checked_at=now)
    return backend


def _probe_record(backend_id: int, error: str) -> tuple[str, str] | None:
    """Count the probe's outcome and move the health state; returns (from, to) on a change."""
    with transaction.atomic():
        backend = MediaBackend.objects.select_for_update().filter(pk=backend_id).first()
        if backend is None:
            return None
        before = HealthState(backend.health_state)
        after = before
        if error:
            backend.consecutive_failures += 1
            backend.consecutive_successes = 0
            if backend.consecutive_failures >= settings.ROOMS_HEALTH_DOWN_AFTER:
                after = HealthState.DOWN
            elif before == HealthState.HEALTHY:
                after = HealthState.DEGRADED
        else:
            backend.consecutive_successes += 1
            backend.consecutive_failures = 0
            if backend.consecutive_successes >= settings.ROOMS_HEALTH_UP_AFTER:
                after = HealthState.HEALTHY
        MediaBackend.objects.filter(pk=backend_id).update(
            health_state=after,
            consecutive_failures=backend.consecutive_failures,
            consecutive_successes=backend.consecutive_successes,
            last_checked_at=timezone.now(),
            last_error=error[:300],
        )
        if after == before:
            return None
        audit_record(
            actor=SYSTEM,
            action="backend.health_changed",
            obj=backend,
            agency=backend.agency,
            detail={
                "from": before.value,
                "to": after.value,
                "error": error[:300],
                "consecutive_failures": backend.consecutive_failures,
                "consecutive_successes": backend.consecutive_successes,
            },
        )
    logger.warning("Backend %s is now %s (was %s). %s", backend.name, after, before, error)
    return before, after


def backend_probe(*, backend: MediaBackend) -> None:
    """Probe one backend, count the outcome and move its health state; audited on change.

    Healthy → degraded after one failure; → down after ROOMS_HEALTH_DOWN_AFTER failures in a
    row; degraded or down → healthy after ROOMS_HEALTH_UP_AFTER successes in a row. Turning down
    moves the backend's upcoming rooms elsewhere (``backend_failover``). The request runs
    outside any transaction: a slow backend must not hold a lock (or SQLite's write lock).
    """
    claimed = _probe_claim(backend.pk)
    if claimed is None:
        return
    error = _probe(claimed)
    change = _probe_record(claimed.pk, error)
    if change is not None and change[1] == HealthState.DOWN:
        # After the commit above: allocation already sees the backend as down while rooms move.
        backend_failover(backend=MediaBackend.objects.get(pk=claimed.pk))


# --- Provider events: occupancy and attendance (LiveKit webhooks) --------------------------------

_USER_IDENTITY = re.compile(r"user-([1-9][0-9]{0,18})")


@dataclass(frozen=True)
class ProviderEventData:
    """A verified provider event, in our terms (the webhook interface builds it)."""

    event_id: str
    event: str
    occurred_at: datetime
    room_name: str = ""
    room_sid: str = ""
    room_started_at: datetime | None = None
    participant_sid: str = ""
    participant_identity: str = ""
    participant_name: str = ""
    participant_joined_at: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def provider_event_record(
    *, backend: MediaBackend, data: ProviderEventData
) -> tuple[ProviderEvent, bool]:
    """Store one provider event once (by its id) and apply it to the room it names.

    Returns the stored event and whether it was new; a replay changes nothing. Events for rooms
    this backend does not hold a reservation for are stored and change nothing else. The stored
    event is the trail of what the provider said: no audit row per webhook.
    """
    with transaction.atomic():
        reservation = None
        if data.room_name:
            reservation = RoomReservation.objects.filter(
                backend=backend, room_name=data.room_name
            ).first()
        # get_or_create inserts under a savepoint: a concurrent duplicate hits the unique
        # event_id, rolls back to it and reads the first copy.
        event, created = ProviderEvent.objects.get_or_create(
            event_id=data.event_id,
            defaults={
                "backend": backend,
                "reservation": reservation,
                "event": data.event,
                "room_name": data.room_name,
                "room_sid": data.room_sid,
                "participant_sid": data.participant_sid,
                "participant_identity": data.participant_identity,
                "participant_name": data.participant_name,
                "occurred_at": data.occurred_at,
                "payload": data.payload,
            },
        )
        if created and reservation is not None:
            _occupancy_apply(reservation, data)
    return event, created


def _occupancy_apply(reservation: RoomReservation, data: ProviderEventData) -> None:
    handler = _HANDLERS.get(data.event)
    if handler is None:
        return
    RoomOccupancy.objects.get_or_create(reservation=reservation)
    # One room's events are applied one at a time: webhooks arrive concurrently and out of order.
    occupancy = RoomOccupancy.objects.select_for_update().get(reservation=reservation)
    handler(occupancy, data)
    occupancy.participants = Attendance.objects.filter(
        reservation=reservation, joined_at__isnull=False, left_at__isnull=True
    ).count()
    occupancy.save()


def _is_stale(occupancy: RoomOccupancy, moment: datetime) -> bool:
    return occupancy.state_changed_at is not None and moment < occupancy.state_changed_at


def _room_started(occupancy: RoomOccupancy, data: ProviderEventData) -> None:
    if _is_stale(occupancy, data.occurred_at):
        return
    occupancy.room_sid = data.room_sid
    occupancy.active_since = data.room_started_at or data.occurred_at
    occupancy.finished_at = None
    occupancy.state_changed_at = data.occurred_at
    _room_event_emit(occupancy, "room.started", occupancy.active_since, data)


def _room_finished(occupancy: RoomOccupancy, data: ProviderEventData) -> None:
    if _is_stale(occupancy, data.occurred_at):
        return
    finished = data.occurred_at
    occupancy.active_since = None
    occupancy.finished_at = finished
    occupancy.state_changed_at = finished
    # Everyone still inside left with the room; sessions that began later are another story.
    Attendance.objects.filter(
        Q(joined_at__isnull=True) | Q(joined_at__lte=finished),
        reservation=occupancy.reservation,
        left_at__isnull=True,
    ).update(left_at=finished, updated_at=timezone.now())
    _room_event_emit(occupancy, "room.finished", finished, data)


def _room_event_emit(
    occupancy: RoomOccupancy, event: str, occurred_at: datetime, data: ProviderEventData
) -> None:
    """The agency's webhooks hear of it, in the transaction that records the provider event."""
    from agencies.webhooks import webhooks_emit  # agencies.webhooks reads rooms models

    reservation = occupancy.reservation
    webhooks_emit(
        agency=reservation.agency,
        event=event,
        reservation=reservation,
        occurred_at=occurred_at,
        event_id=data.event_id,
    )


def _participant_joined(occupancy: RoomOccupancy, data: ProviderEventData) -> None:
    joined = data.participant_joined_at or data.occurred_at
    session = _session(occupancy.reservation, data)
    if session is None:
        session = _new_session(occupancy.reservation, data)
        # A join reported after the room finished: that session ended with the room.
        if (
            occupancy.active_since is None
            and occupancy.finished_at is not None
            and joined <= occupancy.finished_at
        ):
            session.left_at = occupancy.finished_at
    if session.joined_at is None:
        session.joined_at = joined if session.left_at is None else min(joined, session.left_at)
    session.save()
    if occupancy.active_since is None and session.left_at is None:
        # room_started was lost or is still on its way: someone inside means the room is open.
        occupancy.active_since = joined
        occupancy.finished_at = None


def _participant_left(occupancy: RoomOccupancy, data: ProviderEventData) -> None:
    session = _session(occupancy.reservation, data)
    if session is None:
        # The "joined" event is late or lost: record the session from what "left" tells.
        session = _new_session(occupancy.reservation, data)
        session.joined_at = data.participant_joined_at
    if session.left_at is None:
        left = data.occurred_at
        if session.joined_at is not None and left < session.joined_at:
            left = session.joined_at
        session.left_at = left
    session.save()


_HANDLERS: dict[str, Callable[[RoomOccupancy, ProviderEventData], None]] = {
    "room_started": _room_started,
    "room_finished": _room_finished,
    "participant_joined": _participant_joined,
    "participant_left": _participant_left,
    "participant_connection_aborted": _participant_left,
}


def _session(reservation: RoomReservation, data: ProviderEventData) -> Attendance | None:
    """The attendance row an event is about: by the provider's session id, else the open one."""
    if data.participant_sid:
        return Attendance.objects.filter(
            reservation=reservation, participant_sid=data.participant_sid
        ).first()
    if not data.participant_identity:
        return None
    return (
        Attendance.objects.filter(
            reservation=reservation, identity=data.participant_identity, left_at__isnull=True
        )
        .order_by("-joined_at", "-id")
        .first()
    )


def _new_session(reservation: RoomReservation, data: ProviderEventData) -> Attendance:
    user = _user_for_identity(data.participant_identity)
    name = data.participant_name or (str(user) if user else "")
    return Attendance(
        reservation=reservation,
        participant_sid=data.participant_sid,
        identity=data.participant_identity[:200],
        display_name=(name or data.participant_identity)[:200],
        user=user,
    )


def _user_for_identity(identity: str) -> User | None:
    # Join tickets mint users' identities as f"user-{pk}"; guests get lobby-entry ids.
    match = _USER_IDENTITY.fullmatch(identity)
    if match is None:
        return None
    return User.objects.filter(pk=int(match.group(1))).first()


# --- Join: tickets and lobby ---------------------------------------------------------------------

# Guests waiting at one occurrence at most: a link posted somewhere public cannot flood the list.
LOBBY_MAX_WAITING = 200
GUEST_NAME_MAX = 80


class NotInJoinWindow(Conflict):
    code = "not_in_join_window"

    def __init__(self, message: str, *, opens_at: datetime | None) -> None:
        super().__init__(message)
        self.opens_at = opens_at


class LobbyRequired(Forbidden):
    """The person must be admitted from the lobby first (or was refused: code lobby_refused)."""

    code = "lobby_required"


def _join_check(
    *, meeting: Meeting, recurrence_id: datetime | None, user: User | AnonymousUser | None
) -> tuple[JoinAccess, JoinWindow]:
    """Authorization first (nothing about the meeting leaks to others), then the time window."""
    access = join_access(meeting=meeting, user=user)
    if access is None:
        raise Forbidden(_("You are not invited to this meeting."), code="forbidden")
    window = join_window(meeting=meeting, recurrence_id=recurrence_id)
    state = window.state
    if state == JoinState.CANCELLED:
        if meeting.is_cancelled:
            message = _("This meeting is cancelled.")
        else:
            message = _("This occurrence is cancelled.")
        raise Conflict(message, code="meeting_cancelled")
    if state == JoinState.NOT_YET:
        raise NotInJoinWindow(_("The meeting room is not open yet."), opens_at=window.opens_at)
    if state == JoinState.ENDED:
        raise NotInJoinWindow(_("This meeting has ended."), opens_at=None)
    return access, window


def _needs_lobby_entry(access: JoinAccess, user: User | AnonymousUser | None) -> bool:
    # Guests always hold an entry: without a lobby it is admitted at once and is their identity.
    return access.lobby or user is None or not user.is_authenticated


def join_ticket_issue(
    *,
    meeting: Meeting,
    recurrence_id: datetime | None = None,
    user: User | AnonymousUser | None = None,
    lobby_entry: LobbyEntry | None = None,
) -> Ticket:
    """Mint a join token for one occurrence, after authorization, time window and lobby.

    ``recurrence_id`` picks an occurrence of a series (default: the one open now); guests and
    people the lobby holds pass their admitted ``lobby_entry``. The ticket is returned only:
    never stored, logged or mailed.
    """
    access, window = _join_check(meeting=meeting, recurrence_id=recurrence_id, user=user)
    signed_in = cast(User, user) if user is not None and user.is_authenticated else None
    if _needs_lobby_entry(access, user):
        if (
            lobby_entry is None
            or lobby_entry.meeting_id != meeting.pk
            or lobby_entry.occurrence_key != window.key
            or lobby_entry.user_id != (signed_in.pk if signed_in else None)
        ):
            raise LobbyRequired(_("Ask to join first: a moderator lets you in."))
        if lobby_entry.status == LobbyStatus.REFUSED:
            raise LobbyRequired(
                _("A moderator declined your request to join."), code="lobby_refused"
            )
        if lobby_entry.status != LobbyStatus.ADMITTED:
            raise LobbyRequired(_("Please wait: a moderator has not let you in yet."))
    try:
        reservation = meeting.reservation
    except ObjectDoesNotExist:
        reservation = None
    if reservation is None or reservation.released_at is not None:
        raise Conflict(_("No room is reserved for this meeting."), code="no_room")
    if signed_in is not None:
        identity = f"user-{signed_in.pk}"
        name, email = signed_in.display_name or signed_in.email, signed_in.email
    elif lobby_entry is not None:
        identity, name, email = lobby_entry.identity, lobby_entry.display_name, ""
    else:  # unreachable: a guest always needs an admitted entry (checked above)
        raise LobbyRequired(_("Ask to join first: a moderator lets you in."))
    return _ticket_mint(
        reservation=reservation, identity=identity, name=name, email=email, role=access.role
    )


def _ticket_mint(
    *, reservation: RoomReservation, identity: str, name: str, email: str, role: JoinRole
) -> Ticket:
    """A short-lived token for the reservation's room, signed by its backend's provider."""
    backend = reservation.backend
    try:
        return provider_for(backend.kind).mint(
            backend=backend,
            room_name=reservation.room_name,
            identity=identity,
            name=name,
            email=email,
            role=role,
            ttl=timedelta(seconds=settings.JOIN_TOKEN_TTL_SECONDS),
        )
    except (ImproperlyConfigured, LookupError):
        # The operator's problem (a missing secret): logged by name only, never the value.
        logger.exception("Backend %s cannot sign join tokens", backend.name)
        raise BackendUnavailable(
            _("The meeting room cannot be reached right now. Please try again later.")
        ) from None


@dataclass(frozen=True)
class LobbyPass:
    """A lobby entry and, for a guest, the secret that proves it is theirs (kept in the session)."""

    entry: LobbyEntry
    secret: str = field(default="", repr=False)


def lobby_enter(
    *,
    meeting: Meeting,
    recurrence_id: datetime | None = None,
    user: User | AnonymousUser | None = None,
    display_name: str = "",
) -> LobbyPass:
    """Ask to join an occurrence. Signed-in people keep one entry per occurrence; guests get a
    new entry and its secret. Without a lobby (guests of a link meeting) it is admitted at once.
    """
    access, window = _join_check(meeting=meeting, recurrence_id=recurrence_id, user=user)
    if not _needs_lobby_entry(access, user):
        raise InvalidInput(_("You can join this meeting directly."), code="lobby_not_needed")
    status = LobbyStatus.WAITING if access.lobby else LobbyStatus.ADMITTED
    decided_at = None if access.lobby else timezone.now()
    if user is not None and user.is_authenticated:
        person = cast(User, user)
        entry, _created = LobbyEntry.objects.get_or_create(
            meeting=meeting,
            occurrence_key=window.key,
            user=person,
            defaults={
                "display_name": (person.display_name or person.email)[:GUEST_NAME_MAX],
                "status": status,
                "decided_at": decided_at,
            },
        )
        return LobbyPass(entry)
    name = " ".join(display_name.split())
    if not name:
        raise InvalidInput(_("Enter your name."), code="name_required")
    if len(name) > GUEST_NAME_MAX:
        raise InvalidInput(
            _("Use at most %(count)d characters for your name.") % {"count": GUEST_NAME_MAX},
            code="name_too_long",
        )
    waiting = LobbyEntry.objects.filter(
        meeting=meeting, occurrence_key=window.key, status=LobbyStatus.WAITING
    )
    if access.lobby and waiting.count() >= LOBBY_MAX_WAITING:
        raise Conflict(_("Too many people are waiting. Please try again later."), code="lobby_full")
    secret = secrets.token_urlsafe(32)
    entry = LobbyEntry.objects.create(
        meeting=meeting,
        occurrence_key=window.key,
        display_name=name,
        secret_hash=lobby_secret_hash(secret),
        status=status,
        decided_at=decided_at,
    )
    return LobbyPass(entry, secret)


def _lobby_decide(*, actor: User, entry: LobbyEntry, status: LobbyStatus) -> LobbyEntry:
    meeting = entry.meeting
    access = join_access(meeting=meeting, user=actor)
    if access is None or access.role != JoinRole.MODERATOR:
        raise Forbidden(_("Only the meeting's moderators decide who comes in."), code="forbidden")
    with transaction.atomic():
        locked = LobbyEntry.objects.select_for_update().get(pk=entry.pk)
        if locked.status == status:
            return locked
        previous = locked.status
        locked.status = status
        locked.decided_by = actor
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
        audit_record(
            actor=actor,
            action=f"lobby.{status}",
            obj=locked,
            agency=meeting.host_agency,
            detail={
                "meeting": meeting.pk,
                "occurrence": locked.occurrence_key,
                "name": locked.display_name,
                "user": locked.user_id,
                "previous": previous,
            },
        )
    return locked


def lobby_admit(*, actor: User, entry: LobbyEntry) -> LobbyEntry:
    """A moderator lets someone in (also someone refused by mistake); audited."""
    return _lobby_decide(actor=actor, entry=entry, status=LobbyStatus.ADMITTED)


def lobby_refuse(*, actor: User, entry: LobbyEntry) -> LobbyEntry:
    """A moderator turns someone away; they get no token from now on. Audited."""
    return _lobby_decide(actor=actor, entry=entry, status=LobbyStatus.REFUSED)


# --- Allocation ---------------------------------------------------------------------------------
#
# A reservation holds one ReservedWindow per occurrence (within the horizon for series) on one
# backend. Every placement locks the candidate backend rows (FOR UPDATE, in primary-key order so
# two bookings never wait on each other crosswise) before reading their windows, so concurrent
# bookings queue on the lock and the second one sees the first one's windows: capacity cannot be
# over-committed. SQLite (embedded mode) has no row locks; its IMMEDIATE transactions serialise
# writers instead.

ADHOC_MAX_DURATION = timedelta(hours=24)


@dataclass
class FailoverResult:
    """What ``backend_failover`` did: rooms moved elsewhere, and rooms left where they were."""

    moved: list[RoomReservation] = field(default_factory=list)
    stranded: list[RoomReservation] = field(default_factory=list)


@dataclass
class HorizonResult:
    """What ``reservations_extend_horizon`` did."""

    checked: int = 0
    updated: int = 0
    short: list[RoomReservation] = field(default_factory=list)


def _horizon_end(now: datetime) -> datetime:
    return now + timedelta(days=settings.ROOM_RESERVATION_HORIZON_DAYS)


def _meeting_spans(meeting: Meeting, now: datetime) -> list[Span]:
    """Every occurrence still to end: a one-off meeting's own time, a series' within the horizon.

    Cancelled occurrences hold nothing; moved ones hold their new time.
    """
    if meeting.is_cancelled:
        return []
    if not meeting.rrule:
        return [(meeting.start, meeting.end)] if meeting.end > now else []
    return [
        (occurrence.start, occurrence.end)
        for occurrence in meeting_occurrences(meeting, now, _horizon_end(now))
        if not occurrence.cancelled
    ]


def _no_capacity(span: Span, participants: int, zone_name: str) -> NoCapacity:
    zone = ZoneInfo(zone_name)
    start, end = span[0].astimezone(zone), span[1].astimezone(zone)
    end_format = "%H:%M" if start.date() == end.date() else "%Y-%m-%d %H:%M"
    window = f"{start:%Y-%m-%d %H:%M}–{end:{end_format}} ({zone_name})"
    return NoCapacity(
        _(
            "No video backend has room for %(count)d participants on %(window)s. Choose another "
            "time, or ask your administrator for more capacity."
        )
        % {"count": participants, "window": window},
        window_start=span[0],
        window_end=span[1],
    )


def _unavailable(agency: Agency) -> BackendUnavailable:
    if backends_allowed_for(agency).exists():
        return BackendUnavailable(
            _("No video backend your agency may use is available right now; try again later.")
        )
    return BackendUnavailable(
        _("No video backend is configured for your agency; ask your administrator.")
    )


def _place(
    *,
    agency: Agency,
    spans: list[Span],
    participants: int,
    zone_name: str,
    reservation: RoomReservation | None = None,
    keep: MediaBackend | None = None,
    exclude: MediaBackend | None = None,
) -> MediaBackend:
    """Lock the agency's usable backends and choose one that fits ``participants`` in every span.

    ``keep`` wins whenever it fits (a re-reservation stays put); otherwise the agency's own
    backends come first, then higher weight, then more headroom (the smallest margin left over
    the spans). ``reservation``'s own windows do not count against it. Call inside a transaction.
    """
    usable = (
        backends_allowed_for(agency).filter(enabled=True).exclude(health_state=HealthState.DOWN)
    )
    if exclude is not None:
        usable = usable.exclude(pk=exclude.pk)
    candidates = list(usable.select_for_update().order_by("pk"))
    if not candidates:
        raise _unavailable(agency)
    spans = sorted(spans)
    loads = window_loads(
        backend_ids=[b.pk for b in candidates], spans=spans, exclude_reservation=reservation
    )
    # The meeting's own spans count too: a moved occurrence may overlap another one.
    own = [(start, end, participants) for start, end in spans]
    fitting: list[tuple[tuple[int, int, int, int], MediaBackend]] = []
    first_failure: dict[int, Span] = {}
    fits_somewhere: set[Span] = set()
    for backend in candidates:
        ledger = Ledger([*loads[backend.pk], *own])
        headroom = backend.capacity
        for span in spans:
            margin = backend.capacity - ledger.peak(*span)
            headroom = min(headroom, margin)
            if margin < 0:
                first_failure.setdefault(backend.pk, span)
            else:
                fits_somewhere.add(span)
        if backend.pk not in first_failure:
            preference = (
                0 if backend.agency_id == agency.pk else 1,
                -backend.weight,
                -headroom,
                backend.pk,
            )
            fitting.append((preference, backend))
    if fitting:
        chosen = next((b for _p, b in fitting if keep is not None and b.pk == keep.pk), None)
        return chosen or min(fitting, key=lambda item: item[0])[1]
    # Name a span no backend can hold at all; else where the preferred backend first fails.
    blocking = next((span for span in spans if span not in fits_somewhere), None)
    if blocking is None:
        preferred = min(candidates, key=lambda b: (b.agency_id != agency.pk, -b.weight, b.pk))
        blocking = first_failure[preferred.pk]
    raise _no_capacity(blocking, participants, zone_name)


def _store_windows(
    reservation: RoomReservation, spans: list[Span], *, keep_past_before: datetime | None = None
) -> bool:
    """Make the reservation's windows exactly ``spans`` on its backend; True if anything changed.

    Windows that ended before ``keep_past_before`` are left alone (ad-hoc rooms' history).
    """
    existing = list(reservation.windows.all())
    if keep_past_before is not None:
        existing = [w for w in existing if w.end > keep_past_before]
    wanted = Counter(spans)
    stale: list[int] = []
    for window in existing:
        key = (window.start, window.end)
        current = (
            window.backend_id == reservation.backend_id
            and window.participants == reservation.expected_participants
        )
        if current and wanted[key] > 0:
            wanted[key] -= 1
        else:
            stale.append(window.pk)
    if stale:
        ReservedWindow.objects.filter(pk__in=stale).delete()
    added = [
        ReservedWindow(
            reservation=reservation,
            backend_id=reservation.backend_id,
            start=start,
            end=end,
            participants=reservation.expected_participants,
        )
        for (start, end), count in wanted.items()
        for _n in range(count)
    ]
    ReservedWindow.objects.bulk_create(added)
    return bool(stale or added)


def _check_may_reserve(actor: Actor, meeting: Meeting) -> None:
    if meeting.is_cancelled:
        raise InvalidInput(_("This meeting is cancelled."), code="meeting_cancelled")
    if isinstance(actor, User) and not meeting.get_abilities(actor)["edit"]:
        raise Forbidden(_("You may not change this meeting."), code="forbidden")


def _locked_reservation(meeting: Meeting) -> RoomReservation | None:
    return RoomReservation.objects.select_for_update().filter(meeting=meeting).first()


def _reserve(
    *,
    actor: Actor,
    meeting: Meeting,
    reservation: RoomReservation | None,
    participants: int,
    exclude: MediaBackend | None = None,
    action: str = "room.reserved",
    audit: bool = True,
) -> RoomReservation:
    spans = _meeting_spans(meeting, timezone.now())
    active = reservation is not None and reservation.released_at is None
    keep = reservation.backend if reservation is not None and active and exclude is None else None
    backend = _place(
        agency=meeting.host_agency,
        spans=spans,
        participants=participants,
        zone_name=meeting.timezone,
        reservation=reservation,
        keep=keep,
        exclude=exclude,
    )
    previous = reservation.backend if reservation is not None else None
    if reservation is None:
        reservation = RoomReservation.objects.create(
            meeting=meeting,
            agency=meeting.host_agency,
            backend=backend,
            expected_participants=participants,
        )
        unchanged = False
    else:
        unchanged = (
            active
            and reservation.backend_id == backend.pk
            and reservation.expected_participants == participants
        )
        if not unchanged:
            reservation.backend = backend
            reservation.expected_participants = participants
            reservation.released_at = None
            reservation.save(
                update_fields=["backend", "expected_participants", "released_at", "updated_at"]
            )
    windows_changed = _store_windows(reservation, spans)
    if not audit or (unchanged and not windows_changed):
        return reservation
    audit_record(
        actor=actor,
        action=action,
        obj=reservation,
        agency=reservation.agency,
        detail={
            "meeting": meeting.uid,
            "backend": backend.name,
            "previous_backend": previous.name if previous is not None else None,
            "windows": len(spans),
            "expected_participants": participants,
        },
    )
    return reservation


def room_reserve(
    *,
    actor: Actor,
    meeting: Meeting,
    expected_participants: int | None = None,
    audit: bool = True,
) -> RoomReservation:
    """Hold a room for every occurrence of ``meeting`` (series: within the horizon).

    Expected participants: ``expected_participants`` when stated, else the attendee count.
    Re-reserving keeps the room name and, while it still fits, the backend. Raises
    ``no_capacity`` naming a window no allowed backend can hold, ``backend_unavailable`` when
    the agency may use no backend at all; nothing is written then. ``audit=False``: the
    caller's own audit row covers the change (the meeting services).
    """
    if expected_participants is not None and expected_participants < 1:
        raise InvalidInput(
            _("Expect at least one participant."), code="invalid_expected_participants"
        )
    with transaction.atomic():
        _check_may_reserve(actor, meeting)
        reservation = _locked_reservation(meeting)
        participants = expected_participants or max(1, meeting.attendees.count())
        return _reserve(
            actor=actor,
            meeting=meeting,
            reservation=reservation,
            participants=participants,
            audit=audit,
        )


def room_rereserve(
    *, actor: Actor, meeting: Meeting, attendee_delta: int = 0, audit: bool = True
) -> RoomReservation | None:
    """After a change of time or attendees: reserve again, if the meeting has a room.

    ``attendee_delta`` is how many attendees the change added (negative: removed). The room
    follows the attendee count, except that a size stated at booking (one that differed from
    the attendee count) is kept until the attendees outnumber it.
    """
    with transaction.atomic():
        _check_may_reserve(actor, meeting)
        reservation = _locked_reservation(meeting)
        if reservation is None or reservation.released_at is not None:
            return None
        participants = reservation.expected_participants
        if attendee_delta:
            count = meeting.attendees.count()
            before, after = max(1, count - attendee_delta), max(1, count)
            stated = participants if participants != before else 0
            participants = max(stated, after)
        return _reserve(
            actor=actor,
            meeting=meeting,
            reservation=reservation,
            participants=participants,
            audit=audit,
        )


def _sync_windows(
    actor: Actor, meeting: Meeting, *, audit: bool = True
) -> tuple[RoomReservation | None, bool]:
    reservation = _locked_reservation(meeting)
    if reservation is None or reservation.released_at is not None or meeting.is_cancelled:
        return reservation, False
    spans = _meeting_spans(meeting, timezone.now())
    held = Counter((w.start, w.end) for w in reservation.windows.all())
    wanted = Counter(spans)
    if wanted == held:
        return reservation, False
    if wanted - held:
        # New or moved occurrences need capacity: a full placement, which keeps the backend
        # whenever everything still fits there.
        reservation = _reserve(
            actor=actor,
            meeting=meeting,
            reservation=reservation,
            participants=reservation.expected_participants,
            audit=audit,
        )
        return reservation, True
    # Fewer occurrences (cancelled, cut off, or past): capacity is only given back.
    _store_windows(reservation, spans)
    if not audit:
        return reservation, True
    audit_record(
        actor=actor,
        action="room.windows_released",
        obj=reservation,
        agency=reservation.agency,
        detail={"meeting": meeting.uid, "windows": len(spans)},
    )
    return reservation, True


def room_windows_sync(
    *, actor: Actor, meeting: Meeting, audit: bool = True
) -> RoomReservation | None:
    """Match the room's windows to the meeting's occurrences after one was cancelled or moved.

    Windows given back need no check; new ones need capacity (``no_capacity`` otherwise, with
    nothing changed). Meetings without a room are left alone.
    """
    with transaction.atomic():
        if isinstance(actor, User):
            _check_may_reserve(actor, meeting)
        reservation, _changed = _sync_windows(actor, meeting, audit=audit)
    return reservation


def room_release(
    *, actor: Actor, reservation: RoomReservation, audit: bool = True
) -> RoomReservation:
    """Give the room's capacity back: the meeting was cancelled or the ad-hoc room closed."""
    with transaction.atomic():
        reservation = RoomReservation.objects.select_for_update().get(pk=reservation.pk)
        if isinstance(actor, User) and not _may_manage_room(actor, reservation):
            raise Forbidden(_("You may not close this room."), code="forbidden")
        if reservation.released_at is not None:
            return reservation
        reservation.released_at = timezone.now()
        reservation.save(update_fields=["released_at", "updated_at"])
        freed, _by_model = reservation.windows.all().delete()
        if not audit:
            return reservation
        audit_record(
            actor=actor,
            action="room.released",
            obj=reservation,
            agency=reservation.agency,
            detail={
                "meeting": reservation.meeting.uid if reservation.meeting else None,
                "backend": reservation.backend.name,
                "windows": freed,
            },
        )
    return reservation


def room_release_for_meeting(
    *, actor: Actor, meeting: Meeting, audit: bool = True
) -> RoomReservation | None:
    """``room_release`` for the meeting's room, if it has one."""
    reservation = RoomReservation.objects.filter(meeting=meeting).first()
    if reservation is None:
        return None
    return room_release(actor=actor, reservation=reservation, audit=audit)


def _may_manage_room(actor: User, reservation: RoomReservation) -> bool:
    membership = getattr(actor, "membership", None)
    if membership is not None and membership.is_admin:
        if membership.agency_id == reservation.agency_id:
            return True
    if reservation.meeting is not None:
        return reservation.meeting.is_organizer(actor)
    return reservation.created_by_id == actor.pk


def adhoc_room_open(
    *,
    actor: User,
    title: str,
    expected_participants: int = 2,
    duration: timedelta = timedelta(hours=1),
) -> RoomReservation:
    """An ad-hoc "meet now" room from now for ``duration``, placed like a meeting's."""
    membership = getattr(actor, "membership", None)
    if membership is None or not membership.can_book:
        raise Forbidden(_("Only organizers may open a room."), code="not_organizer")
    title = title.strip() or _("Meet now")
    if len(title) > 200:
        raise InvalidInput(_("The title is too long (200 characters at most)."), code="invalid")
    if expected_participants < 1:
        raise InvalidInput(
            _("Expect at least one participant."), code="invalid_expected_participants"
        )
    if not timedelta(0) < duration <= ADHOC_MAX_DURATION:
        raise InvalidInput(_("A room is open for at most 24 hours."), code="too_long")
    with transaction.atomic():
        now = timezone.now()
        span = (now, now + duration)
        backend = _place(
            agency=membership.agency,
            spans=[span],
            participants=expected_participants,
            zone_name=actor.timezone,
        )
        reservation = RoomReservation.objects.create(
            title=title,
            created_by=actor,
            agency=membership.agency,
            backend=backend,
            expected_participants=expected_participants,
        )
        _store_windows(reservation, [span])
        audit_record(
            actor=actor,
            action="room.opened",
            obj=reservation,
            agency=reservation.agency,
            detail={
                "title": title,
                "backend": backend.name,
                "expected_participants": expected_participants,
                "until": span[1].isoformat(),
            },
        )
    return reservation


def _tell_stranded(
    reservation: RoomReservation, backend: MediaBackend, error: DomainError
) -> Notification | None:
    """Outbox row for the organizer of a room that stays on a backend that is down."""
    meeting = reservation.meeting
    organizer = meeting.organizer if meeting is not None else reservation.created_by
    if organizer is None:
        return None
    window = getattr(error, "window_start", None)
    return notification_enqueue(
        kind="room.failover_failed",
        recipient=organizer.email,
        meeting=meeting,
        sequence=meeting.sequence if meeting is not None else 0,
        payload={
            "meeting_uid": meeting.uid if meeting is not None else None,
            "title": meeting.title if meeting is not None else reservation.title,
            "backend": backend.name,
            "reason": error.code,
            "message": error.message,
            "window_start": window.isoformat() if window is not None else None,
        },
        # Ad-hoc rooms have no meeting: the reservation tells them apart.
        dedup_extra="" if meeting is not None else f"room-{reservation.pk}",
    )


def _fail_over_one(
    reservation_id: int, backend: MediaBackend, now: datetime
) -> tuple[RoomReservation, DomainError | None] | None:
    with transaction.atomic():
        reservation = (
            RoomReservation.objects.select_for_update()
            .filter(pk=reservation_id, backend=backend, released_at__isnull=True)
            .first()
        )
        if reservation is None:
            return None  # Moved or released meanwhile.
        meeting = reservation.meeting
        if meeting is not None and meeting.is_cancelled:
            return None
        try:
            # A savepoint: a placement that fails leaves no trace.
            with transaction.atomic():
                if meeting is not None:
                    _reserve(
                        actor=SYSTEM,
                        meeting=meeting,
                        reservation=reservation,
                        participants=reservation.expected_participants,
                        exclude=backend,
                        action="room.failed_over",
                    )
                else:
                    spans = [(w.start, w.end) for w in reservation.windows.filter(end__gt=now)]
                    reservation.backend = _place(
                        agency=reservation.agency,
                        spans=spans,
                        participants=reservation.expected_participants,
                        zone_name=getattr(reservation.created_by, "timezone", "UTC"),
                        reservation=reservation,
                        exclude=backend,
                    )
                    reservation.save(update_fields=["backend", "updated_at"])
                    _store_windows(reservation, spans, keep_past_before=now)
                    audit_record(
                        actor=SYSTEM,
                        action="room.failed_over",
                        obj=reservation,
                        agency=reservation.agency,
                        detail={
                            "backend": reservation.backend.name,
                            "previous_backend": backend.name,
                            "windows": len(spans),
                        },
                    )
        except (NoCapacity, BackendUnavailable) as exc:
            reservation.refresh_from_db()
            _tell_stranded(reservation, backend, exc)
            audit_record(
                actor=SYSTEM,
                action="room.failover_stranded",
                obj=reservation,
                agency=reservation.agency,
                detail={"backend": backend.name, "reason": exc.code},
            )
            return reservation, exc
    return reservation, None


def backend_failover(*, backend: MediaBackend) -> FailoverResult:
    """Move the upcoming rooms of a backend that went down to other allowed backends.

    Each room moves in its own transaction, with its room name; a room no other backend can
    take stays, and its organizer is told through the outbox (``room.failover_failed``).
    """
    now = timezone.now()
    upcoming = (
        RoomReservation.objects.filter(
            backend=backend, released_at__isnull=True, windows__end__gt=now
        )
        .values_list("pk", flat=True)
        .distinct()
        .order_by("pk")
    )
    result = FailoverResult()
    for reservation_id in list(upcoming):
        outcome = _fail_over_one(reservation_id, backend, now)
        if outcome is None:
            continue
        reservation, error = outcome
        (result.moved if error is None else result.stranded).append(reservation)
    if result.moved or result.stranded:
        logger.warning(
            "Backend %s is down: %d rooms moved, %d could not move.",
            backend.name,
            len(result.moved),
            len(result.stranded),
        )
    return result


def reservations_extend_horizon() -> HorizonResult:
    """Periodic: give series the windows of occurrences the moving horizon now reaches.

    Windows that have ended go at the same time. A series that no longer fits anywhere keeps
    what it holds; that is logged and audited (``room.horizon_short``).
    """
    now = timezone.now()
    due = (
        RoomReservation.objects.filter(
            released_at__isnull=True,
            meeting__isnull=False,
            meeting__status=MeetingStatus.SCHEDULED,
        )
        .exclude(meeting__rrule="")
        .exclude(meeting__series_end__lte=now)
        .annotate(last_end=Max("windows__end"))
        # Series whose held windows do not reach their end yet (endless ones always do not).
        .filter(
            Q(last_end__isnull=True)
            | Q(meeting__series_end__isnull=True)
            | Q(meeting__series_end__gt=F("last_end"))
        )
        .values_list("pk", "meeting_id")
        .order_by("pk")
    )
    result = HorizonResult()
    for reservation_id, meeting_id in list(due):
        result.checked += 1
        try:
            with transaction.atomic():
                meeting = Meeting.objects.select_for_update().get(pk=meeting_id)
                _reservation, changed = _sync_windows(SYSTEM, meeting)
        except (NoCapacity, BackendUnavailable) as exc:
            reservation = RoomReservation.objects.get(pk=reservation_id)
            result.short.append(reservation)
            audit_record(
                actor=SYSTEM,
                action="room.horizon_short",
                obj=reservation,
                agency=reservation.agency,
                detail={"reason": exc.code, "message": exc.message},
            )
            logger.warning("Room %s: %s", reservation.pk, exc.message)
            continue
        if changed:
            result.updated += 1
    return result


# --- Ad-hoc rooms: joining -----------------------------------------------------------------------
#
# adhoc_room_open and room_release (above, with allocation) open and close them.


class RoomClosed(DomainError):
    """The ad-hoc room was closed or its time is over."""

    code = "room_closed"
    status = 410


def adhoc_join_ticket_issue(*, reservation: RoomReservation, user: User | AnonymousUser) -> Ticket:
    """Mint a join token for an open ad-hoc room: its creator joins as moderator, anyone else
    signed in (the link is the invitation) as participant. Returned only: never stored."""
    if reservation.meeting_id is not None:
        # A meeting's room has its own rules (access level, lobby): join_ticket_issue.
        raise InvalidInput(_("This room belongs to a meeting."), code="not_adhoc")
    abilities = adhoc_room_abilities(reservation=reservation, user=user)
    if not abilities["join"]:
        raise Forbidden(_("Sign in to join this room."), code="forbidden")
    if not adhoc_room_state(reservation=reservation).is_open:
        raise RoomClosed(_("This room is closed."))
    member = cast(User, user)
    return _ticket_mint(
        reservation=reservation,
        identity=f"user-{member.pk}",
        name=member.display_name or member.email,
        email=member.email,
        role=JoinRole.MODERATOR if abilities["join_as_moderator"] else JoinRole.PARTICIPANT,
    )
