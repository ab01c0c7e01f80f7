"""Password sign-in through allauth: success, refusals, closed sign-up, brute-force limits."""

from __future__ import annotations

import importlib.util
import os
import re
import uuid

import pytest
import redis
from django.contrib.auth import SESSION_KEY
from django.test import Client

import visio_broker.settings
from agencies.models import Role, User
from tests.factories import PASSWORD

LOGIN = "/accounts/login/"
WRONG_CREDENTIALS = "The email address and/or password you specified are not correct."
TOO_MANY_ATTEMPTS = "Too many failed login attempts. Try again later."


@pytest.fixture(autouse=True)
def rate_limit_redis(settings):
    """Rate-limit counters in Redis, as in production, under a key prefix of their own and outside
    the databases (8 to 15) that every test run flushes, so no concurrent run can wipe them."""
    location = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/7"
    prefix = f"auth-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": prefix,
        }
    }
    return redis.Redis.from_url(location), prefix


def _sign_in(client: Client, email: str, password: str, **extra: str):
    return client.post(LOGIN, {"login": email, "password": password, **extra})


def _signed_in_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def _non_field_errors(response) -> list[str]:
    return list(response.context["form"].non_field_errors())


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.ORGANIZER])
def test_signin_with_good_password_redirects_home_and_authenticates(agency, make_member, role):
    user = make_member(agency, role)
    client = Client()

    response = _sign_in(client, user.email, PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert _signed_in_user_id(client) == str(user.pk)
    home = client.get("/")
    assert home.status_code == 200
    assert home.context["user"] == user


@pytest.mark.django_db
def test_signin_email_is_case_insensitive(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    client = Client()

    response = _sign_in(client, user.email.upper(), PASSWORD)

    assert response.status_code == 302
    assert _signed_in_user_id(client) == str(user.pk)


@pytest.mark.django_db
def test_signin_honours_a_local_next_url(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    client = Client()

    response = _sign_in(client, user.email, PASSWORD, next="/profile/")

    assert response.status_code == 302
    assert response["Location"] == "/profile/"


@pytest.mark.django_db
def test_signin_ignores_an_offsite_next_url(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    client = Client()

    response = _sign_in(client, user.email, PASSWORD, next="https://evil.example/")

    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.django_db
def test_signin_with_wrong_password_shows_form_error(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    client = Client()

    response = _sign_in(client, user.email, "not-the-password-1")

    assert response.status_code == 200
    assert _non_field_errors(response) == [WRONG_CREDENTIALS]
    assert _signed_in_user_id(client) is None
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_signin_with_unknown_email_shows_the_same_form_error(db):
    client = Client()

    response = _sign_in(client, "nobody@test.gouv.example", PASSWORD)

    assert response.status_code == 200
    assert _non_field_errors(response) == [WRONG_CREDENTIALS]
    assert _signed_in_user_id(client) is None


@pytest.mark.django_db
def test_signin_of_deactivated_user_is_refused(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    User.objects.filter(pk=user.pk).update(is_active=False)
    client = Client()

    response = _sign_in(client, user.email, PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/inactive/"
    assert _signed_in_user_id(client) is None
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_signin_of_pending_invitee_without_password_is_refused(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    client = Client()

    response = _sign_in(client, user.email, PASSWORD)

    assert response.status_code == 200
    assert _non_field_errors(response) == [WRONG_CREDENTIALS]
    assert _signed_in_user_id(client) is None


@pytest.mark.django_db
def test_signup_page_is_closed(db):
    response = Client().get("/accounts/signup/")

    assert response.status_code == 200
    assert "account/signup_closed.html" in [t.name for t in response.templates]
    assert "password1" not in response.content.decode()


@pytest.mark.django_db
def test_signup_post_creates_no_user(db):
    client = Client()

    response = client.post(
        "/accounts/signup/",
        {
            "email": "newcomer@test.gouv.example",
            "password1": "a-long-enough-passphrase-42",
            "password2": "a-long-enough-passphrase-42",
        },
    )

    assert response.status_code == 200
    assert "account/signup_closed.html" in [t.name for t in response.templates]
    assert not User.objects.filter(email="newcomer@test.gouv.example").exists()
    assert _signed_in_user_id(client) is None


@pytest.mark.django_db
def test_signin_failures_lock_the_account_even_for_the_right_password(agency, make_member):
    # allauth's default login_failed limit: 5 failures per address per 5 minutes.
    user = make_member(agency, Role.MEMBER)
    client = Client()
    for _attempt in range(5):
        response = _sign_in(client, user.email, "not-the-password-1")
        assert _non_field_errors(response) == [WRONG_CREDENTIALS]

    response = _sign_in(client, user.email, PASSWORD)

    assert response.status_code == 200
    assert _non_field_errors(response) == [TOO_MANY_ATTEMPTS]
    assert _signed_in_user_id(client) is None


@pytest.mark.django_db
def test_signin_lockout_lives_in_redis(agency, make_member, rate_limit_redis):
    server, prefix = rate_limit_redis
    user = make_member(agency, Role.MEMBER)
    for _attempt in range(5):
        _sign_in(Client(), user.email, "not-the-password-1")
    # Another browser (fresh session) is locked out too: the counter is not per session.
    assert _non_field_errors(_sign_in(Client(), user.email, PASSWORD)) == [TOO_MANY_ATTEMPTS]
    counters = list(server.scan_iter(f"{prefix}:*:login_failed:*"))
    assert counters

    server.delete(*counters)
    client = Client()
    response = _sign_in(client, user.email, PASSWORD)

    assert response.status_code == 302
    assert _signed_in_user_id(client) == str(user.pk)


@pytest.mark.django_db
def test_signin_lockout_of_one_address_leaves_other_accounts_alone(agency, make_member):
    target = make_member(agency, Role.MEMBER)
    bystander = make_member(agency, Role.MEMBER)
    for _attempt in range(5):
        _sign_in(Client(), target.email, "not-the-password-1")

    client = Client()
    response = _sign_in(client, bystander.email, PASSWORD)

    assert response.status_code == 302
    assert _signed_in_user_id(client) == str(bystander.pk)


@pytest.mark.django_db
def test_signin_failures_from_one_ip_across_addresses_are_limited(agency, make_member):
    # allauth's default also caps failures per client IP (10 a minute), whatever the address.
    user = make_member(agency, Role.MEMBER)
    for n in range(10):
        _sign_in(Client(), f"guess{n}@test.gouv.example", "not-the-password-1")

    client = Client()
    response = _sign_in(client, user.email, PASSWORD)

    assert _non_field_errors(response) == [TOO_MANY_ATTEMPTS]
    assert _signed_in_user_id(client) is None


@pytest.mark.django_db
def test_signin_lockout_is_lifted_by_a_password_reset(agency, make_member, mailoutbox):
    user = make_member(agency, Role.MEMBER)
    for _attempt in range(5):
        _sign_in(Client(), user.email, "not-the-password-1")
    assert _non_field_errors(_sign_in(Client(), user.email, PASSWORD)) == [TOO_MANY_ATTEMPTS]
    Client().post("/accounts/password/reset/", {"email": user.email})
    (path,) = re.findall(
        r"http://testserver(/accounts/password/reset/key/\S+/)", mailoutbox[0].body
    )
    browser = Client()
    form_path = browser.get(path)["Location"]
    new_password = "a-brand-new-passphrase-77"
    browser.post(form_path, {"password1": new_password, "password2": new_password})

    client = Client()
    response = _sign_in(client, user.email, new_password)

    assert response.status_code == 302
    assert _signed_in_user_id(client) == str(user.pk)


def _settings_module_read_with(monkeypatch, **environ: str):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "settings_under_test", visio_broker.settings.__file__
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_signin_rate_limits_are_on_unless_the_environment_turns_them_off(monkeypatch):
    monkeypatch.delenv("ACCOUNT_RATE_LIMITS_ENABLED", raising=False)
    assert not hasattr(_settings_module_read_with(monkeypatch), "ACCOUNT_RATE_LIMITS")

    module = _settings_module_read_with(monkeypatch, ACCOUNT_RATE_LIMITS_ENABLED="false")

    assert module.ACCOUNT_RATE_LIMITS is False


@pytest.mark.django_db
def test_signin_without_rate_limits_never_locks_out(agency, make_member, settings):
    settings.ACCOUNT_RATE_LIMITS = False
    user = make_member(agency, Role.MEMBER)
    for _attempt in range(6):
        _sign_in(Client(), user.email, "not-the-password-1")

    client = Client()
    response = _sign_in(client, user.email, PASSWORD)

    assert response.status_code == 302
    assert _signed_in_user_id(client) == str(user.pk)


@pytest.mark.django_db
def test_signout_ends_the_session(agency, make_member):
    user = make_member(agency, Role.MEMBER)
    client = Client()
    _sign_in(client, user.email, PASSWORD)

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert _signed_in_user_id(client) is None
    assert client.get("/").status_code == 302
