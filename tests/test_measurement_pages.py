"""The Measurement and Methodology pages, driven through Streamlit's AppTest on the demo company."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from relq import store
from relq.core.instrument import load_instrument

ROOT = Path(__file__).resolve().parent.parent


def _page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / name), default_timeout=60)


def test_measurement_page_shows_alpha_with_interval_per_pillar_and_the_weak_items(demo_env):
    at = _page("measurement.py").run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Trust α", "Commitment α", "Satisfaction α"]
    assert all(0 < float(m.value.split()[0]) < 1 for m in at.metric[:3])
    assert sum("95% CI [" in c.value and "items" in c.value for c in at.caption) == 3
    # the demo's reverse-keyed items are answered noisily: the page names them
    assert any("Items that weaken reliability" in w.value and "trust_4" in w.value for w in at.warning)
    assert any("item–total r" in df.value.columns for df in at.dataframe)  # item statistics
    assert any("Edit the questionnaire" in e.label for e in at.expander)
    at.session_state["measurement_tab"] = "Are the pillars distinct?"
    at.run()
    htmt = next(df.value for df in at.dataframe if "HTMT" in df.value.columns or "htmt" in df.value.columns)
    assert (
        len(htmt) == 3 and htmt.filter(like="CI").notna().all().all()
    )  # three pairs, each with its interval


def test_measurement_page_with_filters_matching_nothing_says_so(demo_env):
    from datetime import date

    from relq.store.filters import SegmentFilter

    at = _page("measurement.py")
    at.session_state["relq_filter"] = SegmentFilter(since=date(1990, 1, 1), until=date(1990, 1, 31))
    at.run()
    assert not at.exception
    assert any("No item answers match" in w.value for w in at.warning)


def test_measurement_page_on_an_empty_store_says_so(empty_store_env):
    at = _page("measurement.py").run()
    assert not at.exception
    assert any("No item answers match" in w.value for w in at.warning)


@pytest.fixture
def editable_demo(tmp_path, demo_db_url, monkeypatch):
    """A private copy of the demo database and of the instrument file, for the editor to change."""
    db = tmp_path / "relq.duckdb"
    shutil.copy(demo_db_url.removeprefix("duckdb:///"), db)
    instrument = tmp_path / "instrument.toml"
    shutil.copy(ROOT / "data" / "instrument.toml", instrument)
    monkeypatch.setenv("RELQ_DATABASE_URL", f"duckdb:///{db}")
    monkeypatch.setenv("RELQ_INSTRUMENT", str(instrument))
    return f"duckdb:///{db}", instrument


def test_instrument_editor_saves_the_file_and_recomputes_indices(editable_demo):
    url, path = editable_demo
    at = _page("measurement.py").run()
    assert not at.exception
    engine = store.get_engine(url)
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.avg(store.schema.survey_responses.c.trust))).scalar()
    engine.dispose()
    # flip trust_4's reverse keying in the editor (row 3 of the item table)
    at.session_state["instrument_editor"] = {
        "edited_rows": {3: {"reverse": False}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.button(key="save_instrument").click().run()
    assert not at.exception
    assert any("indices recomputed" in s.value for s in at.success)
    assert load_instrument(path).item("trust_4").reverse is False
    engine = store.get_engine(url)
    with engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.avg(store.schema.survey_responses.c.trust))).scalar()
        audit = conn.execute(sa.select(store.schema.audit_log.c.action)).scalars().all()
    engine.dispose()
    assert after != pytest.approx(before)
    assert "edit_instrument" in audit


def test_instrument_editor_rejects_an_item_without_a_pillar_and_writes_nothing(editable_demo):
    _, path = editable_demo
    original = path.read_text()
    at = _page("measurement.py").run()
    at.session_state["instrument_editor"] = {
        "edited_rows": {},
        "added_rows": [{"id": "trust_1", "pillar": "trust", "text": "A duplicate id", "reverse": False}],
        "deleted_rows": [],
    }
    at.button(key="save_instrument").click().run()
    assert not at.exception
    assert any("appears twice" in e.value for e in at.error)
    assert path.read_text() == original


def test_methodology_page_explains_every_number_with_formula_and_when_to_trust_it(demo_env):
    at = _page("methodology.py").run()
    assert not at.exception
    headers = " | ".join(h.value for h in at.header)
    for topic in (
        "Pillar index",
        "Relationship quality (RQ)",
        "t-interval",
        "Cronbach",
        "Feldt",
        "item–total",
        "HTMT",
        "NPS",
        "adjusted-Wald",
        "CSAT",
        "Wilson",
        "CES",
        "Comparisons",
        "Benjamini–Hochberg",
        "Small-sample",
        "quadrants",
        "Cohorts",
        "Retention rate",
        "Kaplan–Meier",
        "Cox",
        "At risk",
        "Data-quality flags",
        "The unit is the customer",
        "Effective n",
        "Weights",
        "Key drivers",
        "Why fewer deltas are significant now",
    ):
        assert topic in headers, topic
    assert len(at.latex) >= 15
    text = " ".join(m.value for m in at.markdown)
    assert text.count("When to trust it.") == len(at.header)
    assert "[14, 44]" in text  # the published NPS example
    # the clustered variance's equivalents in Stata and R, and what each weighting answers
    assert "vce(cluster customer)" in text and "survey::svymean" in text and "ids = ~customer" in text
    for question in (
        "what do our responses say",
        "what does the average customer feel",
        "what does our revenue feel",
        "what would the whole customer base say",
    ):
        assert question in text


def test_measurement_page_shows_design_effects_and_raking_diagnostics(demo_env):
    at = _page("measurement.py").run()
    assert not any("icc" in df.value.columns for df in at.dataframe)  # a closed tab computes nothing
    at.session_state["measurement_tab"] = "Customers as clusters, and weights"
    at.run()
    assert not at.exception
    effects = next(df.value for df in at.dataframe if "icc" in df.value.columns)
    assert set(effects["metric"]) >= {"Trust", "NPS"}
    assert (effects["deff"] > 1).all() and (effects["n_eff"] < effects["n"]).all()
    labels = {m.label for m in at.metric}
    assert {"Kish design effect of the weights", "Smallest weight", "Largest weight"} <= labels
    margins = next(df.value for df in at.dataframe if "achieved" in df.value.columns)
    assert set(margins["dimension"]) == {"region", "plan"}
    assert (abs(margins["achieved"] - margins["target"]) < 1e-6 * margins["target"]).all()
