"""RelQ on ClickHouse, tested on the real engine in-process (chDB): the same numbers as DuckDB on
the demo company and on uploaded files, MergeTree tables, and imports that take turns and clean
up after themselves (ClickHouse has no multi-table transactions)."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from relq import store
from relq.cli import main
from relq.exceptions import ImportRejected
from relq.ingest import import_file
from relq.ingest.demo import generate_demo, load_demo
from relq.outputs.board_report import board_report_html
from relq.store import schema
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
# Cases and alerts keep row-by-row state ClickHouse does not hold: those pages say so there instead.
PAGES = [
    page
    for page in re.findall(r'st\.Page\(\s*"(pages/[a-z_]+\.py)"', (ROOT / "app.py").read_text())
    if page not in ("pages/cases.py", "pages/alerts.py")
]
SAMPLE_FILES = (
    "plain_customers.csv",
    "hubspot_companies.csv",
    "plain_transactions.csv",
    "plain_tickets.csv",
    "zendesk_tickets.csv",
    "plain_survey.csv",
    "qualtrics_survey.csv",
    "surveymonkey_survey.csv",
    "typeform_survey.csv",
    "google_forms_survey.csv",
)


# -- uploaded files: the samples, and a small company exported to CSV as an analyst would -----
def _company_files(customers: int = 300, seed: int = 5) -> list[tuple[str, bytes]]:
    company = generate_demo(customers=customers, seed=seed)
    wide = company.answers.pivot(index="response_id", columns="item_id", values="value")
    survey = company.responses[
        ["response_id", "customer_id", "submitted_at", "duration", "nps", "csat", "ces", "comment"]
    ].join(wide, on="response_id")

    def csv(frame: pd.DataFrame) -> bytes:
        return frame.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S").encode()

    return [
        ("company_customers.csv", csv(company.customers)),
        ("company_transactions.csv", csv(company.transactions)),
        ("company_tickets.csv", csv(company.tickets)),
        ("company_survey.csv", csv(survey)),
    ]


def _upload_everything(url: str) -> None:
    engine = store.get_engine(url)
    store.create_schema(engine)
    files = [(name, (SAMPLES / name).read_bytes()) for name in SAMPLE_FILES] + _company_files()
    for name, data in files:
        import_file(engine, data, file_name=name)
    engine.dispose()


@pytest.fixture(scope="module")
def uploaded_urls(tmp_path_factory, chdb_folder):
    """The same uploaded files in a DuckDB file and a chDB database: (duckdb url, chdb url)."""
    duck = f"duckdb:///{tmp_path_factory.mktemp('uploads') / 'relq.duckdb'}"
    chdb = f"chdb:///{chdb_folder}?database=relq_uploads"
    for url in (duck, chdb):
        _upload_everything(url)
    return duck, chdb


@pytest.fixture(scope="module")
def demo_urls(tmp_path_factory, chdb_folder, demo_company):
    """The demo company loaded the same way (data, then its comments' themes) into a DuckDB file
    and a chDB database of this module's own: (duckdb url, chdb url). Not the session's shared
    demo stores, which other modules write to (an export's audit record, a theme edit)."""
    duck = f"duckdb:///{tmp_path_factory.mktemp('demo_pair') / 'relq.duckdb'}"
    chdb = f"chdb:///{chdb_folder}?database=relq_demo_pair"
    for url in (duck, chdb):
        engine = store.get_engine(url)
        load_demo(engine, demo_company)
        engine.dispose()
    return duck, chdb


@pytest.fixture(params=["demo", "uploads"])
def both_stores(request):
    """(DuckDB url, chDB url) holding the same data: the demo company, or uploaded files."""
    if request.param == "demo":
        return request.getfixturevalue("demo_urls")
    return request.getfixturevalue("uploaded_urls")


# -- the same numbers as DuckDB -------------------------------------------------------------
def _assert_same_figures(a, b, path="report"):
    """Equal structure; counts and labels equal; figures to 1e-9, or 1e-6 relative where a
    float sum's order differs."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys differ"
        for key in a:
            _assert_same_figures(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_figures(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or (math.isnan(a) and math.isnan(b)):
            assert (a is None) == (b is None), f"{path}: {a} vs {b}"
            return
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def _report_json(monkeypatch, capsys, url: str, *args: str) -> dict:
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    assert main(["report", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--by", "region"),
        ("--since", "2025-01-01", "--until", "2025-12-31", "--by", "plan", "--x", "commitment"),
    ],
)
def test_report_json_on_clickhouse_equals_duckdb(both_stores, monkeypatch, capsys, args):
    duck, chdb = both_stores
    expected = _report_json(monkeypatch, capsys, duck, *args)
    got = _report_json(monkeypatch, capsys, chdb, *args)
    assert expected["responses"] > 0
    _assert_same_figures(expected, got)


def test_board_report_on_clickhouse_equals_duckdb(both_stores):
    duck, chdb = both_stores
    html = []
    for url in (duck, chdb):
        engine = store.get_engine(url)
        with engine.connect() as conn:
            html.append(board_report_html(conn, SegmentFilter(), generated_at=datetime(2026, 1, 1)))
        engine.dispose()
    assert "RelQ" in html[0]
    duck_text, duck_numbers = _text_and_numbers(html[0])
    ch_text, ch_numbers = _text_and_numbers(html[1])
    assert ch_text == duck_text  # every word, label and formatted figure of the page
    assert ch_numbers == pytest.approx(duck_numbers, rel=1e-6, abs=1e-9)  # and the charts' data


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FULL_PRECISION = re.compile(r"-?\d+\.\d{7,}(?:e[-+]?\d+)?")
_PLOTLY_ARRAY = re.compile(r'"dtype":"(\w+)","bdata":"([^"]*)"')
_FITTED_AT = re.compile(r"fitted \d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def _text_and_numbers(html: str) -> tuple[str, list[float]]:
    """The HTML with chart ids blanked and the charts' numbers (full-precision decimals and
    Plotly's base64 arrays) taken out as floats."""
    html = _UUID.sub("<id>", html)
    numbers: list[float] = []

    def decode(match: re.Match) -> str:
        raw = base64.b64decode(match.group(2).encode().decode("unicode_escape"))
        numbers.extend(np.frombuffer(raw, dtype=match.group(1)).astype(float).tolist())
        return f'"dtype":"{match.group(1)}","bdata":<x>'

    html = _PLOTLY_ARRAY.sub(decode, html)
    numbers += [float(x) for x in _FULL_PRECISION.findall(html)]
    return _FULL_PRECISION.sub("<x>", html), numbers


def _page_figures(url: str, page: str, monkeypatch) -> tuple[list[str], list[pd.DataFrame]]:
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    main = at.main  # the page itself; the sidebar holds the menu and the filters
    texts = [f"{m.label}={m.value}" for m in main.metric] + [c.value for c in main.caption]
    texts += [m.value for m in main.markdown]
    # when the store's comment themes were discovered is when the store was built
    texts = [_FITTED_AT.sub("fitted <when>", t) for t in texts]
    return texts, [df.value for df in main.dataframe]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_the_same_numbers_on_clickhouse_as_on_duckdb(both_stores, page, monkeypatch):
    duck, chdb = both_stores
    texts, frames = _page_figures(duck, page, monkeypatch)
    ch_texts, ch_frames = _page_figures(chdb, page, monkeypatch)
    assert ch_texts == texts
    assert len(ch_frames) == len(frames)
    for ours, theirs in zip(ch_frames, frames, strict=True):
        # when each store was written (imported, logged, a theme rule edited) is told apart
        ours, theirs = (
            f.drop(columns=[c for c in ("imported_at", "logged_at", "edited_at") if c in f])
            for f in (ours, theirs)
        )
        # rows whose order the page leaves to the engine (the drivers' item table) compare as a set
        ours, theirs = (f.sort_values(list(f.columns[:1]), kind="stable") for f in (ours, theirs))
        pd.testing.assert_frame_equal(
            ours.reset_index(drop=True),
            theirs.reset_index(drop=True),
            check_dtype=False,
            rtol=1e-6,
            atol=1e-9,
        )


# -- ClickHouse tables ----------------------------------------------------------------------
def test_tables_are_mergetree_sorted_by_the_columns_relqs_queries_scan(chdb_engine):
    with chdb_engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name, engine, sorting_key FROM system.tables WHERE database = currentDatabase()")
        ).all()
        types = dict(
            conn.execute(
                sa.text(
                    "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                    "AND table = 'survey_responses'"
                )
            ).all()
        )
    tables = {r.name: (r.engine, r.sorting_key) for r in rows}
    assert {t.name for t in schema.metadata.sorted_tables} <= set(tables)
    assert all(tables[t.name][0] == "MergeTree" for t in schema.metadata.sorted_tables)
    assert tables["transactions"][1] == "customer_id, occurred_at"
    assert tables["survey_responses"][1].startswith("toStartOfMonth(submitted_at)")
    # NULL where SQL allows it; timestamps keep microseconds, as on DuckDB and PostgreSQL
    assert types["customer_id"] == "Nullable(String)" and types["response_id"] == "String"
    assert types["submitted_at"] == "DateTime64(6, 'UTC')"


# -- imports without transactions -----------------------------------------------------------
def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (*store.DATA_TABLES, schema.imports, schema.import_rejects)
        }


def test_a_failed_import_on_clickhouse_removes_what_it_wrote_and_says_so(chdb_engine):
    import_file(chdb_engine, (SAMPLES / "plain_customers.csv").read_bytes(), file_name="plain_customers.csv")
    before = _counts(chdb_engine)
    # the answers table is gone: the responses are written, then writing their answers fails
    with chdb_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE survey_answers")
    with pytest.raises(ImportRejected, match="removed again") as failed:
        import_file(chdb_engine, (SAMPLES / "plain_survey.csv").read_bytes(), file_name="plain_survey.csv")
    assert "plain_survey.csv" in str(failed.value)
    store.create_schema(chdb_engine)
    assert _counts(chdb_engine) == before
    # and the same file imports whole afterwards
    result = import_file(
        chdb_engine, (SAMPLES / "plain_survey.csv").read_bytes(), file_name="plain_survey.csv"
    )
    assert result.rows_imported == 4 and _counts(chdb_engine)["survey_responses"] == 4


def test_concurrent_imports_on_clickhouse_take_turns_and_store_each_row_once(chdb_engine):
    files = _company_files(customers=120, seed=9)
    customers, survey = files[0], files[3]
    import_file(chdb_engine, customers[1], file_name=customers[0])
    errors = []

    def upload():
        try:
            import_file(chdb_engine, survey[1], file_name=survey[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = len(pd.read_csv(io.BytesIO(survey[1])))
    with chdb_engine.connect() as conn:
        R = schema.survey_responses
        stored, distinct = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(R.c.response_id)))
        ).one()
        imp = schema.imports.c
        imports = conn.execute(
            sa.select(imp.rows_imported, imp.rows_duplicate).where(imp.kind == "survey")
        ).all()
        # one import stored the rows, the others (after it, in turn) found every row stored
        assert sorted(imports) == [(0, expected), (0, expected), (expected, 0)]
        assert stored == distinct == expected
        assert not conn.execute(sa.text("SELECT count() FROM relq_import_lock")).scalar()


def test_undo_on_clickhouse_removes_the_import_and_refreshes_the_segments(chdb_engine):
    first = import_file(chdb_engine, (SAMPLES / "plain_customers.csv").read_bytes(), file_name="c.csv")
    second = import_file(chdb_engine, (SAMPLES / "plain_transactions.csv").read_bytes(), file_name="t.csv")
    with chdb_engine.connect() as conn:
        tiers = set(conn.execute(sa.select(schema.customers.c.value_tier)).scalars())
    assert tiers - {"No purchases"}
    store.undo_import(chdb_engine, second.import_id)
    counts = _counts(chdb_engine)
    assert counts["transactions"] == 0 and counts["imports"] == 1
    with chdb_engine.connect() as conn:
        assert set(conn.execute(sa.select(schema.customers.c.value_tier)).scalars()) == {"No purchases"}
    assert store.import_history(chdb_engine)["import_id"].tolist() == [first.import_id]


def test_a_chdb_url_with_a_relative_path_lives_in_the_project_folder():
    engine = store.get_engine("chdb:///data/test-relative.chdb?database=somewhere")
    assert engine.url.database == str(ROOT / "data" / "test-relative.chdb")
    assert engine.url.query["database"] == "somewhere"  # only parsed: nothing is opened
