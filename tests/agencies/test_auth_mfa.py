"""Two-factor sign-in with TOTP, and the rule that admins and operators must enrol first."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth import SESSION_KEY
from django.test import Client

from agencies.models import Role
from tests.conftest import signed_in_client
from tests.factories import PASSWORD, UserFactory

LOGIN = "/accounts/login/"
ACTIVATE = "/accounts/2fa/totp/activate/"
AUTHENTICATE = "/accounts/2fa/authenticate/"
RECOVERY_CODES = "/accounts/2fa/recovery-codes/"
REAUTHENTICATE = "/accounts/reauthenticate/"
APP_PAGES = ["/", "/profile/", "/agency/members/"]


# --- RFC 6238 (TOTP over RFC 4226 HOTP), written here so the server is checked independently --


def _hotp(secret_b32: str, counter: int, digits: int = 6) -> str:
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    (number,) = struct.unpack(">I", digest[offset : offset + 4])
    return str((number & 0x7FFFFFFF) % 10**digits).zfill(digits)


def _totp(secret_b32: str, *, at: float | None = None, step: int = 30) -> str:
    return _hotp(secret_b32, int((time.time() if at is None else at) // step))


def test_totp_implementation_matches_rfc_6238_test_vectors():
    # RFC 6238 appendix B, SHA-1 key "12345678901234567890", last six digits.
    secret = base64.b32encode(b"12345678901234567890").decode()
    vectors = {
        59: "287082",
        1111111109: "081804",
        1111111111: "050471",
        1234567890: "005924",
        2000000000: "279037",
    }
    assert {at: _totp(secret, at=at) for at in vectors} == vectors


def _code_now(secret: str, *, seconds_needed: float = 3) -> str:
    """A code valid for a few more seconds: the server accepts the current 30 s step only."""
    left = 30 - time.time() % 30
    if left < seconds_needed:
        time.sleep(left + 0.05)
    return _totp(secret)


def _wrong_code(secret: str) -> str:
    now = time.time()
    valid = {_totp(secret, at=now + delta) for delta in (-30, 0, 30)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def isolated_cache(settings):
    """Used-code markers and attempt counters in Redis, as in production, under a key prefix of
    their own and outside the databases (8 to 15) that every test run flushes, so no concurrent
    run can wipe them."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/7",
            "KEY_PREFIX": f"auth-test-{uuid.uuid4().hex}",
        }
    }


def _password_sign_in(client: Client, user):
    return client.post(LOGIN, {"login": user.email, "password": PASSWORD})


def _signed_in(client: Client, user) -> bool:
    return client.session.get(SESSION_KEY) == str(user.pk)


def _secret_from_activation_page(response) -> str:
    # What an authenticator app reads from the QR code: the otpauth:// URI.
    uri = urlsplit(response.context["totp_url"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    params = parse_qs(uri.query)
    assert params["issuer"] == ["Visio Broker"]
    (secret,) = params["secret"]
    return secret


def _activate_totp(client: Client) -> str:
    """Enrol TOTP from a signed-in browser, re-entering the password first; returns the secret."""
    response = client.get(ACTIVATE)
    assert response.status_code == 302
    assert response["Location"] == f"{REAUTHENTICATE}?next={quote(ACTIVATE, safe='')}"
    response = client.post(response["Location"], {"password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == ACTIVATE
    page = client.get(ACTIVATE)
    assert page.status_code == 200
    secret = _secret_from_activation_page(page)
    response = client.post(ACTIVATE, {"code": _code_now(secret)})
    assert response.status_code == 302, response.context and response.context["form"].errors
    assert response["Location"] == RECOVERY_CODES
    return secret


def _enrolled(user) -> tuple[Client, str]:
    client = Client()
    _password_sign_in(client, user)
    return client, _activate_totp(client)


def _fresh_client_at_second_stage(user) -> Client:
    client = Client()
    response = _password_sign_in(client, user)
    assert response.status_code == 302
    assert response["Location"] == AUTHENTICATE
    return client


# --- enrolment ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.ORGANIZER, Role.ADMIN])
def test_mfa_any_member_can_activate_totp(agency, make_member, role):
    user = make_member(agency, role)

    _client, _secret = _enrolled(user)

    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).count() == 1
    # Recovery codes come with it, for a lost phone.
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.RECOVERY_CODES).exists()


def _reauthenticated_activation_page(client: Client):
    client.post(f"{REAUTHENTICATE}?next={ACTIVATE}", {"password": PASSWORD})
    return client.get(ACTIVATE)


@pytest.mark.django_db
def test_mfa_activation_with_a_wrong_code_is_refused(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    client = signed_in_client(user)
    secret = _secret_from_activation_page(_reauthenticated_activation_page(client))

    response = client.post(ACTIVATE, {"code": _wrong_code(secret)})

    assert response.status_code == 200
    assert response.context["form"].errors["code"] == ["Incorrect code."]
    assert not Authenticator.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_mfa_activation_asks_for_the_password_again(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    client = signed_in_client(user)

    response = client.get(ACTIVATE)

    assert response.status_code == 302
    assert response["Location"].startswith(REAUTHENTICATE)
    wrong = client.post(response["Location"], {"password": "not-the-password-1"})
    assert wrong.status_code == 200
    assert wrong.context["form"].errors
    assert client.get(ACTIVATE)["Location"].startswith(REAUTHENTICATE)
    assert not Authenticator.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_mfa_activation_is_refused_with_an_unverified_address(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    user.emailaddress_set.update(verified=False)
    client = signed_in_client(user)

    response = client.get(ACTIVATE)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/"
    assert not Authenticator.objects.filter(user=user).exists()


# --- second stage of sign-in -------------------------------------------------------------------


@pytest.mark.django_db
def test_mfa_signin_stops_at_the_code_stage(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    _enrolled(user)

    client = _fresh_client_at_second_stage(user)

    assert not _signed_in(client, user)
    assert client.get(AUTHENTICATE).status_code == 200
    home = client.get("/")
    assert home.status_code == 302
    assert home["Location"].startswith(LOGIN)


@pytest.mark.django_db
def test_mfa_signin_with_wrong_code_is_refused(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    _client, secret = _enrolled(user)
    client = _fresh_client_at_second_stage(user)

    response = client.post(AUTHENTICATE, {"code": _wrong_code(secret)})

    assert response.status_code == 200
    assert response.context["form"].errors["code"] == ["Incorrect code."]
    assert not _signed_in(client, user)


@pytest.mark.django_db
def test_mfa_signin_with_right_code_signs_in(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    _client, secret = _enrolled(user)
    client = _fresh_client_at_second_stage(user)

    response = client.post(AUTHENTICATE, {"code": _code_now(secret)})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert _signed_in(client, user)
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_mfa_code_alone_without_the_password_signs_nobody_in(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    _client, secret = _enrolled(user)

    response = Client().post(AUTHENTICATE, {"code": _code_now(secret)})

    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


@pytest.mark.django_db
def test_mfa_code_cannot_be_replayed(agency, make_member, isolated_cache):
    user = make_member(agency, Role.MEMBER)
    _client, secret = _enrolled(user)
    code = _code_now(secret, seconds_needed=15)
    first = _fresh_client_at_second_stage(user)
    assert first.post(AUTHENTICATE, {"code": code}).status_code == 302

    second = _fresh_client_at_second_stage(user)
    response = second.post(AUTHENTICATE, {"code": code})

    assert response.status_code == 200
    assert response.context["form"].errors["code"] == ["Incorrect code."]
    assert not _signed_in(second, user)


@pytest.mark.django_db
def test_mfa_code_guessing_is_rate_limited(agency, make_member, isolated_cache):
    user = make_member(agency, Role.MEMBER)
    _client, secret = _enrolled(user)
    client = _fresh_client_at_second_stage(user)
    for _attempt in range(5):
        client.post(AUTHENTICATE, {"code": _wrong_code(secret)})

    response = client.post(AUTHENTICATE, {"code": _code_now(secret)})

    assert response.status_code == 200
    assert response.context["form"].errors["code"] == [
        "Too many failed login attempts. Try again later."
    ]
    assert not _signed_in(client, user)


@pytest.mark.django_db
def test_mfa_recovery_code_signs_in_once(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    enrolled, _secret = _enrolled(user)
    codes = enrolled.get(RECOVERY_CODES).context["unused_codes"]
    assert len(codes) == 10

    client = _fresh_client_at_second_stage(user)
    assert client.post(AUTHENTICATE, {"code": codes[0]}).status_code == 302
    assert _signed_in(client, user)

    again = _fresh_client_at_second_stage(user)
    response = again.post(AUTHENTICATE, {"code": codes[0]})
    assert response.status_code == 200
    assert not _signed_in(again, user)


# --- admins and operators must enrol -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", APP_PAGES)
def test_mfa_agency_admin_without_totp_is_sent_to_activation(agency, make_member, path):
    admin = make_member(agency, Role.ADMIN)

    response = signed_in_client(admin).get(path)

    assert response.status_code == 302
    assert response["Location"] == f"{ACTIVATE}?next={path}"


@pytest.mark.django_db
@pytest.mark.parametrize("path", [*APP_PAGES, "/admin/"])
def test_mfa_staff_without_totp_is_sent_to_activation(db, path):
    operator = UserFactory(is_staff=True, is_superuser=True)

    response = signed_in_client(operator).get(path)

    assert response.status_code == 302
    assert response["Location"] == f"{ACTIVATE}?next={path}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.ORGANIZER])
@pytest.mark.parametrize("path", ["/", "/profile/"])
def test_mfa_is_optional_for_members_and_organizers(agency, make_member, role, path):
    user = make_member(agency, role)

    response = signed_in_client(user).get(path)

    assert response.status_code == 200


@pytest.mark.django_db
def test_mfa_non_admin_sees_403_not_activation_on_admin_pages(agency, make_member):
    user = make_member(agency, Role.ORGANIZER)

    response = signed_in_client(user).get("/agency/members/")

    assert response.status_code == 403


@pytest.mark.django_db
def test_mfa_admin_without_totp_can_still_reach_account_pages_and_sign_out(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    client = Client()
    _password_sign_in(client, admin)

    assert client.get(REAUTHENTICATE).status_code == 200
    assert _reauthenticated_activation_page(client).status_code == 200
    assert client.get("/accounts/2fa/").status_code == 200
    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert SESSION_KEY not in client.session


@pytest.mark.django_db
def test_mfa_admin_signs_in_enrols_then_reaches_the_app(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    client = Client()

    response = _password_sign_in(client, admin)
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/")["Location"] == f"{ACTIVATE}?next=/"

    _activate_totp(client)

    for path in APP_PAGES:
        assert client.get(path).status_code == 200, path


@pytest.mark.django_db
def test_mfa_enrolled_admin_signs_in_with_the_code_then_reaches_the_app(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    _client, secret = _enrolled(admin)
    client = _fresh_client_at_second_stage(admin)

    response = client.post(AUTHENTICATE, {"code": _code_now(secret)})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/agency/members/").status_code == 200


@pytest.mark.django_db
def test_mfa_staff_after_enrolling_reaches_home(db):
    operator = UserFactory(is_staff=True)
    client = Client()
    _password_sign_in(client, operator)

    _activate_totp(client)

    assert client.get("/").status_code == 200
