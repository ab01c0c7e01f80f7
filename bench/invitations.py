"""Invitation throughput end to end (issue 5): outbox rows committed → Celery relay → SMTP sink.

Two prefork worker processes (concurrency 1 each) on a throwaway Redis of their own, an aiosmtpd
sink in this process, the bench database of bench/run.py. Times from the commit of the rows to
the last message at the sink; prints messages per second and writes var/bench/invitations.json.

    .venv/bin/python bench/invitations.py [--invitations 2000] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DEBUG"] = "false"

from bench.run import DATABASE_URL, ensure_database  # noqa: E402
from tests.process_harness import (  # noqa: E402
    CeleryProcesses,
    ThrowawayRedis,
    celery_env,
    publishing_to,
    wait_until,
)
from tests.smtp_sink import running_smtp_sink  # noqa: E402

OUT = ROOT / "var" / "bench" / "invitations.json"
INVITEES = 2
AGENCY_SLUG = "bench-invitations"


def load(invitations: int):  # type: ignore[no-untyped-def]
    """An organizer and invitations/2 meetings of two guests each; earlier runs' rows replaced."""
    from django.utils import timezone

    from agencies.models import Agency, Membership, Role, User
    from meetings.models import Attendee, Meeting

    agency, _created = Agency.objects.get_or_create(
        slug=AGENCY_SLUG,
        defaults={"name": "Bench invitations", "country": "FR", "default_timezone": "Europe/Paris"},
    )
    organizer, _created = User.objects.get_or_create(
        email="organizer@bench-invitations.example", defaults={"display_name": "Bench organizer"}
    )
    Membership.objects.get_or_create(
        user=organizer, defaults={"agency": agency, "role": Role.ORGANIZER}
    )
    Meeting.objects.filter(host_agency=agency).delete()  # their notifications go with them
    start = timezone.now() + timedelta(days=3)
    meetings = Meeting.objects.bulk_create(
        Meeting(
            uid=f"{uuid.uuid4()}@bench-invitations.example",
            title=f"Bench meeting {n}",
            start=start + timedelta(minutes=30 * n),
            end=start + timedelta(minutes=30 * n + 30),
            series_end=start + timedelta(minutes=30 * n + 30),
            timezone="Europe/Paris",
            host_agency=agency,
            organizer=organizer,
        )
        for n in range(invitations // INVITEES)
    )
    Attendee.objects.bulk_create(
        Attendee(meeting=meeting, email=f"guest{n}.{seat}@bench-invitations.example")
        for n, meeting in enumerate(meetings)
        for seat in range(INVITEES)
    )
    return meetings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invitations", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--strict", action="store_true", help="exit 1 when not all arrive")
    args = parser.parse_args()
    # A SIGTERM (timeout, CI) still runs the finally blocks that stop the processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    ensure_database()
    with tempfile.TemporaryDirectory(prefix="bench-invitations-") as workdir:
        redis = ThrowawayRedis(workdir=Path(workdir))
        redis.start()
        os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = redis.url
        import django

        django.setup()
        from django.db import transaction

        from meetings.invitations import invitations_scheduled
        from visio_broker.models import Notification, NotificationStatus

        meetings = load(args.invitations)
        rows = Notification.objects.filter(meeting__host_agency__slug=AGENCY_SLUG)
        with running_smtp_sink() as sink:
            env = celery_env(database=DATABASE_URL, broker=redis.url, smtp_port=sink.port)
            # Nothing to sweep in a healthy run: the sweeper would only add duplicate relays.
            env["OUTBOX_SWEEP_AFTER_SECONDS"] = "3600"
            processes = CeleryProcesses(workdir=Path(workdir), env=env)
            try:
                for _ in range(2):
                    processes.worker(pool="prefork", concurrency=1)
                with publishing_to(redis.url):
                    with transaction.atomic():
                        for meeting in meetings:
                            invitations_scheduled(meeting)
                        expected = rows.count()
                    # The clock starts at the commit: the after-commit relays are part of it.
                    began = time.perf_counter()
                    arrived = wait_until(
                        lambda: len(sink.messages) >= expected, timeout=args.timeout, interval=0.05
                    )
                    elapsed = time.perf_counter() - began
            finally:
                processes.stop_all()
                redis.stop()
            received = len(sink.messages)
            distinct = len({str(mail.message["Message-ID"]) for mail in sink.messages})
        sent = rows.filter(status=NotificationStatus.SENT).count()

    rate = received / elapsed if elapsed else 0.0
    print("Invitations end to end: commit → Celery relay → SMTP sink, 2 worker processes")
    print(f"  invitations {expected:,}, received {received:,} ({distinct:,} distinct Message-IDs)")
    print(f"  rows marked sent {sent:,}; {elapsed:.1f} s; {rate:.0f} messages/s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "invitations": expected,
        "received": received,
        "distinct_message_ids": distinct,
        "rows_sent": sent,
        "elapsed_s": round(elapsed, 2),
        "messages_per_s": round(rate, 1),
        "all_arrived": arrived,
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"bench: results written to {OUT.relative_to(ROOT)}")
    return 1 if args.strict and not (arrived and received == expected == distinct) else 0


if __name__ == "__main__":
    sys.exit(main())
