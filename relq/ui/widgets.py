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
    "responses_sentence",
    "score_card",
    "audited_download",
    "download_csv",
    "nothing_matches",
    "table_with_download",
]


def format_interval(low: float, high: float, digits: int = 1) -> str:
    return f"[{charts.format_number(low, digits)}, {charts.format_number(high, digits)}]"


def responses_sentence(n: int, customers: int | None = None, unmatched: int = 0) -> str:
    """ "n = 11,883 responses from 3,201 customers" (and the unmatched responses, each its own cluster)."""
    if customers is None or (isinstance(customers, float) and math.isnan(customers)):
        return f"n = {n:,}"
    customers = int(customers)
    text = f"n = {n:,} responses from {customers:,} customer{'s' if customers != 1 else ''}"
    if unmatched:
        text += f" and {unmatched:,} unmatched"
    return text


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
    customers: int | None = None,
    unmatched: int = 0,
    n_eff: float | None = None,
    q_value: float | None = None,
    unit: str = "responses",
) -> None:
    """A KPI with its n, customers and 95% interval; small n is greyed and says so; a delta is
    marked significant only when its q says so (the caption above the cards names the test)."""
    box = container or st
    small = n < min_n()
    value = charts.format_number(estimate, digits)
    delta_text = None
    if delta is not None and not (isinstance(delta, float) and math.isnan(delta)):
        # short enough for a card: the caption above the cards names the two periods and the test
        mark = " ✱ significant" if significant else ", not significant"
        delta_text = f"{delta:+.{digits}f}{mark}"
    if unit == "responses":
        count = responses_sentence(n, customers, unmatched)
    else:
        count = f"n = {n:,} {unit}"
    no_interval = math.isnan(low) or math.isnan(high)
    interval = f"95% CI {format_interval(low, high, digits)}"
    if no_interval and customers is not None and int(customers) - int(unmatched or 0) < 2:
        interval = "no interval from fewer than two customers"
    details = [count + "."]
    if n_eff is not None and not math.isnan(n_eff):
        details.append(
            f"Effective n {n_eff:,.0f}: responses of one customer agree with each other, so {n:,} of them "
            f"carry as much information as {n_eff:,.0f} independent ones."
        )
    details.append(f"95% interval {format_interval(low, high, digits)}, treating each customer as a cluster.")
    if q_value is not None and not math.isnan(q_value):
        details.append(
            f"Change: Benjamini–Hochberg q = {q_value:.3f} across the cards (significant below 0.05)."
        )
    if small:
        details.append(f"Fewer than {min_n()} answers: too few to trust or rank.")
    box.metric(
        label,
        value if not small else f"{value} (n<{min_n()})",
        delta=delta_text,
        delta_color=("inverse" if lower_is_better else "normal") if significant else "off",
        help=" ".join(details),
    )
    box.caption(f"{count} · {interval}" + (" · :grey[small sample]" if small else ""))


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
