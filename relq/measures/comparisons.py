"""Segment vs rest and period vs previous, with the tests and small-sample rules of the Methodology page.

- NPS: z-test on the difference with the adjusted-Wald variances.
- CSAT (top-2-box): Newcombe's interval for the difference of proportions.
- Pillar indices, RQ and CES: Welch's t-test.
- Many segments at once: Benjamini–Hochberg q-values across the segments, per score; a delta is
  significant only at q < 0.05.
- A score with n below the minimum (default 30) is flagged ``small``: it is shown greyed with its n,
  never ranked and never marked significant.

One ``GROUP BY ROLLUP`` query returns the sufficient statistics of every segment and of the
total; "the rest" of a segment is the total minus the segment, so it needs no query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.core.settings import resolve_min_n
from relq.exceptions import RelqError
from relq.measures import metrics, stats
from relq.measures.metrics import Headline
from relq.store import catalog, schema
from relq.store.filters import SegmentFilter, customer_dimension
from relq.store.schema import PILLARS

__all__ = [
    "METRICS",
    "MEAN_METRICS",
    "NO_VALUE",
    "Segment",
    "SegmentScores",
    "compare_headlines",
    "delta_record",
    "statistics_row",
    "segment_breakdown",
    "segment_scores",
    "period_comparison",
]

R = schema.survey_responses
MEAN_METRICS: tuple[str, ...] = (*PILLARS, "rq", "ces")
METRICS: tuple[str, ...] = (*PILLARS, "rq", "nps", "csat", "ces")
# Lower effort is better: CES ranks ascending.
LOWER_IS_BETTER = frozenset({"ces"})
NO_VALUE = "(no value)"


def score_of(head: Headline, metric: str) -> stats.Interval:
    """One score of a headline as an Interval (NPS included)."""
    if metric in PILLARS:
        return head.pillars[metric]
    if metric == "nps":
        return stats.Interval(head.nps.score, head.nps.low, head.nps.high, head.nps.n)
    return {"rq": head.rq, "csat": head.csat, "ces": head.ces}[metric]


def _variance(m, name: str) -> float:
    return stats.variance_from_sums(int(m[f"{name}_n"]), float(m[f"{name}_sum"]), float(m[f"{name}_sumsq"]))


def compare_headlines(a: Headline, a_stats, b: Headline, b_stats) -> dict[str, stats.Comparison]:
    """Every score of ``a`` minus ``b`` with the Methodology page's test (deltas in the score's own points).

    ``a_stats``/``b_stats`` are the sufficient-statistics rows behind the two headlines.
    """
    ma = a_stats._mapping if hasattr(a_stats, "_mapping") else a_stats
    mb = b_stats._mapping if hasattr(b_stats, "_mapping") else b_stats
    out: dict[str, stats.Comparison] = {}
    for name in MEAN_METRICS:
        sa_, sb_ = score_of(a, name), score_of(b, name)
        if sa_.n < 2 or sb_.n < 2:
            out[name] = stats.Comparison(math.nan, math.nan, math.nan, math.nan, "Welch")
            continue
        out[name] = stats.welch_difference(
            sa_.n, sa_.estimate, _variance(ma, name), sb_.n, sb_.estimate, _variance(mb, name)
        )
    out["nps"] = stats.nps_difference(a.nps, b.nps)
    share = stats.proportion_difference(
        int(ma["csat_top2"]), int(ma["csat_n"]), int(mb["csat_top2"]), int(mb["csat_n"])
    )
    out["csat"] = replace(share, delta=100 * share.delta, low=100 * share.low, high=100 * share.high)
    return out


@dataclass(frozen=True)
class Segment:
    """One value of a dimension: its scores and each score compared with the rest."""

    value: str
    stats_row: dict
    headline: Headline
    comparisons: dict[str, stats.Comparison]
    customers: int | None = None  # distinct customers, when counted (executives never see < 5)

    def as_report(self) -> dict:
        head = self.headline.as_dict()
        return {
            "value": self.value,
            "n": self.headline.responses,
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
    count_customers: bool = False,
) -> SegmentScores:
    """Scores per value of ``dimension``, each compared with the rest of the filtered responses.

    The filter's own selection on ``dimension`` is dropped (comparing "EU" with a rest that the
    filter already removed says nothing). Responses whose customer has no value for the dimension
    (or that match no customer) form the segment ``"(no value)"``. Segments come largest first.
    q-values: Benjamini–Hochberg per score across the segments that are not small.
    """
    _check_dimension(conn, dimension)
    min_n = resolve_min_n(min_n)
    flt = flt.with_dimension(dimension, ())
    customers = schema.customers
    inner = (
        sa.select(
            *[R.c[name] for name in (*PILLARS, "rq", "nps", "csat", "ces")],
            R.c.customer_id,
            customer_dimension(dimension).label("segment"),
        )
        .select_from(R.outerjoin(customers, R.c.customer_id == customers.c.customer_id))
        .where(flt.response_clause())
        .subquery("by_segment")
    )
    is_total = sa.func.grouping(inner.c.segment).label("is_total")
    # Distinct customers per segment cost a DISTINCT over every response (≈1.6× the query on the
    # 1M-response tier), so they are counted only when asked: for executives, who never see a
    # group under 5 customers.
    customers_count = (
        sa.func.count(sa.distinct(inner.c.customer_id)) if count_customers else sa.null()
    ).label("customers")
    rows = conn.execute(
        sa.select(inner.c.segment, is_total, customers_count, *metrics.sufficient_statistics(inner)).group_by(
            sa.func.rollup(inner.c.segment)
        )
    ).all()
    total_row = next((r._mapping for r in rows if int(r.is_total) == 1), None)
    if total_row is None or int(total_row["responses"]) == 0:
        empty = metrics.headline_from_row({k: 0 for k in metrics.STATISTIC_KEYS})
        return SegmentScores(dimension, empty, (), min_n)
    total_row = {k: total_row[k] for k in metrics.STATISTIC_KEYS}
    total = metrics.headline_from_row(total_row)
    parts = []
    for r in rows:
        if int(r.is_total) == 1:
            continue
        m = {k: r._mapping[k] for k in metrics.STATISTIC_KEYS}
        head = metrics.headline_from_row(m)
        rest_row = metrics.statistics_difference(total_row, m)
        rest = metrics.headline_from_row(rest_row)
        value = NO_VALUE if r.segment is None else str(r.segment)
        customers_n = None if r.customers is None else int(r.customers)
        parts.append(Segment(value, m, head, compare_headlines(head, m, rest, rest_row), customers_n))
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
    count_customers: bool = False,
) -> pd.DataFrame:
    """Tidy frame, one row per segment value × score, each vs the rest of the filtered responses.

    Columns: value, responses, customers (distinct; only with ``count_customers``), metric (trust,
    commitment, satisfaction, rq, nps, csat, ces), estimate, low, high, n, small, delta, delta_low, delta_high (segment − rest, in the score's
    points), p_value, q_value (Benjamini–Hochberg across segments), test, significant (q < 0.05,
    never when small), rank (1 = best among segments that are not small; NaN when small).
    """
    return segment_breakdown(conn, flt, dimension, min_n, count_customers).frame()


def statistics_row(conn: Connection, flt: SegmentFilter) -> dict:
    """The sufficient statistics of the filtered responses, as a plain dict (one query)."""
    row = conn.execute(sa.select(*metrics.sufficient_statistics()).where(flt.response_clause())).one()
    return {k: row._mapping[k] for k in metrics.STATISTIC_KEYS}


DELTA_COLUMNS = [
    "metric",
    "estimate",
    "low",
    "high",
    "n",
    "previous",
    "previous_n",
    "delta",
    "delta_low",
    "delta_high",
    "p_value",
    "test",
    "significant",
    "small",
]


def delta_record(
    metric: str, now: stats.Interval, previous: stats.Interval, comp: stats.Comparison, min_n: int
) -> dict:
    """One score now vs before (the keys of :data:`DELTA_COLUMNS`): estimate, interval, n, the previous value, the delta with its interval
    and test. ``small`` is the current side's flag; ``significant`` never when either side is small."""
    small = stats.is_small(now.n, min_n)
    return {
        "metric": metric,
        "estimate": now.estimate,
        "low": now.low,
        "high": now.high,
        "n": now.n,
        "previous": previous.estimate,
        "previous_n": previous.n,
        "delta": comp.delta,
        "delta_low": comp.low,
        "delta_high": comp.high,
        "p_value": comp.p_value,
        "test": comp.test,
        "significant": bool(not small and not stats.is_small(previous.n, min_n) and comp.significant()),
        "small": small,
    }


def period_comparison(conn: Connection, flt: SegmentFilter, min_n: int | None = None) -> pd.DataFrame:
    """Each headline score in the filter's period vs the previous period of equal length.

    Returns metric, estimate, low, high, n, previous, previous_n, delta, delta_low, delta_high,
    p_value, test, significant. Each score is one question, so q = p here; a delta where either
    side is small is never significant. Empty when the filter has no closed period.
    """
    columns = [c for c in DELTA_COLUMNS if c != "small"]
    before = flt.shifted_back()
    if before is None:
        return pd.DataFrame(columns=columns)
    min_n = resolve_min_n(min_n)
    now_row, before_row = statistics_row(conn, flt), statistics_row(conn, before)
    now, prev = metrics.headline_from_row(now_row), metrics.headline_from_row(before_row)
    comps = compare_headlines(now, now_row, prev, before_row)
    records = [
        delta_record(metric, score_of(now, metric), score_of(prev, metric), comps[metric], min_n)
        for metric in METRICS
    ]
    return pd.DataFrame(records, columns=columns)
