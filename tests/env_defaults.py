"""Test environment, imported by tests/settings.py so it runs before
pytest-django reads the Django settings: real PostgreSQL and Redis, one Redis database per
xdist worker so that one worker's cache flush never touches another's rate-limit counters."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_redis_db = 15 - int(_worker.removeprefix("gw") or 0) % 8
_redis_base = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/visio_broker")
# Overridden, not defaulted: xdist workers inherit the controller's environment.
os.environ["REDIS_URL"] = f"{_redis_base}/{_redis_db}"
os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]
os.environ.setdefault("SITE_URL", "http://testserver")
os.environ.setdefault("XDG_CONFIG_HOME", str(_ROOT / "var" / "xdg" / "config"))
os.environ.setdefault("XDG_CACHE_HOME", str(_ROOT / "var" / "xdg" / "cache"))
# Signing secret of the shared test backends (tests/conftest.py); not a real one.
os.environ.setdefault("TEST_LIVEKIT_SECRET", "test-livekit-secret-0123456789abcdef")
