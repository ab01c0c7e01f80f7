"""REST representations of meetings: one read shape, separate write-side serializers."""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import EmptyResultSet, ObjectDoesNotExist
from django.db import connections
from django.db.models import CharField, IntegerField, QuerySet, Value
from django.urls import reverse
from django.utils import timezone as djtz
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from agencies.models import REMINDER_CHOICES_MINUTES, Agency, ApiKey, ApiScope, User
from agencies.reference import timezones
from agencies.selectors import Columns
from meetings.models import (
    AccessLevel,
    Attendee,
    AttendeeList,
    AttendeeRole,
    Meeting,
    MeetingStatus,
    PartStat,
)
from meetings.recurrence import Recurrence
from meetings.selectors import Occurrence, active_users_by_email, meetings_visible_to_agency
from meetings.services import MAX_ATTENDEES, AttendeeSpec
from rooms.models import BackendKind, MediaBackend, RoomReservation
from visio_broker.api import CompiledRows, InputSerializer, JsonBodySerializer
from visio_broker.errors import InvalidInput

# What an API key may do with a meeting, always all present in ``abilities``.
API_ABILITIES = ("view", "edit", "cancel", "issue_join_ticket")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def meetings_for_api(queryset: QuerySet[Meeting]) -> QuerySet[Meeting]:
    """``queryset`` with everything ``MeetingSerializer`` reads, in a constant number of queries."""
    return queryset.select_related("organizer", "reservation__backend").prefetch_related(
        "attendees", "co_organizers"
    )


# What a representation reads: columns of a meeting queryset, joined rows included.
_REPRESENTED_COLUMNS = (
    "id",
    "uid",
    "title",
    "description",
    "start",
    "end",
    "timezone",
    "all_day",
    "rrule",
    "access_level",
    "lobby_enabled",
    "listed_publicly",
    "reminder_minutes",
    "status",
    "sequence",
    "created_at",
    "updated_at",
    "organizer__email",
    "reservation__released_at",
    "reservation__backend__kind",
    "reservation__backend__name",
)
MeetingRow = tuple[Any, ...]


def meeting_rows(queryset: QuerySet[Meeting]) -> QuerySet[Meeting, MeetingRow]:
    """``queryset`` as the rows ``meeting_representations_of_rows`` renders, in one query:
    no model instances, only the columns shown."""
    return queryset.values_list(*_REPRESENTED_COLUMNS)


_AGENCY_MEETING_ROW = CompiledRows(
    lambda agency_id, pk: meeting_rows(
        meetings_visible_to_agency(agency=Agency(pk=agency_id)).filter(pk=pk)
    )
)


def agency_meeting_row(*, agency: Agency, pk: int) -> MeetingRow | None:
    """The ``meeting_rows`` row of meeting ``pk`` if ``agency`` sees it, else None."""
    rows = _AGENCY_MEETING_ROW.rows(agency.pk, pk)
    return rows[0] if rows else None


def meeting_row_key(row: MeetingRow) -> tuple[datetime, int]:
    """(start, id) of a ``meeting_rows`` row: the list's sort key, which its cursors hold."""
    return row[4], row[0]


def meetings_for_representation(queryset: QuerySet[Meeting]) -> QuerySet[Meeting]:
    """``queryset`` with the columns ``meeting_representations`` reads, joined in one query.

    The meetings it yields are for rendering only: other columns are deferred.
    """
    return queryset.select_related("organizer", "reservation__backend").only(
        *_REPRESENTED_COLUMNS[1:]
    )


def local_isoformat(moment: datetime, zone: str) -> str:
    """RFC 3339 with the offset of ``zone`` at that moment (2027-03-29T10:00:00+02:00)."""
    return moment.astimezone(ZoneInfo(zone)).isoformat()


def meeting_join_url_path(pk: int) -> str:
    return reverse("meeting_join", kwargs={"pk": pk})


def meeting_join_url(meeting: Meeting) -> str:
    return settings.SITE_URL + meeting_join_url_path(meeting.pk)


_SENTINEL_ID = 918273645546372819


def _join_url_around_id() -> tuple[str, str]:
    """What comes before and after the id in ``meeting_join_url``: reverse() once per page, not
    per meeting, around a sentinel id, which only digits match."""
    before, after = (settings.SITE_URL + meeting_join_url_path(_SENTINEL_ID)).split(
        str(_SENTINEL_ID)
    )
    return before, after


def api_abilities(meeting: Meeting, key: ApiKey | None) -> dict[str, bool]:
    """What ``key`` may do with ``meeting``: its scopes, narrowed by the meeting's state."""
    return _abilities(key, live=not meeting.is_cancelled)


def _abilities(key: ApiKey | None, *, live: bool) -> dict[str, bool]:
    if key is None:
        return dict.fromkeys(API_ABILITIES, False)
    write = key.has_scope(ApiScope.MEETINGS_WRITE)
    return {
        "view": key.has_scope(ApiScope.MEETINGS_READ),
        "edit": write and live,
        "cancel": write and live,
        "issue_join_ticket": key.has_scope(ApiScope.JOIN_ISSUE) and live,
    }


class AttendeeSerializer(JsonBodySerializer):
    """An attendee, read and written (one component: clients send back what they read)."""

    email = serializers.EmailField()
    name = serializers.CharField(
        source="display_name", max_length=150, required=False, allow_blank=True, default=""
    )
    role = serializers.ChoiceField(
        choices=AttendeeRole.values, required=False, default=AttendeeRole.REQUIRED
    )
    status = serializers.ChoiceField(
        source="partstat", choices=PartStat.values, read_only=True, help_text="Their answer."
    )

    @staticmethod
    def to_spec(data: dict[str, Any]) -> AttendeeSpec:
        # On PATCH (partial) DRF leaves the defaults out: apply them here.
        return AttendeeSpec(
            data["email"].lower(),
            data.get("display_name", ""),
            data.get("role", AttendeeRole.REQUIRED),
        )


class RoomSerializer(serializers.Serializer[Any]):
    provider = serializers.ChoiceField(choices=BackendKind.values)
    backend = serializers.CharField(help_text="Name of the media backend the room is placed on.")


class AbilitiesSerializer(serializers.Serializer[Any]):
    view = serializers.BooleanField()
    edit = serializers.BooleanField()
    cancel = serializers.BooleanField()
    issue_join_ticket = serializers.BooleanField()


class MeetingSerializer(serializers.ModelSerializer[Meeting]):
    """A meeting as the API shows it; pass ``context={"request": request}`` for ``abilities``."""

    start = serializers.SerializerMethodField(
        help_text="RFC 3339, with the offset of the meeting's time zone."
    )
    end = serializers.SerializerMethodField(
        help_text="RFC 3339, with the offset of the meeting's time zone."
    )
    recurrence = serializers.SerializerMethodField(
        help_text="RFC 5545 RRULE (without the RRULE: prefix), or null for a one-off meeting."
    )
    organizer = serializers.EmailField(source="organizer.email", read_only=True)
    co_organizers = serializers.SerializerMethodField()
    attendees = AttendeeSerializer(many=True, read_only=True)
    access = serializers.ChoiceField(
        source="access_level", choices=AccessLevel.values, read_only=True
    )
    lobby = serializers.BooleanField(source="lobby_enabled", read_only=True)
    join_url = serializers.SerializerMethodField(
        help_text="The meeting's join page (people sign in or wait in the lobby); not a token."
    )
    room = serializers.SerializerMethodField()
    abilities = serializers.SerializerMethodField()

    class Meta:
        model = Meeting
        fields = [
            "id",
            "uid",
            "title",
            "description",
            "start",
            "end",
            "timezone",
            "all_day",
            "recurrence",
            "organizer",
            "co_organizers",
            "attendees",
            "access",
            "lobby",
            "listed_publicly",
            "reminder_minutes",
            "status",
            "sequence",
            "join_url",
            "room",
            "abilities",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_start(self, meeting: Meeting) -> str:
        return local_isoformat(meeting.start, meeting.timezone)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_end(self, meeting: Meeting) -> str:
        return local_isoformat(meeting.end, meeting.timezone)

    def get_recurrence(self, meeting: Meeting) -> str | None:
        return meeting.rrule or None

    def get_co_organizers(self, meeting: Meeting) -> list[str]:
        return sorted(user.email for user in meeting.co_organizers.all())

    def get_join_url(self, meeting: Meeting) -> str:
        return meeting_join_url(meeting)

    @extend_schema_field(RoomSerializer(allow_null=True))
    def get_room(self, meeting: Meeting) -> dict[str, str] | None:
        try:
            reservation = meeting.reservation
        except ObjectDoesNotExist:
            return None
        if reservation.released_at is not None:
            return None
        return {"provider": reservation.backend.kind, "backend": reservation.backend.name}

    @extend_schema_field(AbilitiesSerializer)
    def get_abilities(self, meeting: Meeting) -> dict[str, bool]:
        request = self.context.get("request")
        key = getattr(request, "auth", None)
        return api_abilities(meeting, key if isinstance(key, ApiKey) else None)


# DRF's own field: MeetingSerializer's created_at / updated_at.
_TIMESTAMP = serializers.DateTimeField(read_only=True)


def _timestamps() -> Callable[[datetime], str]:
    """``_TIMESTAMP.to_representation``, with the current zone looked up once, not per value."""
    if str(api_settings.DATETIME_FORMAT).lower() != ISO_8601:
        return _TIMESTAMP.to_representation
    zone = djtz.get_current_timezone()

    def timestamp(value: datetime) -> str:
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return timestamp


def _people_query(meeting_ids: list[int]) -> QuerySet[Attendee, tuple[Any, ...]]:
    attendees = Attendee.objects.filter(meeting_id__in=meeting_ids).values_list(
        "meeting_id", "id", "email", "display_name", "role", "partstat"
    )
    co_organizers = Meeting.co_organizers.through.objects.filter(
        meeting_id__in=meeting_ids
    ).values_list(
        "meeting_id",
        Value(None, output_field=IntegerField()),
        "user__email",
        Value("", output_field=CharField()),
        Value("", output_field=CharField()),
        Value("", output_field=CharField()),
    )
    return attendees.order_by().union(co_organizers.order_by(), all=True)


_PEOPLE = CompiledRows(_people_query)


def _people_of(meeting_ids: list[int]) -> tuple[dict[int, list[Any]], dict[int, list[str]]]:
    """Attendees (in id order) and co-organizers' emails of these meetings, in one query."""
    attending: dict[int, list[Any]] = defaultdict(list)
    co_organizing: dict[int, list[str]] = defaultdict(list)
    for meeting_id, attendee_id, email, name, role, partstat in _PEOPLE.rows(meeting_ids):
        if attendee_id is None:
            co_organizing[meeting_id].append(email)
        else:
            attending[meeting_id].append((attendee_id, email, name, role, partstat))
    for rows in attending.values():
        rows.sort()  # Attendee.Meta.ordering
    return attending, co_organizing


def _row_of(meeting: Meeting) -> MeetingRow:
    """A meeting instance as a row of ``meeting_rows``."""
    try:
        reservation = meeting.reservation
    except ObjectDoesNotExist:
        reservation = None
    return (
        meeting.pk,
        meeting.uid,
        meeting.title,
        meeting.description,
        meeting.start,
        meeting.end,
        meeting.timezone,
        meeting.all_day,
        meeting.rrule,
        meeting.access_level,
        meeting.lobby_enabled,
        meeting.listed_publicly,
        meeting.reminder_minutes,
        meeting.status,
        meeting.sequence,
        meeting.created_at,
        meeting.updated_at,
        meeting.organizer.email,
        reservation.released_at if reservation else None,
        reservation.backend.kind if reservation else None,
        reservation.backend.name if reservation else None,
    )


def meeting_representations_of_rows(
    rows: Sequence[MeetingRow], key: ApiKey | None
) -> list[dict[str, Any]]:
    """``MeetingSerializer(meetings, many=True).data`` as plain dicts, from ``meeting_rows``:
    no DRF field machinery, attendees and co-organizers in one query (none for no rows).

    tests/api/test_api_representation.py holds it equal to the serializer.
    """
    if not rows:
        return []
    attending, co_organizing = _people_of([row[0] for row in rows])
    timestamp = _timestamps()
    join_before, join_after = _join_url_around_id()
    # Abilities depend on the key and on whether the meeting is cancelled, nothing else.
    live_abilities = _abilities(key, live=True)
    cancelled_abilities = _abilities(key, live=False)
    results = []
    for (
        pk,
        uid,
        title,
        description,
        start,
        end,
        zone,
        all_day,
        rrule,
        access_level,
        lobby_enabled,
        listed_publicly,
        reminder_minutes,
        status,
        sequence,
        created_at,
        updated_at,
        organizer_email,
        released_at,
        backend_kind,
        backend_name,
    ) in rows:
        cancelled = status == MeetingStatus.CANCELLED
        results.append(
            {
                "id": pk,
                "uid": uid,
                "title": title,
                "description": description,
                "start": local_isoformat(start, zone),
                "end": local_isoformat(end, zone),
                "timezone": zone,
                "all_day": all_day,
                "recurrence": rrule or None,
                "organizer": organizer_email,
                "co_organizers": sorted(co_organizing.get(pk, ())),
                "attendees": [
                    {"email": email, "name": name, "role": role, "status": partstat}
                    for _id, email, name, role, partstat in attending.get(pk, ())
                ],
                "access": access_level,
                "lobby": lobby_enabled,
                "listed_publicly": listed_publicly,
                "reminder_minutes": reminder_minutes,
                "status": status,
                "sequence": sequence,
                "join_url": f"{join_before}{pk}{join_after}",
                "room": (
                    {"provider": backend_kind, "backend": backend_name}
                    if backend_kind is not None and released_at is None
                    else None
                ),
                "abilities": dict(cancelled_abilities if cancelled else live_abilities),
                "created_at": timestamp(created_at),
                "updated_at": timestamp(updated_at),
            }
        )
    return results


# --- The same representation, built by PostgreSQL ------------------------------------------------
#
# On a list page, building dicts in Python and encoding them cost more than everything else
# together: PostgreSQL writes each meeting's JSON text instead, and the page joins the texts
# without parsing them. tests/api/test_api_representation.py holds them equal to the serializer.
# The texts are concatenated rather than made by json_build_object, which looks up the type of
# each of its arguments on every call and so cost twice as much.


def _object_sql(members: Sequence[tuple[str | None, str]]) -> str:
    """SQL for the text of a JSON object; ``members`` are (key, SQL for the JSON text of the
    value, never NULL), in order, or (None, SQL for a run of members written already, each
    with its leading comma: a stored column such as Meeting.api_json_head)."""
    parts = [
        value if key is None else f"'{',' if index else '{'}{json.dumps(key)}:' || {value}"
        for index, (key, value) in enumerate(members)
    ]
    return " || ".join([*parts, "'}'"])


def _string_sql(text: str) -> str:
    """SQL for the JSON text of ``text``, a string escaped by PostgreSQL (NULL stays NULL)."""
    return f"to_json({text})::text"


def _or_null_sql(value: str) -> str:
    return f"COALESCE({value}, 'null')"


def _local_time_sql(name: str, moment: str, zone: str) -> str:
    """Columns ``<name>_time`` and ``<name>_offset`` of the LATERAL ``local``: the local time of
    the timestamptz ``moment`` in ``zone``, and its UTC offset in seconds."""
    local = f"{moment} AT TIME ZONE {zone}"
    return (
        f"{local} AS {name}_time, "
        f"extract(epoch FROM ({local}) - ({moment} AT TIME ZONE 'UTC'))::int AS {name}_offset"
    )


def _isoformat_sql(name: str, *, zero_offset: str) -> str:
    """SQL for the JSON text of ``moment.astimezone(zone).isoformat()``, from the ``local``
    columns ``name`` of the moment: microseconds only when there are some, the seconds of the
    offset only when it has some (local mean time), ``zero_offset`` for +00:00."""
    local, offset = f"local.{name}_time", f"local.{name}_offset"
    return (
        f"""'"' || replace(to_char({local}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '')"""
        f" || CASE WHEN {offset} = 0 THEN '{zero_offset}'"
        f" ELSE CASE WHEN {offset} < 0 THEN '-' ELSE '+' END"
        f" || to_char(abs({offset}) / 3600, 'FM00')"
        f" || ':' || to_char(mod(abs({offset}) / 60, 60), 'FM00')"
        f" || CASE WHEN mod({offset}, 60) = 0 THEN ''"
        f" ELSE ':' || to_char(mod(abs({offset}), 60), 'FM00') END END || '\"'"
    )


@cache
def _meeting_json_sql(alias: str) -> str:
    """The query of ``meeting_json_rows``, after its ``page`` (start, id); its parameters are
    the page's, then those of ``constant``."""
    link_model = Meeting.co_organizers.through
    meeting = Columns.of(Meeting, "meeting")
    organizer = Columns.of(User, "organizer")
    co_organizer = Columns.of(User, "co_organizer")
    link = Columns.of(link_model, "link")
    attendee_list = Columns.of(AttendeeList, "attendee_list")
    reservation = Columns.of(RoomReservation, "reservation")
    backend = Columns.of(MediaBackend, "backend")
    # Python sorts the emails by code point; so does the "C" collation, whatever the database's.
    email = co_organizer.column("email")
    co_organizers = f"""(
        SELECT json_agg({email} ORDER BY {email} COLLATE "C")
        FROM {link.table} JOIN {co_organizer.table}
            ON {co_organizer.column("id")} = {link.column("user")}
        WHERE {link.column("meeting")} = {meeting.column("id")}
    )::text"""  # noqa: S608 - names from the models
    # The attendees' JSON texts as the database keeps them together (AttendeeList), in id
    # order, that of Attendee.Meta.ordering, as _people_of sorts them.
    attendees = attendee_list.column("json")
    room = _object_sql(
        [
            ("provider", _string_sql(backend.column("kind"))),
            ("backend", _string_sql(backend.column("name"))),
        ]
    )
    representation = _object_sql(
        [
            ("id", f"{meeting.column('id')}::text"),
            (None, meeting.column("api_json_head")),  # uid, title, description
            ("start", _isoformat_sql("start", zero_offset="+00:00")),
            ("end", _isoformat_sql("end", zero_offset="+00:00")),
            ("timezone", _string_sql(meeting.column("timezone"))),
            ("all_day", f"{meeting.column('all_day')}::text"),
            ("recurrence", _or_null_sql(_string_sql(f"NULLIF({meeting.column('rrule')}, '')"))),
            ("organizer", _string_sql(organizer.column("email"))),
            ("co_organizers", f"COALESCE({co_organizers}, '[]')"),
            ("attendees", f"COALESCE({attendees}, '[]')"),
            # access, lobby, listed_publicly, reminder_minutes, status, sequence
            (None, meeting.column("api_json_tail")),
            (
                "join_url",
                f"constant.join_before || {meeting.column('id')}::text || constant.join_after",
            ),
            (
                "room",
                f"CASE WHEN {backend.column('kind')} IS NOT NULL"
                f" AND {reservation.column('released_at')} IS NULL THEN {room} ELSE 'null' END",
            ),
            (
                "abilities",
                f"CASE WHEN {meeting.column('status')} = constant.cancelled"
                " THEN constant.cancelled_abilities ELSE constant.live_abilities END",
            ),
            ("created_at", _isoformat_sql("created", zero_offset="Z")),
            ("updated_at", _isoformat_sql("updated", zero_offset="Z")),
        ]
    )
    local_times = ", ".join(
        [
            _local_time_sql("start", meeting.column("start"), meeting.column("timezone")),
            _local_time_sql("end", meeting.column("end"), meeting.column("timezone")),
            _local_time_sql("created", meeting.column("created_at"), "constant.zone"),
            _local_time_sql("updated", meeting.column("updated_at"), "constant.zone"),
        ]
    )
    return f"""
SELECT to_char(page.start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), page.id,
    {representation}
FROM page
CROSS JOIN (VALUES (%s::text, %s::text, %s::text, %s::text, %s::text, %s::text)) AS constant (
    join_before, join_after, cancelled, cancelled_abilities, live_abilities, zone
)
JOIN {meeting.table} ON {meeting.column("id")} = page.id
JOIN {organizer.table} ON {organizer.column("id")} = {meeting.column("organizer")}
LEFT JOIN {attendee_list.table} ON {attendee_list.column("meeting")} = {meeting.column("id")}
LEFT JOIN {reservation.table} ON {reservation.column("meeting")} = {meeting.column("id")}
LEFT JOIN {backend.table} ON {backend.column("id")} = {reservation.column("backend")}
-- OFFSET 0: computed once per meeting, not copied into each of the expressions using them.
CROSS JOIN LATERAL (SELECT {local_times} OFFSET 0) AS local
ORDER BY page.start, page.id
"""  # noqa: S608 - names from the models


class MeetingJson(NamedTuple):
    # Text, parsed only for a cursor: psycopg takes longer to make a datetime than PostgreSQL
    # takes to write it.
    utc_start: str
    pk: int
    json: str  # the meeting's representation, encoded

    def sort_key(self) -> tuple[datetime, int]:
        """(start, id), as ``meeting_row_key`` gives them."""
        return datetime.fromisoformat(self.utc_start).replace(tzinfo=UTC), self.pk


def meeting_json_available(alias: str) -> bool:
    """Whether ``meeting_json_rows`` works here: on PostgreSQL, with DRF's ISO 8601 timestamps
    in a named (IANA) zone, as ``_timestamps`` writes them."""
    return (
        connections[alias].vendor == "postgresql"
        and str(api_settings.DATETIME_FORMAT).lower() == ISO_8601
        and isinstance(zone := djtz.get_current_timezone(), ZoneInfo)
        and zone.key is not None
    )


def meeting_json_rows(queryset: QuerySet[Meeting], key: ApiKey | None) -> list[MeetingJson]:
    """The meetings of ``queryset`` (ordered and sliced) as ``meeting_representations_of_rows``
    shows them, but encoded as JSON by PostgreSQL, in one query; see ``meeting_json_available``.
    """
    try:
        page_sql, page_params = (
            queryset.values_list("start", "pk").query.get_compiler(queryset.db).as_sql()
        )
    except EmptyResultSet:  # as the ORM does for a filter nothing can match
        return []
    return meeting_json_rows_of_page(page_sql, page_params, key, using=queryset.db)


def meeting_json_rows_of_page(
    page_sql: str, page_params: Sequence[Any], key: ApiKey | None, *, using: str
) -> list[MeetingJson]:
    """``meeting_json_rows`` of the meetings a query selects as (start, id), in its order."""
    join_before, join_after = _join_url_around_id()
    constants = (
        json.dumps(join_before)[:-1],  # the opening quote, not the closing one
        json.dumps(join_after)[1:],
        MeetingStatus.CANCELLED.value,
        json.dumps(_abilities(key, live=False)),
        json.dumps(_abilities(key, live=True)),
        djtz.get_current_timezone().key,
    )
    sql = f"WITH page (start, id) AS ({page_sql}){_meeting_json_sql(using)}"
    with connections[using].cursor() as cursor:
        cursor.execute(sql, (*page_params, *constants))
        return [MeetingJson(*row) for row in cursor.fetchall()]


def meeting_representations(
    meetings: Sequence[Meeting], key: ApiKey | None
) -> list[dict[str, Any]]:
    """``meeting_representations_of_rows`` for meeting instances (from
    ``meetings_for_representation``, or full rows)."""
    return meeting_representations_of_rows([_row_of(meeting) for meeting in meetings], key)


def meeting_representation(meeting: Meeting, key: ApiKey | None) -> dict[str, Any]:
    """One meeting as ``MeetingSerializer`` shows it; see ``meeting_representations``."""
    return meeting_representations([meeting], key)[0]


# --- Input --------------------------------------------------------------------------------------


class AwareDateTimeField(serializers.DateTimeField):
    """RFC 3339 with a UTC offset; a time without one is refused, never guessed."""

    default_error_messages = {
        "naive_datetime": gettext_lazy(
            "Give the time with its UTC offset, such as 2027-03-29T10:00:00+02:00."
        ),
    }

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None  # well formed but impossible: the parent explains
            if parsed is not None and djtz.is_naive(parsed):
                self.fail("naive_datetime")
        elif isinstance(value, datetime) and djtz.is_naive(value):
            self.fail("naive_datetime")
        return super().to_internal_value(value)


# Service error codes → the field of the API body they are about.
FIELD_OF_ERROR = {
    "title_required": "title",
    "invalid_timezone": "timezone",
    "naive_datetime": "start",
    "end_before_start": "end",
    "too_long": "end",
    "start_in_past": "start",
    "empty_recurrence": "recurrence",
    "overlapping_occurrences": "recurrence",
    "unsupported_recurrence": "recurrence",
    "invalid_email": "attendees",
    "too_many_attendees": "attendees",
    "invalid_role": "attendees",
    "invalid_access_level": "access",
    "invalid_reminder": "reminder_minutes",
}


class MeetingWriteSerializer(JsonBodySerializer):
    """Fields a client sets on create and on PATCH (every one optional on PATCH)."""

    title = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True, required=False)
    start = AwareDateTimeField(help_text="RFC 3339 with a UTC offset.")
    end = AwareDateTimeField(help_text="RFC 3339 with a UTC offset; after start, ≤ 24 h later.")
    timezone = serializers.CharField(
        max_length=64,
        required=False,
        help_text="IANA time zone the meeting (and its recurrence) follows, e.g. Europe/Paris.",
    )
    all_day = serializers.BooleanField(
        required=False, help_text="Whole local days: start and end become midnight in the zone."
    )
    recurrence = serializers.CharField(
        max_length=255,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text=(
            "RFC 5545 RRULE limited to what Outlook can show (FREQ, INTERVAL, BYDAY, "
            "BYMONTHDAY, BYMONTH, COUNT or UNTIL), e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=10. "
            "null or empty: no recurrence."
        ),
    )
    co_organizers = serializers.ListField(
        child=serializers.EmailField(),
        required=False,
        max_length=50,
        help_text="People on this service who may also change the meeting; they attend too.",
    )
    # ListSerializer takes max_length; the stubs do not know it.
    attendees = AttendeeSerializer(  # type: ignore[call-arg]
        many=True,
        required=False,
        max_length=MAX_ATTENDEES,
        help_text="Everyone invited besides the organizer (who always attends, as chair).",
    )
    access = serializers.ChoiceField(choices=AccessLevel.values, required=False)
    lobby = serializers.BooleanField(required=False)
    listed_publicly = serializers.BooleanField(required=False)
    reminder_minutes = serializers.ChoiceField(
        choices=REMINDER_CHOICES_MINUTES,
        required=False,
        allow_null=True,
        help_text="A reminder for every attendee, this many minutes before each start.",
    )

    def validate_timezone(self, value: str) -> str:
        if value not in timezones():
            raise serializers.ValidationError(
                _("%(tz)s is not a time zone.") % {"tz": value}, code="invalid_timezone"
            )
        return value

    def validate_recurrence(self, value: str | None) -> Recurrence | None:
        if not value:
            return None
        try:
            return Recurrence.parse(value)
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None

    def validate_co_organizers(self, emails: list[str]) -> list[User]:
        emails = list(dict.fromkeys(email.lower() for email in emails))
        users = active_users_by_email(emails)
        unknown = [email for email in emails if email not in users]
        if unknown:
            raise serializers.ValidationError(
                _("%(emails)s: co-organizers must be people on this service.")
                % {"emails": ", ".join(unknown)},
                code="unknown_co_organizer",
            )
        return [users[email] for email in emails]

    def service_kwargs(self) -> dict[str, Any]:
        """The validated body as keyword arguments of meeting_schedule / meeting_update."""
        data: dict[str, Any] = {str(name): value for name, value in self.validated_data.items()}
        renamed = {"access": "access_level", "lobby": "lobby_enabled"}
        kwargs = {renamed.get(name, name): value for name, value in data.items()}
        if "attendees" in kwargs:
            kwargs["attendees"] = [AttendeeSerializer.to_spec(item) for item in kwargs["attendees"]]
        return kwargs


class MeetingCreateSerializer(MeetingWriteSerializer):
    organizer = serializers.EmailField(
        help_text=(
            "Who books the meeting: an active member of the key's agency with the organizer "
            "or admin role. Invitations come from them."
        )
    )

    def validate_organizer(self, email: str) -> User:
        agency = self.context["agency"]
        user = active_users_by_email([email]).get(email.lower())
        membership = getattr(user, "membership", None) if user is not None else None
        if (
            user is None
            or membership is None
            or membership.agency_id != agency.pk
            or not membership.can_book
        ):
            raise serializers.ValidationError(
                _(
                    "%(email)s is not an active organizer or admin of your agency: "
                    "only they may organize meetings."
                )
                % {"email": email},
                code="organizer_invalid",
            )
        return user

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "timezone" not in attrs:
            attrs["timezone"] = attrs["organizer"].timezone
        return attrs

    def service_kwargs(self) -> dict[str, Any]:
        kwargs = super().service_kwargs()
        kwargs["actor"] = kwargs.pop("organizer")
        return kwargs


class MeetingPatchSerializer(MeetingWriteSerializer):
    notify = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Changes of time, recurrence or status always send attendees an update; true "
            "sends one for other changes too (title, description…)."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)


class MeetingListQuerySerializer(InputSerializer):
    """Filters and paging of GET meetings/."""

    start_after = AwareDateTimeField(
        required=False, help_text="Meetings (or series) starting at or after this time."
    )
    start_before = AwareDateTimeField(
        required=False, help_text="Meetings (or series) starting strictly before this time."
    )
    updated_since = AwareDateTimeField(
        required=False, help_text="Meetings changed at or after this time."
    )
    organizer = serializers.EmailField(required=False, help_text="The organizer's email.")
    attendee = serializers.EmailField(
        required=False, help_text="Meetings this address is invited to (organizer included)."
    )
    status = serializers.ChoiceField(choices=MeetingStatus.values, required=False)
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
    )
    cursor = serializers.CharField(required=False, help_text="The opaque cursor of a `next` link.")

    def validate_cursor(self, value: str) -> tuple[datetime, int]:
        position = cursor_decode(value)
        if position is None:
            raise serializers.ValidationError(
                _("This cursor is not valid; start again from the first page."),
                code="invalid_cursor",
            )
        return position


def cursor_encode(start: datetime, pk: int) -> str:
    raw = json.dumps([start.astimezone(UTC).isoformat(), pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def cursor_decode(value: str) -> tuple[datetime, int] | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        start_text, pk = json.loads(raw)
        start = datetime.fromisoformat(start_text)
    except (ValueError, TypeError):
        return None
    if djtz.is_naive(start) or not isinstance(pk, int) or isinstance(pk, bool):
        return None
    return start, pk


class MeetingPageSerializer(serializers.Serializer[Any]):
    next = serializers.URLField(
        allow_null=True, help_text="The next page, or null on the last one."
    )
    results = MeetingSerializer(many=True)


# --- Occurrences --------------------------------------------------------------------------------

OCCURRENCE_KEY_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
MAX_OCCURRENCE_WINDOW = timedelta(days=366)


def occurrence_key_parse(key: str) -> datetime | None:
    """``20270329T080000Z`` → that moment in UTC; None when malformed."""
    if not OCCURRENCE_KEY_RE.match(key):
        return None
    try:
        return datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class OccurrenceSerializer(serializers.Serializer[Any]):
    """One occurrence; a moved one shows its new times under its original ``id``."""

    id = serializers.CharField(
        source="key",
        help_text="The original start in UTC (RFC 5545 RECURRENCE-ID), e.g. 20270329T080000Z.",
    )
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    moved = serializers.BooleanField(help_text="Moved away from its place in the series.")

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_start(self, occurrence: Occurrence) -> str:
        return local_isoformat(occurrence.start, occurrence.meeting.timezone)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_end(self, occurrence: Occurrence) -> str:
        return local_isoformat(occurrence.end, occurrence.meeting.timezone)

    @extend_schema_field(serializers.ChoiceField(choices=["confirmed", "cancelled"]))
    def get_status(self, occurrence: Occurrence) -> str:
        return "cancelled" if occurrence.cancelled else "confirmed"


class OccurrenceListSerializer(serializers.Serializer[Any]):
    results = OccurrenceSerializer(many=True)


class OccurrenceWindowSerializer(InputSerializer):
    """``from`` and ``to`` of GET occurrences/: both required, at most 366 days apart."""

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # "from" is a Python keyword: the fields are named here rather than declared.
        return {
            "from": AwareDateTimeField(help_text="Start of the window (inclusive)."),
            "to": AwareDateTimeField(help_text="End of the window (exclusive)."),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["to"] <= attrs["from"]:
            raise serializers.ValidationError(
                {"to": [_("The window must end after it starts.")]}, code="window_invalid"
            )
        if attrs["to"] - attrs["from"] > MAX_OCCURRENCE_WINDOW:
            raise serializers.ValidationError(
                {"to": [_("The window spans at most 366 days.")]}, code="window_too_long"
            )
        return attrs


class OccurrenceMoveSerializer(JsonBodySerializer):
    start = AwareDateTimeField(help_text="New start, RFC 3339 with a UTC offset.")
    end = AwareDateTimeField(help_text="New end, RFC 3339 with a UTC offset.")
