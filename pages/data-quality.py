"""Data quality: duplicates, missingness, straight-lining, speeders, out-of-range values, unmatched
responses and stale customers — the counts and the rows behind them."""

import streamlit as st

from relq import ui
from relq.analyses import dataquality

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()

st.title("Data quality")
st.caption(
    "Counted in the database over the responses and customers in view. Flags never remove a response from "
    "a number: to leave flagged responses out, use “Exclude flagged responses” in the sidebar."
)
stale_days = st.number_input(
    "Stale after (days without a purchase, response or ticket)",
    30,
    3650,
    dataquality.STALE_DAYS,
    30,
    key="dq_stale_days",
)


def rows_of(check: str):
    return ui.cached_query(engine, dataquality.quality_rows, flt, check=check, stale_days=int(stale_days))


# The summary with the missing values (one pass over the responses) and the rows of the check shown
# below (its choice is kept in the session, so known already) are read side by side.
shown_check = st.session_state.get("dq_check", next(iter(dataquality.CHECKS)))
with st.spinner("Checking the data…"):
    (summary, missing), _ = ui.read_side_by_side(
        engine,
        lambda: ui.cached_query(engine, dataquality.quality_checks, flt, stale_days=int(stale_days)),
        lambda: rows_of(shown_check),
    )
if summary["out_of"].max() == 0:
    ui.nothing_matches("No survey responses or customers match the current filters. Clear the filters.")

cols = st.columns(len(summary))
for col, row in zip(cols, summary.itertuples(), strict=True):
    col.metric(row.check.capitalize(), f"{row.count:,}", help=row.meaning)
    col.caption(f"of n = {row.out_of:,} {row.unit} ({row.share:.1f}%)")
ui.table_with_download(summary, "data-quality-summary.csv", key="dq_summary_csv")

st.subheader("The rows behind a check")
check = st.selectbox("Check", list(dataquality.CHECKS), key="dq_check")
rows = rows_of(check)
if rows.empty:
    st.success(f"No {check} in view.")
else:
    shown = ui.mask_personal(rows)
    st.caption(f"{len(rows):,} rows (at most 5,000 shown).")
    ui.table_with_download(shown, f"data-quality-{check.replace(' ', '-')}.csv", key="dq_rows_csv")

st.subheader("Missing values by column")
ui.table_with_download(
    missing,
    "missing-values.csv",
    key="dq_missing_csv",
    column_config={
        "share": st.column_config.ProgressColumn("missing %", min_value=0, max_value=100, format="%.1f%%")
    },
)
