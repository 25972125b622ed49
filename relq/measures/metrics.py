"""Headline numbers aggregated where the data live, with customer-clustered intervals.

Each query returns sums over customers of per-customer sums (:mod:`relq.measures.customer_sums`);
:mod:`relq.measures.clustered` turns them into scores with n (responses), customers (clusters),
effective n and 95% intervals (Methodology page → The unit is the customer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy.engine import Connection

from relq.exceptions import WeightingError
from relq.measures import clustered
from relq.measures.customer_sums import (
    MEAN_SCORES,
    SHIFT,
    GroupSums,
    WeightPlan,
    group_sums,
    periods_in_view,
)
from relq.store.filters import SegmentFilter, Weighting
from relq.store.schema import PILLARS

__all__ = [
    "Headline",
    "Score",
    "design_effects",
    "headline",
    "headline_from_sums",
    "score_from_sums",
    "weighting_problem",
    "trend",
]

NAN = float("nan")


def _json(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


@dataclass(frozen=True)
class Score:
    """One score with its customer-clustered 95% interval.

    ``n`` counts the responses it rests on, ``customers`` the clusters behind them (an unmatched
    response is one; ``unmatched`` says how many), ``var`` the clustered variance of the estimate
    (NPS and CSAT: of the mean −1/0/+1 or 0/1 score), ``df`` = customers − 1 for means; NPS and
    CSAT carry ``n_eff`` and ``deff``; NPS the unweighted promoter, passive and detractor counts.
    """

    kind: str  # "mean", "nps" or "csat"
    estimate: float
    low: float
    high: float
    n: int
    customers: int
    unmatched: int = 0
    n_eff: float = NAN
    deff: float = NAN
    var: float = NAN
    df: float = NAN
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    p: float = NAN
    d: float = NAN

    @property
    def score(self) -> float:
        return self.estimate

    @property
    def matched_customers(self) -> int:
        """Customers proper: the clusters that are not single unmatched responses."""
        return self.customers - self.unmatched

    def clustered(self) -> clustered.ClusteredMean | clustered.ClusteredShare:
        """The same numbers as :mod:`relq.measures.clustered` results, for its tests."""
        if self.kind == "mean":
            se = math.sqrt(self.var) if not math.isnan(self.var) else NAN
            return clustered.ClusteredMean(
                self.estimate,
                self.var,
                se,
                self.low,
                self.high,
                self.n,
                self.customers,
                int(self.df) if not math.isnan(self.df) else 0,
            )
        return clustered.ClusteredShare(
            self.kind,  # type: ignore[arg-type]
            self.estimate,
            self.low,
            self.high,
            self.n,
            self.customers,
            self.n_eff,
            self.deff,
            self.var,
            self.p,
            0.0 if self.kind == "csat" else self.d,
        )

    def as_dict(self, key: str = "mean") -> dict:
        """The report JSON shape: estimate, ci, n, customers (and n_eff, counts for NPS/CSAT)."""
        out = {
            key: _json(self.estimate),
            "ci": [_json(self.low), _json(self.high)],
            "n": int(self.n),
            "customers": int(self.customers),
            "unmatched": int(self.unmatched),
        }
        if self.kind != "mean":
            out["n_eff"] = _json(self.n_eff)
        if self.kind == "nps":
            out.update(promoters=self.promoters, passives=self.passives, detractors=self.detractors)
        return out

    def sentence(self) -> str:
        """ "n = 11,883 responses from 3,201 customers" (and the unmatched responses)."""
        text = f"n = {self.n:,} responses from {self.matched_customers:,} customer{'s' if self.matched_customers != 1 else ''}"
        if self.unmatched:
            text += f" and {self.unmatched:,} unmatched response{'s' if self.unmatched != 1 else ''}"
        return text


def score_from_sums(name: str, g: GroupSums, level: float = 0.95) -> Score:
    """One score of a group's sums: clustered t-interval for means, Wilson / adjusted Wald on n_eff."""
    sums = g.scores[name]
    unmatched = int(g.unmatched_by_score.get(name, 0))
    if name == "nps":
        r = clustered.nps_interval_from_sums(sums, g.nps_P, g.nps_D, level)
        return Score(
            "nps", r.score, r.low, r.high, r.n, r.customers, unmatched, r.n_eff, r.deff, r.var, NAN,
            g.promoters, max(r.n - g.promoters - g.detractors, 0), g.detractors, r.p, r.d,
        )  # fmt: skip
    if name == "csat":
        r = clustered.csat_interval_from_sums(sums, level)
        return Score(
            "csat", r.score, r.low, r.high, r.n, r.customers, unmatched, r.n_eff, r.deff, r.var, p=r.p
        )
    m = clustered.clustered_mean_from_sums(sums, SHIFT[name], level)
    return Score("mean", m.estimate, m.low, m.high, m.n, m.customers, unmatched, var=m.var, df=float(m.df))


@dataclass(frozen=True)
class Headline:
    """RQ, pillar means, NPS, CSAT and CES of one view, each with n, customers and its interval.

    ``responses`` are all responses in view, ``customers`` the distinct customers behind them,
    ``unmatched`` the responses matching no customer, ``left_out`` the responses a customer-level
    weighting leaves out (no customer, or no annual value under value weights).
    """

    responses: int
    pillars: dict[str, Score]
    rq: Score
    nps: Score
    csat: Score
    ces: Score
    customers: int = 0
    unmatched: int = 0
    left_out: int = 0
    weighting: Weighting = field(default_factory=Weighting)

    def score(self, name: str) -> Score:
        if name in PILLARS:
            return self.pillars[name]
        return {"rq": self.rq, "nps": self.nps, "csat": self.csat, "ces": self.ces}[name]

    def as_dict(self) -> dict:
        out = {
            "responses": self.responses,
            "customers": self.customers,
            "unmatched": self.unmatched,
            "weight": self.weighting.scheme,
            "pillars": {name: s.as_dict("mean") for name, s in self.pillars.items()},
            "rq": self.rq.as_dict("mean"),
            "nps": self.nps.as_dict("score"),
            "csat": self.csat.as_dict("score"),
            "ces": self.ces.as_dict("mean"),
        }
        if self.weighting.scheme == "raked":
            out["rake"] = list(self.weighting.rake)
        if self.weighting.per_customer:
            out["left_out"] = self.left_out
        return out

    def weighting_note(self) -> str:
        """What the weighting leaves out, as a sentence ("" when nothing)."""
        if not self.weighting.per_customer or not self.left_out:
            return ""
        unmatched = min(self.unmatched, self.left_out)
        other = self.left_out - unmatched
        parts = []
        if unmatched:
            parts.append(f"{unmatched:,} unmatched response{'s' if unmatched != 1 else ''}")
        if other:
            parts.append(
                f"{other:,} response{'s' if other != 1 else ''} from customers without an annual value"
            )
        return f"{' and '.join(parts)} {'are' if self.left_out != 1 else 'is'} left out of the {self.weighting.label} weights."


def headline_from_sums(g: GroupSums, weighting: Weighting = Weighting(), level: float = 0.95) -> Headline:
    """Scores with intervals from one group's sums (:class:`GroupSums`)."""
    return Headline(
        responses=g.responses,
        pillars={name: score_from_sums(name, g, level) for name in PILLARS},
        rq=score_from_sums("rq", g, level),
        nps=score_from_sums("nps", g, level),
        csat=score_from_sums("csat", g, level),
        ces=score_from_sums("ces", g, level),
        customers=g.customers,
        unmatched=g.unmatched,
        left_out=g.left_out,
        weighting=weighting,
    )


def weighting_problem(plan: WeightPlan) -> None:
    """Raise :class:`WeightingError` with the sentence when the plan cannot weight the view."""
    problems = plan.problems()
    if problems:
        raise WeightingError(
            f"{problems[0]} No raked number is shown: choose other raking dimensions, widen the filters, "
            "or count each response or customer instead."
        )


def headline(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> Headline:
    """RQ, pillar means, NPS, CSAT and CES with n, customers and 95% customer-clustered intervals."""
    frame, plan = group_sums(conn, flt)
    weighting_problem(plan)
    row: Mapping = frame.iloc[0].to_dict() if not frame.empty else {}
    return headline_from_sums(GroupSums.from_row(row), flt.weighting)


TREND_COLUMNS = ["period", "metric", "estimate", "low", "high", "n", "customers", "n_eff"]


def trend(conn: Connection, flt: SegmentFilter = SegmentFilter(), freq: str = "month") -> pd.DataFrame:
    """Per month (or quarter): each pillar, RQ, NPS, CSAT and CES with n, customers and its 95%
    customer-clustered interval (each month's customers are its clusters; raked weights rake each
    month to its own customer base).

    Returns a tidy frame: period, metric, estimate, low, high, n, customers, n_eff. Months that
    cannot be raked have no estimate; ``frame.attrs["problems"]`` says why.
    """
    periods = periods_in_view(conn, flt, freq) if flt.weighting.scheme == "raked" else None
    frame, plan = group_sums(conn, flt, freq=freq, periods=periods)
    records = []
    for m in frame.sort_values("period").to_dict("records") if not frame.empty else []:
        head = headline_from_sums(GroupSums.from_row(m), flt.weighting)
        for name in (*PILLARS, "rq", "csat", "ces", "nps"):
            s = head.score(name)
            records.append((m["period"], name, s.estimate, s.low, s.high, s.n, s.customers, s.n_eff))
    out = pd.DataFrame(records, columns=TREND_COLUMNS)
    out["period"] = pd.to_datetime(out["period"])
    out.attrs["problems"] = plan.problems()
    return out


MEAN_METRICS = MEAN_SCORES


def design_effects(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> pd.DataFrame:
    """How much the customers' clustering (and the weighting) costs each score, for analysts.

    Per score: n (responses), customers (clusters), responses per customer, the variance of the
    estimate treating each customer as a cluster against the variance if every response were
    independent (``s²/n``; for NPS and CSAT ``u/(n−1)``) — the design effect deff — the effective
    n = n/deff, and the intra-customer correlation implied by ``deff = 1 + (m* − 1)·ρ`` with Kish's
    ``m* = Σn_c²/Σn_c`` (only when each response counts once). Means use one extra pass for Σ(y − shift)².
    """
    import sqlalchemy as sa

    from relq.store import schema

    R = schema.survey_responses
    frame, plan = group_sums(conn, flt)
    weighting_problem(plan)
    g = GroupSums.from_row(frame.iloc[0].to_dict() if not frame.empty else {})
    head = headline_from_sums(g, flt.weighting)
    squares = (
        conn.execute(
            sa.select(
                *[
                    sa.func.sum(_square(sa.cast(R.c[name], sa.Double) - SHIFT[name])).label(name)
                    for name in MEAN_SCORES
                ],
                *[
                    sa.func.sum(sa.cast(R.c[name], sa.Double) - SHIFT[name]).label(f"{name}_s")
                    for name in MEAN_SCORES
                ],
            ).where(flt.response_clause())
        )
        .one()
        ._mapping
    )
    records = []
    for name in (*PILLARS, "rq", "nps", "csat", "ces"):
        s = head.score(name)
        n = s.n
        if n < 2 or math.isnan(s.var):
            deff = NAN
        elif s.kind == "mean":
            total, sq = float(squares[f"{name}_s"] or 0.0), float(squares[name] or 0.0)
            s2 = max(sq - total * total / n, 0.0) / (n - 1)
            deff = s.var / (s2 / n) if s2 > 0 else NAN
        else:
            deff = s.deff
        per = n / s.customers if s.customers else NAN
        # deff = 1 + (m* − 1)·ρ with m* = Σn_c²/Σn_c (Kish), known from the sums when each response counts once
        sums = g.scores[name]
        m_star = sums.WW / sums.W if flt.weighting.scheme == "response" and sums.W > 0 else NAN
        icc = (deff - 1) / (m_star - 1) if m_star > 1 and not math.isnan(deff) else NAN
        records.append(
            {
                "metric": name,
                "n": n,
                "customers": s.customers,
                "responses_per_customer": per,
                "deff": deff,
                "n_eff": n / deff if deff and not math.isnan(deff) and deff > 1 else float(n),
                "icc": icc,
            }
        )
    return pd.DataFrame(records)


def _square(x):
    return x * x
