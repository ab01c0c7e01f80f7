"""The API key lookup of every request reads the same rows as the ORM would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agencies.models import ApiKey
from visio_broker.api import apikey_with_agency

pytestmark = pytest.mark.django_db


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def test_api_key_lookup_equals_the_orm(agency, make_api_key):
    key, _raw = make_api_key(agency, ("meetings:read", "join:issue"), expires_days=30)
    ApiKey.objects.filter(pk=key.pk).update(
        last_used_at=timezone.now() - timedelta(hours=1), last_used_ip="192.0.2.1"
    )
    expected = ApiKey.objects.select_related("agency").get(pk=key.pk)

    found = apikey_with_agency(key.prefix)

    assert found is not None
    assert _fields(found) == _fields(expected)
    assert _fields(found.agency) == _fields(expected.agency)
    assert found.has_scope("join:issue") and not found.has_scope("meetings:write")
    assert found.get_deferred_fields() == set() == found.agency.get_deferred_fields()


def test_api_key_lookup_of_an_unknown_prefix_is_none(agency, make_api_key):
    make_api_key(agency)
    assert apikey_with_agency("zzzzzzzzzz") is None


def test_compiled_rows_equal_the_orm_for_any_number_of_ids(agency, make_member):
    from agencies.models import User
    from visio_broker.api import CompiledRows

    members = [make_member(agency, "member") for _ in range(3)]
    ids = [member.pk for member in members]
    emails = CompiledRows(
        lambda pks, agency_id: (
            User.objects.filter(pk__in=pks, membership__agency_id=agency_id)
            .order_by("pk")
            .values_list("pk", "email", "date_joined", "is_active")
        )
    )
    expected = list(
        User.objects.filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "email", "date_joined", "is_active")
    )
    assert emails.rows(ids, agency.pk) == expected
    assert emails.rows(ids[:1], agency.pk) == expected[:1]
    assert emails.rows(ids, agency.pk + 1000) == []


def test_compiled_rows_refuse_an_argument_that_is_not_a_parameter():
    from django.core.exceptions import ImproperlyConfigured

    from agencies.models import Agency
    from visio_broker.api import CompiledRows

    by_slug = CompiledRows(lambda slug: Agency.objects.filter(slug=slug).values_list("pk"))
    with pytest.raises(ImproperlyConfigured):
        by_slug.rows(1)


def test_compiled_rows_take_datetimes_and_strings(agency, make_member):
    from datetime import UTC, datetime

    from agencies.models import User
    from visio_broker.api import CompiledRows

    members = [make_member(agency, "member") for _ in range(3)]
    joined = CompiledRows(
        lambda since, email: (
            User.objects.filter(date_joined__gte=since, email__iexact=email)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    )
    early = datetime(2000, 1, 1, tzinfo=UTC)
    assert joined.rows(early, members[1].email.upper()) == [(members[1].pk,)]
    assert joined.rows(early, members[2].email) == [(members[2].pk,)]  # the compiled SQL again
    assert joined.rows(datetime(2999, 1, 1, tzinfo=UTC), members[2].email) == []
    sql, params = joined.sql(early, "someone@example.org")
    expected = (
        User.objects.filter(date_joined__gte=early, email__iexact="someone@example.org")
        .order_by("pk")
        .values_list("pk", flat=True)
        .query.get_compiler("default")
        .as_sql()
    )
    assert (sql, tuple(params)) == (expected[0], tuple(expected[1]))


def test_compiled_rows_refuse_an_argument_type_they_cannot_stand_in_for():
    from django.core.exceptions import ImproperlyConfigured

    from agencies.models import Agency
    from visio_broker.api import CompiledRows

    by_flag = CompiledRows(lambda flag: Agency.objects.filter(allow_shared_backends=flag))
    with pytest.raises(ImproperlyConfigured):
        by_flag.rows(True)
