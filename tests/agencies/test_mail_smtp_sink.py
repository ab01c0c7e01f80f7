"""Account mail through Django's real SMTP backend into a local SMTP server, links followed back."""

from __future__ import annotations

import re
from email.utils import parseaddr

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import generate_totp_secret
from allauth.mfa.utils import encrypt
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.test import Client

from agencies.models import Role, User
from tests.conftest import signed_in_client
from tests.smtp_sink import (  # noqa: F401  (fixtures)
    ReceivedMail,
    SmtpSink,
    smtp_sink_fixture,
    smtp_sink_mail_fixture,
)

NEW_PASSWORD = "a-brand-new-passphrase-77"


def _only_mail_to(sink: SmtpSink, address: str) -> ReceivedMail:
    assert [m.rcpt_tos for m in sink.messages] == [[address]]
    received = sink.messages[0]
    assert received.message["To"] == address
    assert received.mail_from == parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    assert received.message["From"] == settings.DEFAULT_FROM_EMAIL
    assert received.message["Message-ID"]
    return received


@pytest.mark.django_db
def test_password_reset_mail_goes_over_smtp_and_its_link_works(agency, make_member, smtp_sink_mail):
    user = make_member(agency, Role.MEMBER)

    response = Client().post("/accounts/password/reset/", {"email": user.email})

    assert response.status_code == 302
    assert mail.outbox == [], "sent through SMTP, not the test outbox"
    received = _only_mail_to(smtp_sink_mail, user.email)
    assert received.subject.startswith("[Visio Broker] ")
    (path,) = re.findall(r"http://testserver(/accounts/password/reset/key/\S+/)", received.body())

    browser = Client()
    form_path = browser.get(path)["Location"]
    response = browser.post(form_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_password_reset_for_unknown_address_reaches_no_smtp_server(db, smtp_sink_mail):
    response = Client().post("/accounts/password/reset/", {"email": "stranger@test.gouv.example"})

    assert response.status_code == 302
    assert smtp_sink_mail.messages == []


@pytest.mark.django_db
def test_invitation_mail_goes_over_smtp_and_its_link_works(
    agency, make_member, smtp_sink_mail, django_capture_on_commit_callbacks
):
    admin = make_member(agency, Role.ADMIN)
    Authenticator.objects.create(
        user=admin, type=Authenticator.Type.TOTP, data={"secret": encrypt(generate_totp_secret())}
    )
    invitee = "new.colleague@test.gouv.example"

    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in_client(admin).post(
            "/agency/members/",
            {"email": invitee, "display_name": "New Colleague", "role": Role.ORGANIZER},
        )

    assert response.status_code == 302
    assert mail.outbox == []
    received = _only_mail_to(smtp_sink_mail, invitee)
    # Non-ASCII survives the trip: RFC 2047 in the subject, UTF-8 in the bodies.
    assert (
        received.subject == "[Visio Broker] You are invited to join Ministère Test on Visio Broker"
    )
    assert received.message.get_content_type() == "multipart/alternative"
    text, html = received.body("plain"), received.body("html")
    link = rf"{re.escape(settings.SITE_URL)}(/invitation/[\w-]+/[\w-]+/)"
    (path,) = re.findall(link, text)
    assert re.findall(link, html) == [path]
    assert "join Ministère Test" in text

    browser = Client()
    response = browser.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    assert response.status_code == 302
    user = User.objects.get(email=invitee)
    assert user.check_password(NEW_PASSWORD)
    assert EmailAddress.objects.get(user=user).verified
    assert browser.session[SESSION_KEY] == str(user.pk)
