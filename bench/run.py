"""Benchmarks for `make bench`: free/busy and find-a-time at 10k and 100k meetings, then the
benchmarks of FOLLOW_UPS, each in its own process: calendar feeds (bench/feeds.py), join-token
minting (bench/tokens.py), the join endpoint under gunicorn (bench/join.py), reminders
(bench/reminders.py) and the REST API under gunicorn (bench/api.py, on the 100,000 meetings left
loaded); --no-feeds, --no-tokens, --no-join, --no-reminders, --no-api skip them.

Uses its own PostgreSQL database (BENCH_DATABASE_URL, default visio_bench on the local server),
created if missing, migrated, emptied and loaded with synthetic data (bench/synthetic.py). Each
size is measured against baselines taken in the same run (a `SELECT 1` round trip and an indexed
single-row ORM read), so the ratios say something on any machine. Prints a table and writes
var/bench/results.json.

    .venv/bin/python bench/run.py [--sizes 10000,100000] [--samples 100] [--strict]
    .venv/bin/python bench/run.py join [--strict]   (one follow-up alone: feeds, tokens, join …)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/visio_bench"
TARGETS_MS = {"freebusy": 50.0, "find_a_time": 150.0}  # p50 at 100k meetings (issue 3)
# Run after the free/busy measures, each in its own process: script, what it measures.
FOLLOW_UPS = {
    "feeds": ("bench/feeds.py", "calendar feeds, issue 6"),
    "tokens": ("bench/tokens.py", "join-token minting in process, issue 4"),
    "join": ("bench/join.py", "join endpoint under gunicorn, issue 4"),
    "reminders": ("bench/reminders.py", "10,000 due reminders by two Celery workers, issue 5"),
    "api": ("bench/api.py", "REST API under gunicorn at 100,000 meetings, issue 7"),
}
FREEBUSY_PEOPLE = 50
REQUIRED, OPTIONAL = 5, 3
PARIS = ZoneInfo("Europe/Paris")

sys.path.insert(0, str(ROOT))
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visio_broker.settings")
# Measure what production runs: no query log kept in memory.
os.environ["DEBUG"] = "false"


def ensure_database() -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(DATABASE_URL)
    name = params.pop("dbname")
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"bench: created database {name}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        check=True,
        env=os.environ.copy(),
    )


def vacuum() -> None:
    """What autovacuum would have done by now. The benchmarks replace their rows on every run
    (bench/api.py deletes thousands of meetings with their rooms and attendees), and a
    PostgreSQL without autovacuum, as on the development machines, keeps the dead rows in the
    tables and indexes that requests read: the web join ran at 0.31× of /healthz before a
    VACUUM and 0.36× after it, same code."""
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def timed(call: Callable[[Any], object], inputs: list[Any], warmup: int = 3) -> list[float]:
    """Milliseconds per call, one call per input (inputs drawn beforehand, outside the clock)."""
    for argument in inputs[:warmup]:
        call(argument)
    found = []
    for argument in inputs[warmup:]:
        began = time.perf_counter()
        call(argument)
        found.append((time.perf_counter() - began) * 1000)
    return found


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean_ms": statistics.fmean(ordered),
        "samples": len(ordered),
    }


def next_monday(today: date) -> date:
    return today + timedelta(days=7 - today.weekday())


def explain_pairs_query(sql_text: str) -> dict[str, Any]:
    """Index names and sequential scans in the plan of the (person, meeting) pairs query."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql_text)
        plan = cursor.fetchone()[0][0]
    indexes: set[str] = set()
    seq_scans: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        if node.get("Node Type") == "Seq Scan":
            seq_scans.add(node.get("Relation Name", "?"))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return {
        "indexes": sorted(indexes),
        "seq_scans": sorted(seq_scans),
        "execution_ms": plan.get("Execution Time"),
    }


def measure(samples: int, rng: random.Random) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from agencies.models import User
    from bench.synthetic import USERS
    from meetings.freebusy import FreeBusy, find_a_time, freebusy

    users = {u.pk: u for u in User.objects.filter(pk__lte=USERS).only("pk", "email")}
    ids = list(users)
    monday = next_monday(timezone.now().astimezone(PARIS).date())
    week_start = datetime.combine(monday, datetime.min.time(), PARIS).astimezone(UTC)
    week_end = week_start + timedelta(days=7)

    def select_one(_: None) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def indexed_row(pk: int) -> None:
        User.objects.filter(pk=pk).values_list("email", flat=True).first()

    def one_freebusy(draw: tuple[User, list[str]]) -> dict[str, FreeBusy]:
        viewer, people = draw
        return freebusy(viewer=viewer, emails=people, start=week_start, end=week_end)

    def one_find(draw: tuple[User, list[str]]) -> None:
        viewer, people = draw
        find_a_time(
            viewer=viewer,
            required=people[:REQUIRED],
            optional=people[REQUIRED:],
            duration=timedelta(hours=1),
            first_day=monday,
            last_day=monday + timedelta(days=13),
            timezone="Europe/Paris",
        )

    def draws(count: int, people: int) -> list[tuple[User, list[str]]]:
        return [
            (users[rng.choice(ids)], [users[pk].email for pk in rng.sample(ids, people)])
            for _ in range(count + 3)
        ]

    results = {
        "select_1": summary(timed(select_one, [None] * (samples * 5 + 3))),
        "indexed_row": summary(timed(indexed_row, rng.choices(ids, k=samples * 5 + 3))),
        "freebusy": summary(timed(one_freebusy, draws(samples, FREEBUSY_PEOPLE))),
        "find_a_time": summary(timed(one_find, draws(samples, REQUIRED + OPTIONAL))),
    }
    # What a call reads and returns, counted apart: the query log slows calls down.
    intervals, query_counts = [], []
    for draw in draws(10, FREEBUSY_PEOPLE):
        with CaptureQueriesContext(connection) as queries:
            result = one_freebusy(draw)
        intervals.append(sum(len(found.busy) for found in result.values()))
        query_counts.append(len(queries.captured_queries))
    pairs_sql = next(q["sql"] for q in queries.captured_queries if "UNION ALL" in q["sql"])
    base = results["select_1"]["p50_ms"]
    row = results["indexed_row"]["p50_ms"]
    for name in ("freebusy", "find_a_time"):
        results[name]["x_select_1"] = results[name]["p50_ms"] / base
        results[name]["x_indexed_row"] = results[name]["p50_ms"] / row
    results["freebusy"]["busy_intervals_per_call"] = statistics.fmean(intervals)
    results["freebusy"]["queries_per_call"] = max(query_counts)
    results["pairs_query_plan"] = explain_pairs_query(pairs_sql)
    return results


def print_table(sizes: dict[int, dict[str, Any]]) -> None:
    header = f"{'meetings':>9} {'measure':<34} {'p50 ms':>8} {'p95 ms':>8} {'×SELECT 1':>10} "
    header += f"{'×row':>7}  target"
    print(header)
    print("-" * len(header))
    labels = {
        "select_1": "baseline: SELECT 1 round trip",
        "indexed_row": "baseline: indexed single-row read",
        "freebusy": f"freebusy, {FREEBUSY_PEOPLE} people, 1 week",
        "find_a_time": f"find_a_time, {REQUIRED}+{OPTIONAL} people, 2 weeks",
    }
    for size, result in sizes.items():
        for key, label in labels.items():
            entry = result[key]
            ratio = f"{'':>10} {'':>7}"
            if key in TARGETS_MS:
                ratio = f"{entry['x_select_1']:>10.0f} {entry['x_indexed_row']:>7.1f}"
            target = ""
            if key in TARGETS_MS:
                met = "met" if entry["p50_ms"] <= TARGETS_MS[key] else "MISSED"
                target = f"p50 ≤ {TARGETS_MS[key]:.0f} ms: {met}"
            print(
                f"{size:>9,} {label:<34} {entry['p50_ms']:>8.2f} {entry['p95_ms']:>8.2f} "
                f"{ratio}  {target}"
            )
        plan = result["pairs_query_plan"]
        print(
            f"{'':>9} pairs query plan: indexes {', '.join(plan['indexes']) or '-'}; "
            f"seq scans {', '.join(plan['seq_scans']) or 'none'}; "
            f"{result['freebusy']['queries_per_call']} queries per freebusy call, "
            f"{result['freebusy']['busy_intervals_per_call']:.0f} busy intervals"
        )
    ordered = list(sizes)
    if len(ordered) > 1:
        small, large = sizes[ordered[0]], sizes[ordered[-1]]
        growth = ", ".join(
            f"{key} p50 ×{large[key]['p50_ms'] / small[key]['p50_ms']:.2f}"
            for key in ("freebusy", "find_a_time")
        )
        print(f"growth {ordered[0]:,} → {ordered[-1]:,} meetings: {growth}")


def run_follow_up(name: str, *, strict: bool) -> int:
    """One benchmark of FOLLOW_UPS in its own process; its exit code."""
    script, _what = FOLLOW_UPS[name]
    follow_up = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(ROOT / script), *(["--strict"] if strict else [])], check=False
    )
    return follow_up.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="meeting counts, ascending")
    parser.add_argument("--samples", type=int, default=100, help="timed calls per measure")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    for name, (script, what) in FOLLOW_UPS.items():
        parser.add_argument(
            f"--{name}",
            action=argparse.BooleanOptionalAction,
            default=True,
            help=f"then run {script} ({what}) in its own process",
        )
    parser.add_argument(
        "only",
        nargs="?",
        choices=list(FOLLOW_UPS),
        help="run only this follow-up benchmark (no free/busy measures)",
    )
    args = parser.parse_args()
    if args.only:
        return run_follow_up(args.only, strict=args.strict)
    sizes = sorted(int(size) for size in args.sizes.split(","))

    began = time.perf_counter()
    ensure_database()
    import django

    django.setup()
    import psycopg
    from django.db import connection

    from bench import synthetic

    results: dict[int, dict[str, Any]] = {}
    with psycopg.connect(DATABASE_URL, autocommit=True) as loader:
        synthetic.reset(loader)
        synthetic.load_people(loader)
        loaded = 0
        for size in sizes:
            step_began = time.perf_counter()
            synthetic.load_meetings(loader, first=loaded + 1, last=size, seed=size / 10**7)
            loaded = size
            loader.execute("VACUUM ANALYZE")
            rows = synthetic.counts(loader)
            print(
                f"bench: {rows['meetings_meeting']:,} meetings, "
                f"{rows['meetings_attendee']:,} attendee rows, "
                f"{rows['meetings_occurrenceexception']:,} exceptions loaded in "
                f"{time.perf_counter() - step_began:.1f} s",
                flush=True,
            )
            connection.close()  # fresh statistics and plans for the new size
            draws = random.Random(size)  # noqa: S311 - reproducible samples, not secrets
            results[size] = measure(args.samples, draws)
            results[size]["rows"] = rows

    print()
    print_table(results)
    missed = [
        f"{key} at {sizes[-1]:,}"
        for key, limit in TARGETS_MS.items()
        if results[sizes[-1]][key]["p50_ms"] > limit
    ]
    elapsed = time.perf_counter() - began
    print(f"bench: done in {elapsed:.0f} s" + (f"; missed: {', '.join(missed)}" if missed else ""))

    out = ROOT / "var" / "bench" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "postgresql": server,
        "targets_p50_ms_at_largest": TARGETS_MS,
        "elapsed_s": round(elapsed, 1),
        "sizes": {str(size): result for size, result in results.items()},
    }
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"bench: results written to {out.relative_to(ROOT)}")
    failed = []
    for name in FOLLOW_UPS:
        if not getattr(args, name):
            continue
        print(flush=True)
        if run_follow_up(name, strict=args.strict) != 0:
            failed.append(name)
    if failed:
        print(f"bench: failed or missed: {', '.join(failed)}")
    return 1 if (args.strict and missed) or failed else 0


if __name__ == "__main__":
    sys.exit(main())
