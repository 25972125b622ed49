"""Small display components: score cards with n and interval, tables with their download,
and the sentence shown when nothing matches."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import streamlit as st

from relq import store
from relq.core.exports import to_safe_csv
from relq.outputs import charts
from relq.ui.access import current_role, current_user_email, mask_personal
from relq.ui.session import get_engine, min_n

__all__ = [
    "format_interval",
    "score_card",
    "audited_download",
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


def audited_download(
    label: str,
    produce: Callable[..., bytes | str],
    *,
    file_name: str,
    mime: str,
    key: str | None = None,
    detail: dict | None = None,
    **button_args,
) -> None:
    """A download button whose file exists only once its audit row does.

    Nothing is put on the server when the page is drawn: when the user clicks, Streamlit calls
    ``produce(conn)`` and the audit row (who, role, file, ``detail``) is written in the same
    database transaction. A file no one was recorded fetching is never made, and when the audit
    row cannot be written the download fails instead of leaving unrecorded."""
    engine = get_engine()
    who, role = current_user_email() or None, current_role()
    record = {"file": file_name, "role": role, **(detail or {})}

    def fetch() -> bytes | str:
        with engine.begin() as conn:
            data = produce(conn)
            store.audit_row(conn, who, "export", record)
        return data

    st.download_button(
        label, fetch, file_name=file_name, mime=mime, key=key, on_click="ignore", **button_args
    )


def download_csv(
    frame: pd.DataFrame, file_name: str, label: str = "Download CSV", key: str | None = None
) -> None:
    """A formula-safe CSV download of ``frame``, with personal columns masked for roles that may
    not see them; each download is recorded in the audit log (who, what, when) as it is made."""
    frame = mask_personal(frame)
    audited_download(
        label,
        lambda _conn: to_safe_csv(frame),
        file_name=file_name,
        mime="text/csv",
        key=key,
        detail={"rows": len(frame), "columns": [str(c) for c in frame.columns]},
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
