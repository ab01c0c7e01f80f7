"""The signed-in user of a request (agencies.middleware.session_user): Django's rules for a
session, read in one query with the home membership."""

from __future__ import annotations

import pytest
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from agencies.middleware import session_user
from agencies.models import Role, User
from agencies.selectors import is_agency_admin, membership_of
from agencies.services import member_deactivate
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGE = "/profile/"


def signed_in(user, backend: str = "django.contrib.auth.backends.ModelBackend") -> Client:
    client = Client()
    client.force_login(user, backend=backend)
    return client


def request_of(client: Client):
    """The request the client's next page would make, with its session."""
    return client.get(PAGE).wsgi_request


@pytest.mark.parametrize(
    "backend",
    [
        "django.contrib.auth.backends.ModelBackend",
        "allauth.account.auth_backends.AuthenticationBackend",
    ],
)
def test_session_user_reads_the_user_and_membership_in_one_query(
    backend, agency, make_member, django_assert_num_queries
):
    user = make_member(agency, Role.ADMIN)
    request = request_of(signed_in(user, backend))
    with django_assert_num_queries(1):
        found = session_user(request)
        membership = membership_of(found)
        assert is_agency_admin(found)
    assert found == user
    assert membership.agency == agency
    assert membership.user is found


def test_session_user_without_a_membership(db, django_assert_num_queries):
    user = UserFactory()
    request = request_of(signed_in(user))
    with django_assert_num_queries(1):
        found = session_user(request)
        assert membership_of(found) is None
    assert found == user


def test_deactivated_user_is_signed_out_on_the_next_request(agency, make_member):
    admin, member = make_member(agency, Role.ADMIN), make_member(agency, Role.MEMBER)
    client = signed_in(member)
    assert client.get(PAGE).status_code == 200
    member_deactivate(actor=admin, membership=member.membership)
    response = client.get(PAGE)
    assert response.status_code == 302
    assert isinstance(response.wsgi_request.user, AnonymousUser)


def test_inactive_user_with_a_live_session_is_anonymous(agency, make_member):
    member = make_member(agency, Role.MEMBER)
    request = request_of(signed_in(member))
    type(member).objects.filter(pk=member.pk).update(is_active=False)
    assert isinstance(session_user(request), AnonymousUser)


def test_password_changed_elsewhere_ends_the_session(agency, make_member):
    member = make_member(agency, Role.MEMBER)
    client = signed_in(member)
    member.set_password("another-long-password-2026")
    member.save(update_fields=["password"])
    response = client.get(PAGE)
    assert response.status_code == 302
    assert SESSION_KEY not in client.session


def test_session_signed_under_a_previous_secret_key_is_kept_and_rehashed(
    agency, make_member, settings
):
    member = make_member(agency, Role.MEMBER)
    settings.SECRET_KEY_FALLBACKS = []
    old_key = settings.SECRET_KEY
    client = signed_in(member)
    old_hash = client.session[HASH_SESSION_KEY]
    settings.SECRET_KEY = "rotated-" + old_key
    settings.SECRET_KEY_FALLBACKS = [old_key]
    response = client.get(PAGE)
    assert response.status_code == 200
    assert response.wsgi_request.user == member
    assert response.wsgi_request.session[HASH_SESSION_KEY] != old_hash


def test_session_of_a_backend_no_longer_configured_is_anonymous(agency, make_member, settings):
    member = make_member(agency, Role.MEMBER)
    request = request_of(signed_in(member))
    settings.AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
    assert isinstance(session_user(request), AnonymousUser)


class EveryoneIsTheFirstUser:
    """A backend that does not read users the way ModelBackend does."""

    def get_user(self, user_id):
        return User.objects.order_by("pk").first()


def test_other_backends_keep_their_own_get_user(agency, make_member, settings):
    first = make_member(agency, Role.MEMBER)
    second = make_member(agency, Role.MEMBER)
    path = f"{__name__}.EveryoneIsTheFirstUser"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, path]
    client = Client()
    client.force_login(second, backend=path)
    session = client.session
    session[HASH_SESSION_KEY] = first.get_session_auth_hash()
    session.save()
    request = request_of(client)
    assert session_user(request) == first


def test_tampered_session_hash_is_anonymous_and_flushed(agency, make_member):
    member = make_member(agency, Role.MEMBER)
    client = signed_in(member)
    session = client.session
    session[HASH_SESSION_KEY] = "0" * 64
    session.save()
    response = client.get(PAGE)
    assert response.status_code == 302
    assert SESSION_KEY not in client.session


def test_the_request_carries_the_user_itself_not_a_lazy_proxy(agency, make_member):
    user = make_member(agency)
    request = request_of(signed_in(user))
    assert type(request.user) is User
    assert request.user == user


def test_a_request_without_a_session_reads_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert type(response.wsgi_request.user) is AnonymousUser
