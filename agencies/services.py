"""Every write of the agencies app: agencies, users, memberships, invitations, profiles."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from allauth.account.models import EmailAddress
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone as djtz
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from agencies.apikeys import key_generate, secret_hash
from agencies.models import (
    Agency,
    ApiKey,
    Membership,
    Role,
    User,
    WebhookDisabledReason,
    WebhookEndpoint,
    validate_event_types,
)
from agencies.tokens import invitation_token
from visio_broker.audit import audit_record
from visio_broker.errors import Conflict, Forbidden, InvalidInput, NotFound
from visio_broker.http import redact_url

Actor = User | str


def _validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(
            f"{field}: {message}" if field != "__all__" else str(message)
            for field, messages in exc.message_dict.items()
            for message in messages
        )
    return " ".join(exc.messages)


def _full_clean(
    instance: Agency | User | Membership | ApiKey, *, exclude: Iterable[str] = ()
) -> None:
    # Uniqueness is checked inside the write's transaction, where it gets its own Conflict code;
    # Django's constraint validation would report a duplicate email as invalid input instead.
    try:
        instance.full_clean(
            exclude=list(exclude), validate_unique=False, validate_constraints=False
        )
    except ValidationError as exc:
        raise InvalidInput(_validation_message(exc)) from None


def agency_create(
    *,
    actor: Actor,
    slug: str,
    name: str,
    country: str,
    timezone: str,
    language: str = "en",
    email_domains: Iterable[str] = (),
    allowed_backend_countries: Iterable[str] = (),
) -> Agency:
    agency = Agency(
        slug=slug.strip(),
        name=name.strip(),
        country=country.strip().upper(),
        default_timezone=timezone.strip(),
        default_language=language.strip().lower(),
        email_domains=sorted({d.strip().lower() for d in email_domains if d.strip()}),
        allowed_backend_countries=sorted({c.strip().upper() for c in allowed_backend_countries}),
    )
    _full_clean(agency)
    with transaction.atomic():
        if Agency.objects.filter(slug=agency.slug).exists():
            raise Conflict(
                _("An agency with slug %s already exists.") % agency.slug, code="agency_exists"
            )
        agency.save()
        audit_record(
            actor=actor,
            action="agency.created",
            obj=agency,
            agency=agency,
            detail={"slug": agency.slug, "country": agency.country},
        )
    return agency


def _normalize_email(email: str) -> str:
    email = User.objects.normalize_email(email.strip()).lower()
    if "@" not in email:
        raise InvalidInput(_("%s is not an email address.") % email, code="invalid_email")
    return email


def user_create(
    *,
    actor: Actor,
    email: str,
    agency: Agency,
    role: str,
    display_name: str = "",
    password: str | None = None,
    email_verified: bool = False,
    invited_by: User | None = None,
) -> User:
    """Create a user with a membership; without a password the user cannot sign in yet."""
    email = _normalize_email(email)
    if role not in Role.values:
        raise InvalidInput(
            _("Role must be one of: %s.") % ", ".join(Role.values), code="invalid_role"
        )
    user = User(
        email=email,
        display_name=display_name.strip(),
        timezone=agency.default_timezone,
        language=agency.default_language,
    )
    _full_clean(user, exclude=["password"])
    if password is not None:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise InvalidInput(" ".join(exc.messages), code="weak_password") from None
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        with transaction.atomic():
            if User.objects.filter(email__iexact=email).exists():
                raise Conflict(
                    _("A user with email %s already exists.") % email, code="user_exists"
                )
            user.save()
            EmailAddress.objects.create(
                user=user, email=email, primary=True, verified=email_verified
            )
            membership = Membership.objects.create(
                user=user, agency=agency, role=role, invited_by=invited_by
            )
            audit_record(
                actor=actor,
                action="user.created",
                obj=membership,
                agency=agency,
                detail={"email": email, "role": role},
            )
    except IntegrityError:
        # Two concurrent creations of the same address: the loser gets the same answer.
        raise Conflict(
            _("A user with email %s already exists.") % email, code="user_exists"
        ) from None
    return user


def _email_domain_allowed(agency: Agency, email: str) -> bool:
    domain = email.rsplit("@", 1)[-1]
    return not agency.email_domains or domain in agency.email_domains


def invitation_url(user: User) -> str:
    path = reverse(
        "invitation_accept",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": invitation_token.make_token(user),
        },
    )
    return f"{settings.SITE_URL}{path}"


def _send_invitation(user_id: int, inviter_name: str | None) -> None:
    user = User.objects.select_related("membership__agency").get(pk=user_id)
    agency = user.membership.agency
    with translation.override(user.language):
        context = {
            "user": user,
            "agency": agency,
            "inviter_name": inviter_name or _("The Visio Broker operators"),
            "accept_url": invitation_url(user),
            "site_url": settings.SITE_URL,
        }
        subject = render_to_string("agencies/email/invitation_subject.txt", context).strip()
        text = render_to_string("agencies/email/invitation_message.txt", context)
        html = render_to_string("agencies/email/invitation_message.html", context)
    message = EmailMultiAlternatives(
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}", body=text, to=[user.email]
    )
    message.attach_alternative(html, "text/html")
    message.send()


def member_invite(
    *,
    actor: Actor,
    agency: Agency,
    email: str,
    role: str,
    display_name: str = "",
    check_email_domain: bool = True,
) -> Membership:
    """Invite someone into the agency by email; re-sends while the invitation is pending."""
    email = _normalize_email(email)
    if check_email_domain and not _email_domain_allowed(agency, email):
        raise InvalidInput(
            _("This agency only accepts addresses at %s.") % ", ".join(agency.email_domains),
            code="email_domain_not_allowed",
        )
    with transaction.atomic():
        existing = User.objects.filter(email__iexact=email).select_related("membership").first()
        if existing is not None:
            membership = getattr(existing, "membership", None)
            pending = not existing.has_usable_password() and existing.is_active
            if membership is None or membership.agency_id != agency.pk or not pending:
                raise Conflict(_("%s already has an account.") % email, code="user_exists")
            audit_record(
                actor=actor,
                action="member.reinvited",
                obj=membership,
                agency=agency,
                detail={"email": email},
            )
        else:
            user = user_create(
                actor=actor,
                email=email,
                agency=agency,
                role=role,
                display_name=display_name,
                invited_by=None if isinstance(actor, str) else actor,
            )
            membership = user.membership
            audit_record(
                actor=actor,
                action="member.invited",
                obj=membership,
                agency=agency,
                detail={"email": email, "role": role},
            )
        inviter = None if isinstance(actor, str) else actor.get_full_name()
        user_id = membership.user_id
        transaction.on_commit(lambda: _send_invitation(user_id, inviter))
    return membership


def invitation_accept(*, user: User, password: str) -> User:
    """The invitee sets a password; the link proved the address, so it counts as verified."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), code="weak_password") from None
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        EmailAddress.objects.filter(user=user, email__iexact=user.email).update(verified=True)
        audit_record(
            actor=user, action="invitation.accepted", obj=user, agency=user.membership.agency
        )
    return user


def _other_admins(membership: Membership) -> bool:
    return (
        Membership.objects.filter(
            agency_id=membership.agency_id, role=Role.ADMIN, user__is_active=True
        )
        .exclude(pk=membership.pk)
        .exists()
    )


def membership_change_role(*, actor: User, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(
            _("Role must be one of: %s.") % ", ".join(Role.values), code="invalid_role"
        )
    with transaction.atomic():
        # Lock the agency's admin rows so two admins cannot demote each other at once.
        list(
            Membership.objects.select_for_update().filter(
                agency_id=membership.agency_id, role=Role.ADMIN
            )
        )
        membership.refresh_from_db()
        if membership.role == role:
            return membership
        if membership.role == Role.ADMIN and not _other_admins(membership):
            raise Conflict(
                _("An agency needs at least one active administrator."), code="last_admin"
            )
        previous = membership.role
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
        audit_record(
            actor=actor,
            action="member.role_changed",
            obj=membership,
            agency=membership.agency,
            detail={"from": previous, "to": role},
        )
    return membership


def user_sessions_end(*, user: User) -> int:
    """Sign the user out everywhere; returns how many sessions ended."""
    sessions = list(UserSession.objects.filter(user=user))
    for session in sessions:
        session.end()
    return len(sessions)


def member_deactivate(*, actor: User, membership: Membership) -> Membership:
    if membership.user_id == actor.pk:
        raise Forbidden(_("You cannot deactivate your own account."), code="cannot_deactivate_self")
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=membership.user_id)
        if not user.is_active:
            return membership
        user.is_active = False
        user.save(update_fields=["is_active"])
        ended = user_sessions_end(user=user)
        # Their calendar feed URLs die with the account (imported here: meetings imports us).
        from meetings.feeds import forget_validators
        from meetings.models import FeedToken

        live = FeedToken.objects.filter(user=user, revoked_at__isnull=True)
        forget_validators(list(live.values_list("token_hash", flat=True)))
        revoked = live.update(revoked_at=djtz.now())
        detail = {"sessions_ended": ended} | ({"feeds_revoked": revoked} if revoked else {})
        audit_record(
            actor=actor,
            action="member.deactivated",
            obj=membership,
            agency=membership.agency,
            detail=detail,
        )
    membership.user.is_active = False
    return membership


def member_reactivate(*, actor: User, membership: Membership) -> Membership:
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=membership.user_id)
        if user.is_active:
            return membership
        user.is_active = True
        user.save(update_fields=["is_active"])
        audit_record(
            actor=actor, action="member.reactivated", obj=membership, agency=membership.agency
        )
    membership.user.is_active = True
    return membership


def profile_update(
    *,
    actor: User,
    display_name: str,
    timezone: str,
    language: str,
    reminder_minutes: list[int] | None = None,
) -> User:
    """Save the profile; ``reminder_minutes=None`` keeps the stored reminders."""
    actor.display_name = display_name.strip()
    actor.timezone = timezone
    actor.language = language
    detail: dict[str, object] = {"timezone": timezone, "language": language}
    fields = ["display_name", "timezone", "language"]
    if reminder_minutes is not None:
        actor.reminder_minutes = sorted(set(reminder_minutes))
        detail["reminder_minutes"] = actor.reminder_minutes
        fields.append("reminder_minutes")
    _full_clean(actor, exclude=["password"])
    with transaction.atomic():
        actor.save(update_fields=fields)
        # The calendar feed's name, language and reminders come from here (imported here:
        # meetings imports us). It then looks at its rows again.
        from meetings.feeds import forget_validators
        from meetings.models import FeedToken

        live = FeedToken.objects.filter(user=actor, revoked_at__isnull=True)
        forget_validators(list(live.values_list("token_hash", flat=True)))
        live.update(generation=F("generation") + 1)
        audit_record(
            actor=actor,
            action="profile.updated",
            obj=actor,
            agency=getattr(getattr(actor, "membership", None), "agency", None),
            detail=detail,
        )
    return actor


# --- API keys ---------------------------------------------------------------------------------


def _require_admin_of(actor: User, agency: Agency) -> None:
    membership = getattr(actor, "membership", None)
    if membership is None or membership.agency_id != agency.pk:
        raise NotFound(_("No such agency."))
    if not membership.is_admin:
        raise Forbidden(_("Only agency administrators manage API keys."), code="not_admin")


# Two active keys per integration: the new one is deployed before the old one is revoked.
ACTIVE_KEYS_PER_INTEGRATION = 2
MAX_KEY_LIFETIME_DAYS = 3650


def apikey_create(
    *,
    actor: Actor,
    agency: Agency,
    name: str,
    scopes: Iterable[str],
    expires_days: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is shown once and never stored."""
    if not isinstance(actor, str):
        _require_admin_of(actor, agency)
    name = name.strip()
    if not name:
        raise InvalidInput(_("Name the integration this key is for."), code="name_required")
    scope_list = sorted(set(scopes))
    if expires_days is not None and not 1 <= expires_days <= MAX_KEY_LIFETIME_DAYS:
        raise InvalidInput(
            _("A key expires after 1 to %(days)s days.") % {"days": MAX_KEY_LIFETIME_DAYS},
            code="invalid_expiry",
        )
    raw = key_generate()
    now = djtz.now()
    key = ApiKey(
        agency=agency,
        name=name,
        prefix=raw.prefix,
        secret_hash=secret_hash(raw.secret),
        scopes=scope_list,
        created_by=None if isinstance(actor, str) else actor,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    _full_clean(key, exclude=["prefix", "secret_hash"])
    with transaction.atomic():
        # Serializes key creation per agency, so the two-active-keys rule holds under races.
        Agency.objects.select_for_update().filter(pk=agency.pk).first()
        active = ApiKey.objects.filter(agency=agency, name=name, revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )
        if active.count() >= ACTIVE_KEYS_PER_INTEGRATION:
            raise Conflict(
                _(
                    "%(name)s already has two active keys. Revoke the older one before "
                    "creating a new one."
                )
                % {"name": name},
                code="too_many_active_keys",
            )
        key.save()
        audit_record(
            actor=actor,
            action="apikey.created",
            obj=key,
            agency=agency,
            detail={"prefix": key.prefix, "name": name, "scopes": scope_list},
        )
    return key, str(raw)


def apikey_revoke(*, actor: Actor, key: ApiKey) -> ApiKey:
    if not isinstance(actor, str):
        _require_admin_of(actor, key.agency)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            return key
        key.revoked_at = djtz.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="apikey.revoked",
            obj=key,
            agency=key.agency,
            detail={"prefix": key.prefix, "name": key.name},
        )
    return key


# last_used_* is a hint for admins ("is this integration still calling?"), not an access log:
# one write a minute at most, so a busy integration does not turn every read into a write.
KEY_USE_RESOLUTION = timedelta(minutes=1)


def apikey_used(*, key: ApiKey, ip: str | None) -> None:
    now = djtz.now()
    if key.last_used_at is not None and now - key.last_used_at < KEY_USE_RESOLUTION:
        return
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - KEY_USE_RESOLUTION)
    ).update(last_used_at=now, last_used_ip=ip)
    key.last_used_at, key.last_used_ip = now, ip


# --- Webhook endpoints ------------------------------------------------------------------------


def _require_webhook_admin(actor: Actor, agency: Agency) -> None:
    if isinstance(actor, str):
        return
    membership = getattr(actor, "membership", None)
    if membership is None or membership.agency_id != agency.pk:
        raise NotFound(_("No such agency."))
    if not membership.is_admin:
        raise Forbidden(_("Only agency administrators manage webhooks."), code="not_admin")


def _webhook_event_types(event_types: Iterable[str]) -> list[str]:
    types = sorted(set(event_types))
    try:
        validate_event_types(types)
    except ValidationError as exc:
        raise InvalidInput(_validation_message(exc), code="invalid_event_types") from None
    return types


def webhook_endpoint_create(
    *,
    actor: Actor,
    agency: Agency,
    url: str,
    event_types: Iterable[str],
    description: str = "",
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret, which is shown once."""
    from agencies.webhooks import (
        MAX_ENDPOINTS_PER_AGENCY,
        new_secret_nonce,
        webhook_secret_of,
        webhook_url_check,
    )

    _require_webhook_admin(actor, agency)
    endpoint = WebhookEndpoint(
        agency=agency,
        url=webhook_url_check(url),
        event_types=_webhook_event_types(event_types),
        description=description.strip(),
        secret_nonce=new_secret_nonce(),
        created_by=None if isinstance(actor, str) else actor,
    )
    with transaction.atomic():
        # Serializes creations per agency, so the endpoint limit holds under races.
        Agency.objects.select_for_update().filter(pk=agency.pk).first()
        count = WebhookEndpoint.objects.filter(agency=agency, deleted_at__isnull=True).count()
        if count >= MAX_ENDPOINTS_PER_AGENCY:
            raise Conflict(
                _("An agency may have at most %(count)s webhook endpoints.")
                % {"count": MAX_ENDPOINTS_PER_AGENCY},
                code="too_many_endpoints",
            )
        endpoint.save()
        audit_record(
            actor=actor,
            action="webhook.created",
            obj=endpoint,
            agency=agency,
            detail={"url": redact_url(endpoint.url), "event_types": endpoint.event_types},
        )
    return endpoint, webhook_secret_of(endpoint)


def webhook_endpoint_update(
    *,
    actor: Actor,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given; re-enabling clears why the endpoint was disabled."""
    from agencies.webhooks import webhook_url_check

    _require_webhook_admin(actor, endpoint.agency)
    changes: dict[str, object] = {}
    if url is not None:
        changes["url"] = webhook_url_check(url)
    if event_types is not None:
        changes["event_types"] = _webhook_event_types(event_types)
    if description is not None:
        changes["description"] = description.strip()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if endpoint.is_deleted:
            raise NotFound(_("No such webhook endpoint."))
        if enabled is not None and enabled != endpoint.enabled:
            changes["enabled"] = enabled
            changes["disabled_reason"] = "" if enabled else WebhookDisabledReason.BY_ADMIN
            changes["disabled_at"] = None if enabled else djtz.now()
        changed = {
            name: value for name, value in changes.items() if getattr(endpoint, name) != value
        }
        if not changed:
            return endpoint
        for name, value in changed.items():
            setattr(endpoint, name, value)
        endpoint.save(update_fields=[*changed, "updated_at"])
        detail = {name: value for name, value in changed.items() if name != "disabled_at"}
        if "url" in detail:
            detail["url"] = redact_url(endpoint.url)
        audit_record(
            actor=actor,
            action="webhook.updated",
            obj=endpoint,
            agency=endpoint.agency,
            detail=detail,
        )
    return endpoint


def webhook_endpoint_disable(
    *, actor: Actor, endpoint: WebhookEndpoint, reason: str
) -> WebhookEndpoint:
    """Stop deliveries to an endpoint, e.g. when the receiver answered 410 Gone."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if not endpoint.enabled:
            return endpoint
        endpoint.enabled = False
        endpoint.disabled_reason = reason
        endpoint.disabled_at = djtz.now()
        endpoint.save(update_fields=["enabled", "disabled_reason", "disabled_at", "updated_at"])
        audit_record(
            actor=actor,
            action="webhook.disabled",
            obj=endpoint,
            agency=endpoint.agency,
            detail={"reason": reason},
        )
    return endpoint


def webhook_endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Delete an endpoint: it stops delivering at once; the row stays for its delivery log."""
    _require_webhook_admin(actor, endpoint.agency)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if endpoint.is_deleted:
            return endpoint
        endpoint.deleted_at = djtz.now()
        endpoint.enabled = False
        endpoint.disabled_reason = WebhookDisabledReason.BY_ADMIN
        endpoint.disabled_at = endpoint.disabled_at or endpoint.deleted_at
        endpoint.save(
            update_fields=["deleted_at", "enabled", "disabled_reason", "disabled_at", "updated_at"]
        )
        audit_record(
            actor=actor,
            action="webhook.deleted",
            obj=endpoint,
            agency=endpoint.agency,
            detail={"url": redact_url(endpoint.url)},
        )
    return endpoint


def webhook_endpoint_rotate_secret(
    *, actor: Actor, endpoint: WebhookEndpoint
) -> tuple[WebhookEndpoint, str]:
    """A new signing secret, shown once; the previous one keeps signing for a day (each
    delivery carries both signatures), so the receiver can switch without losing events."""
    from agencies.webhooks import SECRET_OVERLAP, new_secret_nonce, webhook_secret_of

    _require_webhook_admin(actor, endpoint.agency)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if endpoint.is_deleted:
            raise NotFound(_("No such webhook endpoint."))
        now = djtz.now()
        endpoint.previous_secret_nonce = endpoint.secret_nonce
        endpoint.previous_secret_until = now + SECRET_OVERLAP
        endpoint.secret_nonce = new_secret_nonce()
        endpoint.secret_rotated_at = now
        endpoint.save(
            update_fields=[
                "previous_secret_nonce",
                "previous_secret_until",
                "secret_nonce",
                "secret_rotated_at",
                "updated_at",
            ]
        )
        audit_record(
            actor=actor,
            action="webhook.secret_rotated",
            obj=endpoint,
            agency=endpoint.agency,
            detail={"previous_valid_until": endpoint.previous_secret_until.isoformat()},
        )
    return endpoint, webhook_secret_of(endpoint)
