"""Typed environment readers (visio_broker/env.py): good values parse, bad ones fail loudly."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from visio_broker.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_secret,
    env_str,
    env_url,
)

VAR = "VISIO_TEST_VALUE"


@pytest.fixture(autouse=True)
def _no_test_variables(monkeypatch):
    for name in (VAR, f"{VAR}_FILE"):
        monkeypatch.delenv(name, raising=False)


# --- env_str -----------------------------------------------------------------------------------


def test_env_str_strips_and_defaults(monkeypatch):
    assert env_str(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, "  value \n")
    assert env_str(VAR, "fallback") == "value"


# --- env_bool ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_env_bool_accepts_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, default=not expected) is expected


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_unset_is_default(default):
    assert env_bool(VAR, default=default) is default


@pytest.mark.parametrize("raw", ["maybe", "2", "ye", "truee"])
def test_env_bool_rejects_other_values(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=rf"^{VAR} must be a boolean .*got '{raw}'"):
        env_bool(VAR)


# --- env_int -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (" 7 ", 7), ("-3", -3), ("", 5)])
def test_env_int_parses(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)
    assert env_int(VAR, 5) == expected


def test_env_int_unset_is_default():
    assert env_int(VAR, 5) == 5


@pytest.mark.parametrize("raw", ["4.5", "ten", "1e3", "0x10"])
def test_env_int_rejects_non_integers(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=rf"^{VAR} must be an integer, got '{raw}'"):
        env_int(VAR, 5)


def test_env_int_enforces_minimum(monkeypatch):
    monkeypatch.setenv(VAR, "0")
    with pytest.raises(ImproperlyConfigured, match=rf"^{VAR} must be at least 1, got 0"):
        env_int(VAR, 5, minimum=1)
    monkeypatch.setenv(VAR, "1")
    assert env_int(VAR, 5, minimum=1) == 1


# --- env_list ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.example,b.example", ["a.example", "b.example"]),
        (" a.example , ,b.example, ", ["a.example", "b.example"]),
        ("single", ["single"]),
        ("", []),
        (",", []),
    ],
)
def test_env_list_splits_on_commas(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)
    assert env_list(VAR, ["default"]) == expected


def test_env_list_unset_is_a_copy_of_default():
    default = ["localhost"]
    result = env_list(VAR, default)
    result.append("changed")
    assert default == ["localhost"]
    assert env_list(VAR) == []


# --- env_url -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "https://visio.example.gouv.fr",
        "postgres://user:pw@db:5432/visio",
        "redis://127.0.0.1:6379/0",
        "unix:///run/redis.sock",
    ],
)
def test_env_url_accepts_urls(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    assert env_url(VAR) == raw


@pytest.mark.parametrize(
    "raw", ["visio.example.gouv.fr", "localhost:8000/x", "https:visio.example", "://nohost"]
)
def test_env_url_rejects_non_urls(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=rf"^{VAR} must be a URL"):
        env_url(VAR)


def test_env_url_enforces_schemes(monkeypatch):
    monkeypatch.setenv(VAR, "ftp://files.example")
    with pytest.raises(
        ImproperlyConfigured, match=rf"^{VAR} must use one of the schemes http, https"
    ):
        env_url(VAR, schemes=("http", "https"))


def test_env_url_unset_or_empty_is_default(monkeypatch):
    assert env_url(VAR, "http://localhost") == "http://localhost"
    monkeypatch.setenv(VAR, "")
    assert env_url(VAR, "http://localhost") == "http://localhost"


# --- env_choice --------------------------------------------------------------------------------


def test_env_choice_accepts_a_choice(monkeypatch):
    monkeypatch.setenv(VAR, "production")
    assert env_choice(VAR, "development", ("development", "production")) == "production"
    monkeypatch.delenv(VAR)
    assert env_choice(VAR, "development", ("development", "production")) == "development"


@pytest.mark.parametrize("raw", ["prod", "Production", ""])
def test_env_choice_rejects_others(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(
        ImproperlyConfigured,
        match=rf"^{VAR} must be one of development, production, got '{raw}'",
    ):
        env_choice(VAR, "development", ("development", "production"))


# --- env_secret --------------------------------------------------------------------------------


def test_env_secret_reads_the_variable(monkeypatch):
    monkeypatch.setenv(VAR, " s3cret ")
    assert env_secret(VAR) == "s3cret"


def test_env_secret_unset_is_default():
    assert env_secret(VAR, "dflt") == "dflt"


def test_env_secret_reads_and_strips_the_file(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("  from-a-file\n\n", encoding="utf-8")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))
    assert env_secret(VAR) == "from-a-file"


def test_env_secret_file_keeps_inner_characters(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("a b#c=d\n", encoding="utf-8")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))
    assert env_secret(VAR) == "a b#c=d"


def test_env_secret_missing_file_names_the_variable(monkeypatch, tmp_path):
    missing = tmp_path / "absent"
    monkeypatch.setenv(f"{VAR}_FILE", str(missing))
    with pytest.raises(ImproperlyConfigured) as error:
        env_secret(VAR)
    assert str(error.value).startswith(f"{VAR}_FILE points to '{missing}', which cannot be read")
    assert "No such file or directory" in str(error.value)


def test_env_secret_directory_is_unreadable(monkeypatch, tmp_path):
    monkeypatch.setenv(f"{VAR}_FILE", str(tmp_path))
    with pytest.raises(ImproperlyConfigured, match=rf"^{VAR}_FILE points to .* cannot be read"):
        env_secret(VAR)


@pytest.mark.parametrize("content", ["", " \n\t\n"])
def test_env_secret_empty_file_is_refused(monkeypatch, tmp_path, content):
    secret_file = tmp_path / "secret"
    secret_file.write_text(content, encoding="utf-8")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))
    with pytest.raises(ImproperlyConfigured, match=rf"^{VAR}_FILE points to an empty file"):
        env_secret(VAR, "dflt")


def test_env_secret_both_variable_and_file_is_refused(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("one", encoding="utf-8")
    monkeypatch.setenv(VAR, "two")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))
    with pytest.raises(ImproperlyConfigured, match=rf"^Set either {VAR} or {VAR}_FILE, not both"):
        env_secret(VAR)
