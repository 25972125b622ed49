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
from scipy import stats as scipy_stats
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from relq import store
from relq.core.settings import load_settings
from relq.measures import stats
from relq.store import dialects, schema
from relq.store.filters import SegmentFilter, customer_dimension
from relq.store.latest import latest_pairs_fit
from relq.store.schema import PILLARS

__all__ = [
    "BASES",
    "LIFECYCLE_DEFINITIONS",
    "VALUE_TIER_DEFINITIONS",
    "AT_RISK_REASONS",
    "Basis",
    "churn_basis",
    "lifetimes",
    "purchase_summary_ready",
    "save_purchase_summary",
    "last_purchases",
    "last_complete_month",
    "wilson_bounds",
    "cohort_activity",
    "save_segment_cohorts",
    "cohort_report",
    "retention_rates",
    "quarter_label",
    "retention_report",
    "wave_key",
    "account_waves",
    "save_account_waves",
    "waves_in_view",
    "wave_change",
    "at_risk_customers",
    "derived_segments",
    "rates_table",
    "RATE_COLUMNS",
    "AT_RISK_COLUMNS",
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
AT_RISK_REASONS = ("no recent purchase", "falling RQ", "more detractors than promoters")


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
        # the first churn date found is enough (a count read every customer: 22 ms on PostgreSQL)
        churn_date = sa.select(C.c.customer_id).where(C.c.churned_at.is_not(None)).limit(1)
        has_churn = conn.execute(churn_date).first() is not None
        basis = "contract" if has_churn else "inactivity"
    return Basis(basis, store.current_data_end(conn), inactive_days)


def _purchase_columns(end: date) -> list:
    """Per customer (grouped by ``transactions.customer_id``): first and last purchase, revenue,
    and the revenue of the 365 days before ``end``."""
    year_ago = end - timedelta(days=365)
    return [
        T.c.customer_id,
        sa.func.min(T.c.occurred_at).label("first_at"),
        sa.func.max(T.c.occurred_at).label("last_at"),
        sa.func.sum(T.c.amount).label("revenue"),
        sa.func.sum(
            sa.case((T.c.occurred_at >= sa.literal(year_ago, sa.DateTime), T.c.amount), else_=0.0)
        ).label("revenue_12m"),
    ]


def _purchases(end: date, summarised: bool = False) -> sa.Subquery:
    if summarised:  # the same rows, summed after the last change of the data
        return sa.select(*(PS.c[c] for c in _SUMMED)).subquery("purchases")
    return sa.select(*_purchase_columns(end)).group_by(T.c.customer_id).subquery("purchases")


def _month_rows() -> Select:
    """Each customer's distinct calendar months with a purchase (``customer_id``, ``m``)."""
    return sa.select(T.c.customer_id, _month_index(T.c.occurred_at).label("m")).distinct()


def _stored_month_rows() -> Select:
    """:func:`_month_rows` with each customer's start (``start_day``, its month ``start_m``) as
    :func:`lifetimes` defines it — acquired_at, else the first purchase — for the stored table,
    built after the purchase summary in the same transaction."""
    months = _month_rows().subquery("months")
    start_day = sa.func.coalesce(C.c.acquired_at, sa.cast(PS.c.first_at, sa.Date))
    return sa.select(
        months.c.customer_id,
        months.c.m,
        start_day.label("start_day"),
        _month_index(start_day).label("start_m"),
    ).select_from(
        months.join(PS, PS.c.customer_id == months.c.customer_id).outerjoin(
            C, C.c.customer_id == months.c.customer_id
        )
    )


# --------------------------------------------------------------------------- purchase summaries

PS, PM, CA = schema.purchase_summary, schema.purchase_months, schema.customer_activity
CL = schema.customer_lifetimes
_SUMMED = ("customer_id", "first_at", "last_at", "revenue", "revenue_12m")
_SUMMARY = "purchases"
AW = schema.account_waves
_WAVES = "account waves"


def purchase_summary_ready(conn: Connection, basis: Basis) -> bool:
    """Whether the stored purchase summary (:func:`save_purchase_summary`) was built from the
    current data version up to ``basis.end``, so it may stand in for the purchases themselves.
    False on ClickHouse, which keeps no summary."""
    return store.derived_current(conn, _SUMMARY, data_end=basis.end)


def save_purchase_summary(engine) -> bool:
    """Rebuild the purchase summary from the stored purchases, in one transaction on the database
    side (no row travels): one row per customer (first and last purchase, revenue, revenue of the
    365 days before the data's end), one per customer and calendar month with a purchase, each
    customer's span (``customer_lifetimes``: the CRM's and the purchases' customers, joined once
    here instead of in every read of :func:`lifetimes`) and each customer's last activity
    (:func:`last_activities`), marked with the data version and end they were built from. False on
    ClickHouse (nothing is built)."""
    if dialects.is_clickhouse(engine):
        return False
    with store.rebuilding_derived(engine, _SUMMARY, (PS, PM, CL, CA)) as (conn, end):
        conn.execute(
            PS.insert().from_select(
                list(_SUMMED), sa.select(*_purchase_columns(end)).group_by(T.c.customer_id)
            )
        )
        spans = sa.select(
            sa.func.coalesce(C.c.customer_id, PS.c.customer_id),
            C.c.acquired_at,
            C.c.churned_at,
            PS.c.first_at,
            PS.c.last_at,
            sa.func.coalesce(PS.c.revenue, 0.0),
            sa.func.coalesce(PS.c.revenue_12m, 0.0),
        ).select_from(C.join(PS, C.c.customer_id == PS.c.customer_id, full=True))
        conn.execute(CL.insert().from_select([c.name for c in CL.c], spans))
        conn.execute(
            PM.insert().from_select(["customer_id", "m", "start_day", "start_m"], _stored_month_rows())
        )
        last = _activity(sa.select(PS.c.customer_id, PS.c.last_at.label("at")))
        conn.execute(
            CA.insert().from_select(["customer_id", "last_at"], sa.select(last.c.customer_id, last.c.last_at))
        )
    return True


def _activity(purchases: Select) -> sa.Subquery:
    """Each customer's last purchase (``purchases``: customer_id, at), response or ticket (customer_id,
    last_at)."""
    K = schema.tickets
    parts = [
        purchases,
        sa.select(R.c.customer_id, R.c.submitted_at.label("at")).where(R.c.customer_id.is_not(None)),
        sa.select(K.c.customer_id, K.c.opened_at.label("at")),
    ]
    union = sa.union_all(*parts).subquery("activity")
    return (
        sa.select(union.c.customer_id, sa.func.max(union.c.at).label("last_at"))
        .group_by(union.c.customer_id)
        .subquery("last_activity")
    )


def last_activities(conn: Connection) -> sa.Subquery:
    """Each customer's last purchase, response or ticket (customer_id, last_at): stored with the
    purchase summary while it is of the current data, else from the purchases (their summary when
    current), responses and tickets themselves."""
    if store.derived_current(conn, _SUMMARY):
        return sa.select(CA.c.customer_id, CA.c.last_at).subquery("last_activity")
    purchases = last_purchases(conn)
    return _activity(sa.select(purchases.c.customer_id, purchases.c.last_purchase.label("at")))


def purchase_totals(conn: Connection) -> sa.Subquery:
    """Each customer's purchases summed (customer_id, first_at, last_at, revenue, revenue_12m — the
    365 days before the data's end, as :func:`lifetimes` counts them): from the stored summary while
    it is of the current data and data end, else from the purchases."""
    end = store.current_data_end(conn)
    return _purchases(end, store.derived_current(conn, _SUMMARY, data_end=end))


def last_purchases(conn: Connection) -> sa.Subquery:
    """Each customer's last purchase (customer_id, last_purchase): from the stored summary while it
    is of the current data (a last purchase does not depend on the data's end), else from the
    purchases."""
    if store.derived_current(conn, _SUMMARY):
        return sa.select(PS.c.customer_id, PS.c.last_at.label("last_purchase")).subquery("last_purchase")
    return (
        sa.select(T.c.customer_id, sa.func.max(T.c.occurred_at).label("last_purchase"))
        .group_by(T.c.customer_id)
        .subquery("last_purchase")
    )


def lifetimes(
    flt: SegmentFilter,
    basis: Basis,
    *,
    acquired_in_period: bool = True,
    by: str | None = None,
    summarised: bool = False,
) -> Select:
    """Per customer: customer_id, start_day, last_day, end_day, churned (0/1), revenue, revenue_12m
    and CRM fields (owner, company, annual_value; NULL for customers known only from purchases).

    The filter's segment dimensions apply through ``customers``; with ``acquired_in_period`` its
    since/until select customers whose ``start_day`` falls in the period. ``by`` adds a ``segment``
    column (a customer dimension; "All customers" without it). With ``summarised`` (see
    :func:`purchase_summary_ready`) the customers' spans are read from ``customer_lifetimes``.
    """
    if summarised:  # customers and purchases joined when stored; the CRM joined for its fields only
        p = CL
        customer_id, acquired_at, churned_at = CL.c.customer_id, CL.c.acquired_at, CL.c.churned_at
        joined = CL.outerjoin(C, C.c.customer_id == CL.c.customer_id)
    else:
        p = _purchases(basis.end)
        customer_id = sa.func.coalesce(C.c.customer_id, p.c.customer_id)
        acquired_at, churned_at = C.c.acquired_at, C.c.churned_at
        joined = C.join(p, C.c.customer_id == p.c.customer_id, full=True)
    start_day = sa.func.coalesce(acquired_at, sa.cast(p.c.first_at, sa.Date))
    last_day = sa.cast(p.c.last_at, sa.Date)
    end = sa.literal(basis.end, sa.Date)
    if basis.kind == "contract":
        churned = sa.and_(churned_at.is_not(None), churned_at <= end)
        end_day = sa.case((churned, churned_at), else_=end)
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
    return (
        sa.select(*columns)
        .select_from(joined)
        .where(flt.customer_clause(), *_started(start_day, flt if acquired_in_period else None, basis))
    )


def _started(start_day, flt: SegmentFilter | None, basis: Basis) -> list:
    """The conditions on a customer's start of :func:`lifetimes`: a start by the data's end and,
    with ``flt``, within its since/until."""
    conditions = [start_day.is_not(None), start_day <= sa.literal(basis.end, sa.Date)]
    if flt is not None and flt.since:
        conditions.append(start_day >= sa.literal(flt.since, sa.Date))
    if flt is not None and flt.until:
        conditions.append(start_day <= sa.literal(flt.until, sa.Date))
    return conditions


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


def last_complete_month(end: date) -> int:
    """Month index (year·12 + month − 1) of the last calendar month the data cover to its last day."""
    index = end.year * 12 + end.month - 1
    return index if (end + timedelta(days=1)).month != end.month else index - 1


def wilson_bounds(successes: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`relq.measures.stats.wilson_interval` for many proportions at once (low, high; NaN for n = 0).

    >>> low, high = wilson_bounds(np.array([8]), np.array([10]))
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.4902, 0.9433)
    """
    x, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    z = float(scipy_stats.norm.ppf(0.5 + level / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        z2n = z * z / n
        centre = (p + z2n / 2) / (1 + z2n)
        half = z * np.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    return np.maximum(0.0, np.minimum(p, centre - half)), np.minimum(1.0, np.maximum(p, centre + half))


def cohort_activity(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), basis: Basis | None = None
) -> pd.DataFrame:
    """Cohort × months since acquisition: cohort, k, size, active, share, low, high, partial
    (Methodology page → Cohorts). Unit: the customer; origin: the cohort's calendar month.

    ``active`` counts the cohort's customers with at least one purchase in calendar month
    cohort+k; k runs from 0 to the data's last month for every cohort (zeros included). ``low`` and
    ``high`` are the share's Wilson 95% interval. ``partial`` marks the data's last month when the
    data do not cover it to its last day: its share is shown, marked, and left out of the report.
    """
    basis = basis or churn_basis(conn)
    summarised = purchase_summary_ready(conn, basis)
    cells = flt.whole_history and flt.picks_cells()
    if cells and store.derived_current(conn, _COHORTS, data_end=basis.end):
        stmt = (
            sa.select(SC.c.cohort, SC.c.k, sa.func.sum(SC.c.n))
            .where(flt.cell_clause(SC))
            .group_by(SC.c.cohort, SC.c.k)
        )
        rows = conn.execute(stmt).all()
    else:
        rows = conn.execute(_cohort_rows(flt, basis, summarised)).all()
    sizes = [(c, n) for c, kk, n in rows if int(kk) == -1]
    columns = ["cohort", "k", "size", "active", "share", "low", "high", "partial"]
    if not sizes:
        return pd.DataFrame(columns=columns)
    active = [(c, kk, n) for c, kk, n in rows if int(kk) >= 0]
    last = basis.end.year * 12 + basis.end.month - 1
    complete = last_complete_month(basis.end)
    grid = pd.DataFrame(
        [(int(c), kk, int(n)) for c, n in sizes for kk in range(last - int(c) + 1)],
        columns=["cohort_i", "k", "size"],
    )
    counts = pd.DataFrame(
        [(int(c), int(kk), int(n)) for c, kk, n in active], columns=["cohort_i", "k", "active"]
    ).astype("int64")  # typed even when no cohort has an active month yet
    frame = grid.merge(counts, on=["cohort_i", "k"], how="left").fillna({"active": 0})
    frame["active"] = frame["active"].astype(int)
    frame["share"] = frame["active"] / frame["size"]
    frame["low"], frame["high"] = wilson_bounds(frame["active"].to_numpy(), frame["size"].to_numpy())
    frame["partial"] = (frame["cohort_i"] + frame["k"]) > complete
    frame = frame.sort_values(["cohort_i", "k"]).reset_index(drop=True)
    frame.insert(0, "cohort", frame.pop("cohort_i").map(_month_label))
    return frame[columns]


def _cohort_rows(flt: SegmentFilter, basis: Basis, summarised: bool) -> Select:
    """(cohort, k, n) of :func:`cohort_activity`, in one round trip: the cohort sizes (k = −1) and
    the active counts together."""
    life = lifetimes(flt, basis, summarised=summarised).cte("life")
    cohort = _month_index(life.c.start_day)
    size_rows = sa.select(
        cohort.label("cohort"), sa.literal(-1).label("k"), sa.func.count().label("n")
    ).group_by(cohort)
    return sa.union_all(size_rows, _active_rows(flt, basis, life, summarised))


SC = schema.segment_cohorts
_COHORTS = "segment cohorts"


def save_segment_cohorts(engine) -> bool:
    """Rebuild the cohort table's counts per segment cell (``segment_cohorts``) from the stored
    purchase summary, in one transaction, marked with the data version and end. False on ClickHouse,
    or when the purchase summary is not of the current data."""
    if dialects.is_clickhouse(engine):
        return False
    with engine.connect() as conn:
        basis = churn_basis(conn)
        if not purchase_summary_ready(conn, basis):
            return False
    with store.rebuilding_derived(engine, _COHORTS, (SC,)) as (conn, _end):
        cells = [C.c[d] for d in schema.SEGMENT_SUM_DIMENSIONS]
        life = lifetimes(SegmentFilter(), basis, summarised=True).subquery("life")
        cohort = _month_index(life.c.start_day)
        sizes = (
            sa.select(*cells, cohort.label("cohort"), sa.literal(-1).label("k"), sa.func.count().label("n"))
            .select_from(life.outerjoin(C, C.c.customer_id == life.c.customer_id))
            .group_by(*cells, cohort)
        )
        start, k = PM.c.start_m, PM.c.m - PM.c.start_m
        active = (
            sa.select(*cells, start.label("cohort"), k.label("k"), sa.func.count().label("n"))
            .select_from(PM.outerjoin(C, C.c.customer_id == PM.c.customer_id))
            .where(k >= 0, *_started(PM.c.start_day, None, basis))
            .group_by(*cells, start, k)
        )
        names = [*schema.SEGMENT_SUM_DIMENSIONS, "cohort", "k", "n"]
        conn.execute(SC.insert().from_select(names, sa.union_all(sizes, active)))
    return True


def _active_rows(flt: SegmentFilter, basis: Basis, life, summarised: bool) -> Select:
    """(cohort, k, n): the customers of ``life`` with a purchase k months after their cohort's.

    Stored with the purchase summary, each customer's purchase months carry the customer's start,
    so they are counted in one pass, with ``life``'s conditions on their own columns (the customers
    joined only for a segment filter): no join of every purchase month to the lifetimes and no
    month computed per row, which on PostgreSQL took most of the time (bench/RESULTS.md). Otherwise
    each customer's distinct purchase months are taken first, so the join sees far fewer rows than
    every purchase."""
    if summarised:
        cohort, k = PM.c.start_m, PM.c.m - PM.c.start_m
        rows = sa.select(cohort.label("cohort"), k.label("k"), sa.func.count().label("n")).where(
            k >= 0, *_started(PM.c.start_day, flt, basis)
        )
        if flt.customer or flt.quadrant or flt.themes:  # the clause reads customers' columns
            rows = rows.select_from(PM.outerjoin(C, C.c.customer_id == PM.c.customer_id))
            rows = rows.where(flt.customer_clause())
        return rows.group_by(cohort, k)
    cohort = _month_index(life.c.start_day)
    months = _month_rows().subquery("months")
    k = months.c.m - cohort
    return (
        sa.select(cohort.label("cohort"), k.label("k"), sa.func.count().label("n"))
        .select_from(life.join(months, months.c.customer_id == life.c.customer_id))
        .where(k >= 0)
        .group_by(cohort, k)
    )


def cohort_report(frame: pd.DataFrame) -> dict:
    """The report's ``cohorts`` section: ``{"2024-01": {"size": n, "active_share": [...]}}``.

    Complete months only: a partial last month is left out of ``active_share``, and a cohort
    acquired in that partial month (no complete month yet) is left out altogether.
    """
    if "partial" in frame:
        frame = frame[~frame["partial"].astype(bool)]
    return {
        cohort: {"size": int(part["size"].iloc[0]), "active_share": [float(x) for x in part["share"]]}
        for cohort, part in frame.groupby("cohort", sort=True)
    }


# --------------------------------------------------------------------------- rates


RATE_COLUMNS = [
    "period",
    "metric",
    "estimate",
    "low",
    "high",
    "n",
    "at_start",
    "retained",
    "churned",
    "new",
    "new_churned",
    "at_end",
]


def retention_rates(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), freq: str = "month", basis: Basis | None = None
) -> pd.DataFrame:
    """Retention and churn per month or quarter with Wilson 95% intervals (percent).

    Unit: the customer; Methodology page → Retention rate. For a period:

    - ``at_start``: customers who started before its first day and had not churned before it;
    - ``retained``: those of ``at_start`` still active at its last day; retention = retained / at_start;
    - ``churned``: those of ``at_start`` who churned in it; churn = churned / at_start;
    - ``new`` (started in it) and ``new_churned`` (started and churned in it) are shown beside
      the rates, not mixed into them; ``at_end`` = retained + new − new_churned.

    Only whole calendar periods up to the data's end are listed. The SQL returns counts by
    (start month, end month, churned) only.
    """
    if freq not in ("month", "quarter"):
        raise ValueError(f"freq must be 'month' or 'quarter', not {freq!r}")
    basis = basis or churn_basis(conn)
    counts = _lifetime_counts(conn, flt, basis)
    return _rates_from_counts(counts.drop(columns="segment"), flt, freq, basis)


def retention_rates_by(
    conn: Connection, flt: SegmentFilter, by: str, freq: str = "month", basis: Basis | None = None
) -> dict[str, pd.DataFrame]:
    """:func:`retention_rates` of each value of the customer dimension ``by`` (customers without
    a value left out), from one query: value → its rates, as ``flt.with_dimension(by, [value])``
    would give them."""
    return retention_rates_with_total(conn, flt, by, freq, basis)[1]


def retention_rates_with_total(
    conn: Connection, flt: SegmentFilter, by: str, freq: str = "month", basis: Basis | None = None
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The rates of every customer in view whatever their ``by`` (``retention_rates`` of
    ``flt.with_dimension(by, ())``) and :func:`retention_rates_by`, from the same one query: the
    customers without a value are counted in the first and in no segment."""
    if freq not in ("month", "quarter"):
        raise ValueError(f"freq must be 'month' or 'quarter', not {freq!r}")
    basis = basis or churn_basis(conn)
    counts = _lifetime_counts(conn, flt.with_dimension(by, ()), basis, by)
    total = counts.drop(columns="segment").groupby(["s", "e", "churned"], as_index=False)["n"].sum()
    valued = counts[counts["segment"].notna()]
    return _rates_from_counts(total, flt, freq, basis), {
        str(value): _rates_from_counts(part.drop(columns="segment"), flt, freq, basis)
        for value, part in valued.groupby("segment", sort=True)
    }


def _lifetime_counts(
    conn: Connection, flt: SegmentFilter, basis: Basis, by: str | None = None
) -> pd.DataFrame:
    """Customers by (segment, start month, end month, churned): the only rows the rates need.
    With ``by``, customers without a value (or without a ``customers`` row) have a missing
    segment, so the segments add up to the view."""
    life = lifetimes(
        SegmentFilter(customer=flt.customer, quadrant=flt.quadrant),
        basis,
        summarised=purchase_summary_ready(conn, basis),
    ).subquery("life")
    start_m, end_m = _month_index(life.c.start_day), _month_index(life.c.end_day)
    segment = (
        sa.cast(customer_dimension(by), sa.Text) if by else sa.literal("All customers", sa.Text)
    ).label("segment")
    source = life.outerjoin(C, C.c.customer_id == life.c.customer_id) if by else life
    stmt = sa.select(
        segment, start_m.label("s"), end_m.label("e"), life.c.churned, sa.func.count().label("n")
    )
    stmt = stmt.select_from(source).group_by(start_m, end_m, life.c.churned)
    if by:
        stmt = stmt.group_by(segment)
    rows = conn.execute(stmt).all()
    counts = pd.DataFrame(rows, columns=["segment", "s", "e", "churned", "n"])
    return counts.astype({"s": int, "e": int, "churned": int, "n": int})


def _rates_from_counts(counts: pd.DataFrame, flt: SegmentFilter, freq: str, basis: Basis) -> pd.DataFrame:
    if counts.empty:
        return pd.DataFrame(columns=RATE_COLUMNS)
    counts = counts.copy()
    step = 1 if freq == "month" else 3
    counts["s"] //= step
    counts["e"] //= step
    last_whole = (last_complete_month(basis.end) + 1) // step - 1  # the last period ending by the data's end
    gone = counts["churned"] == 1
    records = []
    for period in range(int(counts["s"].min()), last_whole + 1):
        month = period * step
        start = pd.Timestamp(year=month // 12, month=month % 12 + 1, day=1)
        if flt.since and start + pd.DateOffset(months=step) <= pd.Timestamp(flt.since):
            continue
        if flt.until and start > pd.Timestamp(flt.until):
            continue
        at_start_rows = (counts["s"] < period) & ~(gone & (counts["e"] < period))
        at_start = int(counts.loc[at_start_rows, "n"].sum())
        if at_start == 0:
            continue
        churned = int(counts.loc[at_start_rows & gone & (counts["e"] == period), "n"].sum())
        retained = at_start - churned
        new = int(counts.loc[counts["s"] == period, "n"].sum())
        new_churned = int(counts.loc[(counts["s"] == period) & gone & (counts["e"] == period), "n"].sum())
        for metric, successes in (("retention", retained), ("churn", churned)):
            w = stats.wilson_interval(successes, at_start)
            records.append(
                (
                    start,
                    metric,
                    100 * w.estimate,
                    100 * w.low,
                    100 * w.high,
                    at_start,
                    at_start,
                    retained,
                    churned,
                    new,
                    new_churned,
                    retained + new - new_churned,
                )
            )
    return pd.DataFrame(records, columns=RATE_COLUMNS)


def quarter_label(period: pd.Timestamp | date) -> str:
    """``2025-Q4`` for any day of that calendar quarter."""
    return f"{period.year}-Q{(period.month - 1) // 3 + 1}"


def retention_report(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), basis: Basis | None = None
) -> dict | None:
    """The report's ``retention`` section: the last complete calendar quarter (ending by the
    filter's ``until`` when given): quarter, at_start, retained, rate (a share, 0–1) with its Wilson
    ``ci``; ``churned``, ``new`` and ``new_churned`` beside. None when no quarter qualifies."""
    rates = retention_rates(
        conn, SegmentFilter(customer=flt.customer, quadrant=flt.quadrant), "quarter", basis
    )
    rates = rates[rates["metric"] == "retention"]
    if flt.until is not None and not rates.empty:
        ends = pd.to_datetime(rates["period"]) + pd.DateOffset(months=3)
        rates = rates[ends <= pd.Timestamp(flt.until) + pd.Timedelta(days=1)]
    if rates.empty:
        return None
    row = rates.iloc[-1]
    return {
        "quarter": quarter_label(row["period"]),
        "at_start": int(row["at_start"]),
        "retained": int(row["retained"]),
        "rate": float(row["estimate"]) / 100,
        "ci": [float(row["low"]) / 100, float(row["high"]) / 100],
        "churned": int(row["churned"]),
        "new": int(row["new"]),
        "new_churned": int(row["new_churned"]),
    }


# --------------------------------------------------------------------------- at risk


def wave_key(responses: sa.Table = R) -> sa.ColumnElement:
    """A response's survey wave: the stored ``wave``, else the calendar quarter it was submitted in."""
    submitted = responses.c.submitted_at
    quarter = (
        sa.cast(sa.cast(sa.extract("year", submitted), sa.Integer), sa.Text)
        + sa.literal("-Q", sa.Text)
        + sa.cast(sa.cast(sa.extract("quarter", submitted), sa.Integer), sa.Text)
    )
    return sa.func.coalesce(responses.c.wave, quarter)


def account_waves(where: sa.ColumnElement) -> sa.Subquery:
    """Per account (customer), its latest two survey waves among the responses matching ``where``.

    One row per customer with a wave: wave_latest, wave_previous (NULL with one wave), latest_at
    (the latest wave's last submission), trust_latest, commitment_latest, satisfaction_latest
    (the latest wave's means over its respondents); respondents with an RQ in each wave (n1, n2),
    the sums and sums of squares of their RQ (s1, ss1, s2, ss2); the respondents who answered RQ in
    both (pairs) with Σ of their two RQs (p1, p2) and Σ of the squared change (dd); and the latest
    wave's promoters, detractors and NPS answers. A respondent is a person (their email, else the
    response), who counts once per wave with the mean of their answers there. Waves are ordered by
    their latest submission at the account.
    """
    person = sa.func.coalesce(sa.func.lower(R.c.email), R.c.response_id)
    wave = wave_key()
    per_person = (
        sa.select(
            R.c.customer_id,
            wave.label("wave"),
            person.label("person"),
            sa.func.avg(R.c.rq).label("rq"),
            *(sa.func.avg(R.c[p]).label(p) for p in PILLARS),
            sa.func.avg(sa.cast(R.c.nps, sa.Float)).label("nps"),
            sa.func.max(R.c.submitted_at).label("at"),
        )
        .where(
            where,
            R.c.customer_id.is_not(None),
            sa.or_(R.c.nps.is_not(None), *(R.c[p].is_not(None) for p in PILLARS)),
        )
        .group_by(R.c.customer_id, wave, person)
        .cte("per_person")
    )
    ranked = (
        sa.select(
            per_person.c.customer_id,
            per_person.c.wave,
            sa.func.row_number()
            .over(
                partition_by=per_person.c.customer_id,
                order_by=(sa.func.max(per_person.c.at).desc(), per_person.c.wave.desc()),
            )
            .label("recency"),
        )
        .group_by(per_person.c.customer_id, per_person.c.wave)
        .subquery("ranked_waves")
    )
    latest = sa.select(ranked).where(ranked.c.recency <= 2).subquery("latest_waves")
    people = (
        sa.select(per_person, latest.c.recency)
        .select_from(
            per_person.join(
                latest,
                sa.and_(latest.c.customer_id == per_person.c.customer_id, latest.c.wave == per_person.c.wave),
            )
        )
        .subquery("people")
    )

    def in_wave(rank: int, value):
        return sa.case((people.c.recency == rank, value))

    # One row per (account, person): their answers in the latest and the previous wave.
    rq = sa.cast(people.c.rq, sa.Float)
    pivot = (
        sa.select(
            people.c.customer_id,
            sa.func.max(in_wave(1, people.c.wave)).label("wave1"),
            sa.func.max(in_wave(2, people.c.wave)).label("wave2"),
            sa.func.max(in_wave(1, people.c.at)).label("at1"),
            sa.func.max(in_wave(1, rq)).label("rq1"),
            sa.func.max(in_wave(2, rq)).label("rq2"),
            sa.func.max(in_wave(1, people.c.nps)).label("nps1"),
            *(sa.func.max(in_wave(1, people.c[p])).label(f"{p}1") for p in PILLARS),
        )
        .group_by(people.c.customer_id, people.c.person)
        .subquery("per_account_person")
    )
    both = sa.and_(pivot.c.rq1.is_not(None), pivot.c.rq2.is_not(None))
    return (
        sa.select(
            pivot.c.customer_id,
            sa.func.max(pivot.c.wave1).label("wave_latest"),
            sa.func.max(pivot.c.wave2).label("wave_previous"),
            sa.func.max(pivot.c.at1).label("latest_at"),
            *(sa.func.avg(pivot.c[f"{p}1"]).label(f"{p}_latest") for p in PILLARS),
            sa.func.count(pivot.c.rq1).label("n1"),
            sa.func.sum(pivot.c.rq1).label("s1"),
            sa.func.sum(pivot.c.rq1 * pivot.c.rq1).label("ss1"),
            sa.func.count(pivot.c.rq2).label("n2"),
            sa.func.sum(pivot.c.rq2).label("s2"),
            sa.func.sum(pivot.c.rq2 * pivot.c.rq2).label("ss2"),
            sa.func.count(sa.case((both, 1))).label("pairs"),
            sa.func.sum(sa.case((both, pivot.c.rq1))).label("p1"),
            sa.func.sum(sa.case((both, pivot.c.rq2))).label("p2"),
            sa.func.sum(sa.case((both, (pivot.c.rq1 - pivot.c.rq2) * (pivot.c.rq1 - pivot.c.rq2)))).label(
                "dd"
            ),
            sa.func.count(pivot.c.nps1).label("nps_answers"),
            sa.func.count(sa.case((pivot.c.nps1 >= 9, 1))).label("promoters"),
            sa.func.count(sa.case((pivot.c.nps1 <= 6, 1))).label("detractors"),
        )
        .group_by(pivot.c.customer_id)
        .subquery("account_waves")
    )


def save_account_waves(engine) -> bool:
    """Rebuild each account's latest two survey waves over the whole history (``account_waves``,
    the columns of :func:`account_waves`), in one transaction on the database side, marked with the
    data version. False on ClickHouse (nothing is built)."""
    if dialects.is_clickhouse(engine):
        return False
    with store.rebuilding_derived(engine, _WAVES, (AW,)) as (conn, _end):
        waves = account_waves(sa.true())
        conn.execute(AW.insert().from_select([c.name for c in waves.c], sa.select(waves)))
    return True


def waves_in_view(conn: Connection, flt: SegmentFilter) -> sa.Subquery:
    """:func:`account_waves` of view ``flt``: read from the stored account waves when the view
    covers the whole history with every wave, quality flag and theme (segments and quadrants pick
    whole accounts, whose waves they do not change; the caller keeps only the accounts in view) and
    the stored rows are of the current data; otherwise grouped from the responses."""
    if latest_pairs_fit(flt) and store.derived_current(conn, _WAVES):
        return sa.select(AW).subquery("account_waves")
    return account_waves(flt.response_clause())


def wave_change(frame: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The account's RQ change from its previous wave to its latest, with its interval.

    Like compared with like: with at least two respondents who answered both waves, the mean of
    their own changes with its paired t-interval (scipy ``ttest_rel``); otherwise, with at least
    two respondents in each wave, the difference of the waves' means with Welch's interval
    (scipy ``ttest_ind(equal_var=False)``); otherwise no judgement (NaN). Input: the columns of
    :func:`account_waves`. Returns rq_previous, rq_latest, change, low, high, compared.
    """
    f = frame
    n = f["pairs"].astype(float).to_numpy()
    paired = n >= 2
    p1, p2, dd = (pd.to_numeric(f[c], errors="coerce").to_numpy(float) for c in ("p1", "p2", "dd"))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (p1 - p2) / n
        var_d = np.maximum((dd - n * d * d) / (n - 1), 0.0)
        se_paired = np.sqrt(var_d / n)
        n1, n2 = f["n1"].astype(float).to_numpy(), f["n2"].astype(float).to_numpy()
        s1, s2, ss1, ss2 = (
            pd.to_numeric(f[c], errors="coerce").to_numpy(float) for c in ("s1", "s2", "ss1", "ss2")
        )
        m1, m2 = s1 / n1, s2 / n2
        v1 = np.maximum((ss1 - n1 * m1 * m1) / (n1 - 1), 0.0)
        v2 = np.maximum((ss2 - n2 * m2 * m2) / (n2 - 1), 0.0)
        a, b = v1 / n1, v2 / n2
        se_welch = np.sqrt(a + b)
        df_welch = np.where(a + b > 0, (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1)), np.inf)
    welch = ~paired & (n1 >= 2) & (n2 >= 2)
    q = 0.5 + level / 2
    t_paired = scipy_stats.t.ppf(q, np.maximum(n - 1, 1))
    t_welch = scipy_stats.t.ppf(q, np.nan_to_num(df_welch, nan=1.0, posinf=1e9))
    change = np.where(paired, d, np.where(welch, m1 - m2, np.nan))
    half = np.where(paired, t_paired * se_paired, np.where(welch, t_welch * se_welch, np.nan))
    compared = np.where(
        paired,
        "the same " + f["pairs"].astype(int).astype(str) + " respondents in both waves",
        np.where(welch, "different respondents in the two waves", "too few respondents to tell"),
    )
    return pd.DataFrame(
        {
            "rq_previous": np.where(paired, p2 / np.where(paired, n, 1), np.where(welch, m2, np.nan)),
            "rq_latest": np.where(paired, p1 / np.where(paired, n, 1), np.where(welch, m1, np.nan)),
            "change": change,
            "low": change - half,
            "high": change + half,
            "compared": compared,
        },
        index=frame.index,
    )


AT_RISK_COLUMNS = [
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
    "wave_previous",
    "wave_latest",
    "rq_previous",
    "rq_latest",
    "rq_change",
    "rq_change_low",
    "rq_change_high",
    "rq_compared",
    "promoters",
    "detractors",
    "nps_answers",
]


def at_risk_customers(
    conn: Connection,
    flt: SegmentFilter = SegmentFilter(),
    days: int | None = None,
    basis: Basis | None = None,
) -> pd.DataFrame:
    """Active customers at risk, each with the reasons why, value and owner (Methodology page → At risk).

    Unit: the account (customer), as of the data's end. Reasons:

    - no purchase in the last ``days`` days (default the at_risk_days setting, the boundary the
      lifecycle stage uses; a customer who never bought counts from the day they joined);
    - the account's RQ fell: its latest wave's mean RQ is below its previous wave's by more than the
      interval of that difference (:func:`wave_change`: the same respondents where they answered both);
    - its latest wave has more detractors (0–6) than promoters (9–10).

    Active means not churned under :func:`churn_basis`. Sorted by annual value, then 12-month revenue.
    """
    days = int(days or load_settings().at_risk_days)
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}.")
    basis = basis or churn_basis(conn)
    life = lifetimes(
        SegmentFilter(customer=flt.customer, quadrant=flt.quadrant),
        basis,
        summarised=purchase_summary_ready(conn, basis),
    ).subquery("life")
    waves = waves_in_view(conn, flt)  # the accounts in view are life's
    end = sa.literal(basis.end, sa.Date)
    since_purchase = end - sa.func.coalesce(life.c.last_day, life.c.start_day)
    quiet = since_purchase > days  # the lifecycle stage counts a purchase exactly `days` ago as active
    # An account whose RQ did not go down cannot be falling (the interval's upper end is above the
    # change): only those that went down come to Python for their interval (wave_change: paired
    # when two respondents answered both waves, else Welch with two in each).
    pairs = sa.func.coalesce(waves.c.pairs, 0)
    went_down = sa.or_(
        sa.and_(pairs >= 2, waves.c.p1 < waves.c.p2),
        sa.and_(
            pairs < 2,
            waves.c.n1 >= 2,
            waves.c.n2 >= 2,
            sa.cast(waves.c.s1, sa.Double) / waves.c.n1 < sa.cast(waves.c.s2, sa.Double) / waves.c.n2,
        ),
    )
    frame = store.read_frame(
        conn,
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
            sa.case((quiet, 1), else_=0).label("quiet"),
            *[c for c in waves.c if c.name != "customer_id"],
        )
        .select_from(life.outerjoin(waves, waves.c.customer_id == life.c.customer_id))
        .where(
            life.c.churned == 0,
            sa.or_(
                quiet,
                sa.and_(waves.c.wave_previous.is_not(None), went_down),
                waves.c.detractors > waves.c.promoters,
            ),
        ),
    )
    if frame.empty:
        return pd.DataFrame(columns=AT_RISK_COLUMNS)
    for name in ("annual_value", "revenue_12m", "days_since_purchase"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce")  # all-NULL columns arrive as objects
    for name in ("pairs", "n1", "n2", "promoters", "detractors", "nps_answers"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").fillna(0).astype(int)
    change = wave_change(frame)
    frame["rq_previous"], frame["rq_latest"] = change["rq_previous"], change["rq_latest"]
    frame["rq_change"], frame["rq_change_low"] = change["change"], change["low"]
    frame["rq_change_high"], frame["rq_compared"] = change["high"], change["compared"]
    frame.loc[frame["wave_previous"].isna(), "rq_compared"] = "one wave only"
    falling = (frame["rq_change_high"] < 0).to_numpy()
    detractors = (frame["detractors"] > frame["promoters"]).to_numpy()
    quiet_ = (frame["quiet"] == 1).to_numpy()
    keep = quiet_ | falling | detractors
    frame = frame[keep].copy()
    if frame.empty:
        return pd.DataFrame(columns=AT_RISK_COLUMNS)
    frame["reasons"] = _reasons(frame, quiet_[keep], falling[keep], detractors[keep])
    frame["days_since_purchase"] = frame["days_since_purchase"].astype(int)
    frame["last_purchase"] = pd.to_datetime(frame["last_purchase"]).dt.date
    frame = frame.sort_values(
        ["annual_value", "revenue_12m", "customer_id"], ascending=[False, False, True], na_position="last"
    )
    return frame[AT_RISK_COLUMNS].reset_index(drop=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _reasons(
    frame: pd.DataFrame, quiet: np.ndarray, falling: np.ndarray, detractors: np.ndarray
) -> list[str]:
    """Each listed account's at-risk reasons in words, joined by "; " (masks: which reasons apply).
    Each sentence is written only for the accounts it applies to: the list can hold 200k accounts."""

    def written(mask: np.ndarray, columns: list[str], sentence) -> np.ndarray:
        out = np.full(len(frame), "", dtype=object)
        rows = np.flatnonzero(mask)
        values = [frame[c].to_numpy(dtype=object)[rows] for c in columns]
        out[rows] = [sentence(*v) for v in zip(*values, strict=True)]
        return out

    quiet_text = written(
        quiet,
        ["days_since_purchase", "last_purchase"],
        lambda days, last: (
            f"no purchase since joining {days:.0f} days ago"
            if pd.isna(last)
            else f"no purchase in {days:.0f} days"
        ),
    )
    falling_text = written(
        falling,
        ["rq_previous", "rq_latest", "wave_previous", "wave_latest", "rq_compared", "rq_change",
         "rq_change_low", "rq_change_high"],
        lambda before, now, w2, w1, compared, change, low, high: (
            f"RQ fell {before:.0f} → {now:.0f} from wave {w2} to {w1} ({compared}; change {change:+.1f}, "
            f"95% CI {low:+.1f} to {high:+.1f})"
        ),
    )  # fmt: skip
    detractor_text = written(
        detractors,
        ["wave_latest", "detractors", "promoters", "nps_answers"],
        lambda wave, d, p, n: (
            f"more detractors than promoters in wave {wave} ({_count(d, 'detractor')}, "
            f"{_count(p, 'promoter')} of {n} answering)"
        ),
    )
    return [
        "; ".join(filter(None, texts)) for texts in zip(quiet_text, falling_text, detractor_text, strict=True)
    ]


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


def rates_table(rates: pd.DataFrame) -> pd.DataFrame:
    """A :func:`retention_rates` frame as shown: one row per period, counts beside the rates."""
    if rates.empty:
        return pd.DataFrame()
    wide = rates.pivot_table(index="period", columns="metric", values=["estimate", "low", "high"]).round(1)
    wide.columns = [
        f"{metric} %" if value == "estimate" else f"{metric} {value}" for value, metric in wide.columns
    ]
    counts = rates[rates["metric"] == "retention"].set_index("period")[
        ["at_start", "retained", "churned", "new", "new_churned", "at_end"]
    ]
    order = ["retention %", "retention low", "retention high", "churn %", "churn low", "churn high"]
    table = (
        counts[["at_start", "retained", "churned"]]
        .join(wide[order])
        .join(counts[["new", "new_churned", "at_end"]])
    )
    table = table.reset_index()
    table["period"] = table["period"].dt.strftime("%Y-%m")
    return table
