"""Throwaway Redis, Celery worker and beat processes for fault tests and benchmarks.

Every process listens on a free loopback port of its own and is stopped by its PID (never by
name): the machine's shared PostgreSQL and Redis are never touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively, from /proc (no psutil on the machine)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            found.extend(descendants(child))
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _reap_after(pids: list[int], timeout: float = 5.0) -> None:
    """Wait until processes we are not the parent of are gone (prefork children)."""
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout=timeout)


@dataclass
class ManagedProcess:
    """A subprocess with its log file, stopped by PID: SIGTERM, wait, then SIGKILL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} is running"
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
            self.argv,
            env=self.env,
            cwd=str(ROOT),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the test terminal reaches pytest, which stops it.
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, *, timeout: float = 60.0) -> None:
        if not wait_until(lambda: text in self.log() or not self.running, timeout=timeout):
            raise TimeoutError(f"{self.name}: no {text!r} within {timeout} s\n{self.tail()}")
        if text not in self.log():
            raise RuntimeError(f"{self.name} exited early\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the process and all its children at once, as a crash or OOM kill would."""
        if self.popen is None:
            return
        pids = [self.popen.pid, *descendants(self.popen.pid)]
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        _reap_after(pids[1:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        children = descendants(self.popen.pid)
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        for pid in children:
            _signal(pid, signal.SIGKILL)
        _reap_after(children)


@dataclass
class ThrowawayRedis:
    """``redis-server`` without persistence; ``stop()`` then ``start()`` reuses the same port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = ManagedProcess(
            "redis", argv, dict(os.environ), self.workdir / f"redis-{self.port}.log"
        ).start()
        if not wait_until(self.answers, timeout=10):
            raise RuntimeError(f"redis-server on {self.port} did not start\n{self.process.tail()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)
        wait_until(lambda: not self.answers(), timeout=5)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def database_url(settings_dict: dict[str, Any]) -> str:
    """The URL of a Django database, for processes that must share it (the test database)."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def celery_env(*, database: str, broker: str, smtp_port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "visio_broker.settings",
            "DATABASE_URL": database,
            "REDIS_URL": broker,
            "CELERY_BROKER_URL": broker,
            "CELERY_RESULT_BACKEND": broker,
            "EMAIL_DELIVERY": "smtp",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "EMAIL_USE_TLS": "false",
            "EMAIL_USE_SSL": "false",
            "OUTBOX_SWEEP_AFTER_SECONDS": "10",
            "OUTBOX_SWEEP_INTERVAL_SECONDS": "5",
            # The test backends point at a closed port: probes would take them down mid-test.
            "ROOMS_HEALTH_ENABLED": "false",
            "DEBUG": "false",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    env.update(extra)
    return env


@dataclass
class CeleryProcesses:
    """Starts workers and beat against one broker; ``stop_all()`` stops whatever is left."""

    workdir: Path
    env: dict[str, str]
    started: list[ManagedProcess] = field(default_factory=list)

    def worker(
        self, *, pool: str = "prefork", concurrency: int = 2, include: tuple[str, ...] = ()
    ) -> ManagedProcess:
        index = len(self.started)
        argv = [PYTHON, "-m", "celery", "-A", "visio_broker", "worker", "--pool", pool]
        argv += ["--concurrency", str(concurrency), "--without-mingle", "--without-gossip"]
        argv += ["--without-heartbeat", "-Q", "celery", "--loglevel", "INFO"]
        argv += ["-n", f"fault{index}-{os.getpid()}@%h"]
        if include:
            argv += ["--include", ",".join(include)]
        process = ManagedProcess(
            f"worker{index}", argv, self.env, self.workdir / f"worker{index}.log"
        ).start()
        self.started.append(process)
        process.wait_for_log(" ready.", timeout=60)
        return process

    def beat(self) -> ManagedProcess:
        index = len(self.started)
        argv = [PYTHON, "-m", "celery", "-A", "visio_broker", "beat", "--loglevel", "INFO"]
        # A schedule file of its own: nothing shared with other beats or the database tables.
        argv += ["--scheduler", "celery.beat:PersistentScheduler"]
        argv += ["--schedule", str(self.workdir / "beat-schedule")]
        argv += ["--pidfile", str(self.workdir / f"beat{index}.pid")]
        process = ManagedProcess(
            f"beat{index}", argv, self.env, self.workdir / f"beat{index}.log"
        ).start()
        self.started.append(process)
        process.wait_for_log("beat: Starting...", timeout=60)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(30)}" for p in self.started)


@contextmanager
def publishing_to(broker_url: str) -> Iterator[None]:
    """Point this process's Celery app at ``broker_url``; the previous broker afterwards."""
    from visio_broker.celery import app

    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    old_pool = app._pool
    app.conf.broker_url = broker_url
    # Short timeouts, as in production: a stopped broker must refuse fast.
    app.conf.broker_transport_options = {
        **(saved[1] or {}),
        "socket_connect_timeout": 1,
        "socket_timeout": 2,
    }
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app.conf.broker_transport_options = saved
        app._pool = old_pool
        app.amqp._producer_pool = None
