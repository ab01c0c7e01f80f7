"""Synthetic calendars for the benchmarks, loaded with set-based SQL (no ORM row by row).

Shape (per the issue): ~20,000 users in four agencies; meetings of 30-120 minutes on working
days, 08:00-17:00 Paris time, spread over six months either side of now; 10% recurring (weekly or
daily, with COUNT or endless, some with a cancelled or moved occurrence); 10 attendees per
meeting on average, the organizer being one of them as chair; 3% of meetings cancelled, 10% of
answers "declined". Everything is drawn from a seeded generator: a rerun loads the same data.
"""

from __future__ import annotations

from psycopg import Connection, sql

USERS = 20_000
AGENCIES = 4
TABLES = (
    "meetings_occurrenceexception",
    "meetings_meeting_co_organizers",
    "meetings_attendee",
    "meetings_meeting",
    "agencies_membership",
    "agencies_user",
    "agencies_agency",
)

_AGENCIES_SQL = """
INSERT INTO agencies_agency (id, slug, name, country, default_timezone, default_language,
                             email_domains, allowed_backend_countries, allow_shared_backends,
                             created_at, updated_at, public_calendar_enabled)
SELECT a, 'bench-' || a, 'Bench agency ' || a, (ARRAY['FR', 'DE', 'NL', 'BE'])[a],
       (ARRAY['Europe/Paris', 'Europe/Berlin', 'Europe/Amsterdam', 'Europe/Brussels'])[a],
       'en', '[]', '[]', true, now(), now(), false
FROM generate_series(1, %(agencies)s::int) AS a
"""

# Users whose id is a multiple of 5 are organizers: they are the ones who book.
_USERS_SQL = """
INSERT INTO agencies_user (id, password, is_superuser, email, display_name, timezone, language,
                           is_active, is_staff, date_joined, reminder_minutes)
SELECT u, '!', false, 'user' || u || '@bench' || (1 + u %% %(agencies)s) || '.example',
       'Bench User ' || u, 'Europe/Paris', 'en', true, false, now(), '[15]'
FROM generate_series(1, %(users)s::int) AS u
"""

_MEMBERSHIPS_SQL = """
INSERT INTO agencies_membership (role, created_at, updated_at, agency_id, user_id)
SELECT CASE WHEN u %% 5 = 0 THEN 'organizer' WHEN u %% 97 = 0 THEN 'admin' ELSE 'member' END,
       now(), now(), 1 + u %% %(agencies)s, u
FROM generate_series(1, %(users)s::int) AS u
"""

_MEETINGS_SQL = """
WITH drawn AS (
    SELECT id,
           (now() AT TIME ZONE 'Europe/Paris')::date - 182 + floor(random() * 365)::int AS day,
           make_time(8 + floor(random() * 8)::int, (floor(random() * 4) * 15)::int, 0) AS at,
           (ARRAY[30, 30, 45, 60, 60, 60, 90, 120])[1 + floor(random() * 8)::int] AS minutes,
           random() AS kind, 8 + floor(random() * 45)::int AS n, random() AS cancelled,
           5 * (1 + floor(random() * (%(users)s / 5))::int) AS organizer
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS id
), working AS (
    -- Saturdays and Sundays move back to Thursday and Friday.
    SELECT *, CASE WHEN extract(isodow FROM day) > 5 THEN day - 2 ELSE day END AS workday
    FROM drawn
), shaped AS (
    SELECT id, organizer, cancelled, workday + at AS local_start,
           CASE WHEN kind >= 0.085 AND kind < 0.1 THEN interval '15 minutes'
                ELSE minutes * interval '1 minute' END AS duration,
           CASE WHEN kind < 0.04 THEN 'weekly-count'
                WHEN kind < 0.07 THEN 'weekly-endless'
                WHEN kind < 0.085 THEN 'daily-count'
                WHEN kind < 0.1 THEN 'workdays-endless'
                ELSE 'once' END AS pattern,
           n, (ARRAY['MO', 'TU', 'WE', 'TH', 'FR', 'SA', 'SU'])[extract(isodow FROM workday)::int]
               AS byday
    FROM working
)
INSERT INTO meetings_meeting (id, uid, title, description, start, "end", timezone, all_day,
                              rrule, series_end, access_level, lobby_enabled, status, sequence,
                              created_at, updated_at, host_agency_id, organizer_id,
                              listed_publicly)
SELECT id, 'bench-' || id || '@bench.invalid', 'Bench meeting ' || id, '',
       local_start AT TIME ZONE 'Europe/Paris',
       (local_start AT TIME ZONE 'Europe/Paris') + duration,
       'Europe/Paris', false,
       CASE pattern WHEN 'weekly-count' THEN 'FREQ=WEEKLY;BYDAY=' || byday || ';COUNT=' || n
                    WHEN 'weekly-endless' THEN 'FREQ=WEEKLY;BYDAY=' || byday
                    WHEN 'daily-count' THEN 'FREQ=DAILY;COUNT=' || n
                    WHEN 'workdays-endless' THEN 'FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR'
                    ELSE '' END,
       -- End of the last occurrence, on the Paris wall clock; NULL for endless series.
       CASE pattern WHEN 'weekly-count'
                        THEN ((local_start + (n - 1) * interval '7 days')
                              AT TIME ZONE 'Europe/Paris') + duration
                    WHEN 'daily-count'
                        THEN ((local_start + (n - 1) * interval '1 day')
                              AT TIME ZONE 'Europe/Paris') + duration
                    WHEN 'once' THEN (local_start AT TIME ZONE 'Europe/Paris') + duration
                    END,
       'invite', true, CASE WHEN cancelled < 0.03 THEN 'cancelled' ELSE 'scheduled' END, 0,
       now(), now(), 1 + organizer %% %(agencies)s, organizer, false
FROM shaped
"""

_CHAIRS_SQL = """
INSERT INTO meetings_attendee (meeting_id, user_id, email, display_name, role, partstat,
                               rsvp_secret, created_at, updated_at)
SELECT m.id, u.id, u.email, u.display_name, 'chair', 'accepted', md5(m.id::text), now(), now()
FROM meetings_meeting AS m JOIN agencies_user AS u ON u.id = m.organizer_id
WHERE m.id BETWEEN %(first)s AND %(last)s
"""

# 1 to 17 invitees besides the chair (9 on average); a repeated draw is dropped by the
# (meeting, email) unique constraint.
_INVITEES_SQL = """
INSERT INTO meetings_attendee (meeting_id, user_id, email, display_name, role, partstat,
                               rsvp_secret, created_at, updated_at)
SELECT pick.meeting_id, u.id, u.email, u.display_name,
       CASE WHEN pick.r < 0.1 THEN 'optional' ELSE 'required' END,
       CASE WHEN pick.r < 0.55 THEN 'accepted' WHEN pick.r < 0.7 THEN 'tentative'
            WHEN pick.r < 0.9 THEN 'needs-action' ELSE 'declined' END,
       md5(pick.meeting_id::text || '-' || u.id), now(), now()
FROM (
    SELECT m.id AS meeting_id, 1 + floor(random() * %(users)s)::int AS user_id, random() AS r
    FROM meetings_meeting AS m
    CROSS JOIN LATERAL generate_series(1, 1 + (m.id * 7919) %% 17) AS g
    WHERE m.id BETWEEN %(first)s AND %(last)s
) AS pick
JOIN agencies_user AS u ON u.id = pick.user_id
ON CONFLICT DO NOTHING
"""

_CO_ORGANIZERS_SQL = """
INSERT INTO meetings_meeting_co_organizers (meeting_id, user_id)
SELECT DISTINCT ON (meeting_id) meeting_id, user_id
FROM meetings_attendee
WHERE role <> 'chair' AND meeting_id %% 20 = 0 AND meeting_id BETWEEN %(first)s AND %(last)s
ORDER BY meeting_id, id
"""

# The second occurrence (a week after the first, on the wall clock) of a third of the series is
# cancelled, of another third moved two hours later.
_EXCEPTIONS_SQL = """
INSERT INTO meetings_occurrenceexception (meeting_id, recurrence_id, cancelled, start, "end",
                                          created_at, updated_at)
SELECT id, second, id %% 3 = 0,
       CASE WHEN id %% 3 = 1 THEN second + interval '2 hours' END,
       CASE WHEN id %% 3 = 1 THEN second + interval '2 hours' + ("end" - start) END,
       now(), now()
FROM (
    SELECT id, start, "end",
           ((start AT TIME ZONE 'Europe/Paris') + interval '7 days') AT TIME ZONE 'Europe/Paris'
               AS second
    FROM meetings_meeting
    WHERE rrule <> '' AND id %% 3 <> 2 AND id BETWEEN %(first)s AND %(last)s
) AS series
"""


def reset(conn: Connection) -> None:
    tables = sql.SQL(", ").join(sql.Identifier(table) for table in TABLES)
    conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))


def load_people(conn: Connection, *, seed: float = 0.42) -> None:
    params = {"users": USERS, "agencies": AGENCIES}
    conn.execute("SELECT setseed(%s)", [seed])
    for statement in (_AGENCIES_SQL, _USERS_SQL, _MEMBERSHIPS_SQL):
        conn.execute(statement, params)
    _sync_sequences(conn, ("agencies_agency", "agencies_user"))


def load_meetings(conn: Connection, *, first: int, last: int, seed: float) -> None:
    """Meetings ``first``..``last`` (ids) with their attendees, co-organizers and exceptions."""
    params = {"first": first, "last": last, "users": USERS, "agencies": AGENCIES}
    conn.execute("SELECT setseed(%s)", [seed])
    for statement in (
        _MEETINGS_SQL,
        _CHAIRS_SQL,
        _INVITEES_SQL,
        _CO_ORGANIZERS_SQL,
        _EXCEPTIONS_SQL,
    ):
        conn.execute(statement, params)
    _sync_sequences(conn, ("meetings_meeting",))


def _sync_sequences(conn: Connection, tables: tuple[str, ...]) -> None:
    for table in tables:
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                "(SELECT coalesce(max(id), 1) FROM {}))"
            ).format(sql.Identifier(table)),
            [table],
        )


def counts(conn: Connection) -> dict[str, int]:
    found = {}
    for table in TABLES:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        found[table] = row[0] if row else 0
    return found
