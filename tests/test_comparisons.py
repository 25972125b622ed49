"""Segment vs rest and period vs previous, checked against SciPy and statsmodels on the raw rows."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from relq import store
from relq.exceptions import RelqError
from relq.measures import comparisons
from relq.store import schema
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS


def _raw(engine, dimension: str = "region") -> pd.DataFrame:
    """Every response with its scores and its customer's segment, as stored (the reference's input)."""
    R, C = schema.survey_responses, schema.customers
    query = sa.select(
        R.c.submitted_at, *[R.c[c] for c in (*PILLARS, "rq", "nps", "csat", "ces")], C.c[dimension]
    ).select_from(R.outerjoin(C, R.c.customer_id == C.c.customer_id))
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame[dimension] = frame[dimension].fillna(comparisons.NO_VALUE)
    return frame


def _adjusted_wald(scores: pd.Series) -> tuple[float, float]:
    """NPS and the adjusted-Wald variance of p* − d*, written out from the Methodology page."""
    s = scores.dropna()
    n, p, d = len(s), int((s >= 9).sum()), int((s <= 6).sum())
    ns = n + 3
    ps, ds = (p + 0.75) / ns, (d + 0.75) / ns
    return 100 * (p - d) / n, (ps + ds - (ps - ds) ** 2) / ns


def test_segment_mean_p_values_match_scipy_welch_ttest_ind_on_raw_rows(duckdb_demo):
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "region", min_n=30)
    raw = _raw(duckdb_demo)
    checked = 0
    for row in frame[frame["metric"].isin([*PILLARS, "rq", "ces"])].itertuples():
        inside = raw.loc[raw["region"] == row.value, row.metric].dropna()
        rest = raw.loc[raw["region"] != row.value, row.metric].dropna()
        ref = sps.ttest_ind(inside, rest, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert row.n == len(inside)
        assert row.delta == pytest.approx(inside.mean() - rest.mean(), abs=1e-9)
        assert row.p_value == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)
        assert (row.delta_low, row.delta_high) == pytest.approx((ci.low, ci.high), abs=1e-7)
        checked += 1
    assert checked == 5 * frame["value"].nunique()


def test_segment_csat_difference_matches_statsmodels_newcombe_and_ztest(duckdb_demo):
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "region", min_n=30)
    raw = _raw(duckdb_demo)
    for row in frame[frame["metric"] == "csat"].itertuples():
        inside = raw.loc[raw["region"] == row.value, "csat"].dropna()
        rest = raw.loc[raw["region"] != row.value, "csat"].dropna()
        x1, n1, x2, n2 = int((inside >= 4).sum()), len(inside), int((rest >= 4).sum()), len(rest)
        low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb")
        _, p = proportions_ztest([x1, x2], [n1, n2])
        assert row.estimate == pytest.approx(100 * x1 / n1, abs=1e-9)
        assert (row.delta_low, row.delta_high) == pytest.approx((100 * low, 100 * high), abs=1e-9)
        assert row.p_value == pytest.approx(p, rel=1e-9)


def test_segment_nps_z_test_matches_adjusted_wald_written_out_in_pandas(duckdb_demo):
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "region", min_n=30)
    raw = _raw(duckdb_demo)
    for row in frame[frame["metric"] == "nps"].itertuples():
        s1, v1 = _adjusted_wald(raw.loc[raw["region"] == row.value, "nps"])
        s2, v2 = _adjusted_wald(raw.loc[raw["region"] != row.value, "nps"])
        z = (s1 - s2) / (100 * math.sqrt(v1 + v2))
        assert row.delta == pytest.approx(s1 - s2, abs=1e-9)
        assert row.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)


def test_q_values_match_statsmodels_multipletests_fdr_bh_across_segments(duckdb_demo):
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "owner", min_n=30)
    for metric, part in frame.groupby("metric"):
        big = part[~part["small"]]
        assert len(big) >= 10, metric
        reject, q, _, _ = multipletests(big["p_value"], method="fdr_bh")
        np.testing.assert_allclose(big["q_value"], q, rtol=1e-12)
        assert big["significant"].tolist() == list(q < 0.05)


def test_small_segments_are_flagged_never_ranked_and_never_significant(duckdb_demo):
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "region", min_n=400)
    small = frame[frame["small"]]
    assert not small.empty and not frame[~frame["small"]].empty
    assert small["rank"].isna().all()
    assert small["q_value"].isna().all()
    assert not small["significant"].any()
    assert (small["n"] < 400).all()
    ranked = frame[~frame["small"] & (frame["metric"] == "trust")]
    assert sorted(ranked["rank"]) == list(range(1, len(ranked) + 1))
    best = ranked.loc[ranked["rank"] == 1, "estimate"].item()
    assert best == ranked["estimate"].max()


def test_ces_ranks_lowest_effort_first(duckdb_demo):
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "plan", min_n=30)
    ces = frame[(frame["metric"] == "ces") & ~frame["small"]]
    assert ces.loc[ces["rank"] == 1, "estimate"].item() == ces["estimate"].min()


def test_all_segments_come_from_one_group_by_query(duckdb_demo):
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(duckdb_demo, "before_cursor_execute", count)
    try:
        with duckdb_demo.connect() as conn:
            frame = comparisons.segment_scores(conn, SegmentFilter(), "owner", min_n=30)
    finally:
        sa.event.remove(duckdb_demo, "before_cursor_execute", count)
    assert frame["value"].nunique() > 10
    grouped = [s for s in statements if "GROUP BY" in s.upper()]
    assert len(grouped) == 1 and "ROLLUP" in grouped[0].upper()
    assert len(statements) <= 2  # the dimension check and the one aggregate


def test_segment_totals_add_up_and_the_filter_on_the_dimension_is_dropped(duckdb_demo):
    with duckdb_demo.connect() as conn:
        everything = comparisons.segment_breakdown(conn, SegmentFilter(), "region", min_n=30)
        filtered = comparisons.segment_breakdown(
            conn, SegmentFilter().with_dimension("region", ["EMEA"]), "region", min_n=30
        )
    assert sum(s.headline.responses for s in everything.segments) == everything.total.responses
    assert [s.value for s in filtered.segments] == [s.value for s in everything.segments]
    report = everything.as_report()
    assert {"value", "n", "nps", "pillars", "rq", "csat", "ces", "vs_rest"} <= set(report[0])


def test_an_imported_crm_field_is_a_segment_dimension(duckdb_engine, demo_company):
    store.load_demo(duckdb_engine, demo_company)
    ids = demo_company.customers["customer_id"]
    fields = pd.DataFrame(
        {"customer_id": ids, "field": "tier", "value": np.where(ids.index % 2, "Gold", "Silver")}
    )
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.customer_fields, fields)
    with duckdb_engine.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "tier", min_n=30)
    assert {"Gold", "Silver"} <= set(frame["value"])


def test_unknown_dimension_is_a_clear_relq_error(duckdb_demo):
    with duckdb_demo.connect() as conn, pytest.raises(RelqError, match="Unknown segment dimension 'planet'"):
        comparisons.segment_scores(conn, SegmentFilter(), "planet")


def test_filters_matching_nothing_give_an_empty_frame(engine):
    with engine.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "region", min_n=30)
        period = comparisons.period_comparison(
            conn, SegmentFilter(since=date(1990, 1, 1), until=date(1990, 1, 31)), min_n=30
        )
    assert frame.empty and "rank" in frame.columns
    assert period["n"].eq(0).all() and not period["significant"].any()


def test_period_comparison_matches_scipy_welch_on_the_two_periods(duckdb_demo):
    flt = SegmentFilter(since=date(2026, 4, 1), until=date(2026, 9, 30))
    with duckdb_demo.connect() as conn:
        frame = comparisons.period_comparison(conn, flt, min_n=30).set_index("metric")
    raw = _raw(duckdb_demo)
    day = pd.to_datetime(raw["submitted_at"]).dt.date
    now = raw[(day >= date(2026, 4, 1)) & (day <= date(2026, 9, 30))]
    # the previous period has the same 183 days, ending the day before the period starts
    assert (flt.shifted_back().since, flt.shifted_back().until) == (date(2025, 9, 30), date(2026, 3, 31))
    before = raw[(day >= date(2025, 9, 30)) & (day <= date(2026, 3, 31))]
    for metric in ("trust", "satisfaction", "ces"):
        ref = sps.ttest_ind(now[metric].dropna(), before[metric].dropna(), equal_var=False)
        assert frame.loc[metric, "n"] == now[metric].notna().sum()
        assert frame.loc[metric, "previous_n"] == before[metric].notna().sum()
        assert frame.loc[metric, "p_value"] == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)
        assert frame.loc[metric, "significant"] == (ref.pvalue < 0.05)
    s1, _ = _adjusted_wald(now["nps"])
    s0, _ = _adjusted_wald(before["nps"])
    assert frame.loc["nps", "delta"] == pytest.approx(s1 - s0, abs=1e-9)


def test_period_comparison_without_a_closed_period_is_empty(duckdb_demo):
    with duckdb_demo.connect() as conn:
        assert comparisons.period_comparison(conn, SegmentFilter(since=date(2026, 1, 1))).empty


def test_segment_customer_counts_match_pandas_distinct_customers(duckdb_demo, demo_company):
    # Executives never see a group under 5 customers, so each segment carries its distinct
    # customers; the reference counts them in pandas from the demo company's own frames.
    with duckdb_demo.connect() as conn:
        got = comparisons.segment_scores(conn, SegmentFilter(), "plan", count_customers=True)
        got = got.drop_duplicates("value")
    responses = demo_company.responses.merge(
        demo_company.customers[["customer_id", "plan"]], on="customer_id", how="left"
    )
    expected = responses.dropna(subset=["customer_id"]).groupby("plan")["customer_id"].nunique()
    got = got[got["value"] != comparisons.NO_VALUE].set_index("value")["customers"]
    assert got.sort_index().to_dict() == expected.sort_index().to_dict()
