"""agencies.selectors.Columns: hand-written SQL read back into instances that behave like the
ORM's own (the join's and the signed-in user's hot paths use it)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models.signals import post_init

from agencies.models import Agency, User
from agencies.selectors import Columns

pytestmark = pytest.mark.django_db


def _read(columns: Columns, pk: int):
    with connection.cursor() as cursor:
        # Identifiers from the model's metadata; the id is a parameter.
        sql = f"SELECT {columns.sql} FROM {columns.table} WHERE {columns.column('id')} = %s"  # noqa: S608
        cursor.execute(sql, [pk])
        return columns.instance(cursor.fetchone())


def _values(instance) -> dict:
    return {
        field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields
    }


def test_an_instance_read_by_hand_is_the_orms(agency, make_member):
    member = make_member(agency)
    for model, pk in ((User, member.pk), (Agency, agency.pk)):
        found = _read(Columns.of(model, "t"), pk)
        expected = model.objects.get(pk=pk)
        assert type(found) is model
        assert _values(found) == _values(expected)
        assert found == expected
        assert found._state.adding is False and found._state.db == "default"
        # It behaves as a loaded instance: saved as an UPDATE of its own row, not an INSERT.
        found.save()
        assert model.objects.filter(pk=pk).count() == 1
    user = _read(Columns.of(User, "t"), member.pk)
    assert user.check_password("wrong") is False
    assert user.membership.agency_id == agency.pk  # relations load as usual


def test_an_instance_someone_listens_for_is_built_by_the_orm(agency):
    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(listener, sender=Agency)
    try:
        found = _read(Columns.of(Agency, "t"), agency.pk)
    finally:
        post_init.disconnect(listener, sender=Agency)
    assert seen == [found]
    assert _values(found) == _values(Agency.objects.get(pk=agency.pk))


def test_columns_left_out_are_deferred_as_with_defer(
    agency, make_member, django_assert_num_queries
):
    member = make_member(agency, display_name="Léa")
    columns = Columns.of(User, "t", leave_out=("password", "last_login"))
    assert '"password"' not in columns.sql and '"last_login"' not in columns.sql
    assert columns.column("password") == '"t"."password"'  # still usable in a WHERE
    with django_assert_num_queries(1):
        found = _read(columns, member.pk)
        assert (found.email, found.display_name) == (member.email, "Léa")
    assert (
        found.get_deferred_fields()
        == User.objects.defer("password", "last_login").get(pk=member.pk).get_deferred_fields()
    )
    with django_assert_num_queries(1):  # read when used, as Django reads a deferred field
        assert found.check_password("wrong") is False
    # Saved as an UPDATE of the loaded fields only: the password hash is kept.
    found.display_name = "Léa D."
    found.save()
    stored = User.objects.get(pk=member.pk)
    assert (stored.display_name, stored.password) == ("Léa D.", member.password)


@pytest.mark.parametrize("leave_out", [("no_such_field",), ("id",)])
def test_columns_refuse_to_leave_out_an_unknown_field_or_the_pk(leave_out):
    with pytest.raises(ValueError, match="cannot leave out"):
        Columns.of(User, "t", leave_out=leave_out)
