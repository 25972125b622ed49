"""Retention and churn (relq.analyses.retention, relq.analyses.survival, relq.analyses.service) against hand-worked examples,
pandas references and lifelines, on DuckDB and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import restricted_mean_survival_time

from relq import store
from relq.analyses import retention, service, survival
from relq.store import schema
from relq.store.filters import SegmentFilter

FIXTURES = Path(__file__).parent / "fixtures" / "retention"


def _load(engine, **frames: pd.DataFrame) -> None:
    with engine.begin() as conn:
        for name, frame in frames.items():
            store.bulk_insert(conn, schema.metadata.tables[name], frame)


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / name, dtype={"customer_id": str})


def _load_demo(engine, company) -> None:
    store.load_demo(engine, company)


# --------------------------------------------------------------------------- cohorts

# Hand-computed from tests/fixtures/retention/transactions.csv (data end 2024-04-30):
# 2024-01: A (Jan, Feb, Apr), B (Jan, Mar), C (Jan)  -> k0 3/3, k1 A, k2 B, k3 A
# 2024-02: D (Feb, Mar), E (Feb, Apr)                -> k0 2/2, k1 D, k2 E
# 2024-04: F (Apr)                                   -> k0 1/1
TRANSACTIONS_ONLY = {
    "2024-01": {"size": 3, "active_share": [1.0, 1 / 3, 1 / 3, 1 / 3]},
    "2024-02": {"size": 2, "active_share": [1.0, 0.5, 0.5]},
    "2024-04": {"size": 1, "active_share": [1.0]},
}


def test_cohort_shares_match_hand_computed_on_a_transactions_only_shop(engine):
    _load(engine, transactions=_csv("transactions.csv"))
    with engine.connect() as conn:
        basis = retention.churn_basis(conn)
        frame = retention.cohort_activity(conn, SegmentFilter(), basis)
    assert basis.kind == "inactivity" and basis.end == date(2024, 4, 30)
    got = retention.cohort_report(frame)
    assert got.keys() == TRANSACTIONS_ONLY.keys()
    for cohort, expected in TRANSACTIONS_ONLY.items():
        assert got[cohort]["size"] == expected["size"]
        assert got[cohort]["active_share"] == pytest.approx(expected["active_share"])


def test_cohorts_mix_crm_rows_and_customers_known_only_from_purchases_hand_computed(engine):
    # G: acquired 2023-12-20, buys in Jan and Mar -> [0, 1, 0, 1, 0]; H: no acquired_at, first
    # purchase 2024-03-20 -> cohort 2024-03 [1, 0]; I: no acquired_at and no purchase -> no cohort.
    _load(
        engine,
        customers=_csv("customers.csv"),
        transactions=pd.concat([_csv("transactions.csv"), _csv("transactions_more.csv")]),
    )
    with engine.connect() as conn:
        got = retention.cohort_report(retention.cohort_activity(conn))
    assert got["2023-12"] == {"size": 1, "active_share": [0.0, 1.0, 0.0, 1.0, 0.0]}
    assert got["2024-03"] == {"size": 1, "active_share": [1.0, 0.0]}
    assert got["2024-01"]["size"] == 3 and sum(v["size"] for v in got.values()) == 8


def _pandas_cohorts(company) -> dict:
    """The Methodology page's cohort definition written directly in pandas."""
    customers, tx = company.customers, company.transactions
    end = max(
        pd.Timestamp(tx["occurred_at"].max()),
        pd.Timestamp(company.responses["submitted_at"].max()),
        pd.Timestamp(company.tickets["opened_at"].max()),
    )
    first = tx.groupby("customer_id")["occurred_at"].min()
    start = pd.to_datetime(customers.set_index("customer_id")["acquired_at"]).combine_first(first)
    cohort = start.dt.to_period("M")
    months = pd.DataFrame(
        {"customer_id": tx["customer_id"], "m": pd.to_datetime(tx["occurred_at"]).dt.to_period("M")}
    )
    months["cohort"] = months["customer_id"].map(cohort)
    months["k"] = (months["m"] - months["cohort"]).map(lambda x: x.n)
    active = months[months["k"] >= 0].drop_duplicates(["customer_id", "k"]).groupby(["cohort", "k"]).size()
    out = {}
    last = end.to_period("M")
    for c, size in cohort.value_counts().sort_index().items():
        shares = [active.get((c, k), 0) / size for k in range((last - c).n + 1)]
        out[str(c)] = {"size": int(size), "active_share": shares}
    return out


def test_cohorts_equal_a_pandas_reference_on_the_demo_company(engine, demo_company):
    _load_demo(engine, demo_company)
    with engine.connect() as conn:
        got = retention.cohort_report(retention.cohort_activity(conn))
    expected = _pandas_cohorts(demo_company)
    assert got.keys() == expected.keys()
    for cohort in expected:
        assert got[cohort]["size"] == expected[cohort]["size"]
        np.testing.assert_allclose(got[cohort]["active_share"], expected[cohort]["active_share"], atol=1e-12)


def test_report_json_carries_cohorts_via_cli(tmp_path, monkeypatch, capsys):
    from relq.cli import main

    url = f"duckdb:///{tmp_path / 'shop.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    _load(engine, transactions=_csv("transactions.csv"))
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    assert main(["report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cohorts"].keys() == TRANSACTIONS_ONLY.keys()
    for cohort, expected in TRANSACTIONS_ONLY.items():
        assert report["cohorts"][cohort]["size"] == expected["size"]
        assert report["cohorts"][cohort]["active_share"] == pytest.approx(expected["active_share"])


# --------------------------------------------------------------------------- lifetimes


def test_inactivity_durations_match_hand_computed(engine):
    # No churned_at anywhere: churned once 30 days pass after the last purchase (end 2024-04-30).
    _load(engine, transactions=_csv("transactions.csv"))
    with engine.connect() as conn:
        basis = retention.churn_basis(conn, inactive_days=30)
        table = survival.duration_table(conn, basis=basis)
    expected = {  # customer: (duration days, churned)
        "A": (116, 0),  # 01-05 .. 04-30, last purchase 04-01 is under 30 days before the end
        "B": (78, 1),  # 01-15 .. 03-03 + 30 = 04-02
        "C": (30, 1),  # 01-31 .. 03-01
        "D": (73, 1),  # 02-01 .. 03-15 + 30 = 04-14
        "E": (76, 0),  # 02-14 .. 04-30
        "F": (20, 0),  # 04-10 .. 04-30
    }
    reference = (
        pd.DataFrame(expected.values(), columns=["duration", "event"])
        .value_counts()
        .rename("weight")
        .reset_index()
        .assign(segment="All customers")
    )
    pd.testing.assert_frame_equal(
        table,
        reference[["segment", "duration", "event", "weight"]]
        .sort_values(["duration", "event"])
        .reset_index(drop=True),
    )


def _pandas_durations(company, by: str) -> pd.DataFrame:
    c = company.customers.copy()
    end = max(
        pd.Timestamp(company.transactions["occurred_at"].max()),
        pd.Timestamp(company.responses["submitted_at"].max()),
        pd.Timestamp(company.tickets["opened_at"].max()),
    ).normalize()
    start = pd.to_datetime(c["acquired_at"]).dt.normalize()
    churned_at = pd.to_datetime(c["churned_at"]).dt.normalize()
    event = churned_at.notna() & (churned_at <= end)
    stop = churned_at.where(event, end)
    frame = pd.DataFrame(
        {"segment": c[by].astype(str), "duration": (stop - start).dt.days, "event": event.astype(int)}
    )[start <= end]
    out = frame.value_counts().rename("weight").reset_index()
    return out.astype({"duration": int, "event": int, "weight": int}).sort_values(
        ["segment", "duration", "event"]
    )


def test_duration_table_matches_a_pandas_reference(engine, demo_company):
    _load_demo(engine, demo_company)
    with engine.connect() as conn:
        table = survival.duration_table(conn, by="plan")
    expected = _pandas_durations(demo_company, "plan").reset_index(drop=True)
    pd.testing.assert_frame_equal(table, expected)


# --------------------------------------------------------------------------- Kaplan–Meier

# Six subjects: 3, 5, 5+, 7, 9+, 11 (+ = censored). Product limit:
#   t=3: 6 at risk, 1 event -> 5/6            = 0.8333
#   t=5: 5 at risk, 1 event -> 5/6 · 4/5      = 0.6667   (the 5+ is censored after the event)
#   t=7: 3 at risk, 1 event -> 0.6667 · 2/3   = 0.4444
#   t=11: 1 at risk, 1 event -> 0
# Restricted mean to 11: 3·1 + 2·5/6 + 2·2/3 + 4·4/9 = 7.7778; median = 7.
# Klein & Moeschberger variance: A(3)=4.7778, A(5)=3.1111, A(7)=1.7778 ->
#   4.7778²/30 + 3.1111²/20 + 1.7778²/6 = 1.7716, se = 1.3310.
SIX = pd.DataFrame({"duration": [3, 5, 5, 7, 9, 11], "event": [1, 1, 0, 1, 0, 1]})


def test_km_curve_matches_hand_worked_product_limit_and_lifelines():
    table = SIX.groupby(["duration", "event"]).size().rename("weight").reset_index().assign(segment="all")
    kmf = survival.km_fit(table["duration"], table["event"], table["weight"])
    at = kmf.survival_function_at_times([0, 3, 4, 5, 7, 9, 11]).to_numpy()
    np.testing.assert_allclose(at, [1, 5 / 6, 5 / 6, 2 / 3, 4 / 9, 4 / 9, 0], atol=1e-12)
    reference = KaplanMeierFitter().fit(SIX["duration"], SIX["event"])
    pd.testing.assert_series_equal(
        kmf.survival_function_.iloc[:, 0], reference.survival_function_.iloc[:, 0], check_names=False
    )
    result = survival.kaplan_meier(table)
    row = result.summary.iloc[0]
    assert row["median_months"] * survival.DAYS_PER_MONTH == pytest.approx(7)
    assert row["rmst_months"] * survival.DAYS_PER_MONTH == pytest.approx(70 / 9)
    assert restricted_mean_survival_time(reference, t=11) == pytest.approx(70 / 9)
    rmst, se = survival.restricted_mean(kmf, 11)
    assert se == pytest.approx(1.3310, abs=5e-4)
    assert row["customers"] == 6 and row["churned"] == 4


def test_weighted_km_and_logrank_match_lifelines_on_raw_rows(demo_company, duckdb_engine):
    _load_demo(duckdb_engine, demo_company)
    with duckdb_engine.connect() as conn:
        table = survival.duration_table(conn, by="plan")
    raw = table.loc[table.index.repeat(table["weight"])]
    result = survival.kaplan_meier(table)
    reference = multivariate_logrank_test(raw["duration"], raw["segment"], raw["event"])
    assert result.logrank_p == pytest.approx(reference.p_value, rel=1e-9)
    assert result.logrank_statistic == pytest.approx(reference.test_statistic, rel=1e-9)
    for plan in table["segment"].unique():
        part = raw[raw["segment"] == plan]
        kmf = KaplanMeierFitter().fit(part["duration"], part["event"])
        curve = result.curves[result.curves["segment"] == plan]
        days = np.round(curve["months"].to_numpy() * survival.DAYS_PER_MONTH, 6)
        np.testing.assert_allclose(
            curve["survival"], kmf.survival_function_at_times(days).to_numpy(), atol=1e-12
        )
        median = kmf.median_survival_time_
        got = result.summary.set_index("segment").loc[plan, "median_months"]
        assert (
            (got is None or np.isnan(got))
            if np.isinf(median)
            else got * survival.DAYS_PER_MONTH == pytest.approx(median)
        )
    assert len(result.curves) < 20_000
    assert set(result.pairwise.columns) == {"a", "b", "statistic", "p", "q"} and len(result.pairwise) == 3


# --------------------------------------------------------------------------- Cox


def _pandas_cox_table(company) -> pd.DataFrame:
    r = company.responses
    r = r[r["customer_id"].notna() & r[["trust", "commitment", "satisfaction"]].notna().all(axis=1)]
    first = r.sort_values(["submitted_at", "response_id"]).drop_duplicates("customer_id")
    d = _pandas_durations_per_customer(company)
    m = first.merge(d, on="customer_id")
    survey_day = pd.to_datetime(m["submitted_at"]).dt.normalize()
    m["duration"] = (m["stop"] - survey_day).dt.days
    m = m[m["duration"] >= 0]
    out = m[["customer_id", "duration", "event", "trust", "commitment", "satisfaction"]]
    return out.sort_values("customer_id").reset_index(drop=True).astype({"duration": int, "event": int})


def _pandas_durations_per_customer(company) -> pd.DataFrame:
    c = company.customers
    end = max(
        pd.Timestamp(company.transactions["occurred_at"].max()),
        pd.Timestamp(company.responses["submitted_at"].max()),
        pd.Timestamp(company.tickets["opened_at"].max()),
    ).normalize()
    churned_at = pd.to_datetime(c["churned_at"]).dt.normalize()
    event = churned_at.notna() & (churned_at <= end)
    return pd.DataFrame(
        {"customer_id": c["customer_id"], "stop": churned_at.where(event, end), "event": event.astype(int)}
    )


def test_cox_hazard_ratios_from_sql_table_equal_coxphfitter_on_pandas_table(engine, demo_company):
    _load_demo(engine, demo_company)
    with engine.connect() as conn:
        table = survival.cox_table(conn)
    expected = _pandas_cox_table(demo_company)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, atol=1e-9)
    result = survival.cox_pillars(table)
    data = expected.drop(columns="customer_id").astype(float)
    data[["trust", "commitment", "satisfaction"]] /= 10
    reference = CoxPHFitter().fit(data, "duration", "event").summary
    np.testing.assert_allclose(result.hazard_ratios["hr"], reference["exp(coef)"], rtol=1e-6)
    np.testing.assert_allclose(result.hazard_ratios["low"], reference["exp(coef) lower 95%"], rtol=1e-6)
    assert (result.hazard_ratios["hr"] < 1).all()  # the demo's churn hazard falls as the pillars rise
    assert result.ph_sentence.endswith(".") and len(result.ph_p) == 3
    sampled = survival.cox_pillars(table, ph_sample=500)  # the large-store path: check on a sample
    np.testing.assert_allclose(sampled.hazard_ratios["hr"], result.hazard_ratios["hr"])
    assert "random 500 of the" in sampled.ph_sentence


# --------------------------------------------------------------------------- at risk

END = date(2025, 6, 30)


def _day(days_before_end: int) -> pd.Timestamp:
    return pd.Timestamp(END - timedelta(days=days_before_end)) + pd.Timedelta(hours=12)


def test_at_risk_reasons_on_hand_built_data(engine):
    customers = pd.DataFrame(
        {
            "customer_id": ["X", "Y", "Y2", "Z", "U", "V", "W"],
            "company": list("XYQZUVW"),
            "owner": ["Ann", "Ben", "Ben", "Cy", "Ann", "Cy", "Ben"],
            "acquired_at": [date(2024, 1, 1)] * 7,
            "churned_at": [None, None, None, None, None, date(2025, 3, 1), None],
            "annual_value": [1000, 5000, 100, 3000, 4000, 9000, 2000],
        }
    )
    tx = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(7)],
            "customer_id": ["X", "Y", "Y2", "Z", "U", "V", "W"],
            "occurred_at": [_day(100), _day(5), _day(5), _day(10), _day(120), _day(200), _day(0)],
            "amount": [10.0] * 7,
        }
    )
    rows = [  # customer, days before end, rq, nps
        ("Y", 200, 70.0, 8),
        ("Y", 20, 60.0, 8),  # RQ fell 10
        ("Y2", 200, 70.0, 8),
        ("Y2", 20, 67.0, 8),  # fell 3 < 5: fine
        ("Z", 200, 60.0, 9),
        ("Z", 20, 61.0, 3),  # detractor now
        ("U", 30, 55.0, 5),  # quiet and a detractor
        ("W", 200, 60.0, 9),
        ("W", 20, 65.0, 9),  # all well
        ("V", 150, 20.0, 0),  # churned: never listed
    ]
    responses = pd.DataFrame(
        {
            "response_id": [f"r{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "submitted_at": [_day(r[1]) for r in rows],
            "rq": [r[2] for r in rows],
            "nps": [r[3] for r in rows],
        }
    )
    _load(engine, customers=customers, transactions=tx, survey_responses=responses)
    with engine.connect() as conn:
        risk = retention.at_risk_customers(conn, days=90, rq_drop=5)
    got = dict(zip(risk["customer_id"], risk["reasons"], strict=True))
    assert got == {
        "Y": "RQ fell 70 → 60",
        "U": "no purchase in 120 days; detractor (NPS 5)",
        "Z": "detractor (NPS 3)",
        "X": "no purchase in 100 days",
    }
    assert list(risk["customer_id"]) == ["Y", "U", "Z", "X"]  # by annual value
    assert list(risk["owner"]) == ["Ben", "Ann", "Cy", "Ann"]
    with engine.connect() as conn:
        assert set(retention.at_risk_customers(conn, days=90, rq_drop=0)["customer_id"]) == {
            "Y",
            "Y2",
            "U",
            "Z",
            "X",
        }
        assert set(retention.at_risk_customers(conn, days=110, rq_drop=50)["customer_id"]) == {"U", "Z"}


def test_at_risk_on_a_transactions_only_shop_hand_computed(engine):
    # Days since the last purchase at the end (2024-04-30): A 29, B 58, C 90, D 46, E 0, F 20.
    _load(engine, transactions=_csv("transactions.csv"))
    with engine.connect() as conn:
        risk = retention.at_risk_customers(conn, days=45)
    assert dict(zip(risk["customer_id"], risk["reasons"], strict=True)) == {
        "C": "no purchase in 90 days",
        "B": "no purchase in 58 days",
        "D": "no purchase in 46 days",
    }


# --------------------------------------------------------------------------- rates, segments, service, CLV


def test_retention_rates_follow_the_design_formula_with_wilson_intervals(engine):
    # Contract basis. Jan: P, Q, R join. Feb: S joins; Q churns. Mar: T joins and churns in March.
    customers = pd.DataFrame(
        {
            "customer_id": list("PQRST"),
            "acquired_at": [
                date(2024, 1, 3),
                date(2024, 1, 9),
                date(2024, 1, 20),
                date(2024, 2, 2),
                date(2024, 3, 2),
            ],
            "churned_at": [None, date(2024, 2, 10), None, None, date(2024, 3, 20)],
        }
    )
    tx = pd.DataFrame(
        {
            "transaction_id": ["e"],
            "customer_id": ["P"],
            "occurred_at": [pd.Timestamp("2024-04-30")],
            "amount": [1.0],
        }
    )
    _load(engine, customers=customers, transactions=tx)
    with engine.connect() as conn:
        rates = retention.retention_rates(conn, freq="month")
    ret = rates[rates["metric"] == "retention"].set_index(
        rates[rates["metric"] == "retention"]["period"].dt.strftime("%Y-%m")
    )
    # Feb: start 3 (P,Q,R); end 3 (P,R,S); new 1 -> (3-1)/3. Mar: start 3; end 3 (P,R,S); new 1 (T) -> 2/3.
    # Apr: start 3, end 3, new 0 -> 1.
    assert ret.loc["2024-02", ["at_start", "at_end", "new", "churned"]].tolist() == [3, 3, 1, 1]
    assert ret.loc["2024-02", "estimate"] == pytest.approx(100 * 2 / 3)
    assert ret.loc["2024-03", "estimate"] == pytest.approx(100 * 2 / 3)
    assert ret.loc["2024-04", "estimate"] == pytest.approx(100.0)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(2, 3, method="wilson")
    assert ret.loc["2024-02", ["low", "high"]].tolist() == pytest.approx([100 * low, 100 * high])
    churn = rates[(rates["metric"] == "churn")]
    assert churn["estimate"].round(6).tolist() == pytest.approx([0.0, 100 / 3, 0.0, 0.0][-len(churn) :])


def test_derived_segments_service_and_lifetime_value_on_demo(duckdb_engine, demo_company):
    _load_demo(duckdb_engine, demo_company)
    with duckdb_engine.connect() as conn:
        seg = retention.derived_segments(conn)
        quality = service.ticket_quality(conn, by="region")
        overall = service.ticket_quality(conn)
        bands = service.satisfaction_by_response_time(conn)
        clv = survival.lifetime_value(conn, by="plan")
    stages = seg[seg["dimension"] == "lifecycle_stage"]
    assert set(stages["value"]) <= set(retention.LIFECYCLE_DEFINITIONS)
    assert stages["customers"].sum() == len(demo_company.customers)
    assert set(seg[seg["dimension"] == "value_tier"]["value"]) <= set(retention.VALUE_TIER_DEFINITIONS)
    # pandas reference for the tickets
    t = demo_company.tickets
    hours = (
        pd.to_datetime(t["first_response_at"]) - pd.to_datetime(t["opened_at"])
    ).dt.total_seconds() / 3600
    assert overall.loc[0, "tickets"] == len(t)
    assert overall.loc[0, "first_response_median_h"] == pytest.approx(hours.median(), rel=1e-6)
    assert overall.loc[0, "first_response_p90_h"] == pytest.approx(hours.quantile(0.9), rel=1e-6)
    assert overall.loc[0, "resolution_rate"] == pytest.approx(100 * t["resolved_at"].notna().mean())
    assert quality["tickets"].sum() == len(t)
    assert len(bands) >= 3 and (bands["low"] <= bands["estimate"]).all()
    revenue = demo_company.transactions.groupby("customer_id")["amount"].sum()
    c = demo_company.customers.assign(revenue=lambda d: d["customer_id"].map(revenue).fillna(0))
    by_plan = c.groupby("plan")["revenue"].mean()
    got = clv.set_index("segment")["revenue_mean"]
    for plan, mean in by_plan.items():
        assert got[plan] == pytest.approx(mean, rel=1e-9)
    assert (clv["remaining_months"] > 0).all()


def test_value_tiers_rank_only_the_customers_who_bought_in_the_last_12_months_hand_computed(engine):
    # Data end 2025-06-30. V1..V5 bought in the last 12 months (500 > 400 > 300 > 200 > 100);
    # OLD bought only in 2023. percent_rank among the five: 0, .25, .5, .75, 1
    # -> Top 20%: V1; Middle 50%: V2, V3; Bottom 30%: V4, V5; OLD: "No purchases".
    ids = ["V1", "V2", "V3", "V4", "V5", "OLD"]
    customers = pd.DataFrame({"customer_id": ids, "acquired_at": [date(2023, 1, 1)] * 6})
    tx = pd.DataFrame(
        {
            "transaction_id": [f"v{i}" for i in range(6)],
            "customer_id": ids,
            "occurred_at": [_day(10)] * 5 + [pd.Timestamp("2023-03-01")],
            "amount": [500.0, 400.0, 300.0, 200.0, 100.0, 9999.0],
        }
    )
    tx.loc[0, "occurred_at"] = _day(0)
    _load(engine, customers=customers, transactions=tx)
    with engine.begin() as conn:
        store.refresh_derived(conn)
    with engine.connect() as conn:
        tiers = dict(
            conn.execute(sa.select(schema.customers.c.customer_id, schema.customers.c.value_tier)).all()
        )
        seg = retention.derived_segments(conn)
    assert tiers == {
        "V1": "Top 20%",
        "V2": "Middle 50%",
        "V3": "Middle 50%",
        "V4": "Bottom 30%",
        "V5": "Bottom 30%",
        "OLD": "No purchases",
    }
    assert set(seg["value"]) <= set(retention.VALUE_TIER_DEFINITIONS) | set(retention.LIFECYCLE_DEFINITIONS)
