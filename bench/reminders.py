"""Reminder benchmark (issue 5): 10,000 reminders due in the same minute, sent by two Celery
worker processes on a throwaway Redis to an aiosmtpd sink within 60 seconds, no duplicates.

Also measures the per-message outbox path (one relay task per row, as invitations use):
messages/second from ``notification_enqueue`` to the sink. Uses the bench database
(BENCH_DATABASE_URL, as bench/run.py); redis-server runs on a free port and is stopped by PID.
Writes var/bench/reminders.json.

    .venv/bin/python bench/reminders.py [--reminders 10000] [--outbox 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REDIS_PORT = free_port()
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]
os.environ["EMAIL_DELIVERY"] = "smtp"

from bench.run import DATABASE_URL, ensure_database  # noqa: E402


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--outbox", type=int, default=2_000)
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("bench: redis-server not found")
        return 2
    from tests.smtp_sink import running_counting_sink

    workdir = tempfile.mkdtemp(prefix="bench-reminders-")
    redis = subprocess.Popen(  # noqa: S603 - a local binary found on PATH
        [
            redis_bin,
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        # In its own process, counting Message-IDs only: the sink must not be the bottleneck.
        with running_counting_sink() as sink:
            os.environ["EMAIL_HOST"], os.environ["EMAIL_PORT"] = sink.host, str(sink.port)
            ensure_database()
            import django

            django.setup()
            results = run(args, sink, workers)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "var" / "bench" / "reminders.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0 if results["reminders"]["ok"] else 1


def seed(count: int, due_in: timedelta):  # type: ignore[no-untyped-def]
    """``count`` reminders of one-off meetings of 100 outside attendees each, due now."""
    from django.db import connection
    from django.utils import timezone

    from agencies.models import Agency, User
    from meetings.models import Attendee, Meeting, Reminder

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE meetings_reminder, visio_broker_notification, meetings_attendee, "
            "meetings_meeting CASCADE"
        )
    agency, _ = Agency.objects.get_or_create(
        slug="bench-reminders",
        defaults={"name": "Bench reminders", "country": "FR", "default_timezone": "Europe/Paris"},
    )
    user, _ = User.objects.get_or_create(email="organizer@bench-reminders.example")
    now = timezone.now()
    start = now + timedelta(minutes=10)
    meetings = Meeting.objects.bulk_create(
        Meeting(
            uid=f"bench-reminder-{n}@bench",
            title=f"Bench meeting {n}",
            description="Agenda item",
            start=start,
            end=start + timedelta(hours=1),
            series_end=start + timedelta(hours=1),
            timezone="Europe/Paris",
            host_agency=agency,
            organizer=user,
        )
        for n in range((count + 99) // 100)
    )
    attendees = Attendee.objects.bulk_create(
        Attendee(meeting=meeting, email=f"p{n}.m{meeting.pk}@bench-reminders.example")
        for meeting in meetings
        for n in range(100)
    )[:count]
    key = f"{start:%Y%m%dT%H%M%SZ}"
    Reminder.objects.bulk_create(
        (
            Reminder(
                meeting_id=a.meeting_id,
                occurrence_key=key,
                attendee=a,
                offset_minutes=15,
                occurrence_start=start,
                due_at=now + due_in,
            )
            for a in attendees
        ),
        batch_size=2000,
    )
    return attendees


def start_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for n in range(2):
        workers.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "visio_broker",
                    "worker",
                    "--pool=solo",
                    "--loglevel=WARNING",
                    f"--hostname=bench{n}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=ROOT,
                env=os.environ.copy(),
            )
        )


def run(args, sink, workers):  # type: ignore[no-untyped-def]
    from django.db import transaction

    from meetings.models import Reminder, ReminderStatus
    from meetings.tasks import reminders_send_task
    from visio_broker.outbox import notification_enqueue

    seed(args.reminders, timedelta(seconds=0))
    start_workers(workers)
    time.sleep(3)  # workers up before the clock starts
    sink.clear()
    began = time.monotonic()
    reminders_send_task.delay()
    wait_for(lambda: sink.count() >= args.reminders, 120)
    elapsed = time.monotonic() - began
    time.sleep(2)  # anything sent twice would arrive now
    received = sink.message_ids()
    ids = Counter(received)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    sent_rows = Reminder.objects.filter(status=ReminderStatus.SENT).count()
    reminders = {
        "count": args.reminders,
        "received": len(received),
        "distinct_message_ids": len(ids),
        "duplicates": duplicates,
        "rows_sent": sent_rows,
        "seconds": round(elapsed, 2),
        "per_second": round(len(ids) / elapsed, 1),
        "target_seconds": 60,
    }
    reminders["ok"] = (
        len(ids) == args.reminders and duplicates == 0 and elapsed <= 60 and sent_rows == len(ids)
    )

    # The per-message path: one outbox row and one relay task (one SMTP connection) each.
    attendees = seed(args.outbox, timedelta(hours=1))
    rows = {r.attendee_id: r.pk for r in Reminder.objects.all()}
    sink.clear()
    began = time.monotonic()
    with transaction.atomic():
        for attendee in attendees:
            notification_enqueue(
                kind="reminder",
                recipient=attendee.email,
                meeting=attendee.meeting,
                payload={"reminder_id": rows[attendee.pk]},
                dedup_extra=f"bench:{attendee.pk}",
            )
    wait_for(lambda: sink.count() >= args.outbox, 300)
    elapsed = time.monotonic() - began
    outbox = {
        "count": args.outbox,
        "received": (delivered := sink.count()),
        "seconds": round(elapsed, 2),
        "per_second": round(delivered / elapsed, 1),
    }
    return {"database": DATABASE_URL.rsplit("@", 1)[-1], "reminders": reminders, "outbox": outbox}


if __name__ == "__main__":
    raise SystemExit(main())
