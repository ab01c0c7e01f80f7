from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from agencies.models import Agency, User, validate_country
from meetings.models import Meeting


class BackendKind(models.TextChoices):
    LIVEKIT = "livekit", "LiveKit"
    JITSI = "jitsi", "Jitsi Meet"


class HealthState(models.TextChoices):
    HEALTHY = "healthy", _("Healthy")
    DEGRADED = "degraded", _("Degraded")
    DOWN = "down", _("Down")


class MediaBackend(models.Model):
    """A LiveKit or Jitsi deployment rooms can be placed on.

    The signing secret is never stored: the record names an environment variable or a file
    that holds it, read at the moment a token is signed.
    """

    name = models.SlugField(_("name"), max_length=64, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=BackendKind.choices)
    # LiveKit: the server URL clients connect to (wss://…); Jitsi: the web URL (https://…).
    base_url = models.URLField(_("base URL"), max_length=300)
    # LiveKit: the web front-end that takes ?liveKitUrl=…&token=… (LiveKit Meet's /custom page).
    frontend_url = models.URLField(_("front-end URL"), max_length=300, blank=True)
    # Jitsi: where the health probe looks (default: base_url).
    health_url = models.URLField(_("health URL"), max_length=300, blank=True)
    # LiveKit API key, or Jitsi app id (the token's iss/aud). Not a secret.
    api_key = models.CharField(_("API key / app id"), max_length=200)
    secret_env = models.CharField(_("secret environment variable"), max_length=100, blank=True)
    secret_file = models.CharField(_("secret file"), max_length=500, blank=True)
    # Jitsi: the token's `sub` (XMPP domain, tenant or "*").
    jitsi_sub = models.CharField(_("Jitsi token sub"), max_length=200, blank=True)
    country = models.CharField(_("country"), max_length=2, validators=[validate_country])
    region = models.CharField(_("region"), max_length=64, blank=True)
    # The agency that owns it; NULL: shared by every agency of the instance.
    agency = models.ForeignKey(
        Agency, on_delete=models.PROTECT, null=True, blank=True, related_name="backends"
    )
    capacity = models.PositiveIntegerField(_("capacity (concurrent participants)"))
    weight = models.PositiveIntegerField(_("weight"), default=100)
    enabled = models.BooleanField(_("enabled"), default=True)
    health_state = models.CharField(
        max_length=16, choices=HealthState.choices, default=HealthState.HEALTHY
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("media backend")
        verbose_name_plural = _("media backends")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(capacity__gt=0), name="backend_capacity_positive"),
            models.CheckConstraint(
                condition=(Q(secret_env="") & ~Q(secret_file=""))
                | (~Q(secret_env="") & Q(secret_file="")),
                name="backend_secret_one_source",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=BackendKind.values), name="backend_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_shared(self) -> bool:
        return self.agency_id is None

    def secret(self) -> str:
        """The signing secret, read now from the environment or the file; never cached."""
        if self.secret_env:
            value = os.environ.get(self.secret_env, "").strip()
            source = f"environment variable {self.secret_env}"
        else:
            try:
                value = Path(self.secret_file).read_text(encoding="utf-8").strip()
            except OSError:
                value = ""
            source = f"file {self.secret_file}"
        if not value:
            raise ImproperlyConfigured(f"Backend {self.name}: no secret in {source}")
        return value


def new_room_name() -> str:
    # 128 random bits in [a-z0-9-]: unguessable, and valid for Jitsi and LiveKit alike.
    return f"vb-{secrets.token_hex(16)}"


class RoomReservation(models.Model):
    """Where a meeting (or an ad-hoc room) happens; stable room name for its whole life."""

    meeting = models.OneToOneField(
        Meeting, on_delete=models.CASCADE, null=True, blank=True, related_name="reservation"
    )
    # Ad-hoc "meet now" rooms have no meeting: a title, who opened it and until when.
    title = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="reservations")
    backend = models.ForeignKey(MediaBackend, on_delete=models.PROTECT, related_name="reservations")
    room_name = models.CharField(max_length=64, unique=True, default=new_room_name)
    expected_participants = models.PositiveIntegerField()
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(expected_participants__gt=0), name="reservation_participants_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.room_name


class ReservedWindow(models.Model):
    """One occurrence's hold on a backend's capacity (recurring meetings: within the horizon).

    Capacity checks sum these rows under a row lock on the backend, so two concurrent bookings
    can never both take the last seats.
    """

    reservation = models.ForeignKey(
        RoomReservation, on_delete=models.CASCADE, related_name="windows"
    )
    backend = models.ForeignKey(MediaBackend, on_delete=models.CASCADE, related_name="windows")
    start = models.DateTimeField()
    end = models.DateTimeField()
    participants = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="window_end_after_start"
            ),
        ]
        indexes = [models.Index(fields=["backend", "start", "end"], name="window_backend_time_idx")]

    def __str__(self) -> str:
        return f"{self.backend} {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"


# --- Provider events, occupancy and attendance (LiveKit webhooks) --------------------------------


class ProviderEvent(models.Model):
    """One verified webhook event from a backend; its id makes a replay a no-op."""

    backend = models.ForeignKey(MediaBackend, on_delete=models.PROTECT, related_name="events")
    # NULL when the event names a room we never reserved: stored, but it changes nothing else.
    reservation = models.ForeignKey(
        RoomReservation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="provider_events",
    )
    event_id = models.CharField(max_length=100, unique=True)
    event = models.CharField(max_length=64)
    room_name = models.CharField(max_length=200, blank=True)
    room_sid = models.CharField(max_length=100, blank=True)
    participant_sid = models.CharField(max_length=100, blank=True)
    participant_identity = models.CharField(max_length=200, blank=True)
    participant_name = models.CharField(max_length=200, blank=True)
    # When the provider says it happened; received_at is when it reached us.
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    # The event as sent, with secrets (the room's TURN password) removed.
    payload = models.JSONField(default=dict)

    class Meta:
        verbose_name = _("provider event")
        verbose_name_plural = _("provider events")
        ordering = ["occurred_at", "id"]
        indexes = [
            models.Index(fields=["reservation", "occurred_at"], name="event_reservation_time_idx")
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id}"


class RoomOccupancy(models.Model):
    """Who is in a reserved room right now, kept from the provider's events."""

    reservation = models.OneToOneField(
        RoomReservation, on_delete=models.CASCADE, related_name="occupancy"
    )
    participants = models.PositiveIntegerField(default=0)
    # The provider's session of the room (a room name is reused by every occurrence).
    room_sid = models.CharField(max_length=100, blank=True)
    active_since = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Time of the last room_started/room_finished applied: older ones arriving late are ignored.
    state_changed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("room occupancy")
        verbose_name_plural = _("room occupancies")

    def __str__(self) -> str:
        return f"{self.reservation}: {self.participants}"

    @property
    def is_active(self) -> bool:
        return self.active_since is not None


class Attendance(models.Model):
    """One participant session in a reserved room: who, joined when, left when."""

    reservation = models.ForeignKey(
        RoomReservation, on_delete=models.CASCADE, related_name="attendances"
    )
    # The provider's id of this session; joined and left events of one session share it.
    participant_sid = models.CharField(max_length=100, blank=True)
    # What the join ticket put in the token's `sub`: "user-<pk>" for users, lobby ids for guests.
    identity = models.CharField(max_length=200)
    display_name = models.CharField(_("name"), max_length=200, blank=True)
    user = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="room_attendances"
    )
    # NULL joined_at: the "left" event arrived before (or without) the "joined" one.
    joined_at = models.DateTimeField(_("joined"), null=True, blank=True)
    left_at = models.DateTimeField(_("left"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("attendance")
        verbose_name_plural = _("attendances")
        ordering = ["joined_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reservation", "participant_sid"],
                condition=~Q(participant_sid=""),
                name="attendance_session_unique",
            ),
            models.CheckConstraint(
                condition=Q(joined_at__isnull=True)
                | Q(left_at__isnull=True)
                | Q(left_at__gte=models.F("joined_at")),
                name="attendance_left_after_joined",
            ),
        ]
        indexes = [
            models.Index(fields=["reservation", "joined_at"], name="attendance_res_joined_idx")
        ]

    def __str__(self) -> str:
        return self.display_name or self.identity

    @property
    def duration(self) -> timedelta | None:
        if self.joined_at is None or self.left_at is None:
            return None
        return self.left_at - self.joined_at


# --- Lobby (join) ---------------------------------------------------------------------------------


class LobbyStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    ADMITTED = "admitted", _("Admitted")
    REFUSED = "refused", _("Refused")


class LobbyEntry(models.Model):
    """Someone knocking at one occurrence of a meeting, and a moderator's answer.

    Signed-in people are recognised by ``user``; guests by a random secret kept in their
    session, of which only the SHA-256 is stored. ``decided_by`` is empty for entries admitted
    without a lobby (lobby off): the row still gives the guest a stable identity.
    """

    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="lobby_entries")
    # The occurrence's key (its original start in UTC, 20260302T090000Z); one-off meetings too.
    occurrence_key = models.CharField(max_length=16)
    display_name = models.CharField(_("name"), max_length=80)
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, null=True, blank=True, related_name="lobby_entries"
    )
    secret_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=LobbyStatus.choices, default=LobbyStatus.WAITING
    )
    decided_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("lobby entry")
        verbose_name_plural = _("lobby entries")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=LobbyStatus.values), name="lobby_status_valid"
            ),
            # A person or a guest's secret, never neither.
            models.CheckConstraint(
                condition=Q(user__isnull=False) | ~Q(secret_hash=""), name="lobby_entry_identified"
            ),
            models.CheckConstraint(
                condition=Q(status=LobbyStatus.WAITING) | Q(decided_at__isnull=False),
                name="lobby_decision_dated",
            ),
            models.UniqueConstraint(
                fields=["meeting", "occurrence_key", "user"],
                condition=Q(user__isnull=False),
                name="lobby_one_entry_per_user",
            ),
            models.UniqueConstraint(
                fields=["secret_hash"], condition=~Q(secret_hash=""), name="lobby_secret_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["meeting", "occurrence_key", "status"], name="lobby_meeting_status_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.status})"

    @property
    def identity(self) -> str:
        """The participant identity in join tokens: the person's, or this entry's for guests."""
        return f"user-{self.user_id}" if self.user_id is not None else f"guest-{self.pk}"
