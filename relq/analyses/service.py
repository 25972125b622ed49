"""Service quality from support tickets, and how it relates to satisfaction.

First-response and resolution times (median, 90th percentile) are computed in the database with
``percentile_cont``; resolution rates get Wilson intervals and satisfaction means t-intervals
from sums (relq.measures.stats).
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.measures import stats
from relq.store import schema
from relq.store.filters import SegmentFilter, customer_dimension

__all__ = ["RESPONSE_TIME_BANDS", "ticket_quality", "satisfaction_by_response_time"]

K, C, R = schema.tickets, schema.customers, schema.survey_responses

# (label, upper bound in hours) -- the customer's median first-response time
RESPONSE_TIME_BANDS = (
    ("under 1 h", 1.0),
    ("1–4 h", 4.0),
    ("4–12 h", 12.0),
    ("12–24 h", 24.0),
    ("over 24 h", None),
)


def _hours(later, earlier) -> sa.ColumnElement:
    return sa.cast(sa.extract("epoch", later - earlier), sa.Float) / 3600.0


def _quantile(expr, q: float) -> sa.ColumnElement:
    # q is one of RelQ's own constants, written into the SQL so every engine knows its type
    return sa.cast(sa.func.percentile_cont(sa.literal_column(repr(float(q)))).within_group(expr), sa.Float)


def ticket_quality(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), by: str | None = None
) -> pd.DataFrame:
    """Per segment: tickets, first-response and resolution hours (median, p90), resolution rate
    with its Wilson 95% interval (percent), for tickets opened in the filter's period."""
    first = _hours(K.c.first_response_at, K.c.opened_at)
    resolve = _hours(K.c.resolved_at, K.c.opened_at)
    groups = (
        [sa.func.coalesce(sa.cast(customer_dimension(by), sa.Text), "(not set)").label("segment")]
        if by
        else []
    )
    rows = conn.execute(
        sa.select(
            *groups,
            sa.func.count().label("tickets"),
            sa.func.count(sa.distinct(K.c.customer_id)).label("customers"),
            _quantile(first, 0.5).label("first_response_median_h"),
            _quantile(first, 0.9).label("first_response_p90_h"),
            _quantile(resolve, 0.5).label("resolution_median_h"),
            _quantile(resolve, 0.9).label("resolution_p90_h"),
            sa.func.count(K.c.resolved_at).label("resolved"),
        )
        .select_from(K.outerjoin(C, C.c.customer_id == K.c.customer_id))
        .where(flt.customer_clause(), flt.period_clause(K.c.opened_at))
        .group_by(*groups)
    )
    frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    if not by:
        frame.insert(0, "segment", "All tickets")
    frame = frame[frame["tickets"] > 0]
    if frame.empty:
        return frame.reset_index(drop=True)
    rates = [
        stats.wilson_interval(int(r), int(n))
        for r, n in zip(frame["resolved"], frame["tickets"], strict=True)
    ]
    frame["resolution_rate"] = [100 * w.estimate for w in rates]
    frame["rate_low"] = [100 * w.low for w in rates]
    frame["rate_high"] = [100 * w.high for w in rates]
    return frame.sort_values("tickets", ascending=False).reset_index(drop=True)


def satisfaction_by_response_time(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> pd.DataFrame:
    """Mean satisfaction index (t-interval) of survey responses, by the band of the customer's
    median first-response time over their tickets in the period: label, estimate, low, high, n,
    customers. Bands without responses are left out."""
    per_customer = (
        sa.select(
            K.c.customer_id,
            _quantile(_hours(K.c.first_response_at, K.c.opened_at), 0.5).label("hours"),
        )
        .where(K.c.first_response_at.is_not(None), flt.period_clause(K.c.opened_at))
        .group_by(K.c.customer_id)
        .subquery("typical")
    )
    cases = [(per_customer.c.hours < upper, i) for i, (_, upper) in enumerate(RESPONSE_TIME_BANDS) if upper]
    band = sa.case(*cases, else_=len(RESPONSE_TIME_BANDS) - 1).label("band")
    sat = sa.cast(R.c.satisfaction, sa.Float)
    rows = conn.execute(
        sa.select(
            band,
            sa.func.count(R.c.satisfaction).label("n"),
            sa.func.coalesce(sa.func.sum(sat), 0.0).label("total"),
            sa.func.coalesce(sa.func.sum(sat * sat), 0.0).label("total_sq"),
            sa.func.count(sa.distinct(R.c.customer_id)).label("customers"),
        )
        .select_from(R.join(per_customer, per_customer.c.customer_id == R.c.customer_id))
        .where(flt.response_clause(), R.c.satisfaction.is_not(None))
        .group_by(band)
        .order_by(band)
    ).all()
    records = []
    for b, n, total, total_sq, customers in rows:
        interval = stats.mean_interval(int(n), float(total), float(total_sq))
        label = RESPONSE_TIME_BANDS[int(b)][0]
        records.append((label, interval.estimate, interval.low, interval.high, interval.n, int(customers)))
    return pd.DataFrame(records, columns=["label", "estimate", "low", "high", "n", "customers"])
