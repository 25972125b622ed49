"""Survival from a landmark (relq.analyses.survival): Kaplan–Meier and Cox on hand-built
per-customer tables against lifelines, the Brookmeyer–Crowley median interval, and the demo's
quadrant curves without immortal time; on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.utils import median_survival_times

from relq import store
from relq.analyses import retention, survival
from relq.analyses.quadrants import QuadrantSpec
from relq.store import schema
from relq.store.filters import SegmentFilter

START = date(2024, 1, 1)
END = date(2025, 12, 31)


def _load(engine, **frames: pd.DataFrame) -> None:
    with engine.begin() as conn:
        for name, frame in frames.items():
            store.bulk_insert(conn, schema.metadata.tables[name], frame)


def _at(day: date) -> pd.Timestamp:
    return pd.Timestamp(day) + pd.Timedelta(hours=10)


# Hand-built: (customer, acquired, churned, survey day, trust, satisfaction). The data end on END.
# Landmark durations (days from the survey to churn or END):
#   A: survey 2024-03-01, churned 2024-06-09 -> 100, event
#   B: survey 2024-03-01, active             -> 670, censored
#   C: survey 2024-06-01, churned 2024-09-09 -> 100, event
#   D: survey 2024-06-01, churned 2025-06-01 -> 365, event
#   E: survey 2024-09-01, active             -> 486, censored
#   F: survey 2024-04-01 but churned 2024-03-15 -> left out (churned before the survey)
#   G: survey 2025-01-10, churned 2025-03-01 -> 50, event
#   H: survey 2025-01-10, churned 2025-01-10 -> left out (churned on the survey's day)
#   "unknown": a response matched to a customer id the customer data do not have -> left out
HAND = [
    ("A", date(2023, 1, 10), date(2024, 6, 9), date(2024, 3, 1), 80.0, 70.0),
    ("B", date(2023, 2, 1), None, date(2024, 3, 1), 75.0, 30.0),
    ("C", date(2023, 5, 1), date(2024, 9, 9), date(2024, 6, 1), 20.0, 60.0),
    ("D", date(2023, 6, 1), date(2025, 6, 1), date(2024, 6, 1), 40.0, 20.0),
    ("E", date(2024, 1, 5), None, date(2024, 9, 1), 90.0, 90.0),
    ("F", date(2023, 1, 1), date(2024, 3, 15), date(2024, 4, 1), 10.0, 10.0),
    ("G", date(2024, 2, 1), date(2025, 3, 1), date(2025, 1, 10), 65.0, 45.0),
    ("H", date(2024, 2, 1), date(2025, 1, 10), date(2025, 1, 10), 30.0, 80.0),
]
EXPECTED = pd.DataFrame(
    {
        "customer": list("ABCDEG"),
        "duration": [100, 670, 100, 365, 486, 50],
        "event": [1, 0, 1, 1, 0, 1],
    }
)


def _hand_built(engine) -> None:
    customers = pd.DataFrame(
        {
            "customer_id": [r[0] for r in HAND],
            "acquired_at": [r[1] for r in HAND],
            "churned_at": [r[2] for r in HAND],
        }
    )
    rows = [(r[0], r[3], r[4], r[5]) for r in HAND] + [
        ("unknown", date(2024, 5, 1), 50.0, 50.0),
        ("A", date(2024, 5, 1), 10.0, 10.0),  # a later answer: the first one places A
    ]
    responses = pd.DataFrame(
        {
            "response_id": [f"r{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "submitted_at": [_at(r[1]) for r in rows],
            "trust": [r[2] for r in rows],
            "satisfaction": [r[3] for r in rows],
            "commitment": [50.0] * len(rows),
            "nps": [9, 7, 3, 5, 10, 0, 8, 6, 9, 2],
        }
    )
    end = pd.DataFrame(
        {"transaction_id": ["e"], "customer_id": ["B"], "occurred_at": [_at(END)], "amount": [1.0]}
    )
    _load(engine, customers=customers, survey_responses=responses, transactions=end)


def test_landmark_km_on_a_hand_built_per_customer_table_matches_lifelines(engine):
    _hand_built(engine)
    spec = QuadrantSpec()
    with engine.connect() as conn:
        landmark = survival.landmark_table(conn, SegmentFilter(), survival.QUADRANT, spec=spec)
        nps = survival.landmark_table(conn, SegmentFilter(), "nps_group")
    assert landmark.left_out == {"churned_before": 2, "unknown": 1}
    assert "2 churned on or before the day of the survey" in landmark.left_out_sentence()
    assert "1 answered a survey but are not in the customer data" in landmark.left_out_sentence()
    # quadrants of the placing responses (trust × satisfaction at 50)
    names = {
        "A": spec.name("x_high_y_high"),
        "B": spec.name("x_high_y_low"),
        "C": spec.name("x_low_y_high"),
        "D": spec.name("x_low_y_low"),
        "E": spec.name("x_high_y_high"),
        "G": spec.name("x_high_y_low"),
    }
    expected = EXPECTED.assign(segment=EXPECTED["customer"].map(names))
    table = landmark.table
    assert int(table["weight"].sum()) == 6
    got = table.loc[table.index.repeat(table["weight"])][["segment", "duration", "event"]]
    pd.testing.assert_frame_equal(
        got.sort_values(["segment", "duration"]).reset_index(drop=True),
        expected[["segment", "duration", "event"]]
        .sort_values(["segment", "duration"])
        .reset_index(drop=True),
        check_dtype=False,
    )
    km = survival.kaplan_meier(table, keep_order=True)
    for name, part in expected.groupby("segment"):
        reference = KaplanMeierFitter().fit(part["duration"], part["event"])
        curve = km.curves[km.curves["segment"] == name]
        days = np.round(curve["months"].to_numpy() * survival.DAYS_PER_MONTH, 6)
        np.testing.assert_allclose(curve["survival"], reference.survival_function_at_times(days), atol=1e-12)
    # NPS groups: A 9, B 7, C 3, D 5, E 10, G 8 -> promoters A, E; passives B, G; detractors C, D
    groups = nps.table.groupby("segment")["weight"].sum().to_dict()
    assert groups == {"Promoters (9–10)": 2, "Passives (7–8)": 2, "Detractors (0–6)": 2}


def test_acquisition_origin_would_credit_immortal_time_the_landmark_does_not(engine):
    _hand_built(engine)
    with engine.connect() as conn:
        all_customers = survival.duration_table(conn)
        landmark = survival.landmark_table(conn, SegmentFilter(), survival.QUADRANT)
    # From acquisition, A "survives" 516 days; from its survey only the 100 that followed it.
    raw = all_customers.loc[all_customers.index.repeat(all_customers["weight"])]
    assert 516 in set(raw["duration"]) and 100 in set(landmark.table["duration"])
    assert landmark.table["duration"].max() < raw["duration"].max()


def test_cox_on_the_pillars_from_the_landmark_matches_lifelines_coxphfitter(engine):
    # 60 hand-built customers, surveyed once on 2024-07-01: lower trust churns sooner.
    rng = np.random.default_rng(5)
    n = 60
    trust = np.round(rng.uniform(10, 95, n), 1)
    commitment = np.round(rng.uniform(10, 95, n), 1)
    satisfaction = np.round(rng.uniform(10, 95, n), 1)
    survey = date(2024, 7, 1)
    days = np.floor(rng.exponential(300 * np.exp((trust - 50) / 40))).astype(int) + 1
    churned = [
        survey + timedelta(days=int(d)) if survey + timedelta(days=int(d)) <= END else None for d in days
    ]
    ids = [f"K{i:02d}" for i in range(n)]
    customers = pd.DataFrame(
        {"customer_id": ids, "acquired_at": [date(2023, 1, 1)] * n, "churned_at": churned}
    )
    responses = pd.DataFrame(
        {
            "response_id": [f"r{i}" for i in range(n)],
            "customer_id": ids,
            "submitted_at": [_at(survey)] * n,
            "trust": trust,
            "commitment": commitment,
            "satisfaction": satisfaction,
        }
    )
    end = pd.DataFrame(
        {"transaction_id": ["e"], "customer_id": ["K00"], "occurred_at": [_at(END)], "amount": [1.0]}
    )
    _load(engine, customers=customers, survey_responses=responses, transactions=end)
    with engine.connect() as conn:
        landmark = survival.cox_landmark(conn)
    expected = pd.DataFrame(
        {
            "duration": [((c or END) - survey).days for c in churned],
            "event": [int(c is not None) for c in churned],
            "trust": trust,
            "commitment": commitment,
            "satisfaction": satisfaction,
        }
    )
    pd.testing.assert_frame_equal(landmark.table.drop(columns="customer_id"), expected, check_dtype=False)
    assert landmark.left_out == {"churned_before": 0, "unknown": 0}
    result = survival.cox_pillars(landmark.table)
    data = expected.astype(float)
    data[["trust", "commitment", "satisfaction"]] /= 10
    reference = CoxPHFitter().fit(data, "duration", "event").summary
    np.testing.assert_allclose(result.hazard_ratios["hr"], reference["exp(coef)"], rtol=1e-6)
    np.testing.assert_allclose(result.hazard_ratios["high"], reference["exp(coef) upper 95%"], rtol=1e-6)
    assert result.hazard_ratios.set_index("pillar").loc["trust", "hr"] < 1


# Six subjects: 3, 5, 5+, 7, 9+, 11 (+ = censored): median 7 (see tests/test_retention.py).
SIX = pd.DataFrame({"duration": [3, 5, 5, 7, 9, 11], "event": [1, 1, 0, 1, 0, 1]})


def test_median_lifetime_interval_is_brookmeyer_crowley_on_lifelines_log_log_band():
    kmf = survival.km_fit(SIX["duration"], SIX["event"])
    median, low, high = survival.median_interval(kmf)
    reference = KaplanMeierFitter().fit(SIX["duration"], SIX["event"])
    band = median_survival_times(reference.confidence_interval_)
    assert median == 7
    assert (low, high) == (band.iloc[0, 0], band.iloc[0, 1])
    # By hand at t = 3: S = 5/6, Greenwood Σ d/(n(n−d)) = 1/30, on the log(−log) scale
    # se = √(1/30) / |log(5/6)| = 1.0014, so the lower band is exp(−exp(log(−log 5/6) + 1.96·se))
    # = 0.273 ≤ 0.5 already: the interval starts at 3. The upper band stays above 0.5 (0.78 at 7
    # and 9) until the curve itself falls to 0 at 11: the interval ends there.
    lower, upper = reference.confidence_interval_.iloc[:, 0], reference.confidence_interval_.iloc[:, 1]
    se = np.sqrt(1 / 30) / abs(np.log(5 / 6))
    assert lower.loc[3] == pytest.approx(np.exp(-np.exp(np.log(-np.log(5 / 6)) + 1.959964 * se)), rel=1e-5)
    assert lower.loc[3] <= 0.5 and low == 3
    assert upper.loc[9] > 0.5 and high == 11
    summary = survival.kaplan_meier(SIX.assign(segment="all", weight=1)).summary.iloc[0]
    assert summary["median_low"] * survival.DAYS_PER_MONTH == pytest.approx(3)
    assert summary["median_high"] * survival.DAYS_PER_MONTH == pytest.approx(11)


def test_quadrant_survival_on_the_demo_starts_at_the_survey_like_a_pandas_reference(
    duckdb_engine, demo_company
):
    store.load_demo(duckdb_engine, demo_company)
    with duckdb_engine.connect() as conn:
        basis = retention.churn_basis(conn)
        landmark = survival.landmark_table(conn, SegmentFilter(), survival.QUADRANT, basis)
    r = demo_company.responses
    r = r[r["customer_id"].notna() & r["trust"].notna() & r["satisfaction"].notna()]
    first = r.sort_values(["submitted_at", "response_id"]).drop_duplicates("customer_id")
    c = demo_company.customers.set_index("customer_id")
    day = pd.to_datetime(first["submitted_at"]).dt.normalize().reset_index(drop=True)
    churned = pd.to_datetime(c.loc[first["customer_id"], "churned_at"]).dt.normalize().reset_index(drop=True)
    stop = churned.fillna(pd.Timestamp(basis.end))
    gone = churned.notna() & (churned <= day)
    assert landmark.left_out["churned_before"] == int(gone.sum())
    durations = (stop - day).dt.days[~gone]
    raw = landmark.table.loc[landmark.table.index.repeat(landmark.table["weight"])]
    assert sorted(raw["duration"]) == sorted(durations)
    after = survival.kaplan_meier(landmark.table, keep_order=True).summary.set_index("segment")
    assert after["survival_12m"].notna().all()
    # The worst quadrant churns faster than the best, from the survey as from acquisition.
    names = QuadrantSpec()
    best, worst = names.name("x_high_y_high"), names.name("x_low_y_low")
    assert after.loc[worst, "survival_12m"] < after.loc[best, "survival_12m"]


def test_remaining_lifetime_from_numpy_steps_equals_lifelines_kaplan_meier():
    rng = np.random.default_rng(2)
    durations = rng.integers(0, 400, 300)
    events = rng.random(300) < 0.4
    kmf = KaplanMeierFitter().fit(durations, events)
    steps = survival.km_steps(durations, events)
    np.testing.assert_allclose(steps, kmf.survival_function_at_times(np.arange(400)).to_numpy(), atol=1e-12)
    tau = 399
    ages = durations[~events]
    # ∫_a^τ S / S(a) by lifelines' own restricted mean: RMST(τ) − RMST(a), over S(a)
    from lifelines.utils import restricted_mean_survival_time

    reference = np.mean(
        [
            (restricted_mean_survival_time(kmf, t=tau) - restricted_mean_survival_time(kmf, t=a))
            / float(kmf.survival_function_at_times([a]).iloc[0])
            if a > 0
            else restricted_mean_survival_time(kmf, t=tau)
            / float(kmf.survival_function_at_times([0]).iloc[0])
            for a in ages
        ]
    )
    got = survival._remaining_days(steps, ages, np.ones(len(ages)), tau)
    assert got == pytest.approx(reference, rel=1e-9)
