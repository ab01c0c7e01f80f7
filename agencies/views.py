from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.encoding import force_str
from django.utils.http import url_has_allowed_host_and_scheme, urlsafe_base64_decode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from agencies import services
from agencies.forms import (
    ApiKeyForm,
    InvitationAcceptForm,
    InviteForm,
    LanguageForm,
    ProfileForm,
    RoleForm,
    reminder_initial,
)
from agencies.models import ApiKey, Membership, User
from agencies.selectors import agency_members, membership_of
from agencies.tokens import invitation_token
from agencies.webhooks import webhook_endpoints_of, webhook_recent_attempts
from meetings.feeds import personal_feed_section
from visio_broker.errors import DomainError

View = Callable[..., HttpResponse]


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)


def agency_admin_required(view: View) -> View:
    """Signed-in agency admins only; passes their membership to the view."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = membership_of(_user(request))
        if membership is None or not membership.is_admin:
            raise PermissionDenied
        return view(request, membership, *args, **kwargs)

    return wrapper


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "agencies/home.html", {"membership": membership_of(_user(request))})


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = ProfileForm(
        request.POST or None,
        initial={
            "display_name": user.display_name,
            "timezone": user.timezone,
            "language": user.language,
            "reminder_minutes": reminder_initial(user.reminder_minutes),
        },
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.profile_update(actor=user, **form.cleaned_data)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Your profile has been saved."))
            return _with_language_cookie(redirect("profile"), user.language)
    response = render(
        request,
        "agencies/profile.html",
        {"form": form, "calendar_feed": personal_feed_section(user)},
        status=400 if form.errors else 200,
    )
    # The page shows the calendar feed's URL, a capability: no Referer may carry it away.
    response["Referrer-Policy"] = "no-referrer"
    return response


def _with_language_cookie(response: HttpResponse, language: str) -> HttpResponse:
    from django.conf import settings

    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
    )
    return response


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """The language switch; for a signed-in user it also becomes the profile language."""
    form = LanguageForm(request.POST)
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        target = "/"
    if not form.is_valid():
        return HttpResponseRedirect(target)
    language = form.cleaned_data["language"]
    user = _user(request)
    if user.is_authenticated and user.language != language:
        services.profile_update(
            actor=user, display_name=user.display_name, timezone=user.timezone, language=language
        )
    return _with_language_cookie(HttpResponseRedirect(target), language)


@agency_admin_required
def member_list(request: HttpRequest, admin: Membership) -> HttpResponse:
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.member_invite(
                actor=_user(request), agency=admin.agency, **form.cleaned_data
            )
        except DomainError as exc:
            form.add_error("email" if "email" in exc.code else None, exc.message)
        else:
            messages.success(
                request, _("Invitation sent to %(email)s.") % {"email": membership.user.email}
            )
            return redirect("member_list")
    return render(
        request,
        "agencies/member_list.html",
        {
            "agency": admin.agency,
            "members": agency_members(agency=admin.agency),
            "form": form,
            "role_form": RoleForm(),
            "status": 400 if form.errors else 200,
        },
        status=400 if form.errors else 200,
    )


def _member(admin: Membership, pk: int) -> Membership:
    # Scoped to the admin's agency: another agency's member is a 404, not a 403.
    return get_object_or_404(
        Membership.objects.select_related("user", "agency"), pk=pk, agency=admin.agency
    )


def _member_row(
    request: HttpRequest, admin: Membership, member: Membership, status: int = 200
) -> HttpResponse:
    if request.headers.get("HX-Request"):
        return render(
            request,
            "agencies/_member_row.html",
            {"m": member, "role_form": RoleForm(), "me": admin, "fragment": True},
            status=status,
        )
    return redirect("member_list")


def _run(request: HttpRequest, action: Callable[[], Any], success: str) -> int:
    try:
        action()
    except DomainError as exc:
        messages.error(request, exc.message)
        return exc.status
    messages.success(request, success)
    return 200


@require_POST
@agency_admin_required
def member_role(request: HttpRequest, admin: Membership, pk: int) -> HttpResponse:
    member = _member(admin, pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a valid role."))
        return _member_row(request, admin, member, status=400)
    status = _run(
        request,
        lambda: services.membership_change_role(
            actor=_user(request), membership=member, role=form.cleaned_data["role"]
        ),
        _("Role of %(name)s changed.") % {"name": member.user},
    )
    member.refresh_from_db()
    return _member_row(request, admin, member, status=status)


@require_POST
@agency_admin_required
def member_deactivate(request: HttpRequest, admin: Membership, pk: int) -> HttpResponse:
    member = _member(admin, pk)
    status = _run(
        request,
        lambda: services.member_deactivate(actor=_user(request), membership=member),
        _("%(name)s has been deactivated and signed out.") % {"name": member.user},
    )
    return _member_row(request, admin, member, status=status)


@require_POST
@agency_admin_required
def member_reactivate(request: HttpRequest, admin: Membership, pk: int) -> HttpResponse:
    member = _member(admin, pk)
    status = _run(
        request,
        lambda: services.member_reactivate(actor=_user(request), membership=member),
        _("%(name)s has been reactivated.") % {"name": member.user},
    )
    return _member_row(request, admin, member, status=status)


def _invited_user(uidb64: str, token: str) -> User | None:
    try:
        user = User.objects.select_related("membership__agency").get(
            pk=int(force_str(urlsafe_base64_decode(uidb64)))
        )
    except (ValueError, TypeError, OverflowError, User.DoesNotExist):
        return None
    return user if invitation_token.check_token(user, token) else None


def invitation_accept(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    user = _invited_user(uidb64, token)
    if user is None:
        return render(request, "agencies/invitation_invalid.html", status=404)
    form = InvitationAcceptForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.invitation_accept(user=user, password=form.cleaned_data["new_password1"])
        except DomainError as exc:
            form.add_error("new_password1", exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Welcome! Your account is ready."))
            return redirect("home")
    return render(
        request,
        "agencies/invitation_accept.html",
        {"form": form, "invitee": user, "agency": user.membership.agency},
        status=400 if form.errors else 200,
    )


# --- Integrations: API keys and webhooks ----------------------------------------------------------

RECENT_DELIVERIES = 50


@agency_admin_required
def integrations(request: HttpRequest, admin: Membership) -> HttpResponse:
    """Read the agency's keys and webhooks; POST creates a key, whose full value shows once."""
    agency = admin.agency
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            key, new_key = services.apikey_create(
                actor=_user(request), agency=agency, **form.cleaned_data
            )
        except DomainError as exc:
            form.add_error("name" if exc.code != "invalid_expiry" else "expires_days", exc.message)
        else:
            messages.success(request, _("API key created for %(name)s.") % {"name": key.name})
            form = ApiKeyForm()
    api_keys = ApiKey.objects.filter(agency=agency).order_by(
        F("revoked_at").desc(nulls_first=True), "name", "-created_at"
    )
    status = 400 if form.errors else 200
    response = render(
        request,
        "agencies/integrations.html",
        {
            "agency": agency,
            "api_keys": api_keys,
            "form": form,
            "new_key": new_key,
            "endpoints": webhook_endpoints_of(agency=agency),
            "attempts": webhook_recent_attempts(agency=agency, limit=RECENT_DELIVERIES),
        },
        status=status,
    )
    if new_key is not None:
        # The page holds a secret: no cache may keep it.
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@agency_admin_required
def apikey_revoke(request: HttpRequest, admin: Membership, pk: int) -> HttpResponse:
    # Scoped to the admin's agency: another agency's key is a 404.
    key = get_object_or_404(ApiKey.objects.select_related("agency"), pk=pk, agency=admin.agency)
    _run(
        request,
        lambda: services.apikey_revoke(actor=_user(request), key=key),
        _("API key %(prefix)s of %(name)s revoked.")
        % {"prefix": f"vbk_{key.prefix}", "name": key.name},
    )
    return redirect("integrations")
