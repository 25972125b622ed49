"""The executive overview and the board report, on the demo company."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from relq import store
from relq.measures import stats
from relq.outputs import board_report
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_engine(demo_db_url):
    engine = store.get_engine(demo_db_url)
    yield engine
    engine.dispose()


def test_overview_has_every_kpi_with_a_delta_and_a_board_report(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    labels = {m.label for m in at.metric}
    assert {
        "Relationship quality (RQ)",
        "Trust",
        "Commitment",
        "Satisfaction",
        "NPS",
        "CSAT",
        "CES",
        "Retention",
        "Churn",
    } <= labels
    assert all("significant" in str(m.proto.delta) for m in at.metric)
    assert any("last full quarter" in c.value for c in at.caption)


def test_kpi_deltas_match_scipy_welch_and_the_nps_z_test(demo_db_url, demo_company):
    """The trust delta equals scipy's Welch t-test on the raw responses of the two quarters."""
    from scipy import stats as sp

    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        frame, periods, _ = board_report.overview_kpis(conn, SegmentFilter())
    engine.dispose()
    r = demo_company.responses
    at = pd.to_datetime(r["submitted_at"])
    now = r[
        (at >= pd.Timestamp(periods.current.since))
        & (at < pd.Timestamp(periods.current.until) + pd.Timedelta(days=1))
    ]
    before = r[
        (at >= pd.Timestamp(periods.previous.since))
        & (at < pd.Timestamp(periods.previous.until) + pd.Timedelta(days=1))
    ]
    trust = frame.set_index("metric").loc["trust"]
    ref = sp.ttest_ind(now["trust"].dropna(), before["trust"].dropna(), equal_var=False)
    assert trust["delta"] == pytest.approx(now["trust"].mean() - before["trust"].mean(), rel=1e-6)
    assert trust["p_value"] == pytest.approx(ref.pvalue, rel=1e-5)
    nps = frame.set_index("metric").loc["nps"]
    a = stats.nps_interval((now.nps >= 9).sum(), now.nps.between(7, 8).sum(), (now.nps <= 6).sum())
    b = stats.nps_interval((before.nps >= 9).sum(), before.nps.between(7, 8).sum(), (before.nps <= 6).sum())
    assert nps["p_value"] == pytest.approx(stats.nps_difference(a, b).p_value)


def test_segment_moves_are_significant_after_benjamini_hochberg_like_statsmodels(demo_engine):
    from statsmodels.stats.multitest import multipletests

    with demo_engine.connect() as conn:
        periods = board_report.overview_periods(conn, SegmentFilter())
        moves = board_report.segment_moves(conn, periods.current, periods.previous, significant_only=False)
    assert len(moves) > 5
    reject, q, *_ = multipletests(moves["p_value"], method="fdr_bh")
    assert moves["q_value"].to_numpy() == pytest.approx(q)
    assert (moves["significant"].to_numpy() == reject).all()


def test_board_report_is_one_self_contained_html_file(demo_engine):
    with demo_engine.connect() as conn:
        page = board_report.board_report_html(conn, SegmentFilter.from_query_params({"seg.region": "EMEA"}))
    assert page.startswith("<!doctype html>")
    assert "region: EMEA" in page and "Headline scores" in page
    assert "plotly" in page.lower() and '<script src="http' not in page  # plotly.js is inline
    assert page.count("Plotly.newPlot") >= 2


def test_last_full_quarter_is_the_default_period(demo_engine):
    with demo_engine.connect() as conn:
        periods = board_report.overview_periods(conn, SegmentFilter())
    assert periods.current.since.day == 1 and periods.current.since.month in (1, 4, 7, 10)
    assert periods.previous.until.toordinal() == periods.current.since.toordinal() - 1
