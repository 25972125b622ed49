"""Every query RelQ runs compiles for Trino, BigQuery and Snowflake, and each warehouse's SQL
parser (sqlglot) reads the result — so a construct a warehouse lacks fails here, not at a
customer's site.

The queries are collected by running the report, the board report and every page on the demo
company in DuckDB and recording each SQLAlchemy statement executed (hand-written text SQL is
left out: it is per-engine on purpose, see relq.store.dialects.month_label). Trino compiles
with its own SQLAlchemy dialect (the ``trino`` package); BigQuery's and Snowflake's dialects
come with their vendors' whole SDKs, so those two compile with SQLAlchemy's generic dialect
(BigQuery's with backtick quoting) and sqlglot reads them as BigQuery / Snowflake SQL and writes
them back, raising on anything it cannot express there. sqlglot checks syntax and known
functions' shapes, not every function's meaning.
"""

from __future__ import annotations

import re
import threading
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot
import streamlit as st
from sqlalchemy.engine import Engine
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.sql.compiler import IdentifierPreparer
from sqlglot.errors import ErrorLevel
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses.churn_risk import rebuild_stored_tables
from relq.outputs.board_report import board_report_html
from relq.outputs.report import ReportRequest, build_report
from relq.store import schema
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent
PAGES = re.findall(r'st\.Page\(\s*"(pages/[a-z_]+\.py)"', (ROOT / "app.py").read_text())


class _GenericDialect(DefaultDialect):
    """SQLAlchemy's generic SQL with named parameters (``:name``)."""

    name = "generic"
    paramstyle = "named"
    supports_native_boolean = True


class _BacktickPreparer(IdentifierPreparer):
    def __init__(self, dialect):
        super().__init__(dialect, initial_quote="`")


class _BacktickDialect(_GenericDialect):
    """Generic SQL quoted as BigQuery quotes identifiers."""

    name = "generic_backtick"
    preparer = _BacktickPreparer


def _trino_dialect():
    from trino.sqlalchemy.dialect import TrinoDialect

    return TrinoDialect(paramstyle="named")


WAREHOUSES = {"trino": _trino_dialect, "bigquery": _BacktickDialect, "snowflake": _GenericDialect}


@pytest.fixture(scope="module")
def relq_statements(demo_db_url):
    """Every distinct SQLAlchemy statement the report, the board report and the pages execute."""
    seen: dict[str, sa.sql.ClauseElement] = {}
    st.cache_data.clear()  # other tests in this process may have cached the pages' query results

    def record(conn, clauseelement, multiparams, params, execution_options):
        if isinstance(clauseelement, (sa.sql.Select, sa.sql.CompoundSelect, sa.sql.dml.UpdateBase)):
            seen.setdefault(str(clauseelement), clauseelement)

    def reports(engine) -> None:
        for request in (
            ReportRequest(),
            ReportRequest(date(2025, 1, 1), date(2025, 12, 31), "region", "commitment", "satisfaction", 60.0),
        ):
            build_report(engine, request)
        with engine.connect() as conn:
            board_report_html(conn, SegmentFilter(), generated_at=datetime(2026, 1, 1))

    engine = store.get_engine(demo_db_url)
    for thread in [t for t in threading.enumerate() if t.name == "relq-churn-scores"]:
        thread.join(timeout=300)  # a rebuild of the stored tables a page of another test started
    with engine.begin() as conn:  # the reads of the rows themselves first: no stored table current
        conn.execute(schema.derived_versions.delete())
    sa.event.listen(Engine, "before_execute", record)
    try:
        reports(engine)
        sa.event.remove(Engine, "before_execute", record)
        rebuild_stored_tables(engine)  # then the reads of the stored tables, as the dashboard has them
        sa.event.listen(Engine, "before_execute", record)
        reports(engine)
        engine.dispose()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RELQ_DATABASE_URL", demo_db_url)
            for page in PAGES:
                at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
                at.switch_page(page).run()
                industry = at.multiselect(key="flt_dim_industry")
                industry.select(industry.options[0]).run()  # the segment filter's SQL too
    finally:
        if sa.event.contains(Engine, "before_execute", record):
            sa.event.remove(Engine, "before_execute", record)
    return list(seen.values())


def test_the_collection_holds_the_queries_of_every_layer(relq_statements):
    text = "\n".join(str(s) for s in relq_statements)
    assert len(relq_statements) > 40
    for table in ("survey_responses", "survey_answers", "customers", "transactions", "tickets"):
        assert table in text


@pytest.mark.parametrize("warehouse", sorted(WAREHOUSES))
def test_every_relq_query_compiles_and_parses_as_the_warehouses_sql(relq_statements, warehouse):
    dialect = WAREHOUSES[warehouse]()
    failures = []
    for statement in relq_statements:
        try:
            sql = str(statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))
            parsed = sqlglot.parse_one(sql, read=warehouse, error_level=ErrorLevel.RAISE)
            parsed.sql(dialect=warehouse, unsupported_level=ErrorLevel.RAISE)
        except Exception as exc:  # noqa: BLE001 - every failure is listed
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}\n{str(statement)[:400]}")
    assert not failures, f"{len(failures)} of {len(relq_statements)} queries:\n\n" + "\n\n".join(failures[:5])
