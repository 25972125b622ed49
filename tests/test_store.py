"""The store on DuckDB and a real PostgreSQL server: native bulk writes, derived segments, undo."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from relq import store
from relq.store import schema


def _customers_and_purchases(conn, import_id):
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D"],
            "name": ["Ann", "Bo", "Cy", "Di"],
            "acquired_at": pd.to_datetime(["2024-01-15", None, None, "2024-02-01"]),
            "churned_at": pd.to_datetime([None, None, None, "2024-05-01"]),
            "import_id": import_id,
        }
    )
    purchases = pd.DataFrame(
        {
            "transaction_id": ["t1", "t2", "t3", "t4", "t5"],
            "customer_id": ["A", "A", "B", "B", "D"],
            # the data ends 2024-12-31: A bought then, B last bought 120 days before
            "occurred_at": pd.to_datetime(
                [
                    "2024-03-01 10:00",
                    "2024-12-31 09:00",
                    "2024-02-20 00:00",
                    "2024-09-02 00:00",
                    "2024-03-01 00:00",
                ]
            ),
            "amount": [100.0, 50.0, 10.0, 10.0, 500.0],
            "import_id": import_id,
        }
    )
    store.bulk_insert(conn, schema.customers, customers)
    store.bulk_insert(conn, schema.transactions, purchases)
    store.refresh_derived(conn, at_risk_days=90)


def _derived(conn):
    rows = conn.execute(
        sa.select(
            schema.customers.c.customer_id,
            schema.customers.c.cohort,
            schema.customers.c.lifecycle_stage,
            schema.customers.c.value_tier,
        ).order_by(schema.customers.c.customer_id)
    ).all()
    return {r.customer_id: (r.cohort, r.lifecycle_stage, r.value_tier) for r in rows}


def test_derived_cohort_lifecycle_and_value_tier_match_hand_computed(engine):
    with engine.begin() as conn:
        iid = store.new_import(conn, file_name="crm.csv", file_hash="x", kind="customers")
        _customers_and_purchases(conn, iid)
        got = _derived(conn)
    # cohort: acquired_at month, else the first purchase's month; C never bought.
    # 12-month revenue among buyers ranks A (150) > D (500 but before 2024-01-01? no: 2024-03 is
    # within 365 days of 2024-12-31) -> D 500, A 150, B 20: percent_rank 0, 0.5, 1.
    assert got == {
        "A": ("2024-01", "active", "Middle 50%"),
        "B": ("2024-02", "at risk", "Bottom 30%"),
        "C": (None, "lapsed", "No purchases"),
        "D": ("2024-02", "churned", "Top 20%"),
    }


def test_bulk_insert_keeps_types_and_nulls(engine):
    frame = pd.DataFrame(
        {
            "response_id": ["r1", "r2"],
            "customer_id": ["A", None],
            "submitted_at": pd.to_datetime(["2025-01-02 03:04:05", "2025-02-01 00:00:00"]),
            "nps": [10, None],
            "comment": ['Said "great", then, left', None],
            "trust": [83.5, None],
            "flag_speeder": [True, False],
        }
    )
    with engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, frame)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.survey_responses).order_by("response_id")).all()
    assert rows[0].nps == 10 and rows[1].nps is None
    assert rows[0].comment == 'Said "great", then, left' and rows[1].comment is None
    assert rows[0].trust == pytest.approx(83.5) and rows[1].customer_id is None
    assert rows[0].flag_speeder is True and rows[1].flag_speeder is False
    assert pd.Timestamp(rows[0].submitted_at) == pd.Timestamp("2025-01-02 03:04:05")


def test_a_failed_write_leaves_the_store_unchanged(engine):
    if engine.dialect.name == "chdb":
        pytest.skip("ClickHouse has no transactions or key constraints: test_a_failed_import_on_clickhouse_…")
    with pytest.raises(sa.exc.DBAPIError):
        with engine.begin() as conn:
            store.new_import(conn, file_name="f", file_hash="h", kind="customers")
            store.bulk_insert(conn, schema.customers, pd.DataFrame({"customer_id": ["A"]}))
            store.bulk_insert(conn, schema.customers, pd.DataFrame({"customer_id": ["A"]}))  # duplicate key
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.customers)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.imports)).scalar() == 0


def test_undo_removes_an_import_and_everything_it_added(engine):
    with engine.begin() as conn:
        keep = store.new_import(conn, file_name="a", file_hash="a", kind="customers")
        store.bulk_insert(conn, schema.customers, pd.DataFrame({"customer_id": ["K"], "import_id": [keep]}))
        iid = store.new_import(conn, file_name="b", file_hash="b", kind="customers")
        _customers_and_purchases(conn, iid)
    store.undo_import(engine, iid)
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.customers.c.customer_id)).scalars().all() == ["K"]
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.transactions)).scalar() == 0
    assert store.import_history(engine)["import_id"].tolist() == [keep]


def test_demo_company_loads_whole_and_can_be_removed(engine, demo_company):
    counts = store.load_demo(engine, demo_company)
    assert store.has_demo(engine)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(schema.survey_responses)).scalar()
        stages = set(conn.execute(sa.select(schema.customers.c.lifecycle_stage).distinct()).scalars())
    assert n == counts.responses == len(demo_company.responses)
    assert {"active", "churned"} <= stages
    store.remove_demo(engine)
    assert not store.has_demo(engine) and not store.has_data(engine)


def test_data_end_is_the_latest_activity(engine):
    with engine.begin() as conn:
        store.bulk_insert(
            conn,
            schema.transactions,
            pd.DataFrame(
                {
                    "transaction_id": ["t"],
                    "customer_id": ["A"],
                    "occurred_at": [pd.Timestamp("2024-06-30 23:00")],
                    "amount": [1.0],
                }
            ),
        )
        assert store.data_end(conn) == date(2024, 6, 30)
    # a page reads the end recorded with a stored table of the current data version; once a later
    # purchase is imported (a new version), the rows again, until the tables are rebuilt
    from relq.analyses.retention import save_purchase_summary

    built = save_purchase_summary(engine)
    assert built is not store.dialects.is_clickhouse(engine)
    with engine.begin() as conn:
        store.bulk_insert(
            conn,
            schema.tickets,
            pd.DataFrame(
                {"ticket_id": ["k"], "customer_id": ["A"], "opened_at": [pd.Timestamp("2024-07-02 08:00")]}
            ),
        )
        assert store.current_data_end(conn) == (
            date(2024, 6, 30) if built else date(2024, 7, 2)
        )  # not noted yet
        store.note_data_change(conn, "import")
        assert store.current_data_end(conn) == date(2024, 7, 2)
    save_purchase_summary(engine)
    with engine.connect() as conn:
        assert store.current_data_end(conn) == store.data_end(conn) == date(2024, 7, 2)


def test_unreachable_database_gets_a_sentence_not_a_traceback():
    from relq.exceptions import StoreUnavailable

    engine = store.get_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    with pytest.raises(StoreUnavailable, match="Check that the server is running"):
        store.create_schema(engine)


def test_a_store_made_with_the_old_answer_constraint_loses_it_and_keeps_its_answers(engine):
    if engine.dialect.name == "chdb":
        pytest.skip("ClickHouse stores never had the constraint")
    # Stores created before survey_answers dropped UNIQUE (response_id, item_id) are migrated by
    # create_schema; the answers stay, and the table takes repeated answers no more than before
    # because answers are only written with their (primary-keyed) response.
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE survey_answers"))
        conn.execute(
            sa.text(
                "CREATE TABLE survey_answers (response_id TEXT NOT NULL, item_id TEXT NOT NULL, "
                "value DOUBLE PRECISION, import_id INTEGER, "
                "CONSTRAINT uq_survey_answers UNIQUE (response_id, item_id))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO survey_answers VALUES ('r1', 'trust_1', 6, 1), ('r1', 'trust_2', 5, 1)")
        )
    store.create_schema(engine)
    store.create_schema(engine)  # a second call finds nothing to do
    if engine.dialect.name == "duckdb":
        probe = "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'survey_answers' AND constraint_type = 'UNIQUE'"
    else:
        probe = "SELECT count(*) FROM pg_constraint WHERE conname = 'uq_survey_answers'"
    with engine.connect() as conn:
        assert conn.execute(sa.text(probe)).scalar() == 0
        rows = conn.execute(sa.select(schema.survey_answers).order_by("item_id")).all()
    assert [(r.response_id, r.item_id, r.value, r.import_id) for r in rows] == [
        ("r1", "trust_1", 6.0, 1),
        ("r1", "trust_2", 5.0, 1),
    ]


def test_an_older_duckdb_store_loses_the_indexes_only_postgresql_keeps_and_its_rows_stay(duckdb_engine):
    # Older DuckDB stores had ART indexes on survey_responses and transactions that every import
    # paid for; create_schema drops them and the rows are untouched.
    with duckdb_engine.begin() as conn:
        conn.execute(sa.text("CREATE INDEX ix_responses_submitted ON survey_responses (submitted_at)"))
        conn.execute(
            sa.text("CREATE INDEX ix_transactions_customer ON transactions (customer_id, occurred_at)")
        )
    frame = pd.DataFrame({"response_id": ["r1", "r2"], "submitted_at": pd.Timestamp("2025-01-01")})
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, frame)
    store.create_schema(duckdb_engine)
    store.create_schema(duckdb_engine)  # a second call finds nothing to do
    with duckdb_engine.connect() as conn:
        names = set(conn.execute(sa.text("SELECT index_name FROM duckdb_indexes()")).scalars())
        kept = conn.execute(sa.select(sa.func.count()).select_from(schema.survey_responses)).scalar()
    assert not names & {"ix_responses_submitted", "ix_responses_customer", "ix_transactions_customer"}
    assert kept == 2


def test_relqs_postgresql_sessions_run_without_jit_compilation(postgres_engine):
    # PostgreSQL's default JIT compiles RelQ's many-expression queries anew on every statement.
    with postgres_engine.connect() as conn:
        assert conn.execute(sa.text("SHOW jit")).scalar() == "on"  # the server's default
    engine = store.get_engine(postgres_engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW jit")).scalar() == "off"
            conn.rollback()
            assert conn.execute(sa.text("SHOW jit")).scalar() == "off"  # a rollback keeps it
    finally:
        engine.dispose()


def test_postgresql_keeps_its_indexes_on_responses_and_transactions(postgres_engine):
    with postgres_engine.connect() as conn:
        names = set(conn.execute(sa.text("SELECT indexname FROM pg_indexes")).scalars())
    assert {"ix_responses_submitted", "ix_responses_customer", "ix_transactions_customer"} <= names


def test_an_older_postgresql_store_gains_the_indexes_added_since_and_its_rows_stay(postgres_engine):
    # The data's end is the latest purchase, response or ticket: read from an index on PostgreSQL.
    # A store made before those indexes existed gets them when RelQ opens it.
    with postgres_engine.begin() as conn:
        store.bulk_insert(
            conn,
            schema.transactions,
            pd.DataFrame(
                {
                    "transaction_id": ["T1"],
                    "customer_id": ["C1"],
                    "occurred_at": [pd.Timestamp("2025-03-04")],
                    "amount": [9.5],
                }
            ),
        )
        conn.execute(sa.text("DROP INDEX ix_transactions_occurred"))
        conn.execute(sa.text("DROP INDEX ix_tickets_opened"))
    store.create_schema(postgres_engine)
    with postgres_engine.connect() as conn:
        names = set(conn.execute(sa.text("SELECT indexname FROM pg_indexes")).scalars())
        assert store.data_end(conn) == date(2025, 3, 4)
    assert {"ix_transactions_occurred", "ix_tickets_opened"} <= names


@pytest.mark.parametrize("asked", [3, 12_000])  # an IN list, and a key table semi-joined in SQL
def test_stored_keys_finds_exactly_the_stored_ones_like_a_python_set(engine, asked):
    stored = [f"R_{i:06d}" for i in range(0, 20_000, 2)]
    frame = pd.DataFrame({"response_id": stored, "submitted_at": pd.Timestamp("2025-01-01")})
    keys = pd.Series([f"R_{i:06d}" for i in range(asked)] + [None, 'quote " and, comma'], dtype=object)
    with engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, frame)
        found = store.stored_keys(conn, schema.survey_responses.c.response_id, keys)
        again = store.stored_keys(conn, schema.survey_responses.c.response_id, keys)  # same transaction
    assert found == again == set(keys.dropna()) & set(stored)


def test_threads_opening_and_closing_one_duckdb_file_all_connect(tmp_path):
    """The dashboard opens a short-lived connection per question, and the churn-risk fit after an
    import runs in a thread beside the pages: a connection opening while another thread's closes
    must wait its turn, not fail with DuckDB's "Unique file handle conflict"."""
    import threading

    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    failures: list[str] = []

    def visits() -> None:
        for _ in range(60):
            engine = store.get_engine(url)
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1")).fetchall()
            except sa.exc.DBAPIError as exc:
                failures.append(str(exc.orig))
            finally:
                engine.dispose()

    threads = [threading.Thread(target=visits) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_postgresql_read_through_copy_gives_what_psycopg_gives_row_by_row(postgres_engine):
    """read_frame on PostgreSQL reads many rows as CSV through COPY and parses them with Arrow; every
    value must come back as psycopg itself gives it through SQLAlchemy (the reference): integers with
    and without NULLs, doubles with NaN and ±Infinity and their shortest exact text, booleans with
    NULLs, dates, timestamps with microseconds, texts that are empty (not NULL), quoted, multi-line or
    not ASCII, an IN list and a bound date; a decimal column is read through SQLAlchemy instead."""
    rows = (
        sa.text(
            """
        SELECT * FROM (VALUES
          (1, 2::bigint, 0.1::float8, true, DATE '2024-02-29', TIMESTAMP '2024-03-01 09:30:00.123456', 'plain', 1.25::numeric),
          (2, NULL, 'NaN'::float8, NULL, NULL, NULL, '', 2.5::numeric),
          (3, 7, 'Infinity'::float8, false, DATE '1999-12-31', TIMESTAMP '2000-01-01 00:00:00', 'a "quoted", comma', NULL),
          (4, -5, '-Infinity'::float8, true, DATE '2030-01-01', TIMESTAMP '2030-01-01 23:59:59.5', E'two\\nlines é 中', 3::numeric),
          (5, 9, 1e-300::float8, false, DATE '2024-01-01', TIMESTAMP '2024-01-01 00:00:00', NULL, 4::numeric)
        ) AS t(k, n, x, flag, day, at, label, amount)
        """
        )
        .columns(
            k=sa.Integer,
            n=sa.BigInteger,
            x=sa.Double,
            flag=sa.Boolean,
            day=sa.Date,
            at=sa.DateTime,
            label=sa.Text,
            amount=sa.Numeric,
        )
        .subquery("t")
    )
    typed = sa.select(*(c for c in rows.c if c.name != "amount")).where(
        rows.c.k.in_([1, 2, 3, 4, 5]), sa.or_(rows.c.day.is_(None), rows.c.day >= date(1990, 1, 1))
    )
    with postgres_engine.connect() as conn:
        seen = []
        sa.event.listen(conn, "before_cursor_execute", lambda *args: seen.append(args[2]))
        got = store.read_frame(conn, typed.order_by(rows.c.k))
        assert seen and seen[0].startswith("COPY (")  # the statement went through COPY
        result = conn.execute(typed.order_by(rows.c.k))
        reference = pd.DataFrame(result.all(), columns=list(result.keys()))
        seen.clear()
        with_decimal = store.read_frame(conn, sa.select(rows.c.k, rows.c.amount).order_by(rows.c.k))
        assert not seen[0].startswith("COPY (")  # a decimal column: read through SQLAlchemy
    assert list(got.columns) == list(reference.columns)
    for name in reference.columns:
        assert got[name].dtype == reference[name].dtype, name
        for a, b in zip(got[name], reference[name], strict=True):
            assert type(a) is type(b), (name, a, b)  # NaN, NaT and None alike kept apart
            assert (pd.isna(a) and pd.isna(b)) or a == b, (name, a, b)
    assert [str(v) for v in with_decimal["amount"]] == ["1.25", "2.5", "None", "3", "4"]


def test_a_postgresql_read_of_numbers_only_comes_in_binary_and_gives_what_psycopg_gives(postgres_engine):
    """Rows of numbers only, read as such (as the Drivers page's per-customer sums), come through a
    binary COPY laid over numpy arrays; each value must be what psycopg gives through SQLAlchemy (the reference):
    smallint, integer, bigint, double with NaN, ±Infinity, −0 and 1e-300, booleans, and a bound 1.0
    cast to a double. A NULL, a real (psycopg reads its shortest text) or a bound 1.0 left uncast
    (written out into COPY's text it is a numeric) sends the rows through the CSV path instead — with
    the same values."""
    rows = (
        sa.text(
            """
        SELECT * FROM (VALUES
          (1, 2::smallint, 3::bigint, 0.1::float8, 0.5::real, true),
          (2, -2::smallint, -9007199254740993::bigint, 'NaN'::float8, -0.25::real, false),
          (3, 0::smallint, 0::bigint, 'Infinity'::float8, 1e30::real, true),
          (4, 7::smallint, 1::bigint, '-Infinity'::float8, 0::real, false),
          (5, 9::smallint, 5::bigint, 1e-300::float8, -1::real, true),
          (6, 1::smallint, 6::bigint, '-0'::float8, 2::real, false)
        ) AS t(k, small, big, x, r, flag)
        """
        )
        .columns(
            k=sa.Integer, small=sa.SmallInteger, big=sa.BigInteger, x=sa.Double, r=sa.Float, flag=sa.Boolean
        )
        .subquery("t")
    )
    one = sa.literal(1.0)
    numbers = [c for c in rows.c if c.name != "r"]
    statements = {
        "binary": sa.select(*numbers, sa.cast(one, sa.Double).label("one")),
        "a NULL": sa.select(*numbers, sa.case((rows.c.k == 3, None), else_=rows.c.x).label("gap")),
        "a real": sa.select(*rows.c),
        "a numeric": sa.select(*numbers, one.label("one")),
    }
    with postgres_engine.connect() as conn:
        seen = []
        sa.event.listen(conn, "before_cursor_execute", lambda *args: seen.append(args[2]))
        for name, stmt in statements.items():
            seen.clear()
            got = store.read_frame(conn, stmt.order_by(rows.c.k), numbers=True)
            copies = [
                s.rsplit("FORMAT ", 1)[1].split()[0].strip(",)") for s in seen if s.startswith("COPY (")
            ]
            # a NULL is found in the binary rows, which are then read again as text
            assert copies == {"binary": ["binary"], "a NULL": ["binary", "csv"]}.get(name, ["csv"]), name
            result = conn.execute(stmt.order_by(rows.c.k))
            reference = pd.DataFrame(result.all(), columns=list(result.keys()))
            assert list(got.columns) == list(reference.columns), name
            for column in reference.columns:
                assert got[column].dtype == reference[column].dtype, (name, column)
                for a, b in zip(got[column], reference[column], strict=True):
                    assert (pd.isna(a) and pd.isna(b)) or (a == b and np.signbit(a) == np.signbit(b)), (
                        name,
                        column,
                        a,
                        b,
                    )
