"""Survival of customer relationships: Kaplan–Meier, log-rank, Cox on the pillars, lifetime value.

The database returns the duration/event table already aggregated -- one row per (segment,
duration in days, churned) with its count -- and lifelines fits on it with ``weights``, so a
200k-customer store costs a few thousand rows. Cox needs each customer's own covariates, so it
gets one row per surveyed customer (entry at their first survey in the period).
Lifetime and churn follow relq.analyses.retention.lifetimes (contract or inactivity basis).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import sqlalchemy as sa
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test, proportional_hazard_test
from lifelines.utils import restricted_mean_survival_time
from sqlalchemy.engine import Connection

from relq.analyses.retention import Basis, churn_basis, lifetimes
from relq.measures import stats
from relq.store import schema
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

__all__ = [
    "DAYS_PER_MONTH",
    "QUADRANT",
    "KaplanMeier",
    "CoxResult",
    "quadrant_names",
    "duration_table",
    "kaplan_meier",
    "km_fit",
    "logrank",
    "cox_table",
    "cox_pillars",
    "lifetime_value",
]

DAYS_PER_MONTH = 365.25 / 12
QUADRANT = "quadrant"  # the pseudo-dimension that splits by relq.analyses.quadrants
R = schema.survey_responses


def quadrant_names() -> dict[str, str]:
    """Quadrant key → name (imported late: relq.analyses.quadrants builds on the same tables)."""
    from relq.analyses.quadrants import QUADRANT_NAMES

    return dict(QUADRANT_NAMES)


# --------------------------------------------------------------------------- the table


def duration_table(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), by: str | None = None, basis: Basis | None = None
) -> pd.DataFrame:
    """Weighted duration/event table: segment, duration (days), event (1 = churned), weight.

    Per customer: duration = end_day − start_day of relq.analyses.retention.lifetimes (acquired in the
    filter's period); ``by`` is a customer dimension or ``"quadrant"``; without it the segment is
    "All customers".
    """
    basis = basis or churn_basis(conn)
    if by == QUADRANT:
        names = quadrant_names()
        frames = [
            duration_table(conn, replace(flt, quadrant=key), None, basis).assign(segment=name)
            for key, name in names.items()
        ]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else _empty_durations()
    life = lifetimes(flt, basis, by=by).subquery("life")
    duration = (life.c.end_day - life.c.start_day).label("duration")
    segment = life.c.segment
    rows = conn.execute(
        sa.select(
            segment.label("segment"), duration, life.c.churned.label("event"), sa.func.count().label("weight")
        )
        .where(life.c.end_day >= life.c.start_day)
        .group_by(segment, duration, life.c.churned)
    ).all()
    if not rows:
        return _empty_durations()
    frame = pd.DataFrame(rows, columns=["segment", "duration", "event", "weight"])
    frame = frame.astype({"segment": str, "duration": int, "event": int, "weight": int})
    return frame.sort_values(["segment", "duration", "event"]).reset_index(drop=True)


def _empty_durations() -> pd.DataFrame:
    return pd.DataFrame(columns=["segment", "duration", "event", "weight"])


# --------------------------------------------------------------------------- Kaplan–Meier


def km_fit(durations, events, weights=None, label: str = "KM") -> KaplanMeierFitter:
    """lifelines' product-limit estimator with its 95% (exponential Greenwood) band."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns that weights are not integers when they are floats
        return KaplanMeierFitter(alpha=0.05).fit(durations, events, weights=weights, label=label)


@dataclass(frozen=True)
class KaplanMeier:
    """Curves, per-segment summary and log-rank tests for one split of the customers."""

    curves: pd.DataFrame  # segment, months, survival, low, high, at_risk
    summary: pd.DataFrame  # segment, customers, churned, median_months, rmst_months, rmst_low, rmst_high
    horizon_months: float  # restricted-mean horizon
    logrank_p: float | None = None
    logrank_statistic: float | None = None
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)  # a, b, statistic, p, q


def kaplan_meier(table: pd.DataFrame, max_segments: int = 8, grid_days: int = 7) -> KaplanMeier:
    """Fit a KM curve per segment of a :func:`duration_table`; curves are sampled every
    ``grid_days`` (so a chart stays far below 20k marks); the largest ``max_segments`` segments.

    The restricted mean lifetime is taken up to the shortest follow-up among the segments, so the
    segments' restricted means are comparable.
    """
    if table.empty:
        return KaplanMeier(_empty_curves(), pd.DataFrame(), float("nan"))
    sizes = table.groupby("segment")["weight"].sum().sort_values(ascending=False)
    keep = list(sizes.index[:max_segments])
    table = table[table["segment"].isin(keep)]
    tau = float(table.groupby("segment")["duration"].max().min())
    curves, summary = [], []
    for segment in keep:
        part = table[table["segment"] == segment]
        kmf = km_fit(part["duration"], part["event"], part["weight"], label=str(segment))
        grid = np.arange(0, part["duration"].max() + grid_days, grid_days, dtype=float)
        grid = np.unique(np.append(np.minimum(grid, part["duration"].max()), 0.0))
        band = kmf.confidence_interval_survival_function_
        at = pd.Index(band.index).get_indexer(grid, method="ffill")
        survival = kmf.survival_function_at_times(grid).to_numpy()
        order = np.sort(part["duration"].to_numpy(float))
        weight_left = np.concatenate(
            [np.cumsum(part.sort_values("duration")["weight"].to_numpy()[::-1])[::-1], [0]]
        )
        at_risk_at = weight_left[np.searchsorted(order, grid, side="left")]  # still followed at each grid day
        curves.append(
            pd.DataFrame(
                {
                    "segment": str(segment),
                    "months": grid / DAYS_PER_MONTH,
                    "survival": survival,
                    "low": band.iloc[np.maximum(at, 0), 0].to_numpy(),
                    "high": band.iloc[np.maximum(at, 0), 1].to_numpy(),
                    "at_risk": at_risk_at.astype(int),
                }
            )
        )
        rmst, se = restricted_mean(kmf, tau)
        half = 1.959964 * se
        median = kmf.median_survival_time_
        summary.append(
            {
                "segment": str(segment),
                "customers": int(part["weight"].sum()),
                "churned": int(part.loc[part["event"] == 1, "weight"].sum()),
                "median_months": float(median) / DAYS_PER_MONTH if np.isfinite(median) else None,
                "rmst_months": rmst / DAYS_PER_MONTH,
                "rmst_low": (rmst - half) / DAYS_PER_MONTH,
                "rmst_high": (rmst + half) / DAYS_PER_MONTH,
            }
        )
    result = KaplanMeier(pd.concat(curves, ignore_index=True), pd.DataFrame(summary), tau / DAYS_PER_MONTH)
    if len(keep) >= 2:
        overall = logrank(table)
        pairs = []
        for i, a in enumerate(keep):
            for b in keep[i + 1 :]:
                test = logrank(table[table["segment"].isin([a, b])])
                pairs.append((a, b, test.test_statistic, test.p_value))
        pairwise = pd.DataFrame(pairs, columns=["a", "b", "statistic", "p"])
        pairwise["q"] = stats.benjamini_hochberg(pairwise["p"].to_numpy())
        result = replace(
            result,
            logrank_p=float(overall.p_value),
            logrank_statistic=float(overall.test_statistic),
            pairwise=pairwise,
        )
    return result


def restricted_mean(kmf: KaplanMeierFitter, tau: float) -> tuple[float, float]:
    """Restricted mean survival time up to ``tau`` and its standard error.

    RMST = ∫_0^τ S(t) dt of the KM step function (lifelines' restricted_mean_survival_time);
    Var = Σ_{t_i ≤ τ} A_i² d_i / (n_i (n_i − d_i)), A_i = ∫_{t_i}^τ S(t) dt (Klein & Moeschberger
    1997, §4.5). Lifelines' ``return_variance`` is the spread of min(T, τ), not this.
    """
    rmst = float(restricted_mean_survival_time(kmf, t=tau))
    events = kmf.event_table
    sf = kmf.survival_function_.iloc[:, 0]
    times = sf.index.to_numpy(float)
    inside = times <= tau
    times, values = times[inside], sf.to_numpy()[inside]
    edges = np.append(times, tau)
    area_after = np.cumsum((np.diff(edges) * values)[::-1])[::-1]  # ∫_{t_i}^τ S
    d = events["observed"].reindex(times).to_numpy(float)
    n = events["at_risk"].reindex(times).to_numpy(float)
    ok = (d > 0) & (n > d)
    variance = float(np.sum(area_after[ok] ** 2 * d[ok] / (n[ok] * (n[ok] - d[ok]))))
    return rmst, math.sqrt(variance)


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame(columns=["segment", "months", "survival", "low", "high", "at_risk"])


def logrank(table: pd.DataFrame):
    """Log-rank test across the segments of a weighted duration table (lifelines)."""
    return multivariate_logrank_test(
        table["duration"].to_numpy(float),
        table["segment"].to_numpy(object),
        table["event"].to_numpy(int),
        weights=table["weight"].to_numpy(float),
    )


# --------------------------------------------------------------------------- Cox


def cox_table(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), basis: Basis | None = None
) -> pd.DataFrame:
    """One row per customer surveyed in the period: customer_id, duration (days from their first
    response in the period that has all three pillars to churn or the data's end), event,
    trust, commitment, satisfaction (0–100)."""
    basis = basis or churn_basis(conn)
    rank = sa.func.row_number().over(
        partition_by=R.c.customer_id, order_by=(R.c.submitted_at, R.c.response_id)
    )
    first = (
        sa.select(R.c.customer_id, R.c.submitted_at, *(R.c[p] for p in PILLARS), rank.label("rank"))
        .where(flt.response_clause(), R.c.customer_id.is_not(None), *(R.c[p].is_not(None) for p in PILLARS))
        .subquery("first_response")
    )
    life = lifetimes(
        SegmentFilter(customer=flt.customer, quadrant=flt.quadrant), basis, acquired_in_period=False
    )
    life = life.subquery("life")
    duration = (life.c.end_day - sa.cast(first.c.submitted_at, sa.Date)).label("duration")
    rows = conn.execute(
        sa.select(
            first.c.customer_id, duration, life.c.churned.label("event"), *(first.c[p] for p in PILLARS)
        )
        .select_from(first.join(life, life.c.customer_id == first.c.customer_id))
        .where(first.c.rank == 1, life.c.end_day >= sa.cast(first.c.submitted_at, sa.Date))
        .order_by(first.c.customer_id)
    )
    frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    return (
        frame.astype({"duration": int, "event": int, **{p: float for p in PILLARS}}) if len(frame) else frame
    )


@dataclass(frozen=True)
class CoxResult:
    hazard_ratios: pd.DataFrame  # pillar, hr, low, high, p  (per 10 points)
    customers: int
    churned: int
    concordance: float
    ph_p: dict[str, float]
    ph_sentence: str


def cox_pillars(table: pd.DataFrame, min_events: int = 10, ph_sample: int = 20_000) -> CoxResult | None:
    """Cox proportional hazards of churn on trust, commitment and satisfaction per 10 points.

    A hazard ratio below 1 means customers 10 points higher on that pillar churn less, holding
    the other two fixed. The proportional-hazards check is lifelines' Schoenfeld-residual test
    (rank time transform); above ``ph_sample`` customers it runs on a seeded random sample of that
    size (the residuals cost ~27 s at 150k customers, the fit itself under a second). None when
    there are fewer than ``min_events`` churns.
    """
    if table.empty or int(table["event"].sum()) < min_events or len(table) < 3 * min_events:
        return None
    data = table[["duration", "event"]].astype(float).copy()
    for p in PILLARS:
        data[p] = table[p] / 10.0
    cph = CoxPHFitter().fit(data, duration_col="duration", event_col="event")
    s = cph.summary
    hrs = pd.DataFrame(
        {
            "pillar": list(PILLARS),
            "hr": s.loc[list(PILLARS), "exp(coef)"].to_numpy(),
            "low": s.loc[list(PILLARS), "exp(coef) lower 95%"].to_numpy(),
            "high": s.loc[list(PILLARS), "exp(coef) upper 95%"].to_numpy(),
            "p": s.loc[list(PILLARS), "p"].to_numpy(),
        }
    )
    sampled = len(data) > ph_sample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if sampled:
            sample = data.sample(ph_sample, random_state=0)
            check = CoxPHFitter().fit(sample, duration_col="duration", event_col="event")
            ph = proportional_hazard_test(check, sample, time_transform="rank").summary
        else:
            ph = proportional_hazard_test(cph, data, time_transform="rank").summary
    ph_p = {p: float(ph.loc[p, "p"]) for p in PILLARS if p in ph.index}
    sentence = ph_sentence(ph_p)
    if sampled:
        sentence += f" (Checked on a random {ph_sample:,} of the {len(data):,} customers.)"
    return CoxResult(
        hrs, len(table), int(table["event"].sum()), float(cph.concordance_index_), ph_p, sentence
    )


def ph_sentence(ph_p: dict[str, float]) -> str:
    """The proportional-hazards check in one plain sentence."""
    broken = [p for p, value in ph_p.items() if value < 0.05]
    if not broken:
        return (
            "The check of the model's key assumption passed: each pillar's effect on churn looks steady "
            "over the customer's lifetime (proportional hazards, every p ≥ 0.05)."
        )
    names = " and ".join(p.capitalize() for p in broken)
    return (
        f"{names}: the effect on churn changes over the customer's lifetime (proportional-hazards test "
        f"p < 0.05), so read its hazard ratio as an average over the follow-up."
    )


# --------------------------------------------------------------------------- lifetime value


def lifetime_value(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), by: str | None = None, basis: Basis | None = None
) -> pd.DataFrame:
    """Historical revenue per customer and expected remaining lifetime by segment.

    Revenue: mean per customer with its t-interval (sums from SQL). Remaining lifetime: for the
    segment's active customers at their current age a, the restricted mean residual lifetime
    ``∫_a^τ S(t) dt / S(a)`` from the segment's KM curve, τ = the longest follow-up in the data,
    averaged over them. Expected remaining revenue = revenue per customer-month × that.
    """
    basis = basis or churn_basis(conn)
    life = lifetimes(flt, basis, by=by).subquery("life")
    segment = life.c.segment
    months = sa.cast(life.c.end_day - life.c.start_day, sa.Float) / DAYS_PER_MONTH
    rows = conn.execute(
        sa.select(
            segment.label("segment"),
            sa.func.count().label("customers"),
            sa.func.sum(life.c.revenue).label("revenue"),
            sa.func.sum(life.c.revenue * life.c.revenue).label("revenue_sq"),
            sa.func.sum(months).label("months"),
        )
        .where(life.c.end_day >= life.c.start_day)
        .group_by(segment)
    ).all()
    columns = [
        "segment",
        "customers",
        "revenue_mean",
        "revenue_low",
        "revenue_high",
        "active",
        "revenue_per_month",
        "remaining_months",
        "remaining_revenue",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = duration_table(conn, flt, by, basis)
    tau = float(table["duration"].max()) if len(table) else 0.0
    records = []
    for seg, n, revenue, revenue_sq, total_months in rows:
        seg = str(seg)
        interval = stats.mean_interval(int(n), float(revenue or 0), float(revenue_sq or 0))
        part = table[table["segment"] == seg]
        active = part[part["event"] == 0]
        remaining = float("nan")
        if len(part) and active["weight"].sum() > 0 and tau > 0:
            kmf = km_fit(part["duration"], part["event"], part["weight"])
            remaining = _mean_residual(
                kmf, active["duration"].to_numpy(float), active["weight"].to_numpy(float), tau
            )
        per_month = float(revenue or 0) / float(total_months) if total_months else float("nan")
        records.append(
            (
                seg,
                int(n),
                interval.estimate,
                interval.low,
                interval.high,
                int(active["weight"].sum()),
                per_month,
                remaining / DAYS_PER_MONTH,
                per_month * remaining / DAYS_PER_MONTH,
            )
        )
    return (
        pd.DataFrame(records, columns=columns)
        .sort_values("customers", ascending=False)
        .reset_index(drop=True)
    )


def _mean_residual(kmf: KaplanMeierFitter, ages: np.ndarray, weights: np.ndarray, tau: float) -> float:
    """Weighted mean over ``ages`` of ∫_a^τ S / S(a), from the KM step function (days)."""
    sf = kmf.survival_function_.iloc[:, 0]
    times = np.append(sf.index.to_numpy(float), tau)
    times = np.minimum(times, tau)
    # area under the step function from 0 to each time point
    widths = np.diff(times)
    area = np.concatenate([[0.0], np.cumsum(widths * sf.to_numpy()[: len(widths)])])

    def area_to(t: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1)
        return area[i] + (np.minimum(t, tau) - times[i]) * sf.to_numpy()[np.minimum(i, len(sf) - 1)]

    ages = np.minimum(ages, tau)
    s_at = kmf.survival_function_at_times(ages).to_numpy()
    residual = np.where(
        s_at > 0, (area_to(np.full_like(ages, tau)) - area_to(ages)) / np.where(s_at > 0, s_at, 1), 0.0
    )
    return float(np.average(residual, weights=weights))
