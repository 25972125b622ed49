"""Small display components: score cards with n and interval, tables with their download,
and the sentence shown when nothing matches."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from relq.core.exports import to_safe_csv
from relq.outputs import charts
from relq.ui.access import mask_personal, record_export
from relq.ui.session import min_n

__all__ = [
    "format_interval",
    "score_card",
    "download_csv",
    "nothing_matches",
    "table_with_download",
]


def format_interval(low: float, high: float, digits: int = 1) -> str:
    return f"[{charts.format_number(low, digits)}, {charts.format_number(high, digits)}]"


def score_card(
    label: str,
    estimate: float,
    low: float,
    high: float,
    n: int,
    *,
    digits: int = 1,
    delta: float | None = None,
    significant: bool | None = None,
    lower_is_better: bool = False,
    container=None,
) -> None:
    """A KPI with its n and 95% interval; small n is greyed and says so; a delta is marked
    significant only when the test says it is."""
    box = container or st
    small = n < min_n()
    value = charts.format_number(estimate, digits)
    delta_text = None
    if delta is not None and not (isinstance(delta, float) and math.isnan(delta)):
        # short enough for a card: the caption above the cards names the two periods
        mark = " ✱ significant" if significant else ", not significant"
        delta_text = f"{delta:+.{digits}f}{mark}"
    box.metric(
        label,
        value if not small else f"{value} (n<{min_n()})",
        delta=delta_text,
        delta_color=("inverse" if lower_is_better else "normal") if significant else "off",
        help=f"n = {n:,}; 95% interval {format_interval(low, high, digits)}."
        + (f" Fewer than {min_n()} answers: too few to trust or rank." if small else ""),
    )
    box.caption(
        f"n = {n:,} · 95% CI {format_interval(low, high, digits)}"
        + (" · :grey[small sample]" if small else "")
    )


def download_csv(
    frame: pd.DataFrame, file_name: str, label: str = "Download CSV", key: str | None = None
) -> None:
    """A formula-safe CSV download of ``frame``, with personal columns masked for roles that may
    not see them; each download is recorded in the audit log (who, what, when)."""
    frame = mask_personal(frame)
    st.download_button(
        label,
        to_safe_csv(frame),
        file_name=file_name,
        mime="text/csv",
        key=key,
        on_click=record_export,
        args=(file_name, len(frame), [str(c) for c in frame.columns]),
    )


def nothing_matches(message: str = "") -> None:
    """The sentence shown when the filters select no survey response; stops the page."""
    st.warning(
        message or "No survey responses match the current filters. Widen the period or clear the filters."
    )
    st.stop()


def table_with_download(frame: pd.DataFrame, file_name: str, key: str, **dataframe_args) -> None:
    """A sortable table and its formula-safe CSV download, side by side as on every page."""
    st.dataframe(frame, hide_index=True, width="stretch", **dataframe_args)
    download_csv(frame, file_name, label=f"Download {file_name}", key=key)
