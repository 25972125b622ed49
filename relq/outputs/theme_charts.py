"""Figures of the Comment themes page: pure functions, tidy frame → Plotly figure."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from relq.outputs.charts import BAD, GOOD, NEUTRAL, TEMPLATE

__all__ = ["impact_bars", "delta_bars"]


def _whiskers(centre: pd.Series, low: pd.Series, high: pd.Series) -> dict:
    return dict(
        type="data",
        symmetric=False,
        array=(high - centre).fillna(0).tolist(),
        arrayminus=(centre - low).fillna(0).tolist(),
        color="#52606D",
    )


def impact_bars(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Each theme's impact (NPS points gained if its detractors scored like the average response)
    as horizontal bars with 95% whiskers, largest on top; a theme whose NPS delta is significantly
    negative is coral, significantly positive teal, else grey. ``frame`` has theme, impact,
    impact_low, impact_high, nps_delta, nps_significant, responses."""
    frame = frame.sort_values("impact", ascending=True)
    colour = [
        (BAD if d < 0 else GOOD) if sig else NEUTRAL
        for d, sig in zip(frame["nps_delta"].fillna(0), frame["nps_significant"], strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            y=frame["theme"],
            x=frame["impact"],
            orientation="h",
            marker_color=colour,
            error_x=_whiskers(frame["impact"], frame["impact_low"], frame["impact_high"]),
            customdata=frame[["impact_low", "impact_high", "nps_delta", "responses"]].to_numpy(),
            hovertemplate="%{y}: +%{x:.2f} NPS points (95% CI %{customdata[0]:.2f}–%{customdata[1]:.2f})"
            "<br>NPS with vs without: %{customdata[2]:+.1f}<br>n = %{customdata[3]:,} responses<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title="NPS points gained if its detractors scored like the average response",
        showlegend=False,
        height=max(300, 26 * len(frame) + 110),
    )
    return fig


def delta_bars(frame: pd.DataFrame, label: str, title: str = "") -> go.Figure:
    """Differences with 95% whiskers, one bar per row of ``frame`` (label, delta, low, high,
    significant); significant negative coral, significant positive teal, else grey."""
    colour = [
        (BAD if d < 0 else GOOD) if sig else NEUTRAL
        for d, sig in zip(frame["delta"].fillna(0), frame["significant"], strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=frame[label],
            y=frame["delta"],
            marker_color=colour,
            error_y=_whiskers(frame["delta"], frame["low"], frame["high"]),
            hovertemplate="%{x}: %{y:+.1f}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line_color=NEUTRAL)
    fig.update_layout(template=TEMPLATE, title=title, showlegend=False, height=320)
    return fig
