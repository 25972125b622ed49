"""Survival of customer relationships: Kaplan–Meier, log-rank, Cox on the pillars, lifetime value.

The database returns the duration/event table already aggregated -- one row per (segment,
duration in days, churned) with its count -- and lifelines fits on it with ``weights``, so a
200k-customer store costs a few thousand rows. Lifetime and churn follow
relq.analyses.retention.lifetimes (contract or inactivity basis).

Two time origins (Methodology page → Survival):

- split by a customer dimension (plan, region, …): the clock starts at acquisition;
- split by anything a survey measured (quadrant, a pillar's level, NPS group) and Cox on the
  pillars: the clock starts at the survey that placed the customer (a landmark) -- each
  customer's first response in the period that has the measure, so the placement never looks
  ahead. A customer churned on or before that day was not at risk and is left out; so is a
  respondent the customer data do not know. Both are counted (:class:`Landmark`).
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
from lifelines.utils import median_survival_times, restricted_mean_survival_time
from sqlalchemy.engine import Connection

from relq import store
from relq.analyses.retention import Basis, churn_basis, lifetimes, purchase_summary_ready
from relq.measures import stats
from relq.store import schema
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

__all__ = [
    "DAYS_PER_MONTH",
    "QUADRANT",
    "SURVEY_SPLITS",
    "LEFT_OUT_REASONS",
    "KaplanMeier",
    "Landmark",
    "CoxResult",
    "quadrant_names",
    "duration_table",
    "landmark_table",
    "kaplan_meier",
    "km_fit",
    "km_steps",
    "logrank",
    "median_interval",
    "cox_landmark",
    "cox_table",
    "cox_pillars",
    "lifetime_value",
    "summary_table",
    "hazard_sentences",
    "lifetime_value_table",
]

DAYS_PER_MONTH = 365.25 / 12
QUADRANT = "quadrant"  # the pseudo-dimension that splits by relq.analyses.quadrants
# Splits by something a survey measured: the clock starts at the survey (a landmark).
SURVEY_SPLITS = {
    QUADRANT: "Quadrant (trust × satisfaction)",
    "nps_group": "NPS group",
    "trust": "Trust level",
    "commitment": "Commitment level",
    "satisfaction": "Satisfaction level",
    "rq": "RQ level",
}
PILLAR_BANDS = ((50.0, "below 50"), (75.0, "50 to 75"), (None, "75 and above"))
LEFT_OUT_REASONS = {
    "churned_before": "churned on or before the day of the survey that placed them (not at risk)",
    "unknown": "answered a survey but are not in the customer data (no acquisition date or purchase)",
}
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

    Unit: the customer; origin: acquisition. Per customer: duration = end_day − start_day of
    relq.analyses.retention.lifetimes (acquired in the filter's period); ``by`` is a customer
    dimension; without it the segment is "All customers". A survey split (a key of
    :data:`SURVEY_SPLITS`) is followed from its landmark instead: :func:`landmark_table`.
    """
    basis = basis or churn_basis(conn)
    if by in SURVEY_SPLITS:
        return landmark_table(conn, flt, by, basis).table
    life = lifetimes(flt, basis, by=by, summarised=purchase_summary_ready(conn, basis)).subquery("life")
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


@dataclass(frozen=True)
class Landmark:
    """A table followed from a landmark, and the customers left out of it with why."""

    table: pd.DataFrame
    left_out: dict[str, int]  # LEFT_OUT_REASONS key → customers

    @property
    def customers(self) -> int:
        weight = self.table["weight"] if "weight" in self.table else pd.Series(1, index=self.table.index)
        return int(weight.sum())

    def left_out_sentence(self) -> str:
        """``"Left out: 85 customers churned on or before …; 3 …"`` ('' when nobody was)."""
        parts = [f"{n:,} {LEFT_OUT_REASONS[k]}" for k, n in self.left_out.items() if n]
        return ("Left out: " + "; ".join(parts) + ".") if parts else ""


def _placing_responses(flt: SegmentFilter, by: str, spec=None) -> tuple[sa.Subquery, list[str]]:
    """Each customer's first response in ``flt`` having the measure of ``by``: customer_id,
    day (the landmark), segment. Returns the subquery and the segment names in display order."""
    if by == QUADRANT:
        from relq.analyses.quadrants import QuadrantSpec
        from relq.store.latest import QUADRANT_KEYS, quadrant_key

        spec = spec or QuadrantSpec()
        needed = [R.c[spec.x].is_not(None), R.c[spec.y].is_not(None)]
        key = quadrant_key(R.c[spec.x], R.c[spec.y], spec.x_threshold, spec.y_threshold)
        segment = sa.case(*[(key == k, spec.name(k)) for k in QUADRANT_KEYS])
        order = [spec.name(k) for k in QUADRANT_KEYS]
    elif by == "nps_group":
        needed = [R.c.nps.is_not(None)]
        segment = sa.case(
            (R.c.nps >= 9, "Promoters (9–10)"), (R.c.nps >= 7, "Passives (7–8)"), else_="Detractors (0–6)"
        )
        order = ["Promoters (9–10)", "Passives (7–8)", "Detractors (0–6)"]
    elif by in (*PILLARS, "rq"):
        needed = [R.c[by].is_not(None)]
        name = "RQ" if by == "rq" else by.capitalize()
        cases = [(R.c[by] < upper, f"{name} {label}") for upper, label in PILLAR_BANDS if upper is not None]
        segment = sa.case(*cases, else_=f"{name} {PILLAR_BANDS[-1][1]}")
        order = [f"{name} {label}" for _, label in reversed(PILLAR_BANDS)]
    else:
        raise ValueError(f"A survey split is one of {', '.join(SURVEY_SPLITS)}, not {by!r}.")
    return _first_response(flt, needed, [segment.label("segment")], "placing_response"), order


def _first_response(flt: SegmentFilter, needed: list, columns: list, name: str) -> sa.Subquery:
    """Each customer's first response in ``flt`` meeting ``needed`` (the landmark): customer_id,
    day and ``columns``. Ties on ``submitted_at``: the smaller ``response_id`` comes first."""
    rank = sa.func.row_number().over(
        partition_by=R.c.customer_id, order_by=(R.c.submitted_at, R.c.response_id)
    )
    ranked = (
        sa.select(
            R.c.customer_id,
            sa.cast(R.c.submitted_at, sa.Date).label("day"),
            *columns,
            rank.label("rank"),
        )
        .where(flt.response_clause(), R.c.customer_id.is_not(None), *needed)
        .subquery("ranked_responses")
    )
    return sa.select(*[c for c in ranked.c if c.name != "rank"]).where(ranked.c.rank == 1).subquery(name)


def _landmark_status(first: sa.Subquery, life: sa.Subquery) -> sa.ColumnElement:
    return sa.case(
        (life.c.customer_id.is_(None), "unknown"),
        (sa.and_(life.c.churned == 1, life.c.end_day <= first.c.day), "churned_before"),
        else_="ok",
    )


def landmark_table(
    conn: Connection,
    flt: SegmentFilter = SegmentFilter(),
    by: str = QUADRANT,
    basis: Basis | None = None,
    spec=None,
) -> Landmark:
    """Weighted duration/event table of a survey split, from the landmark (Methodology page → Survival).

    Unit: the customer. Each customer is placed by their first response in the filter's period
    having the measure of ``by`` (a key of :data:`SURVEY_SPLITS`; ``spec`` sets the quadrant pair
    and thresholds); duration = days from that response's day to churn or the data's end.
    Columns: segment, duration, event, weight; ``left_out`` counts the customers not at risk.
    """
    basis = basis or churn_basis(conn)
    first, order = _placing_responses(flt, by, spec)
    life = lifetimes(
        SegmentFilter(customer=flt.customer, quadrant=flt.quadrant),
        basis,
        acquired_in_period=False,
        summarised=purchase_summary_ready(conn, basis),
    ).subquery("life")
    status = _landmark_status(first, life).label("status")
    duration = (life.c.end_day - first.c.day).label("duration")
    rows = conn.execute(
        sa.select(
            status,
            first.c.segment,
            duration,
            life.c.churned.label("event"),
            sa.func.count().label("weight"),
        )
        .select_from(first.outerjoin(life, life.c.customer_id == first.c.customer_id))
        .group_by(status, first.c.segment, duration, life.c.churned)
    ).all()
    frame = pd.DataFrame(rows, columns=["status", "segment", "duration", "event", "weight"])
    left_out = {key: int(frame.loc[frame["status"] == key, "weight"].sum()) for key in LEFT_OUT_REASONS}
    kept = frame[frame["status"] == "ok"].drop(columns="status")
    if kept.empty:
        return Landmark(_empty_durations(), left_out)
    kept = kept.astype({"segment": str, "duration": int, "event": int, "weight": int})
    rank = {name: i for i, name in enumerate(order)}
    kept = kept.assign(_o=kept["segment"].map(rank).fillna(len(rank)))
    kept = kept.sort_values(["_o", "segment", "duration", "event"]).drop(columns="_o").reset_index(drop=True)
    return Landmark(kept, left_out)


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
    # segment, customers, churned, median_months, median_low, median_high, survival_12m,
    # survival_12m_low, survival_12m_high, rmst_months, rmst_low, rmst_high
    summary: pd.DataFrame
    horizon_months: float  # restricted-mean horizon
    logrank_p: float | None = None
    logrank_statistic: float | None = None
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)  # a, b, statistic, p, q


def median_interval(kmf: KaplanMeierFitter) -> tuple[float, float, float]:
    """Median lifetime (days) with its Brookmeyer–Crowley 95% interval: the times whose 95% band
    (lifelines' exponential Greenwood, i.e. log(−log)) contains 0.5 -- R's
    ``survfit(conf.type = "log-log")``. Brookmeyer & Crowley (1982), Biometrics 38:29-41.
    ``inf`` where the curve or a band never falls to 0.5 (not reached)."""
    band = median_survival_times(kmf.confidence_interval_)
    low, high = (
        (float(band.iloc[0, 0]), float(band.iloc[0, 1]))
        if isinstance(band, pd.DataFrame)
        else (
            float(band),
            float(band),
        )
    )
    # The lower band reaches 0.5 first: it bounds the median from below.
    return float(kmf.median_survival_time_), min(low, high), max(low, high)


def _at(kmf: KaplanMeierFitter, day: float, followed_to: float) -> tuple[float, float, float]:
    """S(day) with its 95% band; NaN when nobody was followed that long."""
    if day > followed_to:
        return math.nan, math.nan, math.nan
    band = kmf.confidence_interval_survival_function_
    i = max(int(pd.Index(band.index).get_indexer([day], method="ffill")[0]), 0)
    return (
        float(kmf.survival_function_at_times([day]).iloc[0]),
        float(band.iloc[i, 0]),
        float(band.iloc[i, 1]),
    )


def _finite(x: float) -> float | None:
    return x / DAYS_PER_MONTH if np.isfinite(x) else None


def kaplan_meier(
    table: pd.DataFrame, max_segments: int = 8, grid_days: int = 7, keep_order: bool = False
) -> KaplanMeier:
    """Fit a KM curve per segment of a :func:`duration_table` or :func:`landmark_table`; curves
    are sampled every ``grid_days`` (so a chart stays far below 20k marks); the largest
    ``max_segments`` segments, largest first (in the table's order with ``keep_order``).

    The summary gives the median lifetime with its Brookmeyer–Crowley interval, survival at 12
    months with its band, and the restricted mean lifetime up to the shortest follow-up among the
    segments (so the segments' restricted means are comparable).
    """
    if table.empty:
        return KaplanMeier(_empty_curves(), pd.DataFrame(), float("nan"))
    sizes = table.groupby("segment", sort=False)["weight"].sum()
    keep = list(sizes.sort_values(ascending=False, kind="stable").index[:max_segments])
    if keep_order:
        keep = [s for s in sizes.index if s in keep]
    table = table[table["segment"].isin(keep)]
    tau = float(table.groupby("segment")["duration"].max().min())
    year = 12 * DAYS_PER_MONTH
    curves, summary = [], []
    for segment in keep:
        part = table[table["segment"] == segment]
        kmf = km_fit(part["duration"], part["event"], part["weight"], label=str(segment))
        longest = float(part["duration"].max())
        grid = np.arange(0, longest + grid_days, grid_days, dtype=float)
        grid = np.unique(np.append(np.minimum(grid, longest), 0.0))
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
        median, median_low, median_high = median_interval(kmf)
        s12, s12_low, s12_high = _at(kmf, year, longest)
        summary.append(
            {
                "segment": str(segment),
                "customers": int(part["weight"].sum()),
                "churned": int(part.loc[part["event"] == 1, "weight"].sum()),
                "median_months": _finite(median),
                "median_low": _finite(median_low),
                "median_high": _finite(median_high),
                "survival_12m": s12,
                "survival_12m_low": s12_low,
                "survival_12m_high": s12_high,
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


def cox_landmark(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), basis: Basis | None = None
) -> Landmark:
    """Cox's table, from the landmark: one row per customer placed by their first response in the
    period that has all three pillars -- customer_id, duration (days from that response's day to
    churn or the data's end), event, trust, commitment, satisfaction (0–100, from that response).

    Unit: the customer; origin: that survey. ``left_out`` counts customers churned on or before
    it (not at risk) and respondents the customer data do not know.
    """
    basis = basis or churn_basis(conn)
    first = _first_response(
        flt, [R.c[p].is_not(None) for p in PILLARS], [R.c[p] for p in PILLARS], "first_response"
    )
    life = lifetimes(
        SegmentFilter(customer=flt.customer, quadrant=flt.quadrant),
        basis,
        acquired_in_period=False,
        summarised=purchase_summary_ready(conn, basis),
    ).subquery("life")
    status = _landmark_status(first, life).label("status")
    frame = store.read_frame(  # a row per surveyed customer: handed over column by column
        conn,
        sa.select(
            status,
            first.c.customer_id,
            (life.c.end_day - first.c.day).label("duration"),
            life.c.churned.label("event"),
            *(first.c[p] for p in PILLARS),
        )
        .select_from(first.outerjoin(life, life.c.customer_id == first.c.customer_id))
        .order_by(first.c.customer_id),
    )
    left_out = (
        {key: int((frame["status"] == key).sum()) for key in LEFT_OUT_REASONS}
        if len(frame)
        else {key: 0 for key in LEFT_OUT_REASONS}
    )
    columns = ["customer_id", "duration", "event", *PILLARS]
    table = frame[frame["status"] == "ok"][columns] if len(frame) else pd.DataFrame(columns=columns)
    if len(table):
        table = table.astype({"duration": int, "event": int, **{p: float for p in PILLARS}})
    return Landmark(table.reset_index(drop=True), left_out)


def cox_table(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), basis: Basis | None = None
) -> pd.DataFrame:
    """The table of :func:`cox_landmark` without the left-out counts."""
    return cox_landmark(conn, flt, basis).table


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

CLV_RESAMPLES = 200
CLV_SEED = 20240601


def km_steps(durations: np.ndarray, events: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Product-limit survival on whole days: ``S[t]`` for t = 0 … max(durations), right-continuous
    (the events of day t included), as lifelines' KaplanMeierFitter gives at those days."""
    durations = np.asarray(durations, dtype=np.int64)
    weights = np.ones(len(durations)) if weights is None else np.asarray(weights, dtype=float)
    size = int(durations.max()) + 1 if len(durations) else 1
    died = np.bincount(durations, weights=weights * np.asarray(events, dtype=float), minlength=size)
    seen = np.bincount(durations, weights=weights, minlength=size)
    at_risk = np.cumsum(seen[::-1])[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, died / at_risk, 0.0)
    return np.cumprod(1.0 - hazard)


def _remaining_days(survival: np.ndarray, ages: np.ndarray, weights: np.ndarray, tau: int) -> float:
    """Weighted mean over ``ages`` (days) of the restricted mean residual lifetime
    ``∫_a^τ S(t) dt / S(a)`` of a daily step function ``survival`` (0 where S(a) = 0)."""
    tau = int(tau)
    s = np.concatenate([survival, np.full(max(tau + 1 - len(survival), 0), survival[-1])])[: tau + 1]
    area = np.concatenate([[0.0], np.cumsum(s[:tau])])  # area[t] = ∫_0^t S
    ages = np.minimum(ages.astype(np.int64), tau)
    s_at = s[ages]
    residual = np.where(s_at > 0, (area[tau] - area[ages]) / np.where(s_at > 0, s_at, 1.0), 0.0)
    total = weights.sum()
    return float((residual * weights).sum() / total) if total > 0 else math.nan


def _clv_figures(
    duration: np.ndarray, event: np.ndarray, revenue: np.ndarray, weight: np.ndarray, tau: int
) -> tuple[float, float, float]:
    """(revenue per customer-month, remaining months, remaining revenue) for weighted customers."""
    months = duration / DAYS_PER_MONTH
    exposure = float((months * weight).sum())
    per_month = float((revenue * weight).sum()) / exposure if exposure > 0 else math.nan
    active = event == 0
    if tau <= 0 or weight[active].sum() == 0:
        return per_month, math.nan, math.nan
    survival = km_steps(duration, event, weight)
    remaining = _remaining_days(survival, duration[active], weight[active], tau) / DAYS_PER_MONTH
    return per_month, remaining, per_month * remaining


def lifetime_value(
    conn: Connection,
    flt: SegmentFilter = SegmentFilter(),
    by: str | None = None,
    basis: Basis | None = None,
    resamples: int = CLV_RESAMPLES,
    seed: int = CLV_SEED,
) -> pd.DataFrame:
    """Historical revenue per customer and expected remaining lifetime and revenue by segment.

    Unit: the customer; origin: acquisition. Revenue: mean per customer with its t-interval.
    Remaining lifetime: for the segment's active customers at their current age a, the restricted
    mean residual lifetime ``∫_a^τ S(t) dt / S(a)`` from the segment's Kaplan–Meier curve, τ = the
    longest follow-up in the data, averaged over them. Expected remaining revenue (CLV ahead) =
    revenue per customer-month × that. Both get percentile intervals from ``resamples`` bootstrap
    resamples of the segment's customers (seeded).
    """
    basis = basis or churn_basis(conn)
    life = lifetimes(flt, basis, by=by, summarised=purchase_summary_ready(conn, basis)).subquery("life")
    rows = conn.execute(
        sa.select(
            life.c.segment,
            (life.c.end_day - life.c.start_day).label("duration"),
            life.c.churned,
            life.c.revenue,
        )
        .where(life.c.end_day >= life.c.start_day)
        .order_by(life.c.customer_id)  # a fixed order, so a seeded bootstrap draws the same customers
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
        "remaining_months_low",
        "remaining_months_high",
        "remaining_revenue",
        "remaining_revenue_low",
        "remaining_revenue_high",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    data = pd.DataFrame(rows, columns=["segment", "duration", "event", "revenue"])
    data = data.astype({"segment": str, "duration": np.int64, "event": np.int64, "revenue": float})
    tau = int(data["duration"].max())
    rng = np.random.default_rng(seed)
    records = []
    for segment, part in data.groupby("segment", sort=False):
        duration, event = part["duration"].to_numpy(), part["event"].to_numpy()
        revenue = part["revenue"].to_numpy()
        n = len(part)
        interval = stats.mean_interval(n, float(revenue.sum()), float((revenue * revenue).sum()))
        per_month, remaining, value = _clv_figures(duration, event, revenue, np.ones(n), tau)
        draws = (
            np.array(
                [
                    _clv_figures(
                        duration, event, revenue, np.bincount(rng.integers(0, n, n), minlength=n), tau
                    )[1:]
                    for _ in range(resamples)
                ]
            )
            if n >= 2 and np.isfinite(remaining)
            else np.full((1, 2), np.nan)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-NaN columns when nobody is active in a resample
            low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)
        records.append(
            (
                segment,
                n,
                interval.estimate,
                interval.low,
                interval.high,
                int((event == 0).sum()),
                per_month,
                remaining,
                low[0],
                high[0],
                value,
                low[1],
                high[1],
            )
        )
    return (
        pd.DataFrame(records, columns=columns)
        .sort_values("customers", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------- tables for the page


def _with_interval(estimate, low, high, fmt) -> str:
    if estimate is None or pd.isna(estimate):
        return "–"
    bounds = [("–" if x is None or pd.isna(x) else fmt(x)) for x in (low, high)]
    return f"{fmt(estimate)} [{bounds[0]}, {bounds[1]}]"


def _months(x: float) -> str:
    return f"{x:.1f}"


def _share(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_table(summary: pd.DataFrame, horizon_months: float, min_n: int = 30) -> pd.DataFrame:
    """A :class:`KaplanMeier` summary as shown: estimates with their 95% intervals in words."""
    if summary.empty:
        return pd.DataFrame()
    median = [
        "not reached" + (f" [{_months(lo)}, –]" if lo is not None and pd.notna(lo) else "")
        if m is None or pd.isna(m)
        else _with_interval(m, lo, hi if hi is not None and pd.notna(hi) else None, _months)
        for m, lo, hi in zip(
            summary["median_months"], summary["median_low"], summary["median_high"], strict=True
        )
    ]
    return pd.DataFrame(
        {
            "segment": summary["segment"],
            "customers": summary["customers"],
            "churned": summary["churned"],
            "median lifetime, months [95% CI]": median,
            "still a customer at 12 months [95% CI]": [
                _with_interval(s, lo, hi, _share)
                for s, lo, hi in zip(
                    summary["survival_12m"],
                    summary["survival_12m_low"],
                    summary["survival_12m_high"],
                    strict=True,
                )
            ],
            f"restricted mean, first {horizon_months:.0f} months [95% CI]": [
                _with_interval(m, lo, hi, _months)
                for m, lo, hi in zip(
                    summary["rmst_months"], summary["rmst_low"], summary["rmst_high"], strict=True
                )
            ],
            "note": ["small sample" if n < min_n else "" for n in summary["customers"]],
        }
    )


def hazard_sentences(cox: CoxResult) -> str:
    """One Markdown line per pillar: what 10 points more does to the churn hazard."""
    lines = []
    for row in cox.hazard_ratios.itertuples():
        change = (1 - row.hr) * 100
        word = "lower" if change > 0 else "higher"
        sure = "" if row.low > 1 or row.high < 1 else " (not significant)"
        lines.append(
            f"- **{row.pillar.capitalize()}**: 10 points higher → churn risk {abs(change):.0f}% {word} "
            f"(hazard ratio {row.hr:.2f}, 95% CI {row.low:.2f}–{row.high:.2f}){sure}."
        )
    return "\n".join(lines)


def lifetime_value_table(clv: pd.DataFrame) -> pd.DataFrame:
    """A :func:`lifetime_value` frame as shown: estimates with their 95% intervals."""

    def money(x: float) -> str:
        return f"{x:,.0f}"

    return pd.DataFrame(
        {
            "segment": clv["segment"],
            "customers": clv["customers"],
            "revenue per customer so far [95% CI]": [
                _with_interval(m, lo, hi, money)
                for m, lo, hi in zip(
                    clv["revenue_mean"], clv["revenue_low"], clv["revenue_high"], strict=True
                )
            ],
            "active": clv["active"],
            "revenue per customer-month": clv["revenue_per_month"].round(0),
            "expected remaining months [95% CI]": [
                _with_interval(m, lo, hi, _months)
                for m, lo, hi in zip(
                    clv["remaining_months"],
                    clv["remaining_months_low"],
                    clv["remaining_months_high"],
                    strict=True,
                )
            ],
            "expected remaining revenue per active customer [95% CI]": [
                _with_interval(m, lo, hi, money)
                for m, lo, hi in zip(
                    clv["remaining_revenue"],
                    clv["remaining_revenue_low"],
                    clv["remaining_revenue_high"],
                    strict=True,
                )
            ],
        }
    )
