"""Gap quadrants: trust without satisfaction, satisfaction without commitment — and what to do."""

from __future__ import annotations

import math
from dataclasses import replace

import streamlit as st

from relq import ui
from relq.analyses import quadrants, retention, survival
from relq.analyses.quadrants import QUADRANT_KEYS, QuadrantSpec
from relq.outputs import charts
from relq.store import catalog
from relq.store.filters import SegmentFilter

ui.framed()  # first: a fresh server's first request is served through the frame

MAX_POINTS = 20_000
SHOWN_ROWS = 1_000  # rows of a customer list drawn in the page (the download holds them all)
BIN_WIDTH = 2.5
MODES = {
    "midpoint": "Scale midpoint (50)",
    "target": "Business target",
    "median": "Median of each pillar",
}


# --------------------------------------------------------------------------- cached queries


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=64, show_spinner=False)
def _spec(_engine, url: str, flt: SegmentFilter, x: str, y: str, mode: str, target, version: int):
    with _engine.connect() as conn:
        return quadrants.resolve_spec(conn, flt, x, y, mode, target)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _view(_engine, url: str, flt: SegmentFilter, spec: QuadrantSpec, version: int, max_points: int):
    """The cards and the picture, from one read of the customers in view."""
    with _engine.connect() as conn:
        return quadrants.quadrant_view(conn, flt, spec, max_points, BIN_WIDTH)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _customers(_engine, url, flt: SegmentFilter, spec: QuadrantSpec, key: str, version: int):
    """One quadrant's customers; borderline is marked once the cards' SEMs are known."""
    with _engine.connect() as conn:
        return quadrants.quadrant_customers(conn, flt, spec, key)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _mix(_engine, url: str, flt: SegmentFilter, spec: QuadrantSpec, dimension: str, version: int):
    with _engine.connect() as conn:
        return quadrants.quadrant_mix(conn, flt, spec, dimension)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _migration(
    _engine, url: str, before: SegmentFilter, after: SegmentFilter, spec: QuadrantSpec, version: int
):
    with _engine.connect() as conn:
        return quadrants.quadrant_migration(conn, before, after, spec)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _survival(_engine, url: str, flt: SegmentFilter, spec: QuadrantSpec, version: int):
    """Survival by quadrant from the survey that placed each customer (a landmark)."""
    with _engine.connect() as conn:
        landmark = survival.landmark_table(conn, flt, survival.QUADRANT, retention.churn_basis(conn), spec)
    return survival.kaplan_meier(landmark.table, keep_order=True), landmark


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=8, show_spinner=False)
def _waves(_engine, url: str, version: int) -> list[str]:
    with _engine.connect() as conn:
        return catalog.waves(conn)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=8, show_spinner=False)
def _dimensions(_engine, url: str, version: int) -> list[str]:
    with _engine.connect() as conn:
        return catalog.dimensions(conn)


# --------------------------------------------------------------------------- helpers


def _pct(value: float, digits: int = 0) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}%"


def _num(value: float, digits: int = 0) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _money(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:,.1f} M"
    if value >= 1e3:
        return f"{value / 1e3:,.0f} k"
    return f"{value:,.0f}"


def _effective(n: int, n_eff: float) -> str:
    """The effective n, where a weighting makes it smaller than n."""
    if n_eff != n_eff or round(n_eff) >= n:
        return ""
    return f", effective n {n_eff:,.0f}"


def _quadrant_card(box, row, small_n: int) -> None:
    """One quadrant: name, count and share, NPS, CSAT, churn, revenue at stake, action."""
    n = int(row.customers)
    box.markdown(f"#### {row.name}")
    box.caption(row.label)
    box.markdown(
        f"**{n:,} customers** · {_pct(row.share, 1)} of those in view "
        f"(95% CI {_pct(row.share_low, 1)}–{_pct(row.share_high, 1)})"
    )
    if n < 5:
        box.caption(":grey[Fewer than 5 customers: scores are not shown.]")
    else:
        grey = n < small_n
        lines = [
            f"NPS **{_num(row.nps)}** (95% CI {_num(row.nps_low)} to {_num(row.nps_high)}, n = {row.nps_n:,}"
            + _effective(row.nps_n, row.nps_n_eff)
            + ")",
            f"CSAT **{_pct(row.csat)}** (95% CI {_pct(row.csat_low)}–{_pct(row.csat_high)}, n = {row.csat_n:,}"
            + _effective(row.csat_n, row.csat_n_eff)
            + ")",
            f"Churned **{_pct(row.churn_share)}** (95% CI {_pct(row.churn_low)}–{_pct(row.churn_high)}); "
            f"retained {_pct(row.retention_share)}",
            f"Revenue at stake **{_money(row.revenue_at_stake)}** (annual value, else last 12 months' purchases)",
            f"Borderline: {int(row.borderline):,} of {n:,}",
        ]
        text = "  \n".join(lines)
        box.markdown(f":grey[{text}]" if grey else text)
        if grey:
            box.caption(f":grey[Fewer than {small_n} customers: too few to trust or rank.]")
    box.info(row.action, icon=":material/lightbulb:")


def _may_see_customer_lists() -> bool:
    """Executives see aggregates only (relq.core.auth); local single-user mode sees everything."""
    check = getattr(ui, "personal_columns_visible", None)
    return True if check is None else check()


# --------------------------------------------------------------------------- the page

engine = ui.get_engine()
flt = ui.current_filter()
url, version = str(engine.url), ui.data_version()

st.title("Gap quadrants")
st.caption(
    "Each customer sits in a quadrant by their latest survey response in the period that answers both "
    "pillars. *High* means an index at or above the threshold. Where the pillars disagree lies the "
    "action: trust without satisfaction, satisfaction without commitment."
)

pair_labels = {f"{x}×{y}": f"{x.capitalize()} × {y}" for x, y in quadrants.PAIRS}
left, middle, right = st.columns([2, 3, 1])
pair = left.selectbox("Pillar pair (x × y)", list(pair_labels), format_func=pair_labels.get, key="q_pair")
x, y = pair.split("×")
mode = middle.radio("Threshold", list(MODES), format_func=MODES.get, horizontal=True, key="q_mode")
target = right.number_input(
    "Target index",
    min_value=0.0,
    max_value=100.0,
    value=60.0,
    step=1.0,
    key="q_target",
    disabled=mode != "target",
)
spec = _spec(engine, url, flt, x, y, mode, float(target) if mode == "target" else None, version)
TABS = (
    "Customers in a quadrant",
    "Mix by segment",
    "Migration between quadrants",
    "Who stays: survival since the survey",
)
# The cards and the customer list of the quadrant the first tab shows are read side by side (the
# widgets below keep their values in the session, so the quadrant to list is known already).
listed = st.session_state.get("q_selected", QUADRANT_KEYS[0])
list_now = st.session_state.get("q_tab") in (None, TABS[0]) and _may_see_customer_lists()
# executives never get one dot per customer: always customers per cell
max_points = -1 if ui.is_executive() else MAX_POINTS
(summary, kind, picture), _ = ui.read_side_by_side(
    engine,
    lambda: _view(engine, url, flt, spec, version, max_points),
    lambda: _customers(engine, url, flt, spec, listed, version) if list_now else None,
)

if summary.customers == 0:
    st.warning(
        f"No customer in view has a survey response answering both {x} and {y}. "
        "Widen the period, clear the filters or choose another pillar pair."
    )
    st.stop()

threshold_text = (
    f"{spec.x_threshold:.1f}"
    if spec.x_threshold == spec.y_threshold
    else f"{x} {spec.x_threshold:.1f}, {y} {spec.y_threshold:.1f}"
)
st.caption(
    f"{summary.customers:,} customers · threshold {threshold_text} — {MODES[spec.mode].lower()} · "
    "shares of customers with Wilson 95% intervals; NPS (adjusted Wald) and CSAT (Wilson) from each customer's "
    "latest response — one per customer"
    + (
        f", weighted by {flt.weighting.label} (intervals on the effective n)."
        if flt.weighting.scheme in ("value", "raked")
        else "."
    )
)

table = summary.table.set_index("quadrant")
rows = {row.quadrant: row for row in summary.table.itertuples(index=False)}
small_n = ui.min_n()
top = st.columns(2)
bottom = st.columns(2)
# Laid out like the chart: high y on top, high x on the right.
for box, key in zip(
    (top[0], top[1], bottom[0], bottom[1]),
    ("x_low_y_high", "x_high_y_high", "x_low_y_low", "x_high_y_low"),
    strict=True,
):
    with box.container(border=True):
        _quadrant_card(st, rows[key], small_n)

# Honesty: measurement error and the threshold's arbitrariness.
sem_parts = []
for pillar, sem, alpha in ((x, summary.x_sem, summary.x_alpha), (y, summary.y_sem, summary.y_alpha)):
    sem_parts.append(
        f"{pillar} ± {sem:.1f} points (α = {alpha.alpha:.2f})"
        if not math.isnan(sem)
        else f"{pillar}: unknown"
    )
st.markdown(
    f"**Borderline:** {summary.borderline:,} customers ({100 * summary.borderline / summary.customers:.0f}%) "
    f"lie within one standard error of measurement of a threshold ({'; '.join(sem_parts)}): "
    "a retest could put them in the neighbouring quadrant. They are marked in the customer list.  \n"
    f"**Sensitivity:** moving the threshold up by 5 points moves {summary.moved_up:,} customers to another "
    f"quadrant; moving it down by 5 moves {summary.moved_down:,}."
)

names = {key: spec.name(key) for key in QUADRANT_KEYS}
if kind == "points":
    fig = charts.quadrant_scatter(
        picture, x, y, spec.x_threshold, spec.y_threshold, names, title="One dot per customer"
    )
else:
    fig = charts.quadrant_density(
        picture,
        x,
        y,
        spec.x_threshold,
        spec.y_threshold,
        names,
        BIN_WIDTH,
        title=f"Customers per {BIN_WIDTH:g}-point cell"
        + ("" if ui.is_executive() else f" (more than {MAX_POINTS:,} customers: binned)"),
    )
st.plotly_chart(fig, width="stretch")
ui.download_csv(
    ui.suppress_small_groups(summary.table.drop(columns=["action"]), "customers", quiet=True),
    f"quadrants-{x}-{y}.csv",
    "Download quadrant table",
    key="q_dl_table",
)

# Only the open tab computes: each reads every customer in view again.
tabs = st.tabs(list(TABS), key="q_tab", on_change="rerun")

with tabs[0]:
    if tabs[0].open:
        selected = st.selectbox(
            "Quadrant",
            list(QUADRANT_KEYS),
            format_func=lambda k: f"{names[k]} — {spec.label(k)} ({int(table.loc[k, 'customers']):,})",
            key="q_selected",
        )
        # a role that may not see the list does not wait for it either
        listing = (
            quadrants.with_borderline(
                _customers(engine, url, flt, spec, selected, version), spec, summary.x_sem, summary.y_sem
            )
            if _may_see_customer_lists()
            else None
        )
        if listing is None:
            ui.customer_list_hidden_notice()
        elif listing.empty:
            st.info("No customer in this quadrant for the current filters.")
        else:
            shown = listing.head(SHOWN_ROWS)  # the browser draws what a person reads; the download more
            in_quadrant = int(table.loc[selected, "customers"])
            in_download = "all" if len(listing) == in_quadrant else f"the lowest {len(listing):,}"
            st.caption(
                f"{in_quadrant:,} customers, lowest combined {x} + {y} first"
                + (
                    f" (the first {SHOWN_ROWS:,} shown, {in_download} in the download)"
                    if len(listing) > SHOWN_ROWS
                    else ""
                )
                + "; click a column to sort. Borderline: within one standard error of measurement of a threshold."
            )
            st.dataframe(
                shown,
                hide_index=True,
                width="stretch",
                column_config={
                    x: st.column_config.NumberColumn(x.capitalize(), format="%.1f"),
                    y: st.column_config.NumberColumn(y.capitalize(), format="%.1f"),
                    "annual_value": st.column_config.NumberColumn("Annual value", format="%.0f"),
                    "surveyed_at": st.column_config.DatetimeColumn("Surveyed", format="YYYY-MM-DD"),
                    "last_purchase": st.column_config.DatetimeColumn("Last purchase", format="YYYY-MM-DD"),
                    "latest_comment": st.column_config.TextColumn("Latest comment", width="large"),
                },
            )
            ui.download_csv(
                listing,
                f"quadrant-{selected}-{x}-{y}.csv",
                "Download these customers (CSV)",
                key="q_dl_customers",
            )
            ui.open_cases_for(
                listing,
                reason="quadrant",
                source=f"Gap quadrants: {names[selected]} ({x} × {y})",
                key="q_cases",
            )

with tabs[1]:
    if tabs[1].open:
        dimensions = [d for d in _dimensions(engine, url, version) if d != "owner"]
        dimension = st.selectbox(
            "Split by", dimensions, format_func=lambda d: d.replace("_", " ").capitalize(), key="q_dimension"
        )
        mix = ui.suppress_small_groups(_mix(engine, url, flt, spec, dimension, version), "segment_customers")
        if mix.empty:
            st.info("No customer in view has a value for this dimension.")
        else:
            st.plotly_chart(
                charts.quadrant_mix_bars(
                    mix, names, title=f"Quadrant shares by {dimension.replace('_', ' ')}"
                ),
                width="stretch",
            )
            few = mix.groupby("segment")["segment_customers"].first()
            few = few[few < small_n]
            if len(few):
                st.caption(
                    f":grey[Segments with fewer than {small_n} customers ({ui.plain(', '.join(map(str, few.index)))}) "
                    "have wide intervals: do not rank them.]"
                )
            ui.download_csv(mix, f"quadrant-mix-{dimension}.csv", "Download the mix", key="q_dl_mix")

with tabs[2]:
    if tabs[2].open:
        waves = _waves(engine, url, version)
        options = ["waves", "periods"] if len(waves) >= 2 else ["periods"]
        basis = st.radio(
            "Compare",
            options,
            format_func={"waves": "Two survey waves", "periods": "Previous period → this period"}.get,
            horizontal=True,
            key="q_basis",
        )
        before = after = None
        if basis == "waves":
            c1, c2 = st.columns(2)
            first = c1.selectbox("From wave", waves, index=len(waves) - 2, key="q_wave_from")
            second = c2.selectbox("To wave", waves, index=len(waves) - 1, key="q_wave_to")
            if first == second:
                st.info("Choose two different waves.")
            else:
                before, after = replace(flt, waves=(first,)), replace(flt, waves=(second,))
        else:
            before, after = flt.shifted_back(), flt
            if before is None:
                st.info(
                    "Choose a period in the sidebar to compare it with the previous period of equal length."
                )
        if before is not None:
            moves = _migration(engine, url, before, after, spec, version)
            total = int(moves["customers"].sum())
            if total == 0:
                st.info("No customer answered both pillars in both — nothing to compare.")
            else:
                ui.small_group_gate(total)  # executives: no migration of fewer than 5 customers
                stayed = int(moves.loc[moves["from"] == moves["to"], "customers"].sum())
                st.plotly_chart(
                    charts.transition_heatmap(
                        moves,
                        names,
                        title=f"{total:,} customers answered in both; {total - stayed:,} changed quadrant",
                    ),
                    width="stretch",
                )
                st.caption(
                    "Caution: scores regress to the mean — customers picked for an extreme quadrant tend to "
                    "drift towards the middle on the next survey even when nothing changed."
                )
                ui.download_csv(moves, "quadrant-migration.csv", "Download the matrix", key="q_dl_moves")

with tabs[3]:
    if tabs[3].open:
        km, landmark = _survival(engine, url, flt, spec, version)
        if km.curves.empty:
            st.info(
                "No surveyed customer can be followed with these filters. " + landmark.left_out_sentence()
            )
        else:
            kept = ui.suppress_small_groups(km.summary, "customers")
            st.plotly_chart(
                charts.km_curves(
                    km.curves[km.curves["segment"].isin(kept["segment"])],
                    "Share still customers, by months since the survey that placed them",
                    x_title="Months since the survey that placed the customer",
                ),
                width="stretch",
            )
            st.dataframe(
                survival.summary_table(kept, km.horizon_months, small_n), hide_index=True, width="stretch"
            )
            st.caption(
                "Kaplan–Meier with 95% bands. Here each customer is placed by their first survey answer in the "
                "period with both pillars and followed from that day to churn or the data's end (a landmark), so no "
                "one is credited with the months they had to survive to answer; the cards above place customers by "
                "their latest answer instead. "
                + (
                    f"Log-rank test across the quadrants: p = {km.logrank_p:.3g}. "
                    if km.logrank_p is not None
                    else ""
                )
                + landmark.left_out_sentence()
            )
