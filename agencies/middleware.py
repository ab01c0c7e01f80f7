from collections.abc import Callable

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.middleware import (
    AuthenticationMiddleware as DjangoAuthenticationMiddleware,
)
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import translation
from django.utils.crypto import constant_time_compare

from agencies.models import User
from agencies.selectors import is_agency_admin, session_with_user, user_with_membership
from agencies.sessions import SessionStore
from visio_broker.middleware import browser_only


def _reads_like_model_backend(backend: object) -> bool:
    """ModelBackend's get_user (allauth's backend inherits it): the one session_user replaces."""
    if not isinstance(backend, ModelBackend):
        return False
    kind = type(backend)
    return (
        kind.get_user is ModelBackend.get_user
        and kind.user_can_authenticate is ModelBackend.user_can_authenticate
    )


def session_user(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    """django.contrib.auth.get_user, with the session's and ModelBackend's reads replaced by one
    query that also brings the home membership (the MFA rule, the join's ties need it): the same
    rules (backend still configured, active user, session hash with fallback keys), two reads
    less and no SQL compiled per request. Other backends go through Django's own get_user."""
    session = request.session
    read: User | None = None
    if isinstance(session, SessionStore) and not session.is_loaded() and session.session_key:
        # The session, its user and their membership in one query (agencies.sessions).
        session_data, read = session_with_user(session.session_key)
        session.take_loaded(session_data)
    try:
        user_id = User._meta.pk.to_python(session[auth.SESSION_KEY])
        backend_path = session[auth.BACKEND_SESSION_KEY]
    except KeyError:
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    if not _reads_like_model_backend(auth.load_backend(backend_path)):
        return auth.get_user(request)
    user = read if read is not None and read.pk == user_id else user_with_membership(pk=user_id)
    if user is None or not user.is_active:
        return AnonymousUser()
    session_hash = session.get(auth.HASH_SESSION_KEY)
    session_auth_hash = user.get_session_auth_hash()
    if session_hash and constant_time_compare(session_hash, session_auth_hash):
        return user
    if session_hash and any(
        constant_time_compare(session_hash, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    ):
        session.cycle_key()
        session[auth.HASH_SESSION_KEY] = session_auth_hash
        return user
    session.flush()
    return AnonymousUser()


@browser_only
class AuthenticationMiddleware(DjangoAuthenticationMiddleware):
    """Django's, reading the signed-in user with session_user, at once rather than lazily: every
    request asks for the user anyway (UserLanguageMiddleware, the MFA rule), and each of the
    dozens of reads of ``request.user`` through Django's lazy proxy cost a function call (a few
    per cent of a signed-in join). Without a session cookie nothing is read. API calls, which
    carry a key and not a session, have no ``request.user`` until the API authenticates them."""

    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        request.user = session_user(request)  # type: ignore[assignment]


# Paths an admin without MFA may still reach: the MFA set-up itself, sign-out, language switch.
_ALLOWED_PREFIXES = ("/accounts/", "/i18n/", "/static/", "/healthz", "/readyz")


@browser_only
class RequireMfaForAdminsMiddleware:
    """Agency admins and platform operators must enrol TOTP before using the application."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            user.is_authenticated
            and not request.path.startswith(_ALLOWED_PREFIXES)
            and (user.is_staff or is_agency_admin(user))
            and not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
        ):
            return redirect(f"{reverse('mfa_activate_totp')}?next={request.path}")
        return self.get_response(request)


@browser_only
class UserLanguageMiddleware:
    """A signed-in user sees their profile language, whatever the browser asks for."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        language = getattr(user, "language", None)
        if user.is_authenticated and language in dict(settings.LANGUAGES):
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)
