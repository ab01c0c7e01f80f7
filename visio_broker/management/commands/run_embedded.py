"""Run the whole application on one machine: web, worker and beat under one supervisor.

This is `make run`. Without DATABASE_URL/REDIS_URL the settings pick SQLite and kombu's
filesystem transport under var/, so nothing needs installing; with them set, the same command
runs against PostgreSQL and Redis because the children inherit the environment.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from agencies.management.commands.seed_demo import DEMO_BACKEND_SECRETS

HOST = "127.0.0.1"
STOP_TIMEOUT = 15.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


class Command(BaseCommand):
    help = "Run web (gunicorn), worker and beat (Celery) together; stop all with one Ctrl-C."
    # Some system checks open the database, and SQLite cannot create a file in a missing
    # var/ (a fresh clone): the checks run in handle(), once the folders exist.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=int(os.environ.get("PORT") or 8000),
            help="Port of the web server on 127.0.0.1 (default: $PORT or 8000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["port"]
        if _listening(port):
            raise CommandError(f"Port {port} is already in use; choose another with PORT=.")
        run_dir = self._prepare_var_dir()
        self.check()
        call_command("migrate", interactive=False, verbosity=1)
        logins = self._seed_when_empty()
        # The children open their own connections; ours would only hold SQLite's file open.
        connections.close_all()

        # Handlers first, so a Ctrl-C while the children start still stops all of them.
        self._stop_requested = False
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        env = os.environ.copy()
        env.setdefault("SITE_URL", f"http://localhost:{port}")
        if not settings.PRODUCTION:
            # The demo backends' signing secrets (seed_demo), so the web process can mint
            # join tokens; a value already in the environment wins.
            for name, value in DEMO_BACKEND_SECRETS.items():
                env.setdefault(name, value)
            # The demo backends point at LiveKit/Jitsi servers a laptop does not run: probing
            # them would mark them down and strand every demo booking. Opt in with
            # ROOMS_HEALTH_ENABLED=true when real backends are configured.
            env.setdefault("ROOMS_HEALTH_ENABLED", "false")
        children = [self._start(name, argv, env) for name, argv in _commands(port, run_dir)]
        code = self._supervise(children, port, logins)
        if code:
            raise CommandError(f"Stopped because a process exited with code {code}.")

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    def _prepare_var_dir(self) -> Path:
        var_dir: Path = settings.VAR_DIR
        run_dir = var_dir / "run"
        wanted = [run_dir, settings.MAILBOX_PATH.parent]
        if settings.EMBEDDED_BROKER:
            options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
            wanted += [Path(str(options["data_folder_in"])), Path(str(options["control_folder"]))]
            wanted.append(Path(settings.CELERY_RESULT_BACKEND.removeprefix("file://")))
        for directory in wanted:
            directory.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _seed_when_empty(self) -> str:
        from agencies.models import Agency

        if Agency.objects.exists():
            return "Demo logins: seeded before; `python manage.py seed_demo` prints them again.\n"
        out = io.StringIO()
        call_command("seed_demo", stdout=out)
        self.stdout.write(out.getvalue())
        return out.getvalue()

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        self.stdout.write(f"run_embedded: starting {name}: {' '.join(argv)}")
        # Each child gets its own process group, so a terminal's Ctrl-C reaches only this
        # supervisor, which then stops every child once: a second signal makes gunicorn kill
        # its workers and Celery shut down cold. The argv is ours, never user input.
        return Child(name, subprocess.Popen(argv, env=env, process_group=0))  # noqa: S603

    def _supervise(self, children: list[Child], port: int, logins: str) -> int:
        """Wait for a stop signal or a child's exit, then stop everything; return the exit code."""
        code = 0
        announced = False
        while not self._stop_requested:
            dead = next((c for c in children if c.process.poll() is not None), None)
            if dead is not None:
                code = dead.process.returncode or 1
                self.stderr.write(f"run_embedded: {dead.name} exited with {code}; stopping.")
                break
            if not announced and _listening(port):
                announced = True
                self._announce(port, logins)
            time.sleep(0.3)

        _stop(children)
        return code

    def _announce(self, port: int, logins: str) -> None:
        if settings.EMAIL_DELIVERY == "mailbox":
            mail = f"{settings.MAILBOX_PATH} (list it with `python manage.py mailbox`)"
        else:
            mail = f"delivered by {settings.EMAIL_DELIVERY} (EMAIL_DELIVERY)"
        self.stdout.write(
            f"\nVisio Broker is running at http://localhost:{port}/\n"
            f"Emails: {mail}\n{logins}Stop everything with Ctrl-C.\n",
            self.style.SUCCESS,
        )


def _commands(port: int, run_dir: Path) -> list[tuple[str, list[str]]]:
    python = sys.executable
    web = [
        *(python, "-m", "gunicorn", "visio_broker.wsgi:application"),
        f"--bind={HOST}:{port}",
        "--workers=2",
        "--threads=2",
        "--graceful-timeout=5",
        "--access-logfile=-",
        # Calendar feed URLs carry a capability token: logged redacted.
        "--logger-class=visio_broker.gunicorn_logging.RedactingLogger",
        "--no-control-socket",
    ]
    # Mingle and gossip talk to other workers; there are none, and over the filesystem
    # transport each start-up would wait for replies that never come.
    worker = [
        *(python, "-m", "celery", "--app=visio_broker", "worker"),
        "--loglevel=INFO",
        "--concurrency=1",
        "--pool=solo",
        "--without-mingle",
        "--without-gossip",
    ]
    beat = [
        *(python, "-m", "celery", "--app=visio_broker", "beat"),
        "--loglevel=INFO",
        f"--pidfile={run_dir / 'celerybeat.pid'}",
        f"--schedule={run_dir / 'celerybeat-schedule'}",
    ]
    return [("web", web), ("worker", worker), ("beat", beat)]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((HOST, port)) == 0


def _stop(children: list[Child]) -> None:
    """Terminate every child, wait for all of them, kill whichever outlives the timeout."""
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            sys.stderr.write(f"run_embedded: {child.name} did not stop in time; killing it.\n")
            # The whole group: gunicorn's workers too, not only its arbiter.
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
