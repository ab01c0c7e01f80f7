from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils.translation import gettext_lazy as _

from agencies.models import Agency, Role, User
from agencies.reference import validate_timezone


class AccessLevel(models.TextChoices):
    INVITE = "invite", _("Invited people only")
    AGENCY = "agency", _("Anyone in the host agency")
    LINK = "link", _("Anyone with the link (through the lobby)")


class MeetingStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    CANCELLED = "cancelled", _("Cancelled")


class AttendeeRole(models.TextChoices):
    CHAIR = "chair", _("Chair")
    REQUIRED = "required", _("Required")
    OPTIONAL = "optional", _("Optional")


class PartStat(models.TextChoices):
    NEEDS_ACTION = "needs-action", _("Not answered")
    ACCEPTED = "accepted", _("Accepted")
    TENTATIVE = "tentative", _("Tentative")
    DECLINED = "declined", _("Declined")


class JsonString(models.Func):
    """A text as a JSON string (quoted, escaped), in an expression the database may store:
    PostgreSQL's to_json() is only STABLE, so migration 0007 wraps it in an IMMUTABLE function
    (true for text); SQLite's json_quote() is deterministic."""

    function = "visio_json_string"
    output_field = models.TextField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="json_quote", **extra)


def _json_members(
    members: list[tuple[str, models.Expression]], *, opening: str = ","
) -> list[models.Expression]:
    """The parts of a run of JSON object members, ``"key":value`` each after a comma (the first
    after ``opening``), for a Concat the database stores."""
    parts: list[models.Expression] = []
    for index, (key, value) in enumerate(members):
        parts += [Value(f'{opening if index == 0 else ","}"{key}":'), value]
    return parts


def _json_bool(name: str) -> models.Case:
    """A boolean column as JSON's true or false (SQLite would cast it to 1 or 0)."""
    return models.Case(
        models.When(**{name: True}, then=Value("true")),
        default=Value("false"),
        output_field=models.TextField(),
    )


# Changes to these fields invalidate what attendees' calendars hold: they bump the iTIP
# SEQUENCE and trigger update messages. Title and description are cosmetic.
SIGNIFICANT_FIELDS = frozenset({"start", "end", "timezone", "all_day", "rrule", "status"})


class Meeting(models.Model):
    """A one-off meeting or the master of a series; times in UTC plus the IANA zone."""

    uid = models.CharField(max_length=255, unique=True, editable=False)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    timezone = models.CharField(_("time zone"), max_length=64, validators=[validate_timezone])
    all_day = models.BooleanField(_("all day"), default=False)
    rrule = models.CharField(_("recurrence rule"), max_length=255, blank=True)
    # End of the last occurrence (the meeting's own end when it does not repeat); null for a
    # series without end. With ``start`` it bounds every window query through one index.
    series_end = models.DateTimeField(null=True, blank=True)
    host_agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="meetings")
    organizer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="organized_meetings")
    co_organizers = models.ManyToManyField(User, blank=True, related_name="co_organized_meetings")
    access_level = models.CharField(
        _("who may join"), max_length=16, choices=AccessLevel.choices, default=AccessLevel.INVITE
    )
    lobby_enabled = models.BooleanField(_("lobby"), default=True)
    # Shown (title and time only) in the host agency's public calendar feed, when it has one.
    listed_publicly = models.BooleanField(
        _("listed in the agency's public calendar"), default=False
    )
    status = models.CharField(
        max_length=16, choices=MeetingStatus.choices, default=MeetingStatus.SCHEDULED
    )
    sequence = models.PositiveIntegerField(default=0)
    # An extra reminder for every attendee, on top of their own (minutes before each start).
    reminder_minutes = models.PositiveIntegerField(
        _("reminder for everyone"), null=True, blank=True
    )
    # Set on the continuation created by "this and all following": the series it came from.
    split_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="continuations"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Two runs of the meeting as the REST API writes it, kept by the database on every write:
    # a page of the list concatenates them instead of escaping five strings and writing four
    # other values per meeting per read (5-13% less PostgreSQL work on a page, measured against
    # the previous query; meetings.serializers.meeting_json_rows).
    api_json_head = models.GeneratedField(
        expression=Concat(
            *_json_members(
                [
                    ("uid", JsonString("uid")),
                    ("title", JsonString("title")),
                    ("description", JsonString("description")),
                ]
            ),
            output_field=models.TextField(),
        ),
        output_field=models.TextField(),
        db_persist=True,
    )
    api_json_tail = models.GeneratedField(
        expression=Concat(
            *_json_members(
                [
                    ("access", JsonString("access_level")),
                    ("lobby", _json_bool("lobby_enabled")),
                    ("listed_publicly", _json_bool("listed_publicly")),
                    (
                        "reminder_minutes",
                        Coalesce(
                            Cast("reminder_minutes", models.TextField()),
                            Value("null"),
                            output_field=models.TextField(),
                        ),
                    ),
                    ("status", JsonString("status")),
                    ("sequence", Cast("sequence", models.TextField())),
                ]
            ),
            output_field=models.TextField(),
        ),
        output_field=models.TextField(),
        db_persist=True,
    )

    class Meta:
        verbose_name = _("meeting")
        verbose_name_plural = _("meetings")
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="meeting_end_after_start"
            ),
            models.CheckConstraint(
                condition=Q(status__in=MeetingStatus.values), name="meeting_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(access_level__in=AccessLevel.values), name="meeting_access_level_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["start", "series_end"], name="meeting_window_idx"),
            models.Index(fields=["host_agency", "start"], name="meeting_agency_start_idx"),
            models.Index(fields=["organizer", "start"], name="meeting_organizer_start_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_recurring(self) -> bool:
        return bool(self.rrule)

    @property
    def is_cancelled(self) -> bool:
        return self.status == MeetingStatus.CANCELLED

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def is_organizer(self, user: User) -> bool:
        if not user.is_authenticated:
            return False
        if self.organizer_id == user.pk:
            return True
        return any(co.pk == user.pk for co in self.co_organizers.all())

    def attendee_for(self, user: User) -> Attendee | None:
        if not user.is_authenticated:
            return None
        return next((a for a in self.attendees.all() if a.user_id == user.pk), None)

    def get_abilities(self, user: User) -> dict[str, bool]:
        """What ``user`` may do with this meeting; drives the web UI and the API alike."""
        if not user.is_authenticated:
            return dict.fromkeys(ABILITIES, False)
        organizer = self.is_organizer(user)
        attendee = self.attendee_for(user)
        membership = getattr(user, "membership", None)
        host_admin = (
            membership is not None
            and membership.agency_id == self.host_agency_id
            and membership.role == Role.ADMIN
        )
        view = organizer or attendee is not None or host_admin
        can_change = (organizer or host_admin) and not self.is_cancelled
        return {
            "view": view,
            "view_details": view,
            "edit": can_change,
            "cancel": can_change,
            # Who came stays visible to those who ran the meeting, also once it is cancelled.
            "view_attendance": organizer or host_admin,
            # The organizer's own answer is implied; everyone else invited answers.
            "respond": attendee is not None
            and not self.is_cancelled
            and attendee.user_id != self.organizer_id,
            "join_as_moderator": not self.is_cancelled
            and (organizer or (attendee is not None and attendee.role == AttendeeRole.CHAIR)),
        }


ABILITIES = (
    "view",
    "view_details",
    "edit",
    "cancel",
    "view_attendance",
    "respond",
    "join_as_moderator",
)


class OccurrenceException(models.Model):
    """One occurrence of a series cancelled or moved; ``recurrence_id`` is its original start."""

    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="exceptions")
    recurrence_id = models.DateTimeField()
    cancelled = models.BooleanField(default=False)
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meeting", "recurrence_id"], name="occurrence_exception_unique"
            ),
            models.CheckConstraint(
                condition=Q(cancelled=True)
                | (Q(start__isnull=False) & Q(end__isnull=False) & Q(end__gt=models.F("start"))),
                name="occurrence_exception_moved_has_times",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meeting} @ {self.recurrence_id:%Y-%m-%d %H:%M}"


def new_rsvp_secret() -> str:
    return secrets.token_urlsafe(32)


class Attendee(models.Model):
    """Someone invited: a user of this instance, or an outside email address."""

    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="attendees")
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, null=True, blank=True, related_name="attendances"
    )
    email = models.EmailField(_("email"))
    display_name = models.CharField(_("name"), max_length=150, blank=True)
    role = models.CharField(
        _("role"), max_length=16, choices=AttendeeRole.choices, default=AttendeeRole.REQUIRED
    )
    partstat = models.CharField(
        _("answer"), max_length=16, choices=PartStat.choices, default=PartStat.NEEDS_ACTION
    )
    rsvp_secret = models.CharField(max_length=64, default=new_rsvp_secret, editable=False)
    responded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The attendee as the REST API writes it, kept by the database on every write: a page of
    # meetings concatenates these instead of escaping four strings per attendee per read (that
    # escaping was 40% of PostgreSQL's work on a page; meetings.serializers.meeting_json_rows).
    api_json = models.GeneratedField(
        expression=Concat(
            *_json_members(
                [
                    ("email", JsonString("email")),
                    ("name", JsonString("display_name")),
                    ("role", JsonString("role")),
                    ("status", JsonString("partstat")),
                ],
                opening="{",
            ),
            Value("}"),
            output_field=models.TextField(),
        ),
        output_field=models.TextField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["meeting", "email"], name="attendee_email_unique"),
            models.CheckConstraint(
                condition=Q(role__in=AttendeeRole.values), name="attendee_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(partstat__in=PartStat.values), name="attendee_partstat_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "meeting"], name="attendee_user_meeting_idx"),
            models.Index(fields=["email"], name="attendee_email_idx"),
            # Free/busy reads (person, meeting, answer) of many people from the index alone.
            models.Index(
                fields=["user", "meeting"], include=["partstat"], name="attendee_busy_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.email

    @property
    def is_internal(self) -> bool:
        return self.user_id is not None


class AttendeeList(models.Model):
    """A meeting's attendees as the REST API lists them: the JSON array of their ``api_json``
    in id order.

    Kept by PostgreSQL, not by Django: triggers on meetings_attendee (migration 0008) rewrite a
    meeting's row after every statement that inserts, changes or deletes its attendees, raw
    SQL included. A page of the meeting list reads one row per meeting instead of gathering ten
    attendees each (a third of PostgreSQL's work on a page; meetings.serializers.
    meeting_json_rows). A meeting without attendees may have no row. Empty on SQLite, whose
    list is written in Python.
    """

    meeting = models.OneToOneField(
        Meeting, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    json = models.TextField(default="[]")

    def __str__(self) -> str:
        return f"attendees of meeting {self.meeting_id}"


class FeedKind(models.TextChoices):
    PERSONAL = "personal", _("Personal calendar")
    AGENCY = "agency", _("Agency public calendar")


class FeedToken(models.Model):
    """The capability behind a calendar subscription URL; the URL itself is never stored.

    The token is an HMAC of ``pk:nonce`` under ``settings.FEED_TOKEN_KEY``: the profile can show
    the URL again, while the database alone (nonce and SHA-256 of the token) reveals no URL.
    """

    kind = models.CharField(max_length=16, choices=FeedKind.choices)
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, null=True, blank=True, related_name="feed_tokens"
    )
    agency = models.ForeignKey(
        Agency, on_delete=models.CASCADE, null=True, blank=True, related_name="feed_tokens"
    )
    nonce = models.CharField(max_length=64)
    token_hash = models.CharField(max_length=64, unique=True)
    include_declined = models.BooleanField(_("include declined meetings"), default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # What the feed served last: ETag (of the identity bytes), the Last-Modified that only moves
    # forward when the ETag changes, and a fingerprint of the rows behind those bytes (lets a
    # conditional request answer 304 without rendering the feed).
    etag = models.CharField(max_length=80, blank=True)
    last_modified = models.DateTimeField(null=True, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    # Bumped in the same transaction as every service write to what the feed shows; while it
    # equals ``checked_generation`` within the time bucket of ``checked_at``, the fingerprint
    # still holds without being read again (meetings.feeds).
    generation = models.PositiveBigIntegerField(default=0)
    checked_generation = models.PositiveBigIntegerField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("calendar feed")
        verbose_name_plural = _("calendar feeds")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="personal", user__isnull=False, agency__isnull=True)
                    | Q(kind="agency", agency__isnull=False, user__isnull=True)
                ),
                name="feed_token_owner_matches_kind",
            ),
            # One live URL per person and per agency; revoked ones stay as history.
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(revoked_at__isnull=True, user__isnull=False),
                name="feed_token_one_live_per_user",
            ),
            models.UniqueConstraint(
                fields=["agency"],
                condition=Q(revoked_at__isnull=True, agency__isnull=False),
                name="feed_token_one_live_per_agency",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class ReminderStatus(models.TextChoices):
    PLANNED = "planned", _("Planned")
    SENT = "sent", _("Sent")
    DROPPED = "dropped", _("Dropped (the meeting had started)")
    CANCELLED = "cancelled", _("Cancelled")


class Reminder(models.Model):
    """One reminder of one occurrence for one attendee, ``offset_minutes`` before it starts.

    Materialised ahead by the planner for a bounded horizon, claimed once due by the sender
    (meetings.reminders). ``occurrence_key`` is the occurrence's original start (``Occurrence.key``)
    and never changes; ``occurrence_start`` and ``due_at`` follow a moved occurrence.
    """

    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="reminders")
    occurrence_key = models.CharField(max_length=16)
    attendee = models.ForeignKey(Attendee, on_delete=models.CASCADE, related_name="reminders")
    offset_minutes = models.PositiveIntegerField()
    occurrence_start = models.DateTimeField()
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=ReminderStatus.choices, default=ReminderStatus.PLANNED
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    notification = models.ForeignKey(
        "visio_broker.Notification",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meeting", "occurrence_key", "attendee", "offset_minutes"],
                name="reminder_unique",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ReminderStatus.values), name="reminder_status_valid"
            ),
        ]
        indexes = [
            # The sender's scan: planned rows by due time, nothing else.
            models.Index(fields=["due_at"], condition=Q(status="planned"), name="reminder_due_idx"),
            models.Index(fields=["meeting", "status"], name="reminder_meeting_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.meeting} @ {self.occurrence_key} → {self.attendee} (-{self.offset_minutes})"


class ChangeType(models.TextChoices):
    CREATED = "created", _("Created")
    UPDATED = "updated", _("Updated")
    CANCELLED = "cancelled", _("Cancelled")


class ChangeCounter(models.Model):
    """Per agency: the last delta-sync sequence number handed out and how far changes were
    purged. Its row lock orders an agency's changes by commit (meetings.changes)."""

    agency = models.OneToOneField(
        Agency, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    value = models.BigIntegerField(default=0)
    # Changes with seq <= this were purged: a cursor below it cannot be served any more.
    purged_through = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.agency_id}: {self.value}"


class MeetingChange(models.Model):
    """One entry of an agency's delta sync (``changes/``), numbered in commit order."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()
    # No foreign key: the entry outlives its meeting, should one ever be deleted.
    meeting_id = models.BigIntegerField()
    type = models.CharField(max_length=16, choices=ChangeType.choices)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of the sync query: (agency, seq > cursor) in seq order.
            models.UniqueConstraint(fields=["agency", "seq"], name="meeting_change_seq_unique"),
            models.CheckConstraint(
                condition=Q(type__in=ChangeType.values), name="meeting_change_type_valid"
            ),
        ]
        indexes = [models.Index(fields=["changed_at"], name="meeting_change_purge_idx")]

    def __str__(self) -> str:
        return f"{self.agency_id}#{self.seq} {self.type} meeting {self.meeting_id}"
