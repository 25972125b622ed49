"""Segment explorer: one or two dimensions, BH across segments, retention per segment."""

from pathlib import Path

import pytest
from statsmodels.stats.multitest import multipletests
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import explorer
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_conn(demo_db_url):
    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def test_two_dimensions_get_benjamini_hochberg_q_values_like_statsmodels(demo_conn):
    frame = explorer.segment_table(demo_conn, SegmentFilter(), ("region", "plan"), min_n=30)
    assert frame["segment"].str.contains(" · ").all()
    for _metric, part in frame[~frame["small"]].groupby("metric"):
        reject, q, *_ = multipletests(part["p_value"], method="fdr_bh")
        assert part["q_value"].to_numpy() == pytest.approx(q)
        assert (part["significant"].to_numpy() == reject).all()
    assert frame.loc[frame["small"], "rank"].isna().all()
    assert not frame.loc[frame["small"], "significant"].any()


def test_segment_retention_adds_up_to_everyone_at_the_start_of_the_quarter(demo_conn):
    from relq.analyses import retention

    kept = explorer.segment_retention(demo_conn, SegmentFilter(), ("region",), min_n=30)
    rates = retention.retention_rates(demo_conn, SegmentFilter(), "quarter")
    last = rates[(rates["metric"] == "retention")].sort_values("period").iloc[-1]
    assert kept["n"].sum() == last["at_start"]
    assert ((kept["low"] <= kept["estimate"]) & (kept["estimate"] <= kept["high"])).all()


def test_segment_page_crosses_two_dimensions_and_greys_small_segments(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/segments.py").run()
    assert not at.exception
    at.selectbox(key="seg_second").select("plan").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["segment"].str.contains(" · ").all()
    assert "nps 95% CI" in table.columns and "retention" in table.columns
    at.selectbox(key="seg_metric").select("retention").run()
    assert not at.exception
