"""Mandatory email verification: an unverified address blocks sign-in until its link is used."""

from __future__ import annotations

import os
import re
import uuid

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import SESSION_KEY
from django.test import Client

from agencies.models import Role
from tests.factories import PASSWORD

LOGIN = "/accounts/login/"
VERIFICATION_SENT = "/accounts/confirm-email/"
_CONFIRM_LINK = re.compile(r"http://testserver(/accounts/confirm-email/[-:\w]+/)")


def _sign_in(client: Client, email: str, password: str = PASSWORD):
    return client.post(LOGIN, {"login": email, "password": password})


def _confirmation_path(body: str) -> str:
    links = _CONFIRM_LINK.findall(body)
    assert len(links) == 1, body
    return links[0]


@pytest.fixture
def isolated_cache(settings):
    """The cooldown marker in Redis, as in production, under a key prefix of its own and outside
    the databases (8 to 15) that every test run flushes, so no concurrent run can wipe it."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/7",
            "KEY_PREFIX": f"auth-test-{uuid.uuid4().hex}",
        }
    }


@pytest.fixture
def unverified(agency, make_member):
    return make_member(agency, Role.MEMBER, verified_email=False)


@pytest.mark.django_db
def test_signin_with_unverified_address_sends_verification_mail_and_stops(unverified, mailoutbox):
    client = Client()

    response = _sign_in(client, unverified.email)

    assert response.status_code == 302
    assert response["Location"] == VERIFICATION_SENT
    assert SESSION_KEY not in client.session
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [unverified.email]
    assert mail.subject.startswith("[Visio Broker] ")
    _confirmation_path(mail.body)


@pytest.mark.django_db
def test_signin_with_unverified_address_cannot_reach_home(unverified):
    client = Client()
    _sign_in(client, unverified.email)

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


@pytest.mark.django_db
def test_signin_with_unverified_address_and_wrong_password_sends_nothing(unverified, mailoutbox):
    response = _sign_in(Client(), unverified.email, "not-the-password-1")

    assert response.status_code == 200
    assert response.context["form"].errors
    assert mailoutbox == []


@pytest.mark.django_db
def test_repeated_signin_attempts_do_not_flood_the_mailbox(unverified, mailoutbox, isolated_cache):
    # allauth's cooldown: one verification mail per address every three minutes.
    _sign_in(Client(), unverified.email)
    response = _sign_in(Client(), unverified.email)

    assert response.status_code == 302
    assert response["Location"] == VERIFICATION_SENT
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_confirmation_link_get_shows_a_form_without_verifying(unverified, mailoutbox):
    _sign_in(Client(), unverified.email)
    path = _confirmation_path(mailoutbox[0].body)

    response = Client().get(path)

    assert response.status_code == 200
    assert response.context["can_confirm"]
    assert response.context["email"] == unverified.email
    assert not EmailAddress.objects.get(user=unverified).verified


@pytest.mark.django_db
def test_confirmation_link_post_verifies_then_signin_works(unverified, mailoutbox):
    _sign_in(Client(), unverified.email)
    path = _confirmation_path(mailoutbox[0].body)
    client = Client()

    response = client.post(path)

    assert response.status_code == 302
    assert response["Location"] == LOGIN
    address = EmailAddress.objects.get(user=unverified)
    assert address.verified and address.primary
    # Confirming does not sign anyone in (ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION is off).
    assert SESSION_KEY not in client.session

    response = _sign_in(client, unverified.email)

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session[SESSION_KEY] == str(unverified.pk)
    assert client.get("/").status_code == 200
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_tampered_confirmation_link_verifies_nothing(unverified, mailoutbox):
    _sign_in(Client(), unverified.email)
    path = _confirmation_path(mailoutbox[0].body)
    tampered = path[:-2] + ("A" if path[-2] != "A" else "B") + "/"

    get = Client().get(tampered)
    post = Client().post(tampered)

    assert get.status_code == 200
    assert get.context["confirmation"] is None
    assert post.status_code == 404
    assert not EmailAddress.objects.get(user=unverified).verified


@pytest.mark.django_db
def test_verified_member_signs_in_without_any_mail(agency, make_member, mailoutbox):
    user = make_member(agency, Role.MEMBER)

    response = _sign_in(Client(), user.email)

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert mailoutbox == []
