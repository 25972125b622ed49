"""Retention and churn: cohorts, rates, survival, what relationship quality does to churn, and
the customers to call this week."""

import pandas as pd
import streamlit as st

from relq import ui
from relq.analyses import retention, service, survival
from relq.core.settings import load_settings
from relq.outputs import charts
from relq.store.filters import SegmentFilter

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()
url = str(engine.url)
version = ui.data_version()
settings = load_settings()


@st.cache_data(ttl=600, max_entries=32, show_spinner=False)
def _basis(_engine, url: str, version: int) -> retention.Basis:
    with _engine.connect() as conn:
        return retention.churn_basis(conn)


@st.cache_data(ttl=600, max_entries=32, show_spinner=False)
def _cohorts(_engine, url: str, flt: SegmentFilter, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.cohort_activity(conn, flt, _basis(_engine, url, version))


@st.cache_data(ttl=600, max_entries=32, show_spinner=False)
def _rates(_engine, url: str, flt: SegmentFilter, freq: str, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.retention_rates(conn, flt, freq, _basis(_engine, url, version))


@st.cache_data(ttl=600, max_entries=32, show_spinner=False)
def _survival(_engine, url: str, flt: SegmentFilter, by: str | None, version: int) -> survival.KaplanMeier:
    with _engine.connect() as conn:
        table = survival.duration_table(conn, flt, by, _basis(_engine, url, version))
    return survival.kaplan_meier(table)


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def _cox(_engine, url: str, flt: SegmentFilter, version: int):
    with _engine.connect() as conn:
        table = survival.cox_table(conn, flt, _basis(_engine, url, version))
    return len(table), survival.cox_pillars(table)


@st.cache_data(ttl=600, max_entries=32, show_spinner=False)
def _at_risk(_engine, url: str, flt: SegmentFilter, days: int, drop: float, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.at_risk_customers(conn, flt, days, drop, _basis(_engine, url, version))


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def _segments(_engine, url: str, flt: SegmentFilter, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.derived_segments(conn, flt)


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def _service(_engine, url: str, flt: SegmentFilter, by: str | None, version: int):
    with _engine.connect() as conn:
        return service.ticket_quality(conn, flt, by), service.satisfaction_by_response_time(conn, flt)


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def _clv(_engine, url: str, flt: SegmentFilter, by: str | None, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return survival.lifetime_value(conn, flt, by, _basis(_engine, url, version))


def _pct(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{100 * x:.0f}%"


st.title("Retention and churn")
basis = _basis(engine, url, version)
cohorts = _cohorts(engine, url, flt, version)
if cohorts.empty:
    st.warning(
        "No customers match the current filters (or there are no customers and purchases yet). "
        "Widen the period, clear the filters, or import customers or transactions on the Upload page."
    )
    st.stop()
st.caption(basis.describe())
if flt.since or flt.until:
    st.caption("Cohorts, survival and lifetime value cover the customers acquired in the selected period.")

DIMENSIONS = [d for d in ("plan", "region", "industry", "value_tier", "lifecycle_stage", "owner", "cohort")]
SPLITS = ["(all customers)", *DIMENSIONS] + ([survival.QUADRANT] if survival.quadrant_names() else [])


def _split_label(x: str) -> str:
    return x if x.startswith("(") else x.replace("_", " ").capitalize()


def _customer_split(key: str) -> str | None:
    """A "By" select over the customer dimensions (no quadrant): the dimension, or None for all."""
    choice = st.selectbox(
        "By",
        SPLITS[:-1] if SPLITS[-1] == survival.QUADRANT else SPLITS,
        key=key,
        format_func=_split_label,
    )
    return None if choice.startswith("(") else choice


tabs = st.tabs(
    [
        "Cohorts",
        "Rates",
        "Survival",
        "Relationship quality → churn",
        "At risk",
        "Segments & service",
        "Lifetime value",
    ]
)

# ---- cohorts
with tabs[0]:
    mode = st.radio("Show", ["Percent active", "Active customers"], horizontal=True, key="ret_cohort_mode")
    st.plotly_chart(
        charts.cohort_heatmap(
            cohorts,
            "percent" if mode == "Percent active" else "counts",
            "Share of each acquisition cohort buying in each month since joining",
        ),
        width="stretch",
    )
    st.caption(
        "A customer's cohort is the month of acquisition (else of the first purchase); a cell is the share "
        "of the cohort with at least one purchase in that calendar month. Cohort sizes are in the row labels."
    )
    ui.download_csv(cohorts, "cohorts.csv", "Download cohort table", key="dl_cohorts")

# ---- rates
with tabs[1]:
    freq = st.radio(
        "Period", ["month", "quarter"], horizontal=True, key="ret_freq", format_func=str.capitalize
    )
    rates = _rates(engine, url, flt, freq, version)
    if rates.empty:
        st.info("Not enough history for a whole period with customers at its start yet.")
    else:
        st.plotly_chart(charts.rate_trend(rates, f"Retention and churn by {freq}"), width="stretch")
        st.caption(
            "Retention = (customers at the end − new customers in the period) / customers at the start; "
            "churn = customers at the start who churned in the period / customers at the start. "
            "Bands are Wilson 95% intervals; hover for n."
        )
        wide = rates.pivot_table(index="period", columns="metric", values=["estimate", "low", "high"]).round(
            1
        )
        wide.columns = [f"{m} {v}" for v, m in wide.columns]
        counts = rates[rates["metric"] == "retention"].set_index("period")[
            ["at_start", "at_end", "new", "churned"]
        ]
        table = counts.join(wide).reset_index()
        table["period"] = table["period"].dt.strftime("%Y-%m")
        st.dataframe(table, hide_index=True, width="stretch")
        ui.download_csv(table, f"retention_by_{freq}.csv", key="dl_rates")

# ---- survival
with tabs[2]:
    split = st.selectbox("Compare by", SPLITS, key="ret_split", format_func=_split_label)
    by = None if split.startswith("(") else split
    km = _survival(engine, url, flt, by, version)
    if km.curves.empty:
        st.info("No customers to follow with these filters.")
    else:
        st.plotly_chart(
            charts.km_curves(km.curves, "Share of customers still with us, by months since acquisition"),
            width="stretch",
        )
        summary = km.summary.copy()
        summary["median lifetime (months)"] = summary["median_months"].map(
            lambda m: "not reached" if m is None or pd.isna(m) else f"{m:.1f}"
        )
        summary[f"restricted mean, first {km.horizon_months:.0f} months"] = summary.apply(
            lambda r: f"{r.rmst_months:.1f} [{r.rmst_low:.1f}, {r.rmst_high:.1f}]", axis=1
        )
        small = summary["customers"] < ui.min_n()
        summary["note"] = ["small sample" if s else "" for s in small]
        show = summary.drop(columns=["median_months", "rmst_months", "rmst_low", "rmst_high"])
        st.dataframe(show, hide_index=True, width="stretch")
        ui.download_csv(summary, "survival_summary.csv", key="dl_survival")
        if km.logrank_p is not None:
            verdict = "differ" if km.logrank_p < 0.05 else "do not differ detectably"
            st.markdown(
                f"**Log-rank test:** the curves {verdict} (χ² = {km.logrank_statistic:.1f}, p = {km.logrank_p:.3g})."
            )
            with st.expander("Pairwise log-rank tests (Benjamini–Hochberg q)"):
                st.dataframe(km.pairwise.round(4), hide_index=True, width="stretch")
        st.caption(
            "Kaplan–Meier estimate with 95% bands; customers still active are followed to the data's end "
            "(right-censored). Restricted mean = the average months a customer stays within the horizon."
        )

# ---- relationship quality -> churn
with tabs[3]:
    n_surveyed, cox = _cox(engine, url, flt, version)
    if cox is None:
        st.info(
            f"Too few churned customers among the {n_surveyed:,} surveyed in view to estimate what the pillars "
            "do to churn (at least 10 churns are needed)."
        )
    else:
        st.plotly_chart(
            charts.hazard_ratio_forest(cox.hazard_ratios, "How each pillar changes the risk of churn"),
            width="stretch",
        )
        lines = []
        for row in cox.hazard_ratios.itertuples():
            change = (1 - row.hr) * 100
            word = "lower" if change > 0 else "higher"
            sure = "" if row.low > 1 or row.high < 1 else " (not significant)"
            lines.append(
                f"- **{row.pillar.capitalize()}**: 10 points higher → churn risk {abs(change):.0f}% {word} "
                f"(hazard ratio {row.hr:.2f}, 95% CI {row.low:.2f}–{row.high:.2f}){sure}."
            )
        st.markdown("\n".join(lines))
        st.caption(
            f"Cox proportional-hazards model on {cox.customers:,} surveyed customers ({cox.churned:,} churned), "
            "followed from their first survey answer in the period; the three pillars together, so each "
            f"effect holds the other two fixed. Concordance {cox.concordance:.2f}. {cox.ph_sentence}"
        )

# ---- at risk
with tabs[4]:
    c1, c2 = st.columns(2)
    days = c1.number_input(
        "No purchase for at least (days)",
        min_value=7,
        max_value=730,
        value=settings.at_risk_days,
        step=15,
        key="ret_days",
    )
    drop = c2.number_input(
        "RQ fell by at least (points)", min_value=0.0, max_value=50.0, value=5.0, step=1.0, key="ret_rq_drop"
    )
    risk = _at_risk(engine, url, flt, int(days), float(drop), version)
    if risk.empty:
        st.success("No active customer matches any at-risk rule with these settings.")
    else:
        value = risk["annual_value"].fillna(risk["revenue_12m"]).sum()
        st.markdown(f"**{len(risk):,} active customers at risk**, together worth {value:,.0f} a year.")
        counts = {
            "no recent purchase": int(risk["reasons"].str.contains("no purchase").sum()),
            "falling RQ": int(risk["reasons"].str.contains("RQ fell").sum()),
            "detractor": int(risk["reasons"].str.contains("detractor").sum()),
        }
        st.caption(" · ".join(f"{k}: {v:,}" for k, v in counts.items()))
        if not ui.personal_columns_visible():  # executives see aggregates only
            ui.customer_list_hidden_notice()
        else:
            st.dataframe(risk.head(500), hide_index=True, width="stretch")
            if len(risk) > 500:
                st.caption(f"Showing the 500 most valuable of {len(risk):,}; the download has them all.")
            ui.download_csv(risk, "at_risk_customers.csv", "Download the at-risk list", key="dl_at_risk")
            ui.open_cases_for(
                risk, reason="at_risk", source="Retention → At risk", key="ret_cases", detail_column="reasons"
            )
    st.caption(
        f"At risk = an active customer with no purchase in the last {int(days)} days, an RQ that fell by at "
        f"least {drop:g} points between their last two survey answers, or a detractor (NPS 0–6) latest answer."
    )

# ---- derived segments and service quality
with tabs[5]:
    seg = _segments(engine, url, flt, version)
    left, right = st.columns(2)
    for box, name, defs in (
        (left, "value_tier", retention.VALUE_TIER_DEFINITIONS),
        (right, "lifecycle_stage", retention.LIFECYCLE_DEFINITIONS),
    ):
        part = seg[seg["dimension"] == name].copy()
        box.subheader(name.replace("_", " ").capitalize())
        part["share"] = part["share"].map(_pct)
        part["definition"] = part["value"].map(
            lambda v, d=defs: d.get(v, "").format(days=settings.at_risk_days, days2=2 * settings.at_risk_days)
        )
        box.dataframe(part.drop(columns="dimension"), hide_index=True, width="stretch")
    st.caption(
        "Both are recomputed from purchases after every import and can be used as filters in the sidebar."
    )

    st.subheader("Service quality from support tickets")
    quality, bands = _service(engine, url, flt, _customer_split("ret_service_by"), version)
    if quality.empty:
        st.info("No support tickets in view.")
    else:
        st.dataframe(quality.round(2), hide_index=True, width="stretch")
        ui.download_csv(quality, "service_quality.csv", key="dl_service")
        st.caption(
            "Hours from opening to the first answer and to resolution (median and 90th percentile, over "
            "tickets that have them); resolution rate with its Wilson 95% interval."
        )
        if not bands.empty:
            st.plotly_chart(
                charts.score_bars(
                    bands.assign(colour=charts.METRIC_COLOURS["satisfaction"]),
                    "Satisfaction index by the customer's typical first-response time",
                    "Satisfaction (0–100)",
                    range_y=[0, 100],
                ),
                width="stretch",
            )

# ---- lifetime value
with tabs[6]:
    clv = _clv(engine, url, flt, _customer_split("ret_clv_by"), version)
    if clv.empty:
        st.info("No customers in view.")
    else:
        st.dataframe(clv.round(1), hide_index=True, width="stretch")
        ui.download_csv(clv, "lifetime_value.csv", key="dl_clv")
        st.caption(
            "Historical revenue per customer (mean with 95% interval); expected remaining months = the "
            "restricted mean residual lifetime of today's active customers from the segment's Kaplan–Meier "
            "curve (up to the longest follow-up in the data); expected remaining revenue = revenue per "
            "customer-month × those months."
        )
