"""Drivers of NPS: Shapley/LMG decomposition, correlations, bootstrap, importance × performance."""

from itertools import combinations
from math import factorial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sp

from relq import store
from relq.analyses import drivers
from relq.measures import customer_sums
from relq.store import dialects, schema
from relq.store.filters import SegmentFilter, Weighting

ROOT = Path(__file__).resolve().parent.parent
SEED = 7


def _responses(n: int = 400, seed: int = SEED) -> pd.DataFrame:
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    trust = rng.normal(60, 15, n)
    commitment = 0.5 * trust + rng.normal(30, 12, n)
    satisfaction = 0.3 * trust + 0.3 * commitment + rng.normal(25, 10, n)
    nps = np.clip(
        np.round((0.03 * trust + 0.04 * commitment + 0.06 * satisfaction) + rng.normal(0, 1.5, n)), 0, 10
    )
    return pd.DataFrame(
        {
            "response_id": [f"R{i:05d}" for i in range(n)],
            "customer_id": [f"C{i % 50:03d}" for i in range(n)],
            "submitted_at": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
            "trust": trust,
            "commitment": commitment,
            "satisfaction": satisfaction,
            "nps": nps.astype(int),
            "rq": (trust + commitment + satisfaction) / 3,
        }
    )


def _brute_force_shapley(
    frame: pd.DataFrame, predictors: list[str], outcome: str = "nps"
) -> dict[str, float]:
    """Shapley values of R² from statsmodels OLS fitted on every subset of the raw rows."""
    r2 = {(): 0.0}
    for size in range(1, len(predictors) + 1):
        for subset in combinations(predictors, size):
            fit = sm.OLS(frame[outcome], sm.add_constant(frame[list(subset)])).fit()
            r2[subset] = fit.rsquared
    p = len(predictors)
    out = {}
    for var in predictors:
        others = [v for v in predictors if v != var]
        total = 0.0
        for size in range(p):
            for subset in combinations(others, size):
                with_var = tuple(v for v in predictors if v in subset or v == var)
                total += (
                    factorial(size) * factorial(p - size - 1) / factorial(p) * (r2[with_var] - r2[subset])
                )
        out[var] = total
    return out


def test_shapley_r2_matches_brute_force_statsmodels_ols_over_all_subsets(engine):
    frame = _responses()
    with engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, frame)
    with engine.connect() as conn:
        result = drivers.driver_importance(conn, SegmentFilter(), resamples=50, min_n=30)
    reference = _brute_force_shapley(frame, ["trust", "commitment", "satisfaction"])
    full = (
        sm.OLS(frame["nps"], sm.add_constant(frame[["trust", "commitment", "satisfaction"]])).fit().rsquared
    )
    got = result.set_index("predictor")
    for pillar, value in reference.items():
        assert got.loc[pillar, "lmg"] == pytest.approx(value, rel=1e-6)
    assert got["r2"].iloc[0] == pytest.approx(full, rel=1e-6)
    assert got["lmg"].sum() == pytest.approx(full, rel=1e-6)
    assert (got["lmg_low"] <= got["lmg"]).all() and (got["lmg"] <= got["lmg_high"]).all()


def test_correlations_and_fisher_intervals_match_scipy_pearsonr(duckdb_engine):
    frame = _responses(200, seed=3)
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, frame)
    with duckdb_engine.connect() as conn:
        result = drivers.driver_importance(conn, SegmentFilter(), resamples=0).set_index("predictor")
    for pillar in ("trust", "commitment", "satisfaction"):
        ref = sp.pearsonr(frame[pillar], frame["nps"])
        ci = ref.confidence_interval(0.95)
        assert result.loc[pillar, "r"] == pytest.approx(ref.statistic, rel=1e-9)
        assert result.loc[pillar, "r_low"] == pytest.approx(ci.low, rel=1e-6)
        assert result.loc[pillar, "r_high"] == pytest.approx(ci.high, rel=1e-6)


def test_bootstrap_is_seeded_and_says_how_many_resamples_it_drew(duckdb_engine):
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, _responses(300))
    with duckdb_engine.connect() as conn:
        a = drivers.driver_importance(conn, SegmentFilter(), resamples=40, seed=1)
        b = drivers.driver_importance(conn, SegmentFilter(), resamples=40, seed=1)
        c = drivers.driver_importance(conn, SegmentFilter(), resamples=40, seed=2)
        with pytest.raises(ValueError, match="resamples"):
            drivers.driver_importance(conn, SegmentFilter(), resamples=-1)
    pd.testing.assert_frame_equal(a, b)
    assert not a["lmg_low"].equals(c["lmg_low"])
    assert (a["resamples"] == 40).all()
    assert (a["share_low"] <= a["share"]).all() and (a["share"] <= a["share_high"]).all()


def test_bootstrap_resamples_whole_customers_like_a_numpy_row_bootstrap_of_drawn_customers(engine):
    # Reference: the same seeded draws of customers, written out on the raw rows in numpy — every
    # row of each drawn customer, repeated as often as it is drawn — then np.corrcoef and the
    # Shapley decomposition (checked above against statsmodels OLS over every subset). The draws
    # index the customers in code point order ("C…" before "c…"), then the unmatched responses by
    # id; read from the responses and again from each customer's stored whole-history sums (which
    # keep that order as a number, and the customers' regions beside them: split by region and the
    # North chosen, the same figures).
    frame = _responses(360, seed=5)  # 50 customers, about 7 responses each
    frame["customer_id"] = [c if int(c[1:]) % 2 else c.lower() for c in frame["customer_id"]]
    frame.loc[frame.index[-6:], "customer_id"] = None  # six responses matched to no customer
    ids = sorted(frame["customer_id"].dropna().unique())
    crm = pd.DataFrame(
        {"customer_id": ids, "region": ["North" if i % 3 else "South" for i in range(len(ids))]}
    )
    with engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, frame)
        store.bulk_insert(conn, schema.customers, crm)
    resamples, seed = 30, 11
    columns = ["trust", "commitment", "satisfaction", "nps"]
    lone = frame[frame["customer_id"].isna()].sort_values("response_id")
    clusters = [frame.loc[frame["customer_id"] == c, columns].to_numpy(float) for c in ids]
    clusters += [row[None, :] for row in lone[columns].to_numpy(float)]
    rng = np.random.default_rng(seed)
    shares, lmgs, r2s = [], [], []
    for _ in range(resamples):
        drawn = rng.integers(0, len(clusters), len(clusters))
        values = np.vstack([clusters[i] for i in drawn])
        lmg = drivers.shapley_r2(np.corrcoef(values, rowvar=False))
        lmgs.append(lmg)
        r2s.append(lmg.sum())
        shares.append(lmg / lmg.sum())
    north = SegmentFilter().with_dimension("region", ["North"])
    with engine.connect() as conn:
        by_region = drivers.driver_importance(conn, SegmentFilter(), "region", resamples=resamples, seed=seed)
        in_north = drivers.driver_importance(conn, north, resamples=resamples, seed=seed)
    for source in ("responses", "stored sums"):
        if source == "stored sums" and not customer_sums.save_customer_totals(engine):
            assert dialects.is_clickhouse(engine)  # which keeps none
            break
        with engine.connect() as conn:
            assert customer_sums.customer_totals_ready(conn) is (source == "stored sums")
            got = drivers.driver_importance(conn, SegmentFilter(), resamples=resamples, seed=seed, min_n=30)
            regions = drivers.driver_importance(
                conn, SegmentFilter(), "region", resamples=resamples, seed=seed
            )
            chosen = drivers.driver_importance(conn, north, resamples=resamples, seed=seed)
        pd.testing.assert_frame_equal(regions, by_region, check_exact=False, rtol=1e-12, obj=source)
        pd.testing.assert_frame_equal(chosen, in_north, check_exact=False, rtol=1e-12, obj=source)
        got = got.set_index("predictor")
        for j, pillar in enumerate(columns[:3]):
            draws = np.array(shares)[:, j]
            assert got.loc[pillar, "share_low"] == pytest.approx(np.percentile(draws, 2.5), rel=1e-9), source
            assert got.loc[pillar, "share_high"] == pytest.approx(np.percentile(draws, 97.5), rel=1e-9), (
                source
            )
            lmg_low = np.percentile(np.array(lmgs)[:, j], 2.5)
            assert got.loc[pillar, "lmg_low"] == pytest.approx(lmg_low, rel=1e-9), source
        assert got["r2_high"].iloc[0] == pytest.approx(np.percentile(r2s, 97.5), rel=1e-9), source
        assert got["customers"].iloc[0] == 50 and got["n"].iloc[0] == 360, source


def test_bootstrap_intervals_do_not_depend_on_how_many_resamples_are_drawn_at_once(
    duckdb_engine, monkeypatch
):
    # Resamples are drawn in batches sized to the customers (memory); the seeded stream must give
    # the same draws whether a batch holds one resample, seven, or all of them.
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, _responses(300, seed=8))
    results = []
    for cells in (1, 7 * 60, 10**9):
        monkeypatch.setattr(drivers, "_BATCH_CELLS", cells)
        with duckdb_engine.connect() as conn:
            results.append(drivers.driver_importance(conn, SegmentFilter(), resamples=25, seed=3, min_n=30))
    pd.testing.assert_frame_equal(results[0], results[1])
    pd.testing.assert_frame_equal(results[0], results[2])
    assert results[0]["lmg_low"].notna().all()


def test_per_segment_decomposition_flags_small_segments(demo_db_url):
    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        frame = drivers.driver_importance(conn, SegmentFilter(), "region", resamples=20, min_n=30)
    engine.dispose()
    assert {"EMEA", "APAC"} <= set(frame["segment"])
    small = frame[frame["small"]]
    assert small["lmg_low"].isna().all()
    big = frame[~frame["small"]]
    assert big["lmg_low"].notna().all()


def test_item_importance_recodes_reverse_items_like_pandas(demo_db_url, demo_company):
    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        frame = drivers.importance_performance(conn, SegmentFilter()).set_index("name")
    engine.dispose()
    answers = demo_company.answers.merge(demo_company.responses[["response_id", "nps"]], on="response_id")
    part = answers[(answers["item_id"] == "trust_4") & answers["nps"].notna()]
    recoded = 8 - part["value"]
    assert frame.loc["trust_4", "importance"] == pytest.approx(
        np.corrcoef(recoded, part["nps"])[0, 1], rel=1e-6
    )
    assert frame.loc["trust_4", "performance"] == pytest.approx(100 * (recoded.mean() - 1) / 6, rel=1e-6)
    assert set(frame["level"]) == {"pillar", "item"}


def test_an_empty_store_gives_an_empty_frame(engine):
    with engine.connect() as conn:
        assert drivers.driver_importance(conn, SegmentFilter()).empty
        assert drivers.importance_performance(conn, SegmentFilter()).empty


@pytest.mark.parametrize("weighting", ["response", "customer"])
def test_one_read_of_the_customers_sums_gives_the_overall_and_every_segments_figures(demo_db_url, weighting):
    """The Drivers page reads each customer's sums once, with the segments of the dimension it
    shows, for its overall figures and the segments'; they equal the figures read on their own."""
    engine = store.get_engine(demo_db_url)
    flt = SegmentFilter(weighting=Weighting(weighting))
    with engine.connect() as conn:
        read = drivers.customer_moments(conn, flt, "plan")
        for dimension in (None, "plan"):
            alone = drivers.driver_importance(conn, flt, dimension, resamples=60)
            shared = drivers.driver_importance(None, flt, dimension, resamples=60, moments=read)
            pd.testing.assert_frame_equal(alone, shared)
            assert alone["lmg_low"].notna().any()
    engine.dispose()
    with pytest.raises(ValueError, match="read by plan, not region"):
        drivers.driver_importance(None, flt, "region", moments=read)


def test_the_drivers_page_reads_the_customers_sums_once_per_dimension_shown(demo_db_url, monkeypatch):
    """Opening the page reads the sums once (with the segments of the tab's dimension) for the
    cards and the Per segment tab; another dimension reads them once more and leaves the cards."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RELQ_DATABASE_URL", demo_db_url)
    reads = []
    read = drivers.customer_moments

    def counted(conn, flt, dimension=None, pillars=schema.PILLARS):
        reads.append(dimension)
        return read(conn, flt, dimension, pillars)

    monkeypatch.setattr(drivers, "customer_moments", counted)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180).run()
    at.switch_page("pages/drivers.py").run()
    assert not at.exception, [e.value for e in at.exception]
    box = at.selectbox(key="drivers_dimension")
    first, other = box.value, next(o for o in box.options if o != box.value)
    assert reads == [first]
    cards = [m.value for m in at.metric]
    box.select(other).run()
    assert not at.exception, [e.value for e in at.exception]
    assert reads == [first, other]
    assert [m.value for m in at.metric] == cards
    with store.get_engine(demo_db_url).connect() as conn:
        alone = drivers.driver_importance(conn, SegmentFilter())
    assert cards[0] == f"{alone['r2'].iloc[0]:.2f}"
