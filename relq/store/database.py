"""The store: engines, schema, bulk writes on each engine's native path, derived segments, undo.

DuckDB (the embedded default) takes a pandas frame through ``register`` + ``INSERT … SELECT``;
PostgreSQL takes ``COPY … FROM STDIN``; ClickHouse (chDB in-process, or a server through
clickhouse-connect) its native columnar insert of the frame. On DuckDB and PostgreSQL the writes
run inside the caller's transaction, so an import lands whole or not at all. ClickHouse has no
multi-table transactions: an import writes under its import id, and :func:`import_transaction`
removes what it wrote if anything fails (and says so). How each engine renders RelQ's SQL is
:mod:`relq.store.dialects`.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from relq.core.settings import PROJECT_ROOT, load_settings
from relq.exceptions import ImportRejected, StoreUnavailable
from relq.store import dialects, schema

__all__ = [
    "get_engine",
    "create_schema",
    "bulk_insert",
    "new_import",
    "serialise_imports",
    "import_transaction",
    "stored_keys",
    "read_frame",
    "refresh_derived",
    "data_end",
    "current_data_end",
    "load_demo",
    "start_demo",
    "insert_demo",
    "has_demo",
    "has_data",
    "remove_demo",
    "undo_import",
    "import_history",
    "record_audit",
    "audit_row",
    "audit_log",
    "note_data_change",
    "data_version",
    "derived_current",
    "forget_derived",
    "derived_current_of",
    "rebuilding_derived",
    "month_row_keys",
    "rebuilding_derived_in",
    "get_setting",
    "set_setting",
    "explain_connection_error",
    "DATA_TABLES",
]

# Tables whose rows belong to an import (undo removes them by import_id).
DATA_TABLES: tuple[sa.Table, ...] = (
    schema.comment_themes,
    schema.comment_facts,
    schema.survey_answers,
    schema.survey_responses,
    schema.tickets,
    schema.transactions,
    schema.customer_fields,
    schema.customers,
)


def get_engine(url: str | None = None) -> Engine:
    """An engine for ``url`` (default: RELQ_DATABASE_URL, else the embedded DuckDB file)."""
    url = url or load_settings().database_url
    shown = masked_url(url)
    if url.startswith("duckdb:///") and not url.startswith("duckdb:///:memory:"):
        path = url.removeprefix("duckdb:///")
        if not path.startswith("/"):
            path = str(PROJECT_ROOT / path)
            url = f"duckdb:///{path}"
        (PROJECT_ROOT / "data").mkdir(exist_ok=True)
    database = None
    if url.startswith("chdb:///") and not url.startswith("chdb:///:memory:"):
        url, database = _chdb_url(url)
    try:
        engine = sa.create_engine(url, **_engine_options(url))
    except ImportError as exc:  # a known dialect whose Python driver is not installed
        raise StoreUnavailable(
            f"RELQ_DATABASE_URL {shown} needs the Python database driver {exc.name or str(exc)!r}, "
            f"which is not installed; {_SUPPORTED}"
        ) from None
    except sa.exc.NoSuchModuleError:
        raise StoreUnavailable(
            f"RELQ_DATABASE_URL {shown} names a database driver SQLAlchemy does not know "
            f"({_driver_name(url)!r}); {_SUPPORTED}"
        ) from None
    except sa.exc.ArgumentError:  # not even a URL: say so without repeating what may hold a password
        raise StoreUnavailable(f"RELQ_DATABASE_URL is not a database URL; {_SUPPORTED}") from None
    if engine.dialect.name == "duckdb" and engine.url.database not in (None, "", ":memory:"):
        sa.event.listen(engine, "do_connect", _wait_for_duckdb_lock)
    if engine.dialect.name == "postgresql":
        sa.event.listen(engine, "connect", _postgres_session)
    if database:  # the URL says which database (the driver never sees it; configure() selects it)
        engine.url = engine.url.update_query_dict({"database": database})
    return dialects.configure(engine, database)


def _chdb_url(url: str) -> tuple[str, str | None]:
    """``chdb:///PATH[?database=NAME]``: a relative PATH is under the project folder, like the
    DuckDB file's; NAME (default ``default``) is the database inside it. One process opens a
    chDB folder at a time, so several stores in one process are databases of one folder."""
    parsed = sa.engine.make_url(url)
    database = parsed.query.get("database")
    path = parsed.database or ""
    if not path.startswith("/"):
        path = str(PROJECT_ROOT / path)
        (PROJECT_ROOT / "data").mkdir(exist_ok=True)
    rest = {k: v for k, v in parsed.query.items() if k != "database"}
    return parsed.set(database="/" + path.lstrip("/"), query=rest).render_as_string(False), database


_SUPPORTED = (
    "RelQ runs on duckdb:///data/relq.duckdb (embedded, the default), "
    "postgresql+psycopg://user:password@host/database, clickhousedb://user@host:8123/database "
    "or chdb:///data/relq.chdb (ClickHouse)."
)


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ***, for messages (also when it does not parse).

    >>> masked_url("mysql://relq:s3cret@db.example/relq")
    'mysql://relq:***@db.example/relq'
    >>> masked_url("nonsense://user:pw@")
    'nonsense://user:***@'
    """
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparsable text: mask what looks like user:password@
        import re

        return re.sub(r"(//[^:/@]*):[^@]*@", r"\1:***@", url)


def _driver_name(url: str) -> str:
    return url.split("://", 1)[0]


# A DuckDB file takes one writing process at a time. The dashboard's connections are short-lived
# (no pool) so a CLI import can run while it is open; a process that finds the file busy waits
# this long for the other one to finish its statement before saying so.
DUCKDB_LOCK_WAIT_SECONDS = 5.0


def _engine_options(url: str) -> dict:
    if url.startswith("duckdb:///") and not url.startswith("duckdb:///:memory:"):
        return {"poolclass": sa.pool.NullPool}
    if url.startswith("postgresql") and "connect_timeout" not in url:
        return {"connect_args": {"connect_timeout": 10}}  # a server that is down answers in seconds
    return {}


def _postgres_session(dbapi_connection, _record) -> None:
    """RelQ's PostgreSQL sessions run without JIT compilation: its queries carry hundreds of sum
    and case expressions, which PostgreSQL's default JIT compiles anew for every statement — on
    the large tier that compiling cost more than the query (bench/RESULTS.md → PostgreSQL)."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET jit = off")
    dbapi_connection.commit()


# What DuckDB says while the file is busy, and so worth waiting for: another process's write lock,
# or, within this process, a thread's connection to the file still closing while another opens one
# (the dashboard's background churn-risk fit beside a page): "Unique file handle conflict".
_DUCKDB_BUSY = ("lock", "unique file handle conflict")


def _wait_for_duckdb_lock(dialect, conn_rec, cargs, cparams):
    deadline = time.monotonic() + DUCKDB_LOCK_WAIT_SECONDS
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            busy = any(sign in str(exc).lower() for sign in _DUCKDB_BUSY)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def create_schema(engine: Engine) -> bool:
    """Create every RelQ table that does not exist yet. True when the store was made by another
    RelQ version whose stored tables (schema.DERIVED_TABLES) differ or are missing: they are made
    again empty, and relq.analyses.churn_risk.refresh_scores rebuilds them."""
    try:
        outdated = _drop_outdated_derived(engine)
        schema.metadata.create_all(engine)
        _drop_answer_constraint(engine)
        _drop_duckdb_indexes(engine)
        _create_postgres_indexes(engine)
        if dialects.is_clickhouse(engine):
            with engine.connect() as conn:
                dialects.refresh_lookups(conn, only_if_missing=True)
        return outdated
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(explain_connection_error(exc, engine)) from None


def _drop_outdated_derived(engine: Engine) -> bool:
    """Drop a derived table (schema.DERIVED_TABLES) whose columns differ from the schema's — made by
    another RelQ version — so it is made again empty, and forget what was built when one is missing
    (a table this version adds): the next rebuild fills them, and until then the pages read the rows
    themselves. One catalog read for all of them. ClickHouse keeps none of
    them (they stay empty there). True when a store made before had one of them outdated or
    missing (a table this version adds)."""
    if dialects.is_clickhouse(engine):
        return False
    names = sa.bindparam("names", [table.name for table in schema.DERIVED_TABLES], expanding=True)
    probe = sa.text(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name IN :names"
    ).bindparams(names)
    with engine.connect() as conn:
        found: dict[str, set[str]] = {}
        for table_name, column in conn.execute(probe):
            found.setdefault(table_name, set()).add(column)
    stale = [
        table
        for table in schema.DERIVED_TABLES
        if table.name in found and found[table.name] != set(table.c.keys())
    ]
    missing = [table for table in schema.DERIVED_TABLES if table.name not in found]
    if stale or (found and missing):
        with engine.begin() as conn:
            for table in stale:
                table.drop(conn)
            # what was built is gone, or lacks a table this version builds with it (made empty by
            # create_all, and read as current with the rest): nothing is current
            if schema.derived_versions.name in found and schema.derived_versions not in stale:
                conn.execute(schema.derived_versions.delete())
    return bool(found) and bool(stale or missing)


# Indexes older DuckDB stores have and RelQ now makes on PostgreSQL only (schema.py says why).
_POSTGRES_ONLY_INDEXES = {
    "ix_responses_submitted": "DROP INDEX IF EXISTS ix_responses_submitted",
    "ix_responses_customer": "DROP INDEX IF EXISTS ix_responses_customer",
    "ix_transactions_customer": "DROP INDEX IF EXISTS ix_transactions_customer",
}


def _drop_duckdb_indexes(engine: Engine) -> None:
    """Older DuckDB stores: drop the indexes only PostgreSQL keeps; one catalog query when none."""
    if engine.dialect.name != "duckdb":
        return
    names = sa.bindparam("names", list(_POSTGRES_ONLY_INDEXES), expanding=True)
    probe = sa.text("SELECT index_name FROM duckdb_indexes() WHERE index_name IN :names").bindparams(names)
    with engine.connect() as conn:
        present = conn.execute(probe).scalars().all()
    if present:
        with engine.begin() as conn:
            serialise_imports(conn)
            for name in present:
                conn.execute(sa.text(_POSTGRES_ONLY_INDEXES[name]))


def _create_postgres_indexes(engine: Engine) -> None:
    """Stores made before an index was added to the schema: create it (the tables exist, so
    ``create_all`` does not); one catalog query when none is missing."""
    if engine.dialect.name != "postgresql":
        return
    wanted = {index.name: index for table in schema.metadata.tables.values() for index in table.indexes}
    with engine.connect() as conn:
        present = set(conn.execute(sa.text("SELECT indexname FROM pg_indexes")).scalars())
    missing = [index for name, index in wanted.items() if name not in present]
    if missing:
        with engine.begin() as conn:
            serialise_imports(conn)
            for index in missing:
                index.create(conn, checkfirst=True)


def _drop_answer_constraint(engine: Engine) -> None:
    """Stores made before the constraint went: drop UNIQUE (response_id, item_id) from
    survey_answers (schema.survey_answers says why); one catalog query when there is none."""
    dialect = engine.dialect.name
    if dialect == "duckdb":
        probe = (
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'survey_answers' "
            "AND constraint_type = 'UNIQUE'"
        )
    elif dialect == "postgresql":
        probe = "SELECT count(*) FROM pg_constraint WHERE conname = 'uq_survey_answers'"
    else:
        return
    with engine.connect() as conn:
        if not conn.execute(sa.text(probe)).scalar():
            return
    with engine.begin() as conn:
        serialise_imports(conn)  # not while an import writes answers
        if not conn.execute(sa.text(probe)).scalar():
            return
        if dialect == "postgresql":
            conn.execute(sa.text("ALTER TABLE survey_answers DROP CONSTRAINT IF EXISTS uq_survey_answers"))
            conn.execute(
                sa.text(
                    "CREATE INDEX IF NOT EXISTS ix_survey_answers_response ON survey_answers (response_id)"
                )
            )
            return
        # DuckDB cannot drop a constraint: move the rows into a table made without it
        conn.execute(sa.text("SET enable_progress_bar = false"))
        conn.execute(sa.text("ALTER TABLE survey_answers RENAME TO _relq_survey_answers_old"))
        schema.survey_answers.create(conn)
        conn.execute(
            sa.text(
                "INSERT INTO survey_answers (response_id, item_id, value, import_id) "
                "SELECT response_id, item_id, value, import_id FROM _relq_survey_answers_old"
            )
        )
        conn.execute(sa.text("DROP TABLE _relq_survey_answers_old"))


def explain_connection_error(exc: Exception, engine: Engine) -> str:
    text = str(exc)
    if engine.dialect.name == "chdb" and "EmbeddedServer" in text:
        return (
            f"The chDB store {engine.url.database} is open in another RelQ process (the dashboard or a "
            "CLI command): chDB serves one process at a time. Stop that process and try again, or use "
            "a ClickHouse server (clickhousedb://…) for several."
        )
    if engine.dialect.name == "duckdb" and ("lock" in text.lower() or "conflicting" in text.lower()):
        return (
            f"The database file {engine.url.database} is in use by another RelQ process "
            "(the dashboard or a CLI command). Stop that process, or wait for it to finish, and try again."
        )
    return (
        f"Cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
        f"{text.splitlines()[0]}. Check that the server is running and RELQ_DATABASE_URL is right."
    )


def _prepared(table: sa.Table, df: pd.DataFrame) -> pd.DataFrame:
    """Coerce a frame to the table's column types so both native paths accept it.

    Columns already in their type are passed through uncopied (the result shares their memory
    and is only read by the insert); only the others are converted.
    """
    unknown = [c for c in df.columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(map(str, unknown))}")
    out: dict[str, object] = {}
    for name in df.columns:
        out[name] = _coerced(df[name], table.c[name].type).array
    for column in table.columns:  # the native paths skip SQLAlchemy's client-side defaults
        if column.name not in out and column.default is not None and column.default.is_scalar:
            value = column.default.arg
            const = pd.Series(np.full(len(df), value))
            out[column.name] = _coerced(const, column.type).array
    return pd.DataFrame(out, copy=False)


def _coerced(col: pd.Series, kind) -> pd.Series:
    """``col`` as the pandas type that stores ``kind``: itself when it already is one."""
    dtype = col.dtype
    if isinstance(kind, sa.Boolean):
        return col if dtype == "bool" else col.where(col.notna(), False).astype(bool)
    if isinstance(kind, sa.Integer):
        if pd.api.types.is_integer_dtype(dtype):
            return col
        return pd.to_numeric(col, errors="coerce").round().astype("Int64")
    if isinstance(kind, sa.Float):
        if dtype == "float64":
            return col
        return pd.to_numeric(col, errors="coerce").astype(float)
    if isinstance(kind, (sa.DateTime, sa.Date)):
        stamps = col if pd.api.types.is_datetime64_dtype(dtype) else pd.to_datetime(col, errors="coerce")
        if isinstance(kind, sa.Date) and not isinstance(kind, sa.DateTime):
            stamps = stamps.dt.normalize()
        return stamps
    if isinstance(dtype, pd.CategoricalDtype) and pd.api.types.is_object_dtype(dtype.categories.dtype):
        return col  # texts stored once each (both native paths write the texts)
    if pd.api.types.is_object_dtype(dtype):
        missing = col.isna()
        return col.where(~missing, None) if missing.any() else col
    return col.astype(object).where(col.notna(), None)


def bulk_insert(conn: Connection, table: sa.Table, df: pd.DataFrame) -> int:
    """Insert a frame through the engine's native bulk path, inside ``conn``'s transaction.

    Driver errors come back as SQLAlchemy's (``IntegrityError`` for a broken constraint), the
    same as from any Core statement.
    """
    if df.empty:
        return 0
    frame = _prepared(table, df)
    try:
        _native_insert(conn, table, frame)
    except sa.exc.SQLAlchemyError:
        raise
    except Exception as exc:
        text = str(exc).lower()
        kind = (
            sa.exc.IntegrityError if ("constraint" in text or "duplicate key" in text) else sa.exc.DBAPIError
        )
        raise kind(f"bulk insert into {table.name}", None, exc) from exc
    return len(frame)


def _native_insert(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    dialect = conn.dialect.name
    if dialect == "duckdb":
        raw = conn.connection.driver_connection
        # DuckDB reads the frame through this local variable's name (its replacement scan), which
        # lets go of it when the statement ends. A registered frame would stay alive until the
        # transaction commits: an import's responses and its eleven million answers, written in parts,
        # would all be held at once (≈500 MB for a 1M-row export).
        relq_bulk_rows = frame  # noqa: F841 - read by name in the statement below
        # names come from RelQ's own schema, never from a user
        raw.execute(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM relq_bulk_rows')  # noqa: S608
    elif dialect == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy(f"COPY \"{table.name}\" ({cols}) FROM STDIN (FORMAT csv, NULL '\\N')") as copy:
                for start in range(0, len(frame), 200_000):
                    buf = io.StringIO()
                    frame.iloc[start : start + 200_000].to_csv(
                        buf, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f"
                    )
                    copy.write(buf.getvalue())
    elif dialects.is_clickhouse(conn):
        dialects.insert_frame(conn, table, frame)
    else:  # any other SQLAlchemy dialect: executemany in chunks
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        for start in range(0, len(records), 10_000):
            conn.execute(table.insert(), records[start : start + 10_000])


# Up to this many keys a plain IN list asks for them; more go to the database as a table.
_IN_LIST_KEYS = 5_000


def stored_keys(conn: Connection, column: sa.Column, keys) -> set:
    """Which of ``keys`` are already stored in ``column``, decided in the database.

    Many keys travel as a table (DuckDB: a registered frame; PostgreSQL: a temporary table
    filled by COPY; chDB: the frame read in place) and are semi-joined to ``column``; only the keys found come back, however
    many rows are stored. Runs in ``conn``'s transaction, so an import that took
    :func:`serialise_imports` sees every import committed before it.
    """
    values = keys if isinstance(keys, pd.Series) else pd.Series(list(keys), dtype=object)
    wanted = pd.unique(values.dropna())
    if len(wanted) == 0:
        return set()
    dialect = conn.dialect.name
    if len(wanted) > _IN_LIST_KEYS and dialects.is_clickhouse(conn):
        found = dialects.keys_found(conn, column, pd.Series(wanted, dtype=object))
        if found is not None:
            return found
    if len(wanted) <= _IN_LIST_KEYS or dialect not in ("duckdb", "postgresql"):
        found: set = set()
        for start in range(0, len(wanted), _IN_LIST_KEYS):
            chunk = [str(k) for k in wanted[start : start + _IN_LIST_KEYS]]
            found |= set(conn.execute(sa.select(column).where(column.in_(chunk))).scalars())
        return found
    probe = sa.table("_relq_keys", sa.column("key", sa.Text))
    query = sa.select(probe.c.key).where(sa.exists().where(column == probe.c.key))
    frame = pd.DataFrame({"key": pd.Series(wanted, dtype=object).astype(str)})
    raw = conn.connection.driver_connection
    if dialect == "duckdb":
        # read by name, as _native_insert does: a registered frame would live until the commit
        _relq_keys = frame  # noqa: F841 - read by name in the statement below
        sql = str(query.compile(dialect=conn.dialect))
        return {key for (key,) in raw.execute(sql).fetchall()}
    conn.execute(sa.text("CREATE TEMPORARY TABLE _relq_keys (key TEXT NOT NULL) ON COMMIT DROP"))
    with raw.cursor() as cur:
        with cur.copy("COPY _relq_keys (key) FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, len(frame), 200_000):
                copy.write(
                    frame.iloc[start : start + 200_000].to_csv(
                        index=False, header=False, quoting=csv.QUOTE_ALL
                    )
                )
    try:
        return set(conn.execute(query).scalars())
    finally:
        conn.execute(sa.text("DROP TABLE _relq_keys"))


# Any fixed 64-bit number: the PostgreSQL advisory lock every import takes for its transaction.
_IMPORT_LOCK_KEY = 0x52454C51  # "RELQ"


def read_frame(conn: Connection, stmt, *, numbers: bool = False) -> pd.DataFrame:
    """The rows of a Core ``select`` as a DataFrame, for results of many rows (e.g. one per customer).

    On DuckDB the engine hands the result over column by column (numpy arrays, no Python object
    per value), with the statement's bound parameters passed positionally; on PostgreSQL through
    COPY (:func:`_postgres_frame`) — in binary with ``numbers``, the caller's word that every column
    is a double, an integer or a boolean and no value is NULL (else the rows are read once more
    as text); elsewhere the rows come through SQLAlchemy.
    """
    if conn.dialect.name == "duckdb":
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        args = [params[name] for name in (compiled.positiontup or [])]
        sql = str(compiled)
        # The engine's cursor events see this statement too (the browser benchmark's timing).
        conn.dispatch.before_cursor_execute(conn, None, sql, args, None, False)
        frame = conn.connection.driver_connection.execute(sql, args).df()
        conn.dispatch.after_cursor_execute(conn, None, sql, args, None, False)
        return frame
    if conn.dialect.name == "postgresql":
        frame = _postgres_frame(conn, stmt, numbers)
        if frame is not None:
            return frame
    result = conn.execute(stmt)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _arrow_type(kind: sa.types.TypeEngine):
    """The Arrow type that reads a column of this type back exactly from PostgreSQL's CSV text as
    psycopg would give it, or None (a decimal, a zoned time, an interval, a type not known here)."""
    import pyarrow as pa

    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()
    if isinstance(kind, sa.Numeric):  # Float and Double too; a Numeric asked for as Decimal is not read here
        return None if kind.asdecimal else pa.float64()
    if isinstance(kind, sa.DateTime):
        return None if kind.timezone else pa.timestamp("us")
    if isinstance(kind, sa.Date):
        return pa.date32()
    if isinstance(kind, sa.String) and not isinstance(kind, sa.Enum):
        return pa.string()
    return None


# Columns PostgreSQL sends as fixed-width big-endian numbers in a binary COPY, by type oid (a real
# is not among them: psycopg reads its shortest text, 1e+30, where its bits widen to 1.00000002e+30).
_BINARY_NUMBERS = {701: ">f8", 20: ">i8", 23: ">i4", 21: ">i2", 16: "?"}
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, no flags, no header extension


def _copy_out(conn: Connection, sql: str, params) -> io.BytesIO:
    """What PostgreSQL's ``COPY … TO STDOUT`` statement ``sql`` writes, gathered in memory; the
    engine's cursor events see the statement (the browser benchmark's timing)."""
    conn.dispatch.before_cursor_execute(conn, None, sql, params, None, False)
    out = io.BytesIO()
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(sql, params) as copy:
            for chunk in copy:
                out.write(chunk)
    conn.dispatch.after_cursor_execute(conn, None, sql, params, None, False)
    return out


def _postgres_numbers(conn: Connection, compiled, params) -> pd.DataFrame | None:
    """PostgreSQL: the rows of a statement whose columns are all numbers (doubles, integers,
    booleans — their types asked of the server) through a binary ``COPY``, laid over numpy arrays
    as they come: no text written by the server nor parsed here (156k customers' 18 sums: 0.08 s
    less than CSV). None when a column is of another type or a value is NULL (the row is then not
    of fixed width): the caller reads it another way."""
    import psycopg

    sql = str(compiled)
    # Planned, not run, with its values written into the text as COPY will have them (a bound 1.0
    # is a float8, the same written out a numeric); the statement is SQLAlchemy's.
    with psycopg.ClientCursor(conn.connection.driver_connection) as cursor:
        cursor.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0", params)  # noqa: S608
        names = [d.name for d in cursor.description]
        kinds = [_BINARY_NUMBERS.get(d.type_code) for d in cursor.description]
    if not names or None in kinds or len(set(names)) != len(names):
        return None
    data = _copy_out(conn, f"COPY ({sql}) TO STDOUT (FORMAT binary)", params).getbuffer()
    fields = [("count", ">i2")]
    for i, kind in enumerate(kinds):
        fields += [(f"len{i}", ">i4"), (f"v{i}", kind)]
    row = np.dtype(fields)
    body = len(data) - len(_COPY_HEADER) - 2  # the trailer: a field count of -1
    if bytes(data[: len(_COPY_HEADER)]) != _COPY_HEADER or body % row.itemsize:
        return None
    rows = np.frombuffer(data, dtype=row, count=body // row.itemsize, offset=len(_COPY_HEADER))
    if (rows["count"] != len(kinds)).any() or any(
        (rows[f"len{i}"] != np.dtype(kind).itemsize).any() for i, kind in enumerate(kinds)
    ):
        return None  # a NULL somewhere
    native = {"f": np.float64, "i": np.int64, "b": np.bool_}  # as the CSV path types them
    return pd.DataFrame(
        {name: rows[f"v{i}"].astype(native[np.dtype(kinds[i]).kind]) for i, name in enumerate(names)}
    )


def _postgres_frame(conn: Connection, stmt, numbers: bool = False) -> pd.DataFrame | None:
    """PostgreSQL: the rows of ``stmt`` through ``COPY … TO STDOUT`` as CSV, parsed by Arrow into
    columns of the statement's own types — no Python object per value until pandas wants one (psycopg
    builds a Python float per value: 0.8 s for 156k customers' 19 sums, against 0.15 s parsed here).
    None when a column's type is not one Arrow reads back exactly (see :func:`_arrow_type`), or the
    text does not parse (a server writing dates in another style): the caller then reads the rows
    through SQLAlchemy."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    types = [_arrow_type(column.type) for column in stmt.selected_columns]
    if not types or any(t is None for t in types):
        return None
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    if numbers:
        frame = _postgres_numbers(conn, compiled, params)
        if frame is not None:
            return frame
    text = _copy_out(conn, f"COPY ({compiled}) TO STDOUT (FORMAT csv, HEADER true)", params).getvalue()
    names = next(csv.reader([text[: text.find(b"\n")].decode("utf-8")]))
    if len(set(names)) != len(names) or len(names) != len(types):
        return None
    options = pa_csv.ConvertOptions(
        column_types=dict(zip(names, types, strict=True)),
        strings_can_be_null=True,  # PostgreSQL writes NULL unquoted and empty, an empty text quoted
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    try:
        table = pa_csv.read_csv(io.BytesIO(text), convert_options=options)
    except pa.ArrowInvalid:
        return None
    return table.to_pandas(coerce_temporal_nanoseconds=True)


def serialise_imports(conn: Connection) -> None:
    """Make concurrent imports take turns: each one decides which rows are new only after the
    previous one committed, so overlapping files neither collide nor duplicate. PostgreSQL: an
    advisory lock for the transaction. ClickHouse: RelQ's lock table
    (:class:`relq.store.dialects.ImportLock`), released when ``conn``'s transaction ends. DuckDB
    already admits one writing transaction at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("key", _IMPORT_LOCK_KEY))))
    elif dialects.is_clickhouse(conn) and "relq_import_lock" not in conn.info:
        lock = dialects.ImportLock(conn)
        lock.acquire()
        conn.info["relq_import_lock"] = lock

        def release(conn_, *_):
            conn_.info.pop("relq_import_lock", lock).release()

        sa.event.listen(conn, "commit", release, once=True)
        sa.event.listen(conn, "rollback", release, once=True)


@contextmanager
def import_transaction(engine: Engine, what: str = "The import") -> Iterator[Connection]:
    """The connection an import (or an undo) writes through, imports taking turns.

    DuckDB and PostgreSQL: one transaction — it lands whole or not at all. ClickHouse has no
    multi-table transactions: each row is written under its import's id (:func:`new_import`)
    and, if anything fails before the end, every row of the imports begun here is deleted again
    and the error says so (as :class:`relq.exceptions.ImportRejected`).
    """
    with engine.begin() as conn:
        serialise_imports(conn)
        if not dialects.is_clickhouse(conn):
            yield conn
            return
        try:
            yield conn
        except Exception as exc:
            begun = conn.info.pop("relq_import_ids", [])
            if not begun:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            left = _remove_written(conn, begun)
            if left:
                raise ImportRejected(
                    f"{what} failed while writing ({reason}), and its rows could not be removed from "
                    f"{', '.join(left)}: undo import {', '.join(map(str, begun))} once the store is reachable."
                ) from exc
            raise ImportRejected(
                f"{what} failed while writing ({reason}); everything it had written was removed again, "
                "so the store is as it was."
            ) from exc
        conn.info.pop("relq_import_ids", None)


def new_import(conn: Connection, **fields) -> int:
    """Write an ``imports`` row and return its id."""
    fields.setdefault("imported_at", datetime.now())
    if isinstance(fields.get("mapping"), dict):
        fields["mapping"] = json.dumps(fields["mapping"])
    if dialects.is_clickhouse(conn):  # no sequence, no RETURNING: the next id under the import lock
        serialise_imports(conn)
        import_id = dialects.next_import_id(conn, schema.imports)
        conn.execute(schema.imports.insert().values(import_id=import_id, **fields))
        conn.info.setdefault("relq_import_ids", []).append(import_id)
        return import_id
    return conn.execute(
        schema.imports.insert().values(**fields).returning(schema.imports.c.import_id)
    ).scalar_one()


def data_end(conn: Connection) -> date:
    """The day the data ends: the latest purchase, response or ticket (today when there is none)."""
    latest = [
        conn.execute(sa.select(sa.func.max(col))).scalar()
        for col in (
            schema.transactions.c.occurred_at,
            schema.survey_responses.c.submitted_at,
            schema.tickets.c.opened_at,
        )
    ]
    latest = [pd.Timestamp(x).date() for x in latest if x is not None]
    return max(latest) if latest else date.today()


def current_data_end(conn: Connection) -> date:
    """:func:`data_end` for a page or a report: the end recorded with a stored table built from the
    current data version — the same day, as nothing has changed since — without reading the latest
    of every purchase (0.25 s at 49M purchases); :func:`data_end` when none is current. Not for a
    change whose writes are not yet noted (:func:`note_data_change`): it reads the rows."""
    if not dialects.is_clickhouse(conn):
        built = schema.derived_versions
        recorded = conn.execute(
            sa.select(built.c.data_end)
            .where(built.c.data_version == _DATA_VERSION.scalar_subquery())
            .limit(1)
        ).scalar()
        if recorded is not None:
            return pd.Timestamp(recorded).date()
    return data_end(conn)


def refresh_derived(conn: Connection, at_risk_days: int | None = None) -> None:
    """Recompute each customer's cohort, RFM value tier and lifecycle stage from transactions.

    - cohort: month of ``acquired_at``, else of the first transaction.
    - value tier (RFM monetary): revenue in the 365 days before the data's end (from that day's
      midnight, as the Retention page and revenue at stake count the year), split into
      "Top 20%", "Middle 50%", "Bottom 30%" among buyers; "No purchases" otherwise.
    - lifecycle stage as of the data's end: churned (``churned_at`` set), new (joined in the
      last 90 days), active (a purchase within ``at_risk_days``), at risk (last purchase
      ``at_risk_days``–2×``at_risk_days`` ago), lapsed (longer, or never purchased).
    """
    at_risk_days = at_risk_days or load_settings().at_risk_days
    end = data_end(conn)
    dialect = conn.dialect.name
    cohort_src = "coalesce(c.acquired_at, CAST(t.first_at AS DATE))"
    derived = (
        sa.text(
            f"""
              SELECT c.customer_id,
                     {dialects.month_label(dialect, cohort_src)} AS cohort,
                     CASE WHEN coalesce(t.revenue_12m, 0) <= 0 THEN 'No purchases'
                          WHEN t.rank_share <= 0.2 THEN 'Top 20%'
                          WHEN t.rank_share <= 0.7 THEN 'Middle 50%'
                          ELSE 'Bottom 30%' END AS value_tier,
                     CASE WHEN c.churned_at IS NOT NULL AND c.churned_at <= :end THEN 'churned'
                          WHEN {cohort_src} > :new_since THEN 'new'
                          WHEN t.last_at >= :active_since THEN 'active'
                          WHEN t.last_at >= :lapsed_since THEN 'at risk'
                          ELSE 'lapsed' END AS lifecycle_stage
              FROM customers c
              LEFT JOIN (
                SELECT customer_id, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
                       sum(CASE WHEN occurred_at >= :year_ago THEN amount ELSE 0 END) AS revenue_12m,
                       -- ranked among the customers who bought in those 12 months only
                       percent_rank() OVER (
                         PARTITION BY sum(CASE WHEN occurred_at >= :year_ago THEN amount ELSE 0 END) > 0
                         ORDER BY sum(CASE WHEN occurred_at >= :year_ago THEN amount ELSE 0 END) DESC
                       ) AS rank_share
                FROM transactions GROUP BY customer_id
              ) t ON t.customer_id = c.customer_id
            """  # noqa: S608 - only the month-format function differs by dialect; values are bound
        )
        .bindparams(
            end=end,
            new_since=end - timedelta(days=90),
            active_since=datetime.combine(end - timedelta(days=at_risk_days), datetime.min.time()),
            lapsed_since=datetime.combine(end - timedelta(days=2 * at_risk_days), datetime.min.time()),
            year_ago=datetime.combine(end - timedelta(days=365), datetime.min.time()),
        )
        .columns(customer_id=sa.Text, cohort=sa.Text, value_tier=sa.Text, lifecycle_stage=sa.Text)
        .subquery("d")
    )
    customers = schema.customers
    if dialects.is_clickhouse(conn):
        dialects.refresh_lookups(conn)
    conn.execute(  # UPDATE … FROM (relq.store.dialects carries it to ClickHouse)
        customers.update()
        .values(
            cohort=derived.c.cohort,
            value_tier=derived.c.value_tier,
            lifecycle_stage=derived.c.lifecycle_stage,
        )
        .where(customers.c.customer_id == derived.c.customer_id)
    )


@dataclass(frozen=True)
class LoadCounts:
    import_id: int
    customers: int
    transactions: int
    tickets: int
    responses: int
    answers: int


def load_demo(engine: Engine, company) -> LoadCounts:
    """Replace any demo data with ``company`` (a relq.ingest.demo.DemoCompany), in one transaction."""
    create_schema(engine)
    with import_transaction(engine, "Loading the demo company") as conn:
        import_id = start_demo(conn, rows=len(company.responses), label=f"demo-{len(company.customers)}")
        counts = insert_demo(conn, import_id, company)
        refresh_derived(conn)
        note_data_change(conn, "demo")
    return counts


def start_demo(conn: Connection, rows: int, label: str) -> int:
    """Remove any demo data and write the demo's ``imports`` row; returns its import id (inside
    :func:`import_transaction`)."""
    _remove_imports(conn, _demo_import_ids(conn))
    return new_import(
        conn,
        file_name="demo company",
        file_hash=label,
        kind="demo",
        detected_format="generated",
        rows_total=rows,
        rows_imported=rows,
        is_demo=True,
    )


def insert_demo(conn: Connection, import_id: int, company) -> LoadCounts:
    """Append ``company``'s frames under ``import_id`` (inside ``conn``'s transaction)."""
    counts = {}
    for table, frame in (
        (schema.customers, company.customers),
        (schema.transactions, company.transactions),
        (schema.tickets, company.tickets),
        (schema.survey_responses, company.responses),
        (schema.survey_answers, company.answers),
    ):
        counts[table.name] = bulk_insert(conn, table, frame.assign(import_id=import_id))
    _load_demo_cases(conn, getattr(company, "cases", None), getattr(company, "case_events", None), import_id)
    return LoadCounts(
        import_id,
        counts["customers"],
        counts["transactions"],
        counts["tickets"],
        counts["survey_responses"],
        counts["survey_answers"],
    )


def _load_demo_cases(
    conn: Connection, cases: pd.DataFrame | None, events: pd.DataFrame | None, import_id: int
) -> None:
    """The demo CX team's cases and their history; the ids come from the cases' own sequence."""
    if cases is None or cases.empty or dialects.is_clickhouse(conn):  # ClickHouse holds no cases
        return
    bulk_insert(conn, schema.cases, cases.assign(import_id=import_id))
    c = schema.cases.c
    ids = pd.DataFrame(
        conn.execute(sa.select(c.case_id, c.customer_id, c.opened_at).where(c.import_id == import_id)).all(),
        columns=["case_id", "customer_id", "opened_at"],
    )
    if events is not None and not events.empty:
        ids["opened_at"] = pd.to_datetime(ids["opened_at"])
        found = events.assign(opened_at=pd.to_datetime(events["opened_at"])).merge(
            ids, on=["customer_id", "opened_at"]
        )
        bulk_insert(conn, schema.case_events, found.drop(columns=["customer_id", "opened_at"]))


def has_data(engine: Engine, *, schema_made: bool = False) -> bool:
    """Whether anything (a file or the demo company) was ever imported. The schema is made first
    unless ``schema_made`` says the caller already made it on this engine — the dashboard does so
    once per process, not on every new browser session."""
    if not schema_made:
        create_schema(engine)
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.imports)).scalar_one() > 0


def _demo_import_ids(conn: Connection) -> list[int]:
    return list(conn.execute(sa.select(schema.imports.c.import_id).where(schema.imports.c.is_demo)).scalars())


def has_demo(engine: Engine, *, schema_made: bool = False) -> bool:
    """Whether the demo company is loaded (``schema_made`` as for :func:`has_data`)."""
    if not schema_made:
        create_schema(engine)
    with engine.connect() as conn:
        return bool(_demo_import_ids(conn))


def _remove_imports(conn: Connection, import_ids: list[int]) -> None:
    if not import_ids:
        return
    for table in (*DATA_TABLES, schema.import_rejects, schema.imports):
        conn.execute(table.delete().where(table.c.import_id.in_(import_ids)))
    # only the demo company's cases carry an import_id: they go with it
    demo_cases = sa.select(schema.cases.c.case_id).where(schema.cases.c.import_id.in_(import_ids))
    conn.execute(schema.case_events.delete().where(schema.case_events.c.case_id.in_(demo_cases)))
    conn.execute(schema.cases.delete().where(schema.cases.c.import_id.in_(import_ids)))
    # saved scores, purchase sums and answer rows may hold the removed rows (rebuilt with the scores)
    for derived in (schema.churn_scores, *schema.DERIVED_TABLES):
        conn.execute(derived.delete())


def _remove_written(conn: Connection, import_ids: list[int]) -> list[str]:
    """Delete every row of ``import_ids`` table by table, going on past a table that fails;
    returns the tables whose rows could not be removed."""
    left = []
    for table in (*DATA_TABLES, schema.import_rejects, schema.imports):
        try:
            conn.execute(table.delete().where(table.c.import_id.in_(import_ids)))
        except sa.exc.DBAPIError as exc:
            if "does not exist" not in str(exc) and "UNKNOWN_TABLE" not in str(
                exc
            ):  # nothing was written there
                left.append(table.name)
    try:
        refresh_derived(conn)
    except sa.exc.DBAPIError:
        left.append("customers (segments)")
    return left


def remove_demo(engine: Engine, user: str | None = None) -> int:
    """Remove the demo company; returns how many imports were removed. The audit row is written
    in the same transaction."""
    with import_transaction(engine, "Removing the demo company") as conn:
        ids = _demo_import_ids(conn)
        _remove_imports(conn, ids)
        refresh_derived(conn)
        note_data_change(conn, "remove demo")
        audit_row(conn, user, "remove_demo", {"import_ids": ids})
    return len(ids)


def undo_import(engine: Engine, import_id: int, user: str | None = None) -> None:
    """Remove an import and every row it added, with its audit row (one transaction, except on
    ClickHouse: there each table's rows go by one lightweight DELETE, and an undo cut short is
    finished by running it again)."""
    with import_transaction(engine, "Undoing the import") as conn:
        _remove_imports(conn, [int(import_id)])
        refresh_derived(conn)
        note_data_change(conn, "undo import")
        audit_row(conn, user, "undo_import", {"import_id": int(import_id)})


def import_history(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.imports).order_by(schema.imports.c.import_id.desc()))
        return pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))


def audit_log(engine: Engine, limit: int = 500) -> pd.DataFrame:
    """The latest audit records (exports, imports, undo, instrument edits), newest first."""
    a = schema.audit_log.c
    query = sa.select(a.logged_at, a.user_email, a.action, a.detail).order_by(a.logged_at.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query)
        return pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))


def record_audit(
    engine: Engine | Connection, user_email: str | None, action: str, detail: str | dict = ""
) -> None:
    """Record who did what and when (exports, imports, undo, instrument edits, cases, sends).

    Given a Connection, the record joins its transaction: the change and its record land together.
    """
    if isinstance(detail, dict):
        detail = json.dumps(detail, default=str)
    insert = schema.audit_log.insert().values(
        logged_at=datetime.now(), user_email=user_email, action=action, detail=str(detail)
    )
    if isinstance(engine, Connection):
        engine.execute(insert)
        return
    with engine.begin() as conn:
        conn.execute(insert)


def audit_row(conn: Connection, user_email: str | None, action: str, detail: str | dict = "") -> None:
    """Write an audit record inside ``conn``'s transaction: it stands or falls with what it records
    (an import, an export, a settings change)."""
    if isinstance(detail, dict):
        detail = json.dumps(detail, default=str)
    conn.execute(
        schema.audit_log.insert().values(
            logged_at=datetime.now(), user_email=user_email, action=action, detail=str(detail)
        )
    )


def note_data_change(conn: Connection, change: str) -> None:
    """Record, inside ``conn``'s transaction, that the stored data changed (see :func:`data_version`)."""
    conn.execute(schema.data_changes.insert().values(changed_at=datetime.now(), change=change))


_DATA_VERSION = sa.select(sa.func.count()).select_from(schema.data_changes)


def data_version(conn_or_engine) -> int:
    """The store's data version: how many changes (imports, undos, demo loads, instrument edits)
    it has seen. Every process's change counts, so a CLI import changes it for the dashboard too.
    One count over a table of a few rows per import: cheap enough to read on every page run."""
    query = _DATA_VERSION
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    return int(conn_or_engine.execute(query).scalar_one())


def derived_current(
    conn: Connection, name: str, data_end: date | None = None, recipe: str | None = None
) -> bool:
    """Whether what :func:`rebuilding_derived` built under ``name`` comes from the current data
    version — and, when given, from this data end and recipe — so it may stand in for the stored rows
    it was derived from. One read; False on ClickHouse, which keeps no derived table."""
    if dialects.is_clickhouse(conn):
        return False
    built = schema.derived_versions
    row = conn.execute(
        sa.select(
            built.c.data_version,
            built.c.data_end,
            built.c.recipe,
            _DATA_VERSION.scalar_subquery().label("current"),
        ).where(built.c.name == name)
    ).first()
    return (
        row is not None
        and int(row.data_version) == int(row.current)
        and (data_end is None or pd.Timestamp(row.data_end).date() == data_end)
        and (recipe is None or row.recipe == recipe)
    )


def derived_current_of(conn: Connection, names: Sequence[str]) -> set[str]:
    """Which of ``names`` :func:`derived_current` (without a data end or recipe) finds current — in
    one read for all of them."""
    if dialects.is_clickhouse(conn) or not names:
        return set()
    built = schema.derived_versions
    rows = conn.execute(
        sa.select(built.c.name, built.c.data_version, _DATA_VERSION.scalar_subquery().label("current")).where(
            built.c.name.in_(list(names))
        )
    ).all()
    return {row.name for row in rows if int(row.data_version) == int(row.current)}


def month_row_keys() -> list:
    """The keys of a stored month table (schema.response_sums, schema.theme_sums) made from
    ``survey_responses``, labelled by their columns: group by them to build its rows."""
    R = schema.survey_responses
    return [
        sa.cast(sa.func.date_trunc("month", R.c.submitted_at), sa.DateTime).label("submitted_at"),
        R.c.customer_id.label("customer_id"),
        sa.case((R.c.customer_id.is_(None), R.c.response_id)).label("response_id"),
        R.c.wave.label("wave"),
        *(R.c[flag].label(flag) for flag in schema.QUALITY_FLAGS),
    ]


@contextmanager
def rebuilding_derived(
    engine: Engine, name: str, tables: tuple[sa.Table, ...], recipe: str | None = None
) -> Iterator[tuple[Connection, date]]:
    """One transaction rebuilding derived ``tables`` on the database side: imports take turns,
    the tables and what was recorded under ``name`` are emptied, the caller fills the tables (given
    the connection and the data's end), and the record is written with the data version and end
    (and ``recipe``) they were built from — what :func:`derived_current` checks."""
    with engine.begin() as conn:
        serialise_imports(conn)
        with rebuilding_derived_in(conn, name, tables, recipe) as end:
            yield conn, end


@contextmanager
def rebuilding_derived_in(
    conn: Connection, name: str, tables: tuple[sa.Table, ...], recipe: str | None = None
) -> Iterator[date]:
    """:func:`rebuilding_derived` inside ``conn``'s transaction, for a change that rebuilds what it
    derives as it writes (the caller has taken the imports' turn): the tables are emptied, the caller
    fills them (given the data's end), and the record is written with the data version."""
    built = schema.derived_versions
    version, end = data_version(conn), data_end(conn)
    for table in tables:
        conn.execute(table.delete())
    forget_derived(conn, name)
    yield end
    conn.execute(built.insert().values(name=name, data_version=version, data_end=end, recipe=recipe))


def forget_derived(conn: Connection, name: str) -> None:
    """Forget what was recorded as built under ``name``: :func:`derived_current` says False until it
    is rebuilt (the rows made from something just rebuilt themselves)."""
    built = schema.derived_versions
    conn.execute(built.delete().where(built.c.name == name))


def get_setting(engine: Engine, key: str, default=None):
    """An admin setting (JSON value) stored in the database, else ``default``."""
    with engine.connect() as conn:
        raw = conn.execute(
            sa.select(schema.app_settings.c.value).where(schema.app_settings.c.key == key)
        ).scalar_one_or_none()
    return default if raw is None else json.loads(raw)


def set_setting(engine: Engine, key: str, value, user: str | None = None) -> None:
    """Store an admin setting, with its audit row in the same transaction."""
    table = schema.app_settings
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.key == key))
        conn.execute(
            table.insert().values(
                key=key, value=json.dumps(value), updated_at=datetime.now(), updated_by=user
            )
        )
        audit_row(conn, user, "setting", {"key": key, "value": value})
