"""The feed over HTTP: validators, conditional requests, HEAD, gzip, errors, rate limit, logs."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.http import http_date, parse_http_date
from django.utils.timezone import now
from django.views.debug import get_exception_reporter_class

from agencies.models import Role
from agencies.services import profile_update
from meetings import feeds
from meetings.models import FeedToken, Meeting
from meetings.services import (
    AttendeeSpec,
    attendee_respond,
    feed_token_create,
    meeting_cancel,
    meeting_update,
)
from tests.meetings.feeds_support import NOW, book, feed_path, fetch

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    feeds.clear_local_caches()
    yield
    feeds.clear_local_caches()


@pytest.fixture
def organizer(agency, make_member):
    return make_member(agency, Role.ORGANIZER, email="olga@test.gouv.example", display_name="Olga")


@pytest.fixture
def colleague(agency, make_member):
    return make_member(agency, Role.MEMBER, email="camille@test.gouv.example")


@pytest.fixture
def feed(organizer):
    book(organizer, "Budget review")
    return feed_token_create(actor=organizer)


def _fresh(feed: FeedToken) -> FeedToken:
    return FeedToken.objects.get(pk=feed.pk)


# --- A plain GET ------------------------------------------------------------------------------


def test_feed_answers_calendar_with_validators_and_private_caching(feed):
    response = fetch(feed)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert response["ETag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
    assert response["Cache-Control"] == "private, max-age=300"
    assert "Accept-Encoding" in response["Vary"]
    assert parse_http_date(response["Last-Modified"]) == int(NOW.timestamp())
    assert response["Content-Length"] == str(len(response.content))
    assert b"SUMMARY:Budget review" in response.content
    assert "Set-Cookie" not in response


def test_feed_etag_is_stable_across_requests_and_cache_clears(feed):
    first = fetch(feed)
    second = fetch(feed)
    feeds.clear_local_caches()  # a new process
    third = fetch(feed)
    cache.clear()  # and a flushed Redis: everything re-rendered
    feeds.clear_local_caches()
    fourth = fetch(feed)
    assert first.content == second.content == third.content == fourth.content
    assert first["ETag"] == second["ETag"] == third["ETag"] == fourth["ETag"]
    assert first["Last-Modified"] == fourth["Last-Modified"]


# --- Conditional requests ---------------------------------------------------------------------


def test_if_none_match_with_current_etag_is_304_without_body(feed):
    etag = fetch(feed)["ETag"]
    response = fetch(feed, if_none_match=etag)
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert response["Cache-Control"] == "private, max-age=300"
    # Weak comparison and lists, as RFC 9110 asks.
    assert fetch(feed, if_none_match=f'"other", W/{etag}').status_code == 304


def test_if_none_match_takes_precedence_over_if_modified_since(feed):
    first = fetch(feed)
    response = fetch(feed, if_none_match='"stale"', if_modified_since=first["Last-Modified"])
    assert response.status_code == 200
    assert response.content == first.content


def test_if_modified_since_at_or_after_last_modified_is_304(feed, clock):
    last_modified = fetch(feed)["Last-Modified"]
    assert fetch(feed, if_modified_since=last_modified).status_code == 304
    later = http_date(parse_http_date(last_modified) + 3600)
    assert fetch(feed, if_modified_since=later).status_code == 304
    earlier = http_date(parse_http_date(last_modified) - 1)
    assert fetch(feed, if_modified_since=earlier).status_code == 200


def test_last_modified_advances_after_a_cancellation(feed, organizer, clock):
    first = fetch(feed)
    # Within the same second as the first answer: Last-Modified still moves one second on.
    clock.shift(timedelta(milliseconds=100))
    meeting_cancel(actor=organizer, meeting=organizer.organized_meetings.get())
    second = fetch(feed, if_modified_since=first["Last-Modified"], if_none_match=first["ETag"])
    assert second.status_code == 200
    assert b"STATUS:CANCELLED" in second.content
    assert second["ETag"] != first["ETag"]
    assert parse_http_date(second["Last-Modified"]) == parse_http_date(first["Last-Modified"]) + 1
    assert fetch(feed, if_modified_since=first["Last-Modified"]).status_code == 200
    assert fetch(feed, if_modified_since=second["Last-Modified"]).status_code == 304


def test_last_modified_advances_when_a_meeting_leaves_the_feed(organizer, colleague, clock):
    meeting = book(organizer, "Sync", attendees=(colleague.email,))
    feed = feed_token_create(actor=colleague)
    first = fetch(feed)
    assert b"SUMMARY:Sync" in first.content
    clock.shift(timedelta(minutes=5))
    meeting_update(actor=organizer, meeting=meeting, attendees=[AttendeeSpec("x@example.org")])
    second = fetch(feed, if_modified_since=first["Last-Modified"])
    assert second.status_code == 200
    assert b"SUMMARY:Sync" not in second.content
    assert parse_http_date(second["Last-Modified"]) == int((NOW + timedelta(minutes=5)).timestamp())


def test_last_modified_never_moves_backwards_even_when_the_clock_does(feed, organizer, clock):
    first = fetch(feed)
    clock.move_to(NOW - timedelta(hours=2))
    book(organizer, "Added while the clock is late")
    second = fetch(feed)
    assert second["ETag"] != first["ETag"]
    assert parse_http_date(second["Last-Modified"]) == parse_http_date(first["Last-Modified"]) + 1


def test_unchanged_feed_keeps_its_last_modified_as_time_passes(feed, clock):
    first = fetch(feed)
    clock.shift(timedelta(hours=3))
    second = fetch(feed)
    assert second["Last-Modified"] == first["Last-Modified"]
    assert second["ETag"] == first["ETag"]


# --- HEAD, gzip, methods ----------------------------------------------------------------------


def test_head_answers_the_headers_of_get_without_body(feed):
    get = fetch(feed)
    head = Client().head(feed_path(feed))
    assert head.status_code == 200
    assert head.content == b""
    for name in ("Content-Type", "ETag", "Last-Modified", "Cache-Control", "Content-Length"):
        assert head[name] == get[name], name


def test_gzip_when_the_client_accepts_it(feed):
    plain = fetch(feed)
    zipped = fetch(feed, accept_encoding="br, gzip;q=0.8")
    again = fetch(feed, accept_encoding="gzip")
    assert zipped["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.content) == plain.content
    assert zipped.content == again.content  # mtime 0: deterministic bytes
    assert zipped["ETag"] == plain["ETag"][:-1] + '-gzip"'
    assert "Accept-Encoding" in zipped["Vary"]
    assert zipped["Content-Length"] == str(len(zipped.content))
    assert fetch(feed, accept_encoding="gzip", if_none_match=zipped["ETag"]).status_code == 304
    refused = fetch(feed, accept_encoding="gzip;q=0, identity")
    assert "Content-Encoding" not in refused
    assert refused.content == plain.content


def test_feed_refuses_other_methods(feed):
    assert Client().post(feed_path(feed)).status_code == 405


# --- Bad tokens and rate limit ----------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["A" * 43, "short", "x" * 44, "%00", "a.b"],
)
def test_bad_token_is_404_and_named_nowhere(feed, token):
    response = Client().get(f"/feeds/{token}.ics")
    assert response.status_code == 404
    assert token.encode() not in response.content


def test_rate_limit_answers_429_with_retry_after(feed, settings, clock):
    settings.FEED_RATE_LIMIT = 3
    settings.FEED_RATE_WINDOW = 600
    clock.move_to(NOW + timedelta(seconds=100))  # 100 s into a 600 s window
    client = Client(REMOTE_ADDR="192.0.2.7")
    statuses = [client.get(feed_path(feed)).status_code for _ in range(3)]
    statuses.append(client.get("/feeds/not-a-token.ics").status_code)
    assert statuses == [200, 200, 200, 429]
    limited = client.get(feed_path(feed))
    assert limited.status_code == 429
    assert limited["Retry-After"] == "500"
    # Another address is counted apart; the next window starts afresh.
    assert Client(REMOTE_ADDR="192.0.2.8").get(feed_path(feed)).status_code == 200
    clock.shift(timedelta(seconds=500))
    assert client.get(feed_path(feed)).status_code == 200


def test_rate_limit_counts_the_client_behind_trusted_proxies(feed, settings):
    settings.FEED_RATE_LIMIT = 1
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    first = proxy.get(feed_path(feed), headers={"X-Forwarded-For": "198.51.100.1"})
    second = proxy.get(feed_path(feed), headers={"X-Forwarded-For": "198.51.100.2"})
    third = proxy.get(feed_path(feed), headers={"X-Forwarded-For": "198.51.100.1"})
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)


# --- Writes per poll --------------------------------------------------------------------------


def test_last_used_is_written_at_most_once_a_minute(feed, clock):
    fetch(feed)
    first_use = _fresh(feed).last_used_at
    assert first_use == NOW
    clock.shift(timedelta(seconds=30))
    with CaptureQueriesContext(connection) as queries:
        fetch(feed)
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert _fresh(feed).last_used_at == first_use
    clock.shift(timedelta(seconds=31))
    fetch(feed)
    assert _fresh(feed).last_used_at == NOW + timedelta(seconds=61)


# --- Query counts -----------------------------------------------------------------------------


def _queries(feed: FeedToken, **headers: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = fetch(feed, **headers)
    return response.status_code, len(queries.captured_queries)


def test_feed_query_count_does_not_grow_with_meetings(organizer, colleague, make_member, agency):
    def load(owner, count: int) -> FeedToken:
        for n in range(count):
            book(
                organizer,
                f"Meeting {n}",
                attendees=(owner.email, f"guest{n}@example.org"),
                start=NOW + timedelta(days=1 + n % 20, hours=n % 7),
            )
        return feed_token_create(actor=owner)

    small = load(colleague, 5)
    large = load(make_member(agency, Role.MEMBER, email="big@test.gouv.example"), 50)
    counts = {}
    for name, feed in (("small", small), ("large", large)):
        cache.clear()
        feeds.clear_local_caches()
        cold = _queries(feed)
        feeds.clear_local_caches()
        cache.clear()
        rerender = _queries(feed)  # validators known, bytes not cached: assembled again
        warm = _queries(feed)
        not_modified = _queries(feed, if_none_match=fetch(feed)["ETag"])
        counts[name] = (cold, rerender, warm, not_modified)
    assert counts["small"] == counts["large"]
    (cold, rerender, warm, not_modified) = counts["large"]
    assert cold[0] == warm[0] == rerender[0] == 200 and not_modified[0] == 304
    # Token, fingerprint, meetings and their three prefetches, the validators' write (cold only).
    assert cold[1] <= 10
    # A poll while nothing was written: validators from the shared cache, no query at all.
    assert not_modified[1] == 0
    cache.clear()  # without them: the token row, then its stored fingerprint still holds
    assert _queries(large, if_none_match=fetch(large)["ETag"]) == (304, 0)
    cache.clear()
    assert _queries(large, if_none_match=fetch(large)["ETag"])[0] == 304


# --- When a feed looks at its rows again ------------------------------------------------------


def _rename(organizer, meeting, feed):
    meeting_update(actor=organizer, meeting=meeting, title="Renamed")


def _answer(organizer, meeting, feed):
    guest = meeting.attendees.get(email="guest@example.org")
    attendee_respond(actor="rsvp-link", attendee=guest, partstat="tentative")


def _cancel(organizer, meeting, feed):
    meeting_cancel(actor=organizer, meeting=meeting)


def _reminder(organizer, meeting, feed):
    profile_update(
        actor=organizer,
        display_name=organizer.display_name,
        timezone=organizer.timezone,
        language=organizer.language,
        reminder_minutes=[60],
    )


def _book_another(organizer, meeting, feed):
    book(organizer, "Another one")


@pytest.mark.parametrize("write", [_rename, _answer, _cancel, _reminder, _book_another])
def test_every_service_write_makes_the_next_poll_look_again(organizer, clock, write):
    meeting = book(organizer, "Budget review", attendees=("guest@example.org",))
    feed = feed_token_create(actor=organizer)
    first = fetch(feed)
    assert fetch(feed, if_none_match=first["ETag"]).status_code == 304
    clock.shift(timedelta(seconds=2))
    write(organizer, meeting, feed)
    second = fetch(feed, if_none_match=first["ETag"])
    assert second.status_code == 200
    assert second["ETag"] != first["ETag"]
    assert parse_http_date(second["Last-Modified"]) > parse_http_date(first["Last-Modified"])


def test_write_outside_the_services_shows_at_the_next_bucket(feed, organizer, clock):
    first = fetch(feed)
    clock.shift(timedelta(seconds=10))
    # As the admin or a data migration would: no service, so no generation bump.
    Meeting.objects.filter(organizer=organizer).update(title="Renamed", updated_at=now())
    assert fetch(feed, if_none_match=first["ETag"]).status_code == 304
    clock.shift(timedelta(seconds=feeds.BUCKET_SECONDS))
    second = fetch(feed, if_none_match=first["ETag"])
    assert second.status_code == 200
    assert b"SUMMARY:Renamed" in second.content


# --- Tokens never reach logs or error reports -------------------------------------------------


def test_token_absent_from_django_request_log_of_a_404(feed, caplog):
    token = feeds.token_of(feed)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        # Not a route at all: Django's resolver answers, the feed view never runs.
        assert Client().get(f"/feeds/{token}.ics/more").status_code == 404
        assert Client().get(f"/feeds/{token[:-1]}x.ics").status_code == 404
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 2
    for record in records:
        assert token not in record.getMessage()
        assert token[:-1] not in record.getMessage()
        assert "/feeds/[redacted]" in record.getMessage()


def test_token_absent_from_log_and_error_report_of_a_500(feed, caplog, monkeypatch):
    token = feeds.token_of(feed)

    def broken(plan, fingerprint):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(feeds, "feed_body", broken)
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get(feed_path(feed))
    assert response.status_code == 500
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert token not in record.getMessage()
    formatted = logging.Formatter("%(message)s").format(record)
    assert "renderer broke" in formatted and token not in formatted
    # What mail_admins would send: Django's report with the configured filter.
    request = record.request  # type: ignore[attr-defined]
    assert settings.DEFAULT_EXCEPTION_REPORTER_FILTER.endswith("RedactingExceptionReporterFilter")
    reporter = get_exception_reporter_class(request)(request, *record.exc_info, is_email=True)
    text, html = reporter.get_traceback_text(), reporter.get_traceback_html()
    assert "renderer broke" in text
    assert token not in text and token not in html
    assert "/feeds/[redacted].ics" in text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_token_absent_from_gunicorn_access_log(organizer, tmp_path, clock):
    # gunicorn runs on the real clock: so does this test.
    real_now = datetime.fromtimestamp(time_machine.escape_hatch.time.time(), UTC)
    clock.move_to(real_now)
    book(organizer, "Budget review", start=real_now + timedelta(days=1))
    feed = feed_token_create(actor=organizer)
    token = feeds.token_of(feed)
    port = _free_port()
    access_log = tmp_path / "access.log"
    env = os.environ.copy()
    db = settings.DATABASES["default"]
    env.update(
        DJANGO_SETTINGS_MODULE="visio_broker.settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        SITE_URL="http://testserver",
    )
    if db.get("PASSWORD"):
        env["DATABASE_URL"] = env["DATABASE_URL"].replace("@", f":{db['PASSWORD']}@", 1)
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "visio_broker.wsgi:application"),
            f"--bind=127.0.0.1:{port}",
            "--workers=1",
            "--no-control-socket",
            "--logger-class=visio_broker.gunicorn_logging.RedactingLogger",
            f"--access-logfile={access_log}",
            f"--error-logfile={tmp_path / 'error.log'}",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/feeds/{token}.ics", timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
            assert b"SUMMARY:Budget review" in answer.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/feeds/{token}.ics/x", timeout=10)  # noqa: S310
        assert missing.value.code == 404
    finally:
        server.terminate()
        server.wait(timeout=15)
    logged = access_log.read_text()
    assert token not in logged
    assert logged.count("/feeds/[redacted].ics") == 2
    assert token not in (tmp_path / "error.log").read_text()
