"""The frame and the Overview page, driven through Streamlit's AppTest on the demo company."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def test_overview_shows_rq_pillars_and_nps_with_n(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert {"Relationship quality (RQ)", "Trust", "Commitment", "Satisfaction", "NPS"} <= set(labels)
    assert any("n = " in c.value and "95% CI" in c.value for c in at.caption)
    assert any("demo data" in i.value for i in at.info)


def test_a_region_filter_changes_the_overview_numbers_and_the_url(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    before = next(m.value for m in at.metric if m.label == "Trust")
    region = at.multiselect(key="flt_dim_region")
    region.select(region.options[0]).run()
    assert not at.exception
    after = next(m.value for m in at.metric if m.label == "Trust")
    assert before != after
    assert at.query_params.get("seg.region")


def test_filters_that_match_nothing_give_a_sentence_not_an_error(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["since"] = "1990-01-01"
    at.query_params["until"] = "1990-01-31"
    at.run()
    assert not at.exception
    assert any("No survey responses match" in w.value for w in at.warning)


def test_a_second_visitor_gets_the_numbers_without_the_store_schema_being_checked_again(demo_env):
    """The store's schema (its tables, outdated stored tables, indexes) is checked once per server:
    a new browser session — each bookmark opened, each new tab — goes straight to its numbers."""
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

    AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()).lower())

    sa.event.listen(Engine, "before_cursor_execute", record)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    finally:
        sa.event.remove(Engine, "before_cursor_execute", record)
    assert not at.exception
    assert any(m.label == "Trust" for m in at.metric)
    assert seen  # the second visitor's run did read the store…
    catalog = [s for s in seen if "information_schema" in s or "duckdb_" in s or s.startswith("create ")]
    assert not catalog, catalog[:3]  # …but not its catalog


def test_a_store_of_an_older_relq_version_gets_its_stored_tables_rebuilt_when_the_dashboard_opens_it(
    tmp_path, demo_company, monkeypatch
):
    """A store whose stored tables an older RelQ made (the answer rows with other columns, no
    comment themes' month sums yet) is opened by the dashboard: the tables are made again and
    rebuilt in the background, so the pages read them again without waiting for the next import."""
    import time

    from relq import store
    from relq.core.instrument import configured_instrument
    from relq.measures import customer_sums
    from relq.measures.reliability import answer_rows_ready
    from relq.store import themes as stored_themes

    url = f"duckdb:///{tmp_path / 'older.duckdb'}"
    engine = store.get_engine(url)
    store.load_demo(engine, demo_company)
    with engine.begin() as conn:
        store.schema.answer_rows.drop(conn)
        store.schema.theme_sums.drop(conn)
        store.schema.customer_totals.drop(conn)
        conn.exec_driver_sql("CREATE TABLE answer_rows (response_id TEXT NOT NULL, c0 DOUBLE PRECISION)")
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    engine = store.get_engine(url)
    deadline = time.monotonic() + 120
    while True:
        with engine.connect() as conn:
            ready = (
                answer_rows_ready(conn, configured_instrument()),
                stored_themes.theme_sums_ready(conn),
                customer_sums.response_sums_ready(conn),
                customer_sums.customer_totals_ready(conn),
            )
        if all(ready) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ready == (True, True, True, True)
    from relq.analyses import churn_risk

    with churn_risk._FITTING:  # the background refresh then fits and saves the scores: let it end
        pass
    engine.dispose()


def test_a_pages_independent_reads_run_side_by_side_and_the_first_error_is_raised(tmp_path):
    """The Overview's reads run at once on DuckDB and PostgreSQL: two reads that each wait for the
    other (a barrier of two) finish only when they run side by side; results come back in order and
    a read's error reaches the page as if read alone. On an engine not known to take queries from
    threads at once (here SQLite), the reads run one after another in the page's own thread."""
    import threading

    import pytest
    import sqlalchemy as sa

    from relq import store, ui
    from relq.exceptions import RelqError

    engine = store.get_engine(f"duckdb:///{tmp_path / 'side.duckdb'}")
    barrier = threading.Barrier(2, timeout=10)

    def read(value):
        def run():
            barrier.wait()  # raises BrokenBarrierError when the other read is not running too
            with engine.connect() as conn:
                return conn.execute(sa.select(sa.literal(value))).scalar_one()

        return run

    assert ui.read_side_by_side(engine, read(1), read(2)) == [1, 2]

    def broken():
        raise RelqError("The store has no survey_responses table.")

    with pytest.raises(RelqError, match="no survey_responses table"):
        ui.read_side_by_side(engine, lambda: 3, broken)
    engine.dispose()

    lite = sa.create_engine("sqlite://")
    threads = ui.read_side_by_side(lite, threading.current_thread, threading.current_thread)
    assert threads == [threading.current_thread()] * 2
