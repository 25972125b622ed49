"""The Upload page driven through AppTest: a sample export is checked, imported, then undone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import churn_risk
from relq.ingest import import_file
from relq.store import schema

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "upload.py")


@pytest.fixture
def upload_env(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    sample = ROOT / "data" / "samples" / "plain_customers.csv"
    import_file(engine, sample.read_bytes(), file_name=sample.name)  # real data: no demo is built
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    return url


def _responses(url: str) -> int:
    engine = store.get_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(schema.survey_responses)).scalar_one()
    finally:
        engine.dispose()


def test_a_sample_export_is_checked_imported_and_undone(upload_env):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("plain_customers.csv" in str(c.value) for c in at.dataframe)  # import history
    at.radio(key="up_source").set_value("Try a sample export").run()
    at.selectbox(key="up_sample").set_value("qualtrics_survey.csv").run()
    assert not at.exception
    assert any("Qualtrics (3 header rows)" in s.value for s in at.success)
    assert [m.value for m in at.metric][:3] == ["4", "4", "0"]
    import_button = next(b for b in at.button if b.label.startswith("Import 4 rows"))
    import_button.click().run()
    assert not at.exception
    assert any("4 of 4 rows imported as survey" in s.value for s in at.success)
    assert _responses(upload_env) == 4
    assert any("churn-risk scores are being fitted in the background" in c.value for c in at.caption)
    _saved_scores_of_the_current_data(upload_env)
    at.selectbox(key="up_undo_choice").set_value(at.selectbox(key="up_undo_choice").options[0])
    at.button(key="up_undo").click().run()
    assert not at.exception
    assert _responses(upload_env) == 0
    _saved_scores_of_the_current_data(upload_env)


def test_a_file_is_checked_once_per_choice_and_the_import_click_writes_without_checking_it_again(
    upload_env, monkeypatch
):
    """A 1M-row export takes seconds to check: clicking a tab's widget or "Import" must not read it
    again; a new choice (the date order) and the data changing under it (the import itself) do."""
    import relq.ingest as ingest

    checked = []
    prepare = ingest.prepare_import
    monkeypatch.setattr(
        ingest, "prepare_import", lambda *a, **k: checked.append(k["file_name"]) or prepare(*a, **k)
    )
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()  # in the frame, as served
    at.switch_page("pages/upload.py").run()
    at.radio(key="up_source").set_value("Try a sample export").run()
    checked.clear()  # the first sample of the list was checked when the choice appeared
    at.selectbox(key="up_sample").set_value("qualtrics_survey.csv").run()
    assert checked == ["qualtrics_survey.csv"]
    at.run()  # any rerun with the same choices
    assert checked == ["qualtrics_survey.csv"]
    at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("up_dates_"))).set_value(
        "dmy"
    ).run()
    assert checked == ["qualtrics_survey.csv"] * 2
    next(b for b in at.button if b.label.startswith("Import 4 rows")).click().run()
    assert not at.exception
    assert any("4 of 4 rows imported as survey" in s.value for s in at.success)
    assert _responses(upload_env) == 4
    # written from the checked file, then checked again under the new data version
    assert checked == ["qualtrics_survey.csv"] * 3
    _saved_scores_of_the_current_data(upload_env)


def _saved_scores_of_the_current_data(url: str) -> None:
    """After an import or an undo the page saves today's churn-risk scores (here: why there are
    none) under the data version the pages then read."""
    for thread in [t for t in threading.enumerate() if t.name == "relq-churn-scores"]:
        thread.join(timeout=120)
    engine = store.get_engine(url)
    with engine.connect() as conn:
        saved = churn_risk.saved_scores(conn, store.data_version(conn))
    engine.dispose()
    assert saved is not None and not saved.scored and saved.message


def test_problems_and_label_fixes_show_on_the_page(upload_env, tmp_path):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="up_source").set_value("Try a sample export").run()
    for name in (
        "hubspot_deals.csv",
        "ms_forms_survey.xlsx",
        "transactions_semicolon_decimal_comma.csv",
        "salesforce_accounts_report.csv",
    ):
        at.selectbox(key="up_sample").set_value(name).run()
        assert not at.exception, name
        assert not at.error, (name, [e.value for e in at.error])


def test_review_upload_handles_junk_without_raising(upload_env):
    def app():
        from pages.upload import review_upload
        from relq.ui import get_engine

        review_upload(b"\x00\x01\x02junk\xff" * 10, "junk.bin", get_engine())

    at = AppTest.from_function(app, default_timeout=60).run()
    assert not at.exception
    assert any("not a text table" in e.value for e in at.error)
