"""`make run`'s embedded mode: SQLite, filesystem broker, web + worker + beat, one Ctrl-C."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)"),
]

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0

PING = """
from visio_broker import celery_app
print(celery_app.send_task("visio_broker.ping").get(timeout=60))
"""


def _embedded_env(var_dir: Path, port: int) -> dict[str, str]:
    env = os.environ.copy()
    # conftest points the test process at PostgreSQL, Redis and a test host; `make run` has none.
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "SITE_URL",
    ):
        env.pop(name, None)
    env.update(
        VISIO_ENV="development",
        VISIO_VAR_DIR=str(var_dir),
        PORT=str(port),
        DJANGO_SETTINGS_MODULE="visio_broker.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session_members(session_id: int) -> set[int]:
    """Live (not zombie) processes of a session; run_embedded leads its own, so these are its."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the parenthesised command name: state ppid pgrp session ...
        state, _ppid, _pgrp, session = text.rsplit(")", 1)[1].split()[:4]
        if int(session) == session_id and state != "Z":
            members.add(int(stat.parent.name))
    return members


def _wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run_embedded exited with {process.returncode}:\n{log.read_text()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            if response.status == 200:
                assert json.loads(response.read()) == {"status": "ok"}
                return
        except (OSError, http.client.HTTPException):  # not listening yet
            pass
        finally:
            connection.close()
        time.sleep(0.5)
    pytest.fail(f"/healthz did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()}")


def test_embedded_mode_serves_runs_tasks_and_stops_on_one_sigint(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    port = _free_port()
    env = _embedded_env(var_dir, port)
    manage = [sys.executable, str(ROOT / "manage.py")]
    var_dir.mkdir()  # SQLite creates its file but not the folder; plain migrate does neither
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, timeout=300)

    log = tmp_path / "run_embedded.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*manage, "run_embedded"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(port, process, log)

        ping = subprocess.run(
            [sys.executable, "-c", PING],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout.strip() == "pong"
        assert (var_dir / "visio-broker.sqlite3").is_file()

        children = _session_members(process.pid) - {process.pid}
        # web (gunicorn arbiter and its 2 workers), worker, beat
        assert len(children) >= 5, log.read_text()

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert _session_members(process.pid) == set(), log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
