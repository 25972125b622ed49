"""The executive view: KPIs with deltas vs the previous period, the segments that moved most,
and a one-file board report (HTML with the Plotly charts embedded, opens offline).

Deltas follow Methodology page → Comparisons: each customer is a cluster, and the same customer often
answers in both periods, so a survey score's change is linearised over the customers of both periods
(z-test); retention and churn (one row per customer) by Newcombe. Benjamini–Hochberg over the family
shown together (the KPI cards; every segment × score of the moves); significant only at q < 0.05 and
never when either side is below the small-sample minimum.

When the filter has no closed period, the view compares the last full calendar quarter before the
data's end with the quarter before it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq import store
from relq.core.settings import resolve_min_n
from relq.measures import clustered, metrics, stats
from relq.measures.comparisons import (
    DELTA_COLUMNS,
    MEAN_METRICS,
    delta_record,
    period_deltas,
    score_of,
    with_family_q,
)
from relq.measures.customer_sums import GroupSums, last_full_quarters, pair_sums, period_sums, quarter_of
from relq.outputs import charts
from relq.store.filters import SegmentFilter

__all__ = [
    "KPI_METRICS",
    "KPI_LABELS",
    "Periods",
    "overview_periods",
    "quarter_of",
    "kpi_comparison",
    "retention_comparison",
    "overview_kpis",
    "period_sums_by_dimension",
    "segment_moves",
    "quadrant_shares",
    "board_report_html",
]

KPI_METRICS: tuple[str, ...] = (
    "rq",
    "trust",
    "commitment",
    "satisfaction",
    "nps",
    "csat",
    "ces",
    "retention",
    "churn",
)
KPI_LABELS = {**charts.METRIC_LABELS, "retention": "Retention", "churn": "Churn"}
LOWER_IS_BETTER = frozenset({"ces", "churn"})
MOVER_DIMENSIONS: tuple[str, ...] = ("region", "industry", "plan", "value_tier", "lifecycle_stage")
_KPI_COLUMNS = ["metric", "label", *DELTA_COLUMNS[1:]]


@dataclass(frozen=True)
class Periods:
    """The period the KPIs describe and the one they are compared with (None: no comparison)."""

    current: SegmentFilter
    previous: SegmentFilter | None
    description: str


def overview_periods(conn: Connection, flt: SegmentFilter) -> Periods:
    """The filter's own period vs the previous one of equal length; without a closed period the
    last full quarter before the data's end vs the quarter before it."""
    if flt.since and flt.until:
        before = flt.shifted_back()
        return Periods(
            flt,
            before,
            f"{flt.since:%d %b %Y} – {flt.until:%d %b %Y} vs {before.since:%d %b %Y} – {before.until:%d %b %Y}",
        )
    (q_start, q_end), (p_start, p_end) = last_full_quarters(store.current_data_end(conn))
    current = replace(flt, since=q_start, until=q_end)
    # whether any response is in the quarter: the first one found answers it
    has_current = conn.execute(sa.select(sa.literal(1)).where(current.response_clause()).limit(1)).first()
    if has_current is None:
        return Periods(flt, None, "all responses in view (no full quarter with responses to compare)")
    label = f"Q{(q_start.month - 1) // 3 + 1} {q_start.year}"
    prev_label = f"Q{(p_start.month - 1) // 3 + 1} {p_start.year}"
    return Periods(
        current, replace(flt, since=p_start, until=p_end), f"last full quarter, {label}, vs {prev_label}"
    )


def _nan_comparison() -> stats.Comparison:
    return stats.Comparison(math.nan, math.nan, math.nan, math.nan, "")


def kpi_comparison(
    conn: Connection,
    current: SegmentFilter,
    previous: SegmentFilter | None,
    min_n: int | None = None,
    pair_row: Mapping | None = None,
) -> pd.DataFrame:
    """RQ, pillars, NPS, CSAT and CES in ``current`` with the delta vs ``previous``, linearised over
    the customers of both periods (z-test; Methodology page → Comparisons).

    Columns as :data:`_KPI_COLUMNS`; without ``previous`` the delta columns are NaN. q-values come
    later, across every card shown together (:func:`overview_kpis`). ``pair_row``: the view's row of
    the two periods' sums when read already (:func:`period_sums_by_dimension`'s total row).
    """
    min_n = resolve_min_n(min_n)
    if previous is not None:
        now, prev, comps = period_deltas(conn, current, previous, pair_row)
    else:
        now = metrics.headline(conn, current)
    records = []
    for metric in ("rq", "trust", "commitment", "satisfaction", "nps", "csat", "ces"):
        a = score_of(now, metric)
        b = (
            score_of(prev, metric)
            if previous is not None
            else stats.Interval(math.nan, math.nan, math.nan, 0)
        )
        c = comps[metric] if previous is not None else _nan_comparison()
        records.append({**delta_record(metric, a, b, c, min_n), "label": KPI_LABELS[metric]})
    return pd.DataFrame(records, columns=_KPI_COLUMNS)


def retention_comparison(conn: Connection, flt: SegmentFilter, until: date | None, min_n: int | None = None):
    """Quarterly retention and churn (%) for the last whole quarter ending by ``until`` (else the
    data's end) vs the quarter before, Newcombe intervals on the difference. Returns
    (frame like :func:`kpi_comparison`, quarter start or None)."""
    from relq.analyses import retention

    min_n = resolve_min_n(min_n)
    rates = retention.retention_rates(
        conn, SegmentFilter(customer=flt.customer, quadrant=flt.quadrant), "quarter"
    )
    empty = pd.DataFrame(columns=_KPI_COLUMNS)
    if rates.empty:
        return empty, None
    periods = sorted(rates["period"].unique())
    if until is not None:
        limit = pd.Timestamp(quarter_of(until)[0])
        if pd.Timestamp(quarter_of(until)[1]) > pd.Timestamp(until):
            limit = limit - pd.DateOffset(months=3)
        periods = [p for p in periods if pd.Timestamp(p) <= limit]
    if not periods:
        return empty, None
    now_p = periods[-1]
    prev_p = periods[-2] if len(periods) > 1 else None
    records = []
    for metric in ("retention", "churn"):
        now = rates[(rates["period"] == now_p) & (rates["metric"] == metric)].iloc[0]
        prev = (
            rates[(rates["period"] == prev_p) & (rates["metric"] == metric)].iloc[0]
            if prev_p is not None
            else None
        )
        x_now = _successes(now, metric)
        c = _nan_comparison()
        if prev is not None:
            c = stats.proportion_difference(
                x_now, int(now["at_start"]), _successes(prev, metric), int(prev["at_start"])
            )
            c = replace(c, delta=100 * c.delta, low=100 * c.low, high=100 * c.high)
        a = stats.Interval(float(now["estimate"]), float(now["low"]), float(now["high"]), int(now["n"]))
        b = (
            stats.Interval(math.nan, math.nan, math.nan, 0)
            if prev is None
            else stats.Interval(float(prev["estimate"]), math.nan, math.nan, int(prev["n"]))
        )
        records.append({**delta_record(metric, a, b, c, min_n), "label": KPI_LABELS[metric]})
    return pd.DataFrame(records, columns=_KPI_COLUMNS), pd.Timestamp(now_p).date()


def _successes(row, metric: str) -> int:
    """Customers at the quarter's start who churned in it (churn) or were still active (retention)."""
    return int(row["churned"]) if metric == "churn" else int(row["retained"])


def overview_kpis(
    conn: Connection,
    flt: SegmentFilter,
    min_n: int | None = None,
    sums: PeriodSumsReader | None = None,
    periods: Periods | None = None,
) -> tuple[pd.DataFrame, Periods, date | None]:
    """Every KPI of the executive overview with its delta: (frame, periods, retention quarter).

    ``sums`` as for :func:`segment_moves`: the two periods' sums then come from the total row of
    the read that also gives the segment moves of the view (the dashboard's, cached), not from a
    read of their own. ``periods``: :func:`overview_periods` of ``flt`` when known already.
    """
    min_n = resolve_min_n(min_n)
    periods = periods or overview_periods(conn, flt)
    pair_row = None
    if sums is not None and periods.previous is not None:
        names = unfiltered_dimensions(periods.current, periods.previous)
        if names:
            frame = sums(periods.current, periods.previous, names)
            pair_row = frame[frame["dimension"].isna()].iloc[0].to_dict()
    survey = kpi_comparison(conn, periods.current, periods.previous, min_n, pair_row)
    kept, quarter = retention_comparison(conn, flt, periods.current.until, min_n)
    frame = pd.concat([survey, kept], ignore_index=True) if not kept.empty else survey
    # Benjamini–Hochberg across the cards shown together; a small side is not tested.
    records = frame.to_dict("records")
    eligible = [
        not r["small"] and not stats.is_small(int(r["previous_n"]), min_n) and not math.isnan(r["p_value"])
        for r in records
    ]
    frame = pd.DataFrame(with_family_q(records, eligible), columns=_KPI_COLUMNS)
    return frame, periods, quarter


# ``sums(now, before, dimensions)``: :func:`period_sums_by_dimension`'s rows for those periods.
PeriodSumsReader = Callable[[SegmentFilter, SegmentFilter, tuple[str, ...]], pd.DataFrame]


def unfiltered_dimensions(
    now: SegmentFilter, before: SegmentFilter, dimensions: tuple[str, ...] = MOVER_DIMENSIONS
) -> tuple[str, ...]:
    """The ``dimensions`` neither period's filter chooses values of: the segment moves' shared read."""
    return tuple(d for d in dimensions if not now.values_of(d) and not before.values_of(d))


def period_sums_by_dimension(
    conn: Connection, current: SegmentFilter, previous: SegmentFilter, dimensions: tuple[str, ...]
) -> pd.DataFrame:
    """Per segment of each of ``dimensions``, the sums of both periods (pair_sums' rows), and the
    row of the whole view (``dimension`` None), read in one query; raises the weighting's sentence
    when the view cannot be weighted."""
    frame, plan = pair_sums(conn, current, previous, segment=dimensions, total=True)
    metrics.weighting_problem(plan)
    return frame


def segment_moves(
    conn: Connection,
    current: SegmentFilter,
    previous: SegmentFilter,
    dimensions: tuple[str, ...] = MOVER_DIMENSIONS,
    scores: tuple[str, ...] = ("rq", "nps", "csat"),
    min_n: int | None = None,
    significant_only: bool = True,
    sums: PeriodSumsReader | None = None,
) -> pd.DataFrame:
    """Segments whose score changed between ``previous`` and ``current`` (same filter otherwise).

    One two-level query per dimension returns, per segment, the sums over its customers of both
    periods; each difference is linearised over the customers of both periods (z-test).
    Benjamini–Hochberg runs across every segment × score tested; segments small in either period
    are not tested. Sorted by the size of the move.

    ``sums(now, before, dimensions)`` gives :func:`period_sums_by_dimension`'s rows; the dashboard
    passes a cached one (read with ``conn`` when None).
    """
    min_n = resolve_min_n(min_n)
    columns = [
        "dimension",
        "value",
        "metric",
        "label",
        "now",
        "before",
        "n_now",
        "n_before",
        "delta",
        "delta_low",
        "delta_high",
        "p_value",
        "q_value",
        "test",
        "significant",
    ]
    if not (current.since and current.until and previous.since and previous.until):
        return pd.DataFrame(columns=columns)
    cached = sums is not None
    sums = sums or (lambda now, before, names: period_sums_by_dimension(conn, now, before, names))

    def unfiltered(now: SegmentFilter, before: SegmentFilter) -> tuple[str, ...]:
        return unfiltered_dimensions(now, before, dimensions)

    # Each dimension's segments are compared with that dimension's own filter cleared; the
    # dimensions the view does not filter on share one query. With a cache, a filtered dimension is
    # asked for together with every dimension its cleared view leaves open — the very batch that
    # view asked for — so after choosing a region its rows come from the cache.
    batches: list[tuple[SegmentFilter, SegmentFilter, tuple[str, ...], tuple[str, ...]]] = []
    shared = unfiltered(current, previous)
    if shared:
        batches.append((current, previous, shared, shared))
    for d in dimensions:
        if d not in shared:
            now, before = current.with_dimension(d, ()), previous.with_dimension(d, ())
            batches.append((now, before, unfiltered(now, before) if cached else (d,), (d,)))
    rows = []
    for now_flt, before_flt, asked, kept in batches:
        rows += [m for m in sums(now_flt, before_flt, asked).to_dict("records") if m["dimension"] in kept]
    rows.sort(key=lambda m: (dimensions.index(m["dimension"]), str(m["segment"])))
    records = []
    for m in rows:
        dimension = m["dimension"]
        now = metrics.headline_from_sums(GroupSums.from_row(m, prefix="c_"), current.weighting)
        before = metrics.headline_from_sums(GroupSums.from_row(m, prefix="p_"), current.weighting)
        for metric in scores:
            a, b = score_of(now, metric), score_of(before, metric)
            if stats.is_small(a.n, min_n) or stats.is_small(b.n, min_n):
                continue
            kind = "mean" if metric in MEAN_METRICS else metric
            c = clustered.period_difference_from_sums(period_sums(m, metric), kind)
            records.append(
                {
                    "dimension": dimension,
                    "value": str(m["segment"]),
                    "metric": metric,
                    "label": KPI_LABELS[metric],
                    "now": a.estimate,
                    "before": b.estimate,
                    "n_now": a.n,
                    "n_before": b.n,
                    "delta": c.delta,
                    "delta_low": c.low,
                    "delta_high": c.high,
                    "p_value": c.p_value,
                    "test": c.test,
                }
            )
    frame = pd.DataFrame(records, columns=[c for c in columns if c not in ("q_value", "significant")])
    frame["q_value"] = stats.benjamini_hochberg(frame["p_value"].to_numpy(dtype=float)) if len(frame) else []
    frame["significant"] = frame["q_value"] < 0.05
    if significant_only:
        frame = frame[frame["significant"]]
    order = frame["delta"].abs().sort_values(ascending=False).index
    return frame.loc[order, columns].reset_index(drop=True)


# --------------------------------------------------------------------------- board report


def _kpi_table(frame: pd.DataFrame) -> str:
    rows = []
    for r in frame.itertuples():
        digits = 0 if r.metric == "nps" else (2 if r.metric == "ces" else 1)  # CES is a 1–7 mean
        mark = "significant" if r.significant else ("not significant" if not math.isnan(r.delta) else "")
        if mark and not pd.isna(r.q_value):
            mark += f" (q = {r.q_value:.3f})"
        good = (r.delta < 0) if r.metric in LOWER_IS_BETTER else (r.delta > 0)
        colour = (charts.GOOD if good else charts.BAD) if r.significant else "#52606D"
        rows.append(
            f"<tr{' class=small' if r.small else ''}><td>{html.escape(r.label)}</td>"
            f"<td class=num>{charts.format_number(r.estimate, digits)}</td>"
            f"<td class=num>[{charts.format_number(r.low, digits)}, {charts.format_number(r.high, digits)}]</td>"
            f"<td class=num>{_n_text(r)}</td>"
            f"<td class=num style='color:{colour}'>{'' if math.isnan(r.delta) else f'{r.delta:+.{digits}f}'}</td>"
            f"<td>{mark}{' · small sample' if r.small else ''}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Score</th><th>Value</th><th>95% CI</th><th>n</th><th>Δ vs previous</th>"
        "<th>Benjamini–Hochberg q &lt; 0.05</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _n_text(r) -> str:
    if r.metric in ("retention", "churn") or pd.isna(r.customers):
        return f"{int(r.n):,} customers"
    text = f"{int(r.n):,} responses from {int(r.customers):,} customers"
    return text + (f" and {int(r.unmatched):,} unmatched" if r.unmatched else "")


def quadrant_shares(counts: dict[str, int]) -> pd.DataFrame:
    """Customers per quadrant with Wilson 95% intervals of their share (percent)."""
    from relq.analyses.quadrants import QUADRANT_NAMES

    total = sum(counts.values())
    records = []
    for key, n in counts.items():
        w = stats.wilson_interval(int(n), int(total))
        records.append(
            {
                "quadrant": key,
                "label": QUADRANT_NAMES.get(key, key),
                "customers": int(n),
                "share": 100 * w.estimate,
                "low": 100 * w.low,
                "high": 100 * w.high,
                "n": int(total),
            }
        )
    return pd.DataFrame(records)


def _weighting_sentence(flt: SegmentFilter) -> str:
    w = flt.weighting
    return (
        f"Each {w.label} counts once." if w.scheme in ("response", "customer") else f"Weighted by {w.label}."
    )


def _describe_filter(flt: SegmentFilter) -> str:
    parts = [f"{name.replace('_', ' ')}: {', '.join(values)}" for name, values in flt.customer]
    if flt.waves:
        parts.append(f"waves: {', '.join(flt.waves)}")
    if flt.quadrant:
        parts.append(f"quadrant: {flt.quadrant}")
    if flt.exclude_flags:
        parts.append("excluding " + ", ".join(f.removeprefix("flag_") for f in flt.exclude_flags))
    return "; ".join(parts) or "all customers and responses"


def _retention_note(conn: Connection, flt: SegmentFilter, quarter: date | None) -> str:
    """What the retention and churn cards count, with the quarter's new customers beside them."""
    if quarter is None:
        return ""
    from relq.analyses import retention

    rates = retention.retention_rates(
        conn, SegmentFilter(customer=flt.customer, quadrant=flt.quadrant), "quarter"
    )
    row = rates[(rates["period"] == pd.Timestamp(quarter)) & (rates["metric"] == "retention")]
    beside = ""
    if len(row):
        r = row.iloc[0]
        beside = (
            f" Beside them, not in the rates: {int(r['new']):,} new customers joined in the quarter and "
            f"{int(r['new_churned']):,} of them left within it."
        )
    return (
        f" Retention and churn: quarter starting {quarter:%d %b %Y} vs the quarter before, over the customers "
        f"active at each quarter's start ({retention.quarter_label(quarter)}).{beside}"
    )


def board_report_html(
    conn: Connection,
    flt: SegmentFilter,
    generated_at: datetime | None = None,
    minimum_customers: int = 0,
    *,
    moves_filter=None,
) -> str:
    """One self-contained HTML page for a board pack: KPIs with deltas, trends with bands, the
    quadrant mix and the significant segment moves. plotly.js is embedded, so it opens offline.

    ``minimum_customers`` (5 for executives): every score, period and segment resting on fewer
    customers is left out (relq.analyses.small_groups). ``moves_filter`` (frame → frame) may drop
    segment moves a reader must not see."""
    from relq.analyses import quadrants, small_groups

    generated_at = generated_at or datetime.now()
    kpis, periods, quarter = overview_kpis(conn, flt)
    trend = metrics.trend(conn, flt, "month")
    counts = quadrants.quadrant_counts(conn, periods.current)
    moves = (
        segment_moves(conn, periods.current, periods.previous)
        if periods.previous is not None
        else pd.DataFrame()
    )
    if minimum_customers:
        kpis, trend, moves = small_groups.executive_overview(
            conn, flt, kpis, periods.current, periods.previous, trend, moves, minimum_customers
        )
        if sum(counts.values()) < minimum_customers:
            counts = {}
    if moves_filter is not None and not moves.empty:
        moves = moves_filter(moves)
    figures = [
        charts.trend_with_band(
            trend,
            ["rq", "trust", "commitment", "satisfaction"],
            "Relationship quality by month",
            "Index (0–100)",
        ),
        charts.trend_with_band(trend, ["nps"], "NPS by month", "NPS"),
    ]
    if sum(counts.values()):
        figures.append(
            charts.quadrant_share_bars(quadrant_shares(counts), "Quadrant mix (trust × satisfaction at 50)")
        )
    chart_html = "".join(
        f"<div class=chart>{fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={'displaylogo': False})}</div>"
        for i, fig in enumerate(figures)
    )
    if moves.empty:
        moves_html = (
            "<p>No segment moved significantly (Benjamini–Hochberg q &lt; 0.05) between the two periods.</p>"
        )
    else:
        shown = moves.head(15).assign(
            now=lambda f: f["now"].round(1),
            before=lambda f: f["before"].round(1),
            delta=lambda f: f["delta"].round(1),
            q_value=lambda f: f["q_value"].round(4),
        )[["dimension", "value", "label", "before", "now", "delta", "n_before", "n_now", "q_value"]]
        moves_html = shown.to_html(index=False, escape=True, border=0)
    retention_note = _retention_note(conn, flt, quarter)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RelQ board report</title>
<style>
body {{font-family: Inter, 'Segoe UI', Helvetica, Arial, sans-serif; color:#1F2933; max-width: 1100px; margin: 2em auto; padding: 0 1em}}
h1 {{color:#1F3B57}} table {{border-collapse: collapse; width: 100%; margin: 1em 0}}
th, td {{border-bottom: 1px solid #E4E7EB; padding: 6px 8px; text-align: left}} td.num {{text-align: right}}
tr.small td {{color: #9AA5B1}} .note {{color:#52606D; font-size: 0.9em}} .chart {{margin: 1.5em 0}}
</style></head><body>
<h1>Relationship quality — board report</h1>
<p class=note>Generated {generated_at:%d %b %Y %H:%M} by RelQ. Scope: {html.escape(_describe_filter(flt))}.
Period: {html.escape(periods.description)}.{retention_note}</p>
<h2>Headline scores</h2>
{_kpi_table(kpis)}
<p class=note>Every score carries its n (responses), its customers and a 95% interval that treats each customer
as a cluster (several people at one customer answer, wave after wave). {html.escape(_weighting_sentence(flt))}
A change is called significant only at Benjamini–Hochberg q &lt; 0.05 across the scores above (survey scores:
z-test on the change, linearised over the customers of both periods; retention and churn: Newcombe).
Greyed rows rest on fewer answers than the minimum and are not ranked.</p>
<h2>Trends</h2>
{chart_html}
<h2>Segments that moved most</h2>
{moves_html}
</body></html>"""
