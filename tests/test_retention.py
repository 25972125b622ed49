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
from relq.store import dialects, schema
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


def test_cohorts_from_the_stored_segment_cells_equal_the_pandas_reference_for_a_region_too(
    engine, demo_company, statements
):
    """The cohort table added up from the segment cells stored with the purchase summary equals the
    one counted from the purchases — and the pandas reference — for the whole company and one region
    (its customers and their purchases only); a view with a period counts the purchases."""
    from types import SimpleNamespace

    _load_demo(engine, demo_company)
    views = {"all": SegmentFilter(), "EMEA": SegmentFilter().with_dimension("region", ["EMEA"])}
    with engine.connect() as conn:
        raw = {name: retention.cohort_activity(conn, flt) for name, flt in views.items()}
    stored = not dialects.is_clickhouse(engine)
    assert retention.save_purchase_summary(engine) is stored
    assert retention.save_segment_cohorts(engine) is stored
    statements.clear()
    with engine.connect() as conn:
        got = {name: retention.cohort_activity(conn, flt) for name, flt in views.items()}
        retention.cohort_activity(conn, SegmentFilter(since=date(2025, 1, 1)))
    for name in views:
        pd.testing.assert_frame_equal(got[name], raw[name], obj=name)
    assert sum("FROM segment_cohorts" in s for s in statements) == (2 if stored else 0)
    customers = demo_company.customers[demo_company.customers["region"] == "EMEA"]
    emea = SimpleNamespace(
        customers=customers,
        transactions=demo_company.transactions[
            demo_company.transactions["customer_id"].isin(customers["customer_id"])
        ],
        responses=demo_company.responses,
        tickets=demo_company.tickets,
    )
    for name, company in (("all", demo_company), ("EMEA", emea)):
        report, expected = retention.cohort_report(got[name]), _pandas_cohorts(company)
        assert report.keys() == expected.keys(), name
        for cohort in expected:
            assert report[cohort]["size"] == expected[cohort]["size"], (name, cohort)
            np.testing.assert_allclose(
                report[cohort]["active_share"], expected[cohort]["active_share"], atol=1e-12
            )


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
    # The data end on 30 Apr: Q1 is the last complete quarter, and nobody was a customer at its start.
    assert report["retention"] is None
    assert report["cohorts"].keys() == TRANSACTIONS_ONLY.keys()
    for cohort, expected in TRANSACTIONS_ONLY.items():
        assert report["cohorts"][cohort]["size"] == expected["size"]
        assert report["cohorts"][cohort]["active_share"] == pytest.approx(expected["active_share"])


def test_cohort_table_whose_last_month_is_partial_marks_it_and_the_report_leaves_it_out(engine):
    # One more purchase on 2024-05-03 moves the data's end into May, which the data cover only
    # to the 3rd: May is partial. A (cohort 2024-01) buys in it (k = 4); G first buys on 2 May,
    # so cohort 2024-05 has no complete month at all.
    more = pd.DataFrame(
        {
            "transaction_id": ["t90", "t91"],
            "customer_id": ["A", "G"],
            "occurred_at": [pd.Timestamp("2024-05-03 09:00"), pd.Timestamp("2024-05-02 12:00")],
            "amount": [10.0, 20.0],
        }
    )
    _load(engine, transactions=pd.concat([_csv("transactions.csv"), more], ignore_index=True))
    with engine.connect() as conn:
        frame = retention.cohort_activity(conn)
    january = frame[frame["cohort"] == "2024-01"].set_index("k")
    assert january.loc[4, ["active", "partial"]].tolist() == [1, True]
    assert not january.loc[:3, "partial"].any()
    assert frame.loc[frame["partial"], "cohort"].tolist() == ["2024-01", "2024-02", "2024-04", "2024-05"]
    got = retention.cohort_report(frame)
    assert got.keys() == TRANSACTIONS_ONLY.keys()  # no cohort 2024-05: it has no complete month
    for cohort, expected in TRANSACTIONS_ONLY.items():  # the complete months only, as before May
        assert got[cohort]["active_share"] == pytest.approx(expected["active_share"])
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(1, 3, method="wilson")
    assert january.loc[1, ["low", "high"]].tolist() == pytest.approx([low, high])
    from relq.outputs import charts

    text = charts.cohort_heatmap(frame).data[0].text
    assert any(cell.endswith("*") for row in text for cell in row)
    assert sum(cell.endswith("*") for row in text for cell in row) == 4


def test_demo_cohorts_of_a_partial_month_stay_out_of_the_report(duckdb_engine):
    from relq.ingest.demo import generate_demo

    company = generate_demo(customers=300, seed=3, months=6, end=date(2026, 10, 3))
    _load_demo(duckdb_engine, company)
    with duckdb_engine.connect() as conn:
        frame = retention.cohort_activity(conn)
        report = retention.cohort_report(frame)
        end = retention.churn_basis(conn).end
    assert date(2026, 10, 1) <= end <= date(2026, 10, 3)
    assert frame.loc[frame["partial"], "cohort"].nunique() == frame["cohort"].nunique()
    assert "2026-10" not in report
    last = max(report)
    assert last == "2026-09" and len(report[last]["active_share"]) == 1


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
    m = m[(m["duration"] > 0) | ((m["duration"] == 0) & (m["event"] == 0))]  # churned by then: not at risk
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


def _responses(rows) -> pd.DataFrame:
    """rows: (customer, respondent, wave, days before the end, rq, nps)."""
    return pd.DataFrame(
        {
            "response_id": [f"r{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "email": [f"{r[1]}@{r[0].lower()}.example" for r in rows],
            "wave": [r[2] for r in rows],
            "submitted_at": [_day(r[3]) for r in rows],
            "rq": [r[4] for r in rows],
            "nps": [r[5] for r in rows],
        }
    )


AT_RISK_ROWS = [  # customer, respondent, wave, days before the end, RQ, NPS
    # Y: two respondents over two waves, both fell: −20 and −22 -> paired mean −21.
    ("Y", "ann", "2025-Q1", 120, 80.0, 8),
    ("Y", "bob", "2025-Q1", 118, 70.0, 8),
    ("Y", "ann", "2025-Q2", 30, 60.0, 8),
    ("Y", "bob", "2025-Q2", 28, 48.0, 8),
    # Y2: the same two respondents, −10 and +3: the interval crosses zero, not a fall.
    ("Y2", "cat", "2025-Q1", 120, 70.0, 8),
    ("Y2", "dan", "2025-Q1", 119, 72.0, 8),
    ("Y2", "cat", "2025-Q2", 30, 60.0, 8),
    ("Y2", "dan", "2025-Q2", 29, 75.0, 8),
    # V: different people in the two waves -> Welch on the waves' respondents.
    ("V", "eve", "2025-Q1", 120, 80.0, 8),
    ("V", "fay", "2025-Q1", 119, 82.0, 8),
    ("V", "gus", "2025-Q2", 30, 50.0, 8),
    ("V", "hal", "2025-Q2", 29, 53.0, 8),
    # Z: latest wave one promoter, two detractors.
    ("Z", "ivy", "2025-Q1", 120, 60.0, 9),
    ("Z", "ivy", "2025-Q2", 30, 61.0, 9),
    ("Z", "jon", "2025-Q2", 29, 58.0, 3),
    ("Z", "kim", "2025-Q2", 28, 57.0, 5),
    # W: latest wave two promoters, one detractor -- whose answer came last (the old rule flagged it).
    ("W", "lea", "2025-Q2", 30, 65.0, 9),
    ("W", "max", "2025-Q2", 29, 66.0, 10),
    ("W", "ned", "2025-Q2", 20, 50.0, 4),
    # U: quiet; one respondent, one wave.
    ("U", "oli", "2025-Q2", 30, 55.0, 8),
    # X0: churned -- never listed, whatever its answers.
    ("X0", "pat", "2025-Q1", 120, 90.0, 9),
    ("X0", "pat", "2025-Q2", 30, 20.0, 0),
]


def test_at_risk_account_with_two_respondents_over_two_waves_matches_scipy_intervals_stored_or_not(engine):
    ids = ["Y", "Y2", "V", "Z", "W", "U", "X0", "Q"]
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "company": [f"{i} Ltd" for i in ids],
            "owner": ["Ann"] * 8,
            "acquired_at": [date(2024, 1, 1)] * 8,
            "churned_at": [None] * 6 + [date(2025, 6, 1), None],
            "annual_value": [9000, 8000, 7000, 6000, 5000, 4000, 3000, 100],
        }
    )
    tx = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(8)],
            "customer_id": ids,
            "occurred_at": [_day(5)] * 4 + [_day(0), _day(120), _day(200), _day(100)],  # W sets the end
            "amount": [10.0] * 8,
        }
    )
    _load(engine, customers=customers, transactions=tx, survey_responses=_responses(AT_RISK_ROWS))
    with engine.connect() as conn:
        risk = retention.at_risk_customers(conn, days=90)
    got = risk.set_index("customer_id")
    assert set(got.index) == {"Y", "V", "Z", "U", "Q"}  # not Y2 (no clear fall), W (more promoters), X0
    from scipy import stats as scipy_stats

    paired = scipy_stats.ttest_rel([60.0, 48.0], [80.0, 70.0]).confidence_interval()
    y = got.loc["Y"]
    assert y["rq_change"] == pytest.approx(-21.0)
    assert [y["rq_change_low"], y["rq_change_high"]] == pytest.approx([paired.low, paired.high])
    assert y["reasons"] == (
        "RQ fell 75 → 54 from wave 2025-Q1 to 2025-Q2 (the same 2 respondents in both waves; change -21.0, "
        f"95% CI {paired.low:+.1f} to {paired.high:+.1f})"
    )
    welch = scipy_stats.ttest_ind([50.0, 53.0], [80.0, 82.0], equal_var=False).confidence_interval()
    v = got.loc["V"]
    assert [v["rq_change"], v["rq_change_low"], v["rq_change_high"]] == pytest.approx(
        [-29.5, welch.low, welch.high]
    )
    assert "different respondents in the two waves" in v["reasons"]
    assert got.loc["Z", "reasons"] == (
        "more detractors than promoters in wave 2025-Q2 (2 detractors, 1 promoter of 3 answering)"
    )
    assert got.loc["U", "reasons"] == "no purchase in 120 days"
    assert got.loc["Q", "reasons"] == "no purchase in 100 days"
    assert list(risk["customer_id"]) == ["Y", "V", "Z", "U", "Q"]  # by annual value
    with engine.connect() as conn:
        assert set(retention.at_risk_customers(conn, days=110)["customer_id"]) == {"Y", "V", "Z", "U"}
    # the same list from the stored summaries (the accounts' waves, the purchases), where kept
    retention.save_purchase_summary(engine)
    assert retention.save_account_waves(engine) is not dialects.is_clickhouse(engine)
    with engine.connect() as conn:
        pd.testing.assert_frame_equal(retention.at_risk_customers(conn, days=90), risk)


def test_wave_change_without_two_respondents_in_each_wave_is_not_judged():
    frame = pd.DataFrame(
        {"pairs": [1, 0], "p1": [50.0, None], "p2": [80.0, None], "dd": [900.0, None], "n1": [1, 3],
         "s1": [50.0, 150.0], "ss1": [2500.0, 7600.0], "n2": [2, 1], "s2": [150.0, 80.0], "ss2": [11300.0, 6400.0]}
    )  # fmt: skip
    change = retention.wave_change(frame)
    assert change["change"].isna().all() and change["high"].isna().all()
    assert change["compared"].tolist() == ["too few respondents to tell"] * 2


def test_at_risk_on_a_transactions_only_shop_hand_computed(engine):
    # Days since the last purchase at the end (2024-04-30): A 29, B 58, C 90, D 46, E 0, F 20;
    # N joined on 2024-03-01 and never bought: 60 days since joining, and M joined on 2024-04-10.
    joined = pd.DataFrame({"customer_id": ["N", "M"], "acquired_at": [date(2024, 3, 1), date(2024, 4, 10)]})
    _load(engine, customers=joined, transactions=_csv("transactions.csv"))
    with engine.connect() as conn:
        risk = retention.at_risk_customers(conn, days=45)
    assert dict(zip(risk["customer_id"], risk["reasons"], strict=True)) == {
        "C": "no purchase in 90 days",
        "N": "no purchase since joining 60 days ago",
        "B": "no purchase in 58 days",
        "D": "no purchase in 46 days",
    }


# --------------------------------------------------------------------------- rates, segments, service, CLV


def test_every_regions_rates_from_one_grouped_query_equal_filtering_on_that_region(engine):
    # The segment explorer asks for every region's rates at once; each must be exactly what
    # filtering the view on that region gives (customers without a region belong to none).
    rng = np.random.default_rng(5)
    n = 80
    acquired = [date(2023, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 500, n)]
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(n)],
            "region": rng.choice(["North", "South", "East", None], n),
            "plan": rng.choice(["Basic", "Pro"], n),
            "acquired_at": acquired,
            "churned_at": [
                a + timedelta(days=int(d)) if d < 400 else None
                for a, d in zip(acquired, rng.integers(30, 800, n), strict=True)
            ],
        }
    )
    tx = pd.DataFrame(
        {
            "transaction_id": ["end", "stranger"],
            "customer_id": ["C000", "X999"],  # X999 bought but has no customers row
            "occurred_at": [pd.Timestamp("2024-12-31"), pd.Timestamp("2023-03-01")],
            "amount": [1.0, 1.0],
        }
    )
    _load(engine, customers=customers, transactions=tx)
    view = SegmentFilter().with_dimension("plan", ["Pro"])
    with engine.connect() as conn:
        grouped = retention.retention_rates_by(conn, view, "region", "quarter")
        alone = {
            r: retention.retention_rates(conn, view.with_dimension("region", [r]), "quarter")
            for r in ("North", "South", "East")
        }
    assert set(grouped) == {r for r, rates in alone.items() if not rates.empty}
    for region, rates in grouped.items():
        pd.testing.assert_frame_equal(rates.reset_index(drop=True), alone[region].reset_index(drop=True))
    # the same query also gives the whole view's rates, customers without a region included
    with engine.connect() as conn:
        everyone, by_region = retention.retention_rates_with_total(conn, view, "region", "quarter")
        reference = retention.retention_rates(conn, view, "quarter")
    assert customers["region"].isna().any() and set(by_region) == set(grouped)
    pd.testing.assert_frame_equal(everyone.reset_index(drop=True), reference.reset_index(drop=True))
    with engine.connect() as conn:  # unfiltered: the customer known only from a purchase counts too
        everyone, _ = retention.retention_rates_with_total(conn, SegmentFilter(), "region", "quarter")
        reference = retention.retention_rates(conn, SegmentFilter(), "quarter")
    pd.testing.assert_frame_equal(everyone.reset_index(drop=True), reference.reset_index(drop=True))


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
    # Feb: start 3 (P,Q,R), Q churns -> retained 2/3; S is new (beside, not in the rate).
    # Mar: start 3 (P,R,S), all stay -> 3/3; T joins and churns in March: new 1, new_churned 1.
    # Apr: start 3, end 3, new 0 -> 1.
    columns = ["at_start", "retained", "churned", "new", "new_churned", "at_end"]
    assert ret.loc["2024-02", columns].tolist() == [3, 2, 1, 1, 0, 3]
    assert ret.loc["2024-03", columns].tolist() == [3, 3, 0, 1, 1, 3]
    assert ret.loc["2024-02", "estimate"] == pytest.approx(100 * 2 / 3)
    assert ret.loc["2024-03", "estimate"] == pytest.approx(100.0)
    assert ret.loc["2024-04", "estimate"] == pytest.approx(100.0)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(2, 3, method="wilson")
    assert ret.loc["2024-02", ["low", "high"]].tolist() == pytest.approx([100 * low, 100 * high])
    churn = rates[(rates["metric"] == "churn")]
    assert churn["estimate"].round(6).tolist() == pytest.approx([0.0, 100 / 3, 0.0, 0.0][-len(churn) :])


def test_retention_hand_worked_three_at_start_one_churns_two_new_one_churns_is_two_thirds_wilson_statsmodels(
    engine,
):
    # Q3 2024. At its start: A, B, C (acquired in the spring); C churns on 20 Aug. New in Q3: D
    # (stays) and E (joins 10 Jul, churns 15 Sep). Retention = 2/3; the new customers are beside.
    customers = pd.DataFrame(
        {
            "customer_id": list("ABCDE"),
            "acquired_at": [
                date(2024, 3, 1),
                date(2024, 4, 15),
                date(2024, 6, 30),
                date(2024, 8, 1),
                date(2024, 7, 10),
            ],
            "churned_at": [None, None, date(2024, 8, 20), None, date(2024, 9, 15)],
        }
    )
    end = pd.DataFrame(
        {
            "transaction_id": ["x"],
            "customer_id": ["A"],
            "occurred_at": [pd.Timestamp("2024-10-02")],
            "amount": [1.0],
        }
    )
    _load(engine, customers=customers, transactions=end)
    with engine.connect() as conn:
        rates = retention.retention_rates(conn, freq="quarter")
        section = retention.retention_report(conn)
    q3 = rates[(rates["metric"] == "retention") & (rates["period"] == pd.Timestamp("2024-07-01"))].iloc[0]
    assert q3[["at_start", "retained", "churned", "new", "new_churned", "at_end"]].tolist() == [
        3,
        2,
        1,
        2,
        1,
        3,
    ]
    assert q3["estimate"] == pytest.approx(100 * 2 / 3)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(2, 3, method="wilson")
    assert section == {
        "quarter": "2024-Q3",  # the data end on 2 Oct: Q4 is not complete
        "at_start": 3,
        "retained": 2,
        "rate": pytest.approx(2 / 3),
        "ci": pytest.approx([low, high]),
        "churned": 1,
        "new": 2,
        "new_churned": 1,
    }
    # The old formula, (at end − new) / at start = (3 − 2) / 3, mixed the new customers in.
    assert (q3["at_end"] - q3["new"]) / q3["at_start"] == pytest.approx(1 / 3)


def test_report_json_retention_is_the_last_complete_quarter_on_the_demo(duckdb_engine, demo_company):
    from relq.outputs.report import build_report

    _load_demo(duckdb_engine, demo_company)
    report = build_report(duckdb_engine)
    section = report["retention"]
    assert set(section) >= {"quarter", "at_start", "retained", "rate", "ci"}
    # a pandas reference: customers active at the quarter's start and still active at its end
    c = demo_company.customers
    year, q = int(section["quarter"][:4]), int(section["quarter"][-1])
    first = pd.Timestamp(year=year, month=3 * q - 2, day=1)
    last = first + pd.DateOffset(months=3) - pd.Timedelta(days=1)
    acquired, churned = pd.to_datetime(c["acquired_at"]), pd.to_datetime(c["churned_at"])
    at_start = (acquired < first) & ~(churned < first)
    retained = at_start & ~(churned <= last)
    assert section["at_start"] == int(at_start.sum()) and section["retained"] == int(retained.sum())
    assert section["ci"][0] <= section["rate"] <= section["ci"][1]
    with duckdb_engine.connect() as conn:
        end = pd.Timestamp(retention.churn_basis(conn).end)
    assert last <= end < last + pd.DateOffset(months=3)


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
    for name in ("remaining_months", "remaining_revenue"):
        assert (clv[f"{name}_low"] <= clv[name]).all() and (clv[name] <= clv[f"{name}_high"]).all()


def test_value_tiers_rank_only_the_customers_who_bought_in_the_last_12_months_hand_computed(engine):
    # Data end 2025-06-30. V1..V5 bought in the last 12 months (500 > 400 > 300 > 200 > 100), EDGE
    # (50) exactly at midnight 365 days before the end — counted, as the Retention page and revenue
    # at stake count that year; OLD bought only in 2023. percent_rank among the six: 0, .2, .4, .6,
    # .8, 1 -> Top 20%: V1, V2; Middle 50%: V3, V4; Bottom 30%: V5, EDGE; OLD: "No purchases".
    ids = ["V1", "V2", "V3", "V4", "V5", "EDGE", "OLD"]
    customers = pd.DataFrame({"customer_id": ids, "acquired_at": [date(2023, 1, 1)] * 7})
    tx = pd.DataFrame(
        {
            "transaction_id": [f"v{i}" for i in range(7)],
            "customer_id": ids,
            "occurred_at": [_day(10)] * 5
            + [pd.Timestamp(END - timedelta(days=365)), pd.Timestamp("2023-03-01")],
            "amount": [500.0, 400.0, 300.0, 200.0, 100.0, 50.0, 9999.0],
        }
    )
    tx.loc[0, "occurred_at"] = _day(0)
    _load(engine, customers=customers, transactions=tx)
    with engine.begin() as conn:
        store.refresh_derived(conn)
    with engine.connect() as conn:
        assert store.data_end(conn) == END
        tiers = dict(
            conn.execute(sa.select(schema.customers.c.customer_id, schema.customers.c.value_tier)).all()
        )
        seg = retention.derived_segments(conn)
    assert tiers == {
        "V1": "Top 20%",
        "V2": "Top 20%",
        "V3": "Middle 50%",
        "V4": "Middle 50%",
        "V5": "Bottom 30%",
        "EDGE": "Bottom 30%",
        "OLD": "No purchases",
    }
    assert set(seg["value"]) <= set(retention.VALUE_TIER_DEFINITIONS) | set(retention.LIFECYCLE_DEFINITIONS)


# --------------------------------------------------------------------------- the purchase summary


def _purchase_figures(conn, flt: SegmentFilter) -> dict:
    """Every figure read through lifetimes and the purchase months."""
    basis = retention.churn_basis(conn)
    return {
        "cohorts": retention.cohort_activity(conn, flt, basis),
        "rates": retention.retention_rates(conn, flt, "quarter", basis),
        "at_risk": retention.at_risk_customers(conn, flt, 60, basis),
        "durations": survival.duration_table(conn, flt, "plan", basis),
        "landmark": survival.landmark_table(conn, flt, "rq", basis).table,
        "clv": survival.lifetime_value(conn, flt, "plan", basis),
    }


def _assert_same_figures(got: dict, expected: dict) -> None:
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, check_exact=False, rtol=1e-12, obj=name)


def test_the_stored_customer_spans_keep_crm_customers_without_purchases_and_buyers_without_a_crm_row(engine):
    """``customer_lifetimes`` joins the CRM and the purchases once, when the purchase summary is
    built: each customer's lifetime read from it equals the one joined at read time and the dates
    worked out by hand, under both churn bases — N and M joined and never bought, A has a churn
    date, B no acquisition date (it starts at its first purchase), C–F bought without a CRM row —
    and a region chosen still reads the CRM's customers."""
    crm = pd.DataFrame(
        {
            "customer_id": ["N", "M", "A", "B"],
            "region": ["North", "South", "North", "South"],
            "acquired_at": [date(2024, 3, 1), date(2024, 4, 10), date(2023, 12, 1), None],
            "churned_at": [None, None, date(2024, 4, 15), None],
        }
    )
    _load(engine, customers=crm, transactions=_csv("transactions.csv"))
    built = retention.save_purchase_summary(engine)
    assert built is not dialects.is_clickhouse(engine)
    end = date(2024, 4, 30)
    start = {
        "A": date(2023, 12, 1), "B": date(2024, 1, 15), "C": date(2024, 1, 31), "D": date(2024, 2, 1),
        "E": date(2024, 2, 14), "F": date(2024, 4, 10), "N": date(2024, 3, 1), "M": date(2024, 4, 10),
    }  # fmt: skip
    revenue = {"A": 300.0, "B": 240.0, "C": 30.0, "D": 180.0, "E": 180.0, "F": 25.0, "N": 0.0, "M": 0.0}
    # contract: only A's churn date counts; inactivity (45 days): the last purchase (else the start)
    # 45 days or more before the end — B 03-03, C 01-31, D 03-15, N joined 03-01 and never bought
    churned = {
        "contract": {"A": date(2024, 4, 15)},
        "inactivity": {
            "B": date(2024, 4, 17), "C": date(2024, 3, 16), "D": date(2024, 4, 29), "N": date(2024, 4, 15),
        },
    }  # fmt: skip
    for kind, ends in churned.items():
        basis = retention.Basis(kind, end, 45)
        expected = {c: (start[c], ends.get(c, end), int(c in ends), revenue[c]) for c in sorted(start)}
        for summarised in (False, True) if built else (False,):
            for flt, customers in (
                (SegmentFilter(), start),
                (SegmentFilter().with_dimension("region", ["North"]), "AN"),
            ):
                life = retention.lifetimes(flt, basis, summarised=summarised).subquery()
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(
                            life.c.customer_id,
                            life.c.start_day,
                            life.c.end_day,
                            life.c.churned,
                            life.c.revenue,
                        )
                    ).all()
                got = {r[0]: (r[1], r[2], int(r[3]), float(r[4])) for r in rows}
                assert got == {c: expected[c] for c in customers}, (kind, summarised, flt)


def test_a_store_made_before_the_customer_spans_reads_the_purchases_until_they_are_built(
    engine, demo_company
):
    """A store built by a RelQ version without ``customer_lifetimes`` (its purchase summary marked
    current) gets the table made when it is opened — empty, so what was built is forgotten and the
    Retention figures come from the purchases themselves, the same as before — and the next rebuild
    fills it."""
    _load_demo(engine, demo_company)
    clickhouse = dialects.is_clickhouse(engine)
    assert retention.save_purchase_summary(engine) is (not clickhouse)
    with engine.connect() as conn:
        before = _purchase_figures(conn, SegmentFilter())
    if not clickhouse:  # the summary and its version stay, the new table is not there
        with engine.begin() as conn:
            schema.customer_lifetimes.drop(conn)
    assert store.create_schema(engine) is (not clickhouse)  # says the stored tables need a rebuild
    with engine.connect() as conn:
        assert not retention.purchase_summary_ready(conn, retention.churn_basis(conn))
        _assert_same_figures(_purchase_figures(conn, SegmentFilter()), before)
    assert retention.save_purchase_summary(engine) is (not clickhouse)
    with engine.connect() as conn:
        assert retention.purchase_summary_ready(conn, retention.churn_basis(conn)) is (not clickhouse)
        _assert_same_figures(_purchase_figures(conn, SegmentFilter()), before)


def test_purchase_summary_gives_the_figures_of_the_purchases_themselves_and_is_dropped_when_data_change(
    engine, demo_company, statements
):
    """The stored purchase summary (and the accounts' latest waves, for the at-risk list) stand in
    for the purchases and responses on the retention pages: cohorts, retention rates, the at-risk
    list, durations, landmarks and lifetime value equal those grouped from every purchase and
    response (the pandas and SciPy references above check that path), for the whole company, a
    region, the customers acquired in a period and a gap quadrant; the waves are read for every view
    but the period. Once the data change neither is read: the next purchase shows at once, before
    they are rebuilt."""
    _load_demo(engine, demo_company)
    region = SegmentFilter().with_dimension("region", [sorted(demo_company.customers["region"].unique())[0]])
    acquired = pd.to_datetime(demo_company.customers["acquired_at"]).dt.date
    middle = SegmentFilter(since=acquired.quantile(0.25), until=acquired.quantile(0.75))  # acquired then
    quadrant = SegmentFilter(quadrant="x_high_y_low")
    with engine.connect() as conn:
        raw = {flt: _purchase_figures(conn, flt) for flt in (SegmentFilter(), region, middle, quadrant)}
    built = retention.save_purchase_summary(engine)
    clickhouse = dialects.is_clickhouse(engine)
    assert retention.save_account_waves(engine) is (not clickhouse)
    with engine.connect() as conn:
        assert retention.purchase_summary_ready(conn, retention.churn_basis(conn)) is (not clickhouse)
        assert built is (not clickhouse)
        for flt, expected in raw.items():
            statements.clear()
            _assert_same_figures(_purchase_figures(conn, flt), expected)
            read_waves = any("FROM account_waves" in s for s in statements)
            assert read_waves is (not clickhouse and flt is not middle), flt
            # the customers' spans: one stored row each, not the customers joined to their purchases
            spans = any("FROM customer_lifetimes" in s for s in statements)
            assert spans is (not clickhouse), flt
            assert not any("FULL OUTER JOIN purchase_summary" in s for s in statements), flt
    # a customer who had stopped buying buys again on the data's last day, in a new import
    with engine.connect() as conn:
        end = retention.churn_basis(conn).end
        listed = raw[SegmentFilter()]["at_risk"]
        quiet = listed.loc[listed["days_since_purchase"] > 60, "customer_id"].iloc[0]
    _load(
        engine,
        transactions=pd.DataFrame(
            {
                "transaction_id": ["new-1"],
                "customer_id": [quiet],
                "occurred_at": [pd.Timestamp(end)],
                "amount": [10.0],
            }
        ),
    )
    with engine.begin() as conn:
        store.note_data_change(conn, "import")
    statements.clear()
    with engine.connect() as conn:
        assert not retention.purchase_summary_ready(conn, retention.churn_basis(conn))
        fresh = _purchase_figures(conn, SegmentFilter())
    assert not any("FROM account_waves" in s or "customer_lifetimes" in s for s in statements)
    listed = fresh["at_risk"].set_index("customer_id")
    assert quiet not in listed.index or listed.loc[quiet, "days_since_purchase"] == 0
    retention.save_purchase_summary(engine)
    retention.save_account_waves(engine)
    with engine.connect() as conn:
        _assert_same_figures(_purchase_figures(conn, SegmentFilter()), fresh)
