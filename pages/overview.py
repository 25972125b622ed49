"""Executive overview: the headline scores with their change vs the previous period, trends with
interval bands, the quadrant mix, the segments that moved most and a one-click board report."""

from datetime import datetime

import pandas as pd
import streamlit as st

from relq import ui
from relq.analyses import quadrants
from relq.outputs import board_report, charts

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()

st.title("Executive overview")
periods = ui.cached_query(engine, board_report.overview_periods, flt)
# The page's five reads are independent of each other: read side by side, not one after another.
with st.spinner("Computing the headline scores, trends, quadrant mix and segment moves…"):
    head, (kpis, _, retention_quarter), monthly, counts, moves = ui.read_side_by_side(
        engine,
        lambda: ui.cached_headline(engine, flt),
        lambda: ui.cached_overview_kpis(engine, flt, periods),
        lambda: ui.cached_trend(engine, flt),
        lambda: ui.cached_query(engine, quadrants.quadrant_counts, periods.current),
        lambda: (
            ui.cached_segment_moves(engine, periods.current, periods.previous)
            if periods.previous is not None
            else None
        ),
    )
if head.responses == 0:
    ui.nothing_matches()
kpis = ui.executive_kpis(engine, kpis, periods)  # executives: no period of fewer than 5 customers

st.caption(
    f"{ui.responses_sentence(head.responses, head.customers, head.unmatched)} in view. Cards: "
    f"{periods.description}. Every score shows its n, its customers and a 95% interval that treats each "
    "customer as a cluster. ✱ marks a change significant at Benjamini–Hochberg q < 0.05 across the nine "
    "cards (survey scores: z-test on the change, linearised over the customers of both periods; retention "
    "and churn: Newcombe)." + (f" Counting each {flt.weighting.label}." if flt.weighting.per_customer else "")
)
if head.weighting_note():
    st.caption(head.weighting_note())


def card(row, container) -> None:
    survey = row.metric not in ("retention", "churn")
    ui.score_card(
        row.label,
        row.estimate,
        row.low,
        row.high,
        int(row.n),
        digits=0 if row.metric == "nps" else (2 if row.metric == "ces" else 1),
        delta=None if pd.isna(row.delta) else float(row.delta),
        significant=bool(row.significant),
        lower_is_better=row.metric in board_report.LOWER_IS_BETTER,
        container=container,
        customers=int(row.customers) if survey and not pd.isna(row.customers) else None,
        unmatched=int(row.unmatched) if survey and not pd.isna(row.unmatched) else 0,
        n_eff=None if pd.isna(row.n_eff) else float(row.n_eff),
        q_value=None if pd.isna(row.q_value) else float(row.q_value),
        unit="responses" if survey else "customers",
    )


rows = {r.metric: r for r in kpis.itertuples()}
first = st.columns(5)
for col, metric in zip(first, ("rq", "trust", "commitment", "satisfaction", "nps"), strict=True):
    if metric in rows:
        card(rows[metric], col)
second = st.columns(5)
for col, metric in zip(second, ("csat", "ces", "retention", "churn"), strict=False):
    if metric in rows:
        card(rows[metric], col)
if retention_quarter is not None:
    second[4].caption(
        f"Retention and churn: the customers active at the start of the quarter beginning "
        f"{retention_quarter:%d %b %Y} still active at its end (new customers are not in the rate), vs the "
        "quarter before."
    )


minimum = ui.minimum_customers()  # executives: nothing about fewer than 5 customers
with second[4]:
    ui.audited_download(
        "Board report (HTML)",
        lambda conn: board_report.board_report_html(conn, flt, datetime.now(), minimum),
        file_name=f"relq-board-report-{datetime.now():%Y-%m-%d}.html",
        mime="text/html",
        key="board_report",
        detail={"filter": flt.to_query_params()},
        icon=":material/summarize:",
        help="One self-contained HTML file with these scores, the charts and the segment moves; it opens "
        "offline and prints to PDF from any browser.",
    )

trend = ui.executive_trend(engine, flt, monthly)
if trend.attrs.get("problems"):  # raked weights: a month whose respondents miss a base value has no point
    st.caption(
        f"{len(trend.attrs['problems'])} month(s) of the trend cannot be raked and are left blank, e.g.: "
        + trend.attrs["problems"][0]
    )
left, right = st.columns(2)
left.plotly_chart(
    charts.trend_with_band(
        trend, ["rq", "trust", "commitment", "satisfaction"], "Relationship quality by month", "Index (0–100)"
    ),
    width="stretch",
)
right.plotly_chart(charts.trend_with_band(trend, ["nps"], "NPS by month", "NPS"), width="stretch")

left, right = st.columns(2)
total = sum(counts.values())
with left:
    st.subheader("Quadrant mix")
    if total:
        mix = board_report.quadrant_shares(counts)
        st.plotly_chart(
            charts.quadrant_share_bars(mix, "Customers by trust × satisfaction (threshold 50)"),
            width="stretch",
        )
        st.caption(f"n = {total:,} customers (latest response in the period) · 95% CI (Wilson) in the hover.")
    else:
        st.info("No customer in view has both trust and satisfaction answered in this period.")

with right:
    st.subheader("Segments that moved most")
    if moves is None:
        st.info("There is no previous period to compare with.")
    else:
        moves = ui.executive_moves(engine, moves, periods)
        if moves.empty:
            st.info(
                "No segment moved significantly between the two periods (Benjamini–Hochberg q < 0.05 across "
                "every segment and score tested; segments under the minimum n are not tested)."
            )
        else:
            shown = moves.head(10)[
                ["dimension", "value", "label", "before", "now", "delta", "n_now", "q_value"]
            ]
            ui.table_with_download(
                shown.rename(columns={"label": "score", "n_now": "n"}),
                "segment-moves.csv",
                key="moves_csv",
                column_config={
                    "before": st.column_config.NumberColumn(format="%.1f"),
                    "now": st.column_config.NumberColumn(format="%.1f"),
                    "delta": st.column_config.NumberColumn(format="%+.1f"),
                    "q_value": st.column_config.NumberColumn("q", format="%.4f"),
                },
            )

with st.expander("All headline numbers as a table"):
    ui.table_with_download(kpis, "headline-scores.csv", key="kpis_csv")
