"""Writes of the agencies app: agencies, users, invitations, roles, (de)activation, profiles."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import authenticate

from agencies.models import Agency, AuditEvent, Membership, Role, User
from agencies.services import (
    agency_create,
    member_deactivate,
    member_invite,
    member_reactivate,
    membership_change_role,
    profile_update,
    user_create,
)
from tests.factories import PASSWORD
from visio_broker.audit import CLI
from visio_broker.errors import Conflict, Forbidden, InvalidInput

pytestmark = pytest.mark.django_db

AGENCY = {
    "slug": "nl-test",
    "name": "Ministerie Test",
    "country": "NL",
    "timezone": "Europe/Amsterdam",
}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 costs 0.3 s a hash; what these tests check does not depend on the algorithm."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


# --- agency_create -----------------------------------------------------------------------------


def test_agency_create_normalizes_and_audits():
    agency = agency_create(
        actor=CLI,
        slug=" nl-test ",
        name=" Ministerie Test ",
        country="nl",
        timezone="Europe/Amsterdam",
        language="FR",
        email_domains=["MinTest.Example", " ", "mintest.example"],
        allowed_backend_countries=["de", "NL"],
    )
    agency.refresh_from_db()
    assert (agency.slug, agency.name, agency.country) == ("nl-test", "Ministerie Test", "NL")
    assert agency.default_language == "fr"
    assert agency.email_domains == ["mintest.example"]
    assert agency.allowed_backend_countries == ["DE", "NL"]
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.actor_label) == ("agency.created", None, "cli")
    assert event.agency == agency
    assert (event.object_type, event.object_id) == ("agencies.agency", str(agency.pk))
    assert event.detail == {"slug": "nl-test", "country": "NL"}


def test_agency_create_by_user_records_the_user(agency, make_member):
    operator = make_member(agency, Role.ADMIN)
    created = agency_create(actor=operator, **AGENCY)
    event = AuditEvent.objects.get(agency=created)
    assert event.actor == operator and event.actor_label == operator.email


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"country": "XX"}, "XX is not an ISO 3166 country code"),
        ({"country": "Netherlands"}, "not an ISO 3166 country code"),
        ({"timezone": "Europe/Atlantis"}, "Europe/Atlantis is not an IANA time zone"),
        ({"language": "de"}, "de is not a supported language"),
        ({"email_domains": ["not a domain"]}, "not a domain is not a valid domain name"),
        ({"email_domains": ["localhost"]}, "localhost is not a valid domain name"),
        ({"allowed_backend_countries": ["ZZ"]}, "ZZ is not an ISO 3166 country code"),
        ({"slug": "has space"}, "slug"),
        ({"name": "   "}, "name"),
    ],
)
def test_agency_create_rejects_invalid_input(override, message):
    with pytest.raises(InvalidInput) as error:
        agency_create(actor=CLI, **{**AGENCY, **override})
    assert message in error.value.message
    assert error.value.status == 400
    assert not Agency.objects.exists()
    assert not AuditEvent.objects.exists()


def test_agency_create_duplicate_slug_is_conflict():
    agency_create(actor=CLI, **AGENCY)
    with pytest.raises(Conflict) as error:
        agency_create(actor=CLI, **{**AGENCY, "name": "Another name"})
    assert error.value.code == "agency_exists"
    assert Agency.objects.get().name == "Ministerie Test"
    assert AuditEvent.objects.filter(action="agency.created").count() == 1


# --- user_create -------------------------------------------------------------------------------


def test_user_create_with_password_can_sign_in_and_is_audited(agency):
    user = user_create(
        actor=CLI,
        email="  Agent@Test.Gouv.Example ",
        agency=agency,
        role=Role.ORGANIZER,
        display_name=" Agent ",
        password=PASSWORD,
    )
    assert user.email == "agent@test.gouv.example"
    assert (user.display_name, user.timezone, user.language) == ("Agent", "Europe/Paris", "en")
    assert user.membership.agency == agency and user.membership.role == Role.ORGANIZER
    assert authenticate(email="agent@test.gouv.example", password=PASSWORD) == user
    address = EmailAddress.objects.get(user=user)
    assert (address.email, address.primary, address.verified) == (user.email, True, False)
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_label, event.agency) == ("user.created", "cli", agency)
    assert event.detail == {"email": "agent@test.gouv.example", "role": "organizer"}


def test_user_create_without_password_cannot_sign_in(agency):
    user = user_create(actor=CLI, email="invitee@test.gouv.example", agency=agency, role="member")
    assert not user.has_usable_password()
    assert authenticate(email=user.email, password="") is None


def test_user_create_takes_agency_defaults(other_agency):
    other_agency.default_language = "fr"
    other_agency.save()
    user = user_create(actor=CLI, email="a@test.bund.example", agency=other_agency, role="member")
    assert (user.timezone, user.language) == ("Europe/Berlin", "fr")


@pytest.mark.parametrize(
    "duplicate", ["agent@test.gouv.example", "AGENT@test.gouv.example", " Agent@TEST.gouv.example"]
)
def test_user_create_duplicate_email_is_conflict(agency, other_agency, duplicate):
    user_create(actor=CLI, email="agent@test.gouv.example", agency=agency, role="member")
    with pytest.raises(Conflict) as error:
        user_create(actor=CLI, email=duplicate, agency=other_agency, role="admin")
    assert error.value.code == "user_exists"
    assert error.value.status == 409
    assert User.objects.count() == 1
    assert Membership.objects.get().agency == agency
    assert AuditEvent.objects.filter(action="user.created").count() == 1


@pytest.mark.parametrize(
    "password",
    ["short-9", "password1234", "123456789012345", "agent@test.gouv.example"],
    ids=["too-short", "common", "numeric", "like-email"],
)
def test_user_create_weak_password_is_refused(agency, password):
    with pytest.raises(InvalidInput) as error:
        user_create(
            actor=CLI,
            email="agent@test.gouv.example",
            agency=agency,
            role="member",
            password=password,
        )
    assert error.value.code == "weak_password"
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"email": "no-at-sign"}, "invalid_email"),
        ({"role": "owner"}, "invalid_role"),
        ({"email": "bad@@test.gouv.example"}, "invalid"),
    ],
)
def test_user_create_rejects_invalid_input(agency, kwargs, code):
    with pytest.raises(InvalidInput) as error:
        user_create(
            actor=CLI, agency=agency, **{"email": "a@test.gouv.example", "role": "member", **kwargs}
        )
    assert error.value.code == code
    assert not User.objects.exists()


# --- member_invite -----------------------------------------------------------------------------


def test_member_invite_sends_mail_after_commit(
    agency, make_member, mailoutbox, django_capture_on_commit_callbacks
):
    admin = make_member(agency, Role.ADMIN, display_name="Camille Admin")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        membership = member_invite(
            actor=admin, agency=agency, email="new@test.gouv.example", role=Role.MEMBER
        )
    assert mailoutbox == []
    for callback in callbacks:
        callback()
    assert membership.invited_by == admin
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["new@test.gouv.example"]
    assert mail.subject.startswith("[Visio Broker] ")
    assert "Camille Admin" in mail.body
    assert f"{settings.SITE_URL}/invitation/" in mail.body
    assert [alt.mimetype for alt in mail.alternatives] == ["text/html"]
    assert list(
        AuditEvent.objects.filter(agency=agency).order_by("id").values_list("action", flat=True)
    ) == ["user.created", "member.invited"]


def test_member_invite_is_in_the_invitees_language(
    agency, make_member, mailoutbox, django_capture_on_commit_callbacks
):
    agency.default_language = "fr"
    agency.save()
    admin = make_member(agency, Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        member_invite(actor=admin, agency=agency, email="new@test.gouv.example", role="member")
    assert User.objects.get(email="new@test.gouv.example").language == "fr"
    assert (
        mailoutbox[0].subject
        == "[Visio Broker] Invitation à rejoindre Ministère Test sur Visio Broker"
    )


def test_member_invite_again_while_pending_resends(
    agency, make_member, mailoutbox, django_capture_on_commit_callbacks
):
    admin = make_member(agency, Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        first = member_invite(
            actor=admin, agency=agency, email="new@test.gouv.example", role="member"
        )
        again = member_invite(
            actor=admin, agency=agency, email="NEW@test.gouv.example", role="admin"
        )
    assert again.pk == first.pk
    assert again.role == Role.MEMBER
    assert len(mailoutbox) == 2
    assert AuditEvent.objects.filter(action="member.reinvited").count() == 1


@pytest.mark.parametrize("where", ["same_agency_active", "other_agency_pending"])
def test_member_invite_of_existing_account_is_conflict(
    agency, other_agency, make_member, mailoutbox, django_capture_on_commit_callbacks, where
):
    admin = make_member(agency, Role.ADMIN)
    if where == "same_agency_active":
        existing = make_member(agency, Role.MEMBER, email="x@test.gouv.example")
    else:
        existing = user_create(
            actor=CLI, email="x@test.gouv.example", agency=other_agency, role="member"
        )
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Conflict) as error:
        member_invite(actor=admin, agency=agency, email=existing.email, role="member")
    assert error.value.code == "user_exists"
    assert mailoutbox == []
    assert not AuditEvent.objects.filter(action__startswith="member.").exists()


def test_member_invite_outside_email_domains_is_refused(agency, make_member, mailoutbox):
    admin = make_member(agency, Role.ADMIN)
    with pytest.raises(InvalidInput) as error:
        member_invite(actor=admin, agency=agency, email="x@elsewhere.example", role="member")
    assert error.value.code == "email_domain_not_allowed"
    assert not User.objects.filter(email="x@elsewhere.example").exists()


def test_member_invite_by_cli_may_skip_domain_check(agency, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        membership = member_invite(
            actor=CLI,
            agency=agency,
            email="x@elsewhere.example",
            role="member",
            check_email_domain=False,
        )
    assert membership.agency == agency and membership.invited_by is None


# --- Roles, deactivation, profile --------------------------------------------------------------


def test_membership_change_role_refuses_demoting_last_admin(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    with pytest.raises(Conflict) as error:
        membership_change_role(actor=admin, membership=admin.membership, role=Role.ORGANIZER)
    assert error.value.code == "last_admin"
    admin.membership.refresh_from_db()
    assert admin.membership.role == Role.ADMIN
    assert not AuditEvent.objects.exists()


def test_membership_change_role_with_unknown_role_is_invalid(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    member = make_member(agency, Role.MEMBER)
    with pytest.raises(InvalidInput) as error:
        membership_change_role(actor=admin, membership=member.membership, role="owner")
    assert error.value.code == "invalid_role"


def test_member_deactivate_self_is_forbidden(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    with pytest.raises(Forbidden) as error:
        member_deactivate(actor=admin, membership=admin.membership)
    assert error.value.code == "cannot_deactivate_self"
    assert User.objects.get(pk=admin.pk).is_active


def test_member_deactivate_and_reactivate_are_idempotent(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    member = make_member(agency, Role.MEMBER)
    member_deactivate(actor=admin, membership=member.membership)
    member_deactivate(actor=admin, membership=member.membership)
    assert not User.objects.get(pk=member.pk).is_active
    member_reactivate(actor=admin, membership=member.membership)
    member_reactivate(actor=admin, membership=member.membership)
    assert User.objects.get(pk=member.pk).is_active
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "member.deactivated",
        "member.reactivated",
    ]


def test_profile_update_rejects_unknown_timezone(agency, make_member):
    member = make_member(agency, Role.MEMBER)
    with pytest.raises(InvalidInput):
        profile_update(actor=member, display_name="X", timezone="Mars/Base", language="en")
    assert User.objects.get(pk=member.pk).timezone == "Europe/Paris"
    assert not AuditEvent.objects.exists()
