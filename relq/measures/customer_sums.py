"""Per-customer sums first, then sums over customers: the sufficient statistics of every
customer-clustered score, computed where the data live (Methodology page → The unit is the customer).

A relationship is an account: several people at one customer answer, wave after wave, so every
interval and test treats each **customer as a cluster** (an unmatched response is a cluster of its
own). Its variance needs only per-customer sums, so one SQLAlchemy Core query does it in two levels:

1. :func:`per_customer` groups the responses in view by customer (and by period when a trend or a
   period comparison asks for it): ``n_c`` responses having each score and ``Σ(y − shift)``; for
   NPS the promoters and detractors, for CSAT the 4–5 answers.
2. The outer query joins each customer's weight (:class:`WeightPlan`) and sums over customers, per
   group: C, N, ``ΣW_c``, ``ΣS_c``, ``ΣW_c²``, ``ΣW_c·S_c``, ``ΣS_c²`` (and cross sums over both
   periods for period vs previous). :mod:`relq.measures.clustered` turns them into intervals.

Weights (:class:`relq.store.filters.Weighting`): ``response`` gives ``W_c = n_c``, ``S_c = Σ(y−a)``;
the customer-level schemes give ``W_c = ω_c`` and ``S_c = ω_c · Σ(y−a) / n_c`` — the customer's
weight split over its responses having the score — with ω = 1 (``customer``), the annual value
(``value``) or the raked weight (``raked``). Unmatched responses carry no customer weight and are
left out of the customer-level schemes; every result counts them.

Raking (:func:`raking`): the base is the customers of the view's segments acquired on or before the
period's last day (or without a date) and not churned before its first day; the responding
customers are raked to its counts on each dimension by
:func:`relq.measures.clustered.rake_with_diagnostics` (IPF to 1e-10). All respondents in one cell
of the dimensions get the same weight, so SQL joins a small table of cell weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import SelectBase

from relq import store
from relq.exceptions import WeightingError
from relq.measures.clustered import (
    CustomerSums,
    PeriodSums,
    RakingDiagnostics,
    RakingError,
    rake_with_diagnostics,
)
from relq.store import catalog, dialects, schema
from relq.store.filters import SegmentFilter, Weighting, customer_dimension
from relq.store.schema import PILLARS

__all__ = [
    "MEAN_SCORES",
    "SCORES",
    "SHIFT",
    "GroupSums",
    "RakeOutcome",
    "WeightPlan",
    "customer_weight_series",
    "group_sums",
    "pair_sums",
    "per_customer",
    "raking",
    "response_sums_ready",
    "save_response_sums",
    "save_customer_totals",
    "customer_totals_ready",
    "save_segment_sums",
    "segment_sums_fit",
    "segment_sums_ready",
    "segment_quarters_fit",
    "cell_stat_rows",
    "save_cell_stats",
    "cell_stats",
    "quarter_of",
    "last_full_quarters",
    "customer_source",
    "listwise_customers",
    "on_source",
    "source_for",
    "stored_sums_fit",
    "raking_diagnostics",
    "sums_by",
    "weight_of",
    "weight_plan",
    "with_weights",
    "view_period",
]

R = schema.survey_responses
C = schema.customers
MEAN_SCORES: tuple[str, ...] = (*PILLARS, "rq", "ces")
SCORES: tuple[str, ...] = (*MEAN_SCORES, "nps", "csat")
# SQL sums y − shift so that SS − 2ȳ·WS + ȳ²·WW keeps its digits (0–100 indices, 1–7 CES).
SHIFT: dict[str, float] = {**{name: 50.0 for name in (*PILLARS, "rq")}, "ces": 4.0, "nps": 0.0, "csat": 0.0}
MISSING = "(missing)"
_PARTS = ("C", "N", "W", "S", "WW", "WS", "SS")


def _double(x) -> ColumnElement:
    return sa.cast(x, sa.Double)


def _sum(x) -> ColumnElement:
    return sa.func.coalesce(sa.func.sum(x), 0.0)


def _count_if(condition) -> ColumnElement:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


# --------------------------------------------------------------------------- level 1: per customer


def _score_sums(prefix: str, scores: Sequence[str], when=None) -> list:
    """Per-customer n and Σ(y − shift) of each score (NPS: promoters and detractors; CSAT: 4–5)."""

    def only(x):
        return x if when is None else sa.case((when, x))

    cols = []
    for name in scores:
        if name == "nps":
            cols += [
                sa.func.count(only(R.c.nps)).label(f"{prefix}nps_n"),
                _count_if(sa.and_(R.c.nps >= 9, *([when] if when is not None else []))).label(
                    f"{prefix}nps_p"
                ),
                _count_if(sa.and_(R.c.nps <= 6, *([when] if when is not None else []))).label(
                    f"{prefix}nps_d"
                ),
            ]
        elif name == "csat":
            cols += [
                sa.func.count(only(R.c.csat)).label(f"{prefix}csat_n"),
                _count_if(sa.and_(R.c.csat >= 4, *([when] if when is not None else []))).label(
                    f"{prefix}csat_s"
                ),
            ]
        else:
            cols += [
                sa.func.count(only(R.c[name])).label(f"{prefix}{name}_n"),
                _sum(only(_double(R.c[name]) - SHIFT[name])).label(f"{prefix}{name}_s"),
            ]
    return cols


def _cluster_keys() -> list:
    # A matched response's cluster is its customer; an unmatched response is a cluster of its own.
    return [
        R.c.customer_id.label("cid"),
        sa.case((R.c.customer_id.is_(None), R.c.response_id)).label("lone"),
    ]


# --------------------------------------------------------------------------- the stored month sums

S = schema.response_sums
_RESPONSE_SUMS = "response_sums"


def _month_start(day: date | None) -> bool:
    return day is None or day.day == 1


def stored_sums_fit(flt: SegmentFilter, *more: SegmentFilter) -> bool:
    """Whether the stored month sums can stand in for the responses of these views: each starts on
    the first of a month and ends on the last day of one (or is open), and no comment theme is chosen
    (the stored rows carry the month, customer, wave and quality flags, not the comments)."""
    return all(
        not f.themes
        and _month_start(f.since)
        and (f.until is None or _month_start(f.until + timedelta(days=1)))
        for f in (flt, *more)
    )


def response_sums_ready(conn: Connection) -> bool:
    """Whether the stored month sums (:func:`save_response_sums`) were built from the current data
    version. False on ClickHouse, which keeps none."""
    return store.derived_current(conn, _RESPONSE_SUMS)


def save_response_sums(engine) -> bool:
    """Rebuild the stored month sums from the stored responses, in one transaction on the database
    side (no row travels): per month, customer (an unmatched response: per response), wave and
    quality flags, the per-customer sums of :func:`per_customer`, marked with the data version.
    False on ClickHouse (nothing is built)."""
    if dialects.is_clickhouse(engine):
        return False
    keys = store.month_row_keys()
    rows = sa.select(*keys, *_level_one(R, "", SCORES), *_listwise_sums()).group_by(
        *[k.element for k in keys]
    )
    with store.rebuilding_derived(engine, _RESPONSE_SUMS, (S,)) as (conn, _end):
        conn.execute(S.insert().from_select([c.name for c in rows.selected_columns], rows))
    return True


T = schema.customer_totals
_CUSTOMER_TOTALS = "customer_totals"


def save_customer_totals(engine) -> bool:
    """Rebuild each customer's sums over the whole history (``customer_totals``) from the stored
    responses, in one transaction on the database side: per customer (an unmatched response: per
    response) the columns of :func:`save_response_sums`, marked with the data version. False on
    ClickHouse (nothing is built)."""
    if dialects.is_clickhouse(engine):
        return False
    keys = [
        key.element.label(name)
        for key, name in zip(_cluster_keys(), ("customer_id", "response_id"), strict=True)
    ]
    sums = (
        sa.select(*keys, *_level_one(R, "", SCORES), *_listwise_sums())
        .group_by(*[k.element for k in keys])
        .subquery("sums")
    )
    dialect = engine.dialect.name
    place = sa.func.row_number().over(
        order_by=(
            sums.c.customer_id.is_(None),
            dialects.code_point_order(dialect, sums.c.customer_id),
            dialects.code_point_order(dialect, sums.c.response_id),
        )
    )
    rows = sa.select(
        *sums.c, place.label("row_order"), *(C.c[d] for d in schema.SEGMENT_SUM_DIMENSIONS)
    ).select_from(sums.outerjoin(C, C.c.customer_id == sums.c.customer_id))
    with store.rebuilding_derived(engine, _CUSTOMER_TOTALS, (T,)) as (conn, _end):
        conn.execute(T.insert().from_select([c.name for c in rows.selected_columns], rows))
    return True


def _totals_in_view(flt: SegmentFilter) -> ColumnElement:
    """The rows of ``customer_totals`` in view ``flt`` (one :func:`customer_source` gives it for):
    chosen by the customer's segments kept beside its sums when the view picks cells only, else as
    the responses would be (the customers of a quadrant or an imported field looked up)."""
    return flt.cell_clause(T) if flt.picks_cells() else on_source(T, flt.response_clause())


def customer_totals_ready(conn: Connection) -> bool:
    """Whether the stored whole-history sums (:func:`save_customer_totals`) were built from the
    current data version. False on ClickHouse, which keeps none."""
    return store.derived_current(conn, _CUSTOMER_TOTALS)


# --------------------------------------------------------------------------- the stored segment sums

SM, ST = schema.segment_months, schema.segment_totals
_SEGMENT_SUMS = "segment sums"


def save_segment_sums(engine) -> bool:
    """Rebuild the scores' sums over the customers of each segment cell (``segment_months`` by
    month, ``segment_totals`` over the whole history; then ``segment_quarters``, the last full
    quarter against the one before, in a transaction of its own), on the database side, from
    the stored month and whole-history sums when current (else the responses), marked with the data
    version. Each row adds up :func:`group_sums`' level 2, each response counted once, over the
    customers of one combination of :data:`schema.SEGMENT_SUM_DIMENSIONS`. False on ClickHouse."""
    if dialects.is_clickhouse(engine):
        return False
    everything = SegmentFilter()
    with store.rebuilding_derived(engine, _SEGMENT_SUMS, (SM, ST)) as (conn, _end):
        for table, period in ((SM, month_key("month")), (ST, None)):
            source = source_for(conn, everything) if period is not None else customer_source(conn, everything)
            pc = per_customer(everything, period, SCORES, source=source)
            wc = _weighted(pc, {}, [], schema.SEGMENT_SUM_DIMENSIONS)
            keys = [wc.c.period] if period is not None else []
            keys += [wc.c[f"segment_{i}"].label(d) for i, d in enumerate(schema.SEGMENT_SUM_DIMENSIONS)]
            sums = [*_totals(wc, None)[:3], *_over_customers_unweighted(wc, SCORES)[0]]
            rows = sa.select(*keys, *sums).group_by(*keys)
            conn.execute(table.insert().from_select([c.name for c in rows.selected_columns], rows))
    _save_segment_quarters(engine)
    return True


def segment_sums_fit(flt: SegmentFilter, freq: str | None = None, segment: str | None = None) -> bool:
    """Whether the stored segment sums can stand in for :func:`group_sums` of view ``flt``: each
    response counted once, segments chosen (and ``segment`` grouped by) among
    :data:`schema.SEGMENT_SUM_DIMENSIONS` only, no quadrant; by month with the month sums' dates
    (:func:`stored_sums_fit`) and every wave and quality flag, else over the whole history."""
    if flt.weighting.scheme != "response" or not flt.picks_cells(segment):
        return False
    if freq is None:
        return flt.whole_history
    return freq == "month" and not (flt.waves or flt.exclude_flags) and stored_sums_fit(flt)


def segment_sums_ready(conn: Connection) -> bool:
    """Whether the stored segment sums (:func:`save_segment_sums`) were built from the current data
    version. False on ClickHouse, which keeps none."""
    return store.derived_current(conn, _SEGMENT_SUMS)


def _segment_group_sums(
    conn: Connection, flt: SegmentFilter, freq: str | None, segment: str | None, rollup: bool, scores
) -> pd.DataFrame:
    """:func:`group_sums`' rows added up from the stored segment sums (see :func:`segment_sums_fit`)."""
    table = SM if freq is not None else ST
    where = [flt.cell_clause(table)]
    if freq is not None:
        where += [table.c.period >= flt.since] if flt.since else []
        where += [table.c.period <= flt.until] if flt.until else []
    head = [table.c.period] if freq is not None else []
    if segment is not None:
        head.append(table.c[segment].label("segment"))
    sums = [sa.func.sum(table.c[c]).label(c) for c in _cell_sums(scores)]
    stmt = sa.select(*head)
    group = head
    if rollup and segment is not None:
        stmt = sa.select(*head, sa.func.grouping(table.c[segment]).label("is_total"))
        group = [*head[:-1], sa.func.rollup(table.c[segment])]
    stmt = stmt.add_columns(*sums, sa.literal(0).label("left_out")).where(*where)
    if group:
        stmt = stmt.group_by(*group)
    return pd.DataFrame(conn.execute(stmt).mappings().all())


def _cell_sums(scores: Sequence[str]) -> list[str]:
    """The columns of ``schema.SEGMENT_SUM_COLUMNS`` that ``scores`` need: the responses, customers
    and unmatched responses, and each score's sums."""
    return [
        c
        for c in schema.SEGMENT_SUM_COLUMNS
        if c.split("_")[0] in (*scores, "responses", "customers", "unmatched")
    ]


def cell_stat_rows(frame: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """A frame of statistics per segment cell — the cell's dimensions, ``keys``, then a column per
    statistic — as one row per statistic (``stat``, ``value``), an empty one left out."""
    dims = list(schema.SEGMENT_SUM_DIMENSIONS)
    long = frame.melt(id_vars=[*dims, *keys], var_name="stat", value_name="value")
    return long[long["value"].notna()]


def save_cell_stats(conn: Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    """Store rows of :func:`cell_stat_rows` in ``table`` (a cell without a dimension's value: NULL)."""
    rows = rows.astype({d: object for d in schema.SEGMENT_SUM_DIMENSIONS})
    store.bulk_insert(conn, table, rows.where(rows.notna(), None).reset_index(drop=True))


def cell_stats(
    conn: Connection, table: sa.Table, flt: SegmentFilter, keys: Sequence[str] = (), where=None
) -> list:
    """Each statistic of ``table`` (see :func:`save_cell_stats`) summed over the cells of view
    ``flt`` (its rows ``where``): rows of (``keys``…, stat, value)."""
    grouped = [*(table.c[k] for k in keys), table.c.stat]
    stmt = (
        sa.select(*grouped, sa.func.sum(table.c.value))
        .where(flt.cell_clause(table), sa.true() if where is None else where)
        .group_by(*grouped)
    )
    return conn.execute(stmt).all()


SQ = schema.segment_quarters
_SEGMENT_QUARTERS = "segment quarters"


def quarter_of(day: date) -> tuple[date, date]:
    """First and last day of the calendar quarter holding ``day``.

    >>> quarter_of(date(2026, 8, 28))
    (datetime.date(2026, 7, 1), datetime.date(2026, 9, 30))
    """
    start = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    end = (pd.Timestamp(start) + pd.DateOffset(months=3) - pd.Timedelta(days=1)).date()
    return start, end


def last_full_quarters(end: date) -> tuple[tuple[date, date], tuple[date, date]]:
    """The last full quarter up to the data's end ``end`` and the quarter before it, each (first
    day, last day) — the executive overview's periods when the view chooses none."""
    q_start, q_end = quarter_of(end)
    if q_end > end:  # the data's last quarter is not over yet
        q_start, q_end = quarter_of(q_start - timedelta(days=1))
    return (q_start, q_end), quarter_of(q_start - timedelta(days=1))


def _quarters_recipe(current: SegmentFilter, previous: SegmentFilter) -> str:
    return f"{current.since}..{current.until} vs {previous.since}..{previous.until}"


def segment_quarters_fit(
    current: SegmentFilter, previous: SegmentFilter, segment: str | Sequence[str] | None = None
) -> bool:
    """Whether the stored quarters' segment sums can stand in for :func:`pair_sums` of these periods
    (which must also be the stored quarters, see its recipe): each response counted once, every wave
    and quality flag, no theme or quadrant, segments chosen and grouped by among
    :data:`schema.SEGMENT_SUM_DIMENSIONS` only."""
    grouped = [segment] if isinstance(segment, str) else list(segment or ())
    return all(
        f.weighting.scheme == "response"
        and not (f.waves or f.exclude_flags or f.themes)
        and f.picks_cells(*grouped)
        for f in (current, previous)
    )


def _save_segment_quarters(engine) -> None:
    with engine.connect() as conn:
        (cs, cu), (ps, pu) = last_full_quarters(store.current_data_end(conn))
    current, previous = SegmentFilter(since=cs, until=cu), SegmentFilter(since=ps, until=pu)
    recipe = _quarters_recipe(current, previous)
    with store.rebuilding_derived(engine, _SEGMENT_QUARTERS, (SQ,), recipe) as (conn, _end):
        wc, sums, _plan = _pair_parts(conn, current, previous, schema.SEGMENT_SUM_DIMENSIONS, SCORES)
        cells = [wc.c[f"segment_{i}"].label(d) for i, d in enumerate(schema.SEGMENT_SUM_DIMENSIONS)]
        kept = [c for c in sums if c.name in SQ.c]
        rows = sa.select(*cells, *kept).select_from(wc).group_by(*cells)
        conn.execute(SQ.insert().from_select([c.name for c in rows.selected_columns], rows))


def _segment_pair_sums(
    conn: Connection, current: SegmentFilter, segment: str | Sequence[str] | None, scores, total: bool
) -> pd.DataFrame:
    """:func:`pair_sums`' rows added up from the stored quarters' segment sums."""
    where = [current.cell_clause(SQ)]
    names = [f"{side}{c}" for side in ("c_", "p_") for c in _cell_sums(scores)]
    names += [f"{name}_{part}" for name in scores for part in ("C", "S1S2", "S1W2", "W1S2", "W1W2")]
    sums = [sa.func.coalesce(sa.func.sum(SQ.c[n]), 0.0).label(n) for n in names]
    sums += [sa.literal(0).label("c_left_out"), sa.literal(0).label("p_left_out")]
    if segment is None:
        stmt = sa.select(*sums).where(*where)
    elif isinstance(segment, str):
        value = SQ.c[segment]
        stmt = sa.select(value.label("segment"), *sums).where(*where, value.is_not(None)).group_by(value)
    else:
        parts = [
            sa.select(sa.literal(name, sa.Text).label("dimension"), SQ.c[name].label("segment"), *sums)
            .where(*where, SQ.c[name].is_not(None))
            .group_by(SQ.c[name])
            for name in segment
        ]
        if total:
            nothing = sa.cast(sa.null(), sa.Text)
            parts.append(sa.select(nothing.label("dimension"), nothing.label("segment"), *sums).where(*where))
        stmt = sa.union_all(*parts)
    return pd.DataFrame(conn.execute(stmt).mappings().all())


def _listwise_sums() -> list:
    """The stored sums over the responses having every variable of ``schema.LISTWISE``: lw_n, Σx
    (lw_s_i) and Σxy (lw_c_i_j, i ≤ j) — zero where a row has none."""
    x = [sa.cast(R.c[name], sa.Double) for name in schema.LISTWISE]
    complete = sa.and_(*(c.is_not(None) for c in x))

    def total(value):
        return sa.func.coalesce(sa.func.sum(sa.case((complete, value))), 0.0)

    return [
        total(sa.literal(1.0)).label("lw_n"),
        *(total(v).label(f"lw_s_{i}") for i, v in enumerate(x)),
        *(total(x[i] * x[j]).label(f"lw_c_{i}_{j}") for i in range(len(x)) for j in range(i, len(x))),
    ]


def listwise_customers(conn: Connection, flt: SegmentFilter, names: Sequence[str]) -> sa.Subquery:
    """Per customer (an unmatched response: per response) of view ``flt``, over its responses having
    every variable of ``names``: cid, lone, responses, Σx of each (``s_i``) and Σxy of each pair
    (``c_i_j``) — for the variables of ``schema.LISTWISE`` from the stored sums
    :func:`customer_source` gives for the view (whole-history or by month), else from the responses.
    From the whole-history sums also ``row_order`` (the rows' order, see ``schema.customer_totals``)
    and the customer's stored dimensions, which :func:`with_weights` reads instead of the customers."""
    k = len(names)
    source = customer_source(conn, flt) if tuple(names) == schema.LISTWISE else R
    if source is T:  # one row per customer already
        stmt = sa.select(
            T.c.customer_id.label("cid"),
            T.c.response_id.label("lone"),
            sa.cast(T.c.lw_n, sa.BigInteger).label("responses"),
            *(T.c[f"lw_s_{i}"].label(f"s_{i}") for i in range(k)),
            *(T.c[f"lw_c_{i}_{j}"].label(f"c_{i}_{j}") for i in range(k) for j in range(i, k)),
            T.c.row_order,
            *(T.c[d].label(_STORED + d) for d in schema.SEGMENT_SUM_DIMENSIONS),
        ).where(_totals_in_view(flt), T.c.lw_n > 0)
        return stmt.subquery("driver_customers")
    if source is S:
        keys = [on_source(S, key.element).label(key.name) for key in _cluster_keys()]
        responses = sa.func.sum(S.c.lw_n)
        sums = [
            sa.cast(responses, sa.BigInteger).label("responses"),
            *(sa.func.sum(S.c[f"lw_s_{i}"]).label(f"s_{i}") for i in range(k)),
            *(sa.func.sum(S.c[f"lw_c_{i}_{j}"]).label(f"c_{i}_{j}") for i in range(k) for j in range(i, k)),
        ]
        stmt = sa.select(*keys, *sums).where(on_source(S, flt.response_clause())).having(responses > 0)
    else:
        keys = _cluster_keys()
        x = [sa.cast(R.c[name], sa.Double) for name in names]
        sums = [
            sa.func.count().label("responses"),
            *(sa.func.sum(v).label(f"s_{i}") for i, v in enumerate(x)),
            *(sa.func.sum(x[i] * x[j]).label(f"c_{i}_{j}") for i in range(k) for j in range(i, k)),
        ]
        complete = [R.c[name].is_not(None) for name in names]
        stmt = sa.select(*keys, *sums).where(flt.response_clause(), *complete)
    return stmt.group_by(*[key.element for key in keys]).subquery("driver_customers")


def source_for(conn: Connection, flt: SegmentFilter, *more: SegmentFilter):
    """The responses of these views as :func:`per_customer` reads them: the stored month sums when
    they fit the views and are current, else ``survey_responses`` itself."""
    return S if stored_sums_fit(flt, *more) and response_sums_ready(conn) else R


def customer_source(conn: Connection, flt: SegmentFilter):
    """The responses of view ``flt`` as :func:`per_customer` reads them without a period: each
    customer's stored whole-history sums (:data:`T`) when they fit the view and are current, else
    :func:`source_for`'s."""
    wanted = [_CUSTOMER_TOTALS] if flt.whole_history else []
    if stored_sums_fit(flt):
        wanted.append(_RESPONSE_SUMS)
    current = store.derived_current_of(conn, wanted)  # one read for both
    if _CUSTOMER_TOTALS in current:
        return T
    return S if _RESPONSE_SUMS in current else R


def on_source(source, expression: ColumnElement) -> ColumnElement:
    """``expression`` (written on ``survey_responses``) on ``source``: the same columns by name —
    only those the stored sums keep, which :func:`stored_sums_fit` makes sure of (the stored month
    sums of the comment themes and the answer rows keep the same ones). A subquery inside it (the
    customers of a quadrant, found from their latest responses) stays a query of the responses."""
    if source is R:
        return expression

    def swap(element):
        if isinstance(element, SelectBase):
            return element
        if isinstance(element, sa.Column) and element.table is R:
            return source.c[element.name]
        return None

    return visitors.replacement_traverse(expression, {}, swap)


def _stored_parts(name: str) -> tuple[str, ...]:
    """The stored columns of a score: NPS its answers, promoters and detractors; CSAT its answers and
    4–5s; the others their answers and Σ(y − shift)."""
    return {"nps": ("n", "p", "d"), "csat": ("n", "s")}.get(name, ("n", "s"))


def _stored_score_sums(prefix: str, scores: Sequence[str], when=None) -> list:
    """:func:`_score_sums` from the stored month sums: the same names, summed over the rows."""
    cols = []
    for name in scores:
        cols += [
            _stored_total(S.c[f"{name}_{part}"], when).label(f"{prefix}{name}_{part}")
            for part in _stored_parts(name)
        ]
    return cols


def _stored_columns(table, scores: Sequence[str]) -> list:
    """The per-customer columns :func:`per_customer` gives, as stored in one row per customer."""
    cols = [table.c.responses.label("responses")]
    for name in scores:
        cols += [table.c[f"{name}_{part}"].label(f"{name}_{part}") for part in _stored_parts(name)]
    return cols


def _stored_total(column, when=None) -> ColumnElement:
    # counts come out as whole DOUBLEs (see schema.response_sums); every reader converts them
    return sa.func.coalesce(sa.func.sum(column if when is None else sa.case((when, column))), 0.0)


def _level_one(source, prefix: str, scores: Sequence[str], when=None) -> list:
    """Per-customer responses and score sums, from the responses or the stored month sums."""
    if source is R:
        responses = sa.func.count() if when is None else _count_if(when)
        return [responses.label(f"{prefix}responses"), *_score_sums(prefix, scores, when)]
    return [
        _stored_total(S.c.responses, when).label(f"{prefix}responses"),
        *_stored_score_sums(prefix, scores, when),
    ]


def per_customer(
    flt: SegmentFilter,
    period: ColumnElement | None = None,
    scores: Sequence[str] = SCORES,
    where: ColumnElement | None = None,
    source=R,
) -> sa.Subquery:
    """Level 1: one row per customer (per period with ``period``) of the responses in view.

    Columns: [period], cid (NULL for an unmatched response), lone (its response_id), responses, and
    per score ``{score}_n`` (responses having it) with ``{score}_s`` = Σ(y − shift); NPS has
    ``nps_p`` / ``nps_d`` (promoters / detractors), CSAT ``csat_s`` (answers 4–5). ``source``
    :data:`S` (see :func:`source_for`) reads the stored month sums, :data:`T` (see
    :func:`customer_source`; no ``period`` or ``where`` then) each customer's stored whole-history
    sums; ``period`` and ``where`` are written on ``survey_responses`` either way.
    """
    if source is T:  # one row per customer already: nothing to add up
        if period is not None or where is not None:
            raise ValueError("the customers' whole-history sums have no period and take no extra condition")
        return (
            sa.select(
                T.c.customer_id.label("cid"), T.c.response_id.label("lone"), *_stored_columns(T, scores)
            )
            .where(_totals_in_view(flt))
            .subquery("per_customer")
        )
    keys = ([on_source(source, period).label("period")] if period is not None else []) + [
        on_source(source, k.element).label(k.name) for k in _cluster_keys()
    ]
    clauses = [flt.response_clause(), *([where] if where is not None else [])]
    stmt = (
        sa.select(*keys, *_level_one(source, "", scores))
        .where(*[on_source(source, c) for c in clauses])
        .group_by(*[k.element for k in keys])
    )
    return stmt.subquery("per_customer")


# --------------------------------------------------------------------------- level 2: over customers


def _over_customers(
    pc, omega: ColumnElement | None, scores: Sequence[str], prefix: str = ""
) -> tuple[list, dict]:
    """Sums over customers of each score's per-customer W_c and S_c; also returns, per score, the
    per-customer (used, W_c, S_c) expressions for the period cross sums."""
    if omega is None:
        return _over_customers_unweighted(pc, scores, prefix)
    cols, parts = [], {}
    for name in scores:
        n = pc.c[f"{prefix}{name}_n"]
        if name == "nps":
            raw = _double(pc.c[f"{prefix}nps_p"]) - _double(pc.c[f"{prefix}nps_d"])
        else:
            raw = pc.c[f"{prefix}{name}_s"]
        if omega is None:
            used = n > 0
            w, s = _double(n), _double(raw)
        else:
            used = sa.and_(n > 0, omega.is_not(None))
            w, s = omega, omega * _double(raw) / _double(n)
        w_c, s_c = sa.case((used, w)), sa.case((used, s))
        label = f"{prefix}{name}_"
        cols += [
            _count_if(used).label(label + "C"),
            sa.func.coalesce(sa.func.sum(sa.case((used, n))), 0).label(label + "N"),
            _count_if(sa.and_(used, pc.c.cid.is_(None))).label(label + "U"),
            _sum(w_c).label(label + "W"),
            _sum(s_c).label(label + "S"),
            _sum(w_c * w_c).label(label + "WW"),
            _sum(w_c * s_c).label(label + "WS"),
            _sum(s_c * s_c).label(label + "SS"),
        ]
        if name == "nps":
            p, d = _double(pc.c[f"{prefix}nps_p"]), _double(pc.c[f"{prefix}nps_d"])
            if omega is not None:
                p, d = omega * p / _double(n), omega * d / _double(n)
            cols += [
                _sum(sa.case((used, p))).label(label + "P"),
                _sum(sa.case((used, d))).label(label + "D"),
                sa.func.coalesce(sa.func.sum(sa.case((used, pc.c[f"{prefix}nps_p"]))), 0).label(
                    label + "promoters"
                ),
                sa.func.coalesce(sa.func.sum(sa.case((used, pc.c[f"{prefix}nps_d"]))), 0).label(
                    label + "detractors"
                ),
            ]
        parts[name] = (used, w_c, s_c)
    return cols, parts


def _over_customers_unweighted(pc, scores: Sequence[str], prefix: str = "") -> tuple[list, dict]:
    """:func:`_over_customers` when each response counts once: ``W_c = n_c`` and ``S_c = Σ(y − shift)``
    (both 0 for a customer without the score), so no expression needs a CASE but the counts."""
    cols, parts = [], {}
    for name in scores:
        n = pc.c[f"{prefix}{name}_n"]
        if name == "nps":
            s = pc.c[f"{prefix}nps_p"] - pc.c[f"{prefix}nps_d"]
        else:
            s = pc.c[f"{prefix}{name}_s"]
        label = f"{prefix}{name}_"
        cols += [
            _count_if(n > 0).label(label + "C"),
            sa.func.sum(n).label(label + "N"),
            sa.func.sum(sa.case((pc.c.cid.is_(None), n))).label(label + "U"),
            sa.func.sum(n).label(label + "W"),
            sa.func.sum(s).label(label + "S"),
            sa.func.sum(n * n).label(label + "WW"),
            sa.func.sum(n * s).label(label + "WS"),
            sa.func.sum(s * s).label(label + "SS"),
        ]
        if name == "nps":
            p, d = pc.c[f"{prefix}nps_p"], pc.c[f"{prefix}nps_d"]
            cols += [
                sa.func.sum(p).label(label + "P"),
                sa.func.sum(d).label(label + "D"),
                sa.func.sum(p).label(label + "promoters"),
                sa.func.sum(d).label(label + "detractors"),
            ]
        parts[name] = (n > 0, n, s)
    return cols, parts


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class RakeOutcome:
    """Raking of one period: cell weights (dimension values → weight) or why it cannot be done."""

    since: date | None
    until: date | None
    cells: pd.DataFrame | None  # columns d0.. (dimension values) and w
    diagnostics: RakingDiagnostics | None
    problem: str | None = None


@dataclass(frozen=True)
class WeightPlan:
    """The weighting of one query: the scheme and, for ``raked``, each period's cell weights."""

    weighting: Weighting
    rakes: Mapping[object, RakeOutcome] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return self.weighting.scheme

    def problems(self) -> list[str]:
        return [o.problem for o in self.rakes.values() if o.problem]


def view_period(conn: Connection, flt: SegmentFilter) -> tuple[date | None, date | None]:
    """The period the view covers: the filter's dates, else the first and last submission in view."""
    since, until = flt.since, flt.until
    if since is None or until is None:
        lo, hi = conn.execute(
            sa.select(sa.func.min(R.c.submitted_at), sa.func.max(R.c.submitted_at)).where(
                flt.response_clause()
            )
        ).one()
        since = since or (pd.Timestamp(lo).date() if lo is not None else None)
        until = until or (pd.Timestamp(hi).date() if hi is not None else None)
    return since, until


def _cell_columns(dims: Sequence[str]) -> list[ColumnElement]:
    return [
        sa.func.coalesce(sa.cast(customer_dimension(d), sa.Text), MISSING).label(f"d{i}")
        for i, d in enumerate(dims)
    ]


def _check_rake_dimensions(conn: Connection, dims: Sequence[str]) -> None:
    known = catalog.dimensions(conn)
    unknown = [d for d in dims if d not in known]
    if unknown:
        raise WeightingError(
            f"Cannot rake on {', '.join(unknown)}: not a customer dimension. Choose from {', '.join(known)}."
        )


def raking(
    conn: Connection,
    flt: SegmentFilter,
    periods: Mapping[object, tuple[date | None, date | None]],
    respondents: pd.DataFrame,
) -> dict[object, RakeOutcome]:
    """Rake each period's responding customers to its customer base (Methodology page → Weights).

    ``respondents``: responding customers per period and cell (columns period, d0.., customers).
    The base of a period: customers of the filter's segments acquired on or before its last day
    (or without a date) and not churned before its first day — one query, a column per period.
    """
    dims = flt.weighting.rake
    cells = _cell_columns(dims)
    keys = list(periods)
    counts = []
    for k in keys:
        since, until = periods[k]
        active = sa.and_(
            sa.true() if until is None else sa.or_(C.c.acquired_at.is_(None), C.c.acquired_at <= until),
            sa.true() if since is None else sa.or_(C.c.churned_at.is_(None), C.c.churned_at >= since),
        )
        counts.append(_count_if(active).label(f"b{len(counts)}"))
    base_rows = conn.execute(
        sa.select(*cells, *counts).where(flt.customer_clause()).group_by(*[c.element for c in cells])
    ).all()
    names = [f"d{i}" for i in range(len(dims))]
    base = pd.DataFrame(base_rows, columns=[*names, *[f"b{i}" for i in range(len(keys))]])
    out = {}
    for i, k in enumerate(keys):
        since, until = periods[k]
        part = respondents[respondents["period"] == k] if "period" in respondents else respondents
        out[k] = _rake_period(base, f"b{i}", part, dims, names, since, until)
    return out


def _expand(frame: pd.DataFrame, names: list[str], dims: Sequence[str], count: str) -> pd.DataFrame:
    """One row per customer from a table of cells and their counts."""
    counts = frame[count].to_numpy(dtype=np.int64)
    rows = np.repeat(np.arange(len(frame)), counts)
    return pd.DataFrame({d: frame[n].to_numpy(dtype=object)[rows] for d, n in zip(dims, names, strict=True)})


def _rake_period(base, column, respondents, dims, names, since, until) -> RakeOutcome:
    base_period = base[base[column] > 0]
    when = f" ({since:%d %b %Y} – {until:%d %b %Y})" if since and until else ""
    if respondents.empty:  # nothing to weight: every number of the period is empty anyway
        return RakeOutcome(since, until, None, None)
    if base_period.empty:
        return RakeOutcome(
            since,
            until,
            None,
            None,
            f"The customer base of the period{when} is empty: there is nothing to rake to.",
        )
    people = _expand(respondents, names, dims, "customers")
    try:
        weights, diagnostics = rake_with_diagnostics(_expand(base_period, names, dims, column), people, dims)
    except RakingError as exc:
        return RakeOutcome(since, until, None, None, f"{exc}{' Period' + when + '.' if when else ''}".strip())
    if not diagnostics.converged:
        return RakeOutcome(
            since,
            until,
            None,
            diagnostics,
            f"Raking on {', '.join(dims)} did not converge{when}: the responding customers cannot match every "
            "margin at once. Rake on fewer dimensions.",
        )
    people = people.assign(w=weights.to_numpy())
    cells = people.drop_duplicates(subset=list(dims)).rename(columns=dict(zip(dims, names, strict=True)))
    return RakeOutcome(since, until, cells.reset_index(drop=True), diagnostics)


def _period_literal(key):
    if isinstance(key, (datetime, pd.Timestamp)):
        return sa.cast(sa.literal(pd.Timestamp(key).date()), sa.Date)
    if isinstance(key, date):
        return sa.cast(sa.literal(key), sa.Date)
    return sa.cast(sa.literal(int(key)), sa.Integer)


def _cell_table(plan: WeightPlan, keyed: bool) -> sa.Subquery | None:
    """The raked cell weights as a small derived table: [period], d0.., w (bound parameters)."""
    selects = []
    for key, outcome in plan.rakes.items():
        if outcome.cells is None:
            continue
        for row in outcome.cells.itertuples(index=False):
            values = row._asdict()
            cols = [_period_literal(key).label("period")] if keyed else []
            cols += [
                sa.cast(sa.literal(str(values[f"d{i}"])), sa.Text).label(f"d{i}")
                for i in range(len(plan.weighting.rake))
            ]
            cols.append(sa.cast(sa.literal(float(values["w"])), sa.Double).label("w"))
            selects.append(sa.select(*cols))
    if not selects:
        return None
    return (selects[0] if len(selects) == 1 else sa.union_all(*selects)).subquery("raked")


def _respondent_cells(conn: Connection, pc, dims: Sequence[str], keyed: bool) -> pd.DataFrame:
    cells = _cell_columns(dims)
    period = [pc.c.period] if keyed else []
    rows = conn.execute(
        sa.select(*period, *cells, sa.func.count().label("customers"))
        .select_from(pc.join(C, C.c.customer_id == pc.c.cid))
        .group_by(*period, *[c.element for c in cells])
    ).all()
    names = [f"d{i}" for i in range(len(dims))]
    return pd.DataFrame(rows, columns=[*(["period"] if keyed else []), *names, "customers"])


def weight_plan(
    conn: Connection,
    flt: SegmentFilter,
    pc=None,
    periods: Mapping[object, tuple[date | None, date | None]] | None = None,
) -> WeightPlan:
    """What each customer weighs in this view. For ``raked``, ``pc`` is the per-customer subquery
    (with a ``period`` column when ``periods`` has more than the view's own period)."""
    weighting = flt.weighting
    if weighting.scheme != "raked":
        return WeightPlan(weighting)
    _check_rake_dimensions(conn, weighting.rake)
    keyed = periods is not None
    if periods is None:
        periods = {None: view_period(conn, flt)}
    if pc is None:
        pc = per_customer(flt, scores=(), source=customer_source(conn, flt))
    respondents = _respondent_cells(conn, pc, weighting.rake, keyed)
    return WeightPlan(weighting, raking(conn, flt, periods, respondents))


def _omega(plan: WeightPlan, pc, keyed: bool, period_key=None):
    """(ω expression, extra joins) for the plan over the per-customer rows ``pc``."""
    if plan.scheme == "response":
        return None, []
    if plan.scheme == "customer":
        return sa.case((C.c.customer_id.is_not(None), 1.0)), []
    if plan.scheme == "value":
        return sa.case((C.c.annual_value > 0, _double(C.c.annual_value))), []
    table = _cell_table(plan, keyed)
    if table is None:
        return sa.cast(sa.null(), sa.Double), []
    cells = _cell_columns(plan.weighting.rake)
    alias = table.alias(f"raked_{period_key}" if period_key is not None else "raked_view")
    on = [alias.c[f"d{i}"] == cell.element for i, cell in enumerate(cells)]
    if keyed:
        on.append(alias.c.period == (pc.c.period if period_key is None else _period_literal(period_key)))
    return alias.c.w, [(alias, sa.and_(*on))]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GroupSums:
    """One group's sufficient statistics: per score its :class:`CustomerSums` (NPS also the weighted
    promoters P and detractors D and the unweighted counts), the responses in view, distinct
    customers, unmatched responses and responses left out of a customer-level weighting."""

    responses: int
    customers: int
    unmatched: int
    left_out: int
    scores: Mapping[str, CustomerSums]
    unmatched_by_score: Mapping[str, int]
    nps_P: float = 0.0
    nps_D: float = 0.0
    promoters: int = 0
    detractors: int = 0

    @classmethod
    def from_row(cls, m: Mapping, scores: Sequence[str] = SCORES, prefix: str = "") -> GroupSums:
        def num(key, kind=float):
            value = m.get(key)  # a sum over no row is NULL (NaN once in a frame): 0
            return kind(0) if value is None or value != value else kind(value)

        sums = {
            name: CustomerSums(
                num(f"{prefix}{name}_C", int),
                num(f"{prefix}{name}_N", int),
                *(num(f"{prefix}{name}_{part}") for part in _PARTS[2:]),
            )
            for name in scores
        }
        return cls(
            responses=num(f"{prefix}responses", int),
            customers=num(f"{prefix}customers", int),
            unmatched=num(f"{prefix}unmatched", int),
            left_out=num(f"{prefix}left_out", int),
            scores=sums,
            unmatched_by_score={name: num(f"{prefix}{name}_U", int) for name in scores},
            nps_P=num(f"{prefix}nps_P"),
            nps_D=num(f"{prefix}nps_D"),
            promoters=num(f"{prefix}nps_promoters", int),
            detractors=num(f"{prefix}nps_detractors", int),
        )

    def __sub__(self, other: GroupSums) -> GroupSums:
        """The rest of a group: every field is a sum over customers, so a difference."""
        return GroupSums(
            self.responses - other.responses,
            self.customers - other.customers,
            self.unmatched - other.unmatched,
            self.left_out - other.left_out,
            {k: self.scores[k] - other.scores[k] for k in self.scores},
            {k: self.unmatched_by_score[k] - other.unmatched_by_score[k] for k in self.unmatched_by_score},
            self.nps_P - other.nps_P,
            self.nps_D - other.nps_D,
            self.promoters - other.promoters,
            self.detractors - other.detractors,
        )


def _totals(pc, omega) -> list:
    cols = [
        _sum(pc.c.responses).label("responses"),
        sa.func.count(pc.c.cid).label("customers"),
        sa.func.coalesce(sa.func.sum(sa.case((pc.c.cid.is_(None), pc.c.responses))), 0).label("unmatched"),
    ]
    left_out = (
        sa.literal(0)
        if omega is None
        else sa.func.coalesce(sa.func.sum(sa.case((omega.is_(None), pc.c.responses))), 0)
    )
    return [*cols, left_out.label("left_out")]


# The prefix of a customer dimension's column read from the stored sums (listwise_customers).
_STORED = "stored_"


def _weighted(
    pc, omegas: Mapping[str, ColumnElement | None], joins: list, segment: str | Sequence[str] | None
):
    """Level 2a: each per-customer row with its customer's weight(s) and segment value.

    ``segment`` a dimension: column ``segment``. A sequence of dimensions: columns ``segment_0``,
    ``segment_1``, … as text, in a CTE, for one query grouping the same rows by each in turn."""
    cols = list(pc.c)
    for name, omega in omegas.items():
        if omega is not None:
            cols.append(omega.label(name))
    customers = len(cols) > len(pc.c)  # a weight reads the customers

    def dimension(name: str) -> ColumnElement:
        nonlocal customers
        if _STORED + name in pc.c:  # kept beside the customer's sums (listwise_customers)
            return pc.c[_STORED + name]
        customers = True
        return customer_dimension(name)

    if isinstance(segment, str):
        cols.append(dimension(segment).label("segment"))
    else:
        for i, name in enumerate(segment or ()):
            cols.append(sa.cast(dimension(name), sa.Text).label(f"segment_{i}"))
    source = pc
    if customers:
        source = source.outerjoin(C, C.c.customer_id == pc.c.cid)
    for table, on in joins:
        source = source.outerjoin(table, on)
    stmt = sa.select(*cols).select_from(source)
    return stmt.subquery("weighted") if segment is None or isinstance(segment, str) else stmt.cte("weighted")


def group_sums(
    conn: Connection,
    flt: SegmentFilter,
    *,
    freq: str | None = None,
    periods: Mapping[object, tuple[date | None, date | None]] | None = None,
    segment: str | None = None,
    rollup: bool = False,
    scores: Sequence[str] = SCORES,
) -> tuple[pd.DataFrame, WeightPlan]:
    """The sufficient statistics of every score per group, in one two-level query.

    ``freq``: per month or quarter (column ``period``, :func:`month_key`); raked weights then need
    ``periods`` (key → first and last day), each raked to its own base. Read from the stored segment
    sums when they fit the view (:func:`segment_sums_fit`), else from the stored month sums when they
    fit (:func:`stored_sums_fit`), while current. ``segment``: a customer dimension
    (unmatched responses and customers without a value have NULL); ``rollup`` adds the total row
    (``is_total`` = 1). Returns (one row per group, the weight plan); read a row with
    :meth:`GroupSums.from_row`.
    """
    if segment_sums_fit(flt, freq, segment) and segment_sums_ready(conn):
        return _segment_group_sums(conn, flt, freq, segment, rollup, scores), WeightPlan(flt.weighting)
    period = month_key(freq) if freq is not None else None
    source = source_for(conn, flt) if period is not None else customer_source(conn, flt)
    pc = per_customer(flt, period, scores, source=source)
    plan = weight_plan(conn, flt, pc, periods if period is not None else None)
    omega, joins = _omega(plan, pc, keyed=period is not None)
    wc = _weighted(pc, {"omega": omega}, joins, segment)
    weight = wc.c.omega if omega is not None else None
    cols, _ = _over_customers(wc, weight, scores)
    head = [wc.c.period] if period is not None else []
    if segment is not None:
        head.append(wc.c.segment)
    stmt = sa.select(*head)
    if rollup and segment is not None:
        stmt = sa.select(*head, sa.func.grouping(wc.c.segment).label("is_total"))
        group = [*head[:-1], sa.func.rollup(wc.c.segment)]
    else:
        group = head
    stmt = stmt.add_columns(*_totals(wc, weight), *cols).select_from(wc)
    if group:
        stmt = stmt.group_by(*group)
    frame = pd.DataFrame(conn.execute(stmt).mappings().all())
    _check_value_weights(plan, frame)
    return frame, plan


def weight_of(plan: WeightPlan, pc) -> tuple[ColumnElement | None, list]:
    """The customer weight ω of ``plan`` for the one-row-per-customer subquery ``pc`` (column cid):
    (expression or None for ``response``, the joins it needs). Use with :func:`with_weights`."""
    return _omega(plan, pc, keyed=False)


def with_weights(pc, omega: ColumnElement | None, joins: list, segment: str | None = None) -> sa.Subquery:
    """``pc`` with its customer's weight (column ``omega``, when there is one) and, with ``segment``,
    the customer's value of that dimension (column ``segment``)."""
    return _weighted(pc, {"omega": omega}, joins, segment)


def customer_weight_series(
    conn: Connection, flt: SegmentFilter, customers: Sequence[str] = ()
) -> pd.Series | None:
    """Each listed customer's weight ω under the view's weighting (None for ``response``): 1 for
    ``customer``, the annual value for ``value``, the raked weight for ``raked``; a customer without
    one is missing from the series. For numbers computed from a few rows already in Python (e.g.
    the sentiment of the comments shown), split per customer by
    :func:`relq.measures.clustered.customer_weights`."""
    if flt.weighting.scheme == "response":
        return None
    plan = weight_plan(conn, flt)
    ids = [str(c) for c in customers if c is not None]
    if not ids:
        return pd.Series(dtype=float, name="weight")
    pc = sa.select(C.c.customer_id.label("cid")).where(C.c.customer_id.in_(ids)).subquery("listed")
    omega, joins = _omega(plan, pc, keyed=False)
    wc = _weighted(pc, {"omega": omega}, joins, None)
    rows = conn.execute(sa.select(wc.c.cid, wc.c.omega).where(wc.c.omega.is_not(None))).all()
    return pd.Series({r.cid: float(r.omega) for r in rows}, dtype=float, name="weight")


def raking_diagnostics(conn: Connection, flt: SegmentFilter) -> RakeOutcome:
    """How raking the view's responding customers on ``flt.weighting.rake`` goes (whatever the
    view's own weighting): target vs achieved margins, weight range, Kish's design effect, or the
    sentence saying which dimension values cannot be raked. For analysts."""
    raked = replace(flt, weighting=Weighting("raked", flt.weighting.rake))
    return next(iter(weight_plan(conn, raked).rakes.values()))


def sums_by(
    conn: Connection, flt: SegmentFilter, pc: sa.Subquery, group: str, scores: Sequence[str]
) -> tuple[pd.DataFrame, WeightPlan]:
    """Sums over customers per ``group`` of a one-row-per-customer subquery ``pc`` (columns cid,
    responses, ``group`` and each score's per-customer columns as in :func:`per_customer`), weighted
    as the view (``raked``: the view's responding customers raked to its base). Used where a
    customer's row is already chosen, e.g. their latest response for the gap quadrants."""
    plan = weight_plan(conn, flt)
    omega, joins = _omega(plan, pc, keyed=False)
    wc = _weighted(pc, {"omega": omega}, joins, None)
    weight = wc.c.omega if omega is not None else None
    cols, _ = _over_customers(wc, weight, scores)
    stmt = sa.select(wc.c[group], *_totals(wc, weight), *cols).select_from(wc).group_by(wc.c[group])
    frame = pd.DataFrame(conn.execute(stmt).mappings().all())
    _check_value_weights(plan, frame)
    return frame, plan


def _check_value_weights(plan: WeightPlan, frame: pd.DataFrame) -> None:
    if plan.scheme != "value" or frame.empty:
        return
    responses = int(frame["responses"].sum())
    if responses and int(frame["left_out"].sum()) == responses:
        raise WeightingError(
            "Annual-value weights need each customer's annual value, and no customer in view has one above 0. "
            "Import customers with an annual value, or count each response or each customer instead."
        )


def pair_sums(
    conn: Connection,
    current: SegmentFilter,
    previous: SegmentFilter,
    segment: str | Sequence[str] | None = None,
    scores: Sequence[str] = SCORES,
    total: bool = False,
) -> tuple[pd.DataFrame, WeightPlan]:
    """Period vs previous, linearised over the customers of both: one row (per segment value,
    customers without one left out), columns ``c_*`` (current), ``p_*`` (previous) and per score
    ``{score}_C`` (customers in either period) and cross sums ``{score}_S1S2, _S1W2, _W1S2, _W1W2``.

    ``segment`` a sequence of dimensions: the rows of each in turn, from one query that sums the
    customers once (column ``dimension`` names the dimension, ``segment`` its value as text); with
    ``total`` also the row of every customer in view, ``dimension`` and ``segment`` NULL — the row
    :func:`pair_sums` without segments gives — from the same query.

    ``previous`` must end before ``current`` starts; both share every other filter setting.
    """
    if not (current.since and current.until and previous.since and previous.until):
        raise ValueError("period vs previous needs two closed periods.")
    if previous.until >= current.since:
        raise ValueError("the previous period must end before the current one starts.")
    if segment_quarters_fit(current, previous, segment) and store.derived_current(
        conn, _SEGMENT_QUARTERS, recipe=_quarters_recipe(current, previous)
    ):
        return _segment_pair_sums(conn, current, segment, scores, total), WeightPlan(current.weighting)
    wc, sums, plan = _pair_parts(conn, current, previous, segment, scores)
    if segment is None:
        stmt = sa.select(*sums).select_from(wc)
    elif isinstance(segment, str):
        stmt = sa.select(wc.c.segment, *sums).select_from(wc)
        stmt = stmt.where(wc.c.segment.is_not(None)).group_by(wc.c.segment)
    else:
        parts = [
            sa.select(sa.literal(name, sa.Text).label("dimension"), value.label("segment"), *sums)
            .select_from(wc)
            .where(value.is_not(None))
            .group_by(value)
            for name, value in ((name, wc.c[f"segment_{i}"]) for i, name in enumerate(segment))
        ]
        if total:
            nothing = sa.cast(sa.null(), sa.Text)
            parts.append(
                sa.select(nothing.label("dimension"), nothing.label("segment"), *sums).select_from(wc)
            )
        stmt = sa.union_all(*parts)
    frame = pd.DataFrame(conn.execute(stmt).mappings().all())
    for side in ("c_", "p_"):
        _check_value_weights(
            plan, frame.rename(columns={f"{side}responses": "responses", f"{side}left_out": "left_out"})
        )
    return frame, plan


def _pair_parts(
    conn: Connection,
    current: SegmentFilter,
    previous: SegmentFilter,
    segment: str | Sequence[str] | None,
    scores: Sequence[str],
) -> tuple:
    """:func:`pair_sums`' per-customer rows with their weights and segments (``wc``), the sums over
    them (each labelled) and the weight plan."""
    start = datetime.combine(current.since, time.min)
    end_previous = datetime.combine(previous.until + timedelta(days=1), time.min)
    span = SegmentFilter(
        since=previous.since,
        until=current.until,
        waves=current.waves,
        customer=current.customer,
        quadrant=current.quadrant,
        exclude_flags=current.exclude_flags,
        weighting=current.weighting,
    )
    source = source_for(conn, current, previous)  # both fit: so does the span from one to the other
    in_current, in_previous = R.c.submitted_at >= start, R.c.submitted_at < end_previous
    is_current, is_previous = on_source(source, in_current), on_source(source, in_previous)
    keys = [on_source(source, k.element).label(k.name) for k in _cluster_keys()]
    stmt = (
        sa.select(
            *keys,
            *_level_one(source, "c_", scores, is_current),
            *_level_one(source, "p_", scores, is_previous),
        )
        .where(on_source(source, span.response_clause()), sa.or_(is_current, is_previous))
        .group_by(*[k.element for k in keys])
    )
    pc = stmt.subquery("per_customer_pair")
    plan = WeightPlan(current.weighting)
    joins: list = []
    if current.weighting.scheme == "raked":
        _check_rake_dimensions(conn, current.weighting.rake)
        # each period is raked to its own base: respondents per period and cell
        both = per_customer(
            span, sa.case((in_current, 1), else_=2), (), sa.or_(in_current, in_previous), source=source
        )
        cells = _respondent_cells(conn, both, current.weighting.rake, keyed=True)
        periods = {1: (current.since, current.until), 2: (previous.since, previous.until)}
        plan = WeightPlan(current.weighting, raking(conn, span, periods, cells))
        omega_c, j1 = _omega(plan, pc, keyed=True, period_key=1)
        omega_p, j2 = _omega(plan, pc, keyed=True, period_key=2)
        joins = j1 + j2
        wc = _weighted(pc, {"omega_c": omega_c, "omega_p": omega_p}, joins, segment)
        weight_c, weight_p = wc.c.omega_c, wc.c.omega_p
    else:
        omega, _ = _omega(plan, pc, keyed=False)
        wc = _weighted(pc, {"omega": omega}, [], segment)
        weight_c = weight_p = wc.c.omega if omega is not None else None
    cols_c, parts_c = _over_customers(wc, weight_c, scores, "c_")
    cols_p, parts_p = _over_customers(wc, weight_p, scores, "p_")
    cross = []
    for name in scores:
        used1, w1, s1 = parts_c[name]
        used2, w2, s2 = parts_p[name]
        w1, s1, w2, s2 = (sa.func.coalesce(x, 0.0) for x in (w1, s1, w2, s2))
        cross += [
            _count_if(sa.or_(used1, used2)).label(f"{name}_C"),
            _sum(s1 * s2).label(f"{name}_S1S2"),
            _sum(s1 * w2).label(f"{name}_S1W2"),
            _sum(w1 * s2).label(f"{name}_W1S2"),
            _sum(w1 * w2).label(f"{name}_W1W2"),
        ]
    totals = []
    for side, weight in (("c_", weight_c), ("p_", weight_p)):
        responses = wc.c[f"{side}responses"]
        left_out = (
            sa.literal(0)
            if weight is None
            else sa.func.coalesce(sa.func.sum(sa.case((weight.is_(None), responses))), 0)
        )
        totals += [
            _sum(responses).label(f"{side}responses"),
            _count_if(sa.and_(wc.c.cid.is_not(None), responses > 0)).label(f"{side}customers"),
            sa.func.coalesce(sa.func.sum(sa.case((wc.c.cid.is_(None), responses))), 0).label(
                f"{side}unmatched"
            ),
            left_out.label(f"{side}left_out"),
        ]
    return wc, [*totals, *cols_c, *cols_p, *cross], plan


def period_sums(m: Mapping, name: str) -> PeriodSums:
    """The :class:`PeriodSums` of one score from a row of :func:`pair_sums`."""
    now = GroupSums.from_row(m, (name,), "c_").scores[name]
    before = GroupSums.from_row(m, (name,), "p_").scores[name]

    def num(key):
        value = m.get(key)
        return 0.0 if value is None or value != value else float(value)

    return PeriodSums(
        int(num(f"{name}_C")),
        now,
        before,
        num(f"{name}_S1S2"),
        num(f"{name}_S1W2"),
        num(f"{name}_W1S2"),
        num(f"{name}_W1W2"),
    )


def month_key(freq: str = "month") -> ColumnElement:
    """The first day of the submission's month (or quarter), as a DATE on every engine."""
    if freq not in ("month", "quarter"):
        raise ValueError(f"freq must be 'month' or 'quarter', not {freq!r}")
    return sa.cast(sa.func.date_trunc(freq, R.c.submitted_at), sa.Date)


def period_bounds(key: date, freq: str) -> tuple[date, date]:
    """First and last day of the month or quarter starting on ``key``."""
    start = pd.Timestamp(key)
    end = start + pd.DateOffset(months=1 if freq == "month" else 3) - pd.Timedelta(days=1)
    return start.date(), end.date()


def periods_in_view(conn: Connection, flt: SegmentFilter, freq: str) -> dict[date, tuple[date, date]]:
    """Every month (or quarter) with a response in view → its first and last day (clipped to the filter)."""
    key = month_key(freq)
    keys = conn.execute(sa.select(key).where(flt.response_clause()).distinct()).scalars().all()
    out = {}
    for k in sorted(pd.Timestamp(k).date() for k in keys if k is not None):
        lo, hi = period_bounds(k, freq)
        out[k] = (max(lo, flt.since) if flt.since else lo, min(hi, flt.until) if flt.until else hi)
    return out


def is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
