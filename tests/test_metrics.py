"""Headline numbers and ``report --json`` end to end, against published values, SciPy and statsmodels."""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from relq import store
from relq.cli import main
from relq.core.instrument import load_instrument
from relq.measures import metrics
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


def test_pillar_and_rq_means_match_scipy_t_interval_on_the_stored_indices(duckdb_engine, demo_company):
    store.load_demo(duckdb_engine, demo_company)
    with duckdb_engine.connect() as conn:
        head = metrics.headline(conn)
        stored = pd.read_sql(
            schema.survey_responses.select().with_only_columns(
                *[schema.survey_responses.c[p] for p in (*PILLARS, "rq")]
            ),
            conn,
        )
    for name, got in [*head.pillars.items(), ("rq", head.rq)]:
        values = stored[name].dropna()
        ci = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
        assert got.n == len(values)
        assert got.estimate == pytest.approx(values.mean(), abs=1e-9)
        assert (got.low, got.high) == pytest.approx(ci, abs=1e-9)


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
    for pillar in PILLARS:
        entry = report["pillars"][pillar]
        assert {"mean", "ci", "n", "alpha"} <= set(entry)
        assert 0.5 < entry["alpha"] < 1 and len(entry["ci"]) == 2
    assert {"mean", "ci", "n"} <= set(report["rq"])
    assert {"score", "ci", "n", "promoters", "passives", "detractors"} <= set(report["nps"])
    assert {"score", "ci", "n"} <= set(report["csat"])
    assert {"mean", "ci", "n"} <= set(report["ces"])
    segments = report["segments"]
    assert {s["value"] for s in segments} >= {"North America", "EMEA", "APAC", "LATAM"}
    assert sum(s["n"] for s in segments) == report["responses"]
    for seg in segments:
        assert {"value", "n", "nps", "pillars", "csat", "ces", "rq"} <= set(seg)
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


def test_statistics_difference_gives_the_rest_without_a_query(engine):
    frame = _nps_example().assign(
        csat=[5, 4, 3, 2, 1] * 20,
        trust=np.linspace(0, 100, 100),
        submitted_at=[datetime(2025, 5, 1 + i % 2) for i in range(100)],
    )
    _insert_responses(engine, frame)
    with engine.connect() as conn:
        total = conn.execute(metrics.sa.select(*metrics.sufficient_statistics())).one()
        first = conn.execute(
            metrics.sa.select(*metrics.sufficient_statistics()).where(
                SegmentFilter(until=date(2025, 5, 1)).response_clause()
            )
        ).one()
        second = conn.execute(
            metrics.sa.select(*metrics.sufficient_statistics()).where(
                SegmentFilter(since=date(2025, 5, 2)).response_clause()
            )
        ).one()
    rest = metrics.statistics_difference(total, first)
    for key in metrics.STATISTIC_KEYS:
        assert float(rest[key]) == pytest.approx(float(second._mapping[key]), abs=1e-9)
