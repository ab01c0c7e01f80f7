"""The agency admin's member pages: who may see and change what, and what each change does."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib.auth import SESSION_KEY
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agencies.models import AuditEvent, Membership, Role, Session, User
from tests.conftest import signed_in_client
from tests.factories import PASSWORD

ROLES_WITHOUT_ACCESS = [("anonymous", 302), ("member", 403), ("organizer", 403)]
OTHER_AGENCY_EMAIL = "chef@test.bund.example"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 costs 0.3 s a hash; what these tests check does not depend on the algorithm."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture
def make_admin(make_member):
    """An agency admin who has enrolled TOTP, so the MFA middleware lets them through."""

    def make(agency, **user_fields):
        user = make_member(agency, Role.ADMIN, **user_fields)
        Authenticator.objects.create(
            user=user, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
        )
        return user

    return make


@pytest.fixture
def client_as(agency, other_agency, make_member, make_admin):
    """client_as(who) → a client for anonymous, member, organizer, admin or other_admin."""

    def build(who: str) -> Client:
        if who == "anonymous":
            return Client()
        if who == "admin":
            return signed_in_client(make_admin(agency))
        if who == "other_admin":
            return signed_in_client(make_admin(other_agency, email=OTHER_AGENCY_EMAIL))
        return signed_in_client(make_member(agency, who))

    return build


def _assert_sent_to_login(response) -> None:
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def _role(user: User) -> str:
    return Membership.objects.get(user=user).role


def _is_active(user: User) -> bool:
    return User.objects.get(pk=user.pk).is_active


# --- Who may do what ---------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), ROLES_WITHOUT_ACCESS)
def test_member_list_refused_without_admin_role(client_as, who, status):
    response = client_as(who).get(reverse("member_list"))
    if who == "anonymous":
        _assert_sent_to_login(response)
    else:
        assert response.status_code == status


def test_member_list_shows_own_agency_members_to_admin(client_as, agency, make_member):
    colleague = make_member(agency, Role.ORGANIZER, email="colleague@test.gouv.example")
    response = client_as("admin").get(reverse("member_list"))
    assert response.status_code == 200
    assert colleague.email in response.content.decode()
    assert agency.name in response.content.decode()


def test_member_list_of_other_agency_admin_hides_this_agency(
    client_as, agency, other_agency, make_member
):
    here = make_member(agency, Role.MEMBER, email="agent@test.gouv.example")
    response = client_as("other_admin").get(reverse("member_list"))
    body = response.content.decode()
    assert response.status_code == 200
    assert OTHER_AGENCY_EMAIL in body
    assert here.email not in body
    assert agency.name not in body
    assert [m.user.email for m in response.context["members"]] == [OTHER_AGENCY_EMAIL]


def test_member_list_query_count_does_not_grow_with_members(client_as, agency, make_member):
    client = client_as("admin")
    make_member(agency, Role.MEMBER)
    client.get(reverse("member_list"))  # the first request records the user session
    with CaptureQueriesContext(connection) as few:
        assert client.get(reverse("member_list")).status_code == 200
    for _ in range(8):
        make_member(agency, Role.MEMBER)
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("member_list"))
    assert len(response.context["members"]) == 10
    assert len(many) == len(few)


def test_member_list_query_count_is_pinned(
    client_as, agency, make_member, django_assert_num_queries
):
    client = client_as("admin")
    for _ in range(3):
        make_member(agency, Role.MEMBER)
    client.get(reverse("member_list"))
    # user with their membership (one query, agencies.middleware), the admin's TOTP check,
    # members; the session comes from the cache.
    with django_assert_num_queries(3):
        assert client.get(reverse("member_list")).status_code == 200


@pytest.mark.parametrize(
    ("who", "status", "changed"),
    [
        *[(who, status, False) for who, status in ROLES_WITHOUT_ACCESS],
        ("other_admin", 404, False),
        ("admin", 302, True),
    ],
)
def test_member_role_change_by_role(client_as, agency, make_member, who, status, changed):
    target = make_member(agency, Role.MEMBER)
    client = client_as(who)
    response = client.post(
        reverse("member_role", args=[target.membership.pk]), {"role": "organizer"}
    )
    if who == "anonymous":
        _assert_sent_to_login(response)
    else:
        assert response.status_code == status
    assert _role(target) == (Role.ORGANIZER if changed else Role.MEMBER)
    assert AuditEvent.objects.filter(action="member.role_changed").exists() is changed


@pytest.mark.parametrize(
    ("who", "status", "changed"),
    [
        *[(who, status, False) for who, status in ROLES_WITHOUT_ACCESS],
        ("other_admin", 404, False),
        ("admin", 302, True),
    ],
)
def test_member_deactivate_by_role(client_as, agency, make_member, who, status, changed):
    target = make_member(agency, Role.MEMBER)
    response = client_as(who).post(reverse("member_deactivate", args=[target.membership.pk]))
    if who == "anonymous":
        _assert_sent_to_login(response)
    else:
        assert response.status_code == status
    assert _is_active(target) is not changed
    assert AuditEvent.objects.filter(action="member.deactivated").exists() is changed


@pytest.mark.parametrize(
    ("who", "status", "changed"),
    [
        *[(who, status, False) for who, status in ROLES_WITHOUT_ACCESS],
        ("other_admin", 404, False),
        ("admin", 302, True),
    ],
)
def test_member_reactivate_by_role(client_as, agency, make_member, who, status, changed):
    target = make_member(agency, Role.MEMBER, is_active=False)
    response = client_as(who).post(reverse("member_reactivate", args=[target.membership.pk]))
    if who == "anonymous":
        _assert_sent_to_login(response)
    else:
        assert response.status_code == status
    assert _is_active(target) is changed
    assert AuditEvent.objects.filter(action="member.reactivated").exists() is changed


@pytest.mark.parametrize(("who", "status"), ROLES_WITHOUT_ACCESS)
def test_member_invite_refused_without_admin_role(client_as, mailoutbox, who, status):
    response = client_as(who).post(
        reverse("member_list"), {"email": "new@test.gouv.example", "role": "member"}
    )
    if who == "anonymous":
        _assert_sent_to_login(response)
    else:
        assert response.status_code == status
    assert not User.objects.filter(email="new@test.gouv.example").exists()
    assert mailoutbox == []


@pytest.mark.parametrize("url_name", ["member_role", "member_deactivate", "member_reactivate"])
def test_member_action_urls_refuse_get(client_as, agency, make_member, url_name):
    target = make_member(agency, Role.MEMBER)
    response = client_as("admin").get(reverse(url_name, args=[target.membership.pk]))
    assert response.status_code == 405
    assert _role(target) == Role.MEMBER and _is_active(target)


def test_member_action_on_unknown_member_is_404(client_as):
    response = client_as("admin").post(reverse("member_deactivate", args=[999_999]))
    assert response.status_code == 404


def test_admin_without_totp_is_sent_to_mfa_setup(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    response = signed_in_client(admin).get(reverse("member_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("mfa_activate_totp"))


# --- Invitations -------------------------------------------------------------------------------


def test_member_invite_by_admin_creates_pending_member_and_mails(
    client_as, agency, mailoutbox, django_capture_on_commit_callbacks
):
    client = client_as("admin")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("member_list"),
            {
                "email": "New.Agent@Test.gouv.example",
                "display_name": "New Agent",
                "role": "organizer",
            },
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("member_list")
    user = User.objects.get(email="new.agent@test.gouv.example")
    assert not user.has_usable_password()
    assert user.membership.agency == agency and user.membership.role == Role.ORGANIZER
    assert [m.to for m in mailoutbox] == [["new.agent@test.gouv.example"]]
    assert "/invitation/" in mailoutbox[0].body
    assert AuditEvent.objects.filter(action="member.invited", agency=agency).count() == 1


def test_member_invite_outside_agency_domains_is_400(
    client_as, mailoutbox, django_capture_on_commit_callbacks
):
    client = client_as("admin")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("member_list"), {"email": "someone@gmail.example", "role": "member"}
        )
    assert response.status_code == 400
    assert "only accepts addresses at test.gouv.example" in response.content.decode()
    assert not User.objects.filter(email="someone@gmail.example").exists()
    assert mailoutbox == []


def test_member_invite_of_address_used_elsewhere_is_refused(
    client_as, other_agency, make_member, mailoutbox
):
    """An address already in use elsewhere is refused without joining the other agency."""
    client = client_as("admin")
    taken = make_member(other_agency, Role.MEMBER, email="taken@test.gouv.example")
    response = client.post(reverse("member_list"), {"email": taken.email, "role": "member"})
    assert response.status_code == 400
    assert "already has an account" in response.content.decode()
    assert Membership.objects.get(user=taken).agency == other_agency
    assert mailoutbox == []


# --- Role changes ------------------------------------------------------------------------------


def test_member_role_change_with_htmx_returns_the_row(client_as, agency, make_member):
    target = make_member(agency, Role.MEMBER)
    response = client_as("admin").post(
        reverse("member_role", args=[target.membership.pk]),
        {"role": "organizer"},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert response.templates[0].name == "agencies/_member_row.html"
    assert body.startswith(f'<tr id="member-{target.membership.pk}">')
    assert '<option value="organizer" selected>' in body
    assert "<html" not in body
    assert _role(target) == Role.ORGANIZER


def test_member_role_change_to_invalid_role_is_400(client_as, agency, make_member):
    target = make_member(agency, Role.MEMBER)
    response = client_as("admin").post(
        reverse("member_role", args=[target.membership.pk]),
        {"role": "owner"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert _role(target) == Role.MEMBER
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()


def test_member_role_change_to_same_role_writes_no_audit(client_as, agency, make_member):
    target = make_member(agency, Role.ORGANIZER)
    response = client_as("admin").post(
        reverse("member_role", args=[target.membership.pk]),
        {"role": "organizer"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()


def test_demoting_the_only_admin_is_refused(agency, make_admin):
    admin = make_admin(agency)
    client = signed_in_client(admin)
    response = client.post(
        reverse("member_role", args=[admin.membership.pk]),
        {"role": "member"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409
    assert '<option value="admin" selected>' in response.content.decode()
    assert _role(admin) == Role.ADMIN
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()


def test_demoting_the_only_admin_without_htmx_shows_the_error(agency, make_admin):
    admin = make_admin(agency)
    client = signed_in_client(admin)
    response = client.post(
        reverse("member_role", args=[admin.membership.pk]), {"role": "member"}, follow=True
    )
    assert response.redirect_chain == [(reverse("member_list"), 302)]
    assert "needs at least one active administrator" in response.content.decode()
    assert _role(admin) == Role.ADMIN


def test_demoting_an_admin_whose_only_peer_is_deactivated_is_refused(agency, make_admin):
    admin = make_admin(agency)
    make_admin(agency, is_active=False)
    response = signed_in_client(admin).post(
        reverse("member_role", args=[admin.membership.pk]),
        {"role": "organizer"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409
    assert _role(admin) == Role.ADMIN


def test_admin_may_step_down_when_another_admin_remains(agency, make_admin):
    admin = make_admin(agency)
    make_admin(agency)
    client = signed_in_client(admin)
    response = client.post(
        reverse("member_role", args=[admin.membership.pk]),
        {"role": "member"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert _role(admin) == Role.MEMBER
    assert client.get(reverse("member_list")).status_code == 403


# --- Deactivation and reactivation -------------------------------------------------------------


def test_self_deactivation_is_refused(agency, make_admin):
    admin = make_admin(agency)
    make_admin(agency)
    client = signed_in_client(admin)
    response = client.post(
        reverse("member_deactivate", args=[admin.membership.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 403
    assert _is_active(admin)
    assert not AuditEvent.objects.filter(action="member.deactivated").exists()
    assert client.get(reverse("home")).status_code == 200


def _sessions_of(user: User) -> list[Session]:
    return [s for s in Session.objects.all() if s.get_decoded().get(SESSION_KEY) == str(user.pk)]


def test_deactivation_ends_the_members_sessions_and_is_audited(agency, make_admin, make_member):
    admin = make_admin(agency)
    target = make_member(agency, Role.ORGANIZER)
    target_client = Client()
    response = target_client.post(
        reverse("account_login"), {"login": target.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert target_client.get(reverse("home")).status_code == 200
    assert UserSession.objects.filter(user=target).count() == 1
    assert len(_sessions_of(target)) == 1

    admin_client = signed_in_client(admin)
    response = admin_client.post(reverse("member_deactivate", args=[target.membership.pk]))

    assert response.status_code == 302
    assert not _is_active(target)
    assert not UserSession.objects.filter(user=target).exists()
    assert _sessions_of(target) == []
    response = target_client.get(reverse("home"))
    _assert_sent_to_login(response)
    event = AuditEvent.objects.get(action="member.deactivated")
    assert event.actor == admin
    assert event.agency == agency
    assert event.object_id == str(target.membership.pk)
    assert event.detail == {"sessions_ended": 1}
    # The admin's own session is untouched.
    assert admin_client.get(reverse("member_list")).status_code == 200


def test_deactivated_member_cannot_sign_in(agency, make_admin, make_member):
    admin = make_admin(agency)
    target = make_member(agency, Role.MEMBER)
    signed_in_client(admin).post(reverse("member_deactivate", args=[target.membership.pk]))
    client = Client()
    client.post(reverse("account_login"), {"login": target.email, "password": PASSWORD})
    _assert_sent_to_login(client.get(reverse("home")))


def test_reactivation_lets_the_member_sign_in_again_and_is_audited(agency, make_admin, make_member):
    admin = make_admin(agency)
    target = make_member(agency, Role.MEMBER)
    admin_client = signed_in_client(admin)
    admin_client.post(reverse("member_deactivate", args=[target.membership.pk]))

    response = admin_client.post(
        reverse("member_reactivate", args=[target.membership.pk]), headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert "Deactivated" not in response.content.decode()
    assert _is_active(target)
    event = AuditEvent.objects.get(action="member.reactivated")
    assert event.actor == admin and event.object_id == str(target.membership.pk)
    client = Client()
    client.post(reverse("account_login"), {"login": target.email, "password": PASSWORD})
    assert client.get(reverse("home")).status_code == 200


def test_deactivating_twice_writes_one_audit_row(client_as, agency, make_member):
    target = make_member(agency, Role.MEMBER)
    client = client_as("admin")
    url = reverse("member_deactivate", args=[target.membership.pk])
    client.post(url)
    response = client.post(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Deactivated" in response.content.decode()
    assert AuditEvent.objects.filter(action="member.deactivated").count() == 1
