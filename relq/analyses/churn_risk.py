"""Churn risk: each active customer's probability of churning within the next ``horizon`` days,
with the factors behind it in words, and an honest time-split backtest of how well it predicts.

Unit: the customer (the account); origin: a snapshot day. Everything a score uses is known on
that day -- the features are built in SQL from the data up to it (:func:`snapshot`):

- relationship quality at account level: the latest wave's mean trust, commitment and
  satisfaction over its respondents, the RQ change from the previous wave (the same respondents
  where they answered both), the latest wave's NPS (promoters − detractors), whether anyone answered;
- purchases: days since the last one (and the "no purchase in 90 days" rule itself), purchases
  and revenue in the last 12 months;
- support: tickets in the last 180 days, tickets open on the day, median first-response hours;
- tenure, plan, region and industry.

The model is lifelines' Cox proportional-hazards model fitted on stacked monthly snapshots
(a landmark "supermodel"): from each snapshot every active customer is followed for ``horizon``
days. The probability of churning within the horizon is ``1 − S₀(h)^exp(β·(x − x̄))``.

Backtest (:class:`Backtest`): the model is fitted only on snapshots whose follow-up ends by
T − horizon (T = the data's end), then scores the customers active at T − horizon and is compared
with who churned by T: C-index and AUC with bootstrap intervals over customers, Brier score,
calibration by decile, and the gain over the "no purchase in 90 days" rule alone with the
bootstrap interval of the difference. With fewer than :data:`MIN_EVENTS` churned customers in
a training window there is no model and no score, and the result says so.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from lifelines import CoxPHFitter
from scipy import sparse
from sqlalchemy.engine import Connection

from relq import store
from relq.analyses.dataquality import save_segment_quality
from relq.analyses.retention import (
    Basis,
    account_waves,
    churn_basis,
    save_account_waves,
    save_purchase_summary,
    save_segment_cohorts,
)
from relq.analyses.themes import save_theme_cells
from relq.core.settings import load_settings
from relq.measures import stats
from relq.measures.customer_sums import save_customer_totals, save_response_sums, save_segment_sums
from relq.measures.reliability import save_answer_rows, save_segment_items
from relq.store import schema
from relq.store.filters import SegmentFilter
from relq.store.latest import save_latest_pairs
from relq.store.schema import PILLARS
from relq.store.themes import save_theme_sums

__all__ = [
    "HORIZON_DAYS",
    "MIN_EVENTS",
    "RESAMPLES",
    "SEED",
    "FACTORS",
    "RiskModel",
    "Backtest",
    "RiskAssessment",
    "saved_scores",
    "save_scores",
    "todays_scores",
    "refresh_scores",
    "refresh_scores_in_background",
    "FITTING_IN_BACKGROUND",
    "snapshot",
    "snapshot_days",
    "fit_model",
    "score",
    "explain",
    "roc_auc",
    "concordance",
    "brier",
    "calibration_by_decile",
    "backtest",
    "assess",
    "scores_frame",
    "RISK_BANDS",
    "customer_ids",
    "in_view",
    "rank_at_risk",
    "score_lookup",
    "risk_bands",
]

HORIZON_DAYS = 90
MIN_EVENTS = 100  # churned customers a training window needs before any score is shown
SNAPSHOT_STEP_DAYS = 30
MAX_SNAPSHOTS = 6
MAX_TRAINING_ROWS = 150_000  # snapshots are stacked until this many customer-snapshots (at least one)
RESAMPLES = 200
SEED = 20240601
PENALIZER = 0.01  # a light ridge keeps rare plan/region/industry dummies finite

_log = logging.getLogger(__name__)
C, T, K, R = schema.customers, schema.transactions, schema.tickets, schema.survey_responses
CATEGORIES = ("plan", "region", "industry")
NUMERIC = (
    "log_tenure",
    "log_days_since_purchase",
    "quiet",
    "log_purchases_12m",
    "log_revenue_12m",
    "log_tickets_180d",
    "open_tickets",
    "log_first_response_hours",
    "surveyed",
    "trust_10",
    "commitment_10",
    "satisfaction_10",
    "rq_change_10",
    "nps_net_10",
)
# A factor in words groups the model columns it moves.
FACTORS: dict[str, tuple[str, ...]] = {
    "trust": ("trust_10",),
    "commitment": ("commitment_10",),
    "satisfaction": ("satisfaction_10",),
    "rq_change": ("rq_change_10",),
    "nps": ("nps_net_10",),
    "no_survey": ("surveyed",),
    "recency": ("log_days_since_purchase", "quiet"),
    "frequency": ("log_purchases_12m",),
    "value": ("log_revenue_12m",),
    "tickets": ("log_tickets_180d",),
    "open_tickets": ("open_tickets",),
    "response_time": ("log_first_response_hours",),
    "tenure": ("log_tenure",),
    "plan": (),
    "region": (),
    "industry": (),
}


# --------------------------------------------------------------------------- features (SQL)


def snapshot(
    conn: Connection,
    as_of: date,
    horizon: int = HORIZON_DAYS,
    basis: Basis | None = None,
    labelled: bool = True,
    flt: SegmentFilter = SegmentFilter(),
) -> pd.DataFrame:
    """The customers active on ``as_of`` with their features from the data up to that day.

    One row per customer: customer_id, company, owner, plan, region, industry, annual_value,
    tenure_days, days_since_purchase, purchases_12m, revenue_12m, tickets_180d, open_tickets,
    first_response_hours, surveyed, trust, commitment, satisfaction (latest wave's means),
    rq_change, nps_net (latest wave), wave_latest; with ``labelled`` also ``event`` (churned within
    (as_of, as_of + horizon]) and ``duration`` (days to that churn, else ``horizon``).
    Active and churned follow :func:`relq.analyses.retention.churn_basis`. ``flt``'s customer
    dimensions choose the customers; its period does not apply (the day is ``as_of``).
    """
    basis = basis or churn_basis(conn)
    horizon = _check_horizon(horizon)
    cutoff = datetime.combine(as_of + timedelta(days=1), time.min)
    year_ago, half_year = cutoff - timedelta(days=365), cutoff - timedelta(days=180)
    day = sa.literal(as_of, sa.Date)
    before = T.c.occurred_at < cutoff
    last_year = sa.and_(T.c.occurred_at >= year_ago, before)
    purchase_columns = [
        T.c.customer_id,
        sa.func.min(T.c.occurred_at).label("first_at"),
        sa.func.max(sa.case((before, T.c.occurred_at))).label("last_at"),
        sa.func.count(sa.case((last_year, 1))).label("purchases_12m"),
        sa.func.sum(sa.case((last_year, T.c.amount))).label("revenue_12m"),
    ]
    if labelled and basis.kind == "inactivity":
        later = T.c.occurred_at < cutoff + timedelta(days=horizon)
        purchase_columns.append(sa.func.max(sa.case((later, T.c.occurred_at))).label("last_at_horizon"))
    purchases = sa.select(*purchase_columns).group_by(T.c.customer_id).subquery("purchases")

    opened = K.c.opened_at < cutoff
    hours = sa.cast(sa.extract("epoch", K.c.first_response_at - K.c.opened_at), sa.Float) / 3600.0
    answered_in_year = sa.and_(K.c.opened_at >= year_ago, opened, K.c.first_response_at < cutoff)
    tickets = (
        sa.select(
            K.c.customer_id,
            sa.func.count(sa.case((K.c.opened_at >= half_year, 1))).label("tickets_180d"),
            sa.func.count(sa.case((sa.or_(K.c.resolved_at.is_(None), K.c.resolved_at >= cutoff), 1))).label(
                "open_tickets"
            ),
            sa.cast(
                sa.func.percentile_cont(sa.literal_column("0.5")).within_group(
                    sa.case((answered_in_year, hours))
                ),
                sa.Float,
            ).label("first_response_hours"),
        )
        .where(opened)
        .group_by(K.c.customer_id)
        .subquery("support")
    )
    waves = account_waves(R.c.submitted_at < cutoff)

    customer_id = sa.func.coalesce(C.c.customer_id, purchases.c.customer_id)
    start_day = sa.func.coalesce(C.c.acquired_at, sa.cast(purchases.c.first_at, sa.Date))
    last_day = sa.func.coalesce(sa.cast(purchases.c.last_at, sa.Date), start_day)
    if basis.kind == "contract":
        active = sa.or_(C.c.churned_at.is_(None), C.c.churned_at > day)
        churn_day = C.c.churned_at
    else:
        active = last_day + sa.literal(basis.inactive_days, sa.Integer) > day
        last_by_horizon = (
            sa.func.coalesce(sa.cast(purchases.c.last_at_horizon, sa.Date), start_day) if labelled else None
        )
        churn_day = last_by_horizon + sa.literal(basis.inactive_days, sa.Integer) if labelled else None
    pairs = sa.cast(waves.c.pairs, sa.Float)
    rq_change = sa.case(
        (waves.c.pairs > 0, (waves.c.p1 - waves.c.p2) / pairs),
        (sa.and_(waves.c.n1 > 0, waves.c.n2 > 0), waves.c.s1 / waves.c.n1 - waves.c.s2 / waves.c.n2),
        else_=sa.null(),
    )
    nps_net = sa.case(
        (
            waves.c.nps_answers > 0,
            100.0
            * sa.cast(waves.c.promoters - waves.c.detractors, sa.Float)
            / sa.cast(waves.c.nps_answers, sa.Float),
        ),
        else_=sa.null(),
    )
    columns = [
        customer_id.label("customer_id"),
        C.c.company,
        C.c.owner,
        C.c.plan,
        C.c.region,
        C.c.industry,
        C.c.annual_value,
        (day - start_day).label("tenure_days"),
        (day - last_day).label("days_since_purchase"),
        sa.func.coalesce(purchases.c.purchases_12m, 0).label("purchases_12m"),
        sa.func.coalesce(purchases.c.revenue_12m, 0.0).label("revenue_12m"),
        sa.func.coalesce(tickets.c.tickets_180d, 0).label("tickets_180d"),
        sa.func.coalesce(tickets.c.open_tickets, 0).label("open_tickets"),
        tickets.c.first_response_hours,
        sa.case((waves.c.customer_id.is_not(None), 1), else_=0).label("surveyed"),
        *(waves.c[f"{p}_latest"].label(p) for p in PILLARS),
        rq_change.label("rq_change"),
        nps_net.label("nps_net"),
        waves.c.wave_latest,
    ]
    if labelled:
        horizon_end = sa.literal(as_of + timedelta(days=horizon), sa.Date)
        event = sa.and_(churn_day.is_not(None), churn_day <= horizon_end)
        columns += [
            sa.case((event, 1), else_=0).label("event"),
            sa.case((event, churn_day - day), else_=horizon).label("duration"),
        ]
    query = (
        sa.select(*columns)
        .select_from(
            C.join(purchases, purchases.c.customer_id == C.c.customer_id, full=True)
            .outerjoin(tickets, tickets.c.customer_id == customer_id)
            .outerjoin(waves, waves.c.customer_id == customer_id)
        )
        .where(start_day.is_not(None), start_day <= day, active, flt.customer_clause())
    )
    frame = store.read_frame(conn, query)
    # A fixed order, so the fit and a seeded bootstrap see the same rows in the same order.
    return _typed(frame).sort_values("customer_id", kind="stable").reset_index(drop=True)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    numeric = (
        "annual_value",
        "tenure_days",
        "days_since_purchase",
        "purchases_12m",
        "revenue_12m",
        "tickets_180d",
        "open_tickets",
        "first_response_hours",
        "surveyed",
        *PILLARS,
        "rq_change",
        "nps_net",
    )
    for name in numeric:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    for name in ("event", "duration"):
        if name in frame:
            frame[name] = frame[name].astype(int)
    for name in CATEGORIES:
        frame[name] = frame[name].fillna("(not set)").astype(str)
    return frame


def _check_horizon(horizon: int) -> int:
    horizon = int(horizon)
    if not 7 <= horizon <= 730:
        raise ValueError(f"The horizon must be between 7 and 730 days, not {horizon}.")
    return horizon


def snapshot_days(end: date, horizon: int, first_label_end: date | None = None) -> list[date]:
    """Training snapshot days whose follow-up ends by ``end``: end − horizon, then a month
    earlier each, at most :data:`MAX_SNAPSHOTS`, none before ``first_label_end`` − horizon."""
    days = [end - timedelta(days=horizon + SNAPSHOT_STEP_DAYS * k) for k in range(MAX_SNAPSHOTS)]
    if first_label_end is not None:
        days = [d for d in days if d >= first_label_end]
    return days


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class RiskModel:
    """A fitted churn-risk model: Cox coefficients on the design columns and what scoring needs."""

    horizon: int
    columns: tuple[str, ...]  # design columns, in order
    coefficients: np.ndarray  # per design column (log hazard ratio per unit)
    centre: np.ndarray  # the design's column means at fit (lifelines centres on them)
    baseline_survival: float  # S₀(horizon) at the centre
    medians: dict[str, float]  # imputation values for missing features (training medians)
    levels: dict[str, tuple[str, ...]]  # category → levels with a dummy (the first is the reference)
    training_days: tuple[date, ...]
    training_rows: int
    training_customers: int
    training_events: int  # customers who churned within a training window

    def hazard_ratios(self) -> pd.DataFrame:
        """column, coefficient, hazard_ratio per unit of each design column."""
        return pd.DataFrame(
            {
                "column": self.columns,
                "coefficient": self.coefficients,
                "hazard_ratio": np.exp(self.coefficients),
            }
        )


def _transformed(frame: pd.DataFrame, medians: dict[str, float], at_risk_days: int) -> pd.DataFrame:
    """The numeric design columns of a snapshot (missing values imputed with ``medians``)."""
    out = pd.DataFrame(index=frame.index)
    out["log_tenure"] = np.log1p(frame["tenure_days"].clip(lower=0) / 30.4375)
    out["log_days_since_purchase"] = np.log1p(frame["days_since_purchase"].clip(lower=0, upper=730))
    out["quiet"] = (frame["days_since_purchase"] > at_risk_days).astype(float)
    out["log_purchases_12m"] = np.log1p(frame["purchases_12m"])
    out["log_revenue_12m"] = np.log1p(frame["revenue_12m"].clip(lower=0))
    out["log_tickets_180d"] = np.log1p(frame["tickets_180d"])
    out["open_tickets"] = frame["open_tickets"].clip(upper=5)
    out["log_first_response_hours"] = np.log1p(frame["first_response_hours"])
    out["surveyed"] = frame["surveyed"]
    for p in PILLARS:
        out[f"{p}_10"] = frame[p] / 10.0
    out["rq_change_10"] = frame["rq_change"] / 10.0
    out["nps_net_10"] = frame["nps_net"] / 10.0
    for name, value in medians.items():
        out[name] = out[name].fillna(value)
    return out


def _design(frame: pd.DataFrame, model_medians, levels, at_risk_days: int) -> pd.DataFrame:
    out = _transformed(frame, model_medians, at_risk_days)
    dummies = {}
    for category, values in levels.items():
        # One hash pass per category, not one comparison per level; rare values code as −1 (the reference).
        codes = pd.Categorical(frame[category], categories=list(values)).codes
        for i, value in enumerate(values[1:], start=1):
            dummies[f"{category}={value}"] = (codes == i).astype(float)
    return pd.concat([out, pd.DataFrame(dummies, index=frame.index)], axis=1) if dummies else out


def _medians(frame: pd.DataFrame, at_risk_days: int) -> dict[str, float]:
    raw = _transformed(frame, {}, at_risk_days)
    medians = {}
    for name in raw.columns:
        value = raw[name].median()
        medians[name] = 0.0 if pd.isna(value) else float(value)
    medians["rq_change_10"] = 0.0  # no previous wave: no change
    return medians


def fit_model(
    training: pd.DataFrame, horizon: int, at_risk_days: int, training_days=(), min_events: int = MIN_EVENTS
) -> RiskModel | str:
    """Fit lifelines' CoxPHFitter on stacked snapshots (rows: :func:`snapshot` with labels).

    Returns the model, or a sentence saying why there is none (too few churned customers).
    """
    events = int(training.loc[training["event"] == 1, "customer_id"].nunique()) if len(training) else 0
    if events < min_events:
        return (
            f"Only {events:,} customers churned within {horizon} days of a training snapshot (at least "
            f"{min_events} are needed), so there is no churn-risk score."
        )
    medians = _medians(training, at_risk_days)
    levels = {}
    for category in CATEGORIES:
        counts = training[category].value_counts()
        kept = [v for v, n in counts.items() if n >= 20]  # rare values join the reference
        levels[category] = tuple(kept) if len(kept) >= 2 else ()
    design = _design(training, medians, levels, at_risk_days)
    design = design.loc[:, design.std() > 0]
    # Weeks, not days: Efron's tie handling costs per distinct time, and the hazard ratios agree
    # to three decimals on the demo; the horizon's last (partial) week ends the window.
    weeks = np.ceil(training["duration"].clip(lower=1) / 7.0)
    data = design.assign(duration=weeks, event=training["event"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on a ridge-penalised fit
        cph = CoxPHFitter(penalizer=PENALIZER).fit(data, duration_col="duration", event_col="event")
    columns = tuple(design.columns)
    coefficients = cph.params_.reindex(columns).to_numpy(float)
    centre = design.mean().to_numpy(float)
    baseline = cph.baseline_survival_.iloc[:, 0]
    last_week = math.ceil(horizon / 7.0)
    s0 = float(baseline[baseline.index <= last_week].iloc[-1]) if (baseline.index <= last_week).any() else 1.0
    return RiskModel(
        horizon=horizon,
        columns=columns,
        coefficients=coefficients,
        centre=centre,
        baseline_survival=s0,
        medians=medians,
        levels=levels,
        training_days=tuple(training_days),
        training_rows=len(training),
        training_customers=int(training["customer_id"].nunique()),
        training_events=events,
    )


def _linear_predictor(
    model: RiskModel, frame: pd.DataFrame, at_risk_days: int
) -> tuple[np.ndarray, pd.DataFrame]:
    design = _design(frame, model.medians, model.levels, at_risk_days)
    design = design.reindex(columns=list(model.columns), fill_value=0.0)
    return (design.to_numpy(float) - model.centre) @ model.coefficients, design


def score(model: RiskModel, frame: pd.DataFrame, at_risk_days: int | None = None) -> np.ndarray:
    """Probability of churning within the model's horizon for each row of a :func:`snapshot`:
    ``1 − S₀(h)^exp(β·(x − x̄))`` (lifelines' ``predict_survival_function`` at h)."""
    at_risk_days = int(at_risk_days or load_settings().at_risk_days)
    lp, _ = _linear_predictor(model, frame, at_risk_days)
    return 1.0 - np.power(model.baseline_survival, np.exp(lp))


# --------------------------------------------------------------------------- factors in words


def _money(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.1f} M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:,.1f} k"
    return f"{value:,.0f}"


def _whole(values: np.ndarray, signed: bool = False) -> np.ndarray:
    """Numbers as whole-number strings, rounded half to even like ``f"{x:.0f}"`` (``+`` with ``signed``)."""
    rounded = np.round(np.asarray(values, dtype=float))
    known = np.isfinite(rounded)
    text = np.abs(np.where(known, rounded, 0)).astype(np.int64).astype(str).astype(object)
    sign = np.where(rounded < 0, "-", "+" if signed else "").astype(object)
    return np.where(known, sign + text, "–")


def _factor_words(name: str, x: np.ndarray, ref: np.ndarray, category: np.ndarray) -> np.ndarray:
    """One factor in words for many customers, each value against their reference (the plan's median)."""
    n = len(x)
    if name in PILLARS:
        gap = x - ref
        side = np.where(gap < 0, " points below", " points above").astype(object)
        return f"{name} " + _whole(np.abs(gap)) + side + " the plan's median"
    if name == "rq_change":
        return (
            "RQ changed "
            + _whole(x, True)
            + " points since the previous wave (plan's median "
            + _whole(ref, True)
            + ")"
        )
    if name == "nps":
        return (
            "account NPS " + _whole(x, True) + " in its latest wave (plan's median " + _whole(ref, True) + ")"
        )
    if name == "no_survey":
        return np.full(n, "no survey answer yet", dtype=object)
    if name == "recency":
        return "no purchase for " + _whole(x) + " days (plan's median " + _whole(ref) + ")"
    if name == "frequency":
        return _whole(x) + " purchases in 12 months (plan's median " + _whole(ref) + ")"
    if name == "value":
        money = np.array(
            [
                f"revenue {_money(a)} in 12 months (plan's median {_money(b)})"
                for a, b in zip(x, ref, strict=True)
            ]
        )
        return money.astype(object)
    if name == "tickets":
        return _whole(x) + " support tickets in 180 days (plan's median " + _whole(ref) + ")"
    if name == "open_tickets":
        return _whole(x) + np.where(np.round(x) == 1, " open support ticket", " open support tickets").astype(
            object
        )
    if name == "response_time":
        return "first responses took " + _whole(x) + " h (plan's median " + _whole(ref) + " h)"
    if name == "tenure":
        return (
            "a customer for " + _whole(x / 30.4375) + " months (plan's median " + _whole(ref / 30.4375) + ")"
        )
    if name == "plan":
        return "on the " + category.astype(object) + " plan (vs the average customer)"
    return "in " + category.astype(object) + " (vs the average customer)"


_RAW = {
    "trust": "trust",
    "commitment": "commitment",
    "satisfaction": "satisfaction",
    "rq_change": "rq_change",
    "nps": "nps_net",
    "recency": "days_since_purchase",
    "frequency": "purchases_12m",
    "value": "revenue_12m",
    "tickets": "tickets_180d",
    "open_tickets": "open_tickets",
    "response_time": "first_response_hours",
    "tenure": "tenure_days",
}


def explain(
    model: RiskModel,
    frame: pd.DataFrame,
    top: int = 3,
    at_risk_days: int | None = None,
    design: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each customer's top factors raising their risk, in words with their hazard change.

    A factor's contribution is ``β·(x − x_ref)`` summed over its design columns, where ``x_ref`` is
    the median among the customers of the same plan in ``frame`` (for plan, region and industry:
    the average customer's). "trust 18 points below the plan's median: +40 % hazard" means that
    difference alone multiplies the hazard by 1.40. For a customer without a survey answer the
    imputed survey columns are counted under "no survey answer yet". Returns factor_1 … factor_top
    and ``factors`` (them joined by "; "), indexed like ``frame``.
    """
    at_risk_days = int(at_risk_days or load_settings().at_risk_days)
    if design is None:
        _, design = _linear_predictor(model, frame, at_risk_days)
    columns = {name: i for i, name in enumerate(model.columns)}
    x = design.to_numpy(float)
    # The reference customer of each plan: the plan's median of every raw feature (over those who
    # have it), surveyed, transformed exactly as the customer's own values.
    raw_columns = list(_RAW.values())
    reference = frame[[*raw_columns, "surveyed"]].copy()
    reference[raw_columns] = frame.groupby("plan", sort=False)[raw_columns].transform("median")
    reference["surveyed"] = 1.0
    numeric = _transformed(reference, model.medians, at_risk_days)
    unsurveyed = (frame["surveyed"] == 0).to_numpy()
    contributions = {}
    for name, cols in FACTORS.items():
        if name in CATEGORIES:
            dummies = [columns[c] for c in model.columns if c.startswith(f"{name}=")]
            if not dummies:
                continue
            effect = x[:, dummies] @ model.coefficients[dummies]
            contributions[name] = effect - effect.mean()
            continue
        total = np.zeros(len(frame))
        for c in cols:
            if c in columns:
                i = columns[c]
                total += model.coefficients[i] * (x[:, i] - numeric[c].to_numpy(float))
        contributions[name] = total
    survey_part = sum(contributions[n] for n in ("trust", "commitment", "satisfaction", "rq_change", "nps"))
    contributions["no_survey"] = np.where(unsurveyed, contributions["no_survey"] + survey_part, 0.0)
    for n in ("trust", "commitment", "satisfaction", "rq_change", "nps"):
        contributions[n] = np.where(unsurveyed, 0.0, contributions[n])
    for name, column in _RAW.items():  # an imputed value explains nothing about this customer
        contributions[name] = np.where(frame[column].isna().to_numpy(), 0.0, contributions[name])
    names = list(contributions)
    matrix = np.column_stack([contributions[n] for n in names])
    order = np.argsort(-matrix, axis=1)[:, :top]
    raw_refs = {name: reference[column].to_numpy(float) for name, column in _RAW.items()}
    raw_values = {name: frame[column].to_numpy(float) for name, column in _RAW.items()}
    nothing = np.full(len(frame), np.nan)
    out = pd.DataFrame(index=frame.index)
    rows = np.arange(len(frame))
    texts = []
    for slot in range(top):
        chosen = order[:, slot]
        c = matrix[rows, chosen]
        shown = c > math.log(1.05)  # under +5 % hazard: not worth a line
        text = np.full(len(frame), "", dtype=object)
        for j, name in enumerate(names):
            at = np.flatnonzero(shown & (chosen == j))
            if not len(at):
                continue
            category = (
                frame[name].to_numpy(object)[at] if name in CATEGORIES else np.full(len(at), "", dtype=object)
            )
            words = _factor_words(
                name, raw_values.get(name, nothing)[at], raw_refs.get(name, nothing)[at], category
            )
            text[at] = words + ": " + _whole(100 * np.expm1(c[at]), True) + " % hazard"
        texts.append(text)
    for slot in range(top):
        out[f"factor_{slot + 1}"] = texts[slot]
    out["factors"] = [
        "; ".join(t for t in parts if t) for parts in zip(*(t.tolist() for t in texts), strict=True)
    ]
    out.loc[out["factors"] == "", "factors"] = "nothing stands out against the plan's typical customer"
    return out


# --------------------------------------------------------------------------- metrics


def _weights(n: int, weights) -> np.ndarray:
    return np.ones(n) if weights is None else np.asarray(weights, dtype=float)


def _by_bucket(weights: np.ndarray, bucket: np.ndarray, size: int) -> np.ndarray:
    """Rows of customer weights (replicates × customers) summed per bucket: replicates × size."""
    matrix = sparse.csr_matrix(
        (np.ones(len(bucket)), (np.arange(len(bucket)), bucket)), shape=(len(bucket), size)
    )
    return np.asarray((matrix.T @ weights.T).T)


def _auc_many(y: np.ndarray, score_: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`roc_auc` for each row of ``weights`` (replicates × customers)."""
    groups, rank = np.unique(np.asarray(score_, dtype=float), return_inverse=True)
    pos = _by_bucket(weights * y, rank, len(groups))
    neg = _by_bucket(weights * (1 - y), rank, len(groups))
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / total, np.nan)


def roc_auc(y: np.ndarray, score_: np.ndarray, weights=None) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count one half), weighted per customer.
    Reference: scikit-learn ``roc_auc_score(y, score, sample_weight=weights)``."""
    y = np.asarray(y, dtype=float)
    return float(_auc_many(y, score_, _weights(len(y), weights)[None, :])[0])


class _Concordance:
    """Harrell's C-index of one risk score, ready to be evaluated under many customer weightings
    (the bootstrap): times and risk order are sorted once."""

    def __init__(self, durations, risk, events):
        self.events = np.asarray(events).astype(bool)
        risk = np.asarray(risk, dtype=float)
        times, t_index = np.unique(np.asarray(durations, dtype=float), return_inverse=True)
        # Only the order relative to the churners' risks matters: bucket 2q holds the risks between
        # the q-th and (q+1)-th distinct churner risk, bucket 2q+1 the risks equal to the latter.
        churner_risks = np.unique(risk[self.events])
        k = np.searchsorted(churner_risks, risk, side="left")
        equal = (k < len(churner_risks)) & (churner_risks[np.minimum(k, len(churner_risks) - 1)] == risk)
        self.bucket = 2 * k + equal.astype(int)
        self.size = 2 * len(churner_risks) + 1
        order = np.argsort(t_index, kind="stable")
        bounds = np.searchsorted(t_index[order], np.arange(len(times) + 1))
        blocks = [order[bounds[t] : bounds[t + 1]] for t in range(len(times) - 1, -1, -1)]
        self.blocks = [(b, b[self.events[b]], b[~self.events[b]]) for b in blocks]

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """The C-index for each row of ``weights`` (replicates × customers)."""
        w = np.atleast_2d(weights)
        later = np.zeros((len(w), self.size))  # weight per risk bucket of everyone followed beyond t
        correct = np.zeros(len(w))
        pairs = np.zeros(len(w))
        for block, died, gone in self.blocks:
            if len(died):
                comparable = later + _by_bucket(w[:, gone], self.bucket[gone], self.size)
                below = np.cumsum(comparable, axis=1) - comparable
                wd, bd = w[:, died], self.bucket[died]
                correct += (wd * (below[:, bd] + 0.5 * comparable[:, bd])).sum(axis=1)
                pairs += wd.sum(axis=1) * comparable.sum(axis=1)
            later += _by_bucket(w[:, block], self.bucket[block], self.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, correct / pairs, np.nan)


def concordance(durations: np.ndarray, risk: np.ndarray, events: np.ndarray, weights=None) -> float:
    """Harrell's C-index of a risk score (higher = churns sooner), weighted per customer.

    Comparable pairs: an event at t with anyone followed beyond t, or censored at t; concordant
    when the one who churned first has the higher risk; risk ties count one half.
    Reference: lifelines ``concordance_index(durations, -risk, events)``.
    """
    w = _weights(len(durations), weights)
    return float(_Concordance(durations, risk, events)(w[None, :])[0])


def brier(y: np.ndarray, p: np.ndarray, weights=None) -> float:
    """Mean squared error of the probabilities. Reference: scikit-learn ``brier_score_loss``."""
    w = _weights(len(y), weights)
    return float((w * (np.asarray(p, float) - np.asarray(y, float)) ** 2).sum() / w.sum())


def calibration_by_decile(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Customers in tenths of predicted risk: decile, customers, predicted (mean), observed share
    churned with its Wilson 95% interval (low, high)."""
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, 10)
    rows = []
    for i, idx in enumerate(bins, start=1):
        if len(idx) == 0:
            continue
        observed = stats.wilson_interval(int(np.asarray(y)[idx].sum()), len(idx))
        rows.append((i, len(idx), float(np.mean(p[idx])), observed.estimate, observed.low, observed.high))
    return pd.DataFrame(rows, columns=["decile", "customers", "predicted", "observed", "low", "high"])


@dataclass(frozen=True)
class Metric:
    """A backtest figure with its bootstrap 95% percentile interval."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "ci": [self.low, self.high]}


def _metric(estimate: float, draws: np.ndarray) -> Metric:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return Metric(estimate, math.nan, math.nan)
    low, high = np.percentile(draws, [2.5, 97.5])
    return Metric(float(estimate), float(low), float(high))


# --------------------------------------------------------------------------- backtest


@dataclass(frozen=True)
class Backtest:
    """How well the model fitted up to T − horizon predicted who churned by T."""

    as_of: date  # T − horizon: the day the held-out customers are scored
    end: date  # T
    customers: int
    churned: int
    auc: Metric
    concordance: Metric
    brier: Metric
    rule_auc: Metric
    rule_concordance: Metric
    rule_brier: Metric
    auc_gain: Metric  # model − rule
    concordance_gain: Metric
    brier_gain: Metric  # rule − model (positive = model better)
    rule_flagged: int  # customers the rule flags at T − horizon
    rule_caught: int  # of them, churned by T
    model_caught: int  # churned among the model's riskiest rule_flagged customers
    caught_gain: Metric  # model_caught − rule_caught
    top_decile_lift: Metric  # churn share in the riskiest tenth / overall churn share
    calibration: pd.DataFrame
    resamples: int
    seed: int
    model: RiskModel

    def as_dict(self) -> dict:
        metrics = {
            name: getattr(self, name).as_dict()
            for name in (
                "auc",
                "concordance",
                "brier",
                "rule_auc",
                "rule_concordance",
                "rule_brier",
                "auc_gain",
                "concordance_gain",
                "brier_gain",
                "caught_gain",
                "top_decile_lift",
            )
        }
        return {
            "as_of": self.as_of.isoformat(),
            "end": self.end.isoformat(),
            "customers": self.customers,
            "churned": self.churned,
            **metrics,
            "rule_flagged": self.rule_flagged,
            "rule_caught": self.rule_caught,
            "model_caught": self.model_caught,
            "calibration": self.calibration.to_dict("records"),
            "resamples": self.resamples,
            "seed": self.seed,
            "training_days": [d.isoformat() for d in self.model.training_days],
            "training_customers": self.model.training_customers,
            "training_events": self.model.training_events,
        }


def backtest(
    model: RiskModel,
    held_out: pd.DataFrame,
    rule_rates: tuple[float, float],
    at_risk_days: int,
    as_of: date,
    end: date,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Backtest:
    """Score ``held_out`` (a labelled :func:`snapshot` on ``as_of``) and compare with who churned.

    The rule alone ("no purchase in ``at_risk_days`` days") predicts the churn share its group had
    in the training snapshots (``rule_rates`` = (quiet, not quiet)). Intervals: percentile
    bootstrap over the held-out customers, the model and the rule on the same resamples.
    """
    y = held_out["event"].to_numpy(float)
    durations = held_out["duration"].to_numpy(float)
    p = score(model, held_out, at_risk_days)
    quiet = (held_out["days_since_purchase"] > at_risk_days).to_numpy(float)
    rule_p = np.where(quiet == 1, rule_rates[0], rule_rates[1])
    n = len(y)
    top = np.argsort(-p, kind="stable")
    model_c, rule_c = _Concordance(durations, p, y), _Concordance(durations, rule_p, y)

    def figures(w: np.ndarray) -> np.ndarray:
        """Every figure for each row of customer weights: replicates × 13."""
        auc, rule_auc = _auc_many(y, p, w), _auc_many(y, rule_p, w)
        c, c_rule = model_c(w), rule_c(w)
        total = w.sum(axis=1)
        b, b_rule = (w @ (p - y) ** 2) / total, (w @ (rule_p - y) ** 2) / total
        caught_rule = w @ (y * quiet)
        # the model's riskiest customers, as many (by weight) as the rule flags; the riskiest tenth
        cum = np.cumsum(w[:, top], axis=1)
        caught_cum = np.cumsum((w * y)[:, top], axis=1)
        rows = np.arange(len(w))

        def caught_within(limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            k = (cum <= limit[:, None]).sum(axis=1)
            inside = np.where(k > 0, caught_cum[rows, np.maximum(k - 1, 0)], 0.0)
            return inside, np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], 0.0)

        caught_model, _ = caught_within(w @ quiet)
        tenth, tenth_weight = caught_within(total / 10)
        base = (w @ y) / total
        with np.errstate(invalid="ignore", divide="ignore"):
            lift = np.where((base > 0) & (tenth_weight > 0), tenth / tenth_weight / base, np.nan)
        return np.column_stack(
            [auc, c, b, rule_auc, c_rule, b_rule, auc - rule_auc, c - c_rule, b_rule - b,
             caught_model - caught_rule, lift, caught_model, caught_rule]
        )  # fmt: skip

    point = figures(np.ones((1, n)))[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))
    draws = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(size)]).astype(float)
        draws.append(figures(w))
    draws = np.vstack(draws) if draws else np.full((1, 13), np.nan)
    m = [_metric(point[i], draws[:, i]) for i in range(11)]
    flagged = int(quiet.sum())
    return Backtest(
        as_of=as_of,
        end=end,
        customers=n,
        churned=int(y.sum()),
        auc=m[0],
        concordance=m[1],
        brier=m[2],
        rule_auc=m[3],
        rule_concordance=m[4],
        rule_brier=m[5],
        auc_gain=m[6],
        concordance_gain=m[7],
        brier_gain=m[8],
        rule_flagged=flagged,
        rule_caught=int(point[12]),
        model_caught=int(point[11]),
        caught_gain=m[9],
        top_decile_lift=m[10],
        calibration=calibration_by_decile(y.astype(int), p),
        resamples=resamples,
        seed=seed,
        model=model,
    )


def _rule_rates(training: pd.DataFrame, at_risk_days: int) -> tuple[float, float]:
    quiet = training["days_since_purchase"] > at_risk_days
    rate = training.groupby(quiet)["event"].mean()
    overall = float(training["event"].mean())
    return float(rate.get(True, overall)), float(rate.get(False, overall))


# --------------------------------------------------------------------------- everything together


@dataclass(frozen=True)
class RiskAssessment:
    """The backtest, the model fitted on everything known, and today's scores (or why not)."""

    horizon: int
    end: date
    basis: Basis
    message: str = ""  # why there is no score, when there is none
    backtest: Backtest | None = None
    model: RiskModel | None = None
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    saved: bool = False  # read back from the store (saved_scores): the scores without their model

    @property
    def ok(self) -> bool:
        return self.model is not None and self.backtest is not None

    @property
    def scored(self) -> bool:
        """Today's customers have scores (the backtest may not have been run: current_scores)."""
        return self.model is not None or self.saved

    def as_dict(self, limit: int | None = None) -> dict:
        """The ``risk --json`` document."""
        scores = self.scores if limit is None else self.scores.head(limit)
        return {
            "horizon_days": self.horizon,
            "as_of": self.end.isoformat(),
            "basis": self.basis.kind,
            "message": self.message or None,
            "backtest": self.backtest.as_dict() if self.backtest else None,
            "model": None
            if self.model is None
            else {
                "kind": "Cox proportional hazards (lifelines), stacked monthly snapshots",
                "training_days": [d.isoformat() for d in self.model.training_days],
                "training_customers": self.model.training_customers,
                "training_events": self.model.training_events,
                "hazard_ratios": {
                    row.column: row.hazard_ratio for row in self.model.hazard_ratios().itertuples()
                },
            },
            "customers": len(self.scores),
            "scores": [
                {
                    "customer_id": row.customer_id,
                    "probability": float(row.probability),
                    "factors": [f for f in (row.factor_1, row.factor_2, row.factor_3) if f],
                }
                for row in scores.itertuples()
            ],
        }


SCORE_COLUMNS = [
    "customer_id",
    "company",
    "owner",
    "region",
    "plan",
    "annual_value",
    "probability",
    "factors",
    "factor_1",
    "factor_2",
    "factor_3",
    "days_since_purchase",
    "wave_latest",
]


def assess(
    conn: Connection,
    flt: SegmentFilter = SegmentFilter(),
    horizon: int = HORIZON_DAYS,
    basis: Basis | None = None,
    at_risk_days: int | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    min_events: int = MIN_EVENTS,
) -> RiskAssessment:
    """Backtest, fit and score (Methodology page → Churn risk).

    The model is fitted and backtested on every customer in the store; ``flt``'s customer
    dimensions choose whom the scores list. Scores: the customers active at the data's end,
    riskiest first, with their probability of churning within ``horizon`` days and top factors.
    """
    plan = _RiskPlan(conn, horizon, basis, at_risk_days)
    if plan.message:
        return plan.empty(plan.message)
    training, used = _stack(plan.labelled, plan.backtest_days)
    model = fit_model(training, plan.horizon, plan.at_risk_days, used, min_events)
    if isinstance(model, str):
        return plan.empty("Backtest: " + model)
    result = backtest(
        model,
        plan.labelled(plan.held_out_day),
        _rule_rates(training, plan.at_risk_days),
        plan.at_risk_days,
        plan.held_out_day,
        plan.basis.end,
        resamples,
        seed,
    )
    scored = plan.scores(flt, min_events)
    return replace(scored, backtest=result) if scored.model is not None else scored


def current_scores(
    conn: Connection,
    flt: SegmentFilter = SegmentFilter(),
    horizon: int = HORIZON_DAYS,
    basis: Basis | None = None,
    at_risk_days: int | None = None,
    min_events: int = MIN_EVENTS,
) -> RiskAssessment:
    """Today's scores from the model fitted on everything known, without the backtest — the same
    model and scores as :func:`assess` (whose backtest only says how well it predicted), for the
    lists that rank customers by risk. Unlike :func:`assess`, a backtest model that cannot be fitted
    (too few churners before the held-out day) does not withhold today's scores."""
    plan = _RiskPlan(conn, horizon, basis, at_risk_days)
    return plan.empty(plan.message) if plan.message else plan.scores(flt, min_events)


# --------------------------------------------------------------------------- stored scores

# Bump when the model, its features or the factor words change: scores saved by older code are
# then not read back.
SCORES_FORMAT = 1
_SAVED = schema.churn_scores
# The customer's own fields are joined from customers when read; the rest of a score is saved.
_JOINED = ("company", "owner", "region", "plan", "annual_value")
_SAVED_COLUMNS = tuple(c for c in SCORE_COLUMNS if c not in ("customer_id", *_JOINED))


def _recipe(horizon: int, at_risk_days: int, basis: Basis) -> str:
    """Everything besides the data that today's scores depend on."""
    return (
        f"format {SCORES_FORMAT}; horizon {horizon} days; at risk after {at_risk_days} days; "
        f"churn read by {basis.kind} ({basis.inactive_days} days); data end {basis.end.isoformat()}"
    )


def saved_scores(
    conn: Connection,
    version: int,
    horizon: int = HORIZON_DAYS,
    basis: Basis | None = None,
    at_risk_days: int | None = None,
) -> RiskAssessment | None:
    """Today's scores as :func:`save_scores` stored them for data version ``version`` and the same
    horizon, at-risk days and churn basis — the rows :func:`current_scores` gives, riskiest first,
    with the customers' company, owner, region, plan and annual value as stored now — else None."""
    horizon = _check_horizon(horizon)
    basis = basis or churn_basis(conn)
    at_risk_days = int(at_risk_days or load_settings().at_risk_days)
    mine = sa.and_(_SAVED.c.recipe == _recipe(horizon, at_risk_days, basis), _SAVED.c.data_version == version)
    header = conn.execute(sa.select(_SAVED.c.factors).where(mine, _SAVED.c.position == 0)).first()
    if header is None:
        return None
    if header.factors:  # there is no score, and this says why
        return RiskAssessment(horizon, basis.end, basis, header.factors)
    stmt = (
        sa.select(
            _SAVED.c.customer_id,
            *(C.c[name] for name in _JOINED),
            *(_SAVED.c[name] for name in _SAVED_COLUMNS),
        )
        .select_from(_SAVED.outerjoin(C, C.c.customer_id == _SAVED.c.customer_id))
        .where(mine, _SAVED.c.position > 0)
        .order_by(_SAVED.c.position)
    )
    frame = store.read_frame(conn, stmt)
    for name in ("annual_value", "probability", "days_since_purchase"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    for name in set(CATEGORIES) & set(_JOINED):  # as the snapshot reads them (_typed)
        frame[name] = frame[name].fillna("(not set)").astype(str)
    return RiskAssessment(horizon, basis.end, basis, "", scores=frame[SCORE_COLUMNS], saved=True)


def save_scores(engine, assessment: RiskAssessment, version: int, at_risk_days: int | None = None) -> bool:
    """Store today's scores (or why there are none) for data version ``version`` — the version read
    *before* they were computed, so scores of newer data are never filed under an older version.
    Keeps only this version's rows; False when another writer already stored them."""
    at_risk_days = int(at_risk_days or load_settings().at_risk_days)
    recipe = _recipe(assessment.horizon, at_risk_days, assessment.basis)
    header = {"recipe": recipe, "data_version": version, "position": 0, "factors": assessment.message}
    rows = pd.DataFrame()
    if assessment.scored and not assessment.scores.empty:
        rows = assessment.scores[["customer_id", *_SAVED_COLUMNS]].copy()
        rows.insert(0, "position", np.arange(1, len(rows) + 1))
        rows.insert(0, "data_version", version)
        rows.insert(0, "recipe", recipe)
    with engine.begin() as conn:
        store.serialise_imports(conn)  # two dashboards saving the same scores take turns
        done = sa.and_(_SAVED.c.recipe == recipe, _SAVED.c.data_version == version, _SAVED.c.position == 0)
        if conn.execute(sa.select(sa.func.count()).select_from(_SAVED).where(done)).scalar_one():
            return False
        conn.execute(_SAVED.delete().where(_SAVED.c.data_version != version))
        conn.execute(_SAVED.insert().values(**header))
        store.bulk_insert(conn, _SAVED, rows)
    return True


# One fit of today's scores at a time in a process: a reader arriving during a fit (the one after
# an import, say) waits for it and reads what it saved instead of fitting the same model again.
_FITTING = threading.Lock()


def todays_scores(
    engine, version: int, horizon: int = HORIZON_DAYS, basis: Basis | None = None
) -> RiskAssessment:
    """Today's scores of every customer: read back when saved for ``version``, else fitted
    (:func:`current_scores`) and saved for the next reader. A store that cannot be written to
    (read-only, or busy importing) only means the next reader fits them again."""
    with engine.connect() as conn:
        basis = basis or churn_basis(conn)
        saved = saved_scores(conn, version, horizon, basis)
    if saved is not None:
        return saved
    with _FITTING:
        with engine.connect() as conn:
            saved = saved_scores(conn, version, horizon, basis)  # the fit waited for may have saved them
            if saved is not None:
                return saved
            assessment = current_scores(conn, SegmentFilter(), horizon, basis)
        try:
            save_scores(engine, assessment, version)
        except sa.exc.SQLAlchemyError:
            pass
    return assessment


def refresh_scores(engine) -> str:
    """After a change of the stored data (an import, relq.outputs.followup; an undo; the demo's
    load; an edit in the dashboard): rebuild the stored tables the pages read
    (:func:`rebuild_stored_tables`), then fit and save today's scores, and say so in a sentence."""
    with _FITTING:
        return _refresh(engine)


def _refresh(engine) -> str:
    rebuild_stored_tables(engine)
    version = store.data_version(engine)
    with engine.connect() as conn:
        assessment = current_scores(conn)
    save_scores(engine, assessment, version)
    if not assessment.scored:
        return f"No churn-risk scores: {assessment.message}"
    return f"Churn-risk scores refreshed for {len(assessment.scores):,} active customers."


def rebuild_stored_tables(engine) -> None:
    """Rebuild every stored table the pages read, for the store's current data version: the purchase
    summary, the answer rows, the survey scores' month sums, each customer's whole-history sums, the
    segment cells' sums (scores, reliability, data-quality and cohort counts), the customers' latest
    responses per pillar pair, the accounts' latest survey waves and the comment themes' month sums
    and their sums per segment cell (what :func:`refresh_scores` does before it fits today's scores)."""
    for rebuild, what in (
        (save_purchase_summary, "purchase summary"),
        (save_segment_cohorts, "segment cells' cohort counts"),
        (save_answer_rows, "answer rows"),
        (save_response_sums, "survey scores' month sums"),
        (save_customer_totals, "customers' whole-history sums"),
        (save_segment_sums, "segment cells' sums"),
        (save_segment_items, "segment cells' reliability sums"),
        (save_segment_quality, "segment cells' data-quality counts"),
        (save_latest_pairs, "customers' latest responses"),
        (save_account_waves, "accounts' latest survey waves"),
        (save_theme_sums, "comment themes' month sums"),
        (save_theme_cells, "segment cells' comment-theme sums"),
    ):
        try:
            rebuild(engine)
        except sa.exc.SQLAlchemyError:  # busy or read-only: the pages read the stored rows themselves
            _log.warning("The %s was not rebuilt after the data changed.", what, exc_info=True)


FITTING_IN_BACKGROUND = (
    "Today's churn-risk scores are being fitted in the background; the Retention page reads them "
    "once they are saved."
)


def refresh_scores_in_background(engine) -> threading.Thread:
    """:func:`refresh_scores` in a thread of its own, so the Upload page answers at once; a
    failure there is logged, and the Retention page then fits the scores when it opens. Unless
    another fit is under way, the fit's turn is taken before this returns, so a reader arriving
    next waits for it rather than fitting the same model twice."""
    taken = _FITTING.acquire(blocking=False)

    def run() -> None:
        if not taken:
            _FITTING.acquire()
        try:
            _log.info(_refresh(engine))
        except Exception:  # noqa: BLE001 - nobody waits on this thread: log it, the page fits later
            _log.warning("The churn-risk scores were not refreshed after the import.", exc_info=True)
        finally:
            _FITTING.release()

    thread = threading.Thread(target=run, name="relq-churn-scores", daemon=True)
    thread.start()
    return thread


class _RiskPlan:
    """The snapshot days of a churn-risk fit, and each labelled snapshot read once."""

    def __init__(self, conn: Connection, horizon: int, basis: Basis | None, at_risk_days: int | None):
        self.conn = conn
        self.horizon = _check_horizon(horizon)
        self.basis = basis or churn_basis(conn)
        self.at_risk_days = int(at_risk_days or load_settings().at_risk_days)
        end = self.basis.end
        first = conn.execute(
            sa.select(
                sa.func.min(sa.func.coalesce(C.c.acquired_at, sa.cast(T.c.occurred_at, sa.Date)))
            ).select_from(C.join(T, T.c.customer_id == C.c.customer_id, full=True))
        ).scalar()
        first = pd.Timestamp(first).date() if first is not None else end
        self.held_out_day = end - timedelta(days=self.horizon)
        self.production_days = snapshot_days(end, self.horizon, first)
        self.backtest_days = snapshot_days(self.held_out_day, self.horizon, first)
        self.message = (
            ""
            if self.backtest_days
            else f"The data span too little time for a {self.horizon}-day backtest, so there is no churn-risk score."
        )
        self._cache: dict[date, pd.DataFrame] = {}

    def labelled(self, day: date) -> pd.DataFrame:
        if day not in self._cache:
            self._cache[day] = snapshot(self.conn, day, self.horizon, self.basis)
        return self._cache[day]

    def empty(self, message: str) -> RiskAssessment:
        return RiskAssessment(self.horizon, self.basis.end, self.basis, message)

    def scores(self, flt: SegmentFilter, min_events: int) -> RiskAssessment:
        """The model fitted on every production snapshot, and today's customers scored."""
        training, used = _stack(self.labelled, self.production_days)
        final = fit_model(training, self.horizon, self.at_risk_days, used, min_events)
        if isinstance(final, str):
            return self.empty(final)
        today = snapshot(self.conn, self.basis.end, self.horizon, self.basis, labelled=False, flt=flt)
        scores = scores_frame(final, today, self.at_risk_days)
        return RiskAssessment(self.horizon, self.basis.end, self.basis, "", None, final, scores)


def _stack(labelled, days: list[date]) -> tuple[pd.DataFrame, list[date]]:
    frames, used, rows = [], [], 0
    for day in days:
        frame = labelled(day)
        if used and rows + len(frame) > MAX_TRAINING_ROWS:
            break
        frames.append(frame)
        used.append(day)
        rows += len(frame)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), used


def _no_score(empty: RiskAssessment, message: str) -> RiskAssessment:
    return RiskAssessment(empty.horizon, empty.end, empty.basis, message)


def scores_frame(model: RiskModel, today: pd.DataFrame, at_risk_days: int | None = None) -> pd.DataFrame:
    """Today's customers with their probability and top factors, riskiest first."""
    if today.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    at_risk_days = int(at_risk_days or load_settings().at_risk_days)
    frame = today.copy()
    lp, design = _linear_predictor(model, frame, at_risk_days)
    frame["probability"] = 1.0 - np.power(model.baseline_survival, np.exp(lp))
    frame = pd.concat([frame, explain(model, frame, at_risk_days=at_risk_days, design=design)], axis=1)
    frame = frame.sort_values("probability", ascending=False, kind="stable")  # ties keep customer order
    return frame[SCORE_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------- lists for the page

RISK_BANDS = ((0.05, "under 5%"), (0.10, "5–10%"), (0.20, "10–20%"), (None, "20% and more"))


def customer_ids(conn: Connection, flt: SegmentFilter) -> list[str]:
    """The customers the filter's customer dimensions (and quadrant) choose."""
    return list(conn.execute(sa.select(C.c.customer_id).where(flt.customer_clause())).scalars())


def in_view(scores: pd.DataFrame, ids: list[str] | None) -> pd.DataFrame:
    """The scores of the customers in ``ids`` (all of them for None), riskiest first."""
    if ids is None:
        return scores
    return scores[scores["customer_id"].isin(set(ids))].reset_index(drop=True)


def score_lookup(scores: pd.DataFrame) -> pd.DataFrame:
    """Today's scores indexed by customer id (probability, factors), for :func:`rank_at_risk`: kept
    with the scores, its index finds the listed customers among 1.4M scored ones without hashing
    every id again for each list."""
    return scores.set_index("customer_id")[["probability", "factors"]]


def rank_at_risk(at_risk: pd.DataFrame, scores: pd.DataFrame | None) -> pd.DataFrame:
    """The at-risk list with each customer's probability and factors, riskiest first (by annual
    value when there is no score). Reasons are kept as they are. ``scores``: today's scores, or
    their :func:`score_lookup`."""
    frame = at_risk.copy()
    if scores is None or scores.empty:
        frame.insert(5, "probability", np.nan)
        frame.insert(6, "factors", "")
        return frame
    lookup = scores if scores.index.name == "customer_id" else score_lookup(scores)
    at = lookup.index.get_indexer(frame["customer_id"])  # -1: a listed customer without a score
    found = at >= 0
    probability = np.full(len(frame), np.nan)
    probability[found] = lookup["probability"].to_numpy(float)[at[found]]
    factors = np.full(len(frame), np.nan, dtype=object)
    factors[found] = lookup["factors"].to_numpy(object)[at[found]]
    frame["probability"], frame["factors"] = probability, factors
    columns = [*at_risk.columns[:5], "probability", "reasons", "factors", *at_risk.columns[6:]]
    frame = frame.sort_values(
        ["probability", "annual_value", "customer_id"], ascending=[False, False, True], na_position="last"
    )
    return frame[columns].reset_index(drop=True)


def risk_bands(scores: pd.DataFrame) -> pd.DataFrame:
    """Customers per band of predicted risk: band, customers, share, expected churners (Σ p),
    annual value — aggregates, never a customer."""
    p = scores["probability"].to_numpy(float)
    labels = np.full(len(p), RISK_BANDS[-1][1], dtype=object)
    for upper, label in reversed(RISK_BANDS[:-1]):
        labels[p < upper] = label
    frame = pd.DataFrame(
        {"band": labels, "p": p, "value": scores["annual_value"].fillna(0.0).to_numpy(float)}
    )
    out = frame.groupby("band", sort=False).agg(
        customers=("p", "size"), expected=("p", "sum"), value=("value", "sum")
    )
    out = out.reindex([label for _, label in RISK_BANDS], fill_value=0).reset_index()
    out["share"] = out["customers"] / max(len(frame), 1)
    return out.rename(columns={"expected": "expected_churners", "value": "annual_value"})[
        ["band", "customers", "share", "expected_churners", "annual_value"]
    ]
