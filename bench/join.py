"""Join-ticket endpoint under gunicorn (issue 4): requests/second of an attendee's join (POST
/meetings/<pk>/join/ with a session cookie → authorization, time window, token → 302 to the
provider) against /healthz of the same app; target ≥ 0.4× its requests/second.

Same database approach as bench/run.py (BENCH_DATABASE_URL, default visio_bench, created and
migrated if needed); this benchmark's rows (agency bench-join, its people, backend and meeting)
are replaced on each run, and the database is vacuumed before the rounds. gunicorn: 2 workers
(gthread, 4 threads), loopback, --no-control-socket.
The load is a bounded loop: each client process sends a fixed number of requests over one
keep-alive connection and checks every answer (302 to the provider, or 200); rounds of the
endpoints alternate and the median round counts, as do p50/p95 (each request's latency as its
client saw it; bench/server.py). Clients share the machine's cores with the server. Prints the
numbers and the ratio, writes var/bench/join.json.

    .venv/bin/python bench/join.py [--clients 4] [--requests 500] [--rounds 5] [--strict]
    .venv/bin/python bench/run.py join  (the same, through the benchmark runner)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
os.environ["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
os.environ["CELERY_BROKER_URL"] = os.environ["BENCH_REDIS_URL"]
KEY_VARIABLE = "VB_BENCH_JOIN_SIGNING_KEY"
os.environ[KEY_VARIABLE] = "bench-only-join-key-0123456789abcdef0123456789"

from bench.run import DATABASE_URL, ensure_database, vacuum  # noqa: E402
from bench.server import (  # noqa: E402
    Target,
    free_port,
    measure_targets,
    round_ratios,
    start_gunicorn,
    stop,
    wait_for,
)

TARGET = 0.4
OUT = ROOT / "var" / "bench" / "join.json"
AGENCY = "bench-join"
FRONTEND = "https://meet.bench-join.example"


# --- Data ---------------------------------------------------------------------------------------


def load() -> dict[str, Any]:
    """An attendee, a meeting of the bench agency starting in five minutes (its room open), and
    a signed-in session for the attendee; earlier runs' rows replaced."""
    from django.test import Client
    from django.utils import timezone

    from agencies.models import Agency, Membership, Role, User
    from meetings.models import Meeting
    from meetings.services import AttendeeSpec, meeting_schedule
    from rooms.models import BackendKind, MediaBackend, RoomReservation

    Meeting.objects.filter(host_agency__slug=AGENCY).delete()
    User.objects.filter(email__endswith=f"@{AGENCY}.example").delete()
    MediaBackend.objects.filter(name=f"{AGENCY}-livekit").delete()
    agency, _ = Agency.objects.get_or_create(
        slug=AGENCY,
        defaults={"name": "Bench join", "country": "FR", "default_timezone": "Europe/Paris"},
    )
    people = []
    for local, role in (("organizer", Role.ORGANIZER), ("attendee", Role.MEMBER)):
        user = User.objects.create_user(email=f"{local}@{AGENCY}.example", password=None)
        Membership.objects.create(user=user, agency=agency, role=role)
        people.append(user)
    organizer, attendee = people
    backend = MediaBackend.objects.create(
        name=f"{AGENCY}-livekit",
        kind=BackendKind.LIVEKIT,
        base_url="wss://livekit.bench-join.example",
        frontend_url=FRONTEND,
        api_key="APIbenchJoin",
        secret_env=KEY_VARIABLE,
        country="FR",
        agency=agency,
        capacity=1000,
    )
    start = (timezone.now() + timedelta(minutes=5)).replace(second=0, microsecond=0)
    meeting = meeting_schedule(
        actor=organizer,
        title="Bench join",
        start=start,
        end=start + timedelta(hours=2),
        timezone="Europe/Paris",
        attendees=[AttendeeSpec(attendee.email)],
    )
    RoomReservation.objects.update_or_create(
        meeting=meeting,
        defaults={"agency": agency, "backend": backend, "expected_participants": 2},
    )
    client = Client()
    client.force_login(attendee)
    return {"meeting": meeting.pk, "session": client.cookies["sessionid"].value}


# --- Server and load ------------------------------------------------------------------------------


def measure(data: dict[str, Any], clients: int, requests: int, rounds: int) -> dict[str, Any]:
    csrf = secrets.token_hex(16)  # an unmasked CSRF secret: 32 characters, cookie and header
    targets = {
        "healthz": Target("GET", ("/healthz",), 200),
        # The same trivial view for a signed-in browser: what every signed-in request pays
        # before any view runs (session, user, allauth's session tracking, the MFA check).
        "healthz_signed_in": Target(
            "GET", ("/healthz",), 200, headers={"Cookie": f"sessionid={data['session']}"}
        ),
        "join": Target(
            "POST",
            (f"/meetings/{data['meeting']}/join/",),
            302,
            headers={
                "Cookie": f"sessionid={data['session']}; csrftoken={csrf}",
                "X-CSRFToken": csrf,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            location=f"{FRONTEND}/custom?",
        ),
    }
    port = free_port()
    server = start_gunicorn(port, log_name="join")
    try:
        wait_for(port, server)
        results: dict[str, Any] = measure_targets(
            port, targets, clients=clients, requests=requests, rounds=rounds
        )
    finally:
        stop(server)
    results["ratio"] = results["join"]["rps"] / results["healthz"]["rps"]
    results["round_ratios"] = round_ratios(results, "join")
    results["join_vs_signed_in"] = results["join"]["rps"] / results["healthz_signed_in"]["rps"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes (connections)")
    parser.add_argument("--requests", type=int, default=500, help="requests per client a round")
    # Five: the machine is shared, a median of three rounds still swings by a third.
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()

    ensure_database()
    import django

    django.setup()
    data = load()
    vacuum()
    results = measure(data, args.clients, args.requests, args.rounds)
    met = results["ratio"] >= TARGET and not results["join"]["unexpected"]

    print("Join ticket under gunicorn (2 workers), median of alternating rounds")
    print(f"{'':<44} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7}  rounds (req/s)")
    for name, label in (
        ("healthz", "GET /healthz"),
        ("healthz_signed_in", "GET /healthz, signed in (session cookie)"),
        ("join", "POST join → 302 to the provider (attendee)"),
    ):
        entry = results[name]
        print(
            f"{label:<44} {entry['rps']:>8.0f} {entry['p50_ms']:>7.2f} {entry['p95_ms']:>7.2f}  "
            f"{entry['rounds']}"
        )
    print(
        f"join / signed-in healthz: {results['join_vs_signed_in']:.2f}× "
        "(the join's own cost, over the signed-in floor)"
    )
    print(
        f"ratio join / healthz: {results['ratio']:.2f}× (target ≥ {TARGET}×: "
        f"{'met' if met else 'MISSED'}); unexpected answers: {results['join']['unexpected']}"
    )
    print(f"join / healthz round by round: {results['round_ratios']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "postgresql": server,
        "database": DATABASE_URL.rsplit("/", 1)[-1],
        "clients": args.clients,
        "requests_per_client_per_round": args.requests,
        "target_ratio": TARGET,
        "results": results,
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"bench: results written to {OUT.relative_to(ROOT)}")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
