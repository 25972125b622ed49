"""Data quality, counted where the data live: duplicates, missingness, straight-lining, speeders,
out-of-range values, unmatched responses and stale customers — with the rows behind each count.

Response checks honour the segment filter; nothing here removes a response from any number
(Methodology page → Data-quality flags): excluding flagged responses stays the user's visible choice.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq import store
from relq.analyses import retention
from relq.core.instrument import configured_instrument
from relq.ingest.quality import SCORE_RANGES, STRAIGHTLINE_MIN_ITEMS
from relq.measures.customer_sums import cell_stat_rows, cell_stats, on_source, save_cell_stats
from relq.measures.reliability import answer_recipe, answer_rows_ready
from relq.store import dialects, schema
from relq.store.filters import SegmentFilter

__all__ = [
    "CHECKS",
    "STALE_DAYS",
    "check_clause",
    "quality_checks",
    "quality_summary",
    "quality_rows",
    "missingness",
    "save_segment_quality",
]

R, A, C, K, AR = (
    schema.survey_responses,
    schema.survey_answers,
    schema.customers,
    schema.tickets,
    schema.answer_rows,
)
STALE_DAYS = 180
CHECKS: dict[str, str] = {
    "duplicates": "Responses flagged as duplicates at import (same respondent and answers in a wave, or "
    "within 7 days of their previous response).",
    "straight-lining": f"At least {STRAIGHTLINE_MIN_ITEMS} items answered, all with the same value.",
    "speeders": "Duration under half the median duration of the responses in view.",
    "out-of-range": "An NPS outside 0–10, CSAT outside 1–5, CES outside 1–7 or an item outside the scale.",
    "unmatched": "Responses that matched no customer (customer_id empty).",
    "stale customers": "Customers without a churn date and with no purchase, response or ticket in the last "
    "{days} days before the data's end.",
}
RESPONSE_COLUMNS = (
    "customer_id",
    "email",
    "wave",
    "duration",
    "nps",
    "csat",
    "ces",
    "comment",
    "trust",
    "commitment",
    "satisfaction",
    "rq",
)
CUSTOMER_COLUMNS = (
    "name",
    "email",
    "company",
    "region",
    "industry",
    "plan",
    "owner",
    "acquired_at",
    "annual_value",
)


def check_clause(check: str, flt: SegmentFilter, stored: bool = False):
    """The WHERE clause on survey_responses that selects the responses failing ``check``. With
    ``stored`` (:func:`relq.measures.reliability.answer_rows_ready`) straight-lining and out-of-scale
    answers are read from the stored answer rows, one per response, instead of every answer."""
    instrument = configured_instrument()
    if check == "duplicates":
        return R.c.flag_duplicate
    if check == "straight-lining" and stored:
        return R.c.response_id.in_(
            sa.select(AR.c.response_id).where(
                AR.c.answers >= STRAIGHTLINE_MIN_ITEMS, AR.c.lowest == AR.c.highest
            )
        )
    if check == "straight-lining":
        same = (
            sa.select(A.c.response_id)
            .where(A.c.value.is_not(None))
            .group_by(A.c.response_id)
            .having(
                sa.and_(
                    sa.func.count(A.c.value) >= STRAIGHTLINE_MIN_ITEMS,
                    sa.func.min(A.c.value) == sa.func.max(A.c.value),
                )
            )
        )
        return R.c.response_id.in_(same)
    if check == "speeders":
        median = (
            sa.select(sa.func.percentile_cont(0.5).within_group(R.c.duration))
            .where(flt.response_clause(), R.c.duration.is_not(None))
            .scalar_subquery()
        )
        return R.c.duration < 0.5 * median
    if check == "out-of-range":
        bad_items = (
            sa.select(AR.c.response_id).where(AR.c.out_of_scale > 0)
            if stored
            else sa.select(A.c.response_id).where(
                sa.or_(A.c.value < instrument.scale_min, A.c.value > instrument.scale_max)
            )
        )
        return sa.or_(
            *[sa.not_(R.c[name].between(lo, hi)) for name, (lo, hi) in SCORE_RANGES.items()],
            R.c.response_id.in_(bad_items),
        )
    if check == "unmatched":
        return R.c.customer_id.is_(None)
    raise ValueError(f"unknown check {check!r}; choose from {', '.join(CHECKS)}.")


def _stale(conn: Connection, flt: SegmentFilter, days: int):
    end = store.current_data_end(conn)
    cutoff = pd.Timestamp(end - timedelta(days=days)).to_pydatetime()
    last = retention.last_activities(conn)  # stored with the purchase summary while current
    source = C.outerjoin(last, last.c.customer_id == C.c.customer_id)
    where = sa.and_(
        flt.customer_clause(),
        sa.or_(C.c.churned_at.is_(None), C.c.churned_at > end),
        sa.or_(last.c.last_at.is_(None), last.c.last_at < cutoff),
    )
    return source, where, last


def _counted(flt: SegmentFilter, stored: bool, checks) -> list:
    """The one pass's columns: the responses (``_total``), those having each of ``RESPONSE_COLUMNS``
    and those failing each of ``checks`` (``check:<name>``)."""
    failing = [
        sa.func.coalesce(sa.func.sum(sa.case((check_clause(name, flt, stored), 1), else_=0)), 0).label(
            f"check:{name}"
        )
        for name in checks
    ]
    present = [sa.func.count(R.c[c]).label(c) for c in RESPONSE_COLUMNS]
    return [sa.func.count().label("_total"), *present, *failing]


_RESPONSE_CHECKS = tuple(name for name in CHECKS if name != "stale customers")
# Each cell's counts add up to a view's, but for speeders, whose line is half the view's own median.
_ADDITIVE_CHECKS = tuple(name for name in _RESPONSE_CHECKS if name != "speeders")


def _response_counts(conn: Connection, flt: SegmentFilter) -> dict:
    """One pass over the responses in view: how many (``_total``), how many have each of
    ``RESPONSE_COLUMNS`` and how many fail each response check (``check:<name>``) — added up from the
    stored segment cells for a view over the whole history that picks its customers by them
    (``SegmentFilter.picks_cells``) while they are current, with
    the answers each instrument item has (``answered:<item>``), the speeders then counted over the
    view's responses alone."""
    instrument = configured_instrument()
    if (
        flt.whole_history
        and flt.picks_cells()
        and store.derived_current(conn, _SEGMENT_QUALITY, recipe=answer_recipe(instrument))
    ):
        counts = {stat: int(value) for stat, value in cell_stats(conn, SQ, flt)}
        names = ["_total", *RESPONSE_COLUMNS, *(f"check:{name}" for name in _ADDITIVE_CHECKS)]
        names += [f"answered:{item}" for item in instrument.item_ids]
        out = {name: counts.get(name, 0) for name in names}
        speeders = sa.select(sa.func.count()).where(flt.response_clause(), check_clause("speeders", flt))
        return {**out, "check:speeders": conn.execute(speeders).scalar_one()}
    stored = answer_rows_ready(conn, instrument)
    query = sa.select(*_counted(flt, stored, _RESPONSE_CHECKS)).where(flt.response_clause())
    return dict(conn.execute(query).one()._mapping)


SQ = schema.segment_quality
_SEGMENT_QUALITY = "segment quality"


def save_segment_quality(engine) -> bool:
    """Rebuild the one pass's counts per segment cell (``segment_quality``: every count but the
    speeders, per combination of ``schema.SEGMENT_SUM_DIMENSIONS``), in one transaction, marked with
    the data version and the instrument the checks read. False on ClickHouse (nothing is built)."""
    if dialects.is_clickhouse(engine):
        return False
    instrument = configured_instrument()
    with store.rebuilding_derived(engine, _SEGMENT_QUALITY, (SQ,), answer_recipe(instrument)) as (conn, _end):
        everything = SegmentFilter()
        cells = [C.c[d].label(d) for d in schema.SEGMENT_SUM_DIMENSIONS]
        counted = _counted(everything, answer_rows_ready(conn, instrument), _ADDITIVE_CHECKS)
        frame = store.read_frame(
            conn,
            sa.select(*cells, *counted)
            .select_from(R.outerjoin(C, C.c.customer_id == R.c.customer_id))
            .group_by(*cells),
        )
        save_cell_stats(
            conn, SQ, pd.concat([cell_stat_rows(frame), _answered_cells(conn, instrument, cells)])
        )
    return True


def _answered_cells(conn: Connection, instrument, cells: list) -> pd.DataFrame:
    """Per segment cell and instrument item, the answers given (``stat`` "answered:<item>"): the
    stored answer rows' non-empty columns, and the few answers outside the scale they leave empty,
    counted from the answers of the responses having any (:func:`_answered_from_rows`, per cell);
    without current answer rows, every answer."""
    dims = [c.name for c in cells]
    if answer_rows_ready(conn, instrument):
        on_scale = store.read_frame(
            conn,
            sa.select(
                *cells,
                *(sa.func.count(AR.c[f"c{i}"]).label(item) for i, item in enumerate(instrument.item_ids)),
            )
            .select_from(AR.outerjoin(C, C.c.customer_id == AR.c.customer_id))
            .where(AR.c.submitted_at.is_not(None))  # an answer whose response is stored
            .group_by(*cells),
        ).melt(id_vars=dims, var_name="item", value_name="value")
        lo, hi = instrument.scale_min, instrument.scale_max
        odd = sa.and_(AR.c.out_of_scale > 0, AR.c.submitted_at.is_not(None))
        rows = sa.select(AR.c.response_id, AR.c.customer_id).where(odd).subquery("odd")
        outside = (
            sa.select(*cells, A.c.item_id.label("item"), sa.func.count().label("value"))
            .select_from(
                A.join(rows, rows.c.response_id == A.c.response_id).outerjoin(
                    C, C.c.customer_id == rows.c.customer_id
                )
            )
            .where(A.c.item_id.in_(instrument.item_ids), sa.or_(A.c.value < lo, A.c.value > hi))
        )
        parts = [on_scale, store.read_frame(conn, outside.group_by(*cells, A.c.item_id))]
    else:
        every = (
            sa.select(*cells, A.c.item_id.label("item"), sa.func.count(A.c.value).label("value"))
            .select_from(
                A.join(R, R.c.response_id == A.c.response_id).outerjoin(C, C.c.customer_id == R.c.customer_id)
            )
            .where(A.c.item_id.in_(instrument.item_ids))
        )
        parts = [store.read_frame(conn, every.group_by(*cells, A.c.item_id))]
    answered = pd.concat(parts).astype({d: object for d in dims})  # NULL dimensions group together
    answered = answered.groupby([*dims, "item"], dropna=False, as_index=False)["value"].sum()
    return answered.assign(stat="answered:" + answered.pop("item"))[[*dims, "stat", "value"]]


def quality_checks(
    conn: Connection, flt: SegmentFilter, stale_days: int = STALE_DAYS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Data quality page's two tables — :func:`quality_summary` and :func:`missingness` — from one
    pass over the responses in view."""
    counts = _response_counts(conn, flt)
    return quality_summary(conn, flt, stale_days, counts), missingness(conn, flt, counts)


def quality_summary(
    conn: Connection, flt: SegmentFilter, stale_days: int = STALE_DAYS, counts: dict | None = None
) -> pd.DataFrame:
    """check, count, out_of, share (%), what it means — one row per check (``counts``:
    :func:`_response_counts` of this view, read when None)."""
    counts = _response_counts(conn, flt) if counts is None else counts
    total = counts["_total"]
    source, where, _ = _stale(conn, flt, stale_days)
    customers = conn.execute(
        sa.select(sa.func.count()).select_from(C).where(flt.customer_clause())
    ).scalar_one()
    stale = conn.execute(sa.select(sa.func.count()).select_from(source).where(where)).scalar_one()
    records = [
        {
            "check": name,
            "count": int(counts[f"check:{name}"]),
            "out_of": int(total),
            "unit": "responses",
            "meaning": CHECKS[name],
        }
        for name in CHECKS
        if name != "stale customers"
    ]
    records.append(
        {
            "check": "stale customers",
            "count": int(stale),
            "out_of": int(customers),
            "unit": "customers",
            "meaning": CHECKS["stale customers"].format(days=stale_days),
        }
    )
    frame = pd.DataFrame(records)
    frame["share"] = 100 * frame["count"] / frame["out_of"].where(frame["out_of"] > 0)
    return frame[["check", "count", "out_of", "unit", "share", "meaning"]]


def quality_rows(
    conn: Connection, flt: SegmentFilter, check: str, stale_days: int = STALE_DAYS, limit: int = 5000
) -> pd.DataFrame:
    """The rows behind a check (at most ``limit``): responses, or customers for stale customers."""
    if check == "stale customers":
        source, where, last = _stale(conn, flt, stale_days)
        rows = conn.execute(
            sa.select(
                C.c.customer_id,
                C.c.name,
                C.c.email,
                C.c.company,
                C.c.region,
                C.c.plan,
                C.c.acquired_at,
                last.c.last_at.label("last_activity"),
            )
            .select_from(source)
            .where(where)
            .order_by(last.c.last_at.asc().nulls_first(), C.c.customer_id)
            .limit(limit)
        )
    else:
        rows = conn.execute(
            sa.select(
                R.c.response_id,
                R.c.customer_id,
                R.c.email,
                R.c.submitted_at,
                R.c.wave,
                R.c.duration,
                R.c.nps,
                R.c.csat,
                R.c.ces,
                R.c.comment,
                R.c.import_id,
            )
            .where(
                flt.response_clause(),
                check_clause(check, flt, answer_rows_ready(conn, configured_instrument())),
            )
            .order_by(R.c.submitted_at, R.c.response_id)
            .limit(limit)
        )
    return pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))


def _answered_from_rows(conn: Connection, flt: SegmentFilter, instrument) -> dict[str, int]:
    """Answers given to each item of ``instrument`` by the responses in view, from the stored answer
    rows (which carry what the filter reads): the answers on the scale are the row's non-empty
    columns; the few outside it, which the rows leave empty, are counted from the answers of the
    responses that have any."""
    in_view = sa.and_(AR.c.submitted_at.is_not(None), on_source(AR, flt.response_clause()))
    k = len(instrument.item_ids)
    row = conn.execute(
        sa.select(
            *(sa.func.count(AR.c[f"c{i}"]) for i in range(k)),
            sa.func.coalesce(sa.func.sum(AR.c.out_of_scale), 0),
        ).where(in_view)
    ).one()
    answered = {item: int(row[i]) for i, item in enumerate(instrument.item_ids)}
    if row[k]:
        lo, hi = instrument.scale_min, instrument.scale_max
        outside = conn.execute(
            sa.select(A.c.item_id, sa.func.count())
            .where(
                A.c.response_id.in_(sa.select(AR.c.response_id).where(in_view, AR.c.out_of_scale > 0)),
                A.c.item_id.in_(instrument.item_ids),
                sa.or_(A.c.value < lo, A.c.value > hi),
            )
            .group_by(A.c.item_id)
        ).all()
        for item, n in outside:
            answered[item] += int(n)
    return answered


def missingness(conn: Connection, flt: SegmentFilter, counts: dict | None = None) -> pd.DataFrame:
    """Missing values per column of the responses in view, of their item answers and of the
    customers in view: table, column, missing, total, share (%) (``counts``:
    :func:`_response_counts` of this view, read when None)."""
    instrument = configured_instrument()
    r = _response_counts(conn, flt) if counts is None else counts
    if all(f"answered:{item}" in r for item in instrument.item_ids):  # the stored cells counted them
        answered = {item: r[f"answered:{item}"] for item in instrument.item_ids}
    elif answer_rows_ready(conn, instrument):
        answered = _answered_from_rows(conn, flt, instrument)
    else:
        answered = dict(
            conn.execute(
                sa.select(A.c.item_id, sa.func.count(A.c.value))
                .select_from(A.join(R, A.c.response_id == R.c.response_id))
                .where(flt.response_clause())
                .group_by(A.c.item_id)
            ).all()
        )
    c = (
        conn.execute(
            sa.select(
                sa.func.count().label("_total"),
                *[sa.func.count(C.c[col]).label(col) for col in CUSTOMER_COLUMNS],
            ).where(flt.customer_clause())
        )
        .one()
        ._mapping
    )
    records = [("survey_responses", col, r["_total"] - r[col], r["_total"]) for col in RESPONSE_COLUMNS]
    records += [
        ("survey_answers", item, r["_total"] - int(answered.get(item, 0)), r["_total"])
        for item in instrument.item_ids
    ]
    records += [("customers", col, c["_total"] - c[col], c["_total"]) for col in CUSTOMER_COLUMNS]
    frame = pd.DataFrame(records, columns=["table", "column", "missing", "total"])
    frame[["missing", "total"]] = frame[["missing", "total"]].astype(int)
    frame["share"] = 100 * frame["missing"] / frame["total"].where(frame["total"] > 0)
    return frame
