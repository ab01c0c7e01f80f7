"""apikey_create: prints the key last, stores only its hash, refuses bad arguments clearly."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from agencies.apikeys import key_parse, secret_hash
from agencies.models import ApiKey, AuditEvent
from tests.conftest import api_client

pytestmark = pytest.mark.django_db


def _call(*args: str) -> str:
    out = io.StringIO()
    call_command("apikey_create", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_apikey_create_prints_a_working_key_last(agency):
    output = _call("--agency", agency.slug, "--name", "hr-directory", "--scopes", "meetings:read")
    raw = output.strip().splitlines()[-1]
    parsed = key_parse(raw)
    assert parsed is not None
    key = ApiKey.objects.get(prefix=parsed.prefix)
    assert key.agency == agency and key.name == "hr-directory"
    assert key.scopes == ["meetings:read"] and key.expires_at is None
    assert key.secret_hash == secret_hash(parsed.secret)
    assert parsed.secret not in output.splitlines()[0]
    assert AuditEvent.objects.filter(action="apikey.created", actor_label="cli").count() == 1
    # The printed key authenticates; the scope it lacks is refused.
    assert api_client(raw).get("/api/v1/changes/").status_code != 401


def test_apikey_create_with_expiry(agency):
    output = _call(
        "--agency", agency.slug, "--name", "x", "--scopes", "feeds:manage", "--expires-days", "30"
    )
    key = ApiKey.objects.get(prefix=key_parse(output.strip().splitlines()[-1]).prefix)
    assert key.expires_at is not None
    assert 29 <= (key.expires_at - key.created_at).days <= 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agency", "nope", "--name", "x", "--scopes", "meetings:read"], "no agency"),
        (["--agency", "fr-test", "--name", "x", "--scopes", "meetings:delete"], "Scopes"),
        (["--agency", "fr-test", "--name", " ", "--scopes", "meetings:read"], "Name"),
        (
            [
                "--agency",
                "fr-test",
                "--name",
                "x",
                "--scopes",
                "meetings:read",
                "--expires-days",
                "0",
            ],
            "expires",
        ),
    ],
)
def test_apikey_create_refuses_bad_arguments(agency, args, message):
    with pytest.raises(CommandError, match=message):
        _call(*args)
    assert not ApiKey.objects.exists()
