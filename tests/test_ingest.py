"""relq.ingest end to end on both engines: plain files of every kind, rejects, re-import, undo."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from relq import store
from relq.exceptions import ImportRejected
from relq.ingest import import_file
from relq.store import schema

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"


def fetch(engine, table, order_by) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.select(table).order_by(table.c[order_by]))
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def load(engine, name: str, **kwargs):
    path = FIXTURES / name
    return import_file(engine, path.read_bytes(), file_name=name, **kwargs)


def test_plain_files_of_every_kind_land_with_their_values(engine):
    customers = load(engine, "plain_customers.csv")
    assert (customers.kind, customers.rows_total, customers.rows_imported, customers.rows_duplicate) == (
        "customers",
        4,
        3,
        1,
    )
    stored = fetch(engine, schema.customers, "customer_id")
    assert stored["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert stored.loc[0, "annual_value"] == pytest.approx(12000.5)
    assert str(stored.loc[0, "acquired_at"])[:10] == "2024-01-05"
    assert stored.loc[0, "cohort"] == "2024-01"  # refresh_derived ran
    fields = fetch(engine, schema.customer_fields, "customer_id")
    assert fields[["customer_id", "field", "value"]].values.tolist() == [
        ["C1", "Segment", "Strategic"],
        ["C3", "Segment", "Strategic"],
    ]

    tx = load(engine, "plain_transactions.csv")
    assert (tx.kind, tx.rows_imported, tx.rows_rejected) == ("transactions", 2, 2)
    assert tx.rejects[["row", "column", "reason"]].values.tolist() == [
        [2, "amount", "not a number"],
        [4, "amount", "number too large (more than 1e+15 in size)"],
    ]
    stored_tx = fetch(engine, schema.transactions, "occurred_at")
    assert stored_tx["amount"].tolist() == [100.25, 50.0]
    assert len(stored_tx.loc[1, "transaction_id"]) == 40  # content hash for the id-less row

    tickets = load(engine, "plain_tickets.csv")
    assert (tickets.kind, tickets.rows_imported, tickets.rows_rejected) == ("tickets", 2, 1)
    assert tickets.rejects.loc[0, "value"] == "not a date"
    stored_tk = fetch(engine, schema.tickets, "ticket_id")
    assert pd.Timestamp(stored_tk.loc[0, "first_response_at"]) == pd.Timestamp("2024-03-01 11:30")

    survey = load(engine, "plain_survey.csv")
    assert (survey.kind, survey.rows_imported, survey.rows_rejected, survey.rows_unmatched) == (
        "survey",
        3,
        2,
        1,
    )
    assert survey.rejects[["row", "column", "value", "reason"]].values.tolist() == [
        [4, "nps", "11", "outside the 0–10 scale"],
        [5, "trust_1", "8", "outside the 1–7 scale"],
    ]
    responses = fetch(engine, schema.survey_responses, "response_id").set_index("response_id")
    assert responses.loc["R1", "customer_id"] == "C1"
    assert responses.loc["R2", "customer_id"] == "C2"  # matched by email, case-insensitive
    assert responses.loc["R3", "customer_id"] is None
    assert responses.loc["R1", "trust"] == pytest.approx(100.0)
    assert responses.loc["R2", "rq"] == pytest.approx(50.0)
    assert responses.loc["R1", "nps"] == 10 and responses.loc["R1", "csat"] == 5
    answers = fetch(engine, schema.survey_answers, "response_id")
    assert len(answers) == 3 * 11
    assert set(answers["import_id"]) == {survey.import_id}

    with engine.connect() as conn:
        rejects = (
            conn.execute(
                sa.select(schema.import_rejects).where(schema.import_rejects.c.import_id == survey.import_id)
            )
            .mappings()
            .all()
        )
    assert [(r["row_number"], r["column_name"]) for r in rejects] == [(4, "nps"), (5, "trust_1")]
    assert json.loads(rejects[0]["raw"])["response_id"] == "R4"


def test_every_rejected_row_is_stored_as_that_row_of_the_file_whether_checking_or_writing_rejected_it(engine):
    """The check keeps only the rows a reject can cite, not the whole file: a row validation rejected
    (a survey's out-of-range answer, a purchase's amount) and a purchase the write rejects (no stored
    customer has its email) are each stored with their whole row, as Python's csv module reads it."""
    load(engine, "plain_customers.csv")
    purchases = (
        "transaction_id,email,occurred_at,amount\n"
        "T1,info@beta.example,2024-03-01,10\n"
        "T2,nobody@x.example,2024-03-02,20\n"
        "T3,info@beta.example,2024-03-03,lots\n"
    )
    sources = {
        "purchases.csv": purchases,
        "plain_survey.csv": (FIXTURES / "plain_survey.csv").read_text(encoding="utf-8"),
    }
    results = {
        "purchases.csv": import_file(
            engine, purchases.encode(), file_name="purchases.csv", kind="transactions"
        ),
        "plain_survey.csv": load(engine, "plain_survey.csv"),
    }
    assert sorted(results["purchases.csv"].rejects["row"]) == [2, 3]  # written, checked
    for name, result in results.items():
        file_rows = list(csv.DictReader(io.StringIO(sources[name], newline="")))
        with engine.connect() as conn:
            stored = conn.execute(
                sa.select(schema.import_rejects.c.row_number, schema.import_rejects.c.raw).where(
                    schema.import_rejects.c.import_id == result.import_id
                )
            ).all()
        assert sorted(r.row_number for r in stored) == sorted(result.rejects["row"]), name
        for row_number, raw in stored:
            assert json.loads(raw) == file_rows[row_number - 1], (name, row_number)


def test_storing_an_import_leaves_its_check_as_it_was():
    """The write shares the checked rows instead of copying them; it must not change them: the
    check the Upload page shows (and would write again after a failure) is the same afterwards."""
    from relq.ingest import prepare_import, store_import

    engine = store.get_engine("duckdb:///:memory:")
    store.create_schema(engine)
    load(engine, "plain_customers.csv")
    prepared = prepare_import((FIXTURES / "plain_survey.csv").read_bytes(), file_name="plain_survey.csv")
    valid, answers = prepared.validated.valid.copy(deep=True), prepared.validated.answers.copy(deep=True)
    result = store_import(engine, prepared)
    assert result.rows_imported == 3 and result.rows_unmatched == 1
    pd.testing.assert_frame_equal(prepared.validated.valid, valid)
    pd.testing.assert_frame_equal(prepared.validated.answers, answers)


def test_reimport_adds_nothing_and_undo_removes_everything(engine, table_counts):
    store.create_schema(engine)
    before = table_counts(engine)
    first = load(engine, "plain_survey.csv")
    after_first = table_counts(engine)
    again = load(engine, "plain_survey.csv")
    assert again.rows_imported == 0 and again.rows_duplicate == first.rows_imported
    after_again = table_counts(engine)
    for table in ("survey_responses", "survey_answers"):
        assert after_again[table] == after_first[table]
    store.undo_import(engine, again.import_id)
    store.undo_import(engine, first.import_id)
    assert table_counts(engine) == before


def test_a_rejected_file_leaves_the_database_unchanged(engine, table_counts):
    load(engine, "plain_customers.csv")
    before = table_counts(engine)
    with pytest.raises(ImportRejected, match="no column holds occurred_at"):
        import_file(
            engine, b"transaction_id,customer_id,amount\nT9,C1,5\n", file_name="t.csv", kind="transactions"
        )
    assert table_counts(engine) == before


def test_the_column_summary_counts_like_pythons_str_strip_including_rare_whitespace():
    """The Upload page's per-column counts are taken in Arrow; they must be what Python's own
    str.strip() gives (filled, empty, distinct, first example), whitespace such as the ideographic
    space, no-break space or the file separator \\x1c included."""
    from relq.ingest import column_summary, prepare_import

    rows = [
        "customer_id,name,region",
        "C1,\u3000Ana\u3000,EMEA",
        "C2,\xa0,\x1c",
        "C3,Ana,",
        "C4, Bo ,\u2028AMER",
    ]
    prepared = prepare_import("\n".join(rows).encode(), file_name="crm.csv", kind="customers")
    got = column_summary(prepared).set_index("column")
    cells = pd.DataFrame(
        list(csv.reader(io.StringIO("\n".join(rows[1:]), newline=""))), columns=rows[0].split(",")
    )
    for name in ("customer_id", "name", "region"):
        values = cells[name].map(str.strip)  # the plain-Python reference: the csv module and str.strip
        filled = values[values != ""]
        assert got.loc[name, "filled"] == len(filled), name
        assert got.loc[name, "empty"] == len(values) - len(filled), name
        assert got.loc[name, "distinct"] == filled.nunique(), name
        assert got.loc[name, "example"] == (filled.iloc[0] if len(filled) else ""), name
    assert got.loc["name", "distinct"] == 2 and got.loc["region", "filled"] == 2


def test_each_rejected_rows_source_is_stored_as_the_json_of_that_row_of_the_file():
    """The import keeps every rejected row whole (import_rejects.raw): the JSON of that row's cells,
    the same as json.dumps of pandas' row, read one row at a time; a problem that names no row of
    the table (a row number it does not hold) stores none."""
    import numpy as np

    from relq.ingest.detect import _text_frame
    from relq.ingest.write import reject_records

    cells = [[f"R{i}", f"c{i % 7}", 'é"x', str(i % 11), ""] for i in range(500)]
    frame = _text_frame(cells, ["response_id", "customer", "note", "nps", "comment"])
    rejects = pd.DataFrame(
        {"row": np.r_[np.arange(1, 500, 3), 7, 9999], "column": "nps", "value": "x", "reason": "not a number"}
    )
    stored = reject_records(rejects, frame, import_id=3)
    for row, raw in zip(rejects["row"], stored["raw"], strict=True):
        expected = json.dumps(frame.loc[row].to_dict(), ensure_ascii=False) if row in frame.index else None
        assert raw == expected, row
    assert stored["raw"].notna().sum() == len(rejects) - 1
