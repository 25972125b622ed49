"""Every export layout and quirk in data/samples and tests/fixtures/ingest reads to the right values."""

from __future__ import annotations

import io
import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa

from relq.exceptions import ImportRejected
from relq.ingest import (
    AmbiguousDates,
    Mapping,
    find_template,
    import_file,
    prepare_import,
    rejects_csv,
    safe_csv,
    save_template,
)
from relq.store import schema

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
ITEMS = (
    [f"trust_{i}" for i in range(1, 5)]
    + [f"commitment_{i}" for i in range(1, 5)]
    + [f"satisfaction_{i}" for i in range(1, 4)]
)
FIRST_ANSWERS = [7, 6, 7, 2, 6, 5, 6, 2, 7, 6, 1]  # respondent 1 in every survey sample


def prepare(name: str, **kwargs):
    path = SAMPLES / name
    mapping = path.with_suffix(".mapping.json")
    if mapping.exists() and "mapping" not in kwargs:
        kwargs["mapping"] = mapping
    return prepare_import(path.read_bytes(), file_name=name, **kwargs)


@pytest.mark.parametrize(
    "name, layout, kind, rows",
    [
        ("qualtrics_survey.csv", "qualtrics", "survey", 4),
        ("qualtrics_legacy_survey.csv", "qualtrics_legacy", "survey", 3),
        ("surveymonkey_survey.csv", "surveymonkey", "survey", 4),
        ("google_forms_survey.csv", "google_forms", "survey", 4),
        ("typeform_survey.csv", "typeform", "survey", 4),
        ("ms_forms_survey.xlsx", "ms_forms", "survey", 4),
        ("plain_survey.csv", "plain", "survey", 4),
        ("plain_customers.csv", "plain", "customers", 4),
        ("plain_transactions.csv", "plain", "transactions", 4),
        ("plain_tickets.csv", "plain", "tickets", 2),
        ("hubspot_contacts.csv", "hubspot_contacts", "customers", 2),
        ("hubspot_companies.csv", "hubspot_companies", "customers", 2),
        ("hubspot_deals.csv", "hubspot_deals", "transactions", 2),
        ("salesforce_accounts_report.csv", "salesforce_accounts", "customers", 2),
        ("salesforce_dataloader_accounts.csv", "salesforce_accounts", "customers", 1),
        ("zendesk_tickets.csv", "zendesk_tickets", "tickets", 2),
        ("transactions_semicolon_decimal_comma.csv", "plain", "transactions", 3),
        ("excel_unicode_text_customers.txt", "plain", "customers", 1),
    ],
)
def test_every_sample_is_recognised_and_reads_without_problems(name, layout, kind, rows):
    prepared = prepare(name)
    assert (prepared.layout, prepared.kind, prepared.rows_total) == (layout, kind, rows)
    assert prepared.rejects.empty, prepared.rejects.to_string()
    valid = prepared.validated.valid
    assert len(valid) == rows
    if kind == "survey":
        answers = prepared.validated.answers
        assert list(answers.columns) == ITEMS  # every item found by its question text
        assert answers.iloc[0].tolist() == FIRST_ANSWERS  # words and numbers read alike
        assert valid["nps"].tolist()[:3] == [10, 8, 3]  # "10 - Extremely likely" included
        assert valid["submitted_at"].notna().all()


@pytest.mark.parametrize(
    "name, column, expected",
    [
        ("qualtrics_survey.csv", "submitted_at", "2024-03-05 09:10:30"),
        ("surveymonkey_survey.csv", "submitted_at", "2024-03-14 09:05:11"),  # month-first, AM/PM
        ("google_forms_survey.csv", "submitted_at", "2024-03-14 09:05:11"),  # day-first
        ("typeform_survey.csv", "submitted_at", "2024-04-01 08:06:10"),
        ("ms_forms_survey.xlsx", "submitted_at", "2024-05-02 10:07:00"),  # Excel dates
        ("salesforce_accounts_report.csv", "acquired_at", "2024-03-15 00:00:00"),
        ("transactions_semicolon_decimal_comma.csv", "occurred_at", "2024-03-15 00:00:00"),
        ("salesforce_dataloader_accounts.csv", "acquired_at", "2023-10-05 14:22:00"),
        ("zendesk_tickets.csv", "first_response_at", "2024-03-05 09:57:44"),
    ],
)
def test_dates_are_read_in_the_order_the_data_shows(name, column, expected):
    valid = prepare(name).validated.valid
    assert str(valid[column].iloc[0]) == expected


def test_durations_ids_amounts_and_names_come_from_the_right_columns():
    assert prepare("qualtrics_survey.csv").validated.valid["response_id"].iloc[0] == "R_3q0xAbCdEf0"
    assert prepare("ms_forms_survey.xlsx").validated.valid["duration"].iloc[0] == 420.0  # completion − start
    amounts = prepare("transactions_semicolon_decimal_comma.csv").validated.valid["amount"].tolist()
    assert amounts == [1250.5, 980.0, 75.25]  # decimal commas, dot thousands
    assert prepare("salesforce_accounts_report.csv").validated.valid["annual_value"].tolist() == [
        1.2e6,
        6.4e5,
    ]
    contacts = prepare("hubspot_contacts.csv")
    assert contacts.validated.valid["name"].tolist() == ["Ana Ortiz", "Jörg Müller"]
    assert contacts.applied["Lifecycle Stage"] == "extra:Lifecycle Stage"
    assert prepare("hubspot_companies.csv").validated.valid["name"].tolist() == ["Eta Corp", "Theta BV"]
    assert prepare("excel_unicode_text_customers.txt").validated.valid["name"].tolist() == ["Ærø Fisk ApS"]


def _csv(text: str, encoding: str = "utf-8") -> bytes:
    return text.replace("\n", "\r\n").encode(encoding)


SURVEY_HEAD = "response_id,submitted_at,nps," + ",".join(ITEMS)


@pytest.mark.parametrize(
    "data, encoding",
    [
        (_csv("customer_id,name\nC1,Café Zürich\n", "utf-8"), "UTF-8"),
        (b"\xef\xbb\xbf" + _csv("customer_id,name\nC1,Café Zürich\n"), "UTF-8 with BOM"),
        (
            b"\xff\xfe" + "customer_id\tname\nC1\tCafé Zürich\n".encode("utf-16-le"),
            "UTF-16 (Excel Unicode text)",
        ),
        (_csv("customer_id;name\nC1;Café Zürich\n", "cp1252"), "Windows-1252"),
    ],
)
def test_encodings(data, encoding):
    prepared = prepare_import(data, file_name="c.csv")
    assert prepared.encoding == encoding
    assert prepared.validated.valid["name"].tolist() == ["Café Zürich"]


def test_ambiguous_dates_ask_for_date_order_and_the_answer_is_used():
    data = _csv(SURVEY_HEAD + "\nA,03/04/2024,9" + ",5" * 11 + "\nB,05/06/2024,9" + ",5" * 11 + "\n")
    with pytest.raises(AmbiguousDates, match="date_order"):
        prepare_import(data, file_name="s.csv")
    dmy = prepare_import(data, file_name="s.csv", date_order="dmy").validated.valid
    mdy = prepare_import(data, file_name="s.csv", date_order="mdy").validated.valid
    assert str(dmy["submitted_at"].iloc[0].date()) == "2024-04-03"
    assert str(mdy["submitted_at"].iloc[0].date()) == "2024-03-04"


def test_na_answers_are_rejected_unless_the_labels_map_them_to_missing():
    data = _csv(SURVEY_HEAD + "\nA,2024-03-04,N/A" + ",5" * 10 + ",None\nB,2024-03-05,9" + ",5" * 11 + "\n")
    prepared = prepare_import(data, file_name="s.csv")
    assert prepared.rejects[["row", "column", "value"]].values.tolist() == [
        [1, "nps", "N/A"],
        [1, "satisfaction_3", "None"],
    ]
    assert "map it to missing" in prepared.rejects["reason"].iloc[0]
    mapped = prepare_import(
        data,
        file_name="s.csv",
        mapping={"kind": "survey", "columns": {}, "labels": {"n/a": None, "None": None}},
    )
    assert mapped.rejects.empty
    first = mapped.validated.valid.iloc[0]
    assert pd.isna(first["nps"]) and pd.isna(mapped.validated.answers.loc[1, "satisfaction_3"])


def test_labels_turn_custom_answer_words_into_numbers():
    data = _csv(SURVEY_HEAD + "\nA,2024-03-04,9" + ",Top box" * 11 + "\n")
    assert not prepare_import(data, file_name="s.csv").rejects.empty
    mapped = prepare_import(data, file_name="s.csv", mapping={"kind": "survey", "labels": {"Top box": 7}})
    assert mapped.validated.answers.iloc[0].tolist() == [7.0] * 11


def test_mapping_by_qualtrics_import_id_and_unknown_target_is_a_clear_error():
    data = (SAMPLES / "qualtrics_survey.csv").read_bytes()
    prepared = prepare_import(
        data, file_name="q.csv", mapping={"kind": "survey", "columns": {"QID5_TEXT": None}}
    )
    assert "Q5" not in prepared.applied  # the comment column was switched off through its ImportId
    with pytest.raises(ImportRejected, match="not a survey target"):
        prepare_import(data, file_name="q.csv", mapping={"kind": "survey", "columns": {"QID4": "promoter"}})


def test_xlsx_sheet_choice():
    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    wb.active.append(["This workbook holds customers on the next sheet"])
    ws = wb.create_sheet("Customers")
    ws.append(["customer_id", "name", "annual_value"])
    ws.append(["C9", "Omega", 1234.5])
    buf = io.BytesIO()
    wb.save(buf)
    prepared = prepare_import(buf.getvalue(), file_name="c.xlsx", sheet="Customers")
    assert prepared.sheets == ("Notes", "Customers")
    assert prepared.validated.valid["annual_value"].tolist() == [1234.5]
    with pytest.raises(ImportRejected, match="no sheet named 'Nope'"):
        prepare_import(buf.getvalue(), file_name="c.xlsx", sheet="Nope")


def test_a_saved_template_is_applied_to_the_next_export_with_the_same_columns(tmp_path):
    data = (SAMPLES / "transactions_semicolon_decimal_comma.csv").read_bytes()
    with pytest.raises(ImportRejected, match="no column holds occurred_at"):
        prepare_import(data, file_name="t.csv", kind="transactions", templates_dir=tmp_path)
    mapping = json.loads((SAMPLES / "transactions_semicolon_decimal_comma.mapping.json").read_text())
    path = save_template("German invoices", Mapping(**mapping), tmp_path)
    assert json.loads(path.read_text())["columns"]["Betrag"] == "amount"
    prepared = prepare_import(data, file_name="t.csv", templates_dir=tmp_path)
    assert prepared.template == "German-invoices" and prepared.kind == "transactions"
    assert find_template(prepared.table, "survey", tmp_path) is None


def test_rejects_download_neutralises_formulas():
    frame = pd.DataFrame({"row": [1, 2, 3], "value": ['=HYPERLINK("x")', "+1", "plain"]})
    text = safe_csv(frame).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'+1" in text and "'plain" not in text
    assert rejects_csv(frame) == safe_csv(frame)


def test_every_sample_imports_and_surveys_match_customers(engine):
    for name in (
        "plain_customers.csv",
        "hubspot_companies.csv",
        "plain_transactions.csv",
        "hubspot_deals.csv",
        "zendesk_tickets.csv",
        "plain_tickets.csv",
    ):
        result = import_file(engine, (SAMPLES / name).read_bytes(), file_name=name, mapping=None)
        assert result.rows_rejected == 0 and result.rows_imported > 0, (name, result.rejects)
    for name in (
        "qualtrics_survey.csv",
        "surveymonkey_survey.csv",
        "google_forms_survey.csv",
        "ms_forms_survey.xlsx",
        "typeform_survey.csv",
    ):
        result = import_file(engine, (SAMPLES / name).read_bytes(), file_name=name)
        assert (result.rows_imported, result.rows_rejected) == (4, 0)
        assert result.rows_unmatched == 0, name  # customer id or email found every customer
    with engine.connect() as conn:
        by_customer = dict(
            conn.execute(
                sa.select(schema.survey_responses.c.customer_id, sa.func.count()).group_by(
                    schema.survey_responses.c.customer_id
                )
            ).all()
        )
        zendesk = dict(
            conn.execute(sa.select(schema.tickets.c.ticket_id, schema.tickets.c.customer_id)).all()
        )
        trust = conn.execute(
            sa.select(schema.survey_responses.c.trust).where(
                schema.survey_responses.c.response_id == "R_3q0xAbCdEf0"
            )
        ).scalar_one()
    assert by_customer == {"C001": 5, "C002": 5, "C003": 5, "C004": 5}
    assert zendesk["301"] == "C001" and zendesk["302"] == "C002"  # email (any case), external id
    assert trust == pytest.approx(100 * (7 + 6 + 7 + 6 - 4) / 4 / 6, abs=1e-3)


def test_a_file_whose_only_known_column_is_the_customer_id_asks_for_its_kind():
    # Without its mapping, the German invoice list shares only customer_id with RelQ's targets:
    # filing it as customers (with invoice number, date and amount as customer fields) would be
    # a silent misreading, so the importer asks for the kind and the mapping instead.
    data = (SAMPLES / "transactions_semicolon_decimal_comma.csv").read_bytes()
    with pytest.raises(ImportRejected, match="choose the kind and map the columns"):
        prepare_import(data, file_name="invoices.csv")
    explicit = prepare_import(
        data,
        file_name="invoices.csv",
        kind="transactions",
        mapping=json.loads((SAMPLES / "transactions_semicolon_decimal_comma.mapping.json").read_text()),
    )
    assert explicit.validated.valid["amount"].tolist() == [1250.5, 980.0, 75.25]
