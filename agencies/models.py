from __future__ import annotations

import re
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.base_session import AbstractBaseSession
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils.timezone import now
from django.utils.translation import gettext_lazy as _

from agencies.reference import validate_country, validate_language, validate_timezone

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def validate_email_domains(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(_("Email domains must be a list of domain names."))
    for domain in value:
        if not _DOMAIN_RE.match(domain):
            raise ValidationError(
                _("%(domain)s is not a valid domain name."), params={"domain": domain}
            )


def validate_country_list(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError(_("Allowed backend countries must be a list of country codes."))
    for code in value:
        validate_country(code)


# What the profile offers: no reminder, 5 or 15 minutes, an hour or a day before.
REMINDER_CHOICES_MINUTES = (5, 15, 60, 1440)


def default_reminder_minutes() -> list[int]:
    return [15]


def validate_reminder_minutes(value: Any) -> None:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and item in REMINDER_CHOICES_MINUTES for item in value
    ):
        raise ValidationError(_("Choose reminders from the offered ones."))


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **fields: Any) -> User:
        if not email:
            raise ValueError("Users need an email address")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person; the email address is the login."""

    email = models.EmailField(_("email address"), unique=True)
    display_name = models.CharField(_("display name"), max_length=150, blank=True)
    timezone = models.CharField(
        _("time zone"), max_length=64, default="Europe/Paris", validators=[validate_timezone]
    )
    language = models.CharField(
        _("language"), max_length=8, default="en", validators=[validate_language]
    )
    # Minutes before a meeting at which calendars (feeds, invitations) remind; empty: none.
    reminder_minutes = models.JSONField(
        _("reminders"),
        default=default_reminder_minutes,
        blank=True,
        validators=[validate_reminder_minutes],
    )
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(_("platform operator"), default=False)
    date_joined = models.DateTimeField(_("date joined"), default=now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.email

    def get_full_name(self) -> str:
        return self.display_name or self.email

    def get_short_name(self) -> str:
        return self.display_name or self.email


class Agency(models.Model):
    """A public body hosting meetings; its sovereignty policy bounds where they may run."""

    slug = models.SlugField(_("slug"), max_length=50, unique=True)
    name = models.CharField(_("name"), max_length=200)
    country = models.CharField(_("country"), max_length=2, validators=[validate_country])
    default_timezone = models.CharField(
        _("default time zone"), max_length=64, validators=[validate_timezone]
    )
    default_language = models.CharField(
        _("default language"), max_length=8, default="en", validators=[validate_language]
    )
    email_domains = models.JSONField(
        _("email domains"), default=list, blank=True, validators=[validate_email_domains]
    )
    # Sovereignty policy, read by the room broker: meetings of this agency may only run on
    # backends located in these countries (empty: the agency's own country only) ...
    allowed_backend_countries = models.JSONField(
        _("allowed backend countries"),
        default=list,
        blank=True,
        validators=[validate_country_list],
    )
    # ... and, when false, only on backends the agency owns (never on instance-wide shared ones).
    allow_shared_backends = models.BooleanField(_("allow shared backends"), default=True)
    # Opt-in by the agency's admins: a calendar feed of its meetings marked public, titles only.
    public_calendar_enabled = models.BooleanField(_("public calendar"), default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("agency")
        verbose_name_plural = _("agencies")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def backend_countries(self) -> list[str]:
        return list(self.allowed_backend_countries) or [self.country]


class Role(models.TextChoices):
    MEMBER = "member", _("Member")
    ORGANIZER = "organizer", _("Organizer")
    ADMIN = "admin", _("Administrator")


class Membership(models.Model):
    """Ties a user to their one home agency, with a role."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="membership")
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]
        indexes = [models.Index(fields=["agency", "role"])]

    def __str__(self) -> str:
        return f"{self.user} @ {self.agency} ({self.role})"

    @property
    def can_book(self) -> bool:
        return self.role in (Role.ORGANIZER, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class AuditEvent(models.Model):
    """Who did what to which object; written by services in the same transaction."""

    created_at = models.DateTimeField(default=now, db_index=True)
    actor = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept even when the actor row is gone, and names non-user actors ("cli", "system").
    actor_label = models.CharField(max_length=254)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    agency = models.ForeignKey(
        Agency, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_events"
    )
    detail = models.JSONField(default=dict, blank=True)
    # Set when the change came through the REST API: the key is the actor, ``actor`` the
    # member the call named (the organizer of a booking).
    api_key = models.ForeignKey(
        "ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["agency", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action}"


class ApiScope(models.TextChoices):
    MEETINGS_READ = "meetings:read", _("Read meetings")
    MEETINGS_WRITE = "meetings:write", _("Create, change and cancel meetings")
    JOIN_ISSUE = "join:issue", _("Issue join tickets")
    FREEBUSY_READ = "freebusy:read", _("Read free/busy")
    FEEDS_MANAGE = "feeds:manage", _("Manage members' calendar feeds")
    WEBHOOKS_MANAGE = "webhooks:manage", _("Manage webhooks")


def validate_scopes(value: Any) -> None:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) and item in ApiScope.values for item in value)
    ):
        raise ValidationError(
            _("Scopes must be a non-empty list taken from: %(scopes)s."),
            params={"scopes": ", ".join(ApiScope.values)},
        )


class ApiKey(models.Model):
    """A key an agency's own system authenticates with: ``vbk_<prefix>_<secret>``.

    Only the SHA-256 of the secret is stored; the prefix finds the row and is the only part
    that may appear in logs. ``name`` is the integration: two active keys per integration
    let a system rotate without downtime.
    """

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(_("scopes"), default=list, validators=[validate_scopes])
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["name", "-created_at"]
        indexes = [models.Index(fields=["agency", "name"])]

    def __str__(self) -> str:
        return f"vbk_{self.prefix} ({self.name})"

    def is_active(self, moment: Any = None) -> bool:
        moment = moment or now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > moment)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


# --- Agency webhooks ---------------------------------------------------------------------------


class WebhookEventType(models.TextChoices):
    MEETING_CREATED = "meeting.created", _("Meeting created")
    MEETING_UPDATED = "meeting.updated", _("Meeting updated")
    MEETING_CANCELLED = "meeting.cancelled", _("Meeting cancelled")
    ATTENDEE_RESPONDED = "attendee.responded", _("Attendee responded")
    ROOM_STARTED = "room.started", _("Room started")
    ROOM_FINISHED = "room.finished", _("Room finished")


def validate_event_types(value: Any) -> None:
    if (
        not isinstance(value, list)
        or not value
        or len(set(value)) != len(value)
        or not all(isinstance(item, str) and item in WebhookEventType.values for item in value)
    ):
        raise ValidationError(
            _("Event types must be a non-empty list taken from: %(types)s."),
            params={"types": ", ".join(WebhookEventType.values)},
        )


class WebhookDisabledReason(models.TextChoices):
    NONE = "", _("Enabled")
    BY_ADMIN = "admin", _("Disabled by the agency")
    GONE = "gone", _("The receiver answered 410 Gone")


class WebhookEndpoint(models.Model):
    """A URL of the agency's own system that receives signed events (Standard Webhooks).

    The signing secret is not stored: it is HMAC(WEBHOOK_SECRET_KEY, "pk:nonce"), shown once at
    creation and at each rotation, so a database dump alone cannot forge deliveries. During a
    rotation the previous nonce keeps signing too (two signatures) until ``previous_secret_until``.
    A deleted endpoint is kept (``deleted_at``) with its delivery log, and no longer delivers.
    """

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(_("URL"), max_length=2000)
    event_types = models.JSONField(_("event types"), validators=[validate_event_types])
    description = models.CharField(_("description"), max_length=200, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    disabled_reason = models.CharField(
        max_length=16, choices=WebhookDisabledReason.choices, blank=True, default=""
    )
    disabled_at = models.DateTimeField(null=True, blank=True)
    secret_nonce = models.CharField(max_length=64)
    previous_secret_nonce = models.CharField(max_length=64, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["agency", "enabled"], name="webhook_endpoint_agency_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(enabled=False) | models.Q(disabled_reason=""),
                name="webhook_endpoint_enabled_has_no_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agency} → {self.url}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def safe_url(self) -> str:
        """The URL without its query: receivers sometimes put a token there."""
        from visio_broker.http import redact_url

        return redact_url(self.url)


class WebhookAttempt(models.Model):
    """One delivery attempt of one webhook message to one endpoint: the delivery log."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempts")
    notification = models.ForeignKey(
        "visio_broker.Notification",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    webhook_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField()
    succeeded = models.BooleanField(default=False)
    # None when no HTTP answer came back (timeout, refused connection, TLS error).
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # When the next attempt is due; None after a success or the last attempt.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    at = models.DateTimeField(default=now)

    class Meta:
        verbose_name = _("webhook delivery attempt")
        verbose_name_plural = _("webhook delivery attempts")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["endpoint", "-id"], name="webhook_attempt_endpoint_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "attempt"], name="webhook_attempt_once_per_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} #{self.attempt}: {self.status_code or self.error[:40]}"


class Session(AbstractBaseSession):
    """A browser's session (Django's, agencies.sessions), with the signed-in user's id in a
    column of its own: the middleware reads session, user and home membership in one query
    instead of a cache read and a query. No foreign key: a session may outlive its user."""

    user_id = models.BigIntegerField(null=True, db_index=True)

    @classmethod
    def get_session_store_class(cls) -> type[SessionBase]:
        from agencies.sessions import SessionStore

        return SessionStore
