"""Browser-only middleware (visio_broker.middleware): API calls, which carry a key and never a
session, skip the signed-in user, messages, session tracking, the profile language and the
two-factor rule; pages keep all of them."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse

from agencies.models import Role
from tests.conftest import signed_in_client
from visio_broker.middleware import browser_only

pytestmark = pytest.mark.django_db


class Recording:
    """A middleware with every hook Django collects, recording which of them ran."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.ran: list[str] = []

    def __call__(self, request):
        self.ran.append("call")
        return self.get_response(request)

    def process_view(self, request, view, args, kwargs):
        self.ran.append("view")

    def process_exception(self, request, exception):
        self.ran.append("exception")

    def process_template_response(self, request, response):
        self.ran.append("template")
        return response


@pytest.mark.parametrize(
    ("path", "ran"),
    [
        ("/api/v1/meetings/", []),
        ("/api/", []),
        ("/meetings/", ["call", "view", "exception", "template"]),
        # Only the prefix counts: a page whose name starts like it is still a page.
        ("/apiary/", ["call", "view", "exception", "template"]),
    ],
)
def test_browser_only_skips_api_calls_in_the_call_and_every_hook(path, ran):
    BrowserOnly = browser_only(Recording)
    middleware = BrowserOnly(lambda request: HttpResponse("next"))
    request = RequestFactory().get(path)
    response = middleware(request)
    assert response.content == b"next"  # the next handler answers either way
    assert middleware.process_view(request, None, (), {}) is None
    assert middleware.process_exception(request, ValueError()) is None
    template_response = HttpResponse("page")
    assert middleware.process_template_response(request, template_response) is template_response
    assert middleware.ran == ran


def test_browser_only_adds_no_hook_the_middleware_lacks():
    """Django collects a hook when the instance has the attribute: none may appear."""

    class CallOnly:
        def __init__(self, get_response):
            self.get_response = get_response

        def __call__(self, request):
            return self.get_response(request)

    wrapped = browser_only(CallOnly)
    for hook in ("process_view", "process_exception", "process_template_response"):
        assert not hasattr(wrapped, hook)
    assert issubclass(wrapped, CallOnly)
    assert wrapped.__name__ == "CallOnly"


def test_browser_only_middleware_still_satisfies_djangos_checks():
    """Admin checks look for subclasses of Django's middleware; deployment checks look for
    session and CSRF middleware by name: both keep passing."""
    assert "django.contrib.sessions.middleware.SessionMiddleware" in settings.MIDDLEWARE
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    assert "allauth.account.middleware.AccountMiddleware" in settings.MIDDLEWARE
    from visio_broker.middleware import MessageMiddleware

    assert issubclass(MessageMiddleware, DjangoMessageMiddleware)
    call_command("check", fail_level="WARNING")


def test_api_call_with_a_session_cookie_is_judged_by_its_key_alone(agency, make_member):
    """An admin without two-factor is sent to enrol on every page, but an API call from the
    same browser is not redirected: it carries no key, so it is refused as unauthenticated,
    and the session signs nobody in."""
    admin = make_member(agency, Role.ADMIN)
    client = signed_in_client(admin)
    page = client.get(reverse("member_list"))
    assert page.status_code == 302
    assert page["Location"].startswith(reverse("mfa_activate_totp"))

    api = client.get("/api/v1/meetings/")
    assert api.status_code == 401
    assert api["Content-Type"].startswith("application/problem+json")
    assert api.json()["code"] == "not_authenticated"


def test_pages_still_get_the_signed_in_user_and_their_language(agency, make_member):
    member = make_member(agency, Role.MEMBER, language="fr")
    response = signed_in_client(member).get(reverse("agenda"))
    assert response.status_code == 200
    assert response.wsgi_request.user == member
    assert response.wsgi_request.LANGUAGE_CODE == "fr"
    assert response["Content-Language"] == "fr"
