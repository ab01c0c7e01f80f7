"""VISIO_ENV=production refuses to start without its secrets and services; passes check --deploy.

Each case starts a fresh interpreter: settings are read once per process.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SETUP = "import django; django.setup()"
SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name) for name in (
    "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", "ALLOWED_HOSTS", "EMAIL_BACKEND",
    "SECRET_KEY", "CSRF_TRUSTED_ORIGINS", "CELERY_BROKER_URL",
)}))
print(s.CACHES["default"]["BACKEND"], s.DATABASES["default"]["ENGINE"])
"""


def _secret_key() -> str:
    return secrets.token_urlsafe(60)[:60]


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    """A complete production environment; tests remove or spoil one variable."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "visio_broker.settings",
        "VISIO_ENV": "production",
        "VISIO_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": _secret_key(),
        "FEED_TOKEN_KEY": _secret_key(),
        "DATABASE_URL": os.environ.get(
            "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/visio_broker"
        ),
        "REDIS_URL": "redis://127.0.0.1:6379/9",
        "ALLOWED_HOSTS": "visio.example.gouv.fr",
        "SITE_URL": "https://visio.example.gouv.fr",
        "DEFAULT_FROM_EMAIL": "Visio Broker <no-reply@visio.example.gouv.fr>",
    }


def _python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _configuration_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    return last.removeprefix("django.core.exceptions.ImproperlyConfigured: ")


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SECRET_KEY", "SECRET_KEY is required when VISIO_ENV=production"),
        ("FEED_TOKEN_KEY", "FEED_TOKEN_KEY is required when VISIO_ENV=production"),
        ("DATABASE_URL", "DATABASE_URL is required when VISIO_ENV=production"),
        ("REDIS_URL", "CELERY_BROKER_URL or REDIS_URL is required when VISIO_ENV=production"),
        ("ALLOWED_HOSTS", "ALLOWED_HOSTS is required when VISIO_ENV=production"),
        ("SITE_URL", "SITE_URL must be an https:// URL when VISIO_ENV=production"),
        ("DEFAULT_FROM_EMAIL", "DEFAULT_FROM_EMAIL is required when VISIO_ENV=production"),
    ],
)
def test_production_refuses_to_start_without(production_env, missing, message):
    del production_env[missing]
    assert _configuration_error(_python(production_env, "-c", SETUP)) == message


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SITE_URL", "http://visio.example.gouv.fr", "SITE_URL must be an https:// URL"),
        ("SECRET_KEY", "too-short", "SECRET_KEY must be at least 50 characters long"),
        ("FEED_TOKEN_KEY", "too-short", "FEED_TOKEN_KEY must be at least 32 characters long"),
        ("DEBUG", "true", "DEBUG must be off when VISIO_ENV=production"),
        ("ALLOWED_HOSTS", " , ", "ALLOWED_HOSTS is required"),
        ("DATABASE_URL", "db.internal:5432/visio", "DATABASE_URL must be a URL"),
        ("REDIS_URL", "http://127.0.0.1:6379/9", "REDIS_URL must use one of the schemes"),
        ("VISIO_ENV", "prod", "VISIO_ENV must be one of development, production"),
        ("EMAIL_PORT", "smtp", "EMAIL_PORT must be an integer"),
    ],
)
def test_production_refuses_bad_values(production_env, name, value, message):
    production_env[name] = value
    assert _configuration_error(_python(production_env, "-c", SETUP)).startswith(message)


def test_production_secret_key_file_and_variable_together_are_refused(production_env, tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text(_secret_key())
    production_env["SECRET_KEY_FILE"] = str(key_file)
    assert (
        _configuration_error(_python(production_env, "-c", SETUP))
        == "Set either SECRET_KEY or SECRET_KEY_FILE, not both"
    )


def test_production_profile_is_hardened(production_env):
    result = _python(production_env, "-c", SHOW_SETTINGS)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    values = json.loads(first)
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"]
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 60 * 60 * 24 * 365
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["ALLOWED_HOSTS"] == ["visio.example.gouv.fr"]
    assert values["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert values["SECRET_KEY"] == production_env["SECRET_KEY"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://visio.example.gouv.fr"]
    assert values["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/9"
    assert second == "visio_broker.cache.ResilientRedisCache visio_broker.postgresql"


def test_production_check_deploy_passes(production_env):
    result = _python(production_env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_check_deploy_passes_with_secret_key_file(production_env, tmp_path):
    key = production_env.pop("SECRET_KEY")
    key_file = tmp_path / "secret_key"
    key_file.write_text(f"{key}\n")
    production_env["SECRET_KEY_FILE"] = str(key_file)
    result = _python(production_env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    shown = _python(production_env, "-c", SHOW_SETTINGS)
    assert json.loads(shown.stdout.splitlines()[0])["SECRET_KEY"] == key


def test_production_secret_key_file_missing_is_refused(production_env, tmp_path):
    del production_env["SECRET_KEY"]
    production_env["SECRET_KEY_FILE"] = str(tmp_path / "absent")
    message = _configuration_error(_python(production_env, "-c", SETUP))
    assert message.startswith(f"SECRET_KEY_FILE points to '{tmp_path / 'absent'}'")
