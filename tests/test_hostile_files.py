"""Hostile files, generated here: a workbook declaring a million-row sheet, a 100,000-column table,
a 10 MB cell, a zip bomb, a UTF-8 file with a stray Windows-1252 byte, a NUL in a cell. Each is
refused early with a sentence naming the limit (README → Limits), or read without garbling —
the same on DuckDB and PostgreSQL. Memory is bounded by running the import in a process that
may not grow past 2 GB (no timings are asserted)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from relq.analyses import voice
from relq.exceptions import ImportRejected
from relq.ingest import import_file, prepare_import, read
from relq.store import catalog
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent


def _workbook(rows: list[list], dimension: str | None = None, replace: tuple[bytes, bytes] = ()) -> bytes:
    """An .xlsx with ``rows``; ``dimension`` rewrites the size the sheet declares (<dimension ref>),
    ``replace`` a text in the sheet's XML (what openpyxl itself would not write)."""
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    if dimension is None and not replace:
        return buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                if dimension:
                    data = re.sub(rb'<dimension ref="[^"]*"', f'<dimension ref="{dimension}"'.encode(), data)
                if replace:
                    data = data.replace(*replace)
            dst.writestr(item, data)
    return out.getvalue()


BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
from relq.exceptions import ImportRejected
from relq.ingest import prepare_import
data = open(sys.argv[1], "rb").read()
try:
    prepare_import(data, file_name=sys.argv[2])
except ImportRejected as exc:
    print(exc)
    sys.exit(3)
"""


def _import_in_bounded_process(tmp_path, data: bytes, name: str) -> subprocess.CompletedProcess:
    """prepare_import in a fresh process whose address space may not exceed 2 GB."""
    path = tmp_path / name
    path.write_bytes(data)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    return subprocess.run(
        [sys.executable, "-c", BOUNDED, str(path), name],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


# ── 8. limits ──────────────────────────────────────────────────────────────────────────────


def test_a_tiny_workbook_declaring_every_cell_of_a_sheet_is_refused_within_bounded_memory(tmp_path):
    data = _workbook([["customer_id", "name"], ["C1", "Acme"]], dimension="A1:XFD1048576")
    assert len(data) < 10_000
    run = _import_in_bounded_process(tmp_path, data, "huge.xlsx")
    assert run.returncode == 3, run.stderr[-2000:]  # refused, not out of memory
    assert "1,048,576 rows × 16,384 columns" in run.stdout and f"{read.MAX_XLSX_CELLS:,} cells" in run.stdout


def test_a_workbook_holding_more_cells_than_it_declares_stops_at_the_limit(monkeypatch):
    monkeypatch.setattr(read, "MAX_XLSX_CELLS", 1_000)  # the same check, on a file small to make
    data = _workbook([["customer_id", "name"]] + [[f"C{i}", f"N{i}"] for i in range(600)], dimension="A1:B2")
    with pytest.raises(ImportRejected, match="more than 1,000 cells"):
        prepare_import(data, file_name="liar.xlsx")


def test_a_workbook_unpacking_beyond_the_limit_is_refused_unopened(monkeypatch):
    monkeypatch.setattr(read, "MAX_XLSX_UNPACKED_BYTES", 4_000)
    data = _workbook([["customer_id", "comment"]] + [[f"C{i}", "x" * 50] for i in range(200)])
    with pytest.raises(ImportRejected, match="unpacks to .* MB; RelQ opens workbooks of at most"):
        prepare_import(data, file_name="bomb.xlsx")


def test_a_100000_column_table_is_refused_naming_the_column_limit():
    header = "customer_id," + ",".join(f"f{i}" for i in range(100_000))
    data = (header + "\nC1," + ",".join("x" for _ in range(100_000)) + "\n").encode()
    with pytest.raises(ImportRejected, match=r"100,001 columns; RelQ reads at most 1,000 columns"):
        prepare_import(data, file_name="wide.csv")


def test_a_later_row_wider_than_the_limit_is_refused_with_its_line():
    rows = ["customer_id,name"] + [f"C{i},N{i}" for i in range(100)] + ["C9," + ",".join(["x"] * 2_000)]
    with pytest.raises(ImportRejected, match=r"line 102 has 2,001 columns"):
        prepare_import(("\n".join(rows) + "\n").encode(), file_name="ragged.csv")


def test_a_10_mb_cell_is_refused_naming_the_cell_limit():
    data = b"customer_id,name,notes\nC1,Acme," + b"x" * (10 * 1024 * 1024) + b"\n"
    with pytest.raises(ImportRejected, match=r"line 2 holds a cell longer than 32,767 characters"):
        prepare_import(data, file_name="long.csv")
    book = _workbook([["customer_id", "notes"], ["C1", "LONG"]], replace=(b"LONG", b"y" * 40_000))
    with pytest.raises(ImportRejected, match=r"40,000 characters; one cell may hold at most 32,767"):
        prepare_import(book, file_name="long.xlsx")


def test_a_header_cell_over_the_limit_is_refused_with_its_line_not_a_parser_error():
    data = b'"' + b"x" * 40_000 + b'",name\nC1,Acme\n'
    with pytest.raises(ImportRejected, match=r"line 1 holds a cell longer than 32,767 characters"):
        prepare_import(data, file_name="long-header.csv")


def test_a_table_with_more_cells_than_the_limit_is_refused_before_it_is_parsed(monkeypatch):
    monkeypatch.setattr(read, "MAX_CELLS", 5_000)
    data = ("customer_id,name,region\n" + "".join(f"C{i},N{i},EU\n" for i in range(2_000))).encode()
    with pytest.raises(ImportRejected, match=r"about 6,0\d\d cells .* at most 5,000 cells"):
        prepare_import(data, file_name="big.csv")


def test_every_limit_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for value in (
        read.MAX_COLUMNS,
        read.MAX_CELLS,
        read.MAX_XLSX_CELLS,
        read.MAX_CELL_CHARS,
        catalog.MAX_EXTRA_DIMENSIONS,
        catalog.MAX_DIMENSION_VALUES,
    ):
        assert f"{value:,}" in readme, value
    assert "## Limits" in readme


def test_extra_crm_columns_are_stored_but_only_a_few_become_filters(duckdb_engine):
    extras = [f"field_{i:02d}" for i in range(60)]
    header = "customer_id,name," + ",".join(extras) + ",notes"
    lines = [header] + [
        f"C{r},N{r}," + ",".join(f"v{r % 3}" for _ in extras) + f",free text {r}" for r in range(300)
    ]
    import_file(duckdb_engine, ("\n".join(lines) + "\n").encode(), file_name="crm.csv", kind="customers")
    with duckdb_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(DISTINCT field) FROM customer_fields")).scalar_one()
        offered = catalog.dimensions(conn)
    assert stored == 61  # nothing dropped
    extra_offered = [d for d in offered if d.startswith("field_") or d == "notes"]
    assert len(extra_offered) == catalog.MAX_EXTRA_DIMENSIONS
    assert "notes" not in offered  # 300 distinct values: no segment


# ── 9. encodings decided per file, with evidence ───────────────────────────────────────────


def test_a_utf8_file_with_one_stray_windows_1252_byte_keeps_its_names_and_names_the_line():
    lines = ["customer_id,name"] + [f"C{i},Zoë Müller {i}" for i in range(20)]
    data = ("\n".join(lines) + "\n").encode("utf-8") + b"C99,Caf\xe9 Stray\n"
    prepared = prepare_import(data, file_name="mixed.csv", kind="customers")
    names = prepared.validated.valid["name"].tolist()
    assert names[0] == "Zoë Müller 0" and names[-1] == "Café Stray"  # not "ZoÃ« MÃ¼ller"
    assert prepared.encoding.startswith("UTF-8")
    assert any("line(s) 22" in m and "Windows-1252" in m for m in prepared.messages)


def test_a_utf8_file_full_of_accents_with_a_stray_byte_is_not_taken_for_binary():
    # Á and Ý are C3 81 and C3 9D in UTF-8: undefined in Windows-1252, control codes in Latin-1
    lines = ["customer_id,name"] + [f"C{i},ÁÝÁÝ Ýr {i}" for i in range(40)]
    data = ("\n".join(lines) + "\n").encode("utf-8") + b"C99,Ren\xe9e\n"
    prepared = prepare_import(data, file_name="accents.csv", kind="customers")
    assert prepared.validated.valid["name"].tolist()[0] == "ÁÝÁÝ Ýr 0"
    assert prepared.validated.valid["name"].tolist()[-1] == "Renée"


def test_a_windows_1252_file_is_still_read_whole_as_windows_1252():
    data = "customer_id;name\nC1;Café Zürich\nC2;Müller\n".encode("cp1252")
    prepared = prepare_import(data, file_name="legacy.csv", kind="customers")
    assert prepared.encoding == "Windows-1252" and not prepared.messages
    assert prepared.validated.valid["name"].tolist() == ["Café Zürich", "Müller"]


# ── 10. a NUL byte: one sentence on every engine ────────────────────────────────────────────

NUL_FILE = b"customer_id,name,region\nC1,Ac\x00me,EU\nC2,Beta,US\n"


def test_a_nul_in_a_cell_is_refused_the_same_way_on_both_engines(engine, table_counts):
    before = table_counts(engine)
    with pytest.raises(ImportRejected, match=r"row 2, column 'name' holds a NUL character"):
        import_file(engine, NUL_FILE, file_name="nul.csv")
    assert table_counts(engine) == before


def test_the_cli_refuses_a_nul_on_postgresql_in_one_line(postgres_engine, tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes(NUL_FILE)
    url = postgres_engine.url.render_as_string(hide_password=False)
    run = subprocess.run(
        [sys.executable, "-m", "relq", "import", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "RELQ_DATABASE_URL": url},
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "NUL character" in run.stderr


def test_a_nul_in_the_voice_search_behaves_the_same_on_both_engines(engine):
    survey = (
        b"response_id,submitted_at,nps,comment\nR1,2025-01-02 10:00,9,great support\nR2,2025-01-03,3,slow\n"
    )
    import_file(engine, survey, file_name="survey.csv")
    with engine.connect() as conn:
        found = voice.comments(conn, SegmentFilter(), search="sup\x00port")
    assert found["comment"].tolist() == ["great support"]
