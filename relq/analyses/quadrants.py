"""Gap quadrants: which relationships have trust without satisfaction, satisfaction without
commitment — and what to do about each (Methodology page → Quadrants).

Customer level: each customer's **latest** response in the filter's period (dates inclusive)
that has both pillars of the pair. Ties on ``submitted_at`` are broken deterministically: the
response with the greater ``response_id`` counts as the later one. "High" means index ≥ threshold
(default 50, the scale midpoint; a business target or the median can be chosen).

The database picks each customer's latest response (one window query) and hands over one row
per customer (:func:`latest_frame`); the cards' counts, the sensitivity and the picture are
counted from those rows, NPS and CSAT come from the clustered sums (:mod:`relq.measures.customer_sums`)
and intervals from :mod:`relq.measures.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.analyses.retention import last_purchases, purchase_totals
from relq.measures import customer_sums, metrics, stats
from relq.measures.metrics import Score
from relq.store import schema
from relq.store.database import read_frame
from relq.store.filters import SegmentFilter, customer_dimension, quadrant_customer_ids
from relq.store.latest import (
    DEFAULT_THRESHOLD,
    QUADRANT_KEYS,
    latest_comments,
    latest_pairs_fit,
    latest_pairs_ready,
    latest_responses,
    quadrant_key,
    stored_latest,
)
from relq.store.latest import (
    check_pair as _check_pair,
)
from relq.store.latest import (
    quadrant_levels as _levels,
)

__all__ = [
    "QUADRANT_KEYS",
    "QUADRANT_NAMES",
    "PAIRS",
    "THRESHOLD_MODES",
    "QuadrantSpec",
    "QuadrantSummary",
    "quadrant_label",
    "quadrant_name",
    "quadrant_action",
    "latest_scores",
    "quadrant_key",
    "quadrant_customer_ids",
    "resolve_spec",
    "quadrant_counts",
    "latest_frame",
    "quadrant_summary",
    "quadrant_view",
    "pillar_alpha",
    "pillar_alphas",
    "quadrant_picture",
    "quadrant_customers",
    "with_borderline",
    "quadrant_migration",
    "quadrant_mix",
    "report_section",
]

R = schema.survey_responses
C = schema.customers

PAIRS: tuple[tuple[str, str], ...] = (
    ("trust", "satisfaction"),
    ("satisfaction", "commitment"),
    ("trust", "commitment"),
)
THRESHOLD_MODES = ("midpoint", "target", "median")
SENSITIVITY_STEP = 5.0

# Names and actions per combination of pillar levels, so either axis order reads the same.
_PROFILES: dict[frozenset, tuple[str, str]] = {
    # trust × satisfaction
    frozenset({("trust", "high"), ("satisfaction", "high")}): (
        "Advocates in the making",
        "Turn them into advocates: ask for referrals, reviews and case studies, and invite them to "
        "shape the roadmap.",
    ),
    frozenset({("trust", "high"), ("satisfaction", "low")}): (
        "Trusting but dissatisfied",
        "Fix what dissatisfies customers who still trust you: their goodwill is a window, not a "
        "guarantee — find the failures in their comments and tickets, fix them and tell them so.",
    ),
    frozenset({("trust", "low"), ("satisfaction", "high")}): (
        "Satisfied but wary",
        "Earn the trust behind the satisfaction: keep promises visibly, be open about problems and "
        "pricing, and give them a named contact.",
    ),
    frozenset({("trust", "low"), ("satisfaction", "low")}): (
        "At risk",
        "Recover or let go deliberately: call them to learn whether the relationship can be saved; "
        "if it cannot, decide consciously rather than drift.",
    ),
    # satisfaction × commitment
    frozenset({("satisfaction", "high"), ("commitment", "high")}): (
        "Loyal and happy",
        "Turn them into advocates: reward their loyalty, ask for referrals and case studies.",
    ),
    frozenset({("satisfaction", "high"), ("commitment", "low")}): (
        "Satisfied but uncommitted",
        "Deepen the emotional connection before a competitor offers the same: personal contact, "
        "community, shared goals and longer-term plans.",
    ),
    frozenset({("satisfaction", "low"), ("commitment", "high")}): (
        "Committed but dissatisfied",
        "Fix the dissatisfaction before their commitment wears out: they are staying for now — "
        "resolve their issues first and show them what changed.",
    ),
    frozenset({("satisfaction", "low"), ("commitment", "low")}): (
        "Detached",
        "Recover or let go deliberately: find out whether the relationship can be saved, and if "
        "not, decide consciously rather than drift.",
    ),
    # trust × commitment
    frozenset({("trust", "high"), ("commitment", "high")}): (
        "Partners",
        "Turn them into advocates: co-develop with them, ask for referrals and public references.",
    ),
    frozenset({("trust", "high"), ("commitment", "low")}): (
        "Trusting but uncommitted",
        "Give them reasons to stay: they believe you, so build the bond — shared plans, deeper "
        "integration, personal relationships — before a competitor does.",
    ),
    frozenset({("trust", "low"), ("commitment", "high")}): (
        "Committed but doubtful",
        "Repair trust before commitment turns into resentment: they stay (perhaps locked in) but "
        "doubt you — deliver on promises and be open about problems.",
    ),
    frozenset({("trust", "low"), ("commitment", "low")}): (
        "Disengaged",
        "Recover or let go deliberately: a frank conversation about whether you can still serve "
        "them; if not, part on good terms rather than drift.",
    ),
}


def quadrant_label(key: str, x: str = "trust", y: str = "satisfaction") -> str:
    """Plain description of a quadrant, e.g. ``"High trust, low satisfaction"``.

    >>> quadrant_label("x_high_y_low", "satisfaction", "commitment")
    'High satisfaction, low commitment'
    """
    _check_pair(x, y)
    x_level, y_level = _levels(key)
    return f"{x_level.capitalize()} {x}, {y_level} {y}"


def quadrant_name(key: str, x: str = "trust", y: str = "satisfaction") -> str:
    """Short human name of a quadrant of the pair ``x × y``.

    >>> quadrant_name("x_high_y_low")
    'Trusting but dissatisfied'
    """
    _check_pair(x, y)
    x_level, y_level = _levels(key)
    return _PROFILES[frozenset({(x, x_level), (y, y_level)})][0]


def quadrant_action(key: str, x: str = "trust", y: str = "satisfaction") -> str:
    """The recommended action for a quadrant of the pair ``x × y``."""
    _check_pair(x, y)
    x_level, y_level = _levels(key)
    return _PROFILES[frozenset({(x, x_level), (y, y_level)})][1]


QUADRANT_NAMES: dict[str, str] = {key: quadrant_name(key, "trust", "satisfaction") for key in QUADRANT_KEYS}


@dataclass(frozen=True)
class QuadrantSpec:
    """The pillar pair and the threshold on each axis (equal unless the median was chosen)."""

    x: str = "trust"
    y: str = "satisfaction"
    x_threshold: float = DEFAULT_THRESHOLD
    y_threshold: float = DEFAULT_THRESHOLD
    mode: str = "midpoint"

    def __post_init__(self):
        _check_pair(self.x, self.y)
        if self.mode not in THRESHOLD_MODES:
            raise ValueError(
                f"threshold mode must be one of {', '.join(THRESHOLD_MODES)}, not {self.mode!r}."
            )

    @classmethod
    def at(
        cls, x: str = "trust", y: str = "satisfaction", threshold: float = DEFAULT_THRESHOLD
    ) -> QuadrantSpec:
        mode = "midpoint" if threshold == DEFAULT_THRESHOLD else "target"
        return cls(x, y, float(threshold), float(threshold), mode)

    def shifted(self, delta: float) -> QuadrantSpec:
        return replace(self, x_threshold=self.x_threshold + delta, y_threshold=self.y_threshold + delta)

    def name(self, key: str) -> str:
        return quadrant_name(key, self.x, self.y)

    def label(self, key: str) -> str:
        return quadrant_label(key, self.x, self.y)

    def action(self, key: str) -> str:
        return quadrant_action(key, self.x, self.y)


# --------------------------------------------------------------------------- SQL building blocks


def latest_scores(
    conn: Connection,
    flt: SegmentFilter,
    x: str = "trust",
    y: str = "satisfaction",
    name: str = "latest",
    details: bool = True,
) -> sa.Subquery:
    """Each customer's latest response in ``flt`` having both pillars (see
    :func:`relq.store.latest.latest_responses`): one row per customer — read from the stored
    latest pairs when the view covers the whole history with every wave and flag, and they are of
    the current data."""
    if latest_pairs_fit(flt) and latest_pairs_ready(conn):
        return stored_latest(flt, x, y, name, details)
    return latest_responses(flt.response_clause(), x, y, name, details)


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def resolve_spec(
    conn: Connection,
    flt: SegmentFilter,
    x: str = "trust",
    y: str = "satisfaction",
    mode: str = "midpoint",
    target: float | None = None,
) -> QuadrantSpec:
    """The thresholds for a mode: ``midpoint`` 50, a business ``target``, or each axis's
    ``median`` over the customers' latest scores (computed in SQL, ``percentile_cont(0.5)``)."""
    if mode == "midpoint":
        return QuadrantSpec(x, y, DEFAULT_THRESHOLD, DEFAULT_THRESHOLD, "midpoint")
    if mode == "target":
        if target is None or not 0 <= float(target) <= 100:
            raise ValueError("A business target must be a number between 0 and 100.")
        return QuadrantSpec(x, y, float(target), float(target), "target")
    if mode != "median":
        raise ValueError(f"threshold mode must be one of {', '.join(THRESHOLD_MODES)}, not {mode!r}.")
    latest = latest_scores(conn, flt, x, y, details=False)
    mx, my = conn.execute(
        sa.select(
            sa.func.percentile_cont(0.5).within_group(latest.c.x_score),
            sa.func.percentile_cont(0.5).within_group(latest.c.y_score),
        )
    ).one()
    mx, my = _float(mx), _float(my)
    if math.isnan(mx):  # no customer in view: fall back to the midpoint
        mx = my = DEFAULT_THRESHOLD
    return QuadrantSpec(x, y, mx, my, "median")


def quadrant_counts(
    conn: Connection, flt: SegmentFilter, spec: QuadrantSpec = QuadrantSpec()
) -> dict[str, int]:
    """Customers per quadrant (every key present, zeros included)."""
    latest = latest_scores(conn, flt, spec.x, spec.y, details=False)
    key = quadrant_key(latest.c.x_score, latest.c.y_score, spec.x_threshold, spec.y_threshold).label(
        "quadrant"
    )
    rows = conn.execute(sa.select(key, sa.func.count().label("n")).group_by(key)).all()
    counts = dict.fromkeys(QUADRANT_KEYS, 0)
    counts.update({r.quadrant: int(r.n) for r in rows})
    return counts


# --------------------------------------------------------------------------- reliability for SEM


def pillar_alphas(
    conn: Connection, flt: SegmentFilter, pillars, instrument=None
) -> dict[str, stats.AlphaResult]:
    """Cronbach's α of each pillar over the filtered responses (listwise, reverse-coded), from
    :func:`relq.measures.reliability.item_sums` — one aggregate query for all pillars."""
    from relq.core.instrument import configured_instrument
    from relq.measures.reliability import item_sums

    instrument = instrument or configured_instrument()
    sums = item_sums(conn, flt, instrument, tuple(dict.fromkeys(pillars)))
    out = {}
    for pillar in pillars:
        block = sums[pillar]
        k = len(block["item_ids"])
        if k < 2:
            out[pillar] = stats.AlphaResult(float("nan"), float("nan"), float("nan"), block["n"], k)
            continue
        cov = stats.covariance_from_sums(block["n"], block["sums"], block["cross"])
        out[pillar] = stats.cronbach_alpha(cov, block["n"])
    return out


def pillar_alpha(conn: Connection, flt: SegmentFilter, pillar: str, instrument=None) -> stats.AlphaResult:
    """Cronbach's α of one pillar (see :func:`pillar_alphas`)."""
    return pillar_alphas(conn, flt, (pillar,), instrument)[pillar]


def _sem(sd: float, alpha: float) -> float:
    """Standard error of measurement SD·√(1−α); α below 0 is read as 0 (no reliability)."""
    if math.isnan(sd) or math.isnan(alpha):
        return float("nan")
    return sd * math.sqrt(1 - min(max(alpha, 0.0), 1.0))


# --------------------------------------------------------------------------- the summary


@dataclass(frozen=True)
class QuadrantSummary:
    """Per quadrant: customers, share, NPS, CSAT, churn, revenue at stake, borderline, action."""

    spec: QuadrantSpec
    customers: int
    table: pd.DataFrame
    x_alpha: stats.AlphaResult
    y_alpha: stats.AlphaResult
    x_sem: float
    y_sem: float
    borderline: int
    moved_up: int  # customers changing quadrant if both thresholds rise by SENSITIVITY_STEP
    moved_down: int  # … or fall by it

    @property
    def counts(self) -> dict[str, int]:
        return {row.quadrant: int(row.customers) for row in self.table.itertuples()}


def _count_if(condition, label: str):
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0).label(label)


def latest_frame(conn: Connection, flt: SegmentFilter, spec: QuadrantSpec = QuadrantSpec()) -> pd.DataFrame:
    """Each customer's latest response in view having both pillars of ``spec``, with what the
    cards count — one row per customer, by customer_id: ``customer_id``, ``x``, ``y``, ``known``
    (in the CRM), ``churned`` (a churn date), ``value`` (annual value, else revenue of the last
    365 days, else 0). One query, handed over column by column; the summary and the picture are
    counted from it instead of each asking the database again."""
    latest = latest_scores(conn, flt, spec.x, spec.y, details=False)
    revenue = purchase_totals(conn)  # the stored summary while current: no scan of every purchase
    stmt = sa.select(
        latest.c.customer_id,
        latest.c.x_score.label("x"),
        latest.c.y_score.label("y"),
        C.c.customer_id.is_not(None).label("known"),
        C.c.churned_at.is_not(None).label("churned"),
        sa.func.coalesce(C.c.annual_value, revenue.c.revenue_12m, 0.0).label("value"),
    ).select_from(
        latest.outerjoin(C, C.c.customer_id == latest.c.customer_id).outerjoin(
            revenue, revenue.c.customer_id == latest.c.customer_id
        )
    )
    frame = read_frame(conn, stmt)
    frame = frame.astype({"x": float, "y": float, "known": bool, "churned": bool, "value": float})
    frame["customer_id"] = frame["customer_id"].astype(object)
    return frame.sort_values("customer_id", kind="stable").reset_index(drop=True)


def _keys(x: np.ndarray, y: np.ndarray, x_threshold: float, y_threshold: float) -> np.ndarray:
    """:func:`quadrant_key` on arrays: "high" means index ≥ threshold."""
    x_high, y_high = x >= float(x_threshold), y >= float(y_threshold)
    return np.select(
        [x_high & y_high, x_high, y_high], list(QUADRANT_KEYS[:3]), default=QUADRANT_KEYS[3]
    ).astype(object)


def _moments(frame: pd.DataFrame) -> dict[str, float]:
    n = len(frame)
    out = {"n": n}
    for axis in ("x", "y"):
        v = frame[axis].to_numpy(float)
        out[f"sd_{axis}"] = (
            math.sqrt(stats.variance_from_sums(n, float(v.sum()), float((v * v).sum())))
            if n >= 2
            else float("nan")
        )
    return out


def _zero(value) -> float:
    return 0.0 if value is None else float(value)


def _borderline_mask(frame: pd.DataFrame, spec: QuadrantSpec, x_sem: float, y_sem: float) -> np.ndarray:
    """Within one SEM of a threshold on either axis (never true when the SEM is unknown), for the
    rows of :func:`latest_frame` (columns x, y)."""
    near = np.zeros(len(frame), dtype=bool)
    if not math.isnan(x_sem):
        near |= np.abs(frame["x"].to_numpy(float) - spec.x_threshold) <= x_sem
    if not math.isnan(y_sem):
        near |= np.abs(frame["y"].to_numpy(float) - spec.y_threshold) <= y_sem
    return near


def with_borderline(listing: pd.DataFrame, spec: QuadrantSpec, x_sem: float, y_sem: float) -> pd.DataFrame:
    """A customer list of :func:`quadrant_customers` with its ``borderline`` column for these SEMs —
    so the list can be read before the SEMs are known (the Gap quadrants page reads both at once)."""
    scores = pd.DataFrame({"x": listing[spec.x], "y": listing[spec.y]})
    return listing.assign(borderline=_borderline_mask(scores, spec, x_sem, y_sem))


_NO_SCORES = (
    Score("nps", math.nan, math.nan, math.nan, 0, 0),
    Score("csat", math.nan, math.nan, math.nan, 0, 0),
)


def _quadrant_scores(conn: Connection, flt: SegmentFilter, latest: sa.Subquery, key) -> dict:
    """NPS and CSAT per quadrant from each customer's latest response, weighted as the view.

    One response per customer, so with each response counted once they are the plain adjusted-Wald
    and Wilson intervals; customer-level weights (annual value, raked) give their effective n.
    """
    pc = sa.select(
        latest.c.customer_id.label("cid"),
        sa.literal(1).label("responses"),
        key.label("quadrant"),
        sa.case((latest.c.nps.is_not(None), 1), else_=0).label("nps_n"),
        sa.case((latest.c.nps >= 9, 1), else_=0).label("nps_p"),
        sa.case((latest.c.nps <= 6, 1), else_=0).label("nps_d"),
        sa.case((latest.c.csat.is_not(None), 1), else_=0).label("csat_n"),
        sa.case((latest.c.csat >= 4, 1), else_=0).label("csat_s"),
    ).subquery("latest_sums")
    frame, plan = customer_sums.sums_by(conn, flt, pc, "quadrant", ("nps", "csat"))
    metrics.weighting_problem(plan)
    out = {}
    for m in frame.to_dict("records"):
        g = customer_sums.GroupSums.from_row(m, ("nps", "csat"))
        out[m["quadrant"]] = (metrics.score_from_sums("nps", g), metrics.score_from_sums("csat", g))
    return out


def quadrant_summary(
    conn: Connection,
    flt: SegmentFilter,
    spec: QuadrantSpec = QuadrantSpec(),
    instrument=None,
    frame: pd.DataFrame | None = None,
) -> QuadrantSummary:
    """Everything the quadrant cards show: the customers of :func:`latest_frame` (read here
    unless given), each pillar's α for the SEM (one aggregate query), NPS and CSAT per quadrant
    (one grouped query)."""
    frame = latest_frame(conn, flt, spec) if frame is None else frame
    moments = _moments(frame)
    alphas = pillar_alphas(conn, flt, (spec.x, spec.y), instrument)
    x_alpha, y_alpha = alphas[spec.x], alphas[spec.y]
    x_sem, y_sem = _sem(moments["sd_x"], x_alpha.alpha), _sem(moments["sd_y"], y_alpha.alpha)

    x, y = frame["x"].to_numpy(float), frame["y"].to_numpy(float)
    up, down = spec.shifted(SENSITIVITY_STEP), spec.shifted(-SENSITIVITY_STEP)
    keys = _keys(x, y, spec.x_threshold, spec.y_threshold)
    near = _borderline_mask(frame, spec, x_sem, y_sem)
    moved_up = keys != _keys(x, y, up.x_threshold, up.y_threshold)
    moved_down = keys != _keys(x, y, down.x_threshold, down.y_threshold)
    counted = pd.DataFrame(
        {
            "quadrant": keys,
            "customers": 1,
            "known": frame["known"].to_numpy(bool).astype(int),
            "churned": frame["churned"].to_numpy(bool).astype(int),  # a churn date needs a CRM row
            "revenue_at_stake": frame["value"].to_numpy(float),
            "borderline": near.astype(int),
        }
    )
    by_key = counted.groupby("quadrant").sum().to_dict("index")
    total = len(frame)
    latest = latest_scores(conn, flt, spec.x, spec.y)
    key = quadrant_key(latest.c.x_score, latest.c.y_score, spec.x_threshold, spec.y_threshold)
    scores = _quadrant_scores(conn, flt, latest, key)
    records = []
    for k in QUADRANT_KEYS:
        m = by_key.get(k, {})
        n = int(m.get("customers", 0))
        share = stats.wilson_interval(n, total)
        nps, csat = scores.get(k, _NO_SCORES)
        known, churned = int(m.get("known", 0)), int(m.get("churned", 0))
        churn = stats.wilson_interval(churned, known)
        records.append(
            {
                "quadrant": k,
                "name": spec.name(k),
                "label": spec.label(k),
                "action": spec.action(k),
                "customers": n,
                "share": 100 * share.estimate,
                "share_low": 100 * share.low,
                "share_high": 100 * share.high,
                "nps": nps.score,
                "nps_low": nps.low,
                "nps_high": nps.high,
                "nps_n": nps.n,
                "nps_n_eff": nps.n_eff,
                "csat": csat.estimate,
                "csat_low": csat.low,
                "csat_high": csat.high,
                "csat_n": csat.n,
                "csat_n_eff": csat.n_eff,
                "churned": churned,
                "churn_share": 100 * churn.estimate,
                "churn_low": 100 * churn.low,
                "churn_high": 100 * churn.high,
                "retention_share": 100 * (1 - churn.estimate) if known else float("nan"),
                "revenue_at_stake": float(m.get("revenue_at_stake", 0.0)),
                "borderline": int(m.get("borderline", 0)),
            }
        )
    return QuadrantSummary(
        spec=spec,
        customers=total,
        table=pd.DataFrame(records),
        x_alpha=x_alpha,
        y_alpha=y_alpha,
        x_sem=x_sem,
        y_sem=y_sem,
        borderline=int(near.sum()),
        moved_up=int(moved_up.sum()),
        moved_down=int(moved_down.sum()),
    )


# --------------------------------------------------------------------------- picture and lists


def quadrant_picture(
    conn: Connection,
    flt: SegmentFilter,
    spec: QuadrantSpec = QuadrantSpec(),
    max_points: int = 20_000,
    bin_width: float = 2.5,
    frame: pd.DataFrame | None = None,
) -> tuple[str, pd.DataFrame]:
    """``("points", frame)`` with one row per customer when at most ``max_points`` are in view,
    else ``("density", frame)`` of customers per ``bin_width`` × ``bin_width`` cell; from the
    customers of :func:`latest_frame` (read here unless given).

    points: customer_id, x, y, quadrant (by customer_id). density: x, y (lower cell edges),
    customers (by x, then y).
    """
    frame = latest_frame(conn, flt, spec) if frame is None else frame
    x, y = frame["x"].to_numpy(float), frame["y"].to_numpy(float)
    if len(frame) <= max_points:
        points = frame[["customer_id", "x", "y"]].copy()
        points["quadrant"] = _keys(x, y, spec.x_threshold, spec.y_threshold)
        return "points", points.reset_index(drop=True)
    width = float(bin_width)
    # Index 100 belongs to the last cell, not a cell of its own.
    cells = pd.DataFrame(
        {
            "x": np.floor(np.minimum(x, 100 - width / 2) / width) * width,
            "y": np.floor(np.minimum(y, 100 - width / 2) / width) * width,
        }
    )
    density = cells.groupby(["x", "y"], sort=True).size().rename("customers").reset_index()
    return "density", density.astype({"x": float, "y": float, "customers": int})


def quadrant_view(
    conn: Connection,
    flt: SegmentFilter,
    spec: QuadrantSpec = QuadrantSpec(),
    max_points: int = 20_000,
    bin_width: float = 2.5,
    instrument=None,
) -> tuple[QuadrantSummary, str, pd.DataFrame]:
    """:func:`quadrant_summary` and :func:`quadrant_picture` from one read of the customers."""
    frame = latest_frame(conn, flt, spec)
    summary = quadrant_summary(conn, flt, spec, instrument, frame)
    kind, picture = quadrant_picture(conn, flt, spec, max_points, bin_width, frame)
    return summary, kind, picture


def _open_tickets() -> sa.Subquery:
    T = schema.tickets
    is_open = sa.and_(
        T.c.resolved_at.is_(None),
        sa.func.lower(sa.func.coalesce(T.c.status, "open")).not_in(["solved", "closed", "resolved"]),
    )
    return (
        sa.select(T.c.customer_id, sa.func.count().label("open_tickets"))
        .where(is_open)
        .group_by(T.c.customer_id)
        .subquery("open_tickets")
    )


CUSTOMER_LIST_COLUMNS = (
    "customer_id",
    "name",
    "email",
    "company",
    "region",
    "industry",
    "plan",
    "owner",
    "value_tier",
    "lifecycle_stage",
    "annual_value",
    "churned_at",
    "x_score",
    "y_score",
    "borderline",
    "surveyed_at",
    "nps",
    "last_purchase",
    "open_tickets",
    "latest_comment",
)


# The customers a quadrant's list holds at most (its download too): the lowest combined scores.
LISTED_CUSTOMERS = 50_000


def quadrant_customers(
    conn: Connection,
    flt: SegmentFilter,
    spec: QuadrantSpec,
    key: str,
    x_sem: float = float("nan"),
    y_sem: float = float("nan"),
    limit: int | None = None,
) -> pd.DataFrame:
    """The customers of one quadrant with CRM fields, last purchase, open tickets and latest
    comment; lowest combined score first — the first ``limit`` (:data:`LISTED_CUSTOMERS` unless
    given). ``borderline`` uses the SEMs given (False when unknown)."""
    _levels(key)
    limit = limit or LISTED_CUSTOMERS
    scores = latest_scores(conn, flt, spec.x, spec.y)
    quad = quadrant_key(scores.c.x_score, scores.c.y_score, spec.x_threshold, spec.y_threshold)
    lowest = (scores.c.x_score + scores.c.y_score).asc(), scores.c.customer_id
    # the quadrant's customers (the first ``limit``) chosen before the CRM fields, tickets,
    # purchases and comments are joined to 50,000 of them, not to the quadrant's 375k (2M customers:
    # 0.61 → 0.53 s)
    latest = sa.select(*scores.c).where(quad == key).order_by(*lowest).limit(limit).subquery("chosen")
    tickets, purchases, comments = _open_tickets(), last_purchases(conn), latest_comments(conn, flt)
    query = (
        sa.select(
            latest.c.customer_id,
            C.c.name,
            C.c.email,
            C.c.company,
            C.c.region,
            C.c.industry,
            C.c.plan,
            C.c.owner,
            C.c.value_tier,
            C.c.lifecycle_stage,
            C.c.annual_value,
            C.c.churned_at,
            latest.c.x_score,
            latest.c.y_score,
            sa.false().label("borderline"),  # its place in the list; with_borderline sets it below
            latest.c.submitted_at.label("surveyed_at"),
            latest.c.nps,
            purchases.c.last_purchase,
            sa.func.coalesce(tickets.c.open_tickets, 0).label("open_tickets"),
            comments.c.latest_comment,
        )
        .select_from(
            latest.outerjoin(C, C.c.customer_id == latest.c.customer_id)
            .outerjoin(tickets, tickets.c.customer_id == latest.c.customer_id)
            .outerjoin(purchases, purchases.c.customer_id == latest.c.customer_id)
            .outerjoin(comments, comments.c.customer_id == latest.c.customer_id)
        )
        .order_by((latest.c.x_score + latest.c.y_score).asc(), latest.c.customer_id)
    )
    frame = read_frame(conn, query)  # tens of thousands of rows: handed over column by column
    frame.columns = list(CUSTOMER_LIST_COLUMNS)
    frame["open_tickets"] = frame["open_tickets"].astype(int)
    for column in ("surveyed_at", "last_purchase"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    churned = pd.to_datetime(frame["churned_at"])  # a day, shown as one
    frame["churned_at"] = churned.dt.date.astype(object).where(churned.notna(), None)
    frame["nps"] = frame["nps"].astype("int64" if frame["nps"].notna().all() else "float64")
    return with_borderline(frame.rename(columns={"x_score": spec.x, "y_score": spec.y}), spec, x_sem, y_sem)


def quadrant_migration(
    conn: Connection, before: SegmentFilter, after: SegmentFilter, spec: QuadrantSpec = QuadrantSpec()
) -> pd.DataFrame:
    """Customers moving between quadrants: ``from``, ``to``, ``customers`` for all 16 cells.

    A customer counts when they have a latest response with both pillars in both filters.
    """
    a = latest_scores(conn, before, spec.x, spec.y, "before")
    b = latest_scores(conn, after, spec.x, spec.y, "after")
    key_a = quadrant_key(a.c.x_score, a.c.y_score, spec.x_threshold, spec.y_threshold).label("from")
    key_b = quadrant_key(b.c.x_score, b.c.y_score, spec.x_threshold, spec.y_threshold).label("to")
    rows = conn.execute(
        sa.select(key_a, key_b, sa.func.count().label("customers"))
        .select_from(a.join(b, a.c.customer_id == b.c.customer_id))
        .group_by(key_a, key_b)
    ).all()
    found = {(r[0], r[1]): int(r[2]) for r in rows}
    return pd.DataFrame(
        [
            {"from": f, "to": t, "customers": found.get((f, t), 0)}
            for f in QUADRANT_KEYS
            for t in QUADRANT_KEYS
        ]
    )


def quadrant_mix(conn: Connection, flt: SegmentFilter, spec: QuadrantSpec, dimension: str) -> pd.DataFrame:
    """Quadrant shares within each value of a segment dimension, with Wilson intervals.

    Columns: segment, quadrant, customers, segment_customers, share, low, high (shares in %).
    Customers without a value are grouped as "(none)".
    """
    latest = latest_scores(conn, flt, spec.x, spec.y)
    segment = sa.func.coalesce(sa.cast(customer_dimension(dimension), sa.Text), "(none)").label("segment")
    key = quadrant_key(latest.c.x_score, latest.c.y_score, spec.x_threshold, spec.y_threshold).label(
        "quadrant"
    )
    rows = conn.execute(
        sa.select(segment, key, sa.func.count().label("customers"))
        .select_from(latest.join(C, C.c.customer_id == latest.c.customer_id))
        .group_by(segment, key)
    ).all()
    frame = pd.DataFrame(rows, columns=["segment", "quadrant", "customers"])
    if frame.empty:
        return pd.DataFrame(
            columns=["segment", "quadrant", "customers", "segment_customers", "share", "low", "high"]
        )
    full = pd.MultiIndex.from_product(
        [sorted(frame["segment"].unique()), QUADRANT_KEYS], names=["segment", "quadrant"]
    )
    frame = frame.set_index(["segment", "quadrant"]).reindex(full, fill_value=0).reset_index()
    frame["customers"] = frame["customers"].astype(int)
    frame["segment_customers"] = frame.groupby("segment")["customers"].transform("sum")
    intervals = [
        stats.wilson_interval(n, total)
        for n, total in zip(frame["customers"], frame["segment_customers"], strict=True)
    ]
    frame["share"] = [100 * i.estimate for i in intervals]
    frame["low"] = [100 * i.low for i in intervals]
    frame["high"] = [100 * i.high for i in intervals]
    return frame


def report_section(conn: Connection, flt: SegmentFilter, x: str, y: str, threshold: float) -> dict:
    """The ``quadrants`` section of ``report --json``."""
    spec = QuadrantSpec.at(x, y, threshold)
    counts = quadrant_counts(conn, flt, spec)
    return {"x": x, "y": y, "threshold": threshold, "counts": counts, "customers": sum(counts.values())}
