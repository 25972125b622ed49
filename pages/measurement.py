"""Measurement (analysts): how reliably the questionnaire measures trust, commitment and satisfaction."""

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from relq import store, ui
from relq.core.instrument import (
    configured_instrument,
    instrument_frame,
    instrument_from_frame,
    save_instrument,
)
from relq.exceptions import RelqError, WeightingError
from relq.measures import customer_sums, metrics
from relq.measures.reliability import (
    HTMT_WARNING,
    answer_distribution,
    has_answers,
    htmt_intervals,
    pillar_correlations,
    recompute_indices,
    reliability,
)
from relq.outputs import charts
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()
LABELS = charts.METRIC_LABELS


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _reliability(_engine, url: str, flt: SegmentFilter, instrument, version: int):
    with _engine.connect() as conn:
        return reliability(conn, flt, instrument)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _htmt(_engine, url: str, flt: SegmentFilter, instrument, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return htmt_intervals(conn, flt, instrument)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _correlations(_engine, url: str, flt: SegmentFilter, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return pillar_correlations(conn, flt)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _has_answers(_engine, url: str, flt: SegmentFilter, instrument, version: int) -> bool:
    with _engine.connect() as conn:
        return has_answers(conn, flt, instrument)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _distribution(_engine, url: str, flt: SegmentFilter, instrument, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return answer_distribution(conn, flt, instrument)


def _correlation_heatmap(corr: pd.DataFrame) -> go.Figure:
    names = list(PILLARS)
    z = [[1.0 if a == b else math.nan for b in names] for a in names]
    text = [["1" if a == b else "" for b in names] for a in names]
    for row in corr.itertuples():
        i, j = names.index(row.a), names.index(row.b)
        z[i][j] = z[j][i] = row.r
        label = f"{charts.format_number(row.r, 2)}<br>[{charts.format_number(row.low, 2)}, {charts.format_number(row.high, 2)}]<br>n = {row.n:,}"
        text[i][j] = text[j][i] = label
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[LABELS[p] for p in names],
            y=[LABELS[p] for p in names],
            zmin=-1,
            zmax=1,
            colorscale=[[0, charts.BAD], [0.5, "#F5F7FA"], [1, charts.PILLAR_COLOURS["rq"]]],
            text=text,
            texttemplate="%{text}",
            hovertemplate="%{y} × %{x}<br>r = %{z:.2f}<extra></extra>",
            colorbar=dict(title="r"),
        )
    )
    fig.update_layout(template=charts.TEMPLATE, title="Correlation of pillar indices (95% Fisher interval)")
    fig.update_yaxes(autorange="reversed")
    return fig


def _distribution_bars(dist: pd.DataFrame, scale_min: float, scale_max: float) -> go.Figure:
    """Stacked horizontal bars: share of each answer per item (1 = disagree … 7 = agree)."""
    items = list(dict.fromkeys(dist["item_id"]))
    values = sorted(dist["value"].unique())
    span = max(scale_max - scale_min, 1)
    fig = go.Figure()
    for value in values:
        part = dist[dist["value"] == value].set_index("item_id").reindex(items)
        # disagree (low) in coral through neutral grey to agree (high) in teal
        t = (value - scale_min) / span
        colour = charts.BAD if t < 0.34 else (charts.NEUTRAL if t < 0.66 else charts.GOOD)
        opacity = 0.35 + 0.65 * abs(t - 0.5) * 2
        fig.add_trace(
            go.Bar(
                y=items,
                x=part["share"] * 100,
                orientation="h",
                name=f"{value:g}",
                marker=dict(color=colour, opacity=opacity),
                customdata=part[["count"]].fillna(0).to_numpy(),
                hovertemplate="%{y}: answer "
                + f"{value:g}"
                + " — %{x:.1f}% (%{customdata[0]:,})<extra></extra>",
            )
        )
    fig.update_layout(
        template=charts.TEMPLATE,
        barmode="stack",
        title="Answers per item (raw, before reverse coding)",
        xaxis_title="Share of answers (%)",
        legend_title_text="Answer",
        height=120 + 28 * len(items),
    )
    fig.update_yaxes(autorange="reversed")
    return fig


st.title("Measurement quality")
st.caption(
    "For analysts: how consistently the questionnaire's items measure each pillar, whether the "
    "pillars are distinct, and how customers answered each item. Computed from the stored raw "
    "answers of the responses in the current filters."
)

try:
    instrument = configured_instrument()
except RelqError as exc:
    ui.fail_clearly(exc)

url, version = str(engine.url), ui.data_version()
TABS = (
    "Reliability of each pillar",
    "Are the pillars distinct?",
    "Answer distribution",
    "Customers as clusters, and weights",
)
# Whether any item is answered in view, and (the first tab open) each pillar's reliability, read side
# by side; the distribution waits for its tab.
first_tab = st.session_state.get("measurement_tab") in (None, TABS[0])
answered, _ = ui.read_side_by_side(
    engine,
    lambda: _has_answers(engine, url, flt, instrument, version),
    lambda: _reliability(engine, url, flt, instrument, version) if first_tab else None,
)

if not answered:
    st.warning(
        "No item answers match the current filters, so reliability cannot be measured. "
        "Widen the period or clear the filters; survey imports keep each answer for this page."
    )

# Only the open tab computes: the HTMT bootstrap, the design effects and the raking cost seconds each.
tabs = st.tabs(list(TABS), key="measurement_tab", on_change="rerun")

with tabs[0]:
    if tabs[0].open and answered:
        rel = _reliability(engine, url, flt, instrument, version)
        min_n = ui.min_n()
        st.subheader("Cronbach's α")
        st.caption(
            "α near 1 means a pillar's items move together. Above 0.70 is usually acceptable, above 0.80 good. "
            "Computed over responses answering all of a pillar's items, after reverse coding; 95% Feldt interval."
        )
        cols = st.columns(len(PILLARS))
        for col, pillar in zip(cols, PILLARS, strict=True):
            a = rel.alpha[pillar]
            small = a.n < min_n
            col.metric(
                f"{LABELS[pillar]} α",
                charts.format_number(a.alpha, 2) + (f" (n<{min_n})" if small else ""),
                help=f"{a.k} items; n = {a.n:,} complete responses; 95% interval [{charts.format_number(a.low, 2)}, {charts.format_number(a.high, 2)}].",
            )
            col.caption(
                f"n = {a.n:,} · {a.k} items · 95% CI [{charts.format_number(a.low, 2)}, {charts.format_number(a.high, 2)}]"
                + (" · :grey[small sample]" if small else "")
            )

        st.subheader("Item statistics")
        weak = rel.weak_items
        if weak.empty:
            st.success(
                "Every item supports its pillar: none would raise α if deleted, all item–total r ≥ 0.30."
            )
        else:
            st.warning(
                "**Items that weaken reliability** (α would rise without them, or item–total r < 0.30): "
                + "; ".join(
                    f"`{r.item_id}` ({LABELS[r.pillar]}: α {charts.format_number(rel.alpha[r.pillar].alpha, 2)} → "
                    f"{charts.format_number(r.alpha_if_deleted, 2)} without it, item–total r {charts.format_number(r.item_total_r, 2)})"
                    for r in weak.itertuples()
                )
                + ". Check their wording — a reverse-keyed item that customers misread is a common cause."
            )
        table = rel.items.rename(
            columns={
                "item_total_r": "item–total r",
                "alpha_if_deleted": "α if deleted",
                "weakens": "weakens α",
            }
        )
        st.dataframe(
            table.style.apply(
                lambda row: ["background-color: #FCE8E2" if row["weakens α"] else "" for _ in row], axis=1
            ).format({"mean": "{:.2f}", "sd": "{:.2f}", "item–total r": "{:.3f}", "α if deleted": "{:.3f}"}),
            hide_index=True,
            width="stretch",
        )
        st.caption(
            "Mean and sd on the answer scale after reverse coding; item–total r is corrected (the item "
            "against the sum of the pillar's other items); n = responses answering every item of the pillar."
        )
        ui.download_csv(rel.items, "relq_item_statistics.csv", key="dl_items")

with tabs[1]:
    if tabs[1].open and answered:
        rel = _reliability(engine, url, flt, instrument, version)
        corr = _correlations(engine, url, flt, version)
        left, right = st.columns([3, 2])
        left.plotly_chart(_correlation_heatmap(corr), width="stretch")
        bootstrap = _htmt(engine, url, flt, instrument, version)
        htmt = rel.htmt.merge(bootstrap[["a", "b", "low", "high", "customers"]], on=["a", "b"], how="left")
        htmt = htmt.assign(a=lambda f: f["a"].map(LABELS), b=lambda f: f["b"].map(LABELS))
        right.markdown("**HTMT** (heterotrait–monotrait ratio of item correlations)")
        right.dataframe(
            htmt[["a", "b", "htmt", "low", "high", "n", "customers"]].rename(
                columns={"a": "pillar", "b": "vs pillar", "low": "95% CI from", "high": "to"}
            ),
            hide_index=True,
            width="stretch",
            column_config={
                "htmt": st.column_config.NumberColumn("HTMT", format="%.3f"),
                "95% CI from": st.column_config.NumberColumn(format="%.3f"),
                "to": st.column_config.NumberColumn(format="%.3f"),
            },
        )
        resamples = int(bootstrap["resamples"].iloc[0]) if len(bootstrap) else 0
        right.caption(
            f"Below {HTMT_WARNING:.2f}: customers tell the two pillars apart. n = responses answering every item, "
            f"from that many customers; the interval comes from {resamples} bootstrap resamples of the customers "
            "(all of a customer's responses together)."
        )
        for message in rel.htmt["warning"]:
            if message:
                st.warning(message)
        ui.download_csv(
            corr.merge(
                bootstrap[["a", "b", "htmt", "low", "high"]].rename(
                    columns={"low": "htmt_low", "high": "htmt_high"}
                ),
                on=["a", "b"],
                how="left",
            ),
            "relq_pillar_correlations.csv",
            key="dl_corr",
        )

with tabs[2]:
    if tabs[2].open and answered:
        dist = _distribution(engine, url, flt, instrument, version)
        st.plotly_chart(_distribution_bars(dist, instrument.scale_min, instrument.scale_max), width="stretch")
        ui.download_csv(dist, "relq_answer_distribution.csv", key="dl_dist")

with tabs[3]:
    if tabs[3].open:
        st.caption(
            "Several people at one customer answer, wave after wave, so their responses are not independent. Every "
            "interval in RelQ treats each customer as a cluster; the design effect says how much wider that makes it "
            "than if every response were independent, and the effective n how many independent responses the score is "
            "worth. The intra-customer correlation ρ follows from deff = 1 + (m* − 1)·ρ (m* = Σn_c²/Σn_c)."
        )
        try:
            effects = ui.cached_query(engine, metrics.design_effects, flt)
        except WeightingError as exc:
            st.warning(str(exc))
            effects = None
        if effects is not None:
            st.dataframe(
                effects.assign(metric=effects["metric"].map(lambda m: LABELS.get(m, m))),
                hide_index=True,
                width="stretch",
                column_config={
                    "metric": "score",
                    "n": st.column_config.NumberColumn("n (responses)", format="%d"),
                    "customers": st.column_config.NumberColumn("customers (clusters)", format="%d"),
                    "responses_per_customer": st.column_config.NumberColumn(
                        "responses per customer", format="%.1f"
                    ),
                    "deff": st.column_config.NumberColumn("design effect", format="%.2f"),
                    "n_eff": st.column_config.NumberColumn("effective n", format="%.0f"),
                    "icc": st.column_config.NumberColumn("intra-customer ρ", format="%.2f"),
                },
            )
        dims = flt.weighting.rake
        st.markdown(
            f"**Raking to the customer base on {', '.join(d.replace('_', ' ') for d in dims)}** "
            + (
                "(the weighting in use)"
                if flt.weighting.scheme == "raked"
                else "(what choosing it in the sidebar would do)"
            )
        )
        try:
            raked = ui.cached_query(engine, customer_sums.raking_diagnostics, flt)
        except WeightingError as exc:
            raked = None
            st.warning(str(exc))
        if raked is not None and raked.problem:
            st.warning(raked.problem + " Raked numbers are not shown while this is so.")
        elif raked is not None and raked.diagnostics is not None:
            diag = raked.diagnostics
            when = (
                f"{raked.since:%d %b %Y} – {raked.until:%d %b %Y}"
                if raked.since and raked.until
                else "the data"
            )
            cols = st.columns(4)
            cols[0].metric("Kish design effect of the weights", f"{diag.kish_deff:.2f}", help="n·Σw² / (Σw)²")
            cols[1].metric("Smallest weight", f"{diag.weight_min:.2f}")
            cols[2].metric(
                "Largest weight", f"{diag.weight_max:.2f}", help=f"{diag.weight_ratio:.1f} times the smallest"
            )
            cols[3].metric(
                "IPF passes", f"{diag.iterations}", help="to every margin within 1e-10 of its target"
            )
            st.caption(
                f"Base: customers acquired on or before the last day of {when} (or without a date) and not churned before "
                "its first day, in the segments of the sidebar. Targets are their counts; achieved are the raked weights "
                "of the responding customers."
            )
            margins = diag.margins.assign(
                target_share=lambda f: 100 * f["target_share"],
                achieved_share=lambda f: 100 * f["achieved_share"],
            )
            ui.table_with_download(
                margins,
                "raking-margins.csv",
                key="dl_raking",
                column_config={
                    "target": st.column_config.NumberColumn("target (customers)", format="%.0f"),
                    "target_share": st.column_config.NumberColumn("target %", format="%.2f"),
                    "respondents": st.column_config.NumberColumn("responding customers", format="%d"),
                    "achieved": st.column_config.NumberColumn("achieved (Σ weight)", format="%.4f"),
                    "achieved_share": st.column_config.NumberColumn("achieved %", format="%.2f"),
                },
            )
        head = ui.cached_headline(engine, flt)
        if head.unmatched:
            st.caption(
                f"{head.unmatched:,} response{'s' if head.unmatched != 1 else ''} in view match no customer: each is a "
                "cluster of its own, and customer-level weights (customer, annual value, raked) leave them out."
            )

st.subheader("The questionnaire")
st.caption(
    f"Answers on {instrument.scale_min:g}–{instrument.scale_max:g} "
    f"({instrument.scale_min:g} = strongly disagree). Reverse-keyed items are coded min + max − x."
)
st.dataframe(instrument_frame(instrument), hide_index=True, width="stretch")
if not ui.can("edit_instrument"):
    st.caption("Analysts and admins can edit the questionnaire here.")
    st.stop()
with st.expander("Edit the questionnaire (analysts)", expanded=False):
    st.caption(
        "Change an item's wording, pillar or reverse keying, add or remove items. Saving writes the "
        "instrument file and recomputes every stored pillar index and RQ from the raw answers."
    )
    edited = st.data_editor(
        instrument_frame(instrument),
        key="instrument_editor",
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={
            "id": st.column_config.TextColumn("Item id", required=True),
            "pillar": st.column_config.SelectboxColumn("Pillar", options=list(PILLARS), required=True),
            "text": st.column_config.TextColumn("Question wording", width="large", required=True),
            "reverse": st.column_config.CheckboxColumn("Reverse-keyed", default=False),
        },
    )
    if st.button("Save and recompute indices", key="save_instrument", type="primary"):
        try:
            new = instrument_from_frame(edited, instrument.scale_min, instrument.scale_max)
        except RelqError as exc:
            st.error(ui.plain(exc))
        else:
            if new == instrument:
                st.info("Nothing changed: the questionnaire is as saved.")
            else:
                with st.spinner("Saving the questionnaire and recomputing every stored index…"):
                    path = save_instrument(new)
                    updated = recompute_indices(engine, new)
                    store.record_audit(
                        engine,
                        ui.current_user_email(),
                        "edit_instrument",
                        {"path": str(path), "items": new.item_ids, "responses_updated": updated},
                    )
                    ui.bump_data_version()
                st.session_state["instrument_saved"] = updated
                st.rerun()
    if "instrument_saved" in st.session_state:
        st.success(
            f"Questionnaire saved; indices recomputed for {st.session_state.pop('instrument_saved'):,} responses."
        )
