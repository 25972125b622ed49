"""Drivers: how much each pillar explains NPS (Shapley/LMG share of R² with bootstrap intervals, next
to plain correlations), overall and per segment; importance × performance; pillars and churn."""

import streamlit as st

from relq import ui
from relq.analyses import drivers
from relq.outputs import charts
from relq.store import catalog

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()

st.title("What drives NPS")

dimensions = ui.allowed_dimensions(ui.cached_query(engine, lambda conn, _flt: catalog.dimensions(conn), flt))
# the dimension the Per segment tab shows: the customers' sums are read once, with its segments,
# for the overall figures and for the tab's
chosen = st.session_state.get("drivers_dimension")
segment_by = chosen if chosen in dimensions else (dimensions[0] if dimensions else None)
TABS = ("Per segment", "Importance × performance", "Pillars and churn")
# The overall decomposition and, when its tab is the open one (kept in the session), the per-segment
# one bootstrap side by side: each resample's draws leave the other core idle otherwise.
segment_now = segment_by is not None and st.session_state.get("drivers_tab") in (None, TABS[0])
with st.spinner("Decomposing R² and bootstrapping its intervals…"):
    ui.cached_driver_moments(engine, flt, segment_by)  # read once, for both
    overall, _ = ui.read_side_by_side(
        engine,
        lambda: ui.cached_drivers(engine, flt, None, read_by=segment_by),
        lambda: ui.cached_drivers(engine, flt, segment_by, read_by=segment_by) if segment_now else None,
    )
if overall.empty or overall["n"].max() < 10:
    ui.nothing_matches(
        "Too few survey responses with all three pillars and an NPS answer match the current filters "
        "(at least 10 are needed). Widen the period or clear the filters."
    )

n = int(overall["n"].iloc[0])
r2 = overall.iloc[0]
drawn = int(overall["resamples"].max())
st.caption(
    "Shapley (LMG) decomposition: each pillar's average gain in R² over the 3! orders of entering a "
    "regression of NPS (0–10) on the three pillars — exact, on every response in view, from per-customer "
    "sums computed in the database. 95% intervals: percentile bootstrap over customers ("
    + (f"{drawn} resamples" if drawn else "no resamples: too few responses")
    + ", fixed seed), each resample drawing whole customers with all their responses, because the "
    "responses of one customer are not independent."
    + (f" Counting each {flt.weighting.label}." if flt.weighting.per_customer else "")
)
metric_cols = st.columns(4)
metric_cols[0].metric(
    "R² of NPS on the pillars",
    f"{r2['r2']:.2f}",
    help=f"{ui.responses_sentence(n, int(r2['customers']))}; 95% bootstrap interval "
    f"{ui.format_interval(r2['r2_low'], r2['r2_high'], 2)}",
)
metric_cols[0].caption(
    f"{ui.responses_sentence(n, int(r2['customers']))} · 95% CI {ui.format_interval(r2['r2_low'], r2['r2_high'], 2)}"
)
for col, row in zip(metric_cols[1:], overall.itertuples(), strict=False):
    col.metric(
        f"{row.predictor.capitalize()}: share of R²",
        f"{100 * row.share:.0f}%",
        help=f"Share of the explained variance, 95% CI {ui.format_interval(100 * row.share_low, 100 * row.share_high, 0)}%; "
        f"LMG {row.lmg:.3f} of R² {row.r2:.3f} (95% CI [{row.lmg_low:.3f}, {row.lmg_high:.3f}]); "
        f"{ui.responses_sentence(row.n, row.customers)}",
    )
    col.caption(
        f"95% CI {ui.format_interval(100 * row.share_low, 100 * row.share_high, 0)}% · r = {row.r:.2f}"
    )

left, right = st.columns(2)
left.plotly_chart(charts.driver_bars(overall, "Share of R² explained by each pillar (LMG)"), width="stretch")
with right:
    st.subheader("Plain correlations with NPS")
    corr = overall[["predictor", "n", "customers", "r", "r_low", "r_high", "lmg", "lmg_low", "lmg_high"]]
    ui.table_with_download(
        corr,
        "drivers-overall.csv",
        key="drivers_overall_csv",
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in corr.columns
            if c not in ("predictor", "n", "customers")
        },
    )
    st.caption("Correlation intervals: the same bootstrap over customers.")

# Only the open tab computes: each decomposes R² again, bootstraps it or fits a Cox model.
tabs = st.tabs(list(TABS), key="drivers_tab", on_change="rerun")

with tabs[0]:
    if tabs[0].open:
        dimension = st.selectbox("Segment by", dimensions, index=0, key="drivers_dimension")
        with st.spinner(f"Decomposing R² in every {ui.plain(dimension.replace('_', ' '))}…"):
            by_segment = ui.cached_drivers(engine, flt, dimension, read_by=dimension)
        shown = ui.suppress_small_groups(by_segment, "customers")  # groups under 5 customers
        segment_drawn = int(by_segment["resamples"].max()) if not by_segment.empty else 0
        st.caption(
            f"Each segment's intervals: {segment_drawn} bootstrap resamples of its customers (fixed seed). Segments with "
            f"fewer than {ui.min_n()} responses are greyed (marked small): their shares are shown without intervals "
            "(resamples 0) and never ranked."
        )
        ui.table_with_download(
            shown,
            f"drivers-by-{dimension}.csv",
            key="drivers_segment_csv",
            column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in shown.columns
                if c not in ("segment", "predictor", "n", "customers", "small", "resamples")
            },
        )

with tabs[1]:
    if tabs[1].open:
        with st.spinner("Correlating every item with NPS…"):
            ip = ui.cached_query(engine, drivers.importance_performance, flt)
        left, right = st.columns([3, 2])
        left.plotly_chart(
            charts.importance_performance(ip, "Pillars (large) and their items (rings)"), width="stretch"
        )
        with right:
            st.caption(
                "Top-left (important, low performance): fix first. Top-right: keep up. Reverse-keyed items are "
                "recoded so higher is always better."
            )
            ui.table_with_download(
                ip[
                    [
                        "name",
                        "pillar",
                        "level",
                        "n",
                        "performance",
                        "importance",
                        "importance_low",
                        "importance_high",
                        "text",
                    ]
                ],
                "importance-performance.csv",
                key="ip_csv",
                column_config={
                    c: st.column_config.NumberColumn(format="%.2f")
                    for c in ("performance", "importance", "importance_low", "importance_high")
                },
            )

with tabs[2]:
    if tabs[2].open:
        with st.spinner("Fitting a Cox model of churn on the pillars…"):
            cox = ui.cached_query(engine, drivers.churn_hazard_ratios, flt)
        if cox is None:
            st.info(
                "Too few surveyed customers churned in view to estimate hazard ratios (at least 10 churns needed)."
            )
        else:
            left, right = st.columns([3, 2])
            left.plotly_chart(
                charts.hazard_ratio_forest(cox.hazard_ratios, "Churn hazard per 10 points of each pillar"),
                width="stretch",
            )
            with right:
                st.caption(
                    f"Cox proportional hazards on {cox.customers:,} surveyed customers ({cox.churned:,} churned), "
                    f"concordance {cox.concordance:.2f}. {cox.ph_sentence}"
                )
                ui.table_with_download(cox.hazard_ratios, "churn-hazard-ratios.csv", key="hr_csv")
