"""REST API webhooks/: endpoints CRUD, the secret shown once, rotation, the delivery log."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from agencies.models import AuditEvent, WebhookEndpoint
from agencies.services import webhook_endpoint_create
from agencies.webhooks import webhooks_emit
from tests.conftest import api_client
from tests.local_http import LocalServer
from visio_broker import outbox
from visio_broker.audit import CLI
from visio_broker.models import Notification, NotificationStatus

pytestmark = pytest.mark.django_db

URL = "https://hooks.agency.example.org/visio"
BODY = {"url": URL, "event_types": ["meeting.created", "meeting.cancelled"], "description": "Sync"}


@pytest.fixture
def key(agency, make_api_key):
    return make_api_key(agency, scopes=["webhooks:manage", "meetings:read"])


@pytest.fixture
def client(key):
    return api_client(key[1])


def _post(client, path, body=None, **headers):
    return client.post(
        path, json.dumps(body or {}), content_type="application/json", headers=headers
    )


def _patch(client, path, body, **headers):
    return client.patch(path, json.dumps(body), content_type="application/json", headers=headers)


def _call(client, method, path):
    if method == "get":
        return client.get(path)
    return getattr(client, method)(path, "{}", content_type="application/json")


def _endpoint(agency, url=URL, event_types=("meeting.created",)):
    return webhook_endpoint_create(actor=CLI, agency=agency, url=url, event_types=event_types)


def test_api_webhooks_create_shows_the_secret_once(client, key, agency):
    response = _post(client, "/api/v1/webhooks/", BODY)

    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["secret"].startswith("whsec_")
    assert data["url"] == URL and data["event_types"] == ["meeting.cancelled", "meeting.created"]
    assert data["enabled"] is True and data["disabled_reason"] == ""
    assert response["Location"].endswith(f"/api/v1/webhooks/{data['id']}/")
    endpoint = WebhookEndpoint.objects.get(pk=data["id"])
    assert endpoint.agency == agency
    audit = AuditEvent.objects.get(action="webhook.created")
    assert audit.api_key == key[0] and data["secret"] not in json.dumps(audit.detail)
    # Never again: neither in the list nor in the endpoint.
    listed = client.get("/api/v1/webhooks/").json()
    assert [item["id"] for item in listed] == [data["id"]] and "secret" not in listed[0]
    single = client.get(f"/api/v1/webhooks/{data['id']}/")
    assert "secret" not in single.json() and single["ETag"]


def test_api_webhooks_create_is_not_replayed_with_an_idempotency_key(client):
    first = _post(client, "/api/v1/webhooks/", BODY, **{"Idempotency-Key": "k1"})
    second = _post(client, "/api/v1/webhooks/", BODY, **{"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert first.json()["secret"] != second.json()["secret"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://hooks.agency.example.org/visio", "https_required"),
        ("https://user:pass@hooks.agency.example.org/visio", "credentials_in_url"),
        ("https://127.0.0.1/hooks", "private_address"),
        ("https://10.1.2.3/hooks", "private_address"),
        ("https://169.254.169.254/latest/meta-data", "private_address"),
        ("https://[::1]/hooks", "private_address"),
        ("https://localhost/hooks", "private_address"),
        ("ftp://hooks.agency.example.org/", "invalid_url"),
        ("not a url", "invalid_url"),
    ],
)
def test_api_webhooks_unsafe_url_is_a_400_field_error(client, settings, url, code):
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    response = _post(client, "/api/v1/webhooks/", {**BODY, "url": url})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"field": "url", "code": code, "message": response.json()["errors"][0]["message"]}
    ]
    assert not WebhookEndpoint.objects.exists()


def test_api_webhooks_http_url_accepted_when_allowed(client, settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    response = _post(client, "/api/v1/webhooks/", {**BODY, "url": "http://hooks.example.org/"})
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("event_types", "field"),
    [([], "event_types"), (["meeting.exploded"], "event_types.0"), (None, "event_types")],
)
def test_api_webhooks_bad_event_types_are_400(client, event_types, field):
    body = {**BODY, "event_types": event_types}
    response = _post(client, "/api/v1/webhooks/", body)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]


def test_api_webhooks_patch_changes_fields_and_checks_if_match(client, agency):
    endpoint, _secret = _endpoint(agency)
    path = f"/api/v1/webhooks/{endpoint.pk}/"
    etag = client.get(path)["ETag"]

    stale = _patch(client, path, {"enabled": False}, **{"If-Match": '"stale"'})
    assert stale.status_code == 412
    response = _patch(
        client,
        path,
        {"enabled": False, "event_types": ["room.started"], "description": "Paused"},
        **{"If-Match": etag},
    )

    assert response.status_code == 200
    data = response.json()
    assert data["enabled"] is False and data["disabled_reason"] == "admin"
    assert data["event_types"] == ["room.started"] and data["description"] == "Paused"
    assert response["ETag"] != etag
    again = _patch(client, path, {"enabled": True})
    assert again.json()["enabled"] is True and again.json()["disabled_reason"] == ""
    assert AuditEvent.objects.filter(action="webhook.updated").count() == 2


def test_api_webhooks_patch_refuses_an_unsafe_url(client, agency, settings):
    settings.WEBHOOK_ALLOW_HTTP = False
    endpoint, _secret = _endpoint(agency)
    response = _patch(client, f"/api/v1/webhooks/{endpoint.pk}/", {"url": "http://x.example/"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "url"
    endpoint.refresh_from_db()
    assert endpoint.url == URL


def test_api_webhooks_delete_stops_deliveries_and_hides_the_endpoint(client, agency):
    endpoint, _secret = _endpoint(agency)
    webhooks_emit(agency=agency, event="meeting.created")
    [queued] = Notification.objects.filter(kind="webhook")

    response = client.delete(f"/api/v1/webhooks/{endpoint.pk}/")

    assert response.status_code == 204
    assert client.get(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 404
    assert client.get("/api/v1/webhooks/").json() == []
    assert outbox.notification_deliver(notification_id=queued.pk) == "failed"
    webhooks_emit(agency=agency, event="meeting.created")
    assert Notification.objects.filter(kind="webhook").count() == 1


def test_api_webhooks_rotate_secret_changes_the_signature(client, agency):
    receiver = LocalServer().start()
    try:
        endpoint, old_secret = _endpoint(agency, url=receiver.url + "/hooks")
        path = f"/api/v1/webhooks/{endpoint.pk}/rotate-secret/"

        first = _post(client, path, **{"Idempotency-Key": "same"})
        second = _post(client, path, **{"Idempotency-Key": "same"})

        assert first.status_code == second.status_code == 200
        new_secret = second.json()["secret"]
        assert len({old_secret, first.json()["secret"], new_secret}) == 3
        assert second.json()["secret_rotated_at"] is not None
        webhooks_emit(agency=agency, event="meeting.created")
        [row] = Notification.objects.filter(kind="webhook")
        assert outbox.notification_deliver(notification_id=row.pk) == "sent"
        [request] = receiver.requests
    finally:
        receiver.stop()
    signatures = request.headers["webhook-signature"].split(" ")
    # The newest secret signs; the one rotated away a moment ago still does (overlap); the
    # original one, two rotations back, no longer does.
    assert _signature(new_secret, request) in signatures
    assert _signature(first.json()["secret"], request) in signatures
    assert _signature(old_secret, request) not in signatures
    Webhook(new_secret).verify(request.body, request.headers)
    assert AuditEvent.objects.filter(action="webhook.secret_rotated").count() == 2


def _signature(secret, request):
    signed_at = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), tz=UTC)
    return Webhook(secret).sign(request.headers["webhook-id"], signed_at, request.body.decode())


def test_api_webhooks_deliveries_are_listed_newest_first_with_a_cursor(
    client, agency, django_assert_max_num_queries
):
    receiver = LocalServer().start()
    receiver.answer(500)
    try:
        endpoint, _secret = _endpoint(agency, url=receiver.url)
        for _event in range(3):
            webhooks_emit(agency=agency, event="meeting.created")
        for row in Notification.objects.filter(kind="webhook"):
            with pytest.raises(outbox.TemporaryDeliveryError):
                outbox.notification_deliver(notification_id=row.pk)
    finally:
        receiver.stop()
    path = f"/api/v1/webhooks/{endpoint.pk}/deliveries/"

    with django_assert_max_num_queries(8):
        first = client.get(path, {"page_size": 2})

    assert first.status_code == 200
    page = first.json()
    assert len(page["results"]) == 2 and page["next"]
    entry = page["results"][0]
    assert entry["status_code"] == 500 and entry["succeeded"] is False
    assert entry["attempt"] == 1 and entry["delivery_status"] == NotificationStatus.PENDING
    assert entry["webhook_id"].startswith("msg_") and entry["next_attempt_at"]
    rest = client.get(page["next"]).json()
    assert rest["next"] is None and len(rest["results"]) == 1
    ids = [item["id"] for item in page["results"] + rest["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3
    assert client.get(path, {"cursor": "%%%"}).status_code == 400


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "rotate-secret/"),
        ("get", "deliveries/"),
    ],
)
def test_api_webhooks_other_agencys_endpoint_is_404(client, other_agency, method, suffix):
    endpoint, _secret = _endpoint(other_agency)
    path = f"/api/v1/webhooks/{endpoint.pk}/{suffix}"

    response = _call(client, method, path)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.deleted_at is None and endpoint.secret_rotated_at is None


def test_api_webhooks_list_shows_only_the_agencys_endpoints(client, agency, other_agency):
    mine, _secret = _endpoint(agency)
    _endpoint(other_agency)
    assert [item["id"] for item in client.get("/api/v1/webhooks/").json()] == [mine.pk]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("post", ""), ("get", "1/"), ("patch", "1/"), ("delete", "1/")]
    + [("post", "1/rotate-secret/"), ("get", "1/deliveries/")],
)
def test_api_webhooks_need_the_webhooks_scope(agency, make_api_key, method, suffix):
    _key, raw = make_api_key(agency, scopes=["meetings:read", "meetings:write"])
    response = _call(api_client(raw), method, f"/api/v1/webhooks/{suffix}")
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_api_webhooks_without_a_key_is_401():
    assert api_client(None).get("/api/v1/webhooks/").status_code == 401


def test_api_webhooks_endpoint_limit_is_a_409(client, agency, monkeypatch):
    monkeypatch.setattr("agencies.webhooks.MAX_ENDPOINTS_PER_AGENCY", 1)
    assert _post(client, "/api/v1/webhooks/", BODY).status_code == 201
    response = _post(client, "/api/v1/webhooks/", BODY)
    assert response.status_code == 409 and response.json()["code"] == "too_many_endpoints"


def test_api_webhooks_pointing_events_somewhere_needs_meetings_read(agency, make_api_key):
    _key, raw = make_api_key(agency, scopes=["webhooks:manage"])
    response = _post(api_client(raw), "/api/v1/webhooks/", BODY)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert "meetings:read" in response.json()["detail"]
    assert not WebhookEndpoint.objects.exists()
    # Listing what exists needs webhooks:manage only.
    assert api_client(raw).get("/api/v1/webhooks/").status_code == 200
