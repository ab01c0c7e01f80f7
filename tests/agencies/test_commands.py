"""Operator commands: agency_create, user_create, seed_demo, mailbox.

Success paths run in-process with call_command; a few error paths run the real
``manage.py`` to pin what an operator sees: one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import authenticate
from django.core.mail import EmailMessage, get_connection
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from agencies.management.commands.seed_demo import DEMO_PASSWORD
from agencies.models import Agency, AuditEvent, Membership, Role, User
from agencies.services import agency_create, user_create
from visio_broker.audit import CLI

ROOT = Path(__file__).resolve().parents[2]
STRONG_PASSWORD = "plateau-violet-quartz-42"
DEMO_COUNTRIES = {"fr-numerique": "FR", "de-bdv": "DE", "nl-bzk": "NL"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 costs 0.3 s a hash; what these tests check does not depend on the algorithm."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


def _call(name: str, *args: str, **options) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _manage(*args: str, var_dir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run manage.py against the test database, as an operator would."""
    env = {**os.environ, "VISIO_VAR_DIR": str(var_dir), "EMAIL_DELIVERY": "mailbox"}
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = _database_url()
    else:
        env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


needs_shared_database = pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="the subprocess needs to see the PostgreSQL test database (set DATABASE_URL)",
)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- agency_create -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_agency_create_command_creates_and_audits():
    out = _call(
        "agency_create",
        "be-test",
        "--name",
        "SPF Test",
        "--country",
        "be",
        "--timezone",
        "Europe/Brussels",
        "--language",
        "fr",
        "--email-domain",
        "test.belgium.example",
        "--email-domain",
        "Other.Belgium.Example",
    )
    assert out == "Created agency be-test (SPF Test).\n"
    agency = Agency.objects.get(slug="be-test")
    assert (agency.country, agency.default_timezone, agency.default_language) == (
        "BE",
        "Europe/Brussels",
        "fr",
    )
    assert agency.email_domains == ["other.belgium.example", "test.belgium.example"]
    event = AuditEvent.objects.get(action="agency.created")
    assert event.actor is None and event.actor_label == "cli" and event.agency == agency


@pytest.mark.django_db
def test_agency_create_command_duplicate_is_an_error(agency):
    with pytest.raises(CommandError, match=r"already exists\. \[agency_exists\]"):
        _call(
            "agency_create",
            agency.slug,
            "--name=X",
            "--country=FR",
            "--timezone=Europe/Paris",
        )
    assert Agency.objects.filter(slug=agency.slug).get().name == agency.name


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@needs_shared_database
def test_agency_create_duplicate_prints_one_line(tmp_path):
    agency_create(actor=CLI, slug="fr-dup", name="A", country="FR", timezone="Europe/Paris")
    result = _manage(
        "agency_create",
        "fr-dup",
        "--name=B",
        "--country=FR",
        "--timezone=Europe/Paris",
        var_dir=tmp_path,
    )
    assert result.returncode == 1
    assert _one_error_line(result) == (
        "CommandError: An agency with slug fr-dup already exists. [agency_exists]"
    )
    assert result.stdout == ""
    assert Agency.objects.get(slug="fr-dup").name == "A"


@pytest.mark.slow
def test_agency_create_bad_country_prints_one_line(tmp_path):
    result = _manage(
        "agency_create",
        "xx-test",
        "--name=X",
        "--country=XX",
        "--timezone=Europe/Paris",
        var_dir=tmp_path,
    )
    assert result.returncode == 1
    line = _one_error_line(result)
    assert line.startswith("CommandError: country: XX is not an ISO 3166 country code")
    assert line.endswith("[invalid]")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["--name=X", "--country=FR", "--timezone=Europe/Paris"], "slug"),
        (["fr-x", "--country=FR", "--timezone=Europe/Paris"], "--name"),
        (["fr-x", "--name=X", "--timezone=Europe/Paris"], "--country"),
    ],
)
def test_agency_create_missing_arguments_is_usage_error(tmp_path, args, missing):
    result = _manage("agency_create", *args, var_dir=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert line.startswith("error: the following arguments are required: ")
    assert missing in line
    assert line.endswith("(see agency_create --help)")


# --- user_create -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_create_with_password_stdin(agency, monkeypatch, mailoutbox):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{STRONG_PASSWORD}\nignored second line\n"))
    out = _call(
        "user_create",
        "Agent@Test.gouv.example",
        "--agency",
        agency.slug,
        "--role",
        "organizer",
        "--name",
        "Agent Smith",
        "--password-stdin",
    )
    assert out.startswith("Created agent@test.gouv.example (organizer of fr-test)")
    user = User.objects.get(email="agent@test.gouv.example")
    assert user.display_name == "Agent Smith"
    assert user.membership.agency == agency and user.membership.role == Role.ORGANIZER
    assert authenticate(email=user.email, password=STRONG_PASSWORD) == user
    assert not EmailAddress.objects.get(user=user).verified
    assert mailoutbox == []
    # First sign-in asks to confirm the address and mails the confirmation link.
    response = Client().post(
        reverse("account_login"), {"login": user.email, "password": STRONG_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert [m.to for m in mailoutbox] == [[user.email]]


@pytest.mark.django_db
def test_user_create_with_empty_password_stdin_is_an_error(agency, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="standard input has no password"):
        _call(
            "user_create",
            "a@test.gouv.example",
            "--agency=fr-test",
            "--role=member",
            "--password-stdin",
        )
    assert not User.objects.exists()


@pytest.mark.django_db
def test_user_create_with_weak_password_is_an_error(agency, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    with pytest.raises(CommandError, match=r"\[weak_password\]$"):
        _call(
            "user_create",
            "a@test.gouv.example",
            "--agency=fr-test",
            "--role=member",
            "--password-stdin",
        )
    assert not User.objects.exists()


@pytest.mark.django_db
def test_user_create_without_password_sends_invitation(
    agency, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        out = _call("user_create", "someone@elsewhere.example", "--agency=fr-test", "--role=admin")
    assert out == "Created someone@elsewhere.example; invitation sent by email.\n"
    user = User.objects.get(email="someone@elsewhere.example")
    assert not user.has_usable_password()
    assert user.membership.role == Role.ADMIN
    assert [m.to for m in mailoutbox] == [["someone@elsewhere.example"]]
    assert "/invitation/" in mailoutbox[0].body
    assert "The Visio Broker operators" in mailoutbox[0].body
    assert AuditEvent.objects.filter(action="member.invited", actor_label="cli").count() == 1


@pytest.mark.django_db
def test_user_create_unknown_agency_is_an_error(db):
    with pytest.raises(CommandError, match="No agency with slug 'nope'"):
        _call("user_create", "a@test.gouv.example", "--agency=nope", "--role=member")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_user_create_bad_role_is_an_error(agency):
    with pytest.raises(CommandError, match="invalid choice: 'owner'"):
        _call("user_create", "a@test.gouv.example", "--agency=fr-test", "--role=owner")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_user_create_duplicate_is_an_error(agency, make_member, django_capture_on_commit_callbacks):
    existing = make_member(agency, Role.MEMBER, email="taken@test.gouv.example")
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(CommandError, match=r"\[user_exists\]$"),
    ):
        _call("user_create", "TAKEN@test.gouv.example", "--agency=fr-test", "--role=admin")
    assert Membership.objects.get(user=existing).role == Role.MEMBER


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@needs_shared_database
def test_user_create_unknown_agency_prints_one_line(tmp_path):
    result = _manage(
        "user_create", "a@test.gouv.example", "--agency=nope", "--role=member", var_dir=tmp_path
    )
    assert result.returncode == 1
    assert _one_error_line(result) == "CommandError: No agency with slug 'nope'."


@pytest.mark.slow
def test_user_create_bad_role_prints_one_line(tmp_path):
    result = _manage(
        "user_create", "a@test.gouv.example", "--agency=fr-x", "--role=owner", var_dir=tmp_path
    )
    assert result.returncode == 2
    line = _one_error_line(result)
    assert line.startswith("error: argument --role: invalid choice: 'owner'")
    assert line.endswith("(see user_create --help)")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@needs_shared_database
def test_user_create_duplicate_prints_one_line(tmp_path):
    agency = agency_create(
        actor=CLI, slug="fr-dup", name="A", country="FR", timezone="Europe/Paris"
    )
    user_create(actor=CLI, email="taken@test.gouv.example", agency=agency, role="member")
    result = _manage(
        "user_create",
        "Taken@test.gouv.example",
        "--agency=fr-dup",
        "--role=member",
        "--password-stdin",
        var_dir=tmp_path,
        stdin=f"{STRONG_PASSWORD}\n",
    )
    assert result.returncode == 1
    assert _one_error_line(result) == (
        "CommandError: A user with email taken@test.gouv.example already exists. [user_exists]"
    )
    assert User.objects.count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@needs_shared_database
def test_user_create_password_stdin_in_a_real_process(tmp_path):
    agency_create(actor=CLI, slug="fr-real", name="A", country="FR", timezone="Europe/Paris")
    result = _manage(
        "user_create",
        "real@test.gouv.example",
        "--agency=fr-real",
        "--role=member",
        "--password-stdin",
        var_dir=tmp_path,
        stdin=f"{STRONG_PASSWORD}\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert STRONG_PASSWORD not in result.stdout
    assert authenticate(email="real@test.gouv.example", password=STRONG_PASSWORD) is not None


# --- seed_demo ---------------------------------------------------------------------------------


def _demo_counts() -> dict[str, int]:
    return {
        "agencies": Agency.objects.count(),
        "users": User.objects.count(),
        "memberships": Membership.objects.count(),
        "audit": AuditEvent.objects.count(),
    }


@pytest.mark.django_db
def test_seed_demo_creates_three_agencies_with_people():
    out = _call("seed_demo")
    assert "Demo data ready (16 new records)" in out
    assert DEMO_PASSWORD in out
    assert dict(Agency.objects.values_list("slug", "country")) == DEMO_COUNTRIES
    for agency in Agency.objects.all():
        roles = list(Membership.objects.filter(agency=agency).values_list("role", flat=True))
        assert roles.count(Role.ADMIN) == 1
        assert roles.count(Role.ORGANIZER) >= 1
        assert roles.count(Role.MEMBER) >= 1
        assert agency.name in out
    users = User.objects.select_related("membership")
    assert users.count() == 13
    for user in users:
        assert f"{user.membership.role:<10} {user.email}" in out
        assert EmailAddress.objects.get(user=user).verified
        assert authenticate(email=user.email, password=DEMO_PASSWORD) == user


@pytest.mark.django_db
def test_seed_demo_is_idempotent():
    _call("seed_demo")
    before = _demo_counts()
    out = _call("seed_demo")
    assert "Demo data ready (0 new records)" in out
    assert _demo_counts() == before
    assert before["agencies"] == 3 and before["users"] == 13


@pytest.mark.django_db
def test_seed_demo_completes_partial_data():
    agency_create(actor=CLI, slug="fr-numerique", name="Pre-existing", country="FR", timezone="UTC")
    out = _call("seed_demo")
    assert "Demo data ready (15 new records)" in out
    assert Agency.objects.count() == 3
    assert Agency.objects.get(slug="fr-numerique").name == "Pre-existing"
    assert Membership.objects.filter(agency__slug="fr-numerique").count() == 5


@pytest.mark.django_db
def test_seed_demo_refuses_in_production(settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refusing in production"):
        _call("seed_demo")
    assert not Agency.objects.exists()
    assert not User.objects.exists()


# --- mailbox -----------------------------------------------------------------------------------


@pytest.fixture
def mailbox_path(settings, tmp_path):
    settings.MAILBOX_PATH = tmp_path / "mail" / "outbox.mbox"
    return settings.MAILBOX_PATH


def _send_to_mailbox(subject: str, body: str, to: str) -> None:
    backend = get_connection("visio_broker.mail.MailboxEmailBackend")
    EmailMessage(subject, body, "noreply@visio.example", [to], connection=backend).send()


def test_mailbox_without_mail_says_so(mailbox_path):
    assert _call("mailbox") == f"No mail yet ({mailbox_path} does not exist).\n"


def test_mailbox_lists_and_shows_messages(mailbox_path):
    _send_to_mailbox("Réunion de lundi", "Bonjour,\nà lundi.", "anne@test.gouv.example")
    _send_to_mailbox("Second", "Body two", "bob@test.gouv.example")
    lines = _call("mailbox").splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("   1  ")
    assert lines[0].endswith("  anne@test.gouv.example  Réunion de lundi")
    assert lines[1].startswith("   2  ") and lines[1].endswith("bob@test.gouv.example  Second")

    shown = _call("mailbox", "--show", "1")
    assert "To: anne@test.gouv.example\n" in shown
    assert "Subject: Réunion de lundi\n" in shown
    assert shown.endswith("Bonjour,\nà lundi.\n")


def test_mailbox_show_out_of_range_is_an_error(mailbox_path):
    _send_to_mailbox("Only", "Body", "anne@test.gouv.example")
    with pytest.raises(CommandError, match="There are 1 messages; --show takes 1 to 1."):
        _call("mailbox", "--show", "2")


@pytest.mark.slow
def test_mailbox_show_out_of_range_prints_one_line(settings, tmp_path):
    settings.MAILBOX_PATH = tmp_path / "mail" / "outbox.mbox"  # where VISIO_VAR_DIR puts it
    _send_to_mailbox("Only", "Body", "anne@test.gouv.example")
    result = _manage("mailbox", "--show", "3", var_dir=tmp_path)
    assert result.returncode == 1
    assert _one_error_line(result) == "CommandError: There are 1 messages; --show takes 1 to 1."
