"""The segment explorer: every segment of one or two dimensions with its scores, intervals,
retention and significance vs the rest (Benjamini–Hochberg), built on relq.measures.comparisons.

Survey scores treat each customer as a cluster (customer-clustered intervals, Welch and z-tests on
clustered variances); retention is customer-level already (one row per customer, Wilson/Newcombe)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from relq.core.settings import resolve_min_n
from relq.measures import stats
from relq.measures.comparisons import segment_scores
from relq.store import catalog
from relq.store.filters import SegmentFilter

__all__ = ["MAX_SECOND_VALUES", "segment_table", "segment_retention", "wide_segment_table"]

MAX_SECOND_VALUES = 12
SEPARATOR = " · "


def segment_table(
    conn: Connection,
    flt: SegmentFilter,
    dimensions: tuple[str, ...],
    min_n: int | None = None,
    count_customers: bool = False,
) -> pd.DataFrame:
    """Tidy scores per segment × metric (relq.measures.comparisons.segment_scores) for one dimension, or
    for the crossing of two: each value of the first within each of the (up to 12 most common)
    values of the second, compared with the rest of that second value. q-values are recomputed
    by Benjamini–Hochberg per metric across every segment shown; small segments get none."""
    min_n = resolve_min_n(min_n)
    if not 1 <= len(dimensions) <= 2:
        raise ValueError("Choose one or two dimensions.")
    first = dimensions[0]
    if len(dimensions) == 1:
        frame = segment_scores(conn, flt, first, min_n, count_customers)
        return frame.rename(columns={"value": "segment"})
    second = dimensions[1]
    if second == first:
        raise ValueError("Choose two different dimensions.")
    chosen = flt.values_of(second)
    values = list(chosen) or catalog.dimension_values(conn, second, limit=MAX_SECOND_VALUES)
    parts = []
    for value in values:
        part = segment_scores(conn, flt.with_dimension(second, [value]), first, min_n, count_customers)
        if part.empty:
            continue
        part = part.assign(segment=part["value"].astype(str) + SEPARATOR + str(value))
        parts.append(part.drop(columns="value"))
    if not parts:
        return (
            segment_scores(conn, flt, first, min_n, count_customers)
            .rename(columns={"value": "segment"})
            .iloc[0:0]
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["q_value"] = np.nan
    for _metric, idx in frame[~frame["small"]].groupby("metric").groups.items():
        frame.loc[idx, "q_value"] = stats.benjamini_hochberg(frame.loc[idx, "p_value"].to_numpy(dtype=float))
    frame["significant"] = (~frame["small"]) & (frame["q_value"] < 0.05)
    frame["rank"] = np.nan
    ranked = frame[~frame["small"] & frame["estimate"].notna()]
    for metric, part in ranked.groupby("metric"):
        frame.loc[part.index, "rank"] = part["estimate"].rank(ascending=metric == "ces", method="min")
    return frame


def segment_retention(
    conn: Connection, flt: SegmentFilter, dimensions: tuple[str, ...], min_n: int | None = None
) -> pd.DataFrame:
    """Quarterly retention (%) of each segment in the last whole quarter, Wilson interval, and
    Newcombe vs all customers in view. Columns: segment, estimate, low, high, n, delta, p_value,
    q_value, significant, small, quarter."""
    from relq.analyses import retention

    min_n = resolve_min_n(min_n)
    columns = [
        "segment",
        "estimate",
        "low",
        "high",
        "n",
        "delta",
        "p_value",
        "q_value",
        "significant",
        "small",
        "quarter",
    ]
    base = flt
    for d in dimensions:
        base = base.with_dimension(d, ())
    # One dimension: the view's and every segment's rates from one grouped query; two: one query per pair.
    grouped = None
    if len(dimensions) == 1:
        everyone, grouped = retention.retention_rates_with_total(conn, base, dimensions[0], "quarter")
    else:
        everyone = retention.retention_rates(conn, base, "quarter")
    total = _last_quarter(everyone)
    if total is None:
        return pd.DataFrame(columns=columns)
    combos: list[list[tuple[str, str]]] = [[]]
    for i, d in enumerate(dimensions):
        values = flt.values_of(d) if i else ()
        values = values or catalog.dimension_values(conn, d, limit=30 if i == 0 else MAX_SECOND_VALUES)
        combos = [c + [(d, v)] for c in combos for v in values]
    records = []
    for combo in combos:
        if grouped is not None:
            rates = grouped.get(str(combo[0][1]), pd.DataFrame(columns=retention.RATE_COLUMNS))
        else:
            sub = base
            for d, v in combo:
                sub = sub.with_dimension(d, [v])
            rates = retention.retention_rates(conn, sub, "quarter")
        row = _last_quarter(rates, total["period"])
        if row is None or int(row["n"]) == 0:
            continue
        kept, n = _retained(row), int(row["at_start"])
        rest_kept, rest_n = _retained(total) - kept, int(total["at_start"]) - n
        c = stats.proportion_difference(kept, n, max(rest_kept, 0), rest_n) if rest_n > 0 else None
        records.append(
            {
                "segment": SEPARATOR.join(str(v) for _, v in combo),
                "estimate": float(row["estimate"]),
                "low": float(row["low"]),
                "high": float(row["high"]),
                "n": n,
                "delta": 100 * c.delta if c else math.nan,
                "p_value": c.p_value if c else math.nan,
                "small": stats.is_small(n, min_n),
                "quarter": pd.Timestamp(total["period"]).date(),
            }
        )
    frame = pd.DataFrame(records, columns=[c for c in columns if c not in ("q_value", "significant")])
    frame["q_value"] = np.nan
    ok = ~frame["small"].astype(bool)
    if ok.any():
        frame.loc[ok, "q_value"] = stats.benjamini_hochberg(frame.loc[ok, "p_value"].to_numpy(dtype=float))
    frame["significant"] = ok & (frame["q_value"] < 0.05)
    return frame[columns]


def _last_quarter(rates: pd.DataFrame, period=None):
    part = rates[rates["metric"] == "retention"] if not rates.empty else rates
    if part.empty:
        return None
    if period is not None:
        part = part[part["period"] == period]
        return None if part.empty else part.iloc[0]
    return part.sort_values("period").iloc[-1]


def _retained(row) -> int:
    """Customers at the quarter's start still active at its end (Methodology page → Retention rate)."""
    return int(row["retained"])


def wide_segment_table(scores: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """One row per segment: responses and customers, then per score its estimate, 95% interval, n
    (NPS and CSAT also n_eff) and q vs the rest (✱ when significant); retention joined by segment.
    Small rows keep ``small`` True."""
    if scores.empty:
        return pd.DataFrame()
    rows = []
    for segment, part in scores.groupby("segment", sort=False):
        row = {
            "segment": segment,
            "responses": int(part["responses"].iloc[0]),
            "customers": part["customers"].iloc[0],
            "small": bool(part["small"].all()),
        }
        for r in part.itertuples():
            digits = 2 if r.metric == "ces" else 1
            row[r.metric] = None if pd.isna(r.estimate) else round(float(r.estimate), digits)
            row[f"{r.metric} 95% CI"] = _interval(r.low, r.high, digits)
            row[f"{r.metric} n"] = int(r.n)
            if r.metric in ("nps", "csat") and "n_eff" in part and not pd.isna(r.n_eff):
                row[f"{r.metric} n_eff"] = int(round(float(r.n_eff)))
            row[f"{r.metric} vs rest"] = _versus(r.delta, r.q_value, r.significant, digits)
            row[f"{r.metric} rank"] = None if pd.isna(r.rank) else int(r.rank)
        rows.append(row)
    wide = pd.DataFrame(rows)
    if not kept.empty:
        ret = kept.set_index("segment")
        wide["retention"] = wide["segment"].map(ret["estimate"].round(1))
        wide["retention 95% CI"] = wide["segment"].map(
            {s: _interval(lo, hi, 1) for s, lo, hi in zip(ret.index, ret["low"], ret["high"], strict=True)}
        )
        wide["retention n"] = wide["segment"].map(ret["n"])
        wide["retention vs rest"] = wide["segment"].map(
            {
                s: _versus(d, q, sig, 1)
                for s, d, q, sig in zip(
                    ret.index, ret["delta"], ret["q_value"], ret["significant"], strict=True
                )
            }
        )
    return wide


def _interval(low, high, digits: int) -> str:
    if pd.isna(low) or pd.isna(high):
        return "–"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _versus(delta, q, significant, digits: int) -> str:
    if pd.isna(delta):
        return "–"
    mark = " ✱" if significant else ""
    q_text = "" if pd.isna(q) else f" (q={q:.3f})"
    return f"{delta:+.{digits}f}{q_text}{mark}"
