"""The Gap quadrants page (AppTest on the demo company): pair, threshold, a quadrant's list, download."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import quadrants
from relq.analyses.quadrants import QuadrantSpec
from relq.store import schema
from relq.store.filters import SegmentFilter

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "quadrants.py")


def _caption_with(at, text: str) -> str:
    return next(c.value for c in at.caption if text in c.value)


def test_page_shows_four_quadrants_with_names_and_actions(demo_env):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    headings = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert sorted(headings) == sorted(f"#### {name}" for name in quadrants.QUADRANT_NAMES.values())
    assert any("still trust you" in i.value for i in at.info)
    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        counts = quadrants.quadrant_counts(conn, SegmentFilter())
    engine.dispose()
    text = " ".join(m.value for m in at.markdown)
    for n in counts.values():
        assert f"**{n:,} customers**" in text
    assert "Borderline:" in text and "Sensitivity:" in text


def test_changing_pair_and_threshold_updates_the_quadrants(demo_env):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="q_pair").set_value("satisfaction×commitment").run()
    assert not at.exception
    assert any("Deepen the emotional connection" in i.value for i in at.info)
    at.radio(key="q_mode").set_value("target").run()
    at.number_input(key="q_target").set_value(70.0).run()
    assert not at.exception
    assert "threshold 70.0" in _caption_with(at, "customers · threshold")
    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        counts = quadrants.quadrant_counts(
            conn, SegmentFilter(), QuadrantSpec.at("satisfaction", "commitment", 70)
        )
        median = quadrants.resolve_spec(conn, SegmentFilter(), "satisfaction", "commitment", "median")
    engine.dispose()
    text = " ".join(m.value for m in at.markdown)
    assert all(f"**{n:,} customers**" in text for n in counts.values())
    at.radio(key="q_mode").set_value("median").run()
    assert not at.exception
    assert f"satisfaction {median.x_threshold:.1f}" in _caption_with(at, "customers · threshold")


def test_selecting_a_quadrant_lists_its_customers_with_a_formula_safe_download(
    demo_db_url, tmp_path, monkeypatch, downloads
):
    # A private copy of the demo, where one customer's name is a spreadsheet formula.
    path = tmp_path / "relq.duckdb"
    shutil.copy(demo_db_url.removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    engine = store.get_engine(url)
    spec = QuadrantSpec()
    with engine.begin() as conn:
        target = quadrants.quadrant_customers(conn, SegmentFilter(), spec, "x_low_y_low")["customer_id"].iloc[
            0
        ]
        conn.execute(
            sa.update(schema.customers)
            .where(schema.customers.c.customer_id == target)
            .values(name="=HYPERLINK(1)")
        )
        expected = quadrants.quadrant_customers(conn, SegmentFilter(), spec, "x_low_y_low")
    engine.dispose()

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="q_selected").set_value("x_low_y_low").run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert set(shown["customer_id"]) == set(expected["customer_id"])
    assert (shown["trust"] < 50).all() and (shown["satisfaction"] < 50).all()
    assert any(b.label == "Download these customers (CSV)" for b in at.get("download_button"))
    data = downloads["quadrant-x_low_y_low-trust-satisfaction.csv"]
    csv = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    assert len(csv) == len(expected)
    assert csv.loc[csv["customer_id"] == target, "name"].item() == "'=HYPERLINK(1)"
    assert {"last_purchase", "open_tickets", "latest_comment", "borderline"} <= set(csv.columns)


def test_a_list_longer_than_the_download_holds_says_how_many_the_quadrant_has_and_which_it_holds(
    demo_env, downloads, monkeypatch
):
    # the same quadrant of every surveyed customer, with a list capped at 1,050 (50,000 in use)
    import streamlit as st

    monkeypatch.setattr(quadrants, "LISTED_CUSTOMERS", 1_050)
    st.cache_data.clear()  # no list read with the usual cap, and none left with this one
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="q_mode").set_value("target").run()
    at.number_input(key="q_target").set_value(0.0).run()
    at.selectbox(key="q_selected").set_value("x_high_y_high").run()
    assert not at.exception
    spec = QuadrantSpec.at("trust", "satisfaction", 0)
    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        in_quadrant = quadrants.quadrant_counts(conn, SegmentFilter(), spec)["x_high_y_high"]
        lowest = quadrants.quadrant_customers(conn, SegmentFilter(), spec, "x_high_y_high", limit=in_quadrant)
    engine.dispose()
    assert len(lowest) == in_quadrant > 1_050
    caption = _caption_with(at, "the first 1,000 shown, the lowest 1,050 in the download")
    assert caption.startswith(f"{in_quadrant:,} customers")
    csv = pd.read_csv(
        io.BytesIO(downloads["quadrant-x_high_y_high-trust-satisfaction.csv"]), encoding="utf-8-sig"
    )
    st.cache_data.clear()
    assert csv["customer_id"].tolist() == lowest["customer_id"].head(1_050).tolist()


def test_segment_split_and_migration_render(demo_env):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert "q_dimension" not in [s.key for s in at.selectbox]  # a closed tab computes nothing
    at.session_state["q_tab"] = "Mix by segment"
    at.run()
    at.selectbox(key="q_dimension").set_value("plan").run()
    assert not at.exception
    assert any("Quadrant shares by plan" in c.proto.spec for c in at.get("plotly_chart"))
    at.session_state["q_tab"] = "Migration between quadrants"
    at.run()
    assert any("regress to the mean" in c.value for c in at.caption)
    at.radio(key="q_basis").set_value("periods").run()
    assert not at.exception
    assert any("Choose a period in the sidebar" in i.value for i in at.info)


def test_empty_store_says_so_without_a_traceback(empty_store_env):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No customer in view" in w.value for w in at.warning)


def test_frame_quadrant_filter_narrows_the_page_to_that_quadrant(demo_env):
    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        counts = quadrants.quadrant_counts(conn, SegmentFilter())
    engine.dispose()
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["relq_filter"] = SegmentFilter(quadrant="x_high_y_low")
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert f"**{counts['x_high_y_low']:,} customers** · 100.0% of those in view" in text
    assert "**0 customers**" in text


def test_a_long_customer_list_draws_its_first_thousand_and_downloads_them_all(demo_env, downloads):
    # a business target of 0 puts every surveyed customer of the demo in "high trust, high satisfaction"
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="q_mode").set_value("target").run()
    at.number_input(key="q_target").set_value(0.0).run()
    at.selectbox(key="q_selected").set_value("x_high_y_high").run()
    assert not at.exception
    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        expected = quadrants.quadrant_customers(
            conn, SegmentFilter(), QuadrantSpec.at("trust", "satisfaction", 0), "x_high_y_high"
        )
    engine.dispose()
    assert len(expected) > 1_000
    shown = at.dataframe[0].value
    assert shown["customer_id"].tolist() == expected["customer_id"].head(1_000).tolist()  # lowest first
    assert f"{len(expected):,} customers" in _caption_with(at, "the first 1,000 shown, all in the download")
    csv = pd.read_csv(
        io.BytesIO(downloads["quadrant-x_high_y_high-trust-satisfaction.csv"]), encoding="utf-8-sig"
    )
    assert len(csv) == len(expected)
