"""The list's page query, compiled once per set of filters, is the ORM's query for every set
and every value (meetings.api.meetings._page_sql)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import combinations

import pytest

from meetings.api.meetings import _page, _page_sql
from meetings.selectors import meetings_visible_to_agency

pytestmark = pytest.mark.django_db

VALUES = {
    "start_after": [datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, 8, 30, tzinfo=UTC)],
    "start_before": [datetime(2027, 5, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)],
    "updated_since": [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)],
    "organizer": ["orla@test.gouv.example", "Some_One%@Example.org"],
    "attendee": ["camille@partner.example.org", "x@y.example"],
    "status": ["confirmed", "cancelled"],
    "cursor": [(datetime(2027, 3, 2, 9, tzinfo=UTC), 42), (datetime(2027, 9, 2, tzinfo=UTC), 7)],
}
SETS = [(), *((name,) for name in VALUES), tuple(VALUES), *combinations(VALUES, 3)]


def _orm(agency, params):
    query = _page(meetings_visible_to_agency(agency=agency), params).values_list("start", "pk")
    sql, values = query.query.get_compiler("default").as_sql()
    return sql, list(values)


@pytest.mark.parametrize("names", SETS, ids=lambda names: "+".join(names) or "none")
def test_api_list_page_sql_is_the_orm_query(agency, other_agency, names):
    for which, host in ((0, agency), (1, other_agency), (0, other_agency)):
        params = {name: VALUES[name][which] for name in names}
        assert _page_sql(host, params, "default") == _orm(host, params)
