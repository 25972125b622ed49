"""Retention and churn where the data live: customer lifetimes, cohorts, rates and the at-risk list.

Everything starts from one SQL building block, :func:`lifetimes`: per customer (anyone in
``customers`` *or* in ``transactions`` -- a shop that only exports orders still has customers)

- ``start_day`` = ``acquired_at``, else the day of the first purchase (Methodology page → Cohorts);
- ``churned`` and ``end_day`` by one of two rules, chosen once for the whole store:

  * **contract** (some customer has ``churned_at``): churned when ``churned_at`` ≤ the data's
    end; ``end_day`` = ``churned_at``, else the data's end (right-censored);
  * **inactivity** (no ``churned_at`` anywhere -- orders only): churned when the last purchase
    is at least ``inactive_days`` (default 2 × the at-risk days = the "lapsed" lifecycle stage)
    before the data's end; ``end_day`` = last purchase + ``inactive_days``, the day the customer
    became lapsed, so a period's churn is the churn recognised in it.

Cohorts, retention rates, survival and the at-risk list all read this one table, so their
numbers agree with each other. Queries return small frames of counts; relq.measures.stats and lifelines
(relq.analyses.survival) do the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from relq import store
from relq.core.settings import load_settings
from relq.measures import stats
from relq.store import schema
from relq.store.filters import SegmentFilter, customer_dimension

__all__ = [
    "BASES",
    "LIFECYCLE_DEFINITIONS",
    "VALUE_TIER_DEFINITIONS",
    "AT_RISK_REASONS",
    "Basis",
    "churn_basis",
    "lifetimes",
    "cohort_activity",
    "cohort_report",
    "retention_rates",
    "at_risk_customers",
    "derived_segments",
]

C, T, R = schema.customers, schema.transactions, schema.survey_responses

BASES = ("auto", "contract", "inactivity")

# Kept word for word in line with relq.store.refresh_derived, which computes them.
LIFECYCLE_DEFINITIONS = {
    "new": "joined (acquired, else first purchase) in the last 90 days",
    "active": "purchased within the last {days} days",
    "at risk": "last purchase {days}–{days2} days ago",
    "lapsed": "no purchase for more than {days2} days, or never purchased",
    "churned": "has a churn date (churned_at) on or before the data's end",
}
VALUE_TIER_DEFINITIONS = {
    "Top 20%": "the fifth of customers with the most revenue in the 12 months before the data's end",
    "Middle 50%": "the next half of customers by that revenue",
    "Bottom 30%": "the rest of the customers who bought in those 12 months",
    "No purchases": "no revenue in those 12 months",
}
AT_RISK_REASONS = ("no recent purchase", "falling RQ", "detractor")


@dataclass(frozen=True)
class Basis:
    """How churn is read: from ``churned_at`` (contract) or from inactivity, and the data's end."""

    kind: str  # "contract" | "inactivity"
    end: date
    inactive_days: int

    def describe(self) -> str:
        if self.kind == "contract":
            return (
                "Churn is read from the CRM's churn dates (churned_at); customers still active are "
                f"counted up to the data's end, {self.end:%d %b %Y}."
            )
        return (
            "There are no churn dates in the CRM data, so a customer counts as churned once "
            f"{self.inactive_days} days pass without a purchase (the 'lapsed' stage), on that day; "
            f"the data end on {self.end:%d %b %Y}."
        )


def churn_basis(conn: Connection, basis: str = "auto", inactive_days: int | None = None) -> Basis:
    """Resolve ``basis`` ("auto" picks contract when any customer has ``churned_at``)."""
    if basis not in BASES:
        raise ValueError(f"basis must be one of {', '.join(BASES)}, not {basis!r}.")
    inactive_days = int(inactive_days or 2 * load_settings().at_risk_days)
    if inactive_days < 1:
        raise ValueError(f"inactive_days must be at least 1, got {inactive_days}.")
    if basis == "auto":
        has_churn = conn.execute(sa.select(sa.func.count(C.c.churned_at))).scalar_one() > 0
        basis = "contract" if has_churn else "inactivity"
    return Basis(basis, store.data_end(conn), inactive_days)


def _purchases(end: date) -> sa.Subquery:
    year_ago = end - timedelta(days=365)
    return (
        sa.select(
            T.c.customer_id,
            sa.func.min(T.c.occurred_at).label("first_at"),
            sa.func.max(T.c.occurred_at).label("last_at"),
            sa.func.sum(T.c.amount).label("revenue"),
            sa.func.sum(
                sa.case((T.c.occurred_at >= sa.literal(year_ago, sa.DateTime), T.c.amount), else_=0.0)
            ).label("revenue_12m"),
        )
        .group_by(T.c.customer_id)
        .subquery("purchases")
    )


def lifetimes(
    flt: SegmentFilter, basis: Basis, *, acquired_in_period: bool = True, by: str | None = None
) -> Select:
    """Per customer: customer_id, start_day, last_day, end_day, churned (0/1), revenue, revenue_12m
    and CRM fields (owner, company, annual_value; NULL for customers known only from purchases).

    The filter's segment dimensions apply through ``customers``; with ``acquired_in_period`` its
    since/until select customers whose ``start_day`` falls in the period. ``by`` adds a ``segment``
    column (a customer dimension; "All customers" without it).
    """
    p = _purchases(basis.end)
    customer_id = sa.func.coalesce(C.c.customer_id, p.c.customer_id)
    start_day = sa.func.coalesce(C.c.acquired_at, sa.cast(p.c.first_at, sa.Date))
    last_day = sa.cast(p.c.last_at, sa.Date)
    end = sa.literal(basis.end, sa.Date)
    if basis.kind == "contract":
        churned = sa.and_(C.c.churned_at.is_not(None), C.c.churned_at <= end)
        end_day = sa.case((churned, C.c.churned_at), else_=end)
    else:
        lapsed_on = sa.func.coalesce(last_day, start_day) + sa.literal(basis.inactive_days, sa.Integer)
        churned = lapsed_on <= end
        end_day = sa.case((churned, lapsed_on), else_=end)
    columns = [
        customer_id.label("customer_id"),
        start_day.label("start_day"),
        last_day.label("last_day"),
        sa.cast(end_day, sa.Date).label("end_day"),
        sa.case((churned, 1), else_=0).label("churned"),
        sa.func.coalesce(p.c.revenue, 0.0).label("revenue"),
        sa.func.coalesce(p.c.revenue_12m, 0.0).label("revenue_12m"),
        C.c.owner,
        C.c.company,
        C.c.region,
        C.c.plan,
        C.c.annual_value,
    ]
    segment = (
        sa.func.coalesce(sa.cast(customer_dimension(by), sa.Text), "(not set)")
        if by
        else sa.literal("All customers", sa.Text)
    )
    columns.append(segment.label("segment"))
    stmt = (
        sa.select(*columns)
        .select_from(C.join(p, C.c.customer_id == p.c.customer_id, full=True))
        .where(flt.customer_clause(), start_day.is_not(None), start_day <= end)
    )
    if acquired_in_period and flt.since:
        stmt = stmt.where(start_day >= sa.literal(flt.since, sa.Date))
    if acquired_in_period and flt.until:
        stmt = stmt.where(start_day <= sa.literal(flt.until, sa.Date))
    return stmt


def _month_index(expr) -> sa.ColumnElement:
    """Months since year 0: year·12 + month − 1 (the same integer on every engine)."""
    return (
        sa.cast(sa.extract("year", expr), sa.Integer) * 12
        + sa.cast(sa.extract("month", expr), sa.Integer)
        - 1
    )


def _month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# --------------------------------------------------------------------------- cohorts


def cohort_activity(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), basis: Basis | None = None
) -> pd.DataFrame:
    """Cohort × months since acquisition: cohort, k, size, active, share (Methodology page → Cohorts).

    ``active`` counts the cohort's customers with at least one purchase in calendar month
    cohort+k; k runs from 0 to the data's last month for every cohort (zeros included).
    """
    basis = basis or churn_basis(conn)
    life = lifetimes(flt, basis).cte("life")
    cohort = _month_index(life.c.start_day)
    # One round trip: cohort sizes (k = -1) and active counts together. Each customer's
    # distinct purchase months are taken first, so the join sees far fewer rows than every
    # purchase (1.6× faster on the 4.9M-purchase benchmark tier, bench/RESULTS.md).
    months = (
        sa.select(T.c.customer_id, _month_index(T.c.occurred_at).label("m")).distinct().subquery("months")
    )
    k = months.c.m - cohort
    size_rows = sa.select(
        cohort.label("cohort"), sa.literal(-1).label("k"), sa.func.count().label("n")
    ).group_by(cohort)
    active_rows = (
        sa.select(cohort.label("cohort"), k.label("k"), sa.func.count().label("n"))
        .select_from(life.join(months, months.c.customer_id == life.c.customer_id))
        .where(k >= 0)
        .group_by(cohort, k)
    )
    rows = conn.execute(sa.union_all(size_rows, active_rows)).all()
    sizes = [(c, n) for c, kk, n in rows if int(kk) == -1]
    if not sizes:
        return pd.DataFrame(columns=["cohort", "k", "size", "active", "share"])
    active = [(c, kk, n) for c, kk, n in rows if int(kk) >= 0]
    last = basis.end.year * 12 + basis.end.month - 1
    grid = pd.DataFrame(
        [(int(c), kk, int(n)) for c, n in sizes for kk in range(last - int(c) + 1)],
        columns=["cohort_i", "k", "size"],
    )
    counts = pd.DataFrame(
        [(int(c), int(kk), int(n)) for c, kk, n in active], columns=["cohort_i", "k", "active"]
    )
    frame = grid.merge(counts, on=["cohort_i", "k"], how="left").fillna({"active": 0})
    frame["active"] = frame["active"].astype(int)
    frame["share"] = frame["active"] / frame["size"]
    frame = frame.sort_values(["cohort_i", "k"]).reset_index(drop=True)
    frame.insert(0, "cohort", frame.pop("cohort_i").map(_month_label))
    return frame


def cohort_report(frame: pd.DataFrame) -> dict:
    """The report's ``cohorts`` section: ``{"2024-01": {"size": n, "active_share": [...]}}``."""
    return {
        cohort: {"size": int(part["size"].iloc[0]), "active_share": [float(x) for x in part["share"]]}
        for cohort, part in frame.groupby("cohort", sort=True)
    }


# --------------------------------------------------------------------------- rates


def retention_rates(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), freq: str = "month", basis: Basis | None = None
) -> pd.DataFrame:
    """Retention and churn per month or quarter with Wilson 95% intervals (percent).

    For a period: at_start = customers who started before it and had not churned by its first
    day; at_end = customers who started by its last day and had not churned by then; new =
    started in it. Retention = (at_end − new) / at_start (Methodology page → Retention rate; new
    customers who churn within the period pull it down). Churn = customers of at_start who
    churned in the period / at_start. Only whole periods up to the data's end are listed.
    The SQL returns counts by (start month, end month, churned) only.
    """
    if freq not in ("month", "quarter"):
        raise ValueError(f"freq must be 'month' or 'quarter', not {freq!r}")
    basis = basis or churn_basis(conn)
    life = lifetimes(SegmentFilter(customer=flt.customer, quadrant=flt.quadrant), basis).subquery("life")
    start_m, end_m = _month_index(life.c.start_day), _month_index(life.c.end_day)
    rows = conn.execute(
        sa.select(start_m.label("s"), end_m.label("e"), life.c.churned, sa.func.count().label("n")).group_by(
            start_m, end_m, life.c.churned
        )
    ).all()
    columns = ["period", "metric", "estimate", "low", "high", "n", "at_start", "at_end", "new", "churned"]
    if not rows:
        return pd.DataFrame(columns=columns)
    counts = pd.DataFrame(rows, columns=["s", "e", "churned", "n"]).astype(int)
    step = 1 if freq == "month" else 3
    counts["s"] //= step
    counts["e"] //= step
    last_whole = (basis.end + timedelta(days=1)).year * 12 + (basis.end + timedelta(days=1)).month - 1
    last_whole = (last_whole // step) - 1  # the last period that ended on or before the data's end
    records = []
    for period in range(int(counts["s"].min()), last_whole + 1):
        gone = (counts["churned"] == 1) & (counts["e"] < period)
        at_start = counts.loc[(counts["s"] < period) & ~gone, "n"].sum()
        ended = (counts["churned"] == 1) & (counts["e"] <= period)
        at_end = counts.loc[(counts["s"] <= period) & ~ended, "n"].sum()
        new = counts.loc[counts["s"] == period, "n"].sum()
        churned = counts.loc[
            (counts["s"] < period) & (counts["churned"] == 1) & (counts["e"] == period), "n"
        ].sum()
        month = period * step
        start = pd.Timestamp(year=month // 12, month=month % 12 + 1, day=1)
        if since := flt.since:
            if start + pd.DateOffset(months=step) <= pd.Timestamp(since):
                continue
        if flt.until and start > pd.Timestamp(flt.until):
            continue
        if at_start == 0:
            continue
        retained = int(min(max(at_end - new, 0), at_start))
        for metric, successes in (("retention", retained), ("churn", int(churned))):
            w = stats.wilson_interval(successes, int(at_start))
            records.append(
                (
                    start,
                    metric,
                    100 * w.estimate,
                    100 * w.low,
                    100 * w.high,
                    int(at_start),
                    int(at_start),
                    int(at_end),
                    int(new),
                    int(churned),
                )
            )
    return pd.DataFrame(records, columns=columns)


# --------------------------------------------------------------------------- at risk


def _latest_answers(flt: SegmentFilter) -> sa.Subquery:
    """Per customer: the latest two RQ values and the latest NPS answer among filtered responses."""
    rq_rank = sa.func.row_number().over(
        partition_by=R.c.customer_id,
        order_by=(sa.case((R.c.rq.is_(None), 1), else_=0), R.c.submitted_at.desc(), R.c.response_id.desc()),
    )
    nps_rank = sa.func.row_number().over(
        partition_by=R.c.customer_id,
        order_by=(sa.case((R.c.nps.is_(None), 1), else_=0), R.c.submitted_at.desc(), R.c.response_id.desc()),
    )
    ranked = (
        sa.select(R.c.customer_id, R.c.rq, R.c.nps, rq_rank.label("rq_rank"), nps_rank.label("nps_rank"))
        .where(flt.response_clause(), R.c.customer_id.is_not(None))
        .subquery("ranked")
    )
    return (
        sa.select(
            ranked.c.customer_id,
            sa.func.max(sa.case((ranked.c.rq_rank == 1, ranked.c.rq))).label("rq_last"),
            sa.func.max(sa.case((ranked.c.rq_rank == 2, ranked.c.rq))).label("rq_previous"),
            sa.func.max(sa.case((ranked.c.nps_rank == 1, ranked.c.nps))).label("nps_last"),
        )
        .group_by(ranked.c.customer_id)
        .subquery("answers")
    )


def at_risk_customers(
    conn: Connection,
    flt: SegmentFilter = SegmentFilter(),
    days: int | None = None,
    rq_drop: float = 5.0,
    basis: Basis | None = None,
) -> pd.DataFrame:
    """Active customers at risk, each with the reasons why, value and owner (Methodology page → At risk).

    Reasons: no purchase in the last ``days`` days (default the at_risk_days setting; a customer
    who never bought counts from the day they joined); RQ fell by at least ``rq_drop`` points
    between their last two responses; their latest NPS answer is a detractor (0–6). Active means
    not churned under :func:`churn_basis`. Sorted by annual value, then 12-month revenue.
    """
    days = int(days or load_settings().at_risk_days)
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}.")
    basis = basis or churn_basis(conn)
    life = lifetimes(SegmentFilter(customer=flt.customer, quadrant=flt.quadrant), basis).subquery("life")
    answers = _latest_answers(flt)
    end = sa.literal(basis.end, sa.Date)
    since_purchase = end - sa.func.coalesce(life.c.last_day, life.c.start_day)
    quiet = since_purchase >= days
    falling = answers.c.rq_last <= answers.c.rq_previous - float(rq_drop)
    detractor = answers.c.nps_last <= 6
    rows = conn.execute(
        sa.select(
            life.c.customer_id,
            life.c.company,
            life.c.owner,
            life.c.region,
            life.c.plan,
            life.c.annual_value,
            life.c.revenue_12m,
            life.c.last_day.label("last_purchase"),
            since_purchase.label("days_since_purchase"),
            answers.c.rq_previous,
            answers.c.rq_last,
            answers.c.nps_last,
            sa.case((quiet, 1), else_=0).label("quiet"),
            sa.case((falling, 1), else_=0).label("falling"),
            sa.case((detractor, 1), else_=0).label("detractor"),
        )
        .select_from(life.outerjoin(answers, answers.c.customer_id == life.c.customer_id))
        .where(life.c.churned == 0, sa.or_(quiet, falling, detractor))
    )
    frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    columns = [
        "customer_id",
        "company",
        "owner",
        "region",
        "plan",
        "reasons",
        "annual_value",
        "revenue_12m",
        "last_purchase",
        "days_since_purchase",
        "rq_previous",
        "rq_last",
        "nps_last",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    for name in ("annual_value", "revenue_12m", "rq_previous", "rq_last", "nps_last", "days_since_purchase"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce")  # all-NULL columns arrive as objects
    parts = pd.DataFrame(index=frame.index)
    never = frame["last_purchase"].isna()
    parts["quiet"] = np.where(
        frame["quiet"] == 1,
        np.where(
            never,
            "no purchase since joining " + frame["days_since_purchase"].astype(int).astype(str) + " days ago",
            "no purchase in " + frame["days_since_purchase"].astype(int).astype(str) + " days",
        ),
        "",
    )
    parts["falling"] = np.where(
        frame["falling"] == 1,
        "RQ fell "
        + frame["rq_previous"].round(0).astype("Int64").astype(str)
        + " → "
        + frame["rq_last"].round(0).astype("Int64").astype(str),
        "",
    )
    parts["detractor"] = np.where(
        frame["detractor"] == 1, "detractor (NPS " + frame["nps_last"].astype("Int64").astype(str) + ")", ""
    )
    frame["reasons"] = parts.apply(lambda row: "; ".join(x for x in row if x), axis=1)
    frame["days_since_purchase"] = frame["days_since_purchase"].astype(int)
    frame["last_purchase"] = pd.to_datetime(frame["last_purchase"]).dt.date
    frame = frame.sort_values(
        ["annual_value", "revenue_12m", "customer_id"], ascending=[False, False, True], na_position="last"
    )
    return frame[columns].reset_index(drop=True)


# --------------------------------------------------------------------------- derived segments


def derived_segments(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> pd.DataFrame:
    """Customers per value tier and per lifecycle stage (relq.store.refresh_derived): dimension,
    value, customers, share."""
    frames = []
    for name in ("value_tier", "lifecycle_stage"):
        col = C.c[name]
        rows = conn.execute(
            sa.select(sa.func.coalesce(col, "(not set)").label("value"), sa.func.count().label("customers"))
            .where(flt.customer_clause())
            .group_by(col)
        ).all()
        part = pd.DataFrame(rows, columns=["value", "customers"])
        part.insert(0, "dimension", name)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    frame["customers"] = frame["customers"].astype(int)
    totals = frame.groupby("dimension")["customers"].transform("sum")
    frame["share"] = frame["customers"] / totals.where(totals > 0)
    order = {v: i for i, v in enumerate([*VALUE_TIER_DEFINITIONS, *LIFECYCLE_DEFINITIONS])}
    frame["_o"] = frame["value"].map(order).fillna(99)
    return frame.sort_values(["dimension", "_o"]).drop(columns="_o").reset_index(drop=True)
