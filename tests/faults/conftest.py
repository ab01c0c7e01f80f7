"""Fault tests on real parts: a throwaway Redis, Celery workers and beat in subprocesses, the
test database shared with them (transactional tests commit for real) and an SMTP sink.

Nothing here touches the machine's shared services: every process has its own loopback port
and is stopped by PID in teardown, whether the test passed or not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.process_harness import CeleryProcesses, ThrowawayRedis, celery_env, publishing_to
from tests.process_harness import database_url as url_of
from tests.smtp_sink import SmtpSink, running_smtp_sink


@pytest.fixture
def fault_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    redis = ThrowawayRedis(workdir=tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def fault_sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as sink:
        yield sink


@pytest.fixture
def celery_processes(
    transactional_db: None, fault_redis: ThrowawayRedis, fault_sink: SmtpSink, tmp_path: Path
) -> Iterator[CeleryProcesses]:
    """Workers and beat on the test database; stopped before the database is flushed."""
    env = celery_env(
        database=url_of(connection.settings_dict), broker=fault_redis.url, smtp_port=fault_sink.port
    )
    processes = CeleryProcesses(workdir=tmp_path, env=env)
    try:
        yield processes
    finally:
        processes.stop_all()
        print(processes.logs())  # shown by pytest when the test failed


@pytest.fixture
def publish_to_fault_broker(fault_redis: ThrowawayRedis) -> Iterator[ThrowawayRedis]:
    """This process's relays publish to the throwaway Redis too."""
    with publishing_to(fault_redis.url):
        yield fault_redis


def message_id_counts(sink: SmtpSink) -> Counter[str]:
    return Counter(str(mail.message["Message-ID"]) for mail in sink.messages)
