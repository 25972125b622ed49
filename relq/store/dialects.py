"""Where the engines differ, in one module: how RelQ's tables and Core queries render on each.

RelQ's queries are SQLAlchemy Core, written once. DuckDB and PostgreSQL take them as SQLAlchemy
writes them (one tweak: FLOAT is DOUBLE on DuckDB). ClickHouse — a server or a cluster through
clickhouse-connect (``clickhousedb://``), or the same engine in-process through chDB
(``chdb:///PATH``) — differs in ways this module bridges, so no query needs a branch of its own:

- **Tables**: MergeTree, sorted by the key each table's ``info["clickhouse"]`` names in
  :mod:`relq.store.schema` (chosen for RelQ's scans); ``Nullable`` where SQL allows NULL;
  timestamps ``DateTime64(6, 'UTC')`` and dates ``Date32`` (DuckDB keeps microseconds, and
  dates before 1970); no indexes or sequences (the sorting key is the index).
- **Session settings** giving SQL's NULL semantics (:data:`CLICKHOUSE_SETTINGS`): an unmatched
  LEFT JOIN column is NULL, ROLLUP's total row has NULL keys, ``max``/``sum`` over no rows are
  NULL, a cast keeps NULL, a column name wins over a SELECT alias; mutations finish before they
  return.
- **Functions**: ``percentile_cont(q) WITHIN GROUP (ORDER BY x)`` → ``quantileExactInclusive``
  (the same linear interpolation); ``EXTRACT(EPOCH FROM a - b)`` → ``toFloat64(a - b)``
  (ClickHouse subtracts timestamps to seconds); date − date → ``dateDiff('day', …)``;
  ``md5`` → ``lower(hex(MD5(…)))``; ``/`` is true division (no CAST to NUMERIC).
- **Statements**: DELETE is ClickHouse's lightweight ``DELETE FROM``; UPDATE is a mutation
  (``ALTER TABLE … UPDATE``); ``UPDATE … FROM`` goes through a Join-engine table the update
  reads with ``joinGetOrNull``; there is no RETURNING (import ids are allocated under the
  import lock, :func:`next_import_id`).

A cluster: create the same tables as local ``ReplicatedMergeTree`` tables on every shard and
``Distributed`` tables over them under these names (README → ClickHouse).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex, CreateSequence, CreateTable, DropIndex, DropSequence
from sqlalchemy.sql import operators
from sqlalchemy.sql.dml import Delete, Update
from sqlalchemy.sql.elements import BinaryExpression, ColumnElement, Extract, WithinGroup
from sqlalchemy.sql.functions import Function
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = [
    "CLICKHOUSE_DIALECTS",
    "CLICKHOUSE_SETTINGS",
    "is_clickhouse",
    "configure",
    "clickhouse_type",
    "month_label",
    "insert_frame",
    "keys_found",
    "next_import_id",
    "ImportLock",
    "FieldLookup",
    "CUSTOMER_FIELD_LOOKUP",
    "refresh_lookups",
]

CLICKHOUSE_DIALECTS: tuple[str, ...] = ("chdb", "clickhousedb")

# Every ClickHouse session RelQ opens runs with these (each says which SQL behaviour it gives).
CLICKHOUSE_SETTINGS: dict[str, int] = {
    "join_use_nulls": 1,  # an unmatched LEFT JOIN column is NULL, not 0 or ''
    "group_by_use_nulls": 1,  # ROLLUP's total row has NULL in the rolled-up key
    "aggregate_functions_null_for_empty": 1,  # max/min/sum over no rows are NULL
    "cast_keep_nullable": 1,  # CAST(NULL AS …) is NULL, not an error
    "prefer_column_name_to_alias": 1,  # WHERE x means the column x, even if a SELECT says "AS x"
    "mutations_sync": 2,  # ALTER … UPDATE / DELETE return when done
    "lightweight_deletes_sync": 2,
    "allow_experimental_correlated_subqueries": 1,  # imported CRM fields are correlated lookups
}


def is_clickhouse(bind) -> bool:
    """True for an engine, connection or dialect of ClickHouse (a server or chDB)."""
    dialect = getattr(bind, "dialect", bind)
    return getattr(dialect, "name", None) in CLICKHOUSE_DIALECTS


# -- engines ------------------------------------------------------------------------------
def configure(engine: Engine, database: str | None = None) -> Engine:
    """Make a ClickHouse engine speak RelQ's SQL: the session settings, true division, the
    database (``database``) each connection uses, and ``UPDATE … FROM`` (see the module text)."""
    if not is_clickhouse(engine):
        return engine
    # SQLAlchemy renders int / int as a / CAST(b AS NUMERIC) where division floors; ClickHouse's
    # / is true division already, and NUMERIC would be a 9-digit Decimal.
    engine.dialect.div_is_floordiv = False
    # Dates and timestamps travel as text and are read back as the columns' types (chdb-sqlalchemy's
    # own toDate(?)/toDateTime(?) would drop microseconds and dates before 1970).
    engine.dialect.colspecs = {**engine.dialect.colspecs, sa.Date: _BoundDate, sa.DateTime: _BoundTimestamp}

    @event.listens_for(engine, "connect")
    def _session(dbapi_connection, _record):
        if engine.dialect.name == "clickhousedb":
            client = dbapi_connection.client
            for name, value in CLICKHOUSE_SETTINGS.items():
                client.set_client_setting(name, value)
            if database:
                client.database = database
            return
        cursor = dbapi_connection.cursor()
        try:
            for name, value in CLICKHOUSE_SETTINGS.items():
                cursor.execute(f"SET {name} = {int(value)}")
            if database:
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS {_quoted(database)}")
                cursor.execute(f"USE {_quoted(database)}")
        finally:
            cursor.close()

    event.listen(engine, "before_execute", _update_from_via_join_table, retval=True)
    event.listen(engine, "after_execute", _drop_join_tables)
    return engine


def _quoted(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def current_database(conn: Connection) -> str:
    return conn.exec_driver_sql("SELECT currentDatabase()").scalar_one()


class _BoundDate(sa.Date):
    def bind_processor(self, dialect):
        return None

    def bind_expression(self, bindvalue):
        return sa.func.toDate32(bindvalue, type_=self)


class _BoundTimestamp(sa.DateTime):
    def bind_processor(self, dialect):
        return None

    def bind_expression(self, bindvalue):
        return sa.func.toDateTime64(bindvalue, sa.literal_column("6"), sa.literal_column("'UTC'"), type_=self)


# -- tables ---------------------------------------------------------------------------------
def clickhouse_type(type_: sa.types.TypeEngine) -> str:
    """The ClickHouse type storing a column of SQLAlchemy type ``type_`` (not Nullable)."""
    if isinstance(type_, sa.Boolean):
        return "Bool"
    if isinstance(type_, sa.Integer):
        return "Int64"
    if isinstance(type_, (sa.Float, sa.Numeric)):
        return "Float64"
    if isinstance(type_, sa.DateTime):
        return "DateTime64(6, 'UTC')"
    if isinstance(type_, sa.Date):
        return "Date32"
    return "String"


def _create_table(create: CreateTable, compiler, **kw) -> str:
    table = create.element
    layout = table.info.get("clickhouse", {})
    preparer = compiler.preparer
    columns = []
    for column in table.columns:
        kind = clickhouse_type(column.type)
        if column.nullable and not column.primary_key:
            kind = f"Nullable({kind})"
        columns.append(f"\t{preparer.format_column(column)} {kind}")
    order_by = layout.get("order_by") or ", ".join(preparer.format_column(c) for c in table.primary_key)
    text = f"\nCREATE TABLE IF NOT EXISTS {preparer.format_table(table)} (\n" + ",\n".join(columns) + "\n)"
    text += f"\nENGINE = {layout.get('engine', 'MergeTree')}\nORDER BY ({order_by or 'tuple()'})"
    if layout.get("settings"):
        text += "\nSETTINGS " + ", ".join(f"{k} = {v}" for k, v in layout["settings"].items())
    return text


def _nothing(element, compiler, **kw) -> str:
    return ""


for _name in CLICKHOUSE_DIALECTS:
    compiles(CreateTable, _name)(_create_table)
    # The sorting key is ClickHouse's index; it has no sequences (import ids: next_import_id).
    for _construct in (CreateIndex, DropIndex, CreateSequence, DropSequence):
        compiles(_construct, _name)(_nothing)


@compiles(sa.Float, "duckdb")
@compiles(sa.Double, "duckdb")
def _float_is_double_on_duckdb(type_, compiler, **kw) -> str:
    """DuckDB reads FLOAT as 4-byte REAL; PostgreSQL as 8-byte. RelQ wants the same figures on
    every engine, so every Float (columns and casts in queries) is DOUBLE on DuckDB."""
    return "DOUBLE"


def _clickhouse_cast_type(type_, compiler, **kw) -> str:
    return clickhouse_type(type_)


for _name in CLICKHOUSE_DIALECTS:
    for _type in (sa.Float, sa.Double, sa.Numeric, sa.Integer, sa.BigInteger, sa.SmallInteger):
        compiles(_type, _name)(_clickhouse_cast_type)
    for _type in (sa.Date, sa.DateTime, sa.Boolean, sa.Text, sa.String, sa.Unicode, sa.UnicodeText):
        compiles(_type, _name)(_clickhouse_cast_type)


# -- functions and operators ----------------------------------------------------------------
def _within_group(element: WithinGroup, compiler, **kw) -> str:
    function = element.element
    if getattr(function, "name", "").lower() == "percentile_cont":
        (fraction,) = function.clauses.clauses
        (order_by,) = element.order_by.clauses
        # R's type 7 / SQL's percentile_cont: linear interpolation between order statistics
        return (
            f"quantileExactInclusive({compiler.process(fraction, **kw)})({compiler.process(order_by, **kw)})"
        )
    return compiler.visit_withingroup(element, **kw)


def _extract(element: Extract, compiler, **kw) -> str:
    if element.field.lower() == "epoch":
        # a timestamp difference is already seconds (Decimal) on ClickHouse; a timestamp, seconds since 1970
        return f"toFloat64({compiler.process(element.expr, **kw)})"
    return compiler.visit_extract(element, **kw)


def _is_date(type_) -> bool:
    return isinstance(type_, sa.Date) and not isinstance(type_, sa.DateTime)


def _binary(element: BinaryExpression, compiler, **kw) -> str:
    if element.operator is operators.sub and _is_date(element.left.type) and _is_date(element.right.type):
        # Date32 − Date32 is not defined on ClickHouse; the SQL meaning is a day count
        left, right = compiler.process(element.left, **kw), compiler.process(element.right, **kw)
        return f"dateDiff('day', {right}, {left})"
    return compiler.visit_binary(element, **kw)


def _function(element: Function, compiler, **kw) -> str:
    if element.name.lower() == "md5":
        return f"lower(hex(MD5({compiler.process(element.clauses, **kw)})))"
    return compiler.visit_function(element, **kw)


for _name in CLICKHOUSE_DIALECTS:
    compiles(WithinGroup, _name)(_within_group)
    compiles(Extract, _name)(_extract)
    compiles(BinaryExpression, _name)(_binary)
    compiles(Function, _name)(_function)


# Imported CRM fields are stored long (customer_fields); a segment dimension looks its value up
# per customer. ClickHouse cannot group by a correlated subquery, so there the lookup reads a
# Join-engine copy of customer_fields (refreshed with the derived segments after every import).
CUSTOMER_FIELD_LOOKUP = "relq_customer_field_lookup"


class FieldLookup(ColumnElement):
    """The value of one field for the row's key, from a long (key, field, value) table: SQL's
    correlated scalar subquery ``lookup`` everywhere, ``joinGetOrNull`` on ClickHouse."""

    inherit_cache = True
    _traverse_internals = [
        ("lookup", InternalTraversal.dp_clauseelement),
        ("key", InternalTraversal.dp_clauseelement),
        ("field", InternalTraversal.dp_clauseelement),
        ("join_table", InternalTraversal.dp_string),
    ]

    def __init__(self, lookup, key, field, join_table: str):
        self.lookup, self.key, self.field, self.join_table = lookup, key, field, join_table
        self.type = lookup.type

    @property
    def _from_objects(self) -> list:
        return []  # like the scalar subquery it stands for: the key's table is the caller's FROM


@compiles(FieldLookup)
def _field_lookup(element: FieldLookup, compiler, **kw) -> str:
    return compiler.process(element.lookup, **kw)


def _field_lookup_clickhouse(element: FieldLookup, compiler, **kw) -> str:
    key, field = compiler.process(element.key, **kw), compiler.process(element.field, **kw)
    return f"joinGetOrNull('{element.join_table}', 'value', {key}, {field})"


for _name in CLICKHOUSE_DIALECTS:
    compiles(FieldLookup, _name)(_field_lookup_clickhouse)


def refresh_lookups(conn: Connection, only_if_missing: bool = False) -> None:
    """ClickHouse: (re)fill the Join-engine copy of customer_fields that :class:`FieldLookup` reads
    (with ``only_if_missing``, only when the store has none yet)."""
    table = _quoted(CUSTOMER_FIELD_LOOKUP)
    if (
        only_if_missing
        and conn.execute(
            sa.text("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = :name"),
            {"name": CUSTOMER_FIELD_LOOKUP},
        ).scalar()
    ):
        return
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {table} (customer_id String, field String, value Nullable(String)) "
        "ENGINE = Join(ANY, LEFT, customer_id, field)"
    )
    conn.exec_driver_sql(f"TRUNCATE TABLE {table}")
    conn.exec_driver_sql(
        f"INSERT INTO {table} SELECT customer_id, field, value FROM customer_fields"  # noqa: S608
    )


def code_point_order(dialect_name: str, column: ColumnElement) -> ColumnElement:
    """``column`` to sort by in code point order on every engine: PostgreSQL's default collation
    follows the server's locale ("C" does not); DuckDB and ClickHouse compare the bytes already."""
    return column.collate("C") if dialect_name == "postgresql" else column


def month_label(dialect_name: str, expr: str) -> str:
    """SQL text of the 'YYYY-MM' label of a date expression (for hand-written SQL)."""
    if dialect_name == "duckdb":
        return f"strftime({expr}, '%Y-%m')"
    if dialect_name in CLICKHOUSE_DIALECTS:
        return f"formatDateTime({expr}, '%Y-%m')"
    return f"to_char({expr}, 'YYYY-MM')"


# -- statements -----------------------------------------------------------------------------
def _delete(element: Delete, compiler, **kw) -> str:
    """ClickHouse's lightweight DELETE (rows vanish from every query at once; space is
    reclaimed by merges)."""
    table = compiler.preparer.format_table(element.table)
    where = sa.and_(*element._where_criteria) if element._where_criteria else sa.true()
    return f"DELETE FROM {table} WHERE {compiler.process(where, include_table=False, **kw)}"  # noqa: S608


def _update(element: Update, compiler, **kw) -> str:
    """A mutation: ``ALTER TABLE t UPDATE c = … WHERE …`` (columns unqualified, as mutations need)."""
    table = compiler.preparer.format_table(element.table)
    sets = ", ".join(
        f"{compiler.preparer.quote(_key_name(key))} = {compiler.process(_as_clause(value), include_table=False, **kw)}"
        for key, value in element._values.items()
    )
    where = sa.and_(*element._where_criteria) if element._where_criteria else sa.true()
    return f"ALTER TABLE {table} UPDATE {sets} WHERE {compiler.process(where, include_table=False, **kw)}"


for _name in CLICKHOUSE_DIALECTS:
    compiles(Delete, _name)(_delete)
    compiles(Update, _name)(_update)


def _key_name(key) -> str:
    return key if isinstance(key, str) else key.name


def _as_clause(value):
    return value if isinstance(value, sa.sql.ClauseElement) else sa.literal(value)


def _extra_froms(stmt: Update) -> list:
    clauses = [*stmt._where_criteria, *(_as_clause(v) for v in stmt._values.values())]
    found = []
    for clause in clauses:
        for frm in clause._from_objects:
            if frm is not stmt.table and frm not in found:
                found.append(frm)
    return found


def _update_from_via_join_table(conn, clauseelement, multiparams, params, execution_options):
    """``UPDATE t SET c = s.x FROM s WHERE t.key = s.key`` on ClickHouse: the rows to change and
    their new values go into a Join-engine table keyed by t's primary key, and one mutation reads
    them back with ``joinGetOrNull`` (a mutation cannot join or correlate)."""
    if not isinstance(clauseelement, Update) or not _extra_froms(clauseelement):
        return clauseelement, multiparams, params
    stmt = clauseelement
    (key,) = list(stmt.table.primary_key.columns)
    names = [_key_name(k) for k in stmt._values]
    source = sa.select(
        stmt.table.c[key.name].label("relq_key"),
        *[_as_clause(value).label(name) for name, value in zip(names, stmt._values.values(), strict=True)],
    ).where(*stmt._where_criteria)
    compiled = source.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    join_table = f"{_quoted(current_database(conn))}.{_quoted('_relq_update_' + uuid.uuid4().hex)}"
    positional = [compiled.params[name] for name in (compiled.positiontup or [])]
    conn.exec_driver_sql(
        f"CREATE TABLE {join_table} ENGINE = Join(ANY, LEFT, relq_key) AS {compiled}",
        tuple(positional) if compiled.positional else compiled.params,
    )
    conn.info.setdefault("relq_join_tables", []).append(join_table)
    literal = join_table.replace("`", "").replace("'", "\\'")
    key_sql = _quoted(key.name)
    sets = ", ".join(f"{_quoted(n)} = joinGetOrNull('{literal}', '{n}', {key_sql})" for n in names)
    # names from RelQ's schema; the values stay in the join table
    mutation = f"ALTER TABLE {_quoted(stmt.table.name)} UPDATE {sets} WHERE {key_sql} IN (SELECT relq_key FROM {join_table})"  # noqa: S608, E501
    return sa.text(mutation), (), {}


def _drop_join_tables(conn, clauseelement, multiparams, params, execution_options, result):
    for table in conn.info.pop("relq_join_tables", []):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


# -- bulk paths -----------------------------------------------------------------------------
def _chdb_session(conn: Connection):
    """The chDB session behind a SQLAlchemy connection (chdb-sqlalchemy → chdb.dbapi → chDB)."""
    return conn.connection.driver_connection._conn._conn


def insert_frame(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """ClickHouse's native bulk insert of a frame: chDB reads the frame's columns in place
    (``Python(frame)``); a server takes it through clickhouse-connect's columnar insert."""
    columns = [str(c) for c in frame.columns]
    if conn.dialect.name == "chdb":
        cols = ", ".join(_quoted(c) for c in columns)
        # chDB finds ``frame`` among this function's local variables
        _chdb_session(conn).query(
            f"INSERT INTO {_quoted(table.name)} ({cols}) SELECT {cols} FROM Python(frame)"  # noqa: S608
        )
        return
    client = conn.connection.driver_connection.client
    client.insert_df(table.name, frame, column_names=columns)


def keys_found(conn: Connection, column: sa.Column, keys: pd.Series) -> set | None:
    """Which of ``keys`` are stored in ``column``, semi-joined in chDB without a round of IN
    lists (None where the engine has no such path: the caller uses IN lists)."""
    if conn.dialect.name != "chdb":
        return None
    frame = pd.DataFrame({"key": keys.astype(str).to_numpy(dtype=object)})  # noqa: F841 - read by chDB
    probe = (
        f"SELECT key FROM Python(frame) WHERE key IN "  # noqa: S608 - names come from RelQ's schema
        f"(SELECT {_quoted(column.name)} FROM {_quoted(column.table.name)})"
    )
    found = _chdb_session(conn).query(probe, "DataFrame")
    return set(found["key"]) if len(found) else set()


def next_import_id(conn: Connection, imports: sa.Table) -> int:
    """The next import id on ClickHouse (no sequences): one more than the largest stored. Only
    safe under :class:`ImportLock`, which every writer takes."""
    largest = conn.execute(sa.select(sa.func.max(imports.c.import_id))).scalar()
    return int(largest or 0) + 1


# -- the import lock ------------------------------------------------------------------------
class ImportLock:
    """Imports take turns on ClickHouse through a lock table (``relq_import_lock``) on the
    database RelQ uses — a queue: each writer adds a row and proceeds when its row is the oldest
    live one, then deletes it. A holder that died is passed over after :attr:`expire_after`.

    ClickHouse makes a synchronous INSERT visible to the next query on the same server, which
    is all the queue needs; on a cluster keep the lock table a plain (not Distributed) table on
    the node RelQ connects to.
    """

    table_name = "relq_import_lock"
    expire_after = timedelta(minutes=30)
    poll_seconds = 0.1

    def __init__(self, conn: Connection, wait_seconds: float = 600.0):
        self.conn = conn
        self.wait_seconds = wait_seconds
        self.holder = uuid.uuid4().hex

    def _sql(self, text: str, **params):
        return self.conn.execute(sa.text(text), params)

    def acquire(self) -> None:
        table = _quoted(self.table_name)
        self.conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {table} (holder String, taken_at DateTime64(6, 'UTC')) "
            "ENGINE = MergeTree ORDER BY taken_at"
        )
        self._sql(f"INSERT INTO {table} (holder, taken_at) VALUES (:holder, now64(6))", holder=self.holder)  # noqa: S608
        deadline = time.monotonic() + self.wait_seconds
        expired = int(self.expire_after.total_seconds())
        while True:
            oldest = f"SELECT holder FROM {table} WHERE taken_at > now64(6) - INTERVAL {expired} SECOND"  # noqa: S608
            first = self._sql(oldest + " ORDER BY taken_at, holder LIMIT 1").scalar()
            if first == self.holder:
                return
            if time.monotonic() > deadline:
                self.release()
                from relq.exceptions import StoreUnavailable

                raise StoreUnavailable(
                    "Another import is still writing to the ClickHouse store; try again when it has finished."
                )
            time.sleep(self.poll_seconds)

    def release(self) -> None:
        """Leave the queue. Runs on the driver's own cursor, so it works while SQLAlchemy ends
        the connection's transaction."""
        cursor = self.conn.connection.driver_connection.cursor()
        try:
            cursor.execute(f"DELETE FROM {_quoted(self.table_name)} WHERE holder = '{self.holder}'")  # noqa: S608 - a uuid hex
        finally:
            cursor.close()
