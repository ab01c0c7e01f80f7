"""Calendar subscription feeds: tokens, what each feed holds, and the pieces of its HTTP answer.

Reads only; the writes (create, rotate, revoke, cache state) are services in meetings.services.

A feed answers from four layers, cheapest first:
- the token row alone: services bump ``FeedToken.generation`` with every write to what a feed
  shows; while it is the generation the stored fingerprint was taken at, in the same five-minute
  bucket (the window and the cancellation grace move by whole buckets), the stored ETag and
  Last-Modified hold and a conditional request gets its 304 after one query;
- a fingerprint of every row the bytes depend on (one query): it also catches what no service
  wrote (the admin, a data migration) at the next bucket;
- the feed's bytes cached by that fingerprint (process memory, then the shared cache);
- assembly by meetings.ical from per-event cached blocks (only changed events re-serialize).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import cast

from django.conf import settings
from django.core.cache import cache as shared_cache
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import translation
from django.utils.http import parse_http_date_safe
from django.utils.translation import gettext as _
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agencies.models import Agency, User
from meetings import ical
from meetings.ical import EventOptions
from meetings.models import (
    Attendee,
    FeedKind,
    FeedToken,
    Meeting,
    MeetingStatus,
    OccurrenceException,
    PartStat,
)
from meetings.selectors import overlapping

logger = logging.getLogger(__name__)

# What a feed covers: a quarter back, eighteen months ahead.
WINDOW_PAST = timedelta(days=90)
WINDOW_AHEAD = timedelta(days=548)
# A cancelled meeting stays (STATUS:CANCELLED) this long after its cancellation, so that
# clients polling every few hours see it cancelled rather than silently gone.
CANCELLED_GRACE = timedelta(days=30)

# Time-dependent parts of a feed (window edges, grace, VTIMEZONE years) move by whole buckets.
BUCKET_SECONDS = 300

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
CACHE_CONTROL = "private, max-age=300"
CONTENT_TYPE = "text/calendar; charset=utf-8"
BODY_CACHE_TIMEOUT = 24 * 3600
LOCAL_BODY_CACHE_SIZE = 16


# --- Tokens -----------------------------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_hex(32)


def token_of(feed: FeedToken) -> str:
    """The URL token: base64url of HMAC-SHA256(FEED_TOKEN_KEY, "pk:nonce"), 256 bits."""
    return _token_for(feed.pk, feed.nonce)


def _token_for(pk: int, nonce: str) -> str:
    mac = hmac.new(
        settings.FEED_TOKEN_KEY.encode(), f"{pk}:{nonce}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Every poll starts here, so it is one plain statement: the ORM's select_related compiles
# longer than PostgreSQL takes to answer. The owner is loaded only when the rows are read.
_LOOKUP_SQL = """
SELECT token.*, owner.is_active AS owner_active, agency.public_calendar_enabled AS published
FROM {token} AS token
LEFT JOIN {user} AS owner ON owner.id = token.user_id
LEFT JOIN {agency} AS agency ON agency.id = token.agency_id
WHERE token.token_hash = %s AND token.revoked_at IS NULL
"""


@cache
def _lookup_sql() -> str:
    quote = connection.ops.quote_name
    return _LOOKUP_SQL.format(
        token=quote(FeedToken._meta.db_table),
        user=quote(User._meta.db_table),
        agency=quote(Agency._meta.db_table),
    )


def feed_token_lookup(token: str) -> FeedToken | None:
    """The live feed a presented token opens, or None (bad, revoked, rotated, owner gone)."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    found = next(iter(FeedToken.objects.raw(_lookup_sql(), [token_hash(token)])), None)
    # The hash found the row; the HMAC proves the token was minted for this row and nonce.
    if found is None or not hmac.compare_digest(token_of(found), token):
        return None
    live = getattr(found, "owner_active" if found.kind == FeedKind.PERSONAL else "published")
    return found if live else None


@dataclass(frozen=True)
class FeedUrls:
    https: str
    webcal: str


def feed_urls(feed: FeedToken) -> FeedUrls:
    """The subscription URL in its two forms (``https`` follows SITE_URL's scheme)."""
    url = settings.SITE_URL + reverse("feed", kwargs={"token": token_of(feed)})
    return FeedUrls(https=url, webcal="webcal://" + url.split("://", 1)[1])


def personal_feed_of(user: User) -> FeedToken | None:
    return FeedToken.objects.filter(user=user, revoked_at__isnull=True).first()


def agency_feed_of(agency: Agency) -> FeedToken | None:
    return FeedToken.objects.filter(agency=agency, revoked_at__isnull=True).first()


@dataclass(frozen=True)
class FeedSection:
    """What a page shows of a feed: the live token, if any, and its URLs."""

    feed: FeedToken | None
    urls: FeedUrls | None


def personal_feed_section(user: User) -> FeedSection:
    feed = personal_feed_of(user)
    return FeedSection(feed, feed_urls(feed) if feed else None)


def agency_feed_section(agency: Agency) -> FeedSection:
    feed = agency_feed_of(agency)
    return FeedSection(feed, feed_urls(feed) if feed else None)


# --- What a feed holds ------------------------------------------------------------------------


def _taking_part(user: User) -> QuerySet[Meeting]:
    """The rows of ``selectors.meetings_of``, found through indexes.

    meetings_of's OR over EXISTS makes PostgreSQL scan the whole meetings table and, once the
    table is large, JIT-compile that plan (half a second at 100k meetings, on every poll); a
    UNION of the three ways of taking part reads three indexes.
    """
    co_organizes = Meeting.co_organizers.through.objects.filter(user=user).values("meeting_id")
    ids = (
        Attendee.objects.filter(user=user)
        .order_by()
        .values("meeting_id")
        .union(Meeting.objects.filter(organizer=user).order_by().values("pk"), co_organizes)
    )
    return Meeting.objects.filter(pk__in=ids)


def personal_feed_meetings(
    *, user: User, include_declined: bool, now: datetime
) -> QuerySet[Meeting]:
    """Meetings the user organizes, co-organizes or attends, inside the feed window.

    Never what the user may merely see (an agency admin's view of colleagues' meetings):
    a feed is the person's own calendar. Cancelled meetings stay for the grace period.
    """
    meetings = overlapping(_taking_part(user), now - WINDOW_PAST, now + WINDOW_AHEAD).filter(
        Q(status=MeetingStatus.SCHEDULED) | Q(updated_at__gte=now - CANCELLED_GRACE)
    )
    if not include_declined:
        declined = Attendee.objects.filter(
            meeting=OuterRef("pk"), user=user, partstat=PartStat.DECLINED
        )
        meetings = meetings.exclude(Exists(declined))
    return meetings


def agency_feed_meetings(*, agency: Agency, now: datetime) -> QuerySet[Meeting]:
    """The agency's scheduled meetings its organizers listed publicly, inside the window."""
    return overlapping(
        Meeting.objects.filter(
            host_agency=agency, listed_publicly=True, status=MeetingStatus.SCHEDULED
        ),
        now - WINDOW_PAST,
        now + WINDOW_AHEAD,
    )


def bucket_start(moment: datetime) -> datetime:
    """The start of ``moment``'s bucket: what a feed reads of the clock."""
    return moment - timedelta(
        seconds=int(moment.timestamp()) % BUCKET_SECONDS, microseconds=moment.microsecond
    )


def validators_still_hold(feed: FeedToken, *, now: datetime) -> bool:
    """No service wrote to what the feed shows, and the clock stayed in the bucket, since the
    stored fingerprint was taken: its ETag and Last-Modified hold without another look."""
    return bool(
        feed.etag
        and feed.fingerprint
        and feed.last_modified is not None
        and feed.checked_at is not None
        and feed.checked_generation == feed.generation
        and bucket_start(feed.checked_at) == bucket_start(now)
    )


# --- Validators in the shared cache -----------------------------------------------------------
#
# The poll that finds nothing new, without the database: the token's hash names an entry
# holding the feed's validators and the nonce its token was minted from, and a generation
# counter that every service write to the feed (or to the token) increments, in the
# transaction and again once it commits. An entry is good while its generation is the
# counter's and the clock is in the bucket it was stored in; a reader reads the counter before
# the rows, so a write committed meanwhile leaves the entry stale, never wrong. With Redis, the
# rate-limit counter and both keys are read in one round trip (``poll``); the embedded mode's
# file cache goes through Django's cache API.


@dataclass(frozen=True)
class CachedValidators:
    etag: str
    last_modified: datetime


def _key(name: str) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:feed:{name}"


def _validators_key(digest: str) -> str:
    return _key(f"ok:{digest}")


def _generation_key(digest: str) -> str:
    return _key(f"gen:{digest}")


@cache
@cache
def _redis_client(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def _redis() -> Redis | None:
    """A client of the cache's Redis; None in the embedded mode (file cache)."""
    return _redis_client(settings.REDIS_URL) if settings.REDIS_URL else None


# The feed cache only saves work: with Redis unreachable, feeds are served from the database,
# bookings go on, and cached validators expire by themselves (BUCKET_SECONDS) once it is back.
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def _redis_down(operation: str, exc: Exception) -> None:
    logger.warning("feeds: Redis unavailable during %s (%s)", operation, exc.__class__.__name__)


def cache_generation(feed: FeedToken) -> int:
    """The feed's counter, created at a random value (a flushed cache never repeats one);
    -1 when Redis is unreachable (nothing is then remembered)."""
    try:
        return _cache_generation(feed)
    except _REDIS_DOWN as exc:
        _redis_down("cache_generation", exc)
        return -1


def _cache_generation(feed: FeedToken) -> int:
    key, start = _generation_key(feed.token_hash), secrets.randbits(62)
    client = _redis()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        pipe.set(key, start, nx=True)
        pipe.get(key)
        value = pipe.execute()[1]
    else:
        shared_cache.add(key, start, None)
        value = shared_cache.get(key)
    return int(value) if value is not None else -1


def forget_validators(digests: list[str]) -> None:
    """Entries of these token hashes no longer hold: now, and again once the write commits."""
    keys = [_generation_key(digest) for digest in digests]

    def bump() -> None:
        try:
            _bump()
        except _REDIS_DOWN as exc:
            _redis_down("forget_validators", exc)

    def _bump() -> None:
        client = _redis()
        if client is not None:
            # A missing counter starts again at 1: no entry holds a number that small.
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
            pipe.execute()
            return
        for key in keys:
            try:
                shared_cache.incr(key)
            except ValueError:
                pass

    if keys:
        bump()
        transaction.on_commit(bump)


def remember_validators(feed: FeedToken, *, generation: int, now: datetime) -> None:
    if not (feed.etag and feed.last_modified and feed.last_used_at) or generation < 0:
        return
    entry = json.dumps(
        [
            feed.pk,
            feed.nonce,
            feed.etag,
            feed.last_modified.timestamp(),
            feed.last_used_at.timestamp(),
            generation,
            bucket_start(now).timestamp(),
        ]
    )
    client = _redis()
    try:
        if client is not None:
            client.set(_validators_key(feed.token_hash), entry, ex=BUCKET_SECONDS)
        else:
            shared_cache.set(_validators_key(feed.token_hash), entry, BUCKET_SECONDS)
    except _REDIS_DOWN as exc:
        _redis_down("remember_validators", exc)


def _good_validators(
    token: str, entry: str | bytes | None, generation: str | bytes | int | None, now: datetime
) -> CachedValidators | None:
    if entry is None or generation is None:
        return None
    pk, nonce, etag, last_modified, last_used, stored_generation, bucket = json.loads(entry)
    if (
        stored_generation != int(generation)
        or bucket != bucket_start(now).timestamp()
        # last_used_at is written once a minute: then the database path runs.
        or now.timestamp() - last_used >= 60
        or not hmac.compare_digest(_token_for(pk, nonce), token)
    ):
        return None
    return CachedValidators(etag, datetime.fromtimestamp(last_modified, tz=UTC))


@dataclass(frozen=True)
class Poll:
    retry_after: int | None  # set when the address is over its rate limit
    validators: CachedValidators | None  # set when the cached validators still hold


def poll(request: HttpRequest, token: str, *, now: datetime, conditional: bool) -> Poll:
    """Count the request against its address and, for a conditional request, read the
    token's cached validators: one round trip to Redis."""
    window = settings.FEED_RATE_WINDOW
    started = int(now.timestamp()) // window * window
    rate_key = _key(f"rate:{client_address(request)}:{started}")
    digest = token_hash(token) if conditional and TOKEN_PATTERN.fullmatch(token) else None
    entry: str | bytes | None = None
    generation: str | bytes | int | None = None
    client = _redis()
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            pipe.incr(rate_key)
            pipe.expire(rate_key, window + 5, nx=True)
            if digest is not None:
                pipe.mget(_validators_key(digest), _generation_key(digest))
            results = pipe.execute()
        except _REDIS_DOWN as exc:
            # Fail open: no rate count and no cached validators; the database path answers.
            _redis_down("poll", exc)
            return Poll(None, None)
        count = int(results[0])
        if digest is not None:
            entry, generation = results[2]
    else:
        count = _count_in_cache(rate_key, window)
        if digest is not None:
            entry = shared_cache.get(_validators_key(digest))
            generation = shared_cache.get(_generation_key(digest))
    if count > settings.FEED_RATE_LIMIT:
        return Poll(max(1, started + window - int(now.timestamp())), None)
    return Poll(None, _good_validators(token, entry, generation, now) if digest else None)


def _count_in_cache(key: str, window: int) -> int:
    # incr fails on a missing key; add wins the race to create it, the losers incr again.
    try:
        return shared_cache.incr(key)
    except ValueError:
        return 1 if shared_cache.add(key, 1, window + 5) else shared_cache.incr(key)


@dataclass(frozen=True)
class FeedPlan:
    """Everything a feed's bytes depend on, before any row is read."""

    name: str
    language: str
    meetings: QuerySet[Meeting]
    options: EventOptions
    moment: datetime  # the bucket's start: the feed's "now"

    def options_for(self, meeting: Meeting) -> EventOptions:
        return self.options


def feed_plan(feed: FeedToken, *, now: datetime) -> FeedPlan:
    now = bucket_start(now)
    if feed.kind == FeedKind.AGENCY:
        agency = feed.agency
        assert agency is not None  # noqa: S101 - the check constraint guarantees it
        return FeedPlan(
            name=agency.name,
            language=agency.default_language,
            meetings=agency_feed_meetings(agency=agency, now=now),
            # The public calendar: titles and times only.
            options=EventOptions(full_details=False, alarm_minutes=()),
            moment=now,
        )
    user = feed.user
    assert user is not None  # noqa: S101 - the check constraint guarantees it
    with translation.override(user.language):
        name = _("%(name)s · Visio Broker") % {"name": user.display_name or user.email}
    return FeedPlan(
        name=name,
        language=user.language,
        meetings=personal_feed_meetings(user=user, include_declined=feed.include_declined, now=now),
        options=EventOptions(
            full_details=True, alarm_minutes=tuple(sorted(set(user.reminder_minutes)))
        ),
        moment=now,
    )


@cache
def _code_version() -> str:
    """Changes with the code that writes the bytes, so a deploy never serves stale bytes."""
    digest = hashlib.sha256(ical.FORMAT_VERSION.encode())
    for source in (ical.__file__, __file__):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()


# One round trip: the feed's rows are found once (a CTE) and summed up with their attendees and
# occurrence exceptions. Plain SQL that PostgreSQL and SQLite (embedded mode) both run.
_FINGERPRINT_SQL = """
WITH feed AS ({rows})
SELECT meetings.*, people.*, exceptions.*
FROM (
    SELECT count(*), coalesce(sum(id), 0), coalesce(sum(id * id), 0), max(updated_at) FROM feed
) AS meetings, (
    SELECT count(*), max(updated_at) FROM {attendee}
    WHERE meeting_id IN (SELECT id FROM feed)
) AS people, (
    SELECT count(*), max(updated_at) FROM {exception}
    WHERE meeting_id IN (SELECT id FROM feed)
) AS exceptions
"""


def feed_fingerprint(plan: FeedPlan) -> str:
    """A digest of what the feed's bytes depend on, read in one query over its rows.

    Any change to a meeting, attendee or occurrence exception moves its ``updated_at`` past
    every earlier one, so the latest ``updated_at`` of each table catches edits and answers;
    the count and the sums of the ids catch meetings entering or leaving the feed (the window
    moving on, a cancellation's grace ending, a declined invitation), and counts catch deleted
    attendees and exceptions. The date is in too: VTIMEZONE blocks cover years counted from
    today, and a renamed organizer (users carry no ``updated_at``) shows within a day.
    """
    rows_sql, params = plan.meetings.order_by().values("id", "updated_at").query.sql_with_params()
    sql = _FINGERPRINT_SQL.format(
        rows=rows_sql,
        attendee=connection.ops.quote_name(Attendee._meta.db_table),
        exception=connection.ops.quote_name(OccurrenceException._meta.db_table),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        summary = cursor.fetchone()
    return hashlib.sha256(
        repr(
            (
                _code_version(),
                settings.SITE_URL,
                plan.moment.date(),
                plan.name,
                plan.options,
                summary,
            )
        ).encode()
    ).hexdigest()


# What meetings.ical reads of a meeting and its people; a feed loads thousands of attendees,
# and a model instance per row (or whole user rows) would cost more than the rendering itself:
# the rows are read as tuples into the light records below.
_MEETING_FIELDS = (
    "pk",
    "uid",
    "title",
    "description",
    "start",
    "end",
    "timezone",
    "all_day",
    "rrule",
    "status",
    "sequence",
    "updated_at",
    "organizer__email",
    "organizer__display_name",
)
_ATTENDEE_FIELDS = (
    "meeting_id",
    "pk",
    "email",
    "display_name",
    "user__display_name",
    "role",
    "partstat",
)
_EXCEPTION_FIELDS = ("meeting_id", "recurrence_id", "cancelled", "start", "end")


class _Rows:
    """A prefetched relation as meetings.ical reads it: ``.all()``."""

    __slots__ = ("_items",)

    def __init__(self, items: list[object]) -> None:
        self._items = items

    def all(self) -> list[object]:
        return self._items


class _Person:
    __slots__ = ("display_name", "email")

    def __init__(self, email: str, display_name: str) -> None:
        self.email = email
        self.display_name = display_name


class _Attendee:
    """An attendee's row; the name already falls back on their user's."""

    __slots__ = ("display_name", "email", "partstat", "pk", "role")
    user = None  # nothing more to learn from the user: never a query per attendee

    def __init__(self, pk: int, email: str, display_name: str, role: str, partstat: str) -> None:
        self.pk = pk
        self.email = email
        self.display_name = display_name
        self.role = role
        self.partstat = partstat


class _Exception:
    __slots__ = ("cancelled", "end", "recurrence_id", "start")

    def __init__(
        self, recurrence_id: datetime, cancelled: bool, start: datetime | None, end: datetime | None
    ) -> None:
        self.recurrence_id = recurrence_id
        self.cancelled = cancelled
        self.start = start
        self.end = end


class _Meeting:
    """The attributes of a Meeting that meetings.ical reads for a feed's VEVENT."""

    __slots__ = (
        "all_day",
        "attendees",
        "description",
        "end",
        "exceptions",
        "organizer",
        "pk",
        "rrule",
        "sequence",
        "start",
        "status",
        "timezone",
        "title",
        "uid",
        "updated_at",
    )

    def __init__(self, row: tuple[object, ...]) -> None:
        (
            self.pk,
            self.uid,
            self.title,
            self.description,
            self.start,
            self.end,
            self.timezone,
            self.all_day,
            self.rrule,
            self.status,
            self.sequence,
            self.updated_at,
            email,
            name,
        ) = row
        self.organizer = _Person(email, name)  # type: ignore[arg-type]
        self.attendees = _Rows([])
        self.exceptions = _Rows([])


def feed_meetings_with_event_data(meetings: QuerySet[Meeting]) -> list[Meeting]:
    """``meetings`` with what their VEVENTs need, in three queries whatever their number.

    Light records rather than model instances (the feed reads 5,000 attendee rows): each has
    the attributes meetings.ical reads of a meeting, its organizer, attendees (by id) and
    occurrence exceptions (by recurrence id). An attendee's name falls back on their user's.
    """
    found = {row[0]: _Meeting(row) for row in meetings.order_by("pk").values_list(*_MEETING_FIELDS)}
    if not found:
        return []
    ids = meetings.order_by().values("pk")
    people = (
        Attendee.objects.filter(meeting__in=ids)
        .order_by("meeting_id", "pk")
        .values_list(*_ATTENDEE_FIELDS)
    )
    for meeting_id, pk, email, name, user_name, role, partstat in people:
        found[meeting_id].attendees._items.append(
            _Attendee(pk, email, name or user_name or "", role, partstat)
        )
    exceptions = (
        OccurrenceException.objects.filter(meeting__in=ids)
        .order_by("meeting_id", "recurrence_id")
        .values_list(*_EXCEPTION_FIELDS)
    )
    for meeting_id, recurrence_id, cancelled, start, end in exceptions:
        found[meeting_id].exceptions._items.append(_Exception(recurrence_id, cancelled, start, end))
    # Duck-typed: meetings.ical reads only the attributes above.
    return cast("list[Meeting]", list(found.values()))


def feed_render(plan: FeedPlan) -> bytes:
    """The feed's bytes, assembled from the per-event cache; a constant number of queries."""
    with translation.override(plan.language):
        return ical.calendar(
            name=plan.name,
            meetings=feed_meetings_with_event_data(plan.meetings),
            options_for=plan.options_for,
        )


class _LocalBodies:
    """The last few feeds' bytes in this process: a poll that finds nothing new reads no row."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bytes, str] | None:
        with self._lock:
            found = self._data.get(key)
            if found is not None:
                self._data.move_to_end(key)
            return found

    def put(self, key: str, found: tuple[bytes, str]) -> None:
        with self._lock:
            self._data[key] = found
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_local_bodies = _LocalBodies(LOCAL_BODY_CACHE_SIZE)
_local_gzip = _LocalBodies(LOCAL_BODY_CACHE_SIZE)


def clear_local_caches() -> None:
    """Forget this process's feed and event bytes (tests, benchmarks)."""
    _local_bodies.clear()
    _local_gzip.clear()
    ical.clear_local_cache()


def feed_body(plan: FeedPlan, fingerprint: str) -> tuple[bytes, str]:
    """The feed's bytes for ``fingerprint`` and their ETag: cached, else assembled."""
    key = f"feed:body:{fingerprint}"
    found = _local_bodies.get(key)
    if found is None:
        body = shared_cache.get(key)
        if body is None:
            body = feed_render(plan)
            shared_cache.set(key, body, BODY_CACHE_TIMEOUT)
        found = (body, etag_of(body))
        _local_bodies.put(key, found)
    return found


# --- HTTP pieces ------------------------------------------------------------------------------


def etag_of(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()}"'


def gzip_etag(etag: str) -> str:
    """The gzip representation's ETag: another representation, another validator."""
    return etag[:-1] + '-gzip"'


def gzipped(body: bytes, etag: str) -> bytes:
    """gzip with mtime 0: the same bytes give the same compressed bytes, in every process."""
    found = _local_gzip.get(etag)
    if found is None:
        found = (gzip.compress(body, compresslevel=6, mtime=0), etag)
        _local_gzip.put(etag, found)
    return found[0]


def accepts_gzip(request: HttpRequest) -> bool:
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _sep, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = params.strip().lower().removeprefix("q=").strip()
        if not params.strip().lower().startswith("q="):
            return True
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False


def not_modified(request: HttpRequest, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; else If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        current = {etag, gzip_etag(etag)}
        offered = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return bool(current & offered)
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    return since is not None and since >= int(last_modified.timestamp())


def client_address(request: HttpRequest) -> str:
    """The client's address; behind TRUSTED_PROXY_COUNT proxies, the one they saw."""
    proxies = settings.ALLAUTH_TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(request.META.get("REMOTE_ADDR", ""))
