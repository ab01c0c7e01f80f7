"""The API on the embedded default (SQLite, `make run`): keys, booking, listing and delta sync
work there too — the change counter's upsert and the cursors are the SQLite-sensitive parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_embedded_mode import ROOT, _embedded_env, _free_port

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json
from datetime import timedelta
from django.test import Client
from django.utils import timezone
from agencies.services import agency_create, apikey_create, user_create
from agencies.models import Membership, Role
from rooms.services import backend_create
from visio_broker.audit import CLI

agency = agency_create(actor=CLI, slug="fr-embedded", name="Embedded", country="FR",
                       timezone="Europe/Paris", email_domains=["embedded.example"])
organizer = user_create(actor=CLI, email="org@embedded.example", agency=agency,
                        role=Role.ORGANIZER, password="plateau-violet-quartz-42")
backend_create(actor=CLI, name="embedded-lk", kind="livekit", base_url="wss://lk.embedded.example",
               capacity=100, country="FR", api_key="APIembedded", agency=agency,
               secret_env="VB_EMBEDDED_LK_SECRET")
_key, raw = apikey_create(actor=CLI, agency=agency, name="sync",
                          scopes=["meetings:read", "meetings:write"])
client = Client(headers={"Authorization": f"Bearer {raw}"}, HTTP_HOST="localhost")
out = {}
first = client.get("/api/v1/changes/").json()
out["empty_changes"] = first["changes"]
start = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
end = start + timedelta(hours=1)
created = client.post("/api/v1/meetings/", json.dumps({
    "title": "On SQLite", "start": start.isoformat(), "end": end.isoformat(),
    "timezone": "Europe/Paris", "organizer": organizer.email}), content_type="application/json")
out["create_status"] = created.status_code
meeting = created.json()
patched = client.patch(f"/api/v1/meetings/{meeting['id']}/", json.dumps({"title": "Renamed"}),
                       content_type="application/json", headers={"If-Match": created["ETag"]})
out["patch_status"] = patched.status_code
out["list_titles"] = [m["title"] for m in client.get("/api/v1/meetings/").json()["results"]]
delta = client.get("/api/v1/changes/", {"cursor": first["next_cursor"]}).json()
out["delta"] = [(c["type"], c["meeting"]["title"]) for c in delta["changes"]]
again = client.get("/api/v1/changes/", {"cursor": delta["next_cursor"]}).json()
out["after_delta"] = again["changes"]
print("RESULT " + json.dumps(out))
"""


def test_api_works_on_the_embedded_sqlite_default(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = _embedded_env(var_dir, _free_port())
    env["VB_EMBEDDED_LK_SECRET"] = "embedded-only-secret-0123456789abcdef0123456789"
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, timeout=300)
    run = subprocess.run(
        [*manage, "shell", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert (var_dir / "visio-broker.sqlite3").is_file()
    assert result["empty_changes"] == []
    assert result["create_status"] == 201
    assert result["patch_status"] == 200
    assert result["list_titles"] == ["Renamed"]
    assert result["delta"] == [["created", "Renamed"], ["updated", "Renamed"]]
    assert result["after_delta"] == []
