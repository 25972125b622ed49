"""Hypothesis junk: nothing a user uploads raises anything but ImportRejected, and a rejected
file never changes the database."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relq import store
from relq.exceptions import ImportRejected
from relq.ingest import import_file, prepare_import

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
SAMPLE_BYTES = {p.name: p.read_bytes() for p in sorted(SAMPLES.iterdir()) if not p.name.endswith(".json")}
NASTY = [
    "",
    " ",
    "N/A",
    "None",
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2",
    "@SUM(A1)",
    "\t=1",
    "1e400",
    "-1e309",
    "9" * 400,
    "NaN",
    "inf",
    "0x1F",
    "12,5",
    "1.234,56",
    "31/02/2024",
    "2024-13-45",
    "99/99/9999",
    "10 - Extremely likely",
    "Strongly agree",
    "'; DROP TABLE customers; --",
    "\x00",
    "é",
    "😀",
    '"',
    "\r\n",
    "2024-03-05 25:61",
    "13/13/13",
]
HEADERS = [
    "response_id",
    "customer_id",
    "email",
    "submitted_at",
    "nps",
    "csat",
    "ces",
    "trust_1",
    "amount",
    "occurred_at",
    "opened_at",
    "ticket_id",
    "transaction_id",
    "comment",
    "Timestamp",
    "Record ID",
    "x",
    "",
]


def _csv(rows: list[list[str]], delimiter: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogatepass")


cells = st.one_of(st.sampled_from(NASTY), st.text(max_size=12))
tables = st.builds(
    lambda header, rows, delim: _csv([header, *rows], delim),
    st.lists(st.sampled_from(HEADERS), min_size=1, max_size=8),
    st.lists(st.lists(cells, min_size=0, max_size=9), min_size=0, max_size=6),
    st.sampled_from([",", ";", "\t"]),
)
truncated = st.builds(
    lambda name, frac: SAMPLE_BYTES[name][: int(len(SAMPLE_BYTES[name]) * frac)],
    st.sampled_from(sorted(SAMPLE_BYTES)),
    st.floats(0, 1),
)


def _mutate(name: str, position: float, junk: str) -> bytes:
    data = SAMPLE_BYTES[name]
    if name.endswith(".xlsx") or name.endswith(".txt"):
        return data
    text = data.decode("utf-8-sig", errors="replace")
    cut = int(len(text) * position)
    nxt = text.find(",", cut)
    if nxt < 0:
        return data
    end = text.find(",", nxt + 1)
    end = end if end > 0 else nxt + 1
    return (text[: nxt + 1] + junk.replace(",", " ") + text[end:]).encode("utf-8", "surrogatepass")


mutated = st.builds(_mutate, st.sampled_from(sorted(SAMPLE_BYTES)), st.floats(0, 1), st.sampled_from(NASTY))
junk = st.one_of(st.binary(max_size=600), tables, truncated, mutated)


@settings(max_examples=250, deadline=None)
@given(data=junk, kind=st.sampled_from(["auto", "survey", "customers", "transactions", "tickets"]))
def test_junk_never_raises_anything_but_import_rejected(data, kind):
    try:
        prepared = prepare_import(data, file_name="junk.csv", kind=kind)
    except ImportRejected as exc:
        assert str(exc).startswith("junk.csv: ") or str(exc).startswith("mapping")
        assert "\n" not in str(exc).strip()
        return
    assert set(prepared.rejects.columns) == {"row", "column", "value", "reason"}


@pytest.fixture(scope="module")
def junk_engine(tmp_path_factory):
    engine = store.get_engine(f"duckdb:///{tmp_path_factory.mktemp('junk') / 'relq.duckdb'}")
    store.create_schema(engine)
    import_file(engine, SAMPLE_BYTES["plain_customers.csv"], file_name="plain_customers.csv")
    yield engine
    engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=junk)
def test_junk_imports_land_whole_or_leave_the_database_unchanged(junk_engine, table_counts, data):
    before = table_counts(junk_engine)
    try:
        result = import_file(junk_engine, data, file_name="junk.csv")
    except ImportRejected:
        assert table_counts(junk_engine) == before
        return
    after = table_counts(junk_engine)
    assert after["imports"] == before["imports"] + 1
    assert result.rows_imported + result.rows_rejected + result.rows_duplicate == result.rows_total
    assert after["import_rejects"] - before["import_rejects"] == len(result.rejects)
    store.undo_import(junk_engine, result.import_id)
    assert table_counts(junk_engine) == before


@given(st.text(alphabet='ab,"\r\n\u2028\x0c', max_size=200), st.integers(min_value=1, max_value=8))
def test_a_csv_read_a_megabyte_at_a_time_gives_the_records_of_the_whole_text_in_one_piece(text, chunk):
    """The reader walks the text a piece at a time (a 1M-row export no longer held twice); the
    records, and where each ends, must be those of csv over the whole text (Python's csv module)."""
    from relq.ingest.read import _lines

    def records(lines):
        reader = csv.reader(lines)
        try:
            return [(row, reader.line_num) for row in reader]
        except csv.Error as exc:
            return [("error", str(exc))]

    assert records(_lines(text, chunk)) == records(io.StringIO(text, newline=""))


_CELL = st.sampled_from(["7", "ab", "x y", "Total", "© 2025", "x,y", 'say "hi"', "", " "]) | st.text(
    alphabet='ab ,"\r\n', max_size=5
)


@st.composite
def _exports(draw):
    """CSV text of a header, a body long enough for the Arrow path's windows (or not), and an end
    that may hold blank lines and a report footer; cells with quotes, delimiters and line breaks."""
    width = draw(st.integers(min_value=1, max_value=5))
    header = draw(
        st.lists(st.sampled_from(["id", "name", "", "nps", "Total"]), min_size=width, max_size=width)
    )
    body = draw(st.lists(st.lists(_CELL, min_size=width, max_size=width), min_size=0, max_size=6))
    body += draw(st.sampled_from([[], [[" "] * width], [[""] * width]]))  # rows of spaces, of nothing
    repeat = draw(st.sampled_from([1, 40]))  # 40: past the 128 rows under which lists are used
    end = draw(st.lists(st.sampled_from(["", "Total,3", "Grand Totals", ",,", "Generated by X"]), max_size=3))
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    csv.writer(out, lineterminator=line_end).writerows([header, *body * repeat])
    return out.getvalue() + line_end.join(end) + draw(st.sampled_from(["", line_end]))


@given(_exports())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_a_csv_read_into_arrow_columns_gives_the_table_pythons_csv_module_gives(text):
    """Plain UTF-8 CSVs are parsed by pyarrow's CSV reader into text columns; the table built from
    them (header, layout, footer, every cell and row number) must be the one built from the rows of
    Python's csv module, or both must refuse the file with the same sentence."""
    from relq.ingest.detect import build_table
    from relq.ingest.read import _parse_csv, read_rows

    def built(records):
        try:
            table = build_table(records, "t.csv")
        except ImportRejected as exc:
            return str(exc)
        return (
            table.frame.to_dict("split"),
            table.columns,
            table.layout,
            table.header_rows,
            table.wide_rows,
            table.footer_dropped,
            list(table.frame.dtypes.astype(str)),
        )

    try:
        raw = read_rows(text.encode(), "t.csv")
    except ImportRejected:
        return
    rows = _parse_csv(text, raw.delimiter, "t.csv")
    assert built(raw.records) == built(rows)
