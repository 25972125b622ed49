"""Pure functions: tidy DataFrame → Plotly figure, with one template and one colour meaning.

Each pillar keeps its colour on every page; good is teal-green and bad is coral everywhere.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "format_number",
    "TEMPLATE",
    "PILLAR_COLOURS",
    "METRIC_COLOURS",
    "GOOD",
    "BAD",
    "NEUTRAL",
    "METRIC_LABELS",
    "trend_with_band",
    "score_bars",
]

PILLAR_COLOURS = {"trust": "#3566A8", "commitment": "#8E5BB5", "satisfaction": "#E0A030", "rq": "#1F3B57"}
METRIC_COLOURS = {**PILLAR_COLOURS, "nps": "#2A9D8F", "csat": "#4DA3C7", "ces": "#7A7A7A"}
GOOD, BAD, NEUTRAL = "#2A9D8F", "#E76F51", "#9AA5B1"
METRIC_LABELS = {
    "trust": "Trust",
    "commitment": "Commitment",
    "satisfaction": "Satisfaction",
    "rq": "Relationship quality (RQ)",
    "nps": "NPS",
    "csat": "CSAT",
    "ces": "CES",
}

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13, color="#1F2933"),
        colorway=[METRIC_COLOURS[k] for k in ("trust", "commitment", "satisfaction", "nps", "csat", "ces")],
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        margin=dict(l=10, r=10, t=80, b=10),
        title=dict(x=0, xanchor="left", y=0.98, yanchor="top", font=dict(size=16)),
        # automargin: the axis labels get the room they need (a 10 px margin cut "64" to "4")
        xaxis=dict(showgrid=False, linecolor="#CBD2D9", automargin=True),
        yaxis=dict(gridcolor="#E4E7EB", zeroline=False, automargin=True),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
        hoverlabel=dict(bgcolor="white"),
    )
)
pio.templates["relq"] = TEMPLATE


def format_number(value: float | None, digits: int = 1) -> str:
    """A score as shown on screen: fixed decimals, an en dash when there is none.

    >>> format_number(61.849), format_number(float("nan")), format_number(None, 2)
    ('61.8', '–', '–')
    """
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _error_bars(centre: pd.Series, low: pd.Series, high: pd.Series) -> dict:
    """Asymmetric 95% error bars (``error_y``/``error_x``) from an estimate and its bounds.

    A missing bound draws no whisker (0) rather than breaking the figure.
    """
    return dict(
        type="data",
        symmetric=False,
        array=(high - centre).fillna(0).tolist(),
        arrayminus=(centre - low).fillna(0).tolist(),
        color="#52606D",
    )


def _band(x: pd.Series, low: pd.Series, high: pd.Series, colour: str, **trace) -> go.Scatter:
    """A shaded 95% interval band (high forward, low back) without its own hover or legend entry."""
    line = dict(width=0, **trace.pop("line", {}))
    return go.Scatter(
        x=pd.concat([x, x[::-1]]),
        y=pd.concat([high, low[::-1]]),
        fill="toself",
        fillcolor=_rgba(colour, 0.15),
        line=line,
        hoverinfo="skip",
        showlegend=False,
        **trace,
    )


def trend_with_band(frame: pd.DataFrame, metrics: list[str], title: str = "", y_title: str = "") -> go.Figure:
    """Lines of estimates with shaded 95% interval bands; hover shows n, customers and the interval.

    ``frame`` is tidy: period, metric, estimate, low, high, n and (optionally) customers.
    """
    fig = go.Figure()
    for metric in metrics:
        part = frame[frame["metric"] == metric].sort_values("period")
        if part.empty:
            continue
        colour = METRIC_COLOURS.get(metric, NEUTRAL)
        fig.add_trace(_band(part["period"], part["low"], part["high"], colour, name=f"{metric} 95% interval"))
        fig.add_trace(
            go.Scatter(
                x=part["period"],
                y=part["estimate"],
                mode="lines+markers",
                name=METRIC_LABELS.get(metric, metric),
                line=dict(color=colour, width=2),
                customdata=part[["low", "high", "n", "customers" if "customers" in part else "n"]].to_numpy(),
                hovertemplate="%{x|%b %Y}: %{y:.1f}<br>95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}"
                + (
                    "<br>n = %{customdata[2]:,} responses from %{customdata[3]:,} customers"
                    if "customers" in part
                    else "<br>n = %{customdata[2]:,}"
                )
                + "<extra>"
                + METRIC_LABELS.get(metric, metric)
                + "</extra>",
            )
        )
    fig.update_layout(template=TEMPLATE, title=title, yaxis_title=y_title, hovermode="x unified")
    return fig


def score_bars(frame: pd.DataFrame, title: str = "", y_title: str = "", range_y=None) -> go.Figure:
    """Bars with 95% error bars; ``frame`` has label, estimate, low, high, n and optional colour."""
    colours = (
        frame["colour"] if "colour" in frame else [METRIC_COLOURS.get(x, NEUTRAL) for x in frame["label"]]
    )
    fig = go.Figure(
        go.Bar(
            x=frame["label"].map(lambda x: METRIC_LABELS.get(x, x)),
            y=frame["estimate"],
            marker_color=list(colours),
            error_y=_error_bars(frame["estimate"], frame["low"], frame["high"]),
            customdata=frame[["low", "high", "n"]].to_numpy(),
            hovertemplate="%{x}: %{y:.1f}<br>95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}"
            "<br>n = %{customdata[2]:,}<extra></extra>",
        )
    )
    fig.update_layout(template=TEMPLATE, title=title, yaxis_title=y_title, showlegend=False)
    if range_y:
        fig.update_yaxes(range=range_y)
    return fig


# --------------------------------------------------------------------------- dashboards (issue 7)


def quadrant_share_bars(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Share of customers per quadrant with Wilson 95% error bars.

    ``frame`` has quadrant (key), label, customers, share, low, high, n (all customers placed).
    """
    fig = go.Figure(
        go.Bar(
            x=frame["label"],
            y=frame["share"],
            marker_color=[QUADRANT_COLOURS.get(k, NEUTRAL) for k in frame["quadrant"]],
            error_y=_error_bars(frame["share"], frame["low"], frame["high"]),
            customdata=frame[["customers", "low", "high", "n"]].to_numpy(),
            hovertemplate="%{x}: %{y:.1f}% (%{customdata[0]:,} customers)<br>95% CI "
            "%{customdata[1]:.1f}–%{customdata[2]:.1f}%<br>n = %{customdata[3]:,}<extra></extra>",
        )
    )
    fig.update_layout(template=TEMPLATE, title=title, yaxis_title="% of customers", showlegend=False)
    return fig


def segment_bars(frame: pd.DataFrame, metric: str, title: str = "", x_title: str = "") -> go.Figure:
    """Horizontal bars per segment with 95% error bars; small segments greyed.

    ``frame`` has segment, estimate, low, high, n, small (one row per segment, one metric).
    """
    frame = frame.sort_values("estimate", na_position="first")
    colour = METRIC_COLOURS.get(metric, PILLAR_COLOURS["rq"])
    fig = go.Figure(
        go.Bar(
            y=frame["segment"].astype(str),
            x=frame["estimate"],
            orientation="h",
            marker_color=[NEUTRAL if s else colour for s in frame["small"]],
            marker_opacity=[0.5 if s else 1.0 for s in frame["small"]],
            error_x=_error_bars(frame["estimate"], frame["low"], frame["high"]),
            customdata=frame[["low", "high", "n"]].to_numpy(),
            hovertemplate="%{y}: %{x:.1f}<br>95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}"
            "<br>n = %{customdata[2]:,}<extra></extra>",
        )
    )
    if "score_customers" in frame:  # survey scores: the customers behind the n (the clusters)
        fig.update_traces(
            customdata=frame[["low", "high", "n", "score_customers"]].to_numpy(),
            hovertemplate="%{y}: %{x:.1f}<br>95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}"
            "<br>n = %{customdata[2]:,} responses from %{customdata[3]:,} customers<extra></extra>",
        )
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title=x_title,
        showlegend=False,
        height=max(260, 28 * len(frame) + 90),
    )
    return fig


def driver_bars(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Shapley/LMG share of R² per pillar with bootstrap 95% error bars.

    ``frame`` has predictor, lmg, lmg_low, lmg_high, n (one row per pillar).
    """
    fig = go.Figure(
        go.Bar(
            x=[METRIC_LABELS.get(p, p) for p in frame["predictor"]],
            y=frame["lmg"],
            marker_color=[METRIC_COLOURS.get(p, NEUTRAL) for p in frame["predictor"]],
            error_y=_error_bars(frame["lmg"], frame["lmg_low"], frame["lmg_high"]),
            customdata=frame[["lmg_low", "lmg_high", "n"]].to_numpy(),
            hovertemplate="%{x}: R² share %{y:.3f}<br>95% bootstrap CI %{customdata[0]:.3f}–"
            "%{customdata[1]:.3f}<br>n = %{customdata[2]:,}<extra></extra>",
        )
    )
    fig.update_layout(template=TEMPLATE, title=title, yaxis_title="Share of R² (LMG)", showlegend=False)
    return fig


def importance_performance(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Importance (correlation with NPS) × performance (mean, 0–100) for pillars and items.

    ``frame`` has name, pillar, level ('pillar' or 'item'), importance, performance, n.
    Dashed lines at the means split the chart into the usual four action zones.
    """
    fig = go.Figure()
    for level, size, symbol in (("item", 9, "circle-open"), ("pillar", 18, "circle")):
        part = frame[frame["level"] == level]
        if part.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=part["performance"],
                y=part["importance"],
                mode="markers+text" if level == "pillar" else "markers",
                text=[METRIC_LABELS.get(n, n) for n in part["name"]] if level == "pillar" else None,
                textposition="top center",
                name="Pillars" if level == "pillar" else "Items",
                marker=dict(
                    size=size,
                    symbol=symbol,
                    color=[METRIC_COLOURS.get(p, NEUTRAL) for p in part["pillar"]],
                    line=dict(width=2, color=[METRIC_COLOURS.get(p, NEUTRAL) for p in part["pillar"]]),
                ),
                customdata=part[["name", "n"]].to_numpy(),
                hovertemplate="%{customdata[0]}<br>performance %{x:.1f}<br>importance r = %{y:.2f}"
                "<br>n = %{customdata[1]:,}<extra></extra>",
            )
        )
    if not frame.empty:
        fig.add_vline(x=float(frame["performance"].mean()), line_dash="dot", line_color=NEUTRAL)
        fig.add_hline(y=float(frame["importance"].mean()), line_dash="dot", line_color=NEUTRAL)
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title="Performance (mean, 0–100)",
        yaxis_title="Importance (correlation with NPS)",
    )
    return fig


# --------------------------------------------------------------------------- retention and churn


def cohort_heatmap(frame: pd.DataFrame, mode: str = "percent", title: str = "") -> go.Figure:
    """Acquisition month × months since acquisition; ``frame`` is relq.analyses.retention.cohort_activity.

    ``mode`` "percent" colours by the share active, "counts" shows active customers; the row
    labels carry each cohort's size; the hover gives each share's 95% interval. Cells of a month
    the data do not cover to its end (``partial``) are marked with an asterisk.
    """
    if mode not in ("percent", "counts"):
        raise ValueError(f"mode must be 'percent' or 'counts', not {mode!r}")
    sizes = frame.groupby("cohort")["size"].first()
    labels = {c: f"{c} (n={n:,})" for c, n in sizes.items()}
    value = "share" if mode == "percent" else "active"
    grid = frame.pivot(index="cohort", columns="k", values=value).sort_index(ascending=False)
    partial = (
        frame.assign(partial=frame["partial"].astype(float))
        .pivot(index="cohort", columns="k", values="partial")
        .reindex_like(grid)
        .fillna(0.0)
        .astype(bool)
        if "partial" in frame
        else pd.DataFrame(False, index=grid.index, columns=grid.columns)
    )
    bounds = [
        frame.pivot(index="cohort", columns="k", values=c).reindex_like(grid).to_numpy(float) * 100
        if c in frame
        else grid.to_numpy(float) * 0 + float("nan")
        for c in ("low", "high")
    ]
    z = grid.to_numpy(float) * (100 if mode == "percent" else 1)
    marks = partial.to_numpy()
    text = [
        [
            "" if pd.isna(v) else (f"{v:.0f}%" if mode == "percent" else f"{v:,.0f}") + ("*" if m else "")
            for v, m in zip(row, mark_row, strict=True)
        ]
        for row, mark_row in zip(z, marks, strict=True)
    ]
    note = [["partial month: the data end before its last day" if m else "" for m in row] for row in marks]
    custom = [
        [[lo, hi, n] for lo, hi, n in zip(lo_row, hi_row, note_row, strict=True)]
        for lo_row, hi_row, note_row in zip(bounds[0], bounds[1], note, strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(grid.columns),
            y=[labels[c] for c in grid.index],
            text=text if z.size <= 2000 else None,
            texttemplate="%{text}" if z.size <= 2000 else None,
            customdata=custom,
            colorscale=[[0, "#F5F7FA"], [1, GOOD]],
            zmin=0,
            zmax=100 if mode == "percent" else None,
            colorbar=dict(title="% active" if mode == "percent" else "active"),
            hovertemplate="Cohort %{y}<br>month %{x} after joining<br>"
            + ("%{z:.1f}% active" if mode == "percent" else "%{z:,.0f} active")
            + "<br>95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}%<br>%{customdata[2]}<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title="Months since acquisition",
        yaxis_title="Acquisition month (cohort size)",
        height=max(320, 18 * len(grid) + 120),
    )
    return fig


SEGMENT_PALETTE = ["#3566A8", "#E0A030", "#2A9D8F", "#8E5BB5", "#E76F51", "#4DA3C7", "#7A7A7A", "#1F3B57"]


def km_curves(
    curves: pd.DataFrame,
    title: str = "",
    y_title: str = "Still a customer",
    x_title: str = "Months since acquisition",
) -> go.Figure:
    """Kaplan–Meier survival curves (step lines) with shaded 95% bands, one colour per segment.

    ``curves``: segment, months, survival, low, high, at_risk (relq.analyses.survival.kaplan_meier).
    ``x_title`` names the time origin (acquisition, or the survey that placed the customer).
    """
    fig = go.Figure()
    for i, (segment, part) in enumerate(curves.groupby("segment", sort=False)):
        colour = SEGMENT_PALETTE[i % len(SEGMENT_PALETTE)]
        fig.add_trace(
            _band(part["months"], part["low"] * 100, part["high"] * 100, colour, line=dict(shape="hv"))
        )
        fig.add_trace(
            go.Scatter(
                x=part["months"],
                y=part["survival"] * 100,
                mode="lines",
                line=dict(color=colour, width=2, shape="hv"),
                name=str(segment),
                customdata=part[["low", "high", "at_risk"]].to_numpy() * [100, 100, 1],
                hovertemplate="%{x:.1f} months: %{y:.1f}% still customers<br>95% CI %{customdata[0]:.1f}–"
                "%{customdata[1]:.1f}%<br>%{customdata[2]:,} still followed<extra>"
                + str(segment)
                + "</extra>",
            )
        )
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=x_title, yaxis_title=y_title)
    fig.update_yaxes(range=[0, 101], ticksuffix="%")
    return fig


def calibration_plot(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Predicted vs observed churn by tenth of predicted risk, with the observed shares' 95%
    intervals and the diagonal of perfect calibration.

    ``frame``: decile, customers, predicted, observed, low, high (shares, 0–1;
    relq.analyses.churn_risk.calibration_by_decile).
    """
    top = float(max(frame["high"].max(), frame["predicted"].max(), 0.01)) * 100 * 1.05
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            line=dict(color=NEUTRAL, dash="dash"),
            name="perfectly calibrated",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=frame["predicted"] * 100,
            y=frame["observed"] * 100,
            mode="markers+lines",
            marker=dict(size=9, color=BAD),
            line=dict(color=BAD, width=1),
            error_y=_error_bars(frame["observed"] * 100, frame["low"] * 100, frame["high"] * 100),
            name="tenths of predicted risk",
            customdata=frame[["decile", "customers", "low", "high"]].to_numpy() * [1, 1, 100, 100],
            hovertemplate="tenth %{customdata[0]} (%{customdata[1]:,} customers)<br>predicted %{x:.1f}%"
            "<br>churned %{y:.1f}% (95% CI %{customdata[2]:.1f}–%{customdata[3]:.1f}%)<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title="Predicted probability of churning (%)",
        yaxis_title="Share who churned (%)",
    )
    fig.update_xaxes(range=[0, top], ticksuffix="%")
    fig.update_yaxes(range=[0, top], ticksuffix="%")
    return fig


def hazard_ratio_forest(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Hazard ratios with 95% intervals on a log axis; a line at 1 (no effect).

    ``frame``: pillar, hr, low, high, p. Below 1 (good colour) = customers higher on the pillar
    churn less.
    """
    labels = [f"{METRIC_LABELS.get(p, p)} (+10 points)" for p in frame["pillar"]]
    colours = [
        GOOD if h < 1 and hi < 1 else BAD if h > 1 and lo > 1 else NEUTRAL
        for h, lo, hi in zip(frame["hr"], frame["low"], frame["high"], strict=True)
    ]
    fig = go.Figure(
        go.Scatter(
            x=frame["hr"],
            y=labels,
            mode="markers",
            marker=dict(size=12, color=colours),
            error_x=_error_bars(frame["hr"], frame["low"], frame["high"]),
            customdata=frame[["low", "high", "p"]].to_numpy(),
            hovertemplate="%{y}: churn risk ×%{x:.2f}<br>95% CI %{customdata[0]:.2f}–%{customdata[1]:.2f}"
            "<br>p = %{customdata[2]:.3g}<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(x=1, line=dict(color="#52606D", dash="dash"))
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title="Hazard ratio of churn (below 1 = lowers churn)",
        height=260,
    )
    fig.update_xaxes(type="log")
    return fig


def rate_trend(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Retention and churn rates (percent) over periods with 95% bands.

    ``frame``: period, metric ("retention" | "churn"), estimate, low, high, n.
    """
    fig = go.Figure()
    for metric, colour, label in (("retention", GOOD, "Retention"), ("churn", BAD, "Churn")):
        part = frame[frame["metric"] == metric].sort_values("period")
        if part.empty:
            continue
        axis = "y" if metric == "retention" else "y2"
        fig.add_trace(_band(part["period"], part["low"], part["high"], colour, yaxis=axis))
        fig.add_trace(
            go.Scatter(
                x=part["period"],
                y=part["estimate"],
                mode="lines+markers",
                name=label + (" (left axis)" if metric == "retention" else " (right axis)"),
                line=dict(color=colour, width=2),
                yaxis=axis,
                customdata=part[["low", "high", "n"]].to_numpy(),
                hovertemplate="%{x|%b %Y}: %{y:.1f}%<br>95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}%"
                "<br>n = %{customdata[2]:,} customers at the start<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        yaxis=dict(title="Retention %", ticksuffix="%"),
        yaxis2=dict(title="Churn %", overlaying="y", side="right", ticksuffix="%", showgrid=False),
        hovermode="x unified",
    )
    return fig


# --------------------------------------------------------------------------- gap quadrants

QUADRANT_COLOURS = {
    "x_high_y_high": GOOD,
    "x_high_y_low": "#E0A030",
    "x_low_y_high": "#4DA3C7",
    "x_low_y_low": BAD,
}
_QUADRANT_ORDER = ("x_high_y_high", "x_high_y_low", "x_low_y_high", "x_low_y_low")


def _quadrant_frame(
    fig: go.Figure, x: str, y: str, x_threshold: float, y_threshold: float, names: dict[str, str]
) -> go.Figure:
    """Threshold lines, the four quadrant names in the corners, 0–100 axes."""
    fig.add_vline(x=x_threshold, line=dict(color="#52606D", dash="dash", width=1))
    fig.add_hline(y=y_threshold, line=dict(color="#52606D", dash="dash", width=1))
    corners = {
        "x_high_y_high": (100, 100, "right", "top"),
        "x_high_y_low": (100, 0, "right", "bottom"),
        "x_low_y_high": (0, 100, "left", "top"),
        "x_low_y_low": (0, 0, "left", "bottom"),
    }
    for key, (cx, cy, xanchor, yanchor) in corners.items():
        fig.add_annotation(
            x=cx,
            y=cy,
            text=f"<b>{names.get(key, key)}</b>",
            showarrow=False,
            xanchor=xanchor,
            yanchor=yanchor,
            font=dict(color=QUADRANT_COLOURS[key], size=13),
            bgcolor="rgba(255,255,255,0.75)",
        )
    fig.update_layout(
        template=TEMPLATE,
        xaxis_title=f"{METRIC_LABELS.get(x, x)} index",
        yaxis_title=f"{METRIC_LABELS.get(y, y)} index",
    )
    fig.update_xaxes(range=[-2, 102], showgrid=True, gridcolor="#E4E7EB")
    fig.update_yaxes(range=[-2, 102])
    return fig


def quadrant_scatter(
    points: pd.DataFrame,
    x: str,
    y: str,
    x_threshold: float,
    y_threshold: float,
    names: dict[str, str],
    title: str = "",
) -> go.Figure:
    """One dot per customer (``points``: customer_id, x, y, quadrant), coloured by quadrant.

    Answers sit on a grid, so dots are translucent: darker spots hold more customers.
    """
    fig = go.Figure()
    for key in _QUADRANT_ORDER:
        part = points[points["quadrant"] == key]
        fig.add_trace(
            go.Scattergl(
                x=part["x"],
                y=part["y"],
                mode="markers",
                name=f"{names.get(key, key)} ({len(part):,})",
                marker=dict(color=QUADRANT_COLOURS[key], size=6, opacity=0.45),
                customdata=part[["customer_id"]].to_numpy(),
                hovertemplate="%{customdata[0]}<br>"
                + METRIC_LABELS.get(x, x)
                + " %{x:.1f} · "
                + METRIC_LABELS.get(y, y)
                + " %{y:.1f}<extra></extra>",
            )
        )
    fig.update_layout(title=title)
    return _quadrant_frame(fig, x, y, x_threshold, y_threshold, names)


def quadrant_density(
    density: pd.DataFrame,
    x: str,
    y: str,
    x_threshold: float,
    y_threshold: float,
    names: dict[str, str],
    bin_width: float = 2.5,
    title: str = "",
) -> go.Figure:
    """Customers per cell (``density``: x, y lower cell edges, customers), binned in SQL."""
    fig = go.Figure(
        go.Heatmap(
            x=density["x"] + bin_width / 2,
            y=density["y"] + bin_width / 2,
            z=density["customers"],
            colorscale=[[0, "#F5F7FA"], [1, METRIC_COLOURS["rq"]]],
            colorbar=dict(title="Customers"),
            xgap=0,
            ygap=0,
            hovertemplate=METRIC_LABELS.get(x, x)
            + " %{x:.1f} · "
            + METRIC_LABELS.get(y, y)
            + " %{y:.1f}<br>%{z:,} customers<extra></extra>",
        )
    )
    fig.update_layout(title=title)
    return _quadrant_frame(fig, x, y, x_threshold, y_threshold, names)


def transition_heatmap(moves: pd.DataFrame, names: dict[str, str], title: str = "") -> go.Figure:
    """Customers moving between quadrants (``moves``: from, to, customers) as a labelled matrix;
    hover shows the share of the row (where customers came from)."""
    matrix = (
        moves.pivot(index="from", columns="to", values="customers")
        .reindex(index=list(_QUADRANT_ORDER), columns=list(_QUADRANT_ORDER))
        .fillna(0)
    )
    rows = matrix.sum(axis=1).replace(0, float("nan"))
    share = matrix.div(rows, axis=0) * 100
    labels = [names.get(k, k) for k in _QUADRANT_ORDER]
    fig = go.Figure(
        go.Heatmap(
            x=labels,
            y=labels,
            z=matrix.to_numpy(),
            text=matrix.astype(int).to_numpy(),
            texttemplate="%{text:,}",
            customdata=share.to_numpy(),
            colorscale=[[0, "#F5F7FA"], [1, METRIC_COLOURS["rq"]]],
            showscale=False,
            hovertemplate="From %{y}<br>to %{x}: %{z:,} customers (%{customdata:.0f}% of the row)<extra></extra>",
        )
    )
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="Now", yaxis_title="Before")
    fig.update_yaxes(autorange="reversed")
    return fig


def quadrant_mix_bars(mix: pd.DataFrame, names: dict[str, str], title: str = "") -> go.Figure:
    """Stacked shares of the quadrants within each segment (``mix``: segment, quadrant,
    customers, segment_customers, share, low, high); hover shows n and the 95% interval."""
    fig = go.Figure()
    for key in _QUADRANT_ORDER:
        part = mix[mix["quadrant"] == key]
        fig.add_trace(
            go.Bar(
                x=part["segment"],
                y=part["share"],
                name=names.get(key, key),
                marker_color=QUADRANT_COLOURS[key],
                customdata=part[["customers", "segment_customers", "low", "high"]].to_numpy(),
                hovertemplate=f"{names.get(key, key)}<br>"
                "%{x}: %{y:.1f}% (%{customdata[0]:,} of %{customdata[1]:,})"
                "<br>95% CI %{customdata[2]:.1f}–%{customdata[3]:.1f}%<extra></extra>",
            )
        )
    fig.update_layout(template=TEMPLATE, title=title, barmode="stack", yaxis_title="Share of customers (%)")
    fig.update_yaxes(range=[0, 100])
    return fig


def term_bars(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Distinguishing terms as horizontal bars of z (log-odds with a Dirichlet prior); ``frame`` has
    term, leans_to, count_a, count_b, z. Bars leaning to the first group are coral when it is the
    detractors, teal otherwise; the other side takes the other colour."""
    frame = frame.sort_values("z")
    first = frame.loc[frame["z"] > 0, "leans_to"].iloc[0] if (frame["z"] > 0).any() else ""
    bad_first = first == "detractor"
    colours = [(BAD if bad_first else GOOD) if z > 0 else (GOOD if bad_first else BAD) for z in frame["z"]]
    fig = go.Figure(
        go.Bar(
            y=frame["term"],
            x=frame["z"],
            orientation="h",
            marker_color=colours,
            customdata=frame[["leans_to", "count_a", "count_b"]].to_numpy(),
            hovertemplate="%{y}: z = %{x:.2f} (leans to %{customdata[0]})<br>counts %{customdata[1]} vs "
            "%{customdata[2]}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line_color=NEUTRAL)
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title="z (log-odds, Dirichlet prior)",
        showlegend=False,
        height=max(300, 20 * len(frame) + 100),
    )
    return fig
