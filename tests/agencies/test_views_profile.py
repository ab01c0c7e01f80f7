"""The signed-in user's own pages: home, profile and the language switch."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from agencies.models import AuditEvent, Role, User
from tests.conftest import signed_in_client


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 costs 0.3 s a hash; what these tests check does not depend on the algorithm."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture
def member(agency, make_member):
    return make_member(
        agency, Role.ORGANIZER, display_name="Jeanne Dupont", timezone="Europe/Paris", language="en"
    )


def _fresh(user: User) -> User:
    return User.objects.get(pk=user.pk)


# --- Home --------------------------------------------------------------------------------------


def test_home_requires_sign_in():
    response = Client().get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next=/"


def test_home_shows_agency_name_and_role(member, agency):
    response = signed_in_client(member).get(reverse("home"))
    body = response.content.decode()
    assert response.status_code == 200
    assert f'<dd data-testid="agency-name">{agency.name}</dd>' in body
    assert '<dd data-testid="role">Organizer</dd>' in body
    assert "Welcome, Jeanne Dupont" in body
    # The members page is for admins only: no link for an organizer.
    assert reverse("member_list") not in body


def test_home_is_translated_for_a_french_profile(agency, make_member):
    user = make_member(agency, Role.MEMBER, language="fr")
    response = signed_in_client(user).get(reverse("home"))
    assert response.status_code == 200
    assert '<html lang="fr">' in response.content.decode()


def test_home_without_membership_says_so(db):
    user = User.objects.create_user("lonely@test.gouv.example", "correct-horse-battery-9")
    response = signed_in_client(user).get(reverse("home"))
    assert response.status_code == 200
    assert "does not belong to an agency yet" in response.content.decode()


# --- Profile -----------------------------------------------------------------------------------


def test_profile_requires_sign_in():
    response = Client().get(reverse("profile"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_profile_shows_current_values(member):
    response = signed_in_client(member).get(reverse("profile"))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="display_name"' in body and 'value="Jeanne Dupont"' in body
    assert '<option value="Europe/Paris" selected>' in body
    assert '<option value="en" selected>' in body


def test_profile_update_saves_and_sets_language_cookie(member, agency):
    client = signed_in_client(member)
    response = client.post(
        reverse("profile"),
        {"display_name": "  Jeanne D.  ", "timezone": "America/Cayenne", "language": "fr"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("profile")
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"
    user = _fresh(member)
    assert (user.display_name, user.timezone, user.language) == (
        "Jeanne D.",
        "America/Cayenne",
        "fr",
    )
    event = AuditEvent.objects.get(action="profile.updated")
    assert event.actor == member and event.agency == agency
    assert event.detail == {"timezone": "America/Cayenne", "language": "fr"}
    # The next page is in the new language.
    assert '<html lang="fr">' in client.get(reverse("profile")).content.decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [("timezone", "Mars/Olympus_Mons"), ("language", "de"), ("display_name", "x" * 151)],
)
def test_profile_update_with_invalid_value_is_400_and_saves_nothing(member, field, value):
    data = {"display_name": "Someone Else", "timezone": "Europe/Berlin", "language": "fr"}
    data[field] = value
    response = signed_in_client(member).post(reverse("profile"), data)
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    user = _fresh(member)
    assert (user.display_name, user.timezone, user.language) == (
        "Jeanne Dupont",
        "Europe/Paris",
        "en",
    )
    assert not AuditEvent.objects.filter(action="profile.updated").exists()
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies


# --- Language switch ---------------------------------------------------------------------------


def test_language_switch_updates_signed_in_users_profile(member):
    client = signed_in_client(member)
    response = client.post(reverse("language_set"), {"language": "fr", "next": "/profile/"})
    assert response.status_code == 302
    assert response["Location"] == "/profile/"
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "fr"
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert _fresh(member).language == "fr"
    assert AuditEvent.objects.filter(action="profile.updated", actor=member).count() == 1


def test_language_switch_to_current_language_writes_nothing(member):
    response = signed_in_client(member).post(reverse("language_set"), {"language": "en"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert not AuditEvent.objects.exists()


def test_language_switch_for_anonymous_sets_only_the_cookie(db):
    client = Client()
    response = client.post(reverse("language_set"), {"language": "fr", "next": "/accounts/login/"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"
    assert '<html lang="fr">' in client.get(reverse("account_login")).content.decode()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "unsafe", ["http://evil.example/", "//evil.example/path", "https://evil.example/profile/"]
)
def test_language_switch_does_not_follow_unsafe_next(member, unsafe):
    response = signed_in_client(member).post(
        reverse("language_set"), {"language": "fr", "next": unsafe}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert _fresh(member).language == "fr"


def test_language_switch_with_unknown_language_changes_nothing(member):
    response = signed_in_client(member).post(
        reverse("language_set"), {"language": "xx", "next": "/profile/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/profile/"
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    assert _fresh(member).language == "en"


def test_language_switch_refuses_get(member):
    response = signed_in_client(member).get(reverse("language_set"), {"language": "fr"})
    assert response.status_code == 405
    assert _fresh(member).language == "en"
