"""The backend_add operator command and the backend_create service behind it.

Success and most error paths run in-process with call_command; a few run the real
``manage.py`` to pin what an operator sees: one line on stderr and the exit code.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from agencies.models import AuditEvent
from rooms.models import BackendKind, HealthState, MediaBackend

ROOT = Path(__file__).resolve().parents[2]
SECRET = "lk-secret-value-9f8e7d6c5b4a"
FILE_SECRET = "jitsi-app-secret-0a1b2c3d4e5f"
ENV_VAR = "VISIO_TEST_LK_SECRET"


@pytest.fixture
def lk_secret(monkeypatch):
    monkeypatch.setenv(ENV_VAR, SECRET)
    return ENV_VAR


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "jitsi.secret"
    path.write_text(f"{FILE_SECRET}\n")
    return path


def _call(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("backend_add", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _livekit(name: str = "add-lk-paris", *extra: str, owner: tuple[str, ...] = ("--shared",)):
    return (
        name,
        "--kind=livekit",
        "--url=wss://lk.example.org",
        *owner,
        "--capacity=200",
        "--country=FR",
        "--api-key=APIkey123",
        *extra,
    )


# --- Success ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_backend_add_livekit_with_env_secret(lk_secret):
    out, err = _call(
        *_livekit(
            "add-lk-paris",
            f"--secret-env={lk_secret}",
            "--frontend-url=https://meet.lk.example.org/",
            "--weight=50",
            "--region=eu-west",
        )
    )

    assert out == "Created backend add-lk-paris (livekit, shared, FR, capacity 200).\n"
    assert err == ""
    backend = MediaBackend.objects.get(name="add-lk-paris")
    assert backend.kind == BackendKind.LIVEKIT
    assert backend.base_url == "wss://lk.example.org"
    assert backend.frontend_url == "https://meet.lk.example.org"
    assert (backend.agency, backend.capacity, backend.weight) == (None, 200, 50)
    assert (backend.country, backend.region, backend.api_key) == ("FR", "eu-west", "APIkey123")
    assert (backend.secret_env, backend.secret_file, backend.jitsi_sub) == (ENV_VAR, "", "")
    assert (backend.enabled, backend.health_state) == (True, HealthState.HEALTHY)
    assert backend.secret() == SECRET
    event = AuditEvent.objects.get(action="backend.created", object_id=str(backend.pk))
    assert (event.actor, event.actor_label, event.agency) == (None, "cli", None)
    assert event.detail["secret_source"] == f"env:{ENV_VAR}"
    assert SECRET not in json.dumps(event.detail)


@pytest.mark.django_db
def test_backend_add_jitsi_with_file_secret_for_an_agency(agency, secret_file):
    out, err = _call(
        "add-jitsi-fr",
        "--kind=jitsi",
        "--url=https://Meet.Example.org/",
        f"--agency={agency.slug}",
        "--capacity=80",
        "--country=fr",
        "--api-key=visio-app",
        f"--secret-file={secret_file}",
        "--health-url=https://meet.example.org/about/health",
    )

    backend = MediaBackend.objects.get(name="add-jitsi-fr")
    assert out == (
        f"Created backend add-jitsi-fr (jitsi, {agency.slug}, FR, capacity 80); "
        "Jitsi token sub meet.example.org.\n"
    )
    assert FILE_SECRET not in out + err
    assert (backend.kind, backend.agency, backend.country) == (BackendKind.JITSI, agency, "FR")
    assert backend.base_url == "https://Meet.Example.org"
    assert backend.health_url == "https://meet.example.org/about/health"
    # Without --jitsi-sub: the URL's host name, as a Debian install's XMPP domain.
    assert backend.jitsi_sub == "meet.example.org"
    assert (backend.secret_env, backend.secret_file) == ("", str(secret_file))
    assert backend.secret() == FILE_SECRET
    event = AuditEvent.objects.get(action="backend.created", object_id=str(backend.pk))
    assert event.agency == agency
    assert event.detail["owner"] == agency.slug
    assert FILE_SECRET not in json.dumps(event.detail)


@pytest.mark.django_db
def test_backend_add_jitsi_with_explicit_sub(secret_file):
    _call(
        "add-jitsi-docker",
        "--kind=jitsi",
        "--url=https://meet.example.org",
        "--shared",
        "--capacity=10",
        "--country=DE",
        "--api-key=app",
        f"--secret-file={secret_file}",
        "--jitsi-sub=meet.jitsi",
    )

    assert MediaBackend.objects.get(name="add-jitsi-docker").jitsi_sub == "meet.jitsi"


# --- Errors: nothing is written -----------------------------------------------------------------


def _fails(match: str, *args: str) -> None:
    with pytest.raises(CommandError, match=match):
        _call(*args)
    assert not MediaBackend.objects.filter(name=args[0]).exists()
    assert not AuditEvent.objects.filter(action="backend.created").exists()


@pytest.mark.django_db
def test_backend_add_needs_an_owner(lk_secret):
    _fails(
        "one of the arguments --agency --shared is required",
        *_livekit("add-no-owner", f"--secret-env={lk_secret}", owner=()),
    )


@pytest.mark.django_db
def test_backend_add_refuses_agency_and_shared_together(agency, lk_secret):
    _fails(
        "not allowed with argument",
        *_livekit(
            "add-both",
            f"--secret-env={lk_secret}",
            owner=(f"--agency={agency.slug}", "--shared"),
        ),
    )


@pytest.mark.django_db
def test_backend_add_needs_a_secret_source():
    _fails("one of the arguments --secret-env --secret-file is required", *_livekit("add-nosrc"))


@pytest.mark.django_db
def test_backend_add_refuses_two_secret_sources(lk_secret, secret_file):
    _fails(
        "not allowed with argument",
        *_livekit("add-2src", f"--secret-env={lk_secret}", f"--secret-file={secret_file}"),
    )


@pytest.mark.django_db
def test_backend_add_unknown_agency(lk_secret):
    _fails(
        "No agency with slug 'nowhere'",
        *_livekit("add-unknown", f"--secret-env={lk_secret}", owner=("--agency=nowhere",)),
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("livekit", "ftp://lk.example.org"),
        ("livekit", "lk.example.org"),
        ("livekit", "wss://"),
        ("jitsi", "wss://meet.example.org"),
        ("jitsi", "https://meet.example.org/?jwt=x"),
        ("jitsi", "https://user:pw@meet.example.org"),
    ],
)
def test_backend_add_bad_url(lk_secret, kind, url):
    _fails(
        r"\[invalid_url\]",
        "add-bad-url",
        f"--kind={kind}",
        f"--url={url}",
        "--shared",
        "--capacity=10",
        "--country=FR",
        "--api-key=k",
        f"--secret-env={lk_secret}",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("capacity", ["0", "-5"])
def test_backend_add_capacity_must_be_positive(lk_secret, capacity):
    args = [a for a in _livekit("add-cap", f"--secret-env={lk_secret}") if "capacity" not in a]
    _fails(r"at least 1 participant.*\[invalid_capacity\]", *args, f"--capacity={capacity}")


@pytest.mark.django_db
def test_backend_add_capacity_must_be_a_number(lk_secret):
    args = [a for a in _livekit("add-cap", f"--secret-env={lk_secret}") if "capacity" not in a]
    _fails("argument --capacity: invalid int value", *args, "--capacity=many")


@pytest.mark.django_db
def test_backend_add_bad_country(lk_secret):
    args = [a for a in _livekit("add-xx", f"--secret-env={lk_secret}") if "country" not in a]
    _fails(r"XX is not an ISO 3166 country code.*\[invalid\]", *args, "--country=XX")


@pytest.mark.django_db
def test_backend_add_bad_name(lk_secret):
    _fails(r"name: .*\[invalid\]", *_livekit("Not A Slug", f"--secret-env={lk_secret}"))


@pytest.mark.django_db
def test_backend_add_missing_env_secret(monkeypatch):
    monkeypatch.delenv("VISIO_TEST_UNSET", raising=False)
    _fails(
        r"VISIO_TEST_UNSET is not set or empty\. \[backend_secret_missing\]",
        *_livekit("add-unset", "--secret-env=VISIO_TEST_UNSET"),
    )


@pytest.mark.django_db
def test_backend_add_blank_env_secret(monkeypatch):
    monkeypatch.setenv("VISIO_TEST_BLANK", "   ")
    _fails(r"\[backend_secret_missing\]", *_livekit("add-blank", "--secret-env=VISIO_TEST_BLANK"))


@pytest.mark.django_db
@pytest.mark.parametrize("which", ["missing", "directory"])
def test_backend_add_unreadable_secret_file(tmp_path, which):
    path = tmp_path / "absent.secret" if which == "missing" else tmp_path
    _fails(
        r"cannot be read\. \[backend_secret_missing\]",
        *_livekit("add-unreadable", f"--secret-file={path}"),
    )


@pytest.mark.django_db
def test_backend_add_empty_secret_file(tmp_path):
    path = tmp_path / "empty.secret"
    path.write_text("\n")
    _fails(
        r"is empty\. \[backend_secret_missing\]", *_livekit("add-empty", f"--secret-file={path}")
    )


@pytest.mark.django_db
def test_backend_add_relative_secret_file(secret_file, monkeypatch):
    monkeypatch.chdir(secret_file.parent)
    _fails(
        r"must be an absolute path.*\[backend_secret_source\]",
        *_livekit("add-relative", f"--secret-file={secret_file.name}"),
    )


@pytest.mark.django_db
def test_backend_add_jitsi_sub_is_for_jitsi_only(lk_secret):
    _fails(r"\[invalid_sub\]", *_livekit("add-sub", f"--secret-env={lk_secret}", "--jitsi-sub=x"))


@pytest.mark.django_db
def test_backend_add_frontend_url_is_for_livekit_only(secret_file):
    _fails(
        r"\[invalid_frontend_url\]",
        "add-jitsi-front",
        "--kind=jitsi",
        "--url=https://meet.example.org",
        "--shared",
        "--capacity=10",
        "--country=FR",
        "--api-key=app",
        f"--secret-file={secret_file}",
        "--frontend-url=https://front.example.org",
    )


@pytest.mark.django_db
def test_backend_add_duplicate_name(lk_secret):
    _call(*_livekit("add-dup", f"--secret-env={lk_secret}"))

    with pytest.raises(CommandError, match=r"add-dup already exists\. \[backend_exists\]"):
        _call(*_livekit("add-dup", f"--secret-env={lk_secret}", "--capacity=5"))

    assert MediaBackend.objects.get(name="add-dup").capacity == 200
    assert AuditEvent.objects.filter(action="backend.created").count() == 1


# --- What an operator sees: one line, an exit code, never the secret ------------------------------


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "VISIO_VAR_DIR": str(tmp_path), **env}
    if connection.vendor == "postgresql":
        environ["DATABASE_URL"] = _database_url()
    return subprocess.run(
        [sys.executable, "manage.py", "backend_add", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs the shared database")
def test_backend_add_from_a_shell_prints_one_line_and_never_the_secret(tmp_path):
    result = _manage(
        *_livekit("add-shell", f"--secret-env={ENV_VAR}"), tmp_path=tmp_path, **{ENV_VAR: SECRET}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "Created backend add-shell (livekit, shared, FR, capacity 200).\n"
    assert SECRET not in result.stdout + result.stderr
    assert MediaBackend.objects.filter(name="add-shell").exists()


@pytest.mark.slow
def test_backend_add_from_a_shell_agency_and_shared_is_a_usage_error(tmp_path):
    result = _manage(
        *_livekit("add-shell", f"--secret-env={ENV_VAR}", owner=("--agency=x", "--shared")),
        tmp_path=tmp_path,
    )

    assert result.returncode == 2
    assert _one_line(result) == (
        "error: argument --shared: not allowed with argument --agency (see backend_add --help)"
    )
    assert result.stdout == ""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs the shared database")
def test_backend_add_from_a_shell_missing_secret_is_one_line(tmp_path):
    assert ENV_VAR not in os.environ
    result = _manage(*_livekit("add-shell", f"--secret-env={ENV_VAR}"), tmp_path=tmp_path)

    assert result.returncode == 1
    assert _one_line(result) == (
        f"CommandError: The environment variable {ENV_VAR} is not set or empty. "
        "[backend_secret_missing]"
    )
    assert not MediaBackend.objects.filter(name="add-shell").exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="needs the shared database")
def test_backend_add_from_a_shell_bad_capacity_is_one_line(tmp_path):
    args = [a for a in _livekit("add-shell", f"--secret-env={ENV_VAR}") if "capacity" not in a]
    result = _manage(*args, "--capacity=0", tmp_path=tmp_path, **{ENV_VAR: SECRET})

    assert result.returncode == 1
    assert _one_line(result) == (
        "CommandError: Capacity must be at least 1 participant, got 0. [invalid_capacity]"
    )
    assert SECRET not in result.stdout + result.stderr
