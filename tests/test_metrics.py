"""Headline numbers and ``report --json`` end to end, against published values, SciPy and statsmodels."""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from relq import store
from relq.cli import main
from relq.core.instrument import load_instrument
from relq.measures import metrics
from relq.measures.customer_sums import GroupSums, group_sums
from relq.store import schema
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

INSTRUMENT = load_instrument()


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _insert_responses(engine, frame: pd.DataFrame, answers: pd.DataFrame | None = None) -> None:
    with engine.begin() as conn:
        import_id = store.new_import(conn, file_name="test.csv", file_hash="t", kind="survey")
        store.bulk_insert(conn, schema.survey_responses, frame.assign(import_id=import_id))
        if answers is not None:
            store.bulk_insert(conn, schema.survey_answers, answers.assign(import_id=import_id))


def _report(monkeypatch, capsys, engine, *args) -> dict:
    monkeypatch.setenv("RELQ_DATABASE_URL", _url(engine))
    assert main(["report", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _nps_example() -> pd.DataFrame:
    # 50 promoters, 30 passives, 20 detractors: NPS 30, adjusted-Wald 95% interval ≈ [14, 44]
    # (Sauro & Lewis, MeasuringU; Rocks 2016).
    scores = [10] * 25 + [9] * 25 + [8] * 15 + [7] * 15 + [6] * 10 + [3] * 10
    return pd.DataFrame(
        {
            "response_id": [f"N{i:03d}" for i in range(100)],
            "submitted_at": pd.Timestamp("2025-05-01 12:00"),
            "nps": scores,
        }
    )


def test_published_nps_example_through_the_store_and_report_json(engine, monkeypatch, capsys):
    _insert_responses(engine, _nps_example())
    report = _report(monkeypatch, capsys, engine)
    nps = report["nps"]
    assert (nps["promoters"], nps["passives"], nps["detractors"], nps["n"]) == (50, 30, 20, 100)
    assert nps["score"] == pytest.approx(30.0)
    assert nps["ci"][0] == pytest.approx(14.1, abs=0.05) and nps["ci"][1] == pytest.approx(44.2, abs=0.05)
    assert round(nps["ci"][0]) == 14 and round(nps["ci"][1]) == 44


def test_csat_and_ces_match_statsmodels_wilson_and_scipy_t_interval(engine):
    rng = np.random.default_rng(42)
    n = 240
    frame = pd.DataFrame(
        {
            "response_id": [f"C{i}" for i in range(n)],
            "submitted_at": pd.Timestamp("2025-06-01"),
            "csat": rng.integers(1, 6, n),
            "ces": rng.integers(1, 8, n),
        }
    )
    frame.loc[::7, "ces"] = None  # not everyone answers CES
    _insert_responses(engine, frame)
    with engine.connect() as conn:
        head = metrics.headline(conn)
    top2 = int((frame["csat"] >= 4).sum())
    low, high = proportion_confint(top2, n, alpha=0.05, method="wilson")
    assert head.csat.estimate == pytest.approx(100 * top2 / n, abs=1e-9)
    assert (head.csat.low, head.csat.high) == pytest.approx((100 * low, 100 * high), abs=1e-9)
    ces = frame["ces"].dropna().astype(float)
    ci = sps.t.interval(0.95, len(ces) - 1, loc=ces.mean(), scale=sps.sem(ces))
    assert head.ces.n == len(ces)
    assert head.ces.estimate == pytest.approx(ces.mean(), abs=1e-9)
    assert (head.ces.low, head.ces.high) == pytest.approx(ci, abs=1e-9)


def test_pillar_and_rq_means_match_statsmodels_cluster_robust_t_interval_on_the_stored_indices(
    duckdb_engine, demo_company
):
    # Customers answer several times, so the interval is the customer-clustered one: statsmodels OLS
    # of the index on a constant with cov_type="cluster" (each unmatched response its own cluster);
    # its CRV1 factor (N−1)/(N−k) is 1 for k = 1, so the variances agree exactly. t with C − 1 df.
    store.load_demo(duckdb_engine, demo_company)
    with duckdb_engine.connect() as conn:
        head = metrics.headline(conn)
        stored = pd.read_sql(
            schema.survey_responses.select().with_only_columns(
                schema.survey_responses.c.customer_id,
                *[schema.survey_responses.c[p] for p in (*PILLARS, "rq")],
            ),
            conn,
        )
    for name, got in [*head.pillars.items(), ("rq", head.rq)]:
        part = stored.dropna(subset=[name])
        groups, _ = pd.factorize(
            part["customer_id"].fillna(pd.Series(part.index.astype(str), index=part.index))
        )
        fit = sm.OLS(part[name].to_numpy(), np.ones((len(part), 1))).fit(
            cov_type="cluster", cov_kwds={"groups": groups}
        )
        clusters = len(np.unique(groups))
        ci = sps.t.interval(0.95, clusters - 1, loc=fit.params[0], scale=fit.bse[0])
        assert (got.n, got.customers) == (len(part), clusters)
        assert got.estimate == pytest.approx(part[name].mean(), rel=1e-12)
        assert got.var == pytest.approx(fit.cov_params()[0, 0], rel=1e-9)
        assert (got.low, got.high) == pytest.approx(ci, rel=1e-10)


def test_since_and_until_are_inclusive_submission_dates(engine, monkeypatch, capsys):
    stamps = [
        "2025-02-28 23:59:59",  # the day before: out
        "2025-03-01 00:00:00",  # first instant of since: in
        "2025-03-15 12:00:00",  # in
        "2025-03-31 23:59:59",  # last second of until: in
        "2025-04-01 00:00:00",  # the day after: out
    ]
    frame = pd.DataFrame(
        {
            "response_id": [f"D{i}" for i in range(len(stamps))],
            "submitted_at": pd.to_datetime(stamps),
            "nps": [0, 10, 10, 10, 0],
        }
    )
    _insert_responses(engine, frame)
    report = _report(monkeypatch, capsys, engine, "--since", "2025-03-01", "--until", "2025-03-31")
    assert report["responses"] == 3
    assert report["nps"]["promoters"] == 3 and report["nps"]["detractors"] == 0
    one_day = _report(monkeypatch, capsys, engine, "--since", "2025-03-31", "--until", "2025-03-31")
    assert one_day["responses"] == 1
    with engine.connect() as conn:
        assert metrics.headline(conn, SegmentFilter(until=date(2025, 2, 28))).responses == 1


def test_report_json_has_the_design_shape_with_alpha_and_segments(
    duckdb_engine, demo_company, monkeypatch, capsys
):
    store.load_demo(duckdb_engine, demo_company)
    report = _report(monkeypatch, capsys, duckdb_engine, "--by", "region")
    assert report["responses"] == len(demo_company.responses)
    assert report["weight"] == "response"
    for pillar in PILLARS:
        entry = report["pillars"][pillar]
        assert {"mean", "ci", "n", "customers", "alpha"} <= set(entry)
        assert 0.5 < entry["alpha"] < 1 and len(entry["ci"]) == 2
        assert 0 < entry["customers"] < entry["n"]  # several responses per customer
    assert {"mean", "ci", "n", "customers"} <= set(report["rq"])
    assert {"score", "ci", "n", "customers", "n_eff", "promoters", "passives", "detractors"} <= set(
        report["nps"]
    )
    assert {"score", "ci", "n", "customers", "n_eff"} <= set(report["csat"])
    assert {"mean", "ci", "n", "customers"} <= set(report["ces"])
    for share in ("nps", "csat"):
        assert 0 < report[share]["n_eff"] < report[share]["n"]  # responses of a customer agree
    segments = report["segments"]
    assert {s["value"] for s in segments} >= {"North America", "EMEA", "APAC", "LATAM"}
    assert sum(s["n"] for s in segments) == report["responses"]
    for seg in segments:
        assert {"value", "n", "customers", "nps", "pillars", "csat", "ces", "rq"} <= set(seg)
        assert set(seg["pillars"]) == set(PILLARS)
        assert {"score", "ci", "n"} <= set(seg["nps"])
        assert {"delta", "ci", "p", "q", "significant"} <= set(seg["vs_rest"]["nps"])


def test_report_json_alpha_matches_the_reliability_module(duckdb_engine, demo_company, monkeypatch, capsys):
    from relq.measures.reliability import reliability

    store.load_demo(duckdb_engine, demo_company)
    report = _report(monkeypatch, capsys, duckdb_engine, "--since", "2026-01-01", "--until", "2026-06-30")
    with duckdb_engine.connect() as conn:
        rel = reliability(conn, SegmentFilter(since=date(2026, 1, 1), until=date(2026, 6, 30)), INSTRUMENT)
    for pillar in PILLARS:
        assert report["pillars"][pillar]["alpha"] == pytest.approx(rel.alpha[pillar].alpha, abs=1e-12)


def test_report_with_an_unknown_dimension_is_one_line_on_stderr_and_exit_nonzero(
    duckdb_engine, monkeypatch, capsys
):
    monkeypatch.setenv("RELQ_DATABASE_URL", _url(duckdb_engine))
    assert main(["report", "--json", "--by", "planet"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "planet" in lines[0] and "region" in lines[0]


def test_report_on_an_empty_store_has_nulls_not_errors(engine, monkeypatch, capsys):
    report = _report(monkeypatch, capsys, engine)
    assert report["responses"] == 0
    assert report["nps"]["score"] is None and report["nps"]["n"] == 0
    assert report["pillars"]["trust"]["alpha"] is None


def test_the_rest_of_a_group_is_a_difference_of_sums_over_customers(engine):
    # Every sum is over customers and each customer is in one group, so total − part = the other part.
    frame = _nps_example().assign(
        csat=[5, 4, 3, 2, 1] * 20,
        trust=np.linspace(0, 100, 100),
        submitted_at=[datetime(2025, 5, 1 + i % 2) for i in range(100)],
    )
    _insert_responses(engine, frame)
    with engine.connect() as conn:
        total = GroupSums.from_row(group_sums(conn, SegmentFilter())[0].iloc[0].to_dict())
        first = GroupSums.from_row(
            group_sums(conn, SegmentFilter(until=date(2025, 5, 1)))[0].iloc[0].to_dict()
        )
        second = GroupSums.from_row(
            group_sums(conn, SegmentFilter(since=date(2025, 5, 2)))[0].iloc[0].to_dict()
        )
    rest = total - first
    assert rest.responses == second.responses == 50
    for name, sums in rest.scores.items():
        for got, want in zip(sums._fields(), second.scores[name]._fields(), strict=True):
            assert float(got) == pytest.approx(float(want), abs=1e-9)
    assert rest.nps_P == pytest.approx(second.nps_P) and rest.promoters == second.promoters
