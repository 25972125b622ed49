"""The Retention and churn page (AppTest on the demo company): controls, survival split, at-risk
list and its download."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import quadrants, retention
from relq.store import schema
from relq.store.filters import SegmentFilter

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "retention.py")


def _text(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_page_renders_every_section_and_controls_change_the_view(demo_env):
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception
    assert "churn dates" in _text(at)  # the demo has churned_at: contract basis, said in words
    heatmap = at.get("plotly_chart")[0]
    assert "% active" in heatmap.proto.spec
    at.radio(key="ret_cohort_mode").set_value("Active customers").run()
    assert not at.exception
    assert '"title":{"text":"active"}' in at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    at.radio(key="ret_freq").set_value("quarter").run()
    assert not at.exception and "Retention and churn by quarter" in " ".join(
        c.proto.spec for c in at.get("plotly_chart")
    )
    at.selectbox(key="ret_split").set_value("plan").run()
    assert not at.exception
    assert "**Log-rank test:** the curves differ" in _text(at)
    assert "hazard ratio" in _text(at) and "proportional" in _text(at)
    at.selectbox(key="ret_split").set_value("quadrant").run()  # relq.analyses.quadrants' four named quadrants
    assert not at.exception
    legend = {
        t["name"] for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"] if t.get("name")
    }
    assert set(quadrants.QUADRANT_NAMES.values()) & legend


def test_at_risk_days_control_and_download_match_relq(demo_env, downloads):
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    at.number_input(key="ret_days").set_value(30).run()
    assert not at.exception
    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        expected = retention.at_risk_customers(conn, SegmentFilter(), days=30, rq_drop=5.0)
    engine.dispose()
    assert f"**{len(expected):,} active customers at risk**" in _text(at)
    assert any(b.label == "Download the at-risk list" for b in at.get("download_button"))
    csv = pd.read_csv(io.BytesIO(downloads["at_risk_customers.csv"]), encoding="utf-8-sig")
    assert len(csv) == len(expected)
    assert list(csv["customer_id"]) == list(expected["customer_id"])
    assert csv["reasons"].str.len().gt(0).all() and {"owner", "annual_value"} <= set(csv.columns)


def test_page_says_so_when_no_customer_matches(demo_env):
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["relq_filter"] = SegmentFilter(customer=(("region", ("Atlantis",)),))
    at.run()
    assert not at.exception
    assert any("No customers match" in w.value for w in at.warning)


def test_page_works_for_a_transactions_only_shop(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'shop.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    orders = pd.read_csv(Path(__file__).parent / "fixtures" / "retention" / "transactions.csv")
    with engine.begin() as conn:
        iid = store.new_import(conn, file_name="orders.csv", file_hash="x", kind="transactions")
        store.bulk_insert(conn, schema.transactions, orders.assign(import_id=iid))
        store.refresh_derived(conn)
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception
    assert "no churn dates" in _text(at)
    at.number_input(key="ret_days").set_value(45).run()
    assert not at.exception and "**3 active customers at risk**" in _text(at)
