"""Numbers about fewer than 5 customers, withheld for roles that see aggregates only (executives).

A number describes a group of customers — the view, a period, a segment, a cohort, a quadrant,
a survival curve. For executives that group must hold at least ``minimum`` customers
(relq.core.auth.MIN_GROUP_CUSTOMERS); shares and counts *within* such a group are shown. The
functions here take a result and the customer counts behind it (relq.store.privacy) and return
the result without what rests on too few; :func:`executive_overview` does it for the overview and
the board report alike.
"""

from __future__ import annotations

import math

import pandas as pd
from sqlalchemy.engine import Connection

from relq.core.auth import MIN_GROUP_CUSTOMERS
from relq.store import privacy
from relq.store.filters import SegmentFilter

__all__ = [
    "SURVEY_KPIS",
    "withhold_kpis",
    "withhold_periods",
    "withhold_moves",
    "moves_counts",
    "executive_overview",
    "withhold_survival",
]

SURVEY_KPIS = frozenset({"rq", "trust", "commitment", "satisfaction", "nps", "csat", "ces"})
_DELTAS = ("previous", "delta", "delta_low", "delta_high", "p_value")


def withhold_kpis(
    kpis: pd.DataFrame, current: int, previous: int | None, minimum: int = MIN_GROUP_CUSTOMERS
) -> pd.DataFrame:
    """KPI rows (relq.outputs.board_report.kpi_comparison) without what rests on too few customers.

    ``current``/``previous``: respondents in the two periods. A survey score of a period with fewer
    respondents is dropped; its delta is blanked when the previous period has fewer. Retention and
    churn rest on the customers at the start of their quarters (``n``, ``previous_n``).

    >>> k = pd.DataFrame({"metric": ["nps", "retention"], "n": [40, 3], "previous_n": [30, 2],
    ...                   "previous": [10.0, 90.0], "delta": [2.0, 1.0], "delta_low": [0.0, 0.0],
    ...                   "delta_high": [4.0, 2.0], "p_value": [0.1, 0.2], "significant": [False, False]})
    >>> withhold_kpis(k, current=40, previous=3)[["metric", "delta"]].to_dict("records")
    [{'metric': 'nps', 'delta': nan}]
    """
    if kpis.empty:
        return kpis
    out = kpis.copy()
    survey = out["metric"].isin(SURVEY_KPIS)
    now_n = out["n"].where(~survey, current)
    before_n = out["previous_n"].where(~survey, previous if previous is not None else 0)
    out = out[pd.to_numeric(now_n, errors="coerce").fillna(0) >= minimum].copy()
    blank = pd.to_numeric(before_n.loc[out.index], errors="coerce").fillna(0) < minimum
    for column in _DELTAS:
        if column in out.columns:
            out.loc[blank, column] = math.nan
    if "significant" in out.columns:
        out.loc[blank, "significant"] = False
    return out.reset_index(drop=True)


def withhold_periods(
    frame: pd.DataFrame, counts: pd.DataFrame, minimum: int = MIN_GROUP_CUSTOMERS
) -> pd.DataFrame:
    """A per-period frame (``period`` column, e.g. a trend) without the periods whose ``counts``
    (period, customers) are below ``minimum``."""
    if frame.empty:
        return frame
    enough = set(pd.to_datetime(counts.loc[counts["customers"] >= minimum, "period"]))
    return frame[pd.to_datetime(frame["period"]).isin(enough)].reset_index(drop=True)


def moves_counts(conn: Connection, moves: pd.DataFrame, flt: SegmentFilter) -> pd.DataFrame:
    """Respondents per (dimension, segment) of the segments in ``moves`` over ``flt``."""
    parts = []
    for dimension in sorted(set(moves["dimension"])) if not moves.empty else []:
        counts = privacy.respondents_by_segment(conn, flt.with_dimension(dimension, ()), dimension)
        parts.append(counts.assign(dimension=dimension))
    if not parts:
        return pd.DataFrame(columns=["dimension", "segment", "customers"])
    return pd.concat(parts, ignore_index=True)


def withhold_moves(
    moves: pd.DataFrame, now: pd.DataFrame, before: pd.DataFrame, minimum: int = MIN_GROUP_CUSTOMERS
) -> pd.DataFrame:
    """Segment moves (relq.outputs.board_report.segment_moves) whose segment has at least
    ``minimum`` respondents in both periods (``now``/``before``: dimension, segment, customers)."""
    if moves.empty:
        return moves

    def enough(counts: pd.DataFrame) -> set[tuple[str, str]]:
        big = counts[counts["customers"] >= minimum]
        return set(zip(big["dimension"], big["segment"].astype(str), strict=True))

    keep = enough(now) & enough(before)
    pairs = list(zip(moves["dimension"], moves["value"].astype(str), strict=True))
    return moves[[p in keep for p in pairs]].reset_index(drop=True)


def executive_overview(
    conn: Connection,
    flt: SegmentFilter,
    kpis: pd.DataFrame,
    current: SegmentFilter,
    previous: SegmentFilter | None,
    trend: pd.DataFrame,
    moves: pd.DataFrame,
    minimum: int = MIN_GROUP_CUSTOMERS,
    freq: str = "month",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The overview's KPIs, trend and segment moves without what rests on fewer than ``minimum``
    customers (periods of the trend, a period of the cards, a segment in either period)."""
    now_n = privacy.respondents(conn, current)
    before_n = privacy.respondents(conn, previous) if previous is not None else None
    kpis = withhold_kpis(kpis, now_n, before_n, minimum)
    trend = withhold_periods(trend, privacy.respondents_by_period(conn, flt, freq), minimum)
    if not moves.empty and previous is not None:
        moves = withhold_moves(
            moves, moves_counts(conn, moves, current), moves_counts(conn, moves, previous), minimum
        )
    return kpis, trend, moves


def withhold_survival(km, minimum: int = MIN_GROUP_CUSTOMERS):
    """Kaplan–Meier results (relq.analyses.survival.KaplanMeier) without the curves, summary rows
    and pairwise tests of segments with fewer than ``minimum`` customers."""
    from dataclasses import replace

    if km.summary.empty:
        return km
    small = set(km.summary.loc[km.summary["customers"] < minimum, "segment"].astype(str))
    if not small:
        return km
    pairwise = km.pairwise
    if not pairwise.empty:
        pairwise = pairwise[~pairwise["a"].astype(str).isin(small) & ~pairwise["b"].astype(str).isin(small)]
    return replace(
        km,
        curves=km.curves[~km.curves["segment"].astype(str).isin(small)].reset_index(drop=True),
        summary=km.summary[~km.summary["segment"].astype(str).isin(small)].reset_index(drop=True),
        pairwise=pairwise.reset_index(drop=True),
    )
