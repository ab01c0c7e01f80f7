"""Typed readers for configuration from environment variables.

Every reader fails loudly with ImproperlyConfigured on a value it cannot use,
naming the variable, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Comma-separated list; blank items are dropped."""
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(
    name: str, default: str = "", *, schemes: tuple[str, ...] = (), secret: bool = False
) -> str:
    """A URL; with secret=True it may also come from NAME_FILE (URLs that embed a password)."""
    value = (env_secret(name) or None) if secret else _raw(name)
    if value is None or value == "":
        return default
    parts = urlsplit(value)
    # A host, or an absolute path for socket and file URLs (unix:///run/redis.sock); a missing
    # "//" ("https:host", "localhost:8000") would otherwise parse as a scheme plus a path.
    if not parts.scheme or not (parts.netloc or parts.path.startswith("/")):
        raise ImproperlyConfigured(f"{name} must be a URL, got {value!r}")
    if schemes and parts.scheme not in schemes:
        allowed = ", ".join(schemes)
        raise ImproperlyConfigured(f"{name} must use one of the schemes {allowed}, got {value!r}")
    return value


def env_secret(name: str, default: str = "") -> str:
    """Secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    direct = _raw(name)
    file_name = _raw(f"{name}_FILE")
    if direct and file_name:
        raise ImproperlyConfigured(f"Set either {name} or {name}_FILE, not both")
    if file_name:
        path = Path(file_name)
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE points to {file_name!r}, which cannot be read: {exc.strerror}"
            ) from None
        if not secret:
            raise ImproperlyConfigured(f"{name}_FILE points to an empty file: {file_name!r}")
        return secret
    return direct or default


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value
