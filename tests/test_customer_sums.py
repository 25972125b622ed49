"""The SQL path of customer-clustered numbers (per customer first, then over customers) against
outside references, on DuckDB and PostgreSQL; each test's name says which reference.

statsmodels' cluster-robust OLS/WLS on the response rows, scipy's t, statsmodels' Wilson, the
adjusted-Wald NPS interval of Rocks (2016), weightipy's IPF, and a stacked WLS with a period
dummy. Seeds are fixed and printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from relq import store
from relq.analyses import drivers
from relq.cli import main
from relq.exceptions import WeightingError
from relq.measures import clustered, comparisons, customer_sums, metrics
from relq.store import dialects, schema
from relq.store.filters import SegmentFilter, Weighting
from relq.store.schema import PILLARS

SEED = 20250601
MEANS = (*PILLARS, "rq", "ces")
Z975 = stats.norm.ppf(0.975)


# --------------------------------------------------------------------------- data


def _company(seed: int, customers: int = 45, unmatched: int = 6, per_customer=(1, 7)) -> tuple:
    """Customers answering several times (a customer effect), some unmatched responses, two quarters."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(customers)]
    cust = pd.DataFrame(
        {
            "customer_id": ids,
            "region": rng.choice(["North", "South", "East"], customers, p=[0.5, 0.3, 0.2]),
            "plan": rng.choice(["Basic", "Pro"], customers, p=[0.6, 0.4]),
            "annual_value": np.round(rng.uniform(100, 5000, customers), 2),
            "acquired_at": pd.to_datetime("2023-01-01")
            + pd.to_timedelta(rng.integers(0, 700, customers), "D"),
            "churned_at": pd.NaT,
        }
    )
    cust["acquired_at"] = cust["acquired_at"].dt.date
    cust.loc[rng.random(customers) < 0.1, "acquired_at"] = None
    sizes = rng.integers(per_customer[0], per_customer[1], customers)
    who = np.repeat(ids, sizes)
    effect = np.repeat(rng.normal(0, 12, customers), sizes)
    n = who.shape[0] + unmatched
    customer = np.concatenate([who, [None] * unmatched]).astype(object)
    effect = np.concatenate([effect, np.zeros(unmatched)])
    frame = pd.DataFrame(
        {
            "response_id": [f"r{i:05d}" for i in range(n)],
            "customer_id": customer,
            "submitted_at": pd.to_datetime("2025-01-01") + pd.to_timedelta(rng.integers(0, 181 * 24, n), "h"),
        }
    )
    for name in PILLARS:
        frame[name] = np.clip(np.round(60 + effect + rng.normal(0, 15, n), 2), 0, 100)
    frame["rq"] = frame[list(PILLARS)].mean(axis=1)
    frame["nps"] = np.clip(np.round(7 + effect / 6 + rng.normal(0, 2, n)), 0, 10).astype(int)
    frame["csat"] = np.clip(np.round(3.8 + effect / 15 + rng.normal(0, 1, n)), 1, 5).astype(int)
    frame["ces"] = np.clip(np.round(3 - effect / 15 + rng.normal(0, 1.2, n)), 1, 7).astype(int)
    for name in (*PILLARS, "ces", "nps"):
        frame.loc[rng.random(n) < 0.06, name] = np.nan
    frame["rq"] = frame["rq"].where(frame[list(PILLARS)].notna().all(axis=1))
    return cust, frame


def _load(engine, cust: pd.DataFrame, frame: pd.DataFrame) -> None:
    with engine.begin() as conn:
        import_id = store.new_import(conn, file_name="test.csv", file_hash="t", kind="survey")
        store.bulk_insert(conn, schema.customers, cust.assign(import_id=import_id))
        rows = frame.astype({"nps": "Int64", "ces": "Int64", "csat": "Int64"})
        store.bulk_insert(conn, schema.survey_responses, rows.assign(import_id=import_id))


def _groups(customers: pd.Series) -> np.ndarray:
    """Cluster codes: each customer one, each unmatched response its own."""
    codes, _ = pd.factorize(customers)
    codes = codes.copy()
    lone = codes < 0
    codes[lone] = codes.max() + 1 + np.arange(lone.sum())
    return codes


def _score(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name == "nps":
        x = frame["nps"]
        return np.where(x >= 9, 1.0, np.where(x <= 6, -1.0, 0.0))
    if name == "csat":
        return np.where(frame["csat"] >= 4, 1.0, 0.0)
    return frame[name].to_numpy(dtype=float)


def _weights(frame: pd.DataFrame, name: str, scheme: str, omega: pd.Series | None = None) -> np.ndarray:
    answered = frame[name].notna().to_numpy()
    if scheme == "response":
        return np.where(answered, 1.0, np.nan)
    if scheme == "customer":
        return clustered.customer_weights(frame["customer_id"], None, answered)
    return clustered.customer_weights(frame["customer_id"], omega, answered)


def _wls_cluster(frame: pd.DataFrame, name: str, w: np.ndarray):
    keep = ~np.isnan(w)
    part = frame[keep]
    model = sm.WLS(_score(part, name), np.ones((len(part), 1)), weights=w[keep])
    groups = _groups(part["customer_id"])
    return model.fit(cov_type="cluster", cov_kwds={"groups": groups}), len(np.unique(groups)), len(part)


# --------------------------------------------------------------------------- statsmodels cluster-robust


@pytest.mark.parametrize("scheme", ["response", "customer", "value"])
def test_sql_headline_equals_statsmodels_wls_intercept_cluster_robust(engine, scheme):
    # statsmodels' CRV1 for an intercept-only WLS: G/(G−1)·(N−1)/(N−k)·Σ_c(Σ_{i∈c}wᵢeᵢ)²/W²; with
    # k = 1 the (N−1)/(N−k) factor is 1, so it equals C/(C−1)·Σt_c²/W² exactly.
    cust, frame = _company(SEED)
    _load(engine, cust, frame)
    omega = cust.set_index("customer_id")["annual_value"]
    with engine.connect() as conn:
        head = metrics.headline(conn, SegmentFilter(weighting=Weighting(scheme)))
    assert head.responses == len(frame) and head.unmatched == 6
    assert head.left_out == (6 if scheme != "response" else 0)
    for name in (*MEANS, "nps", "csat"):
        fit, clusters, n = _wls_cluster(frame, name, _weights(frame, name, scheme, omega))
        got = head.score(name)
        scale = 1.0 if name in MEANS else 100.0
        assert (got.n, got.customers) == (n, clusters), name
        assert got.estimate == pytest.approx(scale * fit.params[0], rel=1e-10), name
        assert got.var == pytest.approx(fit.cov_params()[0, 0], rel=1e-9), name
        if name in MEANS:
            low, high = stats.t.interval(0.95, clusters - 1, loc=fit.params[0], scale=fit.bse[0])
            assert (got.low, got.high) == pytest.approx((low, high), rel=1e-10), name


def test_one_response_per_customer_sql_intervals_equal_scipy_t_statsmodels_wilson_and_adjusted_wald(engine):
    # One response per customer: the clustered interval is the textbook one (scipy's t, statsmodels'
    # Wilson, the adjusted Wald of Rocks 2016 with n* = n + 3 and ¾ added to each side).
    cust, frame = _company(SEED + 1, customers=120, unmatched=9, per_customer=(1, 2))
    _load(engine, cust, frame)
    with engine.connect() as conn:
        head = metrics.headline(conn)
    for name in MEANS:
        x = frame[name].dropna()
        low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        got = head.score(name)
        assert got.customers == got.n == len(x)
        assert (got.low, got.high) == pytest.approx((low, high), rel=1e-10), name
    top2, n = int((frame["csat"] >= 4).sum()), int(frame["csat"].notna().sum())
    low, high = proportion_confint(top2, n, alpha=0.05, method="wilson")
    assert head.csat.n_eff == n
    assert (head.csat.low, head.csat.high) == pytest.approx((100 * low, 100 * high), rel=1e-10)
    nps = frame["nps"].dropna()
    p_count, d_count, n = int((nps >= 9).sum()), int((nps <= 6).sum()), len(nps)
    n_star = n + 3
    p_star, d_star = (p_count + 0.75) / n_star, (d_count + 0.75) / n_star
    se = math.sqrt((p_star + d_star - (p_star - d_star) ** 2) / n_star)
    assert head.nps.n_eff == n
    assert head.nps.low == pytest.approx(100 * (p_star - d_star - Z975 * se), rel=1e-10)
    assert head.nps.high == pytest.approx(100 * (p_star - d_star + Z975 * se), rel=1e-10)


# --------------------------------------------------------------------------- raking


def _base_and_respondents(cust: pd.DataFrame, frame: pd.DataFrame, since: date, until: date):
    acquired = pd.to_datetime(cust["acquired_at"])
    churned = pd.to_datetime(cust["churned_at"])
    active = (acquired.isna() | (acquired <= pd.Timestamp(until))) & (
        churned.isna() | (churned >= pd.Timestamp(since))
    )
    base = cust[active].set_index("customer_id")
    answering = frame.loc[
        (frame["submitted_at"] >= pd.Timestamp(since))
        & (frame["submitted_at"] < pd.Timestamp(until) + pd.Timedelta(days=1)),
        "customer_id",
    ]
    respondents = cust[cust["customer_id"].isin(answering.dropna())].set_index("customer_id")
    return base, respondents


def test_sql_raking_margins_and_weights_match_weightipy_ipf(engine):
    import weightipy  # pinned in requirements-dev.txt: a missing reference fails, never skips

    cust, frame = _company(SEED + 2, customers=300, per_customer=(1, 4))
    # some customers churned before the period: they are not in its base
    cust["churned_at"] = [date(2024, 6, 30) if i < 30 else None for i in range(len(cust))]
    _load(engine, cust, frame)
    flt = SegmentFilter(
        since=date(2025, 1, 1), until=date(2025, 6, 30), weighting=Weighting("raked", ("region", "plan"))
    )
    with engine.connect() as conn:
        plan = customer_sums.weight_plan(conn, flt)
        head = metrics.headline(conn, flt)
    outcome = plan.rakes[None]
    base, respondents = _base_and_respondents(cust, frame, flt.since, flt.until)
    assert len(base) == 270  # the 30 churned before the period are not in its base
    scheme = weightipy.scheme_from_df(
        base.assign(freq=1.0),
        ["region", "plan"],
        "freq",
        rim_params={"max_iterations": 10000, "convcrit": 0.0},
    )
    theirs = weightipy.weight(respondents, scheme) * len(base) / len(respondents)
    cells = outcome.cells.rename(columns={"d0": "region", "d1": "plan"})
    ours = (
        respondents.reset_index()
        .merge(cells, on=["region", "plan"], how="left")
        .set_index("customer_id")["w"]
    )
    np.testing.assert_allclose(ours.loc[theirs.index].to_numpy(), theirs.to_numpy(), rtol=1e-8)
    margins = outcome.diagnostics.margins
    np.testing.assert_allclose(margins["achieved"], margins["target"], rtol=1e-8)
    for dim in ("region", "plan"):
        np.testing.assert_allclose(
            theirs.groupby(respondents[dim]).sum().sort_index(),
            base[dim].value_counts().sort_index(),
            rtol=1e-8,
        )
    assert outcome.diagnostics.kish_deff == pytest.approx(
        100 / weightipy.weighting_efficiency(theirs), rel=1e-8
    )
    # the raked headline is the WLS cluster-robust mean with these customer weights, split per score
    in_period = frame[
        (frame["submitted_at"] >= "2025-01-01") & (frame["submitted_at"] < "2025-07-01")
    ].reset_index(drop=True)
    for name in ("trust", "nps"):
        fit, clusters, n = _wls_cluster(in_period, name, _weights(in_period, name, "raked", theirs))
        got = head.score(name)
        scale = 1.0 if name in MEANS else 100.0
        assert got.estimate == pytest.approx(scale * fit.params[0], rel=1e-8)
        assert got.var == pytest.approx(fit.cov_params()[0, 0], rel=1e-7)


def test_raking_on_a_dimension_value_without_respondents_says_which_and_shows_no_number(engine):
    cust, frame = _company(SEED + 3)
    extra = pd.DataFrame(
        {
            "customer_id": ["z1", "z2"],
            "region": ["Mars", "Mars"],
            "plan": ["Basic", "Pro"],
            "annual_value": 10.0,
        }
    )
    _load(engine, pd.concat([cust, extra], ignore_index=True), frame)
    with engine.connect() as conn, pytest.raises(WeightingError, match="region = Mars") as info:
        metrics.headline(conn, SegmentFilter(weighting=Weighting("raked")))
    assert "No raked number is shown" in str(info.value)


def test_value_weights_without_annual_values_give_a_sentence(engine):
    cust, frame = _company(SEED + 4)
    _load(engine, cust.assign(annual_value=None), frame)
    with engine.connect() as conn, pytest.raises(WeightingError, match="annual value"):
        metrics.headline(conn, SegmentFilter(weighting=Weighting("value")))


def test_cli_bad_weighting_choices_end_with_one_sentence(duckdb_engine, monkeypatch, capsys):
    cust, frame = _company(SEED + 5)
    _load(duckdb_engine, cust, frame)
    monkeypatch.setenv("RELQ_DATABASE_URL", str(duckdb_engine.url))
    assert main(["report", "--json", "--weight", "raked", "--rake", "planet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("relq: Cannot rake on planet") and "\n" not in err
    assert main(["report", "--json", "--weight", "raked", "--rake", "region"]) == 0
    out = capsys.readouterr().out
    assert '"weight": "raked"' in out and '"kish_deff"' in out


def test_a_filter_leaving_one_customer_gives_the_score_without_an_interval(engine):
    cust, frame = _company(SEED + 6, unmatched=0)
    _load(engine, cust, frame)
    one = cust["customer_id"].iloc[0]
    region = cust["region"].iloc[0]
    with engine.connect() as conn:
        ids = [c for c in cust["customer_id"] if c != one]
        conn.execute(sa.delete(schema.survey_responses).where(schema.survey_responses.c.customer_id.in_(ids)))
        conn.commit()
        head = metrics.headline(conn, SegmentFilter().with_dimension("region", [region]))
    assert head.customers == 1
    assert not math.isnan(
        head.trust_estimate if hasattr(head, "trust_estimate") else head.pillars["trust"].estimate
    )
    assert math.isnan(head.pillars["trust"].low) and math.isnan(head.nps.low)
    assert head.pillars["trust"].sentence().endswith("from 1 customer")


# --------------------------------------------------------------------------- period vs previous


@pytest.mark.parametrize("scheme", ["response", "customer"])
def test_period_vs_previous_sql_equals_statsmodels_stacked_wls_with_period_dummy(engine, scheme):
    # Stack both periods and regress the score on [1, current] by WLS with weights wᵢ/W_k (each
    # period's weights sum to 1), clustered by customer: the slope is ȳ₁ − ȳ₂ and statsmodels' CRV1
    # is G/(G−1)·(N−1)/(N−2)·Σ_c(t_c¹/W₁ − t_c²/W₂)², i.e. ours times (N−1)/(N−2).
    cust, frame = _company(SEED + 7, customers=60)
    _load(engine, cust, frame)
    current = SegmentFilter(since=date(2025, 4, 1), until=date(2025, 6, 29), weighting=Weighting(scheme))
    previous = current.shifted_back()
    with engine.connect() as conn:
        now, before, comps = comparisons.period_deltas(conn, current, previous)
    stamp = frame["submitted_at"]
    period = np.where(
        (stamp >= "2025-04-01") & (stamp < "2025-06-30"), 1, np.where(stamp >= str(previous.since), 2, 0)
    )
    period = np.where(stamp >= "2025-06-30", 0, period)  # after the current period: in neither
    for name in ("trust", "ces", "nps", "csat"):
        parts = []
        for k in (1, 2):
            part = frame[period == k].reset_index(drop=True)
            w = _weights(part, name, scheme)
            keep = ~np.isnan(w)
            part = part[keep].assign(w=w[keep] / w[keep].sum(), current=float(k == 1))
            parts.append(part)
        stacked = pd.concat(parts, ignore_index=True)
        model = sm.WLS(
            _score(stacked, name),
            np.column_stack([np.ones(len(stacked)), stacked["current"]]),
            weights=stacked["w"],
        )
        fit = model.fit(cov_type="cluster", cov_kwds={"groups": _groups(stacked["customer_id"])})
        scale = 1.0 if name in MEANS else 100.0
        got = comps[name]
        n_obs = len(stacked)
        assert got.delta == pytest.approx(scale * fit.params[1], rel=1e-9), name
        se = scale * math.sqrt(fit.cov_params()[1, 1] * (n_obs - 2) / (n_obs - 1))
        assert got.high - got.low == pytest.approx(2 * Z975 * se, rel=1e-8), name
        assert got.p_value == pytest.approx(2 * stats.norm.sf(abs(got.delta) / se), rel=1e-6), name
    assert now.responses == int((period == 1).sum()) and before.responses == int((period == 2).sum())


@pytest.mark.parametrize("scheme", ["response", "customer", "raked"])
def test_period_sums_of_several_dimensions_in_one_query_equal_one_query_per_dimension(engine, scheme):
    # The overview's segment moves ask for every dimension at once; each dimension's rows must be
    # exactly what asking for that dimension alone gives (same sums, same segments, nothing more).
    cust, frame = _company(SEED + 8, customers=60)
    _load(engine, cust, frame)
    current = SegmentFilter(
        since=date(2025, 4, 1), until=date(2025, 6, 29), weighting=Weighting(scheme, ("region",))
    )
    previous = current.shifted_back()
    with engine.connect() as conn:
        together, _ = customer_sums.pair_sums(conn, current, previous, segment=("region", "plan"))
        alone = {
            d: customer_sums.pair_sums(conn, current, previous, segment=d)[0] for d in ("region", "plan")
        }
    assert set(together["dimension"]) == {"region", "plan"}
    for dimension, expected in alone.items():
        got = together[together["dimension"] == dimension].drop(columns="dimension")
        got = got.sort_values("segment").reset_index(drop=True)
        expected = expected.sort_values("segment").reset_index(drop=True)
        assert got["segment"].tolist() == expected["segment"].astype(str).tolist()
        pd.testing.assert_frame_equal(
            got.drop(columns="segment").astype(float),
            expected[got.columns.drop("segment")].astype(float),
            rtol=1e-12,
        )


@pytest.mark.parametrize("scheme", ["response", "customer", "raked"])
def test_the_total_row_of_the_period_sums_by_dimension_is_the_views_own_period_sums(engine, scheme):
    # The overview's cards take the view's two-period sums from the read of its segment moves: the
    # row of every customer (dimension NULL) must be what the view's own read gives, exactly —
    # customers without a region or plan included, unlike in the segments' rows.
    cust, frame = _company(SEED + 9, customers=60)
    cust.loc[cust.index[:7], "region"] = None
    _load(engine, cust, frame)
    current = SegmentFilter(
        since=date(2025, 4, 1), until=date(2025, 6, 29), weighting=Weighting(scheme, ("plan",))
    )
    previous = current.shifted_back()
    with engine.connect() as conn:
        together, _ = customer_sums.pair_sums(conn, current, previous, segment=("region", "plan"), total=True)
        alone, _ = customer_sums.pair_sums(conn, current, previous)
        without, _ = customer_sums.pair_sums(conn, current, previous, segment=("region", "plan"))
    total = together[together["dimension"].isna()]
    assert len(total) == 1 and total["segment"].isna().all()
    keys = ["dimension", "segment"]
    segments = together[together["dimension"].notna()].sort_values(keys).reset_index(drop=True)
    without = without.sort_values(keys).reset_index(drop=True)
    assert segments[keys].equals(without[keys])
    pd.testing.assert_frame_equal(
        segments.drop(columns=keys).astype(float), without.drop(columns=keys).astype(float), rtol=1e-12
    )
    got = total.drop(columns=["dimension", "segment"]).reset_index(drop=True).astype(float)
    pd.testing.assert_frame_equal(got, alone[got.columns].astype(float), rtol=1e-12)
    region = together[together["dimension"] == "region"]
    assert region["c_responses"].sum() < float(total["c_responses"].iloc[0])  # the 7 without a region


# --------------------------------------------------------------------------- DuckDB = PostgreSQL


def _numbers(conn, flt: SegmentFilter, period=(date(2026, 1, 1), date(2026, 6, 30))) -> dict:
    out = {}
    head = metrics.headline(conn, flt)
    for name in (*MEANS, "nps", "csat"):
        s = head.score(name)
        out.update(
            {
                f"{name}.{k}": getattr(s, k)
                for k in ("estimate", "low", "high", "n", "customers", "n_eff", "var")
            }
        )
    seg = comparisons.segment_scores(conn, flt, "plan").set_index(["value", "metric"])
    for key, r in seg.iterrows():
        out.update(
            {f"seg.{key}.{c}": r[c] for c in ("estimate", "low", "high", "delta", "p_value", "q_value")}
        )
    trend = metrics.trend(conn, flt).set_index(["period", "metric"])
    for key, r in trend.iterrows():
        out.update({f"trend.{key}.{c}": r[c] for c in ("estimate", "low", "high", "n")})
    period = comparisons.period_comparison(
        conn, replace(flt, since=period[0], until=period[1], themes=())
    ).set_index("metric")
    for key, r in period.iterrows():
        out.update(
            {f"period.{key}.{c}": r[c] for c in ("estimate", "delta", "delta_low", "p_value", "q_value")}
        )
    # the Drivers page's per-customer sums over the responses having every pillar and NPS, by
    # position: the seeded bootstrap draws rows by position, so the order must agree too
    moments = drivers.customer_moments(conn, flt, "plan")
    for i, row in enumerate(moments.to_dict("records")):
        unit = f"drv.{i}.{row['segment']}"
        out.update({f"{unit}.{c}": v for c, v in row.items() if c != "segment"})
    return out


@pytest.mark.parametrize("scheme", ["response", "raked"])
def test_duckdb_and_postgresql_agree_to_1e_9(duckdb_demo, demo_postgres_url, scheme):
    flt = SegmentFilter(weighting=Weighting(scheme))
    with duckdb_demo.connect() as conn:
        duck = _numbers(conn, flt)
    pg_engine = sa.create_engine(demo_postgres_url)
    try:
        with pg_engine.connect() as conn:
            pg = _numbers(conn, flt)
    finally:
        pg_engine.dispose()
    assert set(duck) == set(pg)
    for key, value in duck.items():
        other = pg[key]
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(float(other)), key
        else:
            assert float(other) == pytest.approx(float(value), rel=1e-9, abs=1e-12), key


def test_design_effect_is_statsmodels_cluster_robust_over_plain_ols_variance(duckdb_engine):
    # deff = var(clustered) / (s²/n): statsmodels' cluster-robust variance of an intercept-only OLS
    # over its plain (nonrobust) variance, whose s² has n − 1 degrees of freedom.
    cust, frame = _company(SEED + 8)
    _load(duckdb_engine, cust, frame)
    with duckdb_engine.connect() as conn:
        effects = metrics.design_effects(conn).set_index("metric")
    for name in ("trust", "ces", "nps", "csat"):
        keep = frame[name].notna().to_numpy()
        part = frame[keep]
        exog = np.ones((len(part), 1))
        groups = _groups(part["customer_id"])
        robust = sm.OLS(_score(part, name), exog).fit(cov_type="cluster", cov_kwds={"groups": groups})
        plain = sm.OLS(_score(part, name), exog).fit()
        deff = robust.cov_params()[0, 0] / plain.cov_params()[0, 0]
        assert effects.loc[name, "deff"] == pytest.approx(deff, rel=1e-9), name
        assert effects.loc[name, "n_eff"] == pytest.approx(len(part) / deff, rel=1e-9), name


def test_read_frame_gives_the_rows_sqlalchemy_gives_with_in_lists_and_dates(engine):
    # DuckDB hands its result over column-wise; the bound parameters (an IN list, dates) must be
    # passed exactly as SQLAlchemy would pass them.
    cust, frame = _company(SEED + 9)
    _load(engine, cust, frame)
    flt = SegmentFilter(since=date(2025, 2, 1), until=date(2025, 4, 30)).with_dimension(
        "region", ["North", "East"]
    )
    R = schema.survey_responses
    stmt = (
        sa.select(R.c.response_id, R.c.customer_id, R.c.trust, R.c.nps)
        .where(flt.response_clause())
        .order_by(R.c.response_id)
    )
    with engine.connect() as conn:
        got = store.read_frame(conn, stmt)
        rows = conn.execute(stmt).all()
    assert len(got) == len(rows) > 10
    assert got["response_id"].tolist() == [r.response_id for r in rows]
    np.testing.assert_allclose(
        got["trust"].to_numpy(float), [np.nan if r.trust is None else r.trust for r in rows]
    )


# --------------------------------------------------------------------------- the stored month sums


def _moves(conn, flt: SegmentFilter) -> dict:
    """The executive overview's two quarters per segment of every dimension the view leaves open,
    and the view's own row, from one read (board_report.period_sums_by_dimension): every sum."""
    from relq.outputs import board_report

    (cs, cu), (ps, pu) = customer_sums.last_full_quarters(store.data_end(conn))
    current, previous = replace(flt, since=cs, until=cu), replace(flt, since=ps, until=pu)
    names = board_report.unfiltered_dimensions(current, previous)
    frame = board_report.period_sums_by_dimension(conn, current, previous, names)
    out = {}
    for row in frame.to_dict("records"):
        unit = f"{row['dimension']}.{row['segment']}"
        out.update(
            {
                f"{unit}.{k}": (0.0 if v is None or v != v else v)
                for k, v in row.items()
                if k not in ("dimension", "segment")
            }
        )
    return out


def _month_sums_company(seed: int) -> tuple:
    cust, frame = _company(seed, customers=80)
    rng = np.random.default_rng(seed)
    frame["wave"] = np.where(frame["submitted_at"] < "2025-04-01", "2025-Q1", "2025-Q2")
    frame["flag_speeder"] = rng.random(len(frame)) < 0.1
    frame["flag_duplicate"] = rng.random(len(frame)) < 0.05
    return cust, frame


def _assert_same_numbers(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(float(got[key])), key
        else:
            assert float(got[key]) == pytest.approx(float(value), rel=1e-9, abs=1e-12), key


# Every weighting on DuckDB and PostgreSQL; ClickHouse keeps no month sums, so one weighting
# shows that it builds none and reads the responses (its numbers are the other engines', see
# test_clickhouse.py).
@pytest.mark.parametrize(
    "engine, scheme",
    [
        *[
            (name, scheme)
            for name in ("duckdb", "postgres")
            for scheme in ("response", "customer", "value", "raked")
        ],
        ("chdb", "response"),
    ],
    indirect=["engine"],
)
def test_stored_month_sums_give_the_numbers_of_the_responses_themselves_and_stop_when_data_change(
    engine, scheme, statements
):
    """The survey scores' month sums stand in for the responses wherever a view's dates fall on
    month boundaries: headline, trend by month, segment scores with their tests and the quarter vs
    the one before equal those grouped from every response (the statsmodels references above check
    that path) — whole company, one region, one quarter, one wave, speeders left out — under each
    weighting, and for the customers of a quadrant; so do each customer's whole-history sums for the
    views without a period, wave or flag restriction, and the segment cells' sums over customers for
    the views counting each response once that choose segments only (the company, a region; by month
    a quarter too). A view starting mid-month reads the responses.
    Once the data change the sums are not read: the next response counts at once, before they are
    rebuilt."""
    cust, frame = _month_sums_company(SEED + 9)
    _load(engine, cust, frame)
    weighting = Weighting(scheme, ("region",))
    quarter = (date(2025, 4, 1), date(2025, 6, 30))
    views = {
        "all": SegmentFilter(weighting=weighting),
        "North": SegmentFilter(weighting=weighting).with_dimension("region", ["North"]),
        "Q2": SegmentFilter(since=quarter[0], until=quarter[1], weighting=weighting),
        "wave": SegmentFilter(waves=("2025-Q2",), weighting=weighting),
        "no speeders": SegmentFilter(exclude_flags=("flag_speeder",), weighting=weighting),
        # the quadrant's customers come from their latest responses, a query of the responses
        "quadrant": SegmentFilter(quadrant="x_high_y_low", weighting=weighting),
    }
    mid_month = SegmentFilter(since=date(2025, 2, 10), until=date(2025, 5, 20), weighting=weighting)
    with engine.connect() as conn:
        raw = {name: _numbers(conn, flt, quarter) for name, flt in views.items()}
        raw_mid = metrics.headline(conn, mid_month)
        # the executive overview's quarters and their segment moves (every segment dimension at once)
        (now, _), (before, _) = customer_sums.last_full_quarters(store.data_end(conn))
        raw_moves = {name: _moves(conn, flt) for name, flt in views.items()}
    stored = not dialects.is_clickhouse(engine)  # ClickHouse keeps no month sums
    assert customer_sums.save_response_sums(engine) is stored
    statements.clear()
    with engine.connect() as conn:
        assert customer_sums.response_sums_ready(conn) is stored
        for name, flt in views.items():
            _assert_same_numbers(_numbers(conn, flt, quarter), raw[name])
    assert any("FROM response_sums" in s for s in statements) is stored

    def sent_per_view(numbers, expected: dict) -> dict[str, str]:
        """Each view's figures (``numbers(conn, flt)``) checked against ``expected``'s; the SQL it sent."""
        sent = {}
        for name, flt in views.items():
            statements.clear()
            with engine.connect() as conn:
                _assert_same_numbers(numbers(conn, flt), expected[name])
            sent[name] = "\n".join(statements)
        return sent

    def all_numbers(conn, flt: SegmentFilter) -> dict:
        return _numbers(conn, flt, quarter)

    # each customer's whole-history sums stand in too, for the views without a period, wave, flag
    # or theme restriction (the company, a region, a quadrant's customers): the same numbers
    assert customer_sums.save_customer_totals(engine) is stored
    with engine.connect() as conn:
        assert customer_sums.customer_totals_ready(conn) is stored
    for name, sql in sent_per_view(all_numbers, raw).items():
        assert ("FROM customer_totals" in sql) is (stored and name in ("all", "North", "quadrant")), name
    # the segment cells' sums over customers, for the views counting each response once that choose
    # segments only: the whole history (headline, segment scores) and by month (trend) — the same;
    # the stored quarters: the overview's (and the period comparison's when it is theirs)
    assert customer_sums.save_segment_sums(engine) is stored
    with engine.connect() as conn:
        assert customer_sums.segment_sums_ready(conn) is stored
    sent, moved = sent_per_view(all_numbers, raw), sent_per_view(_moves, raw_moves)
    fits = stored and scheme == "response"
    for name in views:
        assert ("FROM segment_months" in sent[name]) is (fits and name in ("all", "North", "Q2")), name
        assert ("FROM segment_totals" in sent[name]) is (fits and name in ("all", "North")), name
        quarters = "FROM segment_quarters" in moved[name]
        assert quarters is (fits and name in ("all", "North", "Q2")), name  # Q2: its period replaced
    assert (now, before) == (date(2025, 4, 1), date(2025, 1, 1))  # the period comparison's quarters
    statements.clear()
    with engine.connect() as conn:
        assert not customer_sums.stored_sums_fit(mid_month)
        got = metrics.headline(conn, mid_month)
    assert not any("FROM response_sums" in s for s in statements)
    assert got.score("trust").estimate == pytest.approx(raw_mid.score("trust").estimate, rel=1e-12)
    # one more response, in a new import: counted at once, before the sums are rebuilt
    extra = frame.iloc[[0]].assign(response_id="r-new", submitted_at=pd.Timestamp("2025-05-02 10:00"))
    _load(engine, cust.iloc[0:0], extra)
    with engine.begin() as conn:
        store.note_data_change(conn, "import")
    with engine.connect() as conn:
        assert not customer_sums.response_sums_ready(conn)
        assert not customer_sums.customer_totals_ready(conn)
        assert not customer_sums.segment_sums_ready(conn)
        assert metrics.headline(conn, views["all"]).responses == len(frame) + 1
    customer_sums.save_response_sums(engine)
    customer_sums.save_customer_totals(engine)
    with engine.connect() as conn:
        assert customer_sums.response_sums_ready(conn) is stored
        assert customer_sums.customer_totals_ready(conn) is stored
        assert metrics.headline(conn, views["all"]).responses == len(frame) + 1
