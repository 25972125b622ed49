"""Data-quality counts in SQL against pandas on the demo company."""

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import dataquality
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def summary_and_rows(demo_db_url):
    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        summary = dataquality.quality_summary(conn, SegmentFilter(), stale_days=60).set_index("check")
        rows = {
            k: dataquality.quality_rows(conn, SegmentFilter(), k, stale_days=60) for k in dataquality.CHECKS
        }
        missing = dataquality.missingness(conn, SegmentFilter()).set_index(["table", "column"])
        end = store.data_end(conn)
    engine.dispose()
    return summary, rows, missing, end


def test_the_page_reads_the_responses_once_for_the_summary_and_the_missing_values(
    demo_db_url, summary_and_rows
):
    """The Data quality page's summary and missing values come from one pass over the responses in
    view — the same tables as the two functions read on their own (checked against pandas below)."""
    import sqlalchemy as sa

    summary, _, missing, _ = summary_and_rows
    engine = store.get_engine(demo_db_url)
    seen = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cur, statement, *a: seen.append(statement))
    with engine.connect() as conn:
        both = dataquality.quality_checks(conn, SegmentFilter(), stale_days=60)
    engine.dispose()
    pd.testing.assert_frame_equal(both[0].set_index("check"), summary)
    pd.testing.assert_frame_equal(both[1].set_index(["table", "column"]), missing)
    # the one pass over the responses, or the segment cells' counts stored after a change of the data
    passes = [
        s for s in seen if ("FROM survey_responses" in s and "_total" in s) or "FROM segment_quality" in s
    ]
    assert len(passes) == 1, passes


def test_data_quality_counts_match_pandas_on_demo_company(summary_and_rows, demo_company):
    summary, rows, _, _ = summary_and_rows
    r, a = demo_company.responses, demo_company.answers
    duration = r["duration"].astype(float)
    per_response = a.dropna(subset=["value"]).groupby("response_id")["value"].agg(["count", "min", "max"])
    straight = per_response[(per_response["count"] >= 6) & (per_response["min"] == per_response["max"])]
    expected = {
        "duplicates": int(r["flag_duplicate"].sum()),
        "speeders": int((duration < duration.median() / 2).sum()),
        "unmatched": int(r["customer_id"].isna().sum()),
        "straight-lining": len(straight),
        "out-of-range": int(
            (~r["nps"].between(0, 10) & r["nps"].notna()).sum()
            + (~r["csat"].between(1, 5) & r["csat"].notna()).sum()
        ),
    }
    for check, count in expected.items():
        assert summary.loc[check, "count"] == count, check
        assert len(rows[check]) == count, check
    assert summary.loc["duplicates", "out_of"] == len(r)
    assert set(rows["unmatched"]["customer_id"].isna()) <= {True}


def _stale_customers_by_pandas(demo_company, end, days: int) -> set[str]:
    """Live customers whose last purchase, response or ticket is older than ``days`` (or none)."""
    c = demo_company.customers
    activity = pd.concat(
        [
            demo_company.transactions[["customer_id", "occurred_at"]].rename(columns={"occurred_at": "at"}),
            demo_company.responses[["customer_id", "submitted_at"]].rename(columns={"submitted_at": "at"}),
            demo_company.tickets[["customer_id", "opened_at"]].rename(columns={"opened_at": "at"}),
        ]
    ).dropna(subset=["customer_id"])
    last = pd.to_datetime(activity["at"]).groupby(activity["customer_id"]).max()
    cutoff = pd.Timestamp(end - timedelta(days=days))
    churned = pd.to_datetime(c["churned_at"])
    alive = churned.isna() | (churned > pd.Timestamp(end))
    stale = alive & (c["customer_id"].map(last).isna() | (c["customer_id"].map(last) < cutoff))
    return set(c.loc[stale, "customer_id"])


def test_stale_customers_match_pandas(summary_and_rows, demo_company):
    summary, rows, _, end = summary_and_rows
    expected = _stale_customers_by_pandas(demo_company, end, 60)
    assert summary.loc["stale customers", "count"] == len(expected)
    assert set(rows["stale customers"]["customer_id"]) == expected


def test_stale_customers_from_the_stored_purchase_summary_or_the_purchases_match_pandas(
    duckdb_demo, demo_company
):
    """The last purchase comes from the stored purchase summary while it is current, else from every
    purchase (here: after a change of the data, rolled back) — the same stale customers, a region's too."""
    from relq.analyses.retention import save_purchase_summary

    engine = duckdb_demo
    assert save_purchase_summary(engine)
    region = SegmentFilter.from_query_params({"seg.region": "EMEA"})
    emea = set(demo_company.customers.loc[demo_company.customers["region"] == "EMEA", "customer_id"])
    found = {}
    with engine.connect() as conn:
        end = store.data_end(conn)
        conn.rollback()
        for stored in (True, False):
            transaction = conn.begin()
            if not stored:
                store.note_data_change(conn, "test")
            assert store.derived_current(conn, "purchases") is stored
            for name, flt in (("all", SegmentFilter()), ("EMEA", region)):
                summary = dataquality.quality_summary(conn, flt, stale_days=90).set_index("check")
                rows = dataquality.quality_rows(conn, flt, "stale customers", stale_days=90)
                assert summary.loc["stale customers", "count"] == len(rows)
                found[stored, name] = set(rows["customer_id"])
            transaction.rollback()
    expected = _stale_customers_by_pandas(demo_company, end, 90)
    assert expected and expected & emea
    for stored in (True, False):
        assert found[stored, "all"] == expected
        assert found[stored, "EMEA"] == expected & emea


def test_missingness_matches_pandas_isna(summary_and_rows, demo_company):
    _, _, missing, _ = summary_and_rows
    r = demo_company.responses
    for column in ("customer_id", "comment", "trust", "rq"):
        assert missing.loc[("survey_responses", column), "missing"] == int(r[column].isna().sum())
    answered = demo_company.answers.dropna(subset=["value"]).groupby("item_id").size()
    assert missing.loc[("survey_answers", "trust_1"), "missing"] == len(r) - int(answered["trust_1"])


def test_data_quality_page_shows_counts_and_rows(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/data-quality.py").run()
    assert not at.exception
    assert {"Duplicates", "Speeders", "Unmatched"} <= {m.label for m in at.metric}
    at.selectbox(key="dq_check").select("speeders").run()
    assert not at.exception
    assert any("rows" in c.value for c in at.caption)


def test_stored_answer_rows_flag_the_same_straight_liners_and_out_of_scale_answers(engine, demo_company):
    """Straight-lining and out-of-scale answers read from the answer rows stored after a change of
    the data flag exactly the responses the answers themselves flag, on every engine — including an
    answer outside the 1–7 scale to an item the questionnaire does not ask — and give the answers
    each item has (missingness) that the answers give, whole company and one region, an answer of 12
    to a questionnaire item counted."""
    from relq.core.instrument import configured_instrument
    from relq.measures.reliability import answer_rows_ready, save_answer_rows
    from relq.store import dialects, schema

    store.load_demo(engine, demo_company)
    odd = demo_company.responses["response_id"].iloc[0]
    answers = demo_company.answers
    outside = answers.loc[answers["item_id"] == "trust_2", "response_id"].iloc[3]  # trust_2 → 12
    with engine.begin() as conn:
        store.bulk_insert(
            conn,
            schema.survey_answers,
            pd.DataFrame({"response_id": [odd], "item_id": ["extra_1"], "value": [9.0], "import_id": [None]}),
        )
        A = schema.survey_answers
        conn.execute(
            A.update().where(A.c.response_id == outside, A.c.item_id == "trust_2").values(value=12.0)
        )
    views = (SegmentFilter(), SegmentFilter().with_dimension("region", ["EMEA"]))

    def flagged(conn) -> tuple:
        summary = dataquality.quality_summary(conn, SegmentFilter()).set_index("check")["count"]
        listed = {
            check: sorted(dataquality.quality_rows(conn, SegmentFilter(), check)["response_id"])
            for check in ("straight-lining", "out-of-range")
        }
        missing = [dataquality.missingness(conn, flt) for flt in views]  # answers to each item
        return summary.to_dict(), listed, missing

    with engine.connect() as conn:
        raw = flagged(conn)
    assert odd in raw[1]["out-of-range"] and outside in raw[1]["out-of-range"]
    assert raw[0]["straight-lining"] > 0
    answered = answers.dropna(subset=["value"]).groupby("item_id").size()
    item = raw[2][0].set_index(["table", "column"]).loc[("survey_answers", "trust_2")]
    assert item["missing"] == len(demo_company.responses) - int(answered["trust_2"])  # 12 still counts
    assert save_answer_rows(engine) is (not dialects.is_clickhouse(engine))
    with engine.connect() as conn:
        assert answer_rows_ready(conn, configured_instrument()) is (not dialects.is_clickhouse(engine))
        stored = flagged(conn)
    assert stored[:2] == raw[:2]
    for got, want in zip(stored[2], raw[2], strict=True):
        pd.testing.assert_frame_equal(got, want)


def test_stored_segment_cells_count_what_the_one_pass_over_the_responses_counts(
    engine, demo_company, statements
):
    """Data quality's counts added up from the segment cells stored after a change of the data — the
    responses, those having each column, those failing each check, the answers each item has (one of
    them outside the scale) — equal the one pass over the responses for the whole company and a
    region, the speeders counted against the view's own median duration, on every engine; a view with a period, or a quadrant, reads the responses; once the data
    change the cells are not read."""
    from relq.measures.reliability import save_answer_rows

    store.load_demo(engine, demo_company)
    answers = store.schema.survey_answers
    odd = demo_company.answers.loc[demo_company.answers["item_id"] == "trust_2", "response_id"].iloc[3]
    with engine.begin() as conn:  # an answer outside the scale still counts as an answer
        conn.execute(
            answers.update()
            .where(answers.c.response_id == odd, answers.c.item_id == "trust_2")
            .values(value=12.0)
        )
    save_answer_rows(engine)
    views = {
        "all": SegmentFilter(),
        "EMEA": SegmentFilter().with_dimension("region", ["EMEA"]),
        "EMEA on Growth": SegmentFilter()
        .with_dimension("region", ["EMEA"])
        .with_dimension("plan", ["Growth"]),
        "a quarter": SegmentFilter.from_query_params({"since": "2025-04-01", "until": "2025-06-30"}),
        "a quadrant": SegmentFilter(quadrant="x_high_y_low"),
    }

    def counted(conn, flt: SegmentFilter) -> tuple:
        return (
            dataquality.quality_summary(conn, flt).set_index("check")["count"].to_dict(),
            dataquality.missingness(conn, flt).set_index(["table", "column"])["missing"].to_dict(),
        )

    with engine.connect() as conn:
        raw = {name: counted(conn, flt) for name, flt in views.items()}
    assert raw["all"][0]["speeders"] > raw["EMEA"][0]["speeders"] > raw["EMEA on Growth"][0]["speeders"] > 0
    stored = dataquality.save_segment_quality(engine)
    assert stored is not store.dialects.is_clickhouse(engine)
    for name, flt in views.items():
        statements.clear()
        with engine.connect() as conn:
            assert counted(conn, flt) == raw[name], name
        read = any("FROM segment_quality" in s for s in statements)
        assert read is (stored and name in ("all", "EMEA", "EMEA on Growth")), name
    with engine.begin() as conn:
        store.note_data_change(conn, "import")
    statements.clear()
    with engine.connect() as conn:
        assert {name: counted(conn, flt) for name, flt in views.items()} == raw
    assert not any("FROM segment_quality" in s for s in statements)
