"""The agency admin's Integrations page: API keys and webhook endpoints with their delivery log,
for the agency's admins only."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agencies.models import ApiKey, AuditEvent, Role, WebhookAttempt
from agencies.services import apikey_revoke, webhook_endpoint_create
from tests.conftest import signed_in_client
from visio_broker.audit import CLI

pytestmark = pytest.mark.django_db

URL = reverse("integrations")


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
def integrations(agency, other_agency, make_api_key):
    """The agency's keys and endpoint with two logged attempts; the other agency's alike."""
    active, _raw = make_api_key(agency, name="Salles connector")
    revoked, _raw = make_api_key(agency, name="Old HR connector")
    apikey_revoke(actor=CLI, key=revoked)
    make_api_key(other_agency, name="Bundes connector")
    endpoint, _secret = webhook_endpoint_create(
        actor=CLI,
        agency=agency,
        url="https://hooks.agency.example.org/visio?token=s3cr3t",
        event_types=["meeting.created"],
        description="Agenda sync",
    )
    other, _secret = webhook_endpoint_create(
        actor=CLI,
        agency=other_agency,
        url="https://hooks.bund.example/visio",
        event_types=["meeting.created"],
    )
    for number, status, error in ((1, 503, "answered HTTP 503"), (2, 200, "")):
        WebhookAttempt.objects.create(
            endpoint=endpoint,
            webhook_id="msg_ours",
            event_type="meeting.created",
            attempt=number,
            status_code=status,
            succeeded=not error,
            error=error,
        )
    WebhookAttempt.objects.create(
        endpoint=other, webhook_id="msg_theirs", event_type="meeting.created", attempt=1
    )
    return active, revoked


def test_integrations_page_lists_keys_endpoints_and_deliveries(
    agency, make_admin, integrations, django_assert_max_num_queries
):
    active, revoked = integrations
    client = signed_in_client(make_admin(agency))

    with django_assert_max_num_queries(20):
        response = client.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Salles connector" in html and f"vbk_{active.prefix}_" in html
    assert "Old HR connector" in html and "Revoked on" in html
    assert "meetings:read" in html and "webhooks:manage" in html
    assert "https://hooks.agency.example.org/visio" in html and "Agenda sync" in html
    assert "s3cr3t" not in html  # the query of a URL may hold the receiver's token
    assert "msg_ours" in html and "answered HTTP 503" in html and "503" in html
    assert "Bundes connector" not in html and "msg_theirs" not in html
    assert "hooks.bund.example" not in html
    assert 'aria-labelledby="deliveries-heading"' in html


def test_integrations_page_query_count_does_not_grow_with_rows(
    agency, make_admin, integrations, make_api_key
):
    client = signed_in_client(make_admin(agency))
    client.get(URL)  # session and MFA bookkeeping settle on the first request
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    for index in range(5):
        make_api_key(agency, name=f"more-{index}")
    endpoint = agency.webhook_endpoints.get()
    WebhookAttempt.objects.bulk_create(
        WebhookAttempt(endpoint=endpoint, webhook_id=f"msg_{n}", event_type="x", attempt=1)
        for n in range(10)
    )
    with CaptureQueriesContext(connection) as many:
        client.get(URL)
    assert len(many) <= len(few)


@pytest.mark.parametrize(("who", "status"), [("member", 403), ("organizer", 403)])
def test_integrations_page_is_for_agency_admins_only(agency, make_member, who, status):
    client = signed_in_client(make_member(agency, who))
    assert client.get(URL).status_code == status


def test_integrations_page_anonymous_is_sent_to_sign_in():
    response = Client().get(URL)
    assert response.status_code == 302 and "login" in response["Location"]


def test_integrations_page_of_another_agencys_admin_shows_their_own(
    other_agency, make_admin, integrations
):
    client = signed_in_client(make_admin(other_agency, email="chef@test.bund.example"))
    html = client.get(URL).content.decode()
    assert "Bundes connector" in html and "msg_theirs" in html
    assert "Salles connector" not in html and "msg_ours" not in html


def test_integrations_admin_creates_a_key_shown_once(agency, make_admin):
    admin = make_admin(agency)
    client = signed_in_client(admin)

    response = client.post(
        URL, {"name": "Room booking sync", "scopes": ["meetings:read", "webhooks:manage"]}
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(agency=agency)
    assert key.created_by == admin and key.scopes == ["meetings:read", "webhooks:manage"]
    full_key = response.context["new_key"]
    assert full_key.startswith(f"vbk_{key.prefix}_") and full_key in response.content.decode()
    assert AuditEvent.objects.filter(action="apikey.created", actor=admin).exists()
    assert full_key not in client.get(URL).content.decode()


def test_integrations_key_form_errors_are_400(agency, make_admin):
    client = signed_in_client(make_admin(agency))
    response = client.post(URL, {"name": "", "scopes": []})
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_integrations_admin_revokes_a_key(agency, make_admin, make_api_key):
    key, _raw = make_api_key(agency)
    client = signed_in_client(make_admin(agency))

    response = client.post(reverse("apikey_revoke", args=[key.pk]))

    assert response.status_code == 302 and response["Location"] == URL
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.parametrize("who", ["member", "organizer"])
def test_integrations_key_writes_are_for_admins_only(agency, make_member, make_api_key, who):
    key, _raw = make_api_key(agency)
    client = signed_in_client(make_member(agency, who))

    assert client.post(URL, {"name": "x", "scopes": ["meetings:read"]}).status_code == 403
    assert client.post(reverse("apikey_revoke", args=[key.pk])).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None and ApiKey.objects.count() == 1


def test_integrations_revoking_another_agencys_key_is_404(
    other_agency, agency, make_admin, make_api_key
):
    key, _raw = make_api_key(other_agency)
    client = signed_in_client(make_admin(agency))

    assert client.post(reverse("apikey_revoke", args=[key.pk])).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
