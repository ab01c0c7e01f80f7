"""The app under gunicorn for the HTTP benchmarks, and a bounded load generator.

gunicorn: 2 workers (gthread, 4 threads), loopback only, --no-control-socket. Each client process
sends a fixed number of requests over keep-alive connections, checks every answer and times
each one; callers alternate rounds of their endpoints and keep the median round.

A client opens a new connection every ``RECONNECT_EVERY`` requests. A keep-alive connection
stays with the worker that accepted it, and which worker accepts is a draw: with four long
connections a round was served 2-2 or 3-1 (seen in the workers' CPU time: 2.6 and 2.7 ms a
request against 1.2 and 4.0), and a 3-1 round of a heavy endpoint runs at four fifths of a 2-2
one while the cheap baseline barely notices, so each round's ratio was a lottery. Many shorter
connections give every round the same mix of draws; a connect every 25 requests costs each
request a few microseconds, alike for every endpoint.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECONNECT_EVERY = 25


@dataclass(frozen=True)
class Target:
    """One kind of request and the answer it must get; ``paths`` are used in turn."""

    method: str
    paths: tuple[str, ...]
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Optional: a callable name in the caller's module is not picklable; use ``bodies`` instead.
    bodies: tuple[bytes, ...] = ()
    location: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(
    port: int, *, log_name: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="visio_broker.settings",
        DEBUG="false",
        SITE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        **(extra_env or {}),
    )
    argv = [
        *(sys.executable, "-m", "gunicorn", "visio_broker.wsgi:application"),
        f"--bind=127.0.0.1:{port}",
        "--workers=2",
        "--worker-class=gthread",
        "--threads=4",
        "--no-control-socket",
        f"--access-logfile={os.devnull}",
        f"--error-logfile={log_dir / f'{log_name}-gunicorn-error.log'}",
    ]
    return subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603


def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def client_loop(
    port: int, target: Target, count: int, offset: int
) -> tuple[int, list[float], list[str]]:
    """``count`` requests over keep-alive connections (a new one every ``RECONNECT_EVERY``):
    (unexpected answers, latencies in seconds, the first few unexpected answers for the
    report)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bad = 0
    latencies: list[float] = []
    samples: list[str] = []
    for index in range(offset, offset + count):
        if index > offset and (index - offset) % RECONNECT_EVERY == 0:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = target.paths[index % len(target.paths)]
        body = target.bodies[index % len(target.bodies)] if target.bodies else target.body
        headers = {**target.headers, "Content-Length": str(len(body))}
        began = time.perf_counter()
        connection.request(target.method, path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read()
        latencies.append(time.perf_counter() - began)
        location = response.getheader("Location") or ""
        if response.status != target.status or not location.startswith(target.location):
            bad += 1
            if len(samples) < 3:
                samples.append(f"{response.status} {content[:300]!r}")
    connection.close()
    return bad, latencies, samples


def rate(
    port: int, target: Target, clients: int, requests: int, round_index: int = 0
) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=clients) as pool:
        # The pool's processes start before the clock does.
        list(pool.map(time.sleep, [0.01] * clients))
        began = time.perf_counter()
        futures = [
            pool.submit(client_loop, port, target, requests, (round_index * clients + n) * requests)
            for n in range(clients)
        ]
        answers = [future.result() for future in futures]
        elapsed = time.perf_counter() - began
    latencies = sorted(t for _, times, _ in answers for t in times)
    return {
        "rps": len(latencies) / elapsed,
        "requests": len(latencies),
        "unexpected": sum(bad for bad, _, _ in answers),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "samples": [sample for _, _, found in answers for sample in found][:3],
    }


def measure_targets(
    port: int, targets: dict[str, Target], *, clients: int, requests: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Warm every target (and check its answers), then alternate rounds; medians per target."""
    for name, target in targets.items():
        warm = rate(port, target, clients, max(requests // 10, 20), round_index=rounds + 1)
        if warm["unexpected"]:
            raise RuntimeError(f"{name}: {warm['unexpected']} unexpected answers {warm['samples']}")
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for round_index in range(rounds):
        for name, target in targets.items():
            found[name].append(rate(port, target, clients, requests, round_index))
    results = {}
    for name, runs in found.items():
        results[name] = {
            "rps": statistics.median(run["rps"] for run in runs),
            "p50_ms": statistics.median(run["p50_ms"] for run in runs),
            "p95_ms": statistics.median(run["p95_ms"] for run in runs),
            "rounds": [round(run["rps"], 1) for run in runs],
            "unexpected": sum(run["unexpected"] for run in runs),
            "requests": sum(run["requests"] for run in runs),
        }
    return results


def round_ratios(results: dict[str, Any], name: str, baseline: str = "healthz") -> list[float]:
    """``name``'s requests/second over the baseline's, round by round (each pair measured
    back to back): on a machine whose speed drifts between rounds, their spread shows how far
    to trust the ratio of medians the targets are judged on."""
    return [
        round(rps / base, 2)
        for rps, base in zip(results[name]["rounds"], results[baseline]["rounds"], strict=True)
    ]
