"""Churn risk (relq.analyses.churn_risk): features from SQL on hand-built data (DuckDB and
PostgreSQL), backtest metrics against scikit-learn and lifelines, scores against lifelines'
own prediction, and on the demo a model that beats the 90-day-recency rule on the held-out window."""

from __future__ import annotations

import json
import math
import threading
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index
from sklearn.metrics import brier_score_loss, roc_auc_score

from relq import store
from relq.analyses import churn_risk, retention
from relq.store import schema

END = date(2025, 6, 30)


def _load(engine, **frames: pd.DataFrame) -> None:
    with engine.begin() as conn:
        for name, frame in frames.items():
            store.bulk_insert(conn, schema.metadata.tables[name], frame)


def _day(days_before_end: int, hour: int = 12) -> pd.Timestamp:
    return pd.Timestamp(END - timedelta(days=days_before_end)) + pd.Timedelta(hours=hour)


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backtest_metrics_match_scikit_learn_roc_auc_brier_and_lifelines_concordance(seed):
    rng = np.random.default_rng(seed)
    n = 400
    y = (rng.random(n) < 0.2).astype(int)
    p = np.round(rng.random(n) * 0.5 + 0.3 * y, 2)  # rounded: ties in the scores
    durations = np.where(y == 1, rng.integers(1, 90, n), 90)
    durations[:20] = 45  # ties in time, events and censored together
    weights = rng.integers(0, 4, n).astype(float)  # a bootstrap resample's customer counts
    assert churn_risk.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), rel=1e-12)
    assert churn_risk.roc_auc(y, p, weights) == pytest.approx(
        roc_auc_score(y, p, sample_weight=weights), rel=1e-12
    )
    assert churn_risk.brier(y, p) == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    assert churn_risk.brier(y, p, weights) == pytest.approx(
        brier_score_loss(y, p, sample_weight=weights), rel=1e-12
    )
    assert churn_risk.concordance(durations, p, y) == pytest.approx(
        concordance_index(durations, -p, y), rel=1e-12
    )
    repeated = np.repeat(np.arange(n), weights.astype(int))
    assert churn_risk.concordance(durations, p, y, weights) == pytest.approx(
        concordance_index(durations[repeated], -p[repeated], y[repeated]), rel=1e-12
    )
    deciles = churn_risk.calibration_by_decile(y, p)
    assert deciles["customers"].sum() == n and len(deciles) == 10
    from statsmodels.stats.proportion import proportion_confint

    first = deciles.iloc[0]
    low, high = proportion_confint(
        round(first["observed"] * first["customers"]), first["customers"], method="wilson"
    )
    assert [first["low"], first["high"]] == pytest.approx([low, high])


# --------------------------------------------------------------------------- features in SQL


def test_snapshot_features_on_hand_built_data(engine):
    # As of 2025-03-31 (day 91 before the end), horizon 90 days.
    as_of = END - timedelta(days=91)
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D"],
            "plan": ["Starter", "Growth", "Starter", None],
            "region": ["EMEA"] * 4,
            "acquired_at": [date(2024, 1, 1), date(2024, 6, 1), date(2024, 1, 1), date(2025, 4, 15)],
            # B churns inside the window (30 days after as_of); C churned before it (not active).
            "churned_at": [None, as_of + timedelta(days=30), as_of - timedelta(days=1), None],
            "annual_value": [1000.0, 2000.0, 3000.0, 4000.0],
        }
    )
    tx = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(6)],
            "customer_id": ["A", "A", "A", "B", "A", "D"],
            # A: 400 days before as_of (outside 12 months), 100 and 10 days before; one after as_of
            "occurred_at": [
                pd.Timestamp(as_of - timedelta(days=400)),
                pd.Timestamp(as_of - timedelta(days=100)),
                pd.Timestamp(as_of - timedelta(days=10)) + pd.Timedelta(hours=9),
                pd.Timestamp(as_of - timedelta(days=5)),
                pd.Timestamp(as_of + timedelta(days=3)),
                _day(0),
            ],
            "amount": [1.0, 20.0, 30.0, 7.0, 99.0, 5.0],
        }
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["k1", "k2", "k3"],
            "customer_id": ["A", "A", "A"],
            "opened_at": [
                pd.Timestamp(as_of - timedelta(days=400)),  # outside 180 and 365 days, answered after 2 h
                pd.Timestamp(as_of - timedelta(days=20)),  # answered after 6 h, resolved after as_of
                pd.Timestamp(as_of - timedelta(days=2)),  # answered after 10 h
            ],
            "first_response_at": [
                pd.Timestamp(as_of - timedelta(days=400)) + pd.Timedelta(hours=2),
                pd.Timestamp(as_of - timedelta(days=20)) + pd.Timedelta(hours=6),
                pd.Timestamp(as_of - timedelta(days=2)) + pd.Timedelta(hours=10),
            ],
            "resolved_at": [
                pd.Timestamp(as_of - timedelta(days=399)),
                pd.Timestamp(as_of + timedelta(days=3)),
                pd.Timestamp(as_of - timedelta(days=1)),
            ],
        }
    )
    rows = [  # customer, email, wave, days before as_of, trust, commitment, satisfaction, rq, nps
        ("A", "x", "W1", 120, 70.0, 60.0, 50.0, 60.0, 9),
        ("A", "y", "W1", 119, 50.0, 40.0, 30.0, 40.0, 4),
        ("A", "x", "W2", 30, 60.0, 50.0, 40.0, 50.0, 10),
        ("A", "y", "W2", 29, 40.0, 30.0, 20.0, 30.0, 3),
        ("A", "z", "W2", 28, 80.0, 80.0, 80.0, 80.0, 2),
        ("A", "x", "W3", -5, 0.0, 0.0, 0.0, 0.0, 0),  # after as_of: unknown on the day
    ]
    responses = pd.DataFrame(
        {
            "response_id": [f"r{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "email": [f"{r[1]}@a.example" for r in rows],
            "wave": [r[2] for r in rows],
            "submitted_at": [
                pd.Timestamp(as_of - timedelta(days=r[3])) + pd.Timedelta(hours=8) for r in rows
            ],
            "trust": [r[4] for r in rows],
            "commitment": [r[5] for r in rows],
            "satisfaction": [r[6] for r in rows],
            "rq": [r[7] for r in rows],
            "nps": [r[8] for r in rows],
        }
    )
    _load(engine, customers=customers, transactions=tx, tickets=tickets, survey_responses=responses)
    with engine.connect() as conn:
        basis = retention.churn_basis(conn)
        frame = churn_risk.snapshot(conn, as_of, 90, basis).set_index("customer_id")
    assert basis.kind == "contract" and basis.end == END
    assert set(frame.index) == {"A", "B"}  # C churned before the day, D joined after it
    a, b = frame.loc["A"], frame.loc["B"]
    assert a["tenure_days"] == (as_of - date(2024, 1, 1)).days
    assert a["days_since_purchase"] == 10 and a["purchases_12m"] == 2 and a["revenue_12m"] == 50.0
    assert a["tickets_180d"] == 2 and a["open_tickets"] == 1
    assert a["first_response_hours"] == pytest.approx(8.0)  # median of 6 and 10 (the one at 2 h is too old)
    # latest wave W2 (three respondents); x and y answered both waves: changes -10 and -10
    assert a["surveyed"] == 1 and a["wave_latest"] == "W2"
    assert [a["trust"], a["commitment"], a["satisfaction"]] == pytest.approx([60.0, 160 / 3, 140 / 3])
    assert a["rq_change"] == pytest.approx(-10.0)
    assert a["nps_net"] == pytest.approx(100 * (1 - 2) / 3)  # one promoter, two detractors of three
    assert (a["event"], a["duration"]) == (0, 90)
    assert (b["event"], b["duration"]) == (1, 30)
    assert b["surveyed"] == 0 and math.isnan(b["trust"]) and b["days_since_purchase"] == 5


def test_snapshot_is_the_same_on_postgresql_and_duckdb_for_the_demo(
    duckdb_engine, demo_company, demo_postgres_url
):
    import sqlalchemy as sa

    store.load_demo(duckdb_engine, demo_company)
    postgres = sa.create_engine(demo_postgres_url)
    frames = []
    for engine in (duckdb_engine, postgres):
        with engine.connect() as conn:
            basis = retention.churn_basis(conn)
            frames.append(churn_risk.snapshot(conn, basis.end - timedelta(days=90), 90, basis))
    postgres.dispose()
    pd.testing.assert_frame_equal(frames[0], frames[1], check_dtype=False, rtol=1e-9)


# --------------------------------------------------------------------------- the model on the demo


@pytest.fixture(scope="module")
def demo_risk(tmp_path_factory, demo_company):
    engine = store.get_engine(f"duckdb:///{tmp_path_factory.mktemp('risk') / 'relq.duckdb'}")
    store.create_schema(engine)
    store.load_demo(engine, demo_company)
    with engine.connect() as conn:
        result = churn_risk.assess(conn)
        today = churn_risk.snapshot(conn, result.end, 90, result.basis, labelled=False)
        training = pd.concat(
            [churn_risk.snapshot(conn, d, 90, result.basis) for d in result.model.training_days],
            ignore_index=True,
        )
    with engine.connect() as conn:
        scored = churn_risk.current_scores(conn)
    yield result, today, training, scored
    engine.dispose()


def test_the_at_risk_lists_scores_without_the_backtest_are_the_backtested_assessments_scores(demo_risk):
    result, _, _, scored = demo_risk
    assert scored.scored and not scored.ok  # fitted and scored, never backtested
    assert scored.model.training_days == result.model.training_days
    pd.testing.assert_frame_equal(scored.scores, result.scores)


def test_on_the_demo_the_risk_model_beats_the_90_day_recency_rule_on_the_held_out_window(demo_risk):
    result, today, *_ = demo_risk
    assert result.ok and not result.message
    bt = result.backtest
    print(f"backtest: AUC {bt.auc}, rule {bt.rule_auc}, gain {bt.auc_gain}, C {bt.concordance}")
    # fitted only on snapshots whose 90-day follow-up ended by the held-out day
    assert max(bt.model.training_days) + timedelta(days=90) <= bt.as_of
    assert bt.as_of + timedelta(days=90) == bt.end == result.end
    assert bt.auc_gain.low > 0 and bt.concordance_gain.low > 0  # the interval of the difference excludes 0
    assert bt.auc.low < bt.auc.estimate < bt.auc.high
    assert bt.rule_auc.estimate < 0.6 < bt.auc.estimate
    assert bt.model.training_events >= churn_risk.MIN_EVENTS
    assert len(bt.calibration) == 10 and bt.calibration["customers"].sum() == bt.customers
    # every customer active today is scored once, riskiest first, with factors in words
    scores = result.scores
    assert len(scores) == len(today) and scores["customer_id"].is_unique
    assert scores["probability"].is_monotonic_decreasing
    assert scores["probability"].between(0, 1).all()
    assert scores["factors"].str.contains("% hazard").mean() > 0.9


def test_scores_equal_lifelines_predict_survival_function_at_the_horizon(demo_risk):
    result, today, training, _ = demo_risk
    model = result.model
    design = churn_risk._design(training, model.medians, model.levels, 90)[list(model.columns)]
    data = design.assign(duration=np.ceil(training["duration"].clip(lower=1) / 7.0), event=training["event"])
    cph = CoxPHFitter(penalizer=churn_risk.PENALIZER).fit(data, "duration", "event")
    np.testing.assert_allclose(model.coefficients, cph.params_[list(model.columns)].to_numpy(), rtol=1e-6)
    x = churn_risk._design(today, model.medians, model.levels, 90).reindex(
        columns=list(model.columns), fill_value=0.0
    )
    reference = 1 - cph.predict_survival_function(x, times=[math.ceil(90 / 7)]).iloc[0].to_numpy()
    np.testing.assert_allclose(churn_risk.score(model, today, 90), reference, rtol=1e-6)


def test_a_factor_in_words_is_its_hazard_change_against_the_plans_median(demo_risk):
    result, today, *_ = demo_risk
    model = result.model
    beta = dict(zip(model.columns, model.coefficients, strict=True))["trust_10"]
    surveyed = today[today["surveyed"] == 1]
    median = today.groupby("plan")["trust"].transform("median")  # over those who answered
    words = churn_risk.explain(model, today)
    shown = words.loc[surveyed.index, "factors"]
    hit = shown[shown.str.contains(r"^trust \d+ points below", regex=True)].index[0]
    gap = today.loc[hit, "trust"] - median.loc[hit]
    change = 100 * (math.exp(beta * gap / 10) - 1)
    assert (
        words.loc[hit, "factor_1"]
        == f"trust {abs(gap):.0f} points below the plan's median: {change:+.0f} % hazard"
    )


def test_with_too_few_churn_events_it_says_so_and_shows_no_score(duckdb_engine):
    from relq.ingest.demo import generate_demo

    store.load_demo(duckdb_engine, generate_demo(customers=200, seed=4))
    with duckdb_engine.connect() as conn:
        result = churn_risk.assess(conn)
    assert not result.ok and result.scores.empty and result.backtest is None
    assert "churned within 90 days of a training snapshot (at least 100 are needed)" in result.message
    assert result.as_dict()["scores"] == [] and result.as_dict()["message"] == result.message


def test_risk_cli_prints_backtest_and_scores_as_json(tmp_path, monkeypatch, capsys, demo_company):
    from relq.cli import main

    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    store.load_demo(engine, demo_company)
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    assert main(["risk", "--json", "--horizon", "60"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["horizon_days"] == 60 and out["message"] is None
    assert {"auc", "concordance", "brier", "auc_gain", "calibration"} <= set(out["backtest"])
    assert out["backtest"]["auc"]["ci"][0] <= out["backtest"]["auc"]["estimate"]
    assert len(out["scores"]) == out["customers"] > 0
    first = out["scores"][0]
    assert set(first) == {"customer_id", "probability", "factors"} and first["factors"]
    assert main(["risk", "--json", "--horizon", "3"]) == 2
    assert "--horizon must be between 7 and 730 days" in capsys.readouterr().err


# --------------------------------------------------------------------------- saved scores


@pytest.mark.parametrize("demo_url", ["demo_db_url", "demo_postgres_url", "demo_chdb_url"])
def test_saved_scores_read_back_equal_to_a_fresh_fit_on_every_engine(request, demo_url):
    engine = store.get_engine(request.getfixturevalue(demo_url))
    version = store.data_version(engine)
    churn_risk.refresh_scores(engine)  # what follows an import and the dashboard's first demo load
    with engine.connect() as conn:
        saved = churn_risk.saved_scores(conn, version)
        fitted = churn_risk.current_scores(conn)
        other_horizon = churn_risk.saved_scores(conn, version, horizon=60)
    engine.dispose()
    assert saved is not None and saved.saved and saved.scored and saved.model is None
    assert other_horizon is None  # saved for the default horizon only; a 60-day list fits its own
    assert len(saved.scores) == len(fitted.scores) > 500
    pd.testing.assert_frame_equal(saved.scores, fitted.scores, check_dtype=False, rtol=1e-12)


def test_an_import_saves_scores_for_the_new_data_and_its_undo_removes_them(duckdb_engine, demo_company):
    from relq.ingest import import_file
    from relq.ingest.demo import load_demo
    from relq.outputs.followup import follow_up_import

    load_demo(duckdb_engine, demo_company)
    churn_risk.refresh_scores(duckdb_engine)
    before = store.data_version(duckdb_engine)
    with duckdb_engine.connect() as conn:
        customer = conn.execute(sa.text("select customer_id, email from customers limit 1")).one()
    csv = f"Response ID,Email,Date,NPS\nR-new-1,{customer.email},{END.isoformat()},0\n".encode()
    result = import_file(
        duckdb_engine, csv, file_name="one_detractor.csv", kind="survey", after=follow_up_import
    )
    assert any(m.startswith("Churn-risk scores refreshed for ") for m in result.follow_up)
    after = store.data_version(duckdb_engine)
    with duckdb_engine.connect() as conn:
        # the purchase summary the retention pages read was rebuilt for the new data too
        assert retention.purchase_summary_ready(conn, retention.churn_basis(conn))
        assert churn_risk.saved_scores(conn, before) is None  # the older version's rows are gone
        saved = churn_risk.saved_scores(conn, after)
        fitted = churn_risk.current_scores(conn)
    pd.testing.assert_frame_equal(saved.scores, fitted.scores, check_dtype=False, rtol=1e-12)
    # saving the same version again is a no-op: no customer is listed twice
    assert not churn_risk.save_scores(duckdb_engine, fitted, after)
    store.undo_import(duckdb_engine, result.import_id)
    undone = store.data_version(duckdb_engine)
    with duckdb_engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from churn_scores")).scalar_one() == 0
        assert conn.execute(sa.text("select count(*) from purchase_summary")).scalar_one() == 0
        assert not retention.purchase_summary_ready(conn, retention.churn_basis(conn))
    # the page's path: nothing saved for this version, so it fits, saves, and the next reader reads
    first = churn_risk.todays_scores(duckdb_engine, undone)
    second = churn_risk.todays_scores(duckdb_engine, undone)
    assert first.model is not None and second.saved
    pd.testing.assert_frame_equal(second.scores, first.scores, check_dtype=False, rtol=1e-12)


def test_when_there_is_no_score_the_saved_reason_is_read_back(duckdb_engine):
    from relq.ingest.demo import generate_demo, load_demo

    load_demo(duckdb_engine, generate_demo(customers=200, seed=4))
    assert churn_risk.refresh_scores(duckdb_engine).startswith("No churn-risk scores: ")
    with duckdb_engine.connect() as conn:
        saved = churn_risk.saved_scores(conn, store.data_version(conn))
        fitted = churn_risk.current_scores(conn)
    assert not saved.scored and saved.scores.empty
    assert saved.message == fitted.message and "at least 100 are needed" in saved.message


def test_scores_fitted_in_the_background_are_read_back_by_a_reader_arriving_meanwhile(
    duckdb_engine, demo_company
):
    from relq.ingest.demo import load_demo

    load_demo(duckdb_engine, demo_company)
    for thread in [t for t in threading.enumerate() if t.name == "relq-churn-scores"]:
        thread.join(timeout=120)  # a fit another test started in this process would take the turn
    churn_risk.refresh_scores_in_background(duckdb_engine)  # as the Upload page does after an import
    # a reader arriving meanwhile waits for that fit and reads what it saved (one fit, not two)
    version = store.data_version(duckdb_engine)
    read = churn_risk.todays_scores(duckdb_engine, version)
    for thread in [t for t in threading.enumerate() if t.name == "relq-churn-scores"]:
        thread.join(timeout=120)
    assert read.saved and read.model is None
    with duckdb_engine.connect() as conn:
        fitted = churn_risk.current_scores(conn)
    pd.testing.assert_frame_equal(read.scores, fitted.scores, check_dtype=False, rtol=1e-12)


def test_the_ranked_at_risk_list_gives_each_account_its_own_score_as_a_pandas_join_does(demo_risk):
    """The at-risk list ranked by churn risk: each listed account gets the probability and factors
    scored for it (NaN for an account without a score, listed last), riskiest first — as pandas'
    join on the customer id gives them — whether ranked from the scores or their kept lookup."""
    _, _, _, scored = demo_risk
    scores = scored.scores
    ids = [*scores["customer_id"].sample(40, random_state=3), "C-NOT-SCORED-1", "C-NOT-SCORED-2"]
    rng = np.random.default_rng(5)
    listed = pd.DataFrame({c: [f"{c} {i}" for i in range(len(ids))] for c in retention.AT_RISK_COLUMNS})
    listed["customer_id"] = ids
    listed["annual_value"] = rng.integers(1_000, 90_000, len(ids)).astype(float)
    reference = listed.join(scores.set_index("customer_id")[["probability", "factors"]], on="customer_id")
    reference = reference.sort_values(
        ["probability", "annual_value", "customer_id"], ascending=[False, False, True], na_position="last"
    ).reset_index(drop=True)
    for given in (scores, churn_risk.score_lookup(scores)):
        ranked = churn_risk.rank_at_risk(listed, given)
        pd.testing.assert_frame_equal(ranked, reference[ranked.columns])
        assert list(ranked.columns[5:8]) == ["probability", "reasons", "factors"]
    assert set(ranked["customer_id"].tail(2)) == {"C-NOT-SCORED-1", "C-NOT-SCORED-2"}
    assert ranked["probability"].head(40).is_monotonic_decreasing
