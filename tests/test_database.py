"""PostgreSQL connections bind parameters on the server and prepare the statements they repeat
(DATABASE_PREPARED_STATEMENTS, on by default; off for a transaction-pooling PgBouncer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from agencies.models import Agency

ROOT = Path(__file__).resolve().parent.parent
SHOW_OPTIONS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps(settings.DATABASES["default"].get("OPTIONS", {})))
"""


@pytest.mark.django_db
def test_repeated_statements_are_prepared_on_the_server(agency):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    for _ in range(6):  # prepare_threshold is 5
        assert Agency.objects.filter(pk=agency.pk).values_list("slug", flat=True).get()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%"agencies_agency"."slug"%'],
        )
        prepared = [statement for (statement,) in cursor.fetchall()]
    # The server saw placeholders, not the value: one plan for every agency.
    assert prepared and all("$1" in statement for statement in prepared)


def _options(**env: str) -> dict[str, object]:
    shown = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SHOW_OPTIONS],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DJANGO_SETTINGS_MODULE": "visio_broker.settings",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/visio_broker",
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(shown.stdout))


@pytest.mark.slow
def test_prepared_statements_are_on_by_default_and_can_be_turned_off():
    assert _options() == {
        "connect_timeout": 5,
        "server_side_binding": True,
        "prepare_threshold": 5,
    }
    assert _options(DATABASE_PREPARED_STATEMENTS="false") == {"connect_timeout": 5}
