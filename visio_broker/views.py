"""Process health for load balancers and orchestrators."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from visio_broker.celery import app as celery_app


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive; touches no dependency."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return f"unreachable: {exc.__class__.__name__}"
    return None


def _check_migrations() -> str | None:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return f"unknown: {exc.__class__.__name__}"
    return f"{len(pending)} pending" if pending else None


def _check_broker() -> str | None:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.READYZ_BROKER_TIMEOUT)
    except Exception as exc:  # kombu raises transport-specific errors
        return f"unreachable: {exc.__class__.__name__}"
    return None


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: database reachable, migrations applied, broker reachable."""
    database = _check_database()
    problems = {
        "database": database,
        # Without a database the migration state cannot be read: not "ok", unknown.
        "migrations": _check_migrations() if database is None else "unknown: no database",
        "broker": _check_broker(),
    }
    checks = {name: problem or "ok" for name, problem in problems.items()}
    ready = all(problem is None for problem in problems.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
