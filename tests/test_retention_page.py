"""The Retention and churn page (AppTest on the demo company): the at-risk list sorted by churn
risk and its download, the backtest on screen, the survival split from the survey, and the
Quadrants page's survival since the survey."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import churn_risk, quadrants, retention
from relq.store import schema
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "retention.py")


def _text(at) -> str:
    return " ".join(
        [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    )


def _open(tab: str, at: AppTest | None = None) -> AppTest:
    """The page with ``tab`` open (only the open tab runs)."""
    at = at or AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["ret_tab"] = tab
    return at.run()


def test_page_renders_every_tab_and_controls_change_the_view(demo_env):
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    assert "churn dates" in _text(at)  # the demo has churned_at: contract basis, said in words
    at = _open("Cohorts", at)
    heatmap = at.get("plotly_chart")[0]
    assert "% active" in heatmap.proto.spec and "95% CI" in heatmap.proto.spec
    at.radio(key="ret_cohort_mode").set_value("Active customers").run()
    assert not at.exception
    assert '"title":{"text":"active"}' in at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    at = _open("Rates", at)
    at.radio(key="ret_freq").set_value("quarter").run()
    assert not at.exception and "Retention and churn by quarter" in " ".join(
        c.proto.spec for c in at.get("plotly_chart")
    )
    table = at.dataframe[0].value
    assert {"at_start", "retained", "new", "new_churned"} <= set(table.columns)
    assert "not mixed into either rate" in _text(at)
    at = _open("Survival", at)
    at.selectbox(key="ret_split").set_value("plan").run()
    assert not at.exception
    assert "**Log-rank test:** the curves differ" in _text(at)
    assert "Months since acquisition" in at.get("plotly_chart")[0].proto.spec
    assert "median lifetime, months [95% CI]" in at.dataframe[0].value.columns
    at.selectbox(key="ret_split").set_value("quadrant").run()  # relq.analyses.quadrants' four named quadrants
    assert not at.exception
    legend = {
        t["name"] for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"] if t.get("name")
    }
    assert set(quadrants.QUADRANT_NAMES.values()) & legend
    assert "Months since the survey that placed the customer" in at.get("plotly_chart")[0].proto.spec
    assert "a landmark" in _text(at)
    at = _open("Relationship quality → churn", at)
    assert not at.exception and "hazard ratio" in _text(at) and "a landmark" in _text(at)
    at = _open("Lifetime value", at)
    assert not at.exception
    assert "expected remaining revenue per active customer [95% CI]" in at.dataframe[0].value.columns
    at = _open("Segments & service", at)
    assert not at.exception


def test_at_risk_list_is_sorted_by_churn_risk_keeps_reasons_and_downloads(demo_env, downloads):
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    at.number_input(key="ret_days").set_value(30).run()
    assert not at.exception
    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        expected = retention.at_risk_customers(conn, SegmentFilter(), days=30)
        scores = churn_risk.assess(conn).scores
    engine.dispose()
    assert f"**{len(expected):,} active customers at risk**" in _text(at)
    assert "Riskiest first" in _text(at)
    assert any(b.label == "Download the at-risk list" for b in at.get("download_button"))
    csv = pd.read_csv(io.BytesIO(downloads["at_risk_customers.csv"]), encoding="utf-8-sig")
    assert len(csv) == len(expected) and set(csv["customer_id"]) == set(expected["customer_id"])
    assert csv["probability"].is_monotonic_decreasing  # riskiest first
    by_id = scores.set_index("customer_id")["probability"]
    assert csv["probability"].to_numpy() == pytest.approx(by_id.loc[csv["customer_id"]].to_numpy())
    assert csv["reasons"].str.len().gt(0).all() and {"owner", "annual_value", "factors"} <= set(csv.columns)


def test_churn_risk_tab_shows_the_backtest_and_the_gain_over_the_rule(demo_env):
    at = _open("Churn risk")
    assert not at.exception
    text = _text(at)
    assert "How well it predicted" in text and "Against the rule alone" in text
    assert "the model gains" in text and "95% CI" in text
    assert {m.label for m in at.metric} >= {"C-index", "AUC", "Brier score"}
    assert "Predicted vs observed churn" in " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert any("probability" in d.value.columns for d in at.dataframe)


def test_page_says_so_when_no_customer_matches(demo_env):
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["relq_filter"] = SegmentFilter(customer=(("region", ("Atlantis",)),))
    at.run()
    assert not at.exception
    assert any("No customers match" in w.value for w in at.warning)


def test_page_works_for_a_transactions_only_shop(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'shop.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    orders = pd.read_csv(ROOT / "tests" / "fixtures" / "retention" / "transactions.csv")
    with engine.begin() as conn:
        iid = store.new_import(conn, file_name="orders.csv", file_hash="x", kind="transactions")
        store.bulk_insert(conn, schema.transactions, orders.assign(import_id=iid))
        store.refresh_derived(conn)
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    assert "no churn dates" in _text(at)
    at.number_input(key="ret_days").set_value(45).run()
    assert not at.exception and "**3 active customers at risk**" in _text(at)
    assert "Most valuable first" in _text(at)  # too few churns for a model: it says why
    at = _open("Churn risk", at)
    assert not at.exception and "no churn-risk score" in _text(at)


def test_quadrants_page_shows_survival_since_the_survey(demo_env):
    at = AppTest.from_file(str(ROOT / "pages" / "quadrants.py"), default_timeout=180)
    at.session_state["q_tab"] = "Who stays: survival since the survey"  # only the open tab computes
    at.run()
    assert not at.exception
    assert "Months since the survey that placed the customer" in " ".join(
        c.proto.spec for c in at.get("plotly_chart")
    )
    table = next(d.value for d in at.dataframe if "still a customer at 12 months [95% CI]" in d.value.columns)
    assert set(table["segment"]) <= set(quadrants.QUADRANT_NAMES.values())
    assert "a landmark" in _text(at)
