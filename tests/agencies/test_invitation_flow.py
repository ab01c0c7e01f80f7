"""Agency admins invite colleagues by email; the invitee chooses a password through the link."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import generate_totp_secret
from allauth.mfa.utils import encrypt
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from agencies.models import AuditEvent, Membership, Role, User
from tests.conftest import signed_in_client
from tests.factories import PASSWORD, AgencyFactory

MEMBERS = "/agency/members/"
INVITEE = "new.colleague@test.gouv.example"
NEW_PASSWORD = "a-brand-new-passphrase-77"


def _with_totp(user):
    """Admins must have enrolled TOTP to use the app (RequireMfaForAdminsMiddleware)."""
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.TOTP, data={"secret": encrypt(generate_totp_secret())}
    )
    return user


@pytest.fixture
def agency_admin(agency, make_member):
    return _with_totp(make_member(agency, Role.ADMIN))


@pytest.fixture
def agency_admin_client(agency_admin):
    return signed_in_client(agency_admin)


@pytest.fixture
def invite(agency_admin_client, django_capture_on_commit_callbacks):
    """POST the invitation form as the admin; the mail goes out when the transaction commits."""

    def post(email=INVITEE, role=Role.MEMBER, display_name="New Colleague", client=None):
        with django_capture_on_commit_callbacks(execute=True):
            return (client or agency_admin_client).post(
                MEMBERS, {"email": email, "display_name": display_name, "role": role}
            )

    return post


def _accept_path(mail) -> str:
    """The path of the one accept link in the mail, which must point at this site."""
    links = re.findall(rf"{re.escape(settings.SITE_URL)}(/invitation/[\w-]+/[\w-]+/)", mail.body)
    assert len(links) == 1, mail.body
    html, _mimetype = mail.alternatives[0]
    assert f'href="{settings.SITE_URL}{links[0]}"' in html
    return links[0]


def _accept(client: Client, path: str, password: str = NEW_PASSWORD, again: str | None = None):
    return client.post(
        path, {"new_password1": password, "new_password2": password if again is None else again}
    )


# --- sending -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.ORGANIZER, Role.ADMIN])
def test_invite_creates_a_pending_account_and_mails_the_invitee(
    agency, agency_admin, invite, mailoutbox, role
):
    response = invite(role=role)

    assert response.status_code == 302
    assert response["Location"] == MEMBERS
    user = User.objects.get(email=INVITEE)
    assert not user.has_usable_password()
    assert user.is_active
    assert user.display_name == "New Colleague"
    membership = Membership.objects.get(user=user)
    assert membership.agency == agency and membership.role == role
    assert membership.invited_by == agency_admin
    address = EmailAddress.objects.get(user=user)
    assert (address.email, address.primary, address.verified) == (INVITEE, True, False)
    event = AuditEvent.objects.get(action="member.invited")
    assert event.actor == agency_admin and event.agency == agency
    assert event.object_id == str(membership.pk)
    assert event.detail == {"email": INVITEE, "role": role}
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [INVITEE]
    _accept_path(mailoutbox[0])


@pytest.mark.django_db
def test_invitation_mail_is_in_english_for_an_english_agency(agency, invite, mailoutbox):
    invite()

    mail = mailoutbox[0]
    assert User.objects.get(email=INVITEE).language == "en"
    assert mail.subject == "[Visio Broker] You are invited to join Ministère Test on Visio Broker"
    assert "invited you to join Ministère Test" in mail.body
    assert mail.alternatives[0][0].startswith('<!DOCTYPE html>\n<html lang="en">')


@pytest.fixture
def french_agency(agency):
    agency.default_language = "fr"
    agency.save(update_fields=["default_language"])
    return agency


@pytest.mark.django_db
def test_invitation_mail_is_in_french_for_a_french_agency(french_agency, invite, mailoutbox):
    invite()

    mail = mailoutbox[0]
    assert User.objects.get(email=INVITEE).language == "fr"
    assert mail.subject == "[Visio Broker] Invitation à rejoindre Ministère Test sur Visio Broker"
    assert mail.body.startswith("Bonjour,")
    assert "vous invite à rejoindre Ministère Test" in mail.body
    html, _mimetype = mail.alternatives[0]
    assert html.startswith('<!DOCTYPE html>\n<html lang="fr">')
    assert "Accepter l'invitation et choisir un mot de passe</a>" in html


@pytest.mark.django_db
def test_invitation_mail_keeps_names_with_apostrophes_and_ampersands_intact(
    agency, agency_admin, invite, mailoutbox
):
    agency.name = "Ministère de l'Intérieur & des Outre-mer"
    agency.save(update_fields=["name"])
    agency_admin.display_name = "Anne O'Neil"
    agency_admin.save(update_fields=["display_name"])

    invite()

    mail = mailoutbox[0]
    assert mail.subject == (
        "[Visio Broker] You are invited to join Ministère de l'Intérieur & des Outre-mer"
        " on Visio Broker"
    )
    assert "Anne O'Neil invited you to join Ministère de l'Intérieur & des Outre-mer" in mail.body
    html, _mimetype = mail.alternatives[0]
    assert "Anne O&#x27;Neil invited you to join Ministère de l&#x27;Intérieur &amp; des" in html


@pytest.mark.django_db
def test_invitation_mail_names_the_inviting_admin(agency_admin, invite, mailoutbox):
    invite()

    assert f"{agency_admin.display_name} invited you to join Ministère Test" in mailoutbox[0].body


@pytest.mark.django_db
def test_reinviting_a_pending_invitee_sends_the_invitation_again(invite, mailoutbox):
    invite()
    user = User.objects.get(email=INVITEE)

    response = invite(email=INVITEE.upper())

    assert response.status_code == 302
    assert User.objects.filter(email__iexact=INVITEE).count() == 1
    assert AuditEvent.objects.filter(action="member.invited").count() == 1
    event = AuditEvent.objects.get(action="member.reinvited")
    assert event.object_id == str(user.membership.pk)
    assert [mail.to for mail in mailoutbox] == [[INVITEE], [INVITEE]]
    assert _accept(Client(), _accept_path(mailoutbox[1])).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["same agency", "other agency"])
def test_inviting_someone_who_already_has_an_account_is_refused(
    agency, make_member, invite, mailoutbox, where
):
    home = agency if where == "same agency" else AgencyFactory(email_domains=[])
    existing = make_member(home, Role.ORGANIZER, email="already.here@test.gouv.example")

    response = invite(email=existing.email, role=Role.ADMIN)

    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "already.here@test.gouv.example already has an account."
    ]
    assert b"already.here@test.gouv.example already has an account." in response.content
    assert User.objects.filter(email=existing.email).count() == 1
    existing.membership.refresh_from_db()
    assert (existing.membership.agency, existing.membership.role) == (home, Role.ORGANIZER)
    assert existing.check_password(PASSWORD)
    assert not AuditEvent.objects.filter(action__startswith="member.").exists()
    assert mailoutbox == []


@pytest.mark.django_db
def test_inviting_outside_the_agency_email_domains_is_refused(agency, invite, mailoutbox):
    response = invite(email="someone@gmail.example")

    assert response.status_code == 400
    assert response.context["form"].errors["email"] == [
        "This agency only accepts addresses at test.gouv.example."
    ]
    assert not User.objects.filter(email="someone@gmail.example").exists()
    assert not AuditEvent.objects.exists()
    assert mailoutbox == []


@pytest.mark.django_db
def test_inviting_a_subdomain_of_an_allowed_domain_is_refused(agency, invite, mailoutbox):
    response = invite(email="someone@evil.test.gouv.example")

    assert response.status_code == 400
    assert "email" in response.context["form"].errors
    assert mailoutbox == []


@pytest.mark.django_db
def test_email_domain_check_ignores_case(agency, invite, mailoutbox):
    response = invite(email="Mixed.Case@TEST.Gouv.Example")

    assert response.status_code == 302
    assert User.objects.filter(email="mixed.case@test.gouv.example").exists()
    assert mailoutbox[0].to == ["mixed.case@test.gouv.example"]


@pytest.mark.django_db
def test_agency_without_email_domains_accepts_any_address(agency, invite, mailoutbox):
    agency.email_domains = []
    agency.save(update_fields=["email_domains"])

    response = invite(email="someone@anywhere.example")

    assert response.status_code == 302
    assert mailoutbox[0].to == ["someone@anywhere.example"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.ORGANIZER])
def test_only_agency_admins_can_invite(agency, make_member, invite, mailoutbox, role):
    user = make_member(agency, role)

    response = invite(client=signed_in_client(user))

    assert response.status_code == 403
    assert not User.objects.filter(email=INVITEE).exists()
    assert mailoutbox == []


@pytest.mark.django_db
def test_invite_with_an_invalid_role_is_refused(invite, mailoutbox):
    response = invite(role="owner")

    assert response.status_code == 400
    assert "role" in response.context["form"].errors
    assert not User.objects.filter(email=INVITEE).exists()
    assert mailoutbox == []


# --- accepting ---------------------------------------------------------------------------------


@pytest.fixture
def invitation(invite, mailoutbox):
    """(invitee, accept path) for a member invitation that has just been sent."""
    invite()
    return User.objects.get(email=INVITEE), _accept_path(mailoutbox[-1])


@pytest.mark.django_db
def test_invitation_link_opens_the_password_form(invitation):
    user, path = invitation

    response = Client().get(path)

    assert response.status_code == 200
    assert response.context["invitee"] == user
    assert set(response.context["form"].fields) == {"new_password1", "new_password2"}


@pytest.mark.django_db
def test_accepting_sets_the_password_verifies_the_address_and_signs_in(agency, invitation):
    user, path = invitation
    client = Client()

    response = _accept(client, path)

    assert response.status_code == 302
    assert response["Location"] == "/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert EmailAddress.objects.get(user=user).verified
    assert client.session[SESSION_KEY] == str(user.pk)
    assert client.get("/").status_code == 200
    event = AuditEvent.objects.get(action="invitation.accepted")
    assert (event.actor, event.agency, event.object_id) == (user, agency, str(user.pk))


@pytest.mark.django_db
def test_accepted_invitation_link_is_dead(invitation):
    _user, path = invitation
    _accept(Client(), path)

    get = Client().get(path)
    post = _accept(Client(), path, "yet-another-passphrase-55")

    for response in (get, post):
        assert response.status_code == 404
        assert "agencies/invitation_invalid.html" in [t.name for t in response.templates]
    assert AuditEvent.objects.filter(action="invitation.accepted").count() == 1


@pytest.mark.django_db
def test_invitee_signs_in_with_the_chosen_password_afterwards(invitation, mailoutbox):
    user, path = invitation
    _accept(Client(), path)
    sent_before = len(mailoutbox)
    client = Client()

    response = client.post("/accounts/login/", {"login": user.email, "password": NEW_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session[SESSION_KEY] == str(user.pk)
    assert len(mailoutbox) == sent_before, "the address is verified: no verification mail"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "again"),
    [
        ("short-1", "short-1"),  # below the 12-character minimum
        ("password1234", "password1234"),  # a common password
        ("123456789012345", "123456789012345"),  # entirely numeric
        ("new.colleague.gouv", "new.colleague.gouv"),  # too close to the email address
        (NEW_PASSWORD, NEW_PASSWORD + "x"),  # the two fields differ
    ],
)
def test_weak_or_mistyped_password_is_refused_and_changes_nothing(invitation, password, again):
    user, path = invitation
    client = Client()

    response = _accept(client, path, password, again)

    assert response.status_code == 400
    assert response.context["form"].errors
    user.refresh_from_db()
    assert not user.has_usable_password()
    assert not EmailAddress.objects.get(user=user).verified
    assert SESSION_KEY not in client.session
    assert not AuditEvent.objects.filter(action="invitation.accepted").exists()
    # The link still works for a better password.
    assert _accept(Client(), path).status_code == 302


@pytest.mark.django_db
def test_invitation_link_of_a_deactivated_invitee_is_invalid(agency_admin_client, invitation):
    user, path = invitation
    response = agency_admin_client.post(f"/agency/members/{user.membership.pk}/deactivate/")
    assert response.status_code == 302

    get = Client().get(path)
    post = _accept(Client(), path)

    for response in (get, post):
        assert response.status_code == 404
        assert "agencies/invitation_invalid.html" in [t.name for t in response.templates]
    user.refresh_from_db()
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_invitation_link_expires_after_the_password_reset_timeout(invitation, settings):
    user, path = invitation
    expiry = timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)

    with time_machine.travel(timezone.now() + expiry - timedelta(hours=1)):
        assert Client().get(path).status_code == 200
    with time_machine.travel(timezone.now() + expiry + timedelta(hours=1)):
        response = _accept(Client(), path)

    assert response.status_code == 404
    user.refresh_from_db()
    assert not user.has_usable_password()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mangle",
    [
        lambda path: re.sub(r"/invitation/[\w-]+/", "/invitation/not-base64!/", path),
        lambda path: re.sub(r"/invitation/[\w-]+/", "/invitation/OTk5OTk5OTk/", path),
        lambda path: re.sub(r"/[\w-]+/$", "/1a2b3c-0123456789abcdef0123456789abcdef/", path),
    ],
    ids=["garbage uid", "unknown uid", "forged token"],
)
def test_tampered_invitation_link_is_invalid(invitation, mangle):
    user, path = invitation

    response = _accept(Client(), mangle(path))

    assert response.status_code == 404
    user.refresh_from_db()
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_invitation_link_of_one_invitee_cannot_set_another_password(invite, mailoutbox, invitation):
    first, first_path = invitation
    invite(email="second.colleague@test.gouv.example")
    second = User.objects.get(email="second.colleague@test.gouv.example")
    second_uid = _accept_path(mailoutbox[-1]).split("/")[2]
    forged = re.sub(r"/invitation/[\w-]+/", f"/invitation/{second_uid}/", first_path)

    response = _accept(Client(), forged)

    assert response.status_code == 404
    second.refresh_from_db()
    assert not second.has_usable_password()


@pytest.mark.django_db
def test_invited_admin_must_enrol_totp_after_accepting(invite, mailoutbox):
    invite(role=Role.ADMIN)
    client = Client()

    response = _accept(client, _accept_path(mailoutbox[-1]))

    assert response.status_code == 302
    assert response["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 302
    assert home["Location"] == "/accounts/2fa/totp/activate/?next=/"
