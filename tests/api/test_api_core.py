"""The shared API machinery (visio_broker.api) behind a small probe view: keys, scopes,
throttling, problem+json, Idempotency-Key, audit attribution."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response

from agencies.models import ApiKey, AuditEvent
from agencies.services import apikey_create, apikey_revoke
from tests.conftest import api_client
from visio_broker.api import ApiView
from visio_broker.audit import CLI, audit_record
from visio_broker.errors import Conflict
from visio_broker.models import IdempotentRequest

pytestmark = pytest.mark.django_db


class Probe(ApiView):
    scopes = {"GET": "meetings:read", "POST": "meetings:write"}
    calls = 0

    def get(self, request):
        return Response({"agency": self.agency.slug})

    def post(self, request):
        Probe.calls += 1
        if request.data.get("fail") == "conflict":
            raise Conflict("Already there.", code="slot_unavailable")
        if request.data.get("audit"):
            audit_record(actor=CLI, action="probe.posted", obj=request.auth)
        return Response({"call": Probe.calls, "echo": request.data}, status=201)


urlpatterns = [path("api/v1/probe/", Probe.as_view())]


@pytest.fixture(autouse=True)
def _probe_urls(settings):
    settings.ROOT_URLCONF = __name__
    Probe.calls = 0


def _post(client, body, **headers):
    return client.post(
        "/api/v1/probe/", json.dumps(body), content_type="application/json", headers=headers
    )


def test_api_key_format_and_only_hash_stored(agency, make_api_key):
    key, raw = make_api_key(agency)
    prefix, secret = raw.split("_")[1], raw.split("_")[2]
    assert raw.startswith("vbk_") and prefix == key.prefix and len(secret) == 64
    assert secret not in key.secret_hash and len(key.secret_hash) == 64
    assert not ApiKey.objects.filter(secret_hash__contains=secret).exists()


def test_api_valid_key_authenticates_and_records_last_use(agency, make_api_key):
    key, raw = make_api_key(agency)
    response = api_client(raw).get("/api/v1/probe/", REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 200
    assert response.json() == {"agency": agency.slug}
    key.refresh_from_db()
    assert key.last_used_at is not None and key.last_used_ip == "192.0.2.7"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer vbk_abcdefghij_" + "0" * 64],
)
def test_api_bad_credentials_are_401_problem(agency, header):
    client = api_client(None)
    response = client.get("/api/v1/probe/", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["code"] in {"not_authenticated", "invalid_key"}
    assert body["type"].endswith(body["code"])


def test_api_wrong_secret_with_real_prefix_is_401(agency, make_api_key):
    key, raw = make_api_key(agency)
    forged = f"vbk_{key.prefix}_{'f' * 64}"
    assert api_client(forged).get("/api/v1/probe/").json()["code"] == "invalid_key"


def test_api_revoked_and_expired_keys_are_401(agency, make_api_key):
    revoked, raw_revoked = make_api_key(agency)
    apikey_revoke(actor=CLI, key=revoked)
    expired, raw_expired = make_api_key(agency, expires_days=1)
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_client(raw_revoked).get("/api/v1/probe/").json()["code"] == "key_revoked"
    assert api_client(raw_expired).get("/api/v1/probe/").json()["code"] == "key_expired"


def test_api_missing_scope_is_403_and_nothing_runs(agency, make_api_key):
    _key, raw = make_api_key(agency, scopes=["meetings:read"])
    response = _post(api_client(raw), {"a": 1})
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert "meetings:write" in response.json()["detail"]
    assert Probe.calls == 0


def test_api_domain_error_keeps_its_code(agency, make_api_key):
    _key, raw = make_api_key(agency)
    response = _post(api_client(raw), {"fail": "conflict"})
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "slot_unavailable"
    assert response.json()["detail"] == "Already there."


def test_api_malformed_json_is_400_problem(agency, make_api_key):
    _key, raw = make_api_key(agency)
    response = api_client(raw).post("/api/v1/probe/", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize(
    ("body", "content_type", "echoed"),
    [
        ('{"name": "Amélie"}'.encode(), "application/json", {"name": "Amélie"}),
        ('{"name": "Amélie"}'.encode(), "Application/JSON; charset=utf-8", {"name": "Amélie"}),
        # The test client encodes the text in the charset the content type names.
        ('{"name": "Amélie"}', "application/json; charset=latin-1", {"name": "Amélie"}),
        (b"", "application/json", {}),
    ],
)
def test_api_json_bodies_are_read_as_drf_reads_them(
    agency, make_api_key, body, content_type, echoed
):
    _key, raw = make_api_key(agency)
    response = api_client(raw).post("/api/v1/probe/", body, content_type=content_type)
    assert response.status_code == 201
    assert response.json()["echo"] == echoed


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"a": NaN}', "application/json", 400, "parse_error"),  # not JSON (RFC 8259)
        (b'{"a": "\xff"}', "application/json", 400, "parse_error"),  # not UTF-8
        (b'{"a": 1} x', "application/json", 400, "parse_error"),
        (b'{"a": 1}', "text/plain", 415, "unsupported_media_type"),
        (b"a=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_api_bodies_that_are_not_json_are_refused(
    agency, make_api_key, body, content_type, status, code
):
    _key, raw = make_api_key(agency)
    response = api_client(raw).post("/api/v1/probe/", body, content_type=content_type)
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code


@override_settings(API_RATE_LIMIT="3/m")
def test_api_throttles_per_key_with_retry_after(agency, make_api_key):
    _k1, first = make_api_key(agency)
    _k2, second = make_api_key(agency)
    statuses = [api_client(first).get("/api/v1/probe/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = api_client(first).get("/api/v1/probe/")
    assert limited.json()["code"] == "throttled"
    assert 1 <= int(limited["Retry-After"]) <= 60
    # Another key has its own budget.
    assert api_client(second).get("/api/v1/probe/").status_code == 200


def test_api_idempotency_key_replays_the_first_response(agency, make_api_key):
    key, raw = make_api_key(agency)
    client = api_client(raw)
    first = _post(client, {"n": 1}, **{"Idempotency-Key": "abc"})
    again = _post(client, {"n": 1}, **{"Idempotency-Key": "abc"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() == {"call": 1, "echo": {"n": 1}}
    assert again["Idempotent-Replayed"] == "true"
    assert Probe.calls == 1
    assert IdempotentRequest.objects.get(api_key=key, key="abc").status_code == 201


def test_api_idempotency_key_with_other_body_is_422(agency, make_api_key):
    _key, raw = make_api_key(agency)
    client = api_client(raw)
    _post(client, {"n": 1}, **{"Idempotency-Key": "abc"})
    response = _post(client, {"n": 2}, **{"Idempotency-Key": "abc"})
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Probe.calls == 1


def test_api_idempotency_keys_are_per_api_key_and_expire(agency, make_api_key):
    _k1, first = make_api_key(agency)
    _k2, second = make_api_key(agency)
    _post(api_client(first), {"n": 1}, **{"Idempotency-Key": "same"})
    assert _post(api_client(second), {"n": 1}, **{"Idempotency-Key": "same"}).json()["call"] == 2
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert _post(api_client(first), {"n": 1}, **{"Idempotency-Key": "same"}).json()["call"] == 3


def test_api_idempotency_key_of_a_running_request_is_409(agency, make_api_key):
    key, raw = make_api_key(agency)
    _post(api_client(raw), {"n": 1}, **{"Idempotency-Key": "k"})
    IdempotentRequest.objects.filter(api_key=key).update(status_code=None, response_body=None)
    response = _post(api_client(raw), {"n": 1}, **{"Idempotency-Key": "k"})
    assert response.status_code == 409 and response.json()["code"] == "idempotency_in_progress"
    assert Probe.calls == 1


def test_api_failed_request_does_not_burn_the_idempotency_key(agency, make_api_key):
    key, raw = make_api_key(agency)
    assert (
        _post(api_client(raw), {"fail": "conflict"}, **{"Idempotency-Key": "x"}).status_code == 409
    )
    # A 4xx is an answer too: the same request gets the same answer.
    replay = _post(api_client(raw), {"fail": "conflict"}, **{"Idempotency-Key": "x"})
    assert replay.status_code == 409 and replay["Idempotent-Replayed"] == "true"
    assert replay["Content-Type"] == "application/problem+json"


def test_api_writes_are_audited_with_the_key_as_actor(agency, make_api_key):
    key, raw = make_api_key(agency)
    _post(api_client(raw), {"audit": True})
    event = AuditEvent.objects.get(action="probe.posted")
    assert event.api_key == key
    assert event.actor_label == f"api-key:vbk_{key.prefix}"
    assert event.detail["on_behalf_of"] == CLI
    # Outside the request the attribution is gone.
    assert audit_record(actor=CLI, action="after", obj=key).api_key is None


def test_api_key_rotation_allows_two_active_keys_per_integration(agency, make_api_key):
    first, _ = make_api_key(agency, name="hr")
    make_api_key(agency, name="hr")
    with pytest.raises(Conflict) as refused:
        make_api_key(agency, name="hr")
    assert refused.value.code == "too_many_active_keys"
    apikey_revoke(actor=CLI, key=first)
    make_api_key(agency, name="hr")
    assert ApiKey.objects.filter(agency=agency, name="hr", revoked_at__isnull=True).count() == 2


def test_api_key_unknown_scope_is_refused(agency):
    from visio_broker.errors import InvalidInput

    with pytest.raises(InvalidInput):
        apikey_create(actor=CLI, agency=agency, name="x", scopes=["meetings:delete"])
    assert not ApiKey.objects.exists()


class Broken(ApiView):
    scopes = {"GET": "meetings:read"}

    def get(self, request):
        raise RuntimeError("probe broke")


class BrokenPost(ApiView):
    scopes = {"POST": "meetings:write"}

    def post(self, request):
        raise RuntimeError("post broke")


urlpatterns.append(path("api/v1/broken/", Broken.as_view()))
urlpatterns.append(path("api/v1/broken-post/", BrokenPost.as_view()))


def test_api_key_secret_absent_from_log_and_error_report_of_a_500(agency, make_api_key, caplog):
    import logging

    from django.conf import settings as django_settings
    from django.test import Client
    from django.views.debug import get_exception_reporter_class

    key, raw = make_api_key(agency)
    secret = raw.split("_")[2]
    client = Client(raise_request_exception=False, headers={"Authorization": f"Bearer {raw}"})
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/api/v1/broken/")
    assert response.status_code == 500
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    formatted = logging.Formatter("%(message)s").format(record)
    assert "probe broke" in formatted or record.exc_info
    assert secret not in formatted
    request = record.request  # type: ignore[attr-defined]
    assert django_settings.DEFAULT_EXCEPTION_REPORTER_FILTER.endswith(
        "RedactingExceptionReporterFilter"
    )
    reporter = get_exception_reporter_class(request)(request, *record.exc_info, is_email=True)
    text, html = reporter.get_traceback_text(), reporter.get_traceback_html()
    assert "probe broke" in text
    assert secret not in text and secret not in html
    assert f"vbk_{key.prefix}" in text  # the prefix stays, to tell which integration it was
    # The failed request left nothing behind: later audit rows are not attributed to the key.
    assert audit_record(actor=CLI, action="after", obj=key).api_key is None


def test_api_failed_request_frees_its_idempotency_key(agency, make_api_key):
    _key, raw = make_api_key(agency)
    client = Client(raise_request_exception=False, headers={"Authorization": f"Bearer {raw}"})
    response = client.post(
        "/api/v1/broken-post/",
        "{}",
        content_type="application/json",
        headers={"Idempotency-Key": "r"},
    )
    assert response.status_code == 500
    assert not IdempotentRequest.objects.exists()
