"""Segment explorer: every segment of one or two dimensions with n, pillars, NPS, CSAT, CES and
retention, each with its 95% interval and its difference from the rest (Benjamini–Hochberg)."""

import streamlit as st

from relq import ui
from relq.analyses import explorer
from relq.outputs import charts
from relq.store import catalog

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()

st.title("Segment explorer")
head = ui.cached_headline(engine, flt)
if head.responses == 0:
    ui.nothing_matches()

dimensions = ui.allowed_dimensions(ui.cached_query(engine, lambda conn, _flt: catalog.dimensions(conn), flt))
left, mid, right = st.columns(3)
first = left.selectbox(
    "Segment by", dimensions, key="seg_first", format_func=lambda d: d.replace("_", " ").capitalize()
)
second = mid.selectbox(
    "Then by (optional)",
    ["", *[d for d in dimensions if d != first]],
    key="seg_second",
    format_func=lambda d: "— one dimension —" if not d else d.replace("_", " ").capitalize(),
)
metric = right.selectbox(
    "Chart",
    ["rq", "trust", "commitment", "satisfaction", "nps", "csat", "ces", "retention"],
    key="seg_metric",
    format_func=lambda m: charts.METRIC_LABELS.get(m, m.capitalize()),
)
dims = (first, second) if second else (first,)

with st.spinner("Scoring every segment and testing it against the rest…"):
    # distinct customers are counted only where the small-group rule needs them (executives)
    executive = ui.current_role() == "executive"
    scores, kept = ui.read_side_by_side(  # the scores and the retention: two reads at once
        engine,
        lambda: ui.cached_query(
            engine, explorer.segment_table, flt, dimensions=dims, count_customers=executive
        ),
        lambda: ui.cached_query(engine, explorer.segment_retention, flt, dimensions=dims),
    )
if executive:  # executives never see a group under 5 customers: not in the chart, tables or downloads
    scores = ui.suppress_small_groups(scores, "customers", group_col="segment")
    kept = ui.suppress_small_groups(kept, "n", quiet=True)  # retention: customers at the quarter's start
if scores.empty:
    ui.nothing_matches("No segment of this dimension has survey responses under the current filters.")

st.caption(
    "Each score: estimate, 95% interval and n (responses from how many customers), and its difference from the "
    "rest of the responses in view. Every interval and test treats each customer as a cluster (several people "
    "at one customer answer, wave after wave): pillars, RQ and CES by Welch's t with customer-clustered "
    "variances (Satterthwaite df), NPS and CSAT by a z-test on the clustered variances. ✱ = Benjamini–Hochberg "
    f"q < 0.05 across the segments of this table, per score. Segments with fewer than {ui.min_n()} answers are "
    "greyed and never ranked. Retention: the last whole quarter (customers, Newcombe)."
    + (f" Counting each {flt.weighting.label}." if flt.weighting.per_customer else "")
    + (
        f" Two dimensions: each {ui.plain(first.replace('_', ' '))} is compared with the rest of its "
        f"{ui.plain(second.replace('_', ' '))}."
        if second
        else ""
    )
)

if metric == "retention":
    bars = kept
else:
    bars = scores[scores["metric"] == metric]
if bars.empty:
    st.info("No segment has a value for this score.")
else:
    st.plotly_chart(
        charts.segment_bars(
            bars, metric, f"{charts.METRIC_LABELS.get(metric, metric.capitalize())} by segment"
        ),
        width="stretch",
    )

wide = explorer.wide_segment_table(scores, kept)
if executive:  # executives never see a group under 5 customers
    wide = ui.suppress_small_groups(wide, "customers")


def grey_small(row):
    return ["color: #9AA5B1" if row["small"] else "" for _ in row]


estimates = [c for c in wide.columns if wide[c].dtype.kind == "f"]
ces = [c for c in estimates if str(c).startswith("ces")]  # a 1–7 mean needs two decimals
st.dataframe(
    wide.style.apply(grey_small, axis=1)
    .format("{:.1f}", subset=[c for c in estimates if c not in ces], na_rep="–")
    .format("{:.2f}", subset=ces, na_rep="–"),
    hide_index=True,
    width="stretch",
)
name = "-".join(dims)
c1, c2 = st.columns(2)
with c1:
    ui.download_csv(wide, f"segments-{name}.csv", label="Download this table (CSV)", key="seg_wide_csv")
with c2:
    ui.download_csv(
        scores, f"segments-{name}-tidy.csv", label="Download every test (tidy CSV)", key="seg_tidy_csv"
    )
