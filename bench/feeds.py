"""Calendar feed benchmark (issue 6): one user's feed of 500 meetings, measured side by side.

In one run, against the bench database (BENCH_DATABASE_URL, as bench/run.py) and its own Redis
database (BENCH_REDIS_URL, default redis://127.0.0.1:6379/3, flushed here):

- in process: the feed pipeline (token, fingerprint, bytes) cold (every cache empty), re-assembled
  (one meeting changed: rows read again, events from the per-event cache) and warm (nothing
  changed since the last poll);
- under gunicorn (2 workers, loopback, --no-control-socket): requests/second of a 304 answer
  against /healthz of the same app, and of the full feed against Radicale serving the same
  500 events as one collection from its filesystem store (`pip install -e '.[bench]'`).

The load generator is wrk when installed (`apt-get install -y wrk`), else a threaded Python
client; it shares the machine's cores with the servers. Prints a table and writes
var/bench/feeds.json.

    .venv/bin/python bench/feeds.py [--samples 30] [--duration 5] [--strict]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
os.environ["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
os.environ["CELERY_BROKER_URL"] = os.environ["BENCH_REDIS_URL"]
# The benchmark hammers the feed from one address: no rate limit here.
os.environ["FEED_RATE_LIMIT"] = str(10**9)

from bench.run import DATABASE_URL, ensure_database, summary  # noqa: E402

MEETINGS = 500
RECURRING = 50
ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo")
COLLEAGUES = 40
OWNER_EMAIL = "feed-owner@bench-feeds.example"
TARGETS = {
    "cold_ms": 150.0,
    "warm_speedup": 5.0,
    "not_modified_vs_healthz": 0.5,
    "vs_radicale": 1.0,
}
OUT = ROOT / "var" / "bench" / "feeds.json"
BASIC_AUTH = "Basic " + base64.b64encode(b"bench:bench").decode()


# --- Data -------------------------------------------------------------------------------------


def load() -> Any:
    """The owner, colleagues and 500 meetings (50 weekly series with a cancelled and a moved
    occurrence), in three zones, over the feed window; earlier runs' rows replaced."""
    from django.db import connection, transaction
    from django.utils import timezone

    from agencies.models import Agency, Membership, Role, User
    from meetings import services
    from meetings.models import (
        Attendee,
        AttendeeRole,
        FeedToken,
        Meeting,
        MeetingStatus,
        OccurrenceException,
        PartStat,
    )
    from meetings.recurrence import expand, last_occurrence_start

    now = timezone.now()
    with transaction.atomic():
        agency, _created = Agency.objects.get_or_create(
            slug="bench-feeds",
            defaults={
                "name": "Bench feeds agency",
                "country": "FR",
                "default_timezone": "Europe/Paris",
            },
        )
        people = []
        for n in range(COLLEAGUES + 1):
            email = OWNER_EMAIL if n == 0 else f"colleague{n}@bench-feeds.example"
            user, _created = User.objects.get_or_create(
                email=email, defaults={"display_name": f"Bench person {n}"}
            )
            Membership.objects.get_or_create(
                user=user,
                defaults={"agency": agency, "role": Role.ORGANIZER if n % 4 == 0 else Role.MEMBER},
            )
            people.append(user)
        owner = people[0]
        Meeting.objects.filter(host_agency=agency).delete()
        FeedToken.objects.filter(user=owner).delete()

        meetings, series = [], []
        span_days = 90 + 500  # from 85 days back to 505 ahead, inside the feed's window
        for n in range(MEETINGS):
            zone = ZoneInfo(ZONES[n % len(ZONES)])
            day = (now - timedelta(days=85) + timedelta(days=n * span_days / MEETINGS)).date()
            local = datetime.combine(day, datetime.min.time(), zone).replace(hour=9 + n % 8)
            start = local.astimezone(UTC)
            end = start + timedelta(minutes=(30, 60, 90)[n % 3])
            recurring = n % (MEETINGS // RECURRING) == 0
            rrule = ""
            series_end = end
            if recurring:
                weekday = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[local.weekday()]
                rrule = f"FREQ=WEEKLY;BYDAY={weekday};COUNT=20"
                last = last_occurrence_start(rrule=rrule, start=start, timezone=zone.key)
                series_end = (last or start) + (end - start)
            meeting = Meeting(
                uid=f"bench-feed-{n}@bench.invalid",
                title=f"Bench feed meeting {n} — réunion, Besprechung; «test»",
                description="Agenda:\n1. figures\n2. next steps" if n % 2 else "",
                start=start,
                end=end,
                timezone=zone.key,
                rrule=rrule,
                series_end=series_end,
                host_agency=agency,
                organizer=owner if n % 3 == 0 else people[1 + n % COLLEAGUES],
                status=MeetingStatus.CANCELLED if n % 97 == 5 else MeetingStatus.SCHEDULED,
                sequence=n % 4,
            )
            meetings.append(meeting)
            if recurring:
                series.append(meeting)
        Meeting.objects.bulk_create(meetings)

        attendees = []
        for n, meeting in enumerate(meetings):
            invited = {meeting.organizer_id, owner.pk}
            for k in range(3 + n % 8):
                invited.add(people[1 + (n * 7 + k * 3) % COLLEAGUES].pk)
            by_pk = {p.pk: p for p in people}
            for pk in sorted(invited):
                person = by_pk[pk]
                chair = pk == meeting.organizer_id
                attendees.append(
                    Attendee(
                        meeting=meeting,
                        user=person,
                        email=person.email,
                        display_name=person.display_name,
                        role=AttendeeRole.CHAIR if chair else AttendeeRole.REQUIRED,
                        partstat=PartStat.ACCEPTED
                        if chair or pk == owner.pk
                        else (PartStat.NEEDS_ACTION, PartStat.TENTATIVE, PartStat.DECLINED)[
                            (n + pk) % 3
                        ],
                    )
                )
            attendees.append(
                Attendee(meeting=meeting, email=f"partner{n}@example.org", display_name="")
            )
        Attendee.objects.bulk_create(attendees)

        exceptions = []
        for meeting in series:
            starts = list(
                expand(
                    rrule=meeting.rrule,
                    start=meeting.start,
                    timezone=meeting.timezone,
                    window_start=meeting.start,
                    window_end=meeting.start + timedelta(days=30),
                )
            )
            duration = meeting.end - meeting.start
            exceptions += [
                OccurrenceException(meeting=meeting, recurrence_id=starts[1], cancelled=True),
                OccurrenceException(
                    meeting=meeting,
                    recurrence_id=starts[2],
                    start=starts[2] + timedelta(hours=2),
                    end=starts[2] + timedelta(hours=2) + duration,
                ),
            ]
        OccurrenceException.objects.bulk_create(exceptions)
    with connection.cursor() as cursor:
        for table in ("meetings_meeting", "meetings_attendee", "meetings_occurrenceexception"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    owner = User.objects.select_related("membership__agency").get(pk=owner.pk)
    return services.feed_token_create(actor=owner)


# --- In process -------------------------------------------------------------------------------


def timed(call: Callable[[], object], before: Callable[[], object], samples: int) -> list[float]:
    call()  # connections, imports, first plans
    found = []
    for _ in range(samples):
        before()
        began = time.perf_counter()
        call()
        found.append((time.perf_counter() - began) * 1000)
    return found


def measure_in_process(feed: Any, samples: int) -> dict[str, Any]:
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from meetings import feeds

    token = feeds.token_of(feed)

    def pipeline() -> bytes:
        now = timezone.now()
        found = require(feeds.feed_token_lookup(token), "the feed's token opens nothing")
        plan = feeds.feed_plan(found, now=now)
        fingerprint = feeds.feed_fingerprint(plan)
        return feeds.feed_body(plan, fingerprint)[0]

    def everything_cold() -> None:
        cache.clear()
        feeds.clear_local_caches()

    def bytes_cold() -> None:
        # What a change to one meeting costs: the feed's bytes are gone, each event's are not.
        now = timezone.now()
        found = require(feeds.feed_token_lookup(token), "the feed's token opens nothing")
        fingerprint = feeds.feed_fingerprint(feeds.feed_plan(found, now=now))
        cache.delete(f"feed:body:{fingerprint}")
        feeds._local_bodies.clear()

    body = pipeline()
    events = body.count(b"BEGIN:VEVENT")
    masters = len(set(re.findall(rb"\r\nUID:([^\r]+)", body)))
    results = {
        "cold": summary(timed(pipeline, everything_cold, samples)),
        "reassembled": summary(timed(pipeline, bytes_cold, samples)),
        "warm": summary(timed(pipeline, lambda: None, samples * 5)),
        "bytes": len(body),
        "vevents": events,
        "meetings_in_feed": masters,
    }
    counts = {}
    for name, before in (("cold", everything_cold), ("reassembled", bytes_cold), ("warm", None)):
        if before:
            before()
        with CaptureQueriesContext(connection) as queries:
            pipeline()
        counts[name] = len(queries.captured_queries)
    results["queries"] = counts
    results["warm_speedup"] = results["cold"]["p50_ms"] / results["warm"]["p50_ms"]
    results["reassembled_speedup"] = results["cold"]["p50_ms"] / results["reassembled"]["p50_ms"]
    return results


# --- Servers and load -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen[bytes], path: str = "/") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def load_rate(
    port: int, path: str, headers: dict[str, str], duration: float, connections: int
) -> dict[str, float]:
    """Requests per second over ``duration`` seconds with ``connections`` keep-alive clients."""
    if shutil.which("wrk"):
        argv = [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
        ]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        out = subprocess.run(  # noqa: S603 - our own argv
            [*argv, f"http://127.0.0.1:{port}{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"rps": rate, "non_2xx_3xx": int(errors.group(1)) if errors else 0, "tool": "wrk"}
    done, stop = [0] * connections, time.monotonic() + duration

    def worker(index: int) -> None:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            client.request("GET", path, headers=headers)
            client.getresponse().read()
            done[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"rps": sum(done) / (time.monotonic() - began), "non_2xx_3xx": 0, "tool": "python"}


def start_gunicorn(port: int, log_dir: Path) -> subprocess.Popen[bytes]:
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="visio_broker.settings",
        DEBUG="false",
        SITE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    argv = [
        *(sys.executable, "-m", "gunicorn", "visio_broker.wsgi:application"),
        f"--bind=127.0.0.1:{port}",
        "--workers=2",
        "--worker-class=gthread",
        "--threads=4",
        "--no-control-socket",
        "--logger-class=visio_broker.gunicorn_logging.RedactingLogger",
        f"--access-logfile={os.devnull}",
        f"--error-logfile={log_dir / 'gunicorn-error.log'}",
    ]
    return subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603


def start_radicale(port: int, store: Path) -> subprocess.Popen[bytes]:
    config = store.parent / "radicale.conf"
    config.write_text(
        "[server]\n"
        f"hosts = 127.0.0.1:{port}\n"
        "max_connections = 20\n"
        "[auth]\ntype = none\n"
        "[rights]\ntype = owner_only\n"
        "[storage]\n"
        f"filesystem_folder = {store}\n"
        "[web]\ntype = none\n"
        "[logging]\nlevel = warning\n",
        encoding="utf-8",
    )
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "radicale", "--config", str(config)],
        cwd=ROOT,
        start_new_session=True,
    )


def export_to_radicale(body: bytes, store: Path) -> int:
    """Our feed's events, one item per UID (master and overrides) with its VTIMEZONE, as a
    Radicale calendar collection /bench/feed/ on the filesystem."""
    shutil.rmtree(store, ignore_errors=True)
    collection = store / "collection-root" / "bench" / "feed"
    collection.mkdir(parents=True)
    (collection / ".Radicale.props").write_text(
        json.dumps({"tag": "VCALENDAR", "D:displayname": "bench"}), encoding="utf-8"
    )
    text = body.decode()
    zones = {
        m.group(1): m.group(0)
        for m in re.finditer(
            r"BEGIN:VTIMEZONE\r\nTZID:([^\r]+)\r\n.*?END:VTIMEZONE\r\n", text, re.S
        )
    }
    items: dict[str, list[str]] = {}
    for block in re.findall(r"BEGIN:VEVENT\r\n.*?END:VEVENT\r\n", text, re.S):
        uid = re.search(r"\r\nUID:([^\r]+)", "\r\n" + block).group(1)  # type: ignore[union-attr]
        items.setdefault(uid, []).append(block)
    for n, blocks in enumerate(items.values()):
        tzids = set(re.findall(r";TZID=([^:;]+)", "".join(blocks)))
        content = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Visio Broker//bench//EN\r\n"
            + "".join(zones[tzid] for tzid in sorted(tzids))
            + "".join(blocks)
            + "END:VCALENDAR\r\n"
        )
        (collection / f"event-{n}.ics").write_text(content, encoding="utf-8", newline="")
    return len(items)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def measure_servers(feed: Any, duration: float, connections: int) -> dict[str, Any]:
    from meetings import feeds

    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    path = f"/feeds/{feeds.token_of(feed)}.ics"
    results: dict[str, Any] = {}
    port = free_port()
    server = start_gunicorn(port, log_dir)
    try:
        wait_for(port, server)
        status, headers, body = get(port, path)
        require(status == 200 or None, f"the feed answered {status}")
        etag = headers["ETag"]
        revalidated = get(port, path, {"If-None-Match": etag})[0]
        require(revalidated == 304 or None, f"the conditional request answered {revalidated}")
        # Both workers warm: caches, connections, code paths.
        for target, extra in (("/healthz", {}), (path, {"If-None-Match": etag}), (path, {})):
            load_rate(port, target, extra, 2, connections)
        rounds = []
        for _ in range(2):
            rounds.append(
                {
                    "healthz": load_rate(port, "/healthz", {}, duration, connections),
                    "not_modified": load_rate(
                        port, path, {"If-None-Match": etag}, duration, connections
                    ),
                    "full_feed": load_rate(port, path, {}, duration, connections),
                }
            )
        for name in ("healthz", "not_modified", "full_feed"):
            results[name] = {
                "rps": statistics.fmean(r[name]["rps"] for r in rounds),
                "rounds": [r[name]["rps"] for r in rounds],
                "non_2xx_3xx": sum(r[name]["non_2xx_3xx"] for r in rounds),
                "tool": rounds[0][name]["tool"],
            }
        results["feed_bytes"] = len(body)
    finally:
        stop(server)

    store = log_dir / "radicale"
    items = export_to_radicale(body, store / "collections")
    port = free_port()
    radicale = start_radicale(port, store / "collections")
    try:
        wait_for(port, radicale)
        status, _headers, served = get(port, "/bench/feed/", {"Authorization": BASIC_AUTH})
        require(status == 200 or None, f"Radicale answered {status}")
        uids = set(re.findall(rb"\nUID:([^\r\n]+)", served))
        require(len(uids) == items or None, f"Radicale serves {len(uids)} of {items} events")
        load_rate(port, "/bench/feed/", {"Authorization": BASIC_AUTH}, 2, connections)
        rates = [
            load_rate(port, "/bench/feed/", {"Authorization": BASIC_AUTH}, duration, connections)
            for _ in range(2)
        ]
        results["radicale"] = {
            "rps": statistics.fmean(r["rps"] for r in rates),
            "rounds": [r["rps"] for r in rates],
            "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in rates),
            "items": items,
            "bytes": len(served),
            "version": subprocess.run(
                [sys.executable, "-m", "radicale", "--version"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip(),
        }
    finally:
        stop(radicale)
    results["not_modified_vs_healthz"] = results["not_modified"]["rps"] / results["healthz"]["rps"]
    results["full_feed_vs_radicale"] = results["full_feed"]["rps"] / results["radicale"]["rps"]
    return results


# --- Report -----------------------------------------------------------------------------------


def require(value: Any, problem: str) -> Any:
    """``value`` when it is something; stops the benchmark naming the problem otherwise."""
    if value is None:
        raise SystemExit(f"bench: {problem}")
    return value


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_table(local: dict[str, Any], served: dict[str, Any]) -> list[str]:
    cold, warm = local["cold"]["p50_ms"], local["warm"]["p50_ms"]
    ratio_304, ratio_radicale = served["not_modified_vs_healthz"], served["full_feed_vs_radicale"]
    rows = [
        (
            "cold render (all caches empty)",
            f"{cold:.1f} ms",
            f"≤ {TARGETS['cold_ms']:.0f} ms",
            cold <= TARGETS["cold_ms"],
        ),
        (
            "re-assembly (events cached)",
            f"{local['reassembled']['p50_ms']:.1f} ms",
            f"×{local['reassembled_speedup']:.1f} faster than cold",
            None,
        ),
        (
            "warm (nothing changed)",
            f"{warm:.2f} ms",
            f"×{local['warm_speedup']:.0f} faster than cold, ≥ ×{TARGETS['warm_speedup']:.0f}",
            local["warm_speedup"] >= TARGETS["warm_speedup"],
        ),
        ("/healthz under gunicorn", f"{served['healthz']['rps']:.0f} req/s", "", None),
        (
            "feed 304 under gunicorn",
            f"{served['not_modified']['rps']:.0f} req/s",
            f"×{ratio_304:.2f} of /healthz, ≥ ×{TARGETS['not_modified_vs_healthz']}",
            ratio_304 >= TARGETS["not_modified_vs_healthz"],
        ),
        ("full feed under gunicorn", f"{served['full_feed']['rps']:.1f} req/s", "", None),
        (
            "Radicale, same 500 events",
            f"{served['radicale']['rps']:.1f} req/s",
            f"ours ×{ratio_radicale:.1f} Radicale's, > ×1",
            ratio_radicale > TARGETS["vs_radicale"],
        ),
    ]
    missed = []
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':<{width}}  {'value':>14}  target")
    print("-" * (width + 64))
    for label, value, target, met in rows:
        mark = "" if met is None else f": {verdict(met)}"
        print(f"{label:<{width}}  {value:>14}  {target}{mark}")
        if met is False:
            missed.append(label)
    queries = local["queries"]
    print(
        f"feed: {local['meetings_in_feed']} meetings, {local['vevents']} VEVENTs, "
        f"{local['bytes'] / 1024:.0f} KiB; queries cold/re-assembled/warm: "
        f"{queries['cold']}/{queries['reassembled']}/{queries['warm']}; "
        f"load: {served['healthz']['tool']}; {served['radicale']['version']} "
        f"({served['radicale']['items']} items)"
    )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="timed renders per measure")
    parser.add_argument("--duration", type=float, default=5, help="seconds per load round")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    began = time.perf_counter()
    ensure_database()
    import django

    django.setup()
    from django.core.cache import cache
    from django.db import connection

    cache.clear()  # BENCH_REDIS_URL: this benchmark's own database
    feed = load()
    connection.close()
    local = measure_in_process(feed, args.samples)
    if local["meetings_in_feed"] != MEETINGS:
        raise SystemExit(f"bench: the feed holds {local['meetings_in_feed']} meetings")
    served = measure_servers(feed, args.duration, args.connections)
    print()
    missed = print_table(local, served)
    elapsed = time.perf_counter() - began
    print(f"bench: done in {elapsed:.0f} s" + (f"; missed: {', '.join(missed)}" if missed else ""))

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server_version = cursor.fetchone()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "postgresql": server_version,
        "database": DATABASE_URL.rsplit("/", 1)[-1],
        "meetings": MEETINGS,
        "recurring": RECURRING,
        "zones": list(ZONES),
        "targets": TARGETS,
        "in_process": local,
        "under_gunicorn": served,
        "missed": missed,
        "elapsed_s": round(elapsed, 1),
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"bench: results written to {OUT.relative_to(ROOT)}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
