"""Segment vs rest and period vs previous, checked against SciPy and statsmodels on the raw rows."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from relq import store
from relq.exceptions import RelqError
from relq.measures import comparisons
from relq.store import schema
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS


def _raw(engine, dimension: str = "region") -> pd.DataFrame:
    """Every response with its scores, customer and segment, as stored (the reference's input)."""
    R, C = schema.survey_responses, schema.customers
    query = sa.select(
        R.c.response_id,
        R.c.customer_id,
        R.c.submitted_at,
        *[R.c[c] for c in (*PILLARS, "rq", "nps", "csat", "ces")],
        C.c[dimension],
    ).select_from(R.outerjoin(C, R.c.customer_id == C.c.customer_id))
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame[dimension] = frame[dimension].fillna(comparisons.NO_VALUE)
    return frame


def _score(part: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "nps":
        return np.where(part["nps"] >= 9, 1.0, np.where(part["nps"] <= 6, -1.0, 0.0))
    if metric == "csat":
        return np.where(part["csat"] >= 4, 1.0, 0.0)
    return part[metric].to_numpy(dtype=float)


def _cluster_fit(part: pd.DataFrame, metric: str):
    """statsmodels OLS on a constant, cov_type="cluster" by customer (unmatched: each its own).

    Returns (mean, clustered variance, clusters); for k = 1 statsmodels' CRV1 is C/(C−1)·Σt²/n².
    """
    part = part[part[metric].notna()]
    groups = pd.factorize(part["customer_id"].fillna(part["response_id"]))[0]
    fit = sm.OLS(_score(part, metric), np.ones((len(part), 1))).fit(
        cov_type="cluster", cov_kwds={"groups": groups}
    )
    return fit.params[0], fit.cov_params()[0, 0], len(np.unique(groups))


def test_segment_mean_tests_match_statsmodels_cluster_robust_fits_with_satterthwaite_t(duckdb_demo):
    # Welch with clustered variances: v₁, v₂ from statsmodels for the segment and the rest;
    # df = (v₁+v₂)²/(v₁²/(C₁−1) + v₂²/(C₂−1)); p and interval from scipy's t.
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "region", min_n=30)
    raw = _raw(duckdb_demo)
    checked = 0
    for row in frame[frame["metric"].isin([*PILLARS, "rq", "ces"])].itertuples():
        m1, v1, c1 = _cluster_fit(raw[raw["region"] == row.value], row.metric)
        m2, v2, c2 = _cluster_fit(raw[raw["region"] != row.value], row.metric)
        df = (v1 + v2) ** 2 / (v1**2 / (c1 - 1) + v2**2 / (c2 - 1))
        se = math.sqrt(v1 + v2)
        assert row.n == raw.loc[raw["region"] == row.value, row.metric].notna().sum()
        assert row.delta == pytest.approx(m1 - m2, abs=1e-9)
        assert row.p_value == pytest.approx(2 * sps.t.sf(abs(m1 - m2) / se, df), rel=1e-6, abs=1e-12)
        half = sps.t.ppf(0.975, df) * se
        assert (row.delta_low, row.delta_high) == pytest.approx((m1 - m2 - half, m1 - m2 + half), abs=1e-7)
        assert row.test == "Welch (customer-clustered)"
        checked += 1
    assert checked == 5 * frame["value"].nunique()


@pytest.mark.parametrize("metric", ["nps", "csat"])
def test_segment_nps_and_csat_z_tests_match_statsmodels_cluster_robust_fits(duckdb_demo, metric):
    # z = δ / (100·√(v₁+v₂)) with the clustered variances of the −1/0/+1 (NPS) or 0/1 (CSAT) score.
    with duckdb_demo.connect() as conn:
        frame = comparisons.segment_scores(conn, SegmentFilter(), "region", min_n=30)
    raw = _raw(duckdb_demo)
    for row in frame[frame["metric"] == metric].itertuples():
        m1, v1, _ = _cluster_fit(raw[raw["region"] == row.value], metric)
        m2, v2, _ = _cluster_fit(raw[raw["region"] != row.value], metric)
        se = 100 * math.sqrt(v1 + v2)
        delta = 100 * (m1 - m2)
        assert row.estimate == pytest.approx(100 * m1, abs=1e-9)
        assert row.delta == pytest.approx(delta, abs=1e-9)
        assert row.p_value == pytest.approx(2 * sps.norm.sf(abs(delta) / se), rel=1e-7)
        z = sps.norm.ppf(0.975)
        assert (row.delta_low, row.delta_high) == pytest.approx((delta - z * se, delta + z * se), abs=1e-7)
        assert row.test == f"{metric} z-test (customer-clustered)"


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
    grouped = [s for s in statements if "ROLLUP" in s.upper()]
    assert len(grouped) == 1  # every segment and the total from one aggregate
    # the dimension check (which fields are offered), whether the stored month sums are current
    # (one read of derived_versions: this demo store has none) and that aggregate
    assert len(statements) <= 3


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


def test_period_comparison_matches_statsmodels_stacked_ols_with_a_period_dummy(duckdb_demo):
    # The same customers answer in both periods: regress the score on [1, current] over the stacked
    # responses of both periods, each period's responses weighing 1/n_k, clustered by customer; the
    # slope is the delta and statsmodels' CRV1 is ours × (N−1)/(N−2). q: BH across the cards.
    flt = SegmentFilter(since=date(2026, 4, 1), until=date(2026, 9, 30))
    with duckdb_demo.connect() as conn:
        frame = comparisons.period_comparison(conn, flt, min_n=30).set_index("metric")
    raw = _raw(duckdb_demo)
    day = pd.to_datetime(raw["submitted_at"]).dt.date
    # the previous period has the same 183 days, ending the day before the period starts
    assert (flt.shifted_back().since, flt.shifted_back().until) == (date(2025, 9, 30), date(2026, 3, 31))
    now = raw[(day >= date(2026, 4, 1)) & (day <= date(2026, 9, 30))].assign(current=1.0)
    before = raw[(day >= date(2025, 9, 30)) & (day <= date(2026, 3, 31))].assign(current=0.0)
    for metric in ("trust", "satisfaction", "ces", "nps", "csat"):
        stacked = pd.concat([now, before], ignore_index=True)
        stacked = stacked[stacked[metric].notna()]
        w = 1.0 / stacked.groupby("current")[metric].transform("size").to_numpy()
        groups = pd.factorize(stacked["customer_id"].fillna(stacked["response_id"]))[0]
        fit = sm.WLS(
            _score(stacked, metric), np.column_stack([np.ones(len(stacked)), stacked["current"]]), weights=w
        ).fit(cov_type="cluster", cov_kwds={"groups": groups})
        scale = 1.0 if metric not in ("nps", "csat") else 100.0
        n_obs = len(stacked)
        se = scale * math.sqrt(fit.cov_params()[1, 1] * (n_obs - 2) / (n_obs - 1))
        assert frame.loc[metric, "n"] == now[metric].notna().sum()
        assert frame.loc[metric, "previous_n"] == before[metric].notna().sum()
        assert frame.loc[metric, "delta"] == pytest.approx(scale * fit.params[1], rel=1e-9)
        p = 2 * sps.norm.sf(abs(scale * fit.params[1]) / se)
        assert frame.loc[metric, "p_value"] == pytest.approx(p, rel=1e-6, abs=1e-12)
    q = multipletests(frame["p_value"], method="fdr_bh")[1]
    np.testing.assert_allclose(frame["q_value"], q, rtol=1e-12)
    assert frame["significant"].tolist() == list(q < 0.05)


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
