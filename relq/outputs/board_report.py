"""The executive view: KPIs with deltas vs the previous period, the segments that moved most,
and a one-file board report (HTML with the Plotly charts embedded, opens offline).

Deltas follow Methodology page → Comparisons: NPS z-test on adjusted-Wald variances, CSAT/retention/churn
by Newcombe, means by Welch; many segments at once by Benjamini–Hochberg; significant only at
q < 0.05 and never when either side is below the small-sample minimum.

When the filter has no closed period, the view compares the last full calendar quarter before the
data's end with the quarter before it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq import store
from relq.core.settings import resolve_min_n
from relq.measures import metrics, stats
from relq.measures.comparisons import DELTA_COLUMNS, compare_headlines, delta_record, score_of, statistics_row
from relq.outputs import charts
from relq.store import schema
from relq.store.filters import SegmentFilter, customer_dimension

__all__ = [
    "KPI_METRICS",
    "KPI_LABELS",
    "Periods",
    "overview_periods",
    "quarter_of",
    "kpi_comparison",
    "retention_comparison",
    "overview_kpis",
    "segment_moves",
    "quadrant_shares",
    "board_report_html",
]

R = schema.survey_responses
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


def quarter_of(day: date) -> tuple[date, date]:
    """First and last day of the calendar quarter holding ``day``.

    >>> quarter_of(date(2026, 8, 28))
    (datetime.date(2026, 7, 1), datetime.date(2026, 9, 30))
    """
    start = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    end = (pd.Timestamp(start) + pd.DateOffset(months=3) - pd.Timedelta(days=1)).date()
    return start, end


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
    end = store.data_end(conn)
    q_start, q_end = quarter_of(end)
    if q_end > end:  # the data's last quarter is not over yet
        q_start, q_end = quarter_of(q_start - timedelta(days=1))
    p_start, p_end = quarter_of(q_start - timedelta(days=1))
    current = replace(flt, since=q_start, until=q_end)
    has_current = conn.execute(
        sa.select(sa.func.count()).select_from(R).where(current.response_clause())
    ).scalar_one()
    if not has_current:
        return Periods(flt, None, "all responses in view (no full quarter with responses to compare)")
    label = f"Q{(q_start.month - 1) // 3 + 1} {q_start.year}"
    prev_label = f"Q{(p_start.month - 1) // 3 + 1} {p_start.year}"
    return Periods(
        current, replace(flt, since=p_start, until=p_end), f"last full quarter, {label}, vs {prev_label}"
    )


def _nan_comparison() -> stats.Comparison:
    return stats.Comparison(math.nan, math.nan, math.nan, math.nan, "")


def kpi_comparison(
    conn: Connection, current: SegmentFilter, previous: SegmentFilter | None, min_n: int | None = None
) -> pd.DataFrame:
    """RQ, pillars, NPS, CSAT and CES in ``current`` with the delta vs ``previous``.

    Columns as :data:`_KPI_COLUMNS`; without ``previous`` the delta columns are NaN.
    """
    min_n = resolve_min_n(min_n)
    now_row = statistics_row(conn, current)
    now = metrics.headline_from_row(now_row)
    if previous is not None:
        prev_row = statistics_row(conn, previous)
        prev = metrics.headline_from_row(prev_row)
        comps = compare_headlines(now, now_row, prev, prev_row)
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
    if metric == "churn":
        return int(row["churned"])
    return int(min(max(int(row["at_end"]) - int(row["new"]), 0), int(row["at_start"])))


def overview_kpis(
    conn: Connection, flt: SegmentFilter, min_n: int | None = None
) -> tuple[pd.DataFrame, Periods, date | None]:
    """Every KPI of the executive overview with its delta: (frame, periods, retention quarter)."""
    periods = overview_periods(conn, flt)
    survey = kpi_comparison(conn, periods.current, periods.previous, min_n)
    kept, quarter = retention_comparison(conn, flt, periods.current.until, min_n)
    frame = pd.concat([survey, kept], ignore_index=True) if not kept.empty else survey
    return frame, periods, quarter


def segment_moves(
    conn: Connection,
    current: SegmentFilter,
    previous: SegmentFilter,
    dimensions: tuple[str, ...] = MOVER_DIMENSIONS,
    scores: tuple[str, ...] = ("rq", "nps", "csat"),
    min_n: int | None = None,
    significant_only: bool = True,
) -> pd.DataFrame:
    """Segments whose score changed between ``previous`` and ``current`` (same filter otherwise).

    One grouped query per dimension returns sufficient statistics per (segment, period);
    Benjamini–Hochberg runs across every segment × score tested; segments small in either
    period are not tested. Sorted by the size of the move.
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
    records = []
    customers = schema.customers
    is_now = R.c.submitted_at >= datetime.combine(current.since, datetime.min.time())
    for dimension in dimensions:
        base = replace(current.with_dimension(dimension, ()), since=previous.since, until=current.until)
        inner = (
            sa.select(
                *[R.c[name] for name in ("trust", "commitment", "satisfaction", "rq", "nps", "csat", "ces")],
                customer_dimension(dimension).label("segment"),
                sa.case((is_now, "now"), else_="before").label("period"),
            )
            .select_from(R.join(customers, R.c.customer_id == customers.c.customer_id))
            .where(base.response_clause())
            .subquery("moves")
        )
        rows = conn.execute(
            sa.select(inner.c.segment, inner.c.period, *metrics.sufficient_statistics(inner))
            .where(inner.c.segment.is_not(None))
            .group_by(inner.c.segment, inner.c.period)
        ).all()
        by_segment: dict[str, dict[str, dict]] = {}
        for r in rows:
            by_segment.setdefault(str(r.segment), {})[r.period] = {
                k: r._mapping[k] for k in metrics.STATISTIC_KEYS
            }
        for value, parts in by_segment.items():
            if "now" not in parts or "before" not in parts:
                continue
            now, before = metrics.headline_from_row(parts["now"]), metrics.headline_from_row(parts["before"])
            comps = compare_headlines(now, parts["now"], before, parts["before"])
            for metric in scores:
                a, b = score_of(now, metric), score_of(before, metric)
                if stats.is_small(a.n, min_n) or stats.is_small(b.n, min_n):
                    continue
                c = comps[metric]
                records.append(
                    {
                        "dimension": dimension,
                        "value": value,
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
        digits = 0 if r.metric == "nps" else 1
        mark = "significant" if r.significant else ("not significant" if not math.isnan(r.delta) else "")
        good = (r.delta < 0) if r.metric in LOWER_IS_BETTER else (r.delta > 0)
        colour = (charts.GOOD if good else charts.BAD) if r.significant else "#52606D"
        rows.append(
            f"<tr{' class=small' if r.small else ''}><td>{html.escape(r.label)}</td>"
            f"<td class=num>{charts.format_number(r.estimate, digits)}</td>"
            f"<td class=num>[{charts.format_number(r.low, digits)}, {charts.format_number(r.high, digits)}]</td><td class=num>{r.n:,}</td>"
            f"<td class=num style='color:{colour}'>{'' if math.isnan(r.delta) else f'{r.delta:+.{digits}f}'}</td>"
            f"<td>{mark}{' · small sample' if r.small else ''}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Score</th><th>Value</th><th>95% CI</th><th>n</th><th>Δ vs previous</th>"
        "<th>Test (q &lt; 0.05)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


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


def _describe_filter(flt: SegmentFilter) -> str:
    parts = [f"{name.replace('_', ' ')}: {', '.join(values)}" for name, values in flt.customer]
    if flt.waves:
        parts.append(f"waves: {', '.join(flt.waves)}")
    if flt.quadrant:
        parts.append(f"quadrant: {flt.quadrant}")
    if flt.exclude_flags:
        parts.append("excluding " + ", ".join(f.removeprefix("flag_") for f in flt.exclude_flags))
    return "; ".join(parts) or "all customers and responses"


def board_report_html(
    conn: Connection, flt: SegmentFilter, generated_at: datetime | None = None, *, moves_filter=None
) -> str:
    """One self-contained HTML page for a board pack: KPIs with deltas, trends with bands, the
    quadrant mix and the significant segment moves. plotly.js is embedded, so it opens offline.
    ``moves_filter`` (frame → frame) may drop segment moves a reader must not see (the digest
    drops groups under 5 customers for executives)."""
    from relq.analyses import quadrants

    generated_at = generated_at or datetime.now()
    kpis, periods, quarter = overview_kpis(conn, flt)
    trend = metrics.trend(conn, flt, "month")
    counts = quadrants.quadrant_counts(conn, periods.current)
    moves = (
        segment_moves(conn, periods.current, periods.previous)
        if periods.previous is not None
        else pd.DataFrame()
    )
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
    retention_note = (
        f" Retention and churn: quarter starting {quarter:%d %b %Y} vs the quarter before." if quarter else ""
    )
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
<p class=note>Every score carries its n and 95% interval. A change is called significant only at Benjamini–Hochberg
q &lt; 0.05 (NPS: z-test on adjusted-Wald variances; CSAT, retention and churn: Newcombe; indices and CES: Welch).
Greyed rows rest on fewer answers than the minimum and are not ranked.</p>
<h2>Trends</h2>
{chart_html}
<h2>Segments that moved most</h2>
{moves_html}
</body></html>"""
