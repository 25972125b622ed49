"""The segment filter: URL round trip and SQL with bound parameters only."""

from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from relq.store.filters import SegmentFilter


def test_filter_round_trips_through_the_query_string():
    flt = SegmentFilter(
        since=date(2025, 1, 1),
        until=date(2025, 3, 31),
        waves=("2025-Q1",),
        customer=(("region", ("EMEA", "APAC")), ("plan", ("Growth",))),
        exclude_flags=("flag_speeder",),
    )
    back = SegmentFilter.from_query_params(flt.to_query_params())
    assert back.since == flt.since and back.until == flt.until and back.waves == flt.waves
    assert dict(back.customer) == dict(flt.customer)
    assert back.exclude_flags == flt.exclude_flags


def test_malformed_query_string_is_ignored_not_fatal():
    flt = SegmentFilter.from_query_params({"since": "not-a-date", "exclude": "flag_bogus,flag_speeder"})
    assert flt.since is None and flt.exclude_flags == ("flag_speeder",)


def test_segment_values_are_bound_parameters_never_sql_text():
    evil = "EMEA'; DROP TABLE customers; --"
    flt = SegmentFilter(customer=(("region", (evil,)),))
    compiled = flt.response_clause().compile(dialect=postgresql.dialect())
    assert "DROP TABLE" not in str(compiled)
    assert evil in [v for v in compiled.params.values() if isinstance(v, str)] or any(
        evil in v for v in compiled.params.values() if isinstance(v, list)
    )


def test_previous_period_has_equal_length():
    flt = SegmentFilter(since=date(2025, 4, 1), until=date(2025, 6, 30))
    prev = flt.shifted_back()
    assert prev.until == date(2025, 3, 31)
    assert (prev.until - prev.since) == (flt.until - flt.since)


def test_until_is_inclusive():
    flt = SegmentFilter(until=date(2025, 6, 30))
    compiled = flt.period_clause(sa.column("submitted_at")).compile()
    assert "2025-07-01" in str(list(compiled.params.values())[0])
