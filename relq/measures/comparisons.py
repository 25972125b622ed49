"""Segment vs rest and period vs previous, with the tests and small-sample rules of the Methodology page.

Every test treats each customer as a cluster (Methodology page → Comparisons):

- Two disjoint groups (a segment vs the rest of the responses in view): means (pillars, RQ, CES)
  by Welch's t with the customer-clustered variances and Satterthwaite df; NPS and CSAT by a
  z-test on the difference with the clustered variances.
- Period vs previous: the same customer often answers in both, so the difference is linearised
  over the customers of both periods; z-test.
- Benjamini–Hochberg over the family shown together (a segment table: per score across the
  dimension's values; the period's cards: across the scores); a delta is significant only at
  q < 0.05.
- A score with n below the minimum (default 30) is flagged ``small``: it is shown greyed with its n,
  never ranked and never marked significant.

One two-level query (per customer, then over customers, ``GROUP BY ROLLUP``) returns the sums of
every segment and of the total; "the rest" of a segment is the total minus the segment, because
every sum is a sum over customers and each customer is in one segment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from relq.core.settings import resolve_min_n
from relq.exceptions import RelqError
from relq.measures import clustered, stats
from relq.measures.customer_sums import GroupSums, group_sums, pair_sums, period_sums
from relq.measures.metrics import Headline, Score, headline_from_sums, weighting_problem
from relq.store import catalog
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

__all__ = [
    "METRICS",
    "MEAN_METRICS",
    "NO_VALUE",
    "Segment",
    "SegmentScores",
    "compare_headlines",
    "compare_scores",
    "delta_record",
    "segment_breakdown",
    "segment_scores",
    "period_comparison",
    "period_deltas",
]

MEAN_METRICS: tuple[str, ...] = (*PILLARS, "rq", "ces")
METRICS: tuple[str, ...] = (*PILLARS, "rq", "nps", "csat", "ces")
# Lower effort is better: CES ranks ascending.
LOWER_IS_BETTER = frozenset({"ces"})
NO_VALUE = "(no value)"


def score_of(head: Headline, metric: str) -> Score:
    """One score of a headline."""
    return head.score(metric)


def _comparison(d: clustered.ClusteredDifference) -> stats.Comparison:
    return stats.Comparison(d.delta, d.low, d.high, d.p_value, d.test)


def compare_scores(a: Score, b: Score) -> stats.Comparison:
    """``a − b`` for two disjoint groups: Welch with clustered variances and Satterthwaite df for
    means, a z-test with the clustered variances for NPS and CSAT (points)."""
    if a.kind == "mean":
        return _comparison(clustered.welch_clustered(a.clustered(), b.clustered()))
    return _comparison(clustered.z_difference(a.clustered(), b.clustered()))


def compare_headlines(a: Headline, b: Headline) -> dict[str, stats.Comparison]:
    """Every score of ``a`` minus ``b`` (two disjoint groups), in the score's own points."""
    return {name: compare_scores(a.score(name), b.score(name)) for name in METRICS}


@dataclass(frozen=True)
class Segment:
    """One value of a dimension: its scores and each score compared with the rest."""

    value: str
    sums: GroupSums
    headline: Headline
    comparisons: dict[str, stats.Comparison]
    customers: int | None = None  # distinct customers (executives never see a group under 5)

    def as_report(self) -> dict:
        head = self.headline.as_dict()
        return {
            "value": self.value,
            "n": self.headline.responses,
            "customers": self.headline.customers,
            "nps": head["nps"],
            "pillars": head["pillars"],
            "rq": head["rq"],
            "csat": head["csat"],
            "ces": head["ces"],
            "vs_rest": {name: c.as_dict() for name, c in self.comparisons.items()},
        }


@dataclass(frozen=True)
class SegmentScores:
    dimension: str
    total: Headline
    segments: tuple[Segment, ...]
    min_n: int

    def frame(self) -> pd.DataFrame:
        """Tidy: one row per segment × score (see :func:`segment_scores`)."""
        records = []
        for seg in self.segments:
            for metric in METRICS:
                score = score_of(seg.headline, metric)
                comp = seg.comparisons[metric]
                small = stats.is_small(score.n, self.min_n)
                records.append(
                    {
                        "value": seg.value,
                        "responses": seg.headline.responses,
                        "customers": seg.customers,
                        "metric": metric,
                        "estimate": score.estimate,
                        "low": score.low,
                        "high": score.high,
                        "n": score.n,
                        "score_customers": score.customers,
                        "n_eff": score.n_eff,
                        "small": small,
                        "delta": comp.delta,
                        "delta_low": comp.low,
                        "delta_high": comp.high,
                        "p_value": comp.p_value,
                        "q_value": np.nan if comp.q_value is None else comp.q_value,
                        "test": comp.test,
                        "significant": comp.significant(),
                    }
                )
        frame = pd.DataFrame(records, columns=_FRAME_COLUMNS)
        if frame.empty:
            return frame.assign(rank=pd.Series(dtype=float))
        ranked = frame[~frame["small"] & frame["estimate"].notna()]
        rank = pd.Series(np.nan, index=frame.index)
        for metric, part in ranked.groupby("metric"):
            rank.loc[part.index] = part["estimate"].rank(ascending=metric in LOWER_IS_BETTER, method="min")
        frame["rank"] = rank
        return frame

    def as_report(self) -> list[dict]:
        return [seg.as_report() for seg in self.segments]


_FRAME_COLUMNS = [
    "value",
    "responses",
    "customers",
    "metric",
    "estimate",
    "low",
    "high",
    "n",
    "score_customers",
    "n_eff",
    "small",
    "delta",
    "delta_low",
    "delta_high",
    "p_value",
    "q_value",
    "test",
    "significant",
]


def _check_dimension(conn: Connection, dimension: str) -> None:
    known = catalog.dimensions(conn)
    if dimension not in known:
        raise RelqError(f"Unknown segment dimension {dimension!r}; choose one of: {', '.join(known)}.")


def segment_breakdown(
    conn: Connection,
    flt: SegmentFilter,
    dimension: str,
    min_n: int | None = None,
    count_customers: bool = True,
) -> SegmentScores:
    """Scores per value of ``dimension``, each compared with the rest of the filtered responses.

    The filter's own selection on ``dimension`` is dropped (comparing "EU" with a rest that the
    filter already removed says nothing). Responses whose customer has no value for the dimension
    (or that match no customer) form the segment ``"(no value)"``. Segments come largest first.
    Tests: Welch with customer-clustered variances (means), z-test with clustered variances (NPS,
    CSAT); q-values: Benjamini–Hochberg per score across the segments that are not small.
    ``count_customers`` is kept for callers of the earlier signature: customers are always counted.
    """
    _check_dimension(conn, dimension)
    min_n = resolve_min_n(min_n)
    flt = flt.with_dimension(dimension, ())
    frame, plan = group_sums(conn, flt, segment=dimension, rollup=True)
    weighting_problem(plan)
    rows = frame.to_dict("records") if not frame.empty else []
    total_row = next((r for r in rows if int(r["is_total"]) == 1), None)
    if total_row is None or int(total_row["responses"] or 0) == 0:
        empty = headline_from_sums(GroupSums.from_row({}), flt.weighting)
        return SegmentScores(dimension, empty, (), min_n)
    total_sums = GroupSums.from_row(total_row)
    total = headline_from_sums(total_sums, flt.weighting)
    parts = []
    for r in rows:
        if int(r["is_total"]) == 1:
            continue
        sums = GroupSums.from_row(r)
        head = headline_from_sums(sums, flt.weighting)
        rest = headline_from_sums(total_sums - sums, flt.weighting)
        value = NO_VALUE if r["segment"] is None or r["segment"] != r["segment"] else str(r["segment"])
        parts.append(Segment(value, sums, head, compare_headlines(head, rest), sums.customers))
    parts.sort(key=lambda s: (-s.headline.responses, s.value))
    return SegmentScores(dimension, total, tuple(_with_q_values(parts, min_n)), min_n)


def _with_q_values(parts: list[Segment], min_n: int) -> list[Segment]:
    """BH per score across the segments; a small segment gets no q and is never significant."""
    comparisons = [dict(s.comparisons) for s in parts]
    for metric in METRICS:
        eligible = [
            i for i, s in enumerate(parts) if not stats.is_small(score_of(s.headline, metric).n, min_n)
        ]
        q = stats.benjamini_hochberg([parts[i].comparisons[metric].p_value for i in eligible])
        for i, s in enumerate(parts):
            comparisons[i][metric] = replace(s.comparisons[metric], q_value=math.nan)
        for i, qi in zip(eligible, q, strict=True):
            comparisons[i][metric] = replace(parts[i].comparisons[metric], q_value=float(qi))
    return [replace(s, comparisons=c) for s, c in zip(parts, comparisons, strict=True)]


def segment_scores(
    conn: Connection,
    flt: SegmentFilter,
    dimension: str,
    min_n: int | None = None,
    count_customers: bool = True,
) -> pd.DataFrame:
    """Tidy frame, one row per segment value × score, each vs the rest of the filtered responses.

    Columns: value, responses, customers (distinct customers of the segment), metric (trust,
    commitment, satisfaction, rq, nps, csat, ces), estimate, low, high, n (responses having the
    score), score_customers (its clusters), n_eff (NPS, CSAT), small, delta, delta_low, delta_high
    (segment − rest, in the score's points), p_value, q_value (Benjamini–Hochberg across segments),
    test, significant (q < 0.05, never when small), rank (1 = best among segments that are not
    small; NaN when small).
    """
    return segment_breakdown(conn, flt, dimension, min_n, count_customers).frame()


DELTA_COLUMNS = [
    "metric",
    "estimate",
    "low",
    "high",
    "n",
    "customers",
    "unmatched",
    "n_eff",
    "previous",
    "previous_n",
    "delta",
    "delta_low",
    "delta_high",
    "p_value",
    "q_value",
    "test",
    "significant",
    "small",
]


def delta_record(
    metric: str,
    now: Score | stats.Interval,
    previous: Score | stats.Interval,
    comp: stats.Comparison,
    min_n: int,
) -> dict:
    """One score now vs before (the keys of :data:`DELTA_COLUMNS`): estimate, interval, n, customers,
    n_eff, the previous value, the delta with its interval, test and q. ``small`` is the current
    side's flag; ``significant`` (q < 0.05) never when either side is small."""
    small = stats.is_small(now.n, min_n)
    return {
        "metric": metric,
        "estimate": now.estimate,
        "low": now.low,
        "high": now.high,
        "n": now.n,
        "customers": getattr(now, "matched_customers", math.nan),
        "unmatched": getattr(now, "unmatched", 0),
        "n_eff": getattr(now, "n_eff", math.nan),
        "previous": previous.estimate,
        "previous_n": previous.n,
        "delta": comp.delta,
        "delta_low": comp.low,
        "delta_high": comp.high,
        "p_value": comp.p_value,
        "q_value": math.nan if comp.q_value is None else comp.q_value,
        "test": comp.test,
        "significant": bool(not small and not stats.is_small(previous.n, min_n) and comp.significant()),
        "small": small,
    }


def period_deltas(
    conn: Connection | None, current: SegmentFilter, previous: SegmentFilter, row: Mapping | None = None
) -> tuple[Headline, Headline, dict[str, stats.Comparison]]:
    """Headlines of two periods and each score's difference, linearised over the customers of both
    (the same customer often answers in both); z-tests, no q-values yet. ``row``: the view's row of
    :func:`pair_sums` when it was read already (``conn`` is then not used)."""
    if row is None:
        frame, plan = pair_sums(conn, current, previous)
        weighting_problem(plan)
        row = frame.iloc[0].to_dict() if not frame.empty else {}
    now = headline_from_sums(GroupSums.from_row(row, prefix="c_"), current.weighting)
    before = headline_from_sums(GroupSums.from_row(row, prefix="p_"), current.weighting)
    comps = {}
    for metric in METRICS:
        kind = "mean" if metric in MEAN_METRICS else metric
        comps[metric] = _comparison(clustered.period_difference_from_sums(period_sums(row, metric), kind))
    return now, before, comps


def with_family_q(records: list[dict], eligible: list[bool]) -> list[dict]:
    """Benjamini–Hochberg across one family of delta records (e.g. the KPI cards); a record that
    is not eligible (small) gets no q and is never significant."""
    idx = [i for i, ok in enumerate(eligible) if ok]
    q = stats.benjamini_hochberg([records[i]["p_value"] for i in idx])
    out = [dict(r, q_value=math.nan, significant=False) for r in records]
    for i, qi in zip(idx, q, strict=True):
        out[i]["q_value"] = float(qi)
        out[i]["significant"] = bool(qi < clustered.Q_THRESHOLD)
    return out


def period_comparison(conn: Connection, flt: SegmentFilter, min_n: int | None = None) -> pd.DataFrame:
    """Each headline score in the filter's period vs the previous period of equal length.

    Returns :data:`DELTA_COLUMNS` without ``small``. The difference is linearised over the customers
    of both periods (z-test); q-values by Benjamini–Hochberg across the scores shown together; a
    delta where either side is small is not tested and never significant. Empty when the filter has
    no closed period.
    """
    columns = [c for c in DELTA_COLUMNS if c != "small"]
    before = flt.shifted_back()
    if before is None:
        return pd.DataFrame(columns=columns)
    min_n = resolve_min_n(min_n)
    now, prev, comps = period_deltas(conn, flt, before)
    records = [
        delta_record(metric, score_of(now, metric), score_of(prev, metric), comps[metric], min_n)
        for metric in METRICS
    ]
    eligible = [not r["small"] and not stats.is_small(r["previous_n"], min_n) for r in records]
    return pd.DataFrame(with_family_q(records, eligible), columns=columns)
