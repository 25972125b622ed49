"""Each customer's latest survey response and the quadrant it places them in, as SQL.

The building block shared by the quadrant filter (:mod:`relq.store.filters`) and the gap
quadrants analysis (:mod:`relq.analyses.quadrants`). Unit: the customer; the response counted is
the customer's latest in the view having both pillars of the pair. After every change of the data
the latest response of each customer and pillar pair over the whole history is also stored
(``latest_pairs``), and each customer's latest comment (``latest_comments``, for customer lists),
which a view without a period, wave, quality-flag or theme restriction reads.
"""

from __future__ import annotations

from itertools import combinations

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from relq.store import database, dialects, schema
from relq.store.schema import PILLARS

__all__ = [
    "QUADRANT_KEYS",
    "DEFAULT_THRESHOLD",
    "check_pair",
    "quadrant_levels",
    "latest_responses",
    "quadrant_key",
    "save_latest_pairs",
    "latest_pairs_fit",
    "latest_pairs_ready",
    "stored_latest",
    "latest_comments",
]

R = schema.survey_responses
L = schema.latest_pairs
LC = schema.latest_comments
_LATEST = "latest pairs"

QUADRANT_KEYS: tuple[str, ...] = ("x_high_y_high", "x_high_y_low", "x_low_y_high", "x_low_y_low")
DEFAULT_THRESHOLD = 50.0


def check_pair(x: str, y: str) -> None:
    for name in (x, y):
        if name not in PILLARS:
            raise ValueError(f"{name!r} is not a pillar; choose one of {', '.join(PILLARS)}.")
    if x == y:
        raise ValueError(f"The quadrant axes must be two different pillars (both are {x}).")


def quadrant_levels(key: str) -> tuple[str, str]:
    if key not in QUADRANT_KEYS:
        raise ValueError(f"{key!r} is not a quadrant; choose one of {', '.join(QUADRANT_KEYS)}.")
    _, x_level, _, y_level = key.split("_")
    return x_level, y_level


def latest_responses(
    wanted: ColumnElement,
    x: str = "trust",
    y: str = "satisfaction",
    name: str = "latest",
    details: bool = True,
) -> sa.Subquery:
    """Each customer's latest response among those matching ``wanted`` (a WHERE clause on
    survey_responses) having both pillars: one row per customer.

    Columns: customer_id, response_id, submitted_at, x_score, y_score, nps, csat, comment;
    with ``details=False`` only customer_id, x_score and y_score.
    Ties on ``submitted_at``: the greater ``response_id`` wins.

    Each customer's latest time is found first (a grouped max), and only the responses at that
    time are ranked (ties are rare): twice as fast as ranking every response on the
    1M-response benchmark tier (bench/RESULTS.md), the same on every engine.
    """
    check_pair(x, y)
    carried = [R.c.response_id, R.c.submitted_at, R.c.nps, R.c.csat, R.c.comment] if details else []
    return _latest(wanted, x, y, name, [R.c[x].label("x_score"), R.c[y].label("y_score"), *carried])


def _latest(wanted: ColumnElement, x: str, y: str, name: str, columns: list) -> sa.Subquery:
    """customer_id and ``columns`` of each customer's latest response among ``wanted`` having
    ``x`` and ``y`` (see :func:`latest_responses`)."""
    wanted = sa.and_(wanted, R.c.customer_id.is_not(None), R.c[x].is_not(None), R.c[y].is_not(None))
    last = (
        sa.select(R.c.customer_id, sa.func.max(R.c.submitted_at).label("at"))
        .where(wanted)
        .group_by(R.c.customer_id)
        .subquery(f"{name}_last")
    )
    ranked = (
        sa.select(
            R.c.customer_id,
            *columns,
            sa.func.row_number()
            .over(partition_by=R.c.customer_id, order_by=R.c.response_id.desc())
            .label("recency"),
        )
        .select_from(
            R.join(last, sa.and_(R.c.customer_id == last.c.customer_id, R.c.submitted_at == last.c.at))
        )
        .where(wanted)
        .subquery(f"{name}_ranked")
    )
    return (
        sa.select(*[c for c in ranked.c if c.name != "recency"]).where(ranked.c.recency == 1).subquery(name)
    )


def quadrant_key(x_score: ColumnElement, y_score: ColumnElement, x_threshold: float, y_threshold: float):
    """SQL CASE giving the quadrant key; "high" means index ≥ threshold."""
    x_high = x_score >= float(x_threshold)
    y_high = y_score >= float(y_threshold)
    return sa.case(
        (sa.and_(x_high, y_high), "x_high_y_high"),
        (x_high, "x_high_y_low"),
        (y_high, "x_low_y_high"),
        else_="x_low_y_low",
    )


# --------------------------------------------------------------------------- stored latest pairs


def pair_name(x: str, y: str) -> str:
    """The stored name of a pillar pair, either axis order: the two in PILLARS order."""
    a, b = sorted((x, y), key=PILLARS.index)
    return f"{a}|{b}"


def save_latest_pairs(engine) -> bool:
    """Rebuild each customer's latest response for every pillar pair over the whole history
    (``latest_pairs``) and each customer's latest comment (``latest_comments``), in one transaction
    on the database side, marked with the data version. False on ClickHouse (nothing is built)."""
    if dialects.is_clickhouse(engine):
        return False
    details = [R.c.response_id, R.c.submitted_at, *(R.c[p] for p in PILLARS), R.c.nps, R.c.csat, R.c.comment]
    names = ["pair", "customer_id", *(c.name for c in details)]
    with database.rebuilding_derived(engine, _LATEST, (L, LC)) as (conn, _end):
        for x, y in combinations(PILLARS, 2):
            latest = _latest(sa.true(), x, y, "latest", details)
            rows = sa.select(sa.literal(pair_name(x, y), sa.Text), *(latest.c[n] for n in names[1:]))
            conn.execute(L.insert().from_select(names, rows))
        ranked = _ranked_comments(sa.true())
        conn.execute(LC.insert().from_select(["customer_id", "submitted_at", "comment"], ranked))
    return True


def latest_pairs_fit(flt) -> bool:
    """Whether the stored latest pairs can stand in for the responses of view ``flt`` (a
    :class:`relq.store.filters.SegmentFilter`): the whole history, every wave and quality flag, no
    comment theme — only customers' segments and quadrants, which pick whole customers."""
    return flt.whole_history


def latest_pairs_ready(conn) -> bool:
    """Whether the stored latest pairs were built from the current data version (never on ClickHouse)."""
    return database.derived_current(conn, _LATEST)


def stored_latest(flt, x: str, y: str, name: str = "latest", details: bool = True) -> sa.Subquery:
    """:func:`latest_responses` of view ``flt`` read from the stored latest pairs (the same
    columns); only when :func:`latest_pairs_fit` and :func:`latest_pairs_ready`."""
    check_pair(x, y)
    carried = [L.c.response_id, L.c.submitted_at, L.c.nps, L.c.csat, L.c.comment] if details else []
    return (
        sa.select(L.c.customer_id, L.c[x].label("x_score"), L.c[y].label("y_score"), *carried)
        .where(L.c.pair == pair_name(x, y), flt.response_clause(L))
        .subquery(name)
    )


def _ranked_comments(wanted: ColumnElement) -> sa.Select:
    """customer_id, submitted_at and comment of each customer's latest non-empty comment among the
    responses matching ``wanted``; ties on ``submitted_at``: the greater ``response_id`` wins."""
    ranked = (
        sa.select(
            R.c.customer_id,
            R.c.submitted_at,
            R.c.comment,
            sa.func.row_number()
            .over(partition_by=R.c.customer_id, order_by=(R.c.submitted_at.desc(), R.c.response_id.desc()))
            .label("recency"),
        )
        .where(wanted, R.c.customer_id.is_not(None), sa.func.trim(R.c.comment) != "")
        .subquery("commented")
    )
    return sa.select(ranked.c.customer_id, ranked.c.submitted_at, ranked.c.comment).where(
        ranked.c.recency == 1
    )


def latest_comments(conn, flt) -> sa.Subquery:
    """Each customer's latest non-empty comment in view ``flt`` (customer_id, latest_comment): from
    the stored latest comments when they fit the view and are of the current data (as
    :func:`stored_latest`), else ranked from the responses."""
    if latest_pairs_fit(flt) and latest_pairs_ready(conn):
        stored = sa.select(LC.c.customer_id, LC.c.comment.label("latest_comment")).where(
            flt.response_clause(LC)
        )
        return stored.subquery("latest_comment")
    ranked = _ranked_comments(flt.response_clause()).subquery("ranked_comment")
    return sa.select(ranked.c.customer_id, ranked.c.comment.label("latest_comment")).subquery(
        "latest_comment"
    )
