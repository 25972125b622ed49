"""The executive overview and the board report, on the demo company."""

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from relq import store
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


def test_kpi_deltas_match_statsmodels_stacked_ols_and_bh_across_the_cards(demo_db_url, demo_company):
    """A card's delta is linearised over the customers of both quarters: statsmodels WLS of the score
    on [1, current] over both quarters' responses (weights 1/n per quarter), clustered by customer,
    has the same slope and ours × (N−1)/(N−2) as variance. q: statsmodels' fdr_bh across the cards."""
    import math

    import numpy as np
    import statsmodels.api as sm
    from scipy import stats as sp
    from statsmodels.stats.multitest import multipletests

    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        frame, periods, _ = board_report.overview_kpis(conn, SegmentFilter())
    engine.dispose()
    r = demo_company.responses
    at = pd.to_datetime(r["submitted_at"])

    def inside(flt):
        return (at >= pd.Timestamp(flt.since)) & (at < pd.Timestamp(flt.until) + pd.Timedelta(days=1))

    cards = frame.set_index("metric")
    for metric in ("trust", "nps"):
        stacked = pd.concat(
            [r[inside(periods.current)].assign(current=1.0), r[inside(periods.previous)].assign(current=0.0)]
        )
        stacked = stacked[stacked[metric].notna()]
        y = stacked[metric].to_numpy(float)
        if metric == "nps":
            y = 100 * np.where(y >= 9, 1.0, np.where(y <= 6, -1.0, 0.0))
        w = 1.0 / stacked.groupby("current")[metric].transform("size").to_numpy()
        groups = pd.factorize(stacked["customer_id"].fillna(stacked["response_id"]))[0]
        fit = sm.WLS(y, np.column_stack([np.ones(len(y)), stacked["current"]]), weights=w).fit(
            cov_type="cluster", cov_kwds={"groups": groups}
        )
        se = math.sqrt(fit.cov_params()[1, 1] * (len(y) - 2) / (len(y) - 1))
        assert cards.loc[metric, "delta"] == pytest.approx(fit.params[1], rel=1e-8)
        assert cards.loc[metric, "p_value"] == pytest.approx(
            2 * sp.norm.sf(abs(fit.params[1]) / se), rel=1e-6
        )
    tested = frame[frame["q_value"].notna()]
    assert len(tested) == 9  # every card is in the family
    reject, q, *_ = multipletests(tested["p_value"], method="fdr_bh")
    assert tested["q_value"].to_numpy() == pytest.approx(q, rel=1e-12)
    assert (tested["significant"].to_numpy() == reject).all()


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


def test_board_report_axis_labels_are_not_clipped_in_chromium(demo_engine, tmp_path):
    """Every y-axis tick label of the board report's charts lies wholly inside its chart, as drawn by
    Debian's chromium (a 10 px left margin once cut "64" to "4")."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM_ARGS

    with demo_engine.connect() as conn:
        page_html = board_report.board_report_html(conn, SegmentFilter())
    path = tmp_path / "board.html"
    path.write_text(page_html, encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(path.as_uri())
        page.wait_for_selector(".ytick text")
        boxes = page.evaluate(
            """() => [...document.querySelectorAll('.main-svg')].flatMap(svg => {
                const frame = svg.getBoundingClientRect();
                return [...svg.querySelectorAll('.ytick text')].map(t => {
                    const b = t.getBoundingClientRect();
                    return {text: t.textContent, left: b.left - frame.left};
                });
            })"""
        )
        browser.close()
    assert boxes and all(b["left"] >= 0 for b in boxes), [b for b in boxes if b["left"] < 0]
    assert any(b["text"] in {"60", "62", "64", "65", "70"} for b in boxes)


def test_segment_moves_from_the_dashboards_cached_sums_equal_those_read_per_dimension(demo_engine):
    """The dashboard caches each batch of segment sums: after a region (then a plan) is chosen, the
    region's segments are compared in the view without it — the batch the view already read — and
    the moves are the same, to 1e-12, as those read one dimension at a time."""
    cache: dict = {}
    read: list[tuple] = []

    with demo_engine.connect() as conn:
        periods = board_report.overview_periods(conn, SegmentFilter())

        def sums(now, before, names):
            key = (now, before, names)
            if key not in cache:
                read.append(key)
                cache[key] = board_report.period_sums_by_dimension(conn, now, before, names)
            return cache[key]

        region = SegmentFilter.from_query_params({"seg.region": "EMEA"})
        both = SegmentFilter.from_query_params({"seg.region": "EMEA", "seg.plan": "Enterprise"})
        for view in (SegmentFilter(), region, both):
            current = replace(view, since=periods.current.since, until=periods.current.until)
            previous = replace(view, since=periods.previous.since, until=periods.previous.until)
            read.clear()
            direct = board_report.segment_moves(conn, current, previous, significant_only=False)
            shared = board_report.segment_moves(conn, current, previous, significant_only=False, sums=sums)
            pd.testing.assert_frame_equal(shared, direct, check_exact=False, rtol=1e-12)
            assert set(direct["dimension"]) >= {"region", "plan"}
            if view == region:  # the region's rows come from the unfiltered view's read
                assert [now.values_of("region") for now, _, _ in read] == [("EMEA",)]
            if view == both:  # the plan's rows come from the region view's read
                assert [(now.values_of("region"), now.values_of("plan")) for now, _, _ in read] == [
                    (("EMEA",), ("Enterprise",)),
                    ((), ("Enterprise",)),
                ]


def test_the_cards_from_the_segment_moves_read_equal_the_cards_read_on_their_own(demo_engine):
    """The dashboard's cards take the two quarters' sums from the total row of the segment moves'
    read (one read, not two): every card — estimate, interval, delta, p and BH q — equals the cards
    read on their own (checked against statsmodels above), to 1e-12, with and without a region."""
    read: list[tuple] = []

    def sums(now, before, names):
        read.append(names)
        return board_report.period_sums_by_dimension(conn, now, before, names)

    with demo_engine.connect() as conn:
        for view in (SegmentFilter(), SegmentFilter.from_query_params({"seg.region": "EMEA"})):
            read.clear()
            own, periods, quarter = board_report.overview_kpis(conn, view)
            shared, periods_shared, quarter_shared = board_report.overview_kpis(
                conn, view, sums=sums, periods=board_report.overview_periods(conn, view)
            )
            pd.testing.assert_frame_equal(shared, own, check_exact=False, rtol=1e-12)
            assert (periods_shared, quarter_shared) == (periods, quarter)
            assert read == [board_report.unfiltered_dimensions(periods.current, periods.previous)]
            assert ("region" in read[0]) == (not view.values_of("region"))
