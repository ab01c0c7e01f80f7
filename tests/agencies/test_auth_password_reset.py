"""Password reset by emailed link (allauth): who gets mail, the link, and what it changes."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils.http import int_to_base36

from agencies.models import Role, User
from tests.factories import PASSWORD

RESET = "/accounts/password/reset/"
RESET_DONE = "/accounts/password/reset/done/"
RESET_KEY_DONE = "/accounts/password/reset/key/done/"
NEW_PASSWORD = "a-brand-new-passphrase-77"
_RESET_LINK = re.compile(r"http://testserver(/accounts/password/reset/key/\w+-[-\w]+/)")


def _request_reset(client: Client, email: str):
    return client.post(RESET, {"email": email})


def _reset_path(body: str) -> str:
    links = _RESET_LINK.findall(body)
    assert len(links) == 1, body
    return links[0]


def _set_password_via_link(client: Client, path: str, password: str, again: str | None = None):
    """Follow the mailed link the way a browser does: GET it, then POST the form it leads to."""
    landing = client.get(path)
    assert landing.status_code == 302, "a valid link moves the key into the session"
    form_path = landing["Location"]
    assert form_path.endswith("-set-password/")
    assert client.get(form_path).status_code == 200
    return client.post(
        form_path, {"password1": password, "password2": password if again is None else again}
    )


def _can_sign_in(email: str, password: str) -> bool:
    client = Client()
    client.post("/accounts/login/", {"login": email, "password": password})
    return SESSION_KEY in client.session


@pytest.fixture
def member(agency, make_member):
    return make_member(agency, Role.MEMBER)


@pytest.mark.django_db
def test_reset_request_for_known_address_mails_a_link(member, mailoutbox):
    response = _request_reset(Client(), member.email)

    assert response.status_code == 302
    assert response["Location"] == RESET_DONE
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [member.email]
    assert mail.subject.startswith("[Visio Broker] ")
    _reset_path(mail.body)


@pytest.mark.django_db
def test_reset_request_matches_the_address_case_insensitively(member, mailoutbox):
    _request_reset(Client(), member.email.upper())

    assert len(mailoutbox) == 1
    _reset_path(mailoutbox[0].body)


@pytest.mark.django_db
def test_reset_request_for_unknown_address_sends_nothing_and_looks_the_same(db, mailoutbox):
    # No open sign-up: nothing to offer a stranger, and no mail to arbitrary addresses.
    response = _request_reset(Client(), "stranger@test.gouv.example")

    assert response.status_code == 302
    assert response["Location"] == RESET_DONE
    assert mailoutbox == []


@pytest.mark.django_db
def test_reset_request_for_deactivated_member_sends_nothing(member, mailoutbox):
    User.objects.filter(pk=member.pk).update(is_active=False)

    response = _request_reset(Client(), member.email)

    assert response.status_code == 302
    assert response["Location"] == RESET_DONE
    assert mailoutbox == []


@pytest.mark.django_db
def test_reset_link_sets_the_new_password_and_retires_the_old_one(member, mailoutbox):
    _request_reset(Client(), member.email)
    client = Client()

    response = _set_password_via_link(client, _reset_path(mailoutbox[0].body), NEW_PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == RESET_KEY_DONE
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)
    # Resetting does not sign in (ACCOUNT_LOGIN_ON_PASSWORD_RESET is off).
    assert SESSION_KEY not in client.session
    assert not _can_sign_in(member.email, PASSWORD)
    assert _can_sign_in(member.email, NEW_PASSWORD)


@pytest.mark.django_db
def test_reset_link_works_only_once(member, mailoutbox):
    _request_reset(Client(), member.email)
    path = _reset_path(mailoutbox[0].body)
    _set_password_via_link(Client(), path, NEW_PASSWORD)

    replay = Client().get(path)

    assert replay.status_code == 200
    assert replay.context["token_fail"] is True
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_reset_form_cannot_be_posted_again_after_use(member, mailoutbox):
    _request_reset(Client(), member.email)
    client = Client()
    _set_password_via_link(client, _reset_path(mailoutbox[0].body), NEW_PASSWORD)
    form_path = re.sub(r"-[-\w]+/$", "-set-password/", _reset_path(mailoutbox[0].body))

    response = client.post(
        form_path, {"password1": "another-passphrase-99", "password2": "another-passphrase-99"}
    )

    assert response.status_code == 200
    assert response.context["token_fail"] is True
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "again"),
    [
        ("short-1", "short-1"),  # below the 12-character minimum
        ("password1234", "password1234"),  # a common password
        (NEW_PASSWORD, NEW_PASSWORD + "x"),  # the two fields differ
    ],
)
def test_reset_refuses_a_weak_or_mistyped_password(member, mailoutbox, password, again):
    _request_reset(Client(), member.email)
    path = _reset_path(mailoutbox[0].body)

    response = _set_password_via_link(Client(), path, password, again)

    assert response.status_code == 200
    assert response.context["form"].errors
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


@pytest.mark.django_db
def test_reset_link_for_one_member_cannot_reset_another(agency, make_member, mailoutbox):
    alice = make_member(agency, Role.MEMBER)
    bob = make_member(agency, Role.MEMBER)
    _request_reset(Client(), alice.email)
    alice_path = _reset_path(mailoutbox[0].body)
    forged = re.sub(r"/key/\w+-", f"/key/{int_to_base36(bob.pk)}-", alice_path)

    response = Client().get(forged)

    assert response.status_code == 200
    assert response.context["token_fail"] is True
    bob.refresh_from_db()
    assert bob.check_password(PASSWORD)
