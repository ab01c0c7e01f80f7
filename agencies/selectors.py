from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar, cast

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from agencies.models import Agency, Membership, Role, Session, User

_UNSET = object()
M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Columns(Generic[M]):
    """A model's concrete columns for hand-written SQL on a hot path, read back into an instance
    through the ORM's own converters. The ORM compiles a query's SQL on every call, and that
    costs several times the query itself (issue 4: about 1 ms for the membership, 3.5 ms for the
    join's meeting); the SQL built from these is compiled once per process and follows the model.
    """

    model: type[M]
    alias: str
    sql: str
    attnames: list[str]
    db_columns: dict[str, str]  # field name → column
    pk_index: int
    converters: list[tuple[int, list[Callable[..., Any]], Any]]

    @classmethod
    def of(cls, model: type[M], alias: str, *, leave_out: Collection[str] = ()) -> Columns[M]:
        """``leave_out``: fields a hot path never reads (big texts, bookkeeping); they are
        deferred, as with ``QuerySet.defer``: read by a query of their own if ever used.
        Every column costs its transfer and its decoding on every call."""
        connection = connections[router.db_for_read(model)]
        quote = connection.ops.quote_name
        unknown = set(leave_out) - {field.name for field in model._meta.concrete_fields}
        if unknown or model._meta.pk.name in leave_out:
            raise ValueError(f"{model.__name__}: cannot leave out {sorted(unknown) or 'the pk'}")
        fields = [field for field in model._meta.concrete_fields if field.name not in leave_out]
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(alias)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                converters.append((index, found, column))
        return cls(
            model=model,
            alias=alias,
            sql=", ".join(f"{quote(alias)}.{quote(field.column)}" for field in fields),
            attnames=[field.attname for field in fields],
            db_columns={field.name: field.column for field in model._meta.concrete_fields},
            pk_index=fields.index(model._meta.pk),
            converters=converters,
        )

    def column(self, name: str) -> str:
        """``alias."column"`` of the field ``name``."""
        quote = connections[router.db_for_read(self.model)].ops.quote_name
        return f"{quote(self.alias)}.{quote(self.db_columns[name])}"

    @property
    def table(self) -> str:
        """``"table" alias``, for FROM and JOIN."""
        quote = connections[router.db_for_read(self.model)].ops.quote_name
        return f"{quote(self.model._meta.db_table)} {quote(self.alias)}"

    @property
    def width(self) -> int:
        return len(self.attnames)

    def instance(
        self, row: Sequence[Any], start: int = 0, *, connection: BaseDatabaseWrapper | None = None
    ) -> M | None:
        """The instance in ``row[start:start + width]``; None for the NULLs of an outer join.
        ``connection``: the one that read the row (default: the model's for reading)."""
        values = list(row[start : start + self.width])
        if values[self.pk_index] is None:
            return None
        if connection is None:
            connection = connections[router.db_for_read(self.model)]
        for index, found, column in self.converters:
            for converter in found:
                values[index] = converter(values[index], column, connection)
        if not _built_plainly(self.model):
            return self.model.from_db(connection.alias, self.attnames, values)
        # What from_db and Model.__init__ leave for a full row, without their per-field
        # descriptor calls: a fifth of the time, and a join builds six instances.
        instance = self.model.__new__(self.model)
        state = ModelState()
        state.adding, state.db = False, connection.alias
        instance._state = state
        instance.__dict__.update(zip(self.attnames, values, strict=True))
        return instance


def _built_plainly(model: type[Model]) -> bool:
    """Whether an instance is nothing but its field values and state: Django's own __init__ and
    from_db, and nobody listening for pre_init or post_init."""
    return (
        model.__init__ is Model.__init__
        and model.from_db.__func__ is Model.from_db.__func__  # type: ignore[attr-defined]
        # An empty list of receivers first: that is the usual case, and one attribute.
        and not (pre_init.receivers and pre_init.has_listeners(model))
        and not (post_init.receivers and post_init.has_listeners(model))
    )


@cache
def _membership_query() -> tuple[str, Columns[Membership], Columns[Agency]]:
    membership, agency = Columns.of(Membership, "m"), Columns.of(Agency, "a")
    # Identifiers from the models' metadata; the user's id is a parameter.
    sql = (
        f"SELECT {membership.sql}, {agency.sql} FROM {membership.table} "  # noqa: S608
        f"JOIN {agency.table} ON {agency.column('id')} = {membership.column('agency')} "
        f"WHERE {membership.column('user')} = %s"
    )
    return sql, membership, agency


@cache
def _user_query() -> tuple[str, Columns[User], Columns[Membership], Columns[Agency]]:
    user, membership, agency = (
        Columns.of(User, "u"),
        Columns.of(Membership, "m"),
        Columns.of(Agency, "a"),
    )
    # Identifiers from the models' metadata; the user's id is a parameter.
    sql = (
        f"SELECT {user.sql}, {membership.sql}, {agency.sql} FROM {user.table} "  # noqa: S608
        f"LEFT JOIN {membership.table} ON {membership.column('user')} = {user.column('id')} "
        f"LEFT JOIN {agency.table} ON {agency.column('id')} = {membership.column('agency')} "
        f"WHERE {user.column('id')} = %s"
    )
    return sql, user, membership, agency


def user_with_membership(*, pk: Any) -> User | None:
    """The user ``pk`` with their home membership and its agency (what membership_of returns
    afterwards), in one query."""
    sql, users, memberships, agencies = _user_query()
    with connections[router.db_for_read(User)].cursor() as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    return None if row is None else _user_of_row(row, 0)


@cache
def _session_query() -> str:
    session = Columns.of(Session, "s")
    _sql, user, membership, agency = _user_query()  # its columns: _user_of_row reads them
    # Identifiers from the models' metadata; the key and the time are parameters.
    return (
        f"SELECT {session.column('session_data')}, {user.sql}, {membership.sql}, {agency.sql} "  # noqa: S608
        f"FROM {session.table} "
        f"LEFT JOIN {user.table} ON {user.column('id')} = {session.column('user_id')} "
        f"LEFT JOIN {membership.table} ON {membership.column('user')} = {user.column('id')} "
        f"LEFT JOIN {agency.table} ON {agency.column('id')} = {membership.column('agency')} "
        f"WHERE {session.column('session_key')} = %s AND {session.column('expire_date')} > %s"
    )


def session_with_user(session_key: str) -> tuple[str | None, User | None]:
    """A live session's stored data and the user its ``user_id`` names, with their membership
    as user_with_membership reads it, in one query: the signed-in user of every request
    (agencies.middleware). (None, None) when no live session has this key."""
    with connections[router.db_for_read(Session)].cursor() as cursor:
        cursor.execute(_session_query(), [session_key, timezone.now()])
        row = cursor.fetchone()
    if row is None:
        return None, None
    return row[0], _user_of_row(row, 1)


def _user_of_row(row: Sequence[Any], start: int) -> User | None:
    """The user, membership and agency columns of _user_query from ``start``."""
    _sql, users, memberships, agencies = _user_query()
    user = cast(User | None, users.instance(row, start))
    if user is None:
        return None
    at = start + users.width
    membership = memberships.instance(row, at)
    if membership is not None:
        Membership.agency.field.set_cached_value(
            membership, agencies.instance(row, at + memberships.width)
        )
        Membership.user.field.set_cached_value(membership, user)
    user._membership_of = membership  # type: ignore[attr-defined]
    return user


def membership_of(user: User) -> Membership | None:
    """The user's home membership and its agency, read once per user instance (that is, once per
    request). Every signed-in page asks (the MFA rule for admins): one hand-written query."""
    if not user.is_authenticated:
        return None
    cached = getattr(user, "_membership_of", _UNSET)
    if cached is _UNSET:
        sql, memberships, agencies = _membership_query()
        with connections[router.db_for_read(Membership)].cursor() as cursor:
            cursor.execute(sql, [user.pk])
            row = cursor.fetchone()
        cached = None if row is None else memberships.instance(row)
        if cached is not None:
            Membership.agency.field.set_cached_value(
                cached, agencies.instance(row, memberships.width)
            )
            Membership.user.field.set_cached_value(cached, user)
        user._membership_of = cached  # type: ignore[attr-defined]
    return cached  # type: ignore[return-value]


def is_agency_admin(user: User) -> bool:
    membership = membership_of(user)
    return membership is not None and membership.role == Role.ADMIN


def agency_members(*, agency: Agency) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(agency=agency)
        .select_related("user")
        .order_by("-user__is_active", "user__display_name", "user__email")
    )
