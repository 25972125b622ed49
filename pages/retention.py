"""Retention and churn: the customers to call this week and their churn risk, cohorts, rates,
survival, what relationship quality does to churn, and lifetime value."""

import pandas as pd
import streamlit as st

from relq import ui
from relq.analyses import churn_risk, retention, service, survival
from relq.core.settings import load_settings
from relq.outputs import charts
from relq.store.filters import SegmentFilter

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()
url = str(engine.url)
version = ui.data_version()
settings = load_settings()


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _basis(_engine, url: str, version: int) -> retention.Basis:
    with _engine.connect() as conn:
        return retention.churn_basis(conn)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _cohorts(_engine, url: str, flt: SegmentFilter, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.cohort_activity(conn, flt, _basis(_engine, url, version))


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _rates(_engine, url: str, flt: SegmentFilter, freq: str, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.retention_rates(conn, flt, freq, _basis(_engine, url, version))


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _survival(_engine, url: str, flt: SegmentFilter, by: str | None, version: int):
    """(KaplanMeier, Landmark or None): survey splits are followed from their landmark."""
    basis = _basis(_engine, url, version)
    with _engine.connect() as conn:
        if by in survival.SURVEY_SPLITS:
            landmark = survival.landmark_table(conn, flt, by, basis)
            return survival.kaplan_meier(landmark.table, keep_order=True), landmark
        return survival.kaplan_meier(survival.duration_table(conn, flt, by, basis)), None


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=16, show_spinner=False)
def _cox(_engine, url: str, flt: SegmentFilter, version: int):
    with _engine.connect() as conn:
        landmark = survival.cox_landmark(conn, flt, _basis(_engine, url, version))
    return landmark, survival.cox_pillars(landmark.table)


# Shared, not copied per run (cache_resource): the list can hold 80k accounts and nothing below
# changes it (ranking copies it).
@st.cache_resource(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _at_risk(_engine, url: str, flt: SegmentFilter, days: int, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.at_risk_customers(conn, flt, days, _basis(_engine, url, version))


# The model and its scores (one row per active customer: 1.4M on the 2M-customer tier) are shared,
# not copied per run (cache_resource): nothing below changes them.
@st.cache_resource(
    ttl=ui.CACHE_TTL, max_entries=4, show_spinner="Fitting and backtesting the churn-risk model…"
)
def _risk(_engine, url: str, horizon: int, version: int) -> churn_risk.RiskAssessment:
    """The model is fitted on every customer in the store; the filter only chooses whom to list."""
    with _engine.connect() as conn:
        return churn_risk.assess(conn, SegmentFilter(), horizon, _basis(_engine, url, version))


@st.cache_resource(ttl=ui.CACHE_TTL, max_entries=4, show_spinner=False)
def _scores(_engine, url: str, horizon: int, version: int) -> churn_risk.RiskAssessment:
    """Today's scores without the backtest (the Churn risk tab runs it): what ranks the at-risk list.
    Saved in the store after each import, so a fresh server reads them instead of fitting again."""
    return churn_risk.todays_scores(_engine, version, horizon, _basis(_engine, url, version))


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=32, show_spinner=False)
def _ids(_engine, url: str, flt: SegmentFilter, version: int) -> list[str] | None:
    if not (flt.customer or flt.quadrant):
        return None
    with _engine.connect() as conn:
        return churn_risk.customer_ids(conn, flt)


@st.cache_resource(ttl=ui.CACHE_TTL, max_entries=4, show_spinner=False)
def _score_lookup(_engine, url: str, horizon: int, version: int) -> pd.DataFrame | None:
    """Today's scores by customer id, indexed once per data version (not once per at-risk list)."""
    assessment = _scores(_engine, url, horizon, version)
    return churn_risk.score_lookup(assessment.scores) if assessment.scored else None


@st.cache_resource(ttl=ui.CACHE_TTL, max_entries=16, show_spinner=False)
def _ranked(_engine, url: str, flt: SegmentFilter, days: int, horizon: int, version: int) -> pd.DataFrame:
    """The at-risk list ranked by churn risk (shared, like the scores it comes from)."""
    listed = _at_risk(_engine, url, flt, days, version)
    return churn_risk.rank_at_risk(listed, _score_lookup(_engine, url, horizon, version))


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=16, show_spinner=False)
def _segments(_engine, url: str, flt: SegmentFilter, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return retention.derived_segments(conn, flt)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=16, show_spinner=False)
def _service(_engine, url: str, flt: SegmentFilter, by: str | None, version: int):
    with _engine.connect() as conn:
        return service.ticket_quality(conn, flt, by), service.satisfaction_by_response_time(conn, flt)


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=16, show_spinner=False)
def _clv(_engine, url: str, flt: SegmentFilter, by: str | None, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return survival.lifetime_value(conn, flt, by, _basis(_engine, url, version))


def _pct(x, digits: int = 0) -> str:
    return "–" if x is None or pd.isna(x) else f"{100 * x:.{digits}f}%"


def _metric(m: churn_risk.Metric, digits: int = 2) -> str:
    return f"{m.estimate:.{digits}f} (95% CI {m.low:.{digits}f} to {m.high:.{digits}f})"


st.title("Retention and churn")
basis = _basis(engine, url, version)
cohorts = ui.suppress_small_groups(_cohorts(engine, url, flt, version), "size", group_col="cohort")
if cohorts.empty:
    st.warning(
        "No customers match the current filters (or there are no customers and purchases yet). "
        "Widen the period, clear the filters, or import customers or transactions on the Upload page."
    )
    st.stop()
st.caption(basis.describe())
if flt.since or flt.until:
    st.caption("Cohorts, survival and lifetime value cover the customers acquired in the selected period.")

DIMENSIONS = ui.allowed_dimensions(
    ("plan", "region", "industry", "value_tier", "lifecycle_stage", "owner", "cohort")
)
SPLITS = ["(all customers)", *DIMENSIONS, *survival.SURVEY_SPLITS]
horizon = int(st.session_state.get("ret_horizon", churn_risk.HORIZON_DAYS))


def _split_label(x: str) -> str:
    if x in survival.SURVEY_SPLITS:
        return survival.SURVEY_SPLITS[x] + " — from the survey"
    return x if x.startswith("(") else x.replace("_", " ").capitalize()


def _customer_split(key: str) -> str | None:
    """A "By" select over the customer dimensions: the dimension, or None for all."""
    choice = st.selectbox("By", ["(all customers)", *DIMENSIONS], key=key, format_func=_split_label)
    return None if choice.startswith("(") else choice


# Only the open tab runs: the churn-risk model and the survival fits cost seconds on a large store.
tabs = st.tabs(
    [
        "At risk",
        "Churn risk",
        "Cohorts",
        "Rates",
        "Survival",
        "Relationship quality → churn",
        "Segments & service",
        "Lifetime value",
    ],
    key="ret_tab",
    on_change="rerun",
)

# ---- at risk
with tabs[0]:
    if tabs[0].open:
        days = st.number_input(
            "No purchase for more than (days)",
            min_value=7,
            max_value=730,
            value=settings.at_risk_days,
            step=15,
            key="ret_days",
        )
        listed = _at_risk(engine, url, flt, int(days), version)
        if listed.empty:
            st.success("No active customer matches any at-risk rule with these settings.")
        else:
            value = listed["annual_value"].fillna(listed["revenue_12m"]).sum()
            if ui.minimum_customers() > len(listed):  # executives: no sum over fewer than 5 customers
                st.markdown(f"**{len(listed):,} active customers at risk.**")
            else:
                st.markdown(
                    f"**{len(listed):,} active customers at risk**, together worth {value:,.0f} a year."
                )
            counts = {
                "no recent purchase": int(listed["reasons"].str.contains("no purchase").sum()),
                "RQ fell": int(listed["reasons"].str.contains("RQ fell").sum()),
                "more detractors than promoters": int(
                    listed["reasons"].str.contains("more detractors").sum()
                ),
            }
            st.caption(" · ".join(f"{k}: {v:,}" for k, v in counts.items()))
            if not ui.personal_columns_visible():  # executives see aggregates only
                ui.customer_list_hidden_notice()
            else:
                # The list shows at once; it is re-ranked by churn risk when the model is ready
                # (fitted once per data change, then cached).
                note, table = st.empty(), st.empty()
                columns = {
                    "probability": st.column_config.ProgressColumn(
                        f"Churn risk, {horizon} days", format="percent", min_value=0.0, max_value=1.0
                    ),
                    "reasons": st.column_config.TextColumn("Reasons", width="large"),
                    "factors": st.column_config.TextColumn("What drives the risk", width="large"),
                }
                note.caption("Most valuable first, while the churn-risk model ranks them…")
                table.dataframe(
                    listed.head(500),
                    hide_index=True,
                    width="stretch",
                    column_config=columns,
                )
                assessment = _scores(engine, url, horizon, version)
                risk = _ranked(engine, url, flt, int(days), horizon, version)
                note.caption(
                    f"Riskiest first: the probability of churning within {horizon} days and the factors behind "
                    "it come from the churn-risk model (the Churn risk tab shows how well it predicted on a "
                    "held-out quarter)."
                    if assessment.scored
                    else f"Most valuable first: {assessment.message}"
                )
                table.dataframe(risk.head(500), hide_index=True, width="stretch", column_config=columns)
                if len(risk) > 500:
                    st.caption(f"Showing the first 500 of {len(risk):,}; the download has them all.")
                ui.download_csv(risk, "at_risk_customers.csv", "Download the at-risk list", key="dl_at_risk")
                ui.open_cases_for(
                    risk,
                    reason="at_risk",
                    source="Retention → At risk",
                    key="ret_cases",
                    detail_column="reasons",
                )
        st.caption(
            f"At risk = an active customer with no purchase in the last {int(days)} days; or whose account's "
            "mean RQ in its latest survey wave fell below its previous wave's by more than the 95% interval of "
            "that change (the same respondents where they answered both waves); or whose latest wave has more "
            "detractors (NPS 0–6) than promoters (9–10)."
        )

# ---- churn risk
with tabs[1]:
    if tabs[1].open:
        st.number_input(
            "Horizon (days ahead)",
            min_value=30,
            max_value=365,
            value=churn_risk.HORIZON_DAYS,
            step=15,
            key="ret_horizon",
        )
        assessment = _risk(engine, url, horizon, version)
        if not assessment.ok:
            st.info(assessment.message)
        else:
            bt, model = assessment.backtest, assessment.model
            st.markdown(
                f"**How well it predicted.** Fitted only on what was known by {bt.as_of:%d %b %Y} "
                f"({len(model.training_days)} monthly snapshots), then asked which of the {bt.customers:,} "
                f"customers active that day would churn within {horizon} days: {bt.churned:,} did by "
                f"{bt.end:%d %b %Y}."
            )
            left, middle, right = st.columns(3)
            left.metric("C-index", f"{bt.concordance.estimate:.3f}")
            left.caption(f"95% CI {bt.concordance.low:.3f}–{bt.concordance.high:.3f}")
            middle.metric("AUC", f"{bt.auc.estimate:.3f}")
            middle.caption(f"95% CI {bt.auc.low:.3f}–{bt.auc.high:.3f}")
            right.metric("Brier score", f"{bt.brier.estimate:.4f}")
            right.caption(f"95% CI {bt.brier.low:.4f}–{bt.brier.high:.4f} (lower is better)")
            st.markdown(
                f'- **Against the rule alone** ("no purchase in {settings.at_risk_days} days"): AUC '
                f"{_metric(bt.rule_auc, 3)}; the model gains **{_metric(bt.auc_gain, 3)}** in AUC and "
                f"{_metric(bt.concordance_gain, 3)} in C-index, and lowers the Brier score by "
                f"{_metric(bt.brier_gain, 4)}.\n"
                f"- The rule flagged {bt.rule_flagged:,} customers, of whom {bt.rule_caught:,} churned; the "
                f"model's {bt.rule_flagged:,} riskiest held {bt.model_caught:,} churners (difference "
                f"{_metric(bt.caught_gain, 0)}).\n"
                f"- The riskiest tenth churned {_metric(bt.top_decile_lift, 2)} times as often as average."
            )
            st.plotly_chart(
                charts.calibration_plot(
                    bt.calibration, "Predicted vs observed churn, by tenth of predicted risk"
                ),
                width="stretch",
            )
            st.caption(
                f"Intervals: {bt.resamples} bootstrap resamples of the held-out customers (seed {bt.seed}), the "
                "model and the rule on the same resamples. A point on the diagonal means the predicted "
                "probability came true on average."
            )
            scores = churn_risk.in_view(assessment.scores, _ids(engine, url, flt, version))
            st.subheader(f"Every active customer's churn risk, next {horizon} days")
            bands = ui.suppress_small_groups(churn_risk.risk_bands(scores), "customers")
            st.dataframe(
                bands,
                hide_index=True,
                width="stretch",
                column_config={
                    "share": st.column_config.NumberColumn("share", format="percent"),
                    "expected_churners": st.column_config.NumberColumn("expected churners", format="%.0f"),
                    "annual_value": st.column_config.NumberColumn("annual value", format="%.0f"),
                },
            )
            if not ui.personal_columns_visible():
                ui.customer_list_hidden_notice()
            else:
                st.dataframe(
                    scores.head(500),
                    hide_index=True,
                    width="stretch",
                    column_config={
                        "probability": st.column_config.ProgressColumn(
                            "Churn risk", format="percent", min_value=0.0, max_value=1.0
                        ),
                        "factors": st.column_config.TextColumn("What drives the risk", width="large"),
                    },
                )
                ui.download_csv(scores, "churn_risk.csv", "Download every score", key="dl_churn_risk")
            with st.expander("The model: hazard ratios"):
                st.dataframe(model.hazard_ratios().round(3), hide_index=True, width="stretch")
                st.caption(
                    "Cox proportional-hazards model (lifelines) on stacked monthly snapshots of the customers "
                    f"then active, each followed for {horizon} days; {model.training_customers:,} customers, "
                    f"{model.training_events:,} of whom churned within a window. Per unit of each column: "
                    "log columns per e-fold, pillars and RQ change per 10 points, NPS per 10 points. A factor "
                    "in words compares the customer with the median customer on the same plan: "
                    '"trust 18 points below the plan\'s median: +40 % hazard" means that gap alone multiplies '
                    "the hazard by 1.4."
                )

# ---- cohorts
with tabs[2]:
    if tabs[2].open:
        mode = st.radio(
            "Show", ["Percent active", "Active customers"], horizontal=True, key="ret_cohort_mode"
        )
        st.plotly_chart(
            charts.cohort_heatmap(
                cohorts,
                "percent" if mode == "Percent active" else "counts",
                "Share of each acquisition cohort buying in each month since joining",
            ),
            width="stretch",
        )
        partial = bool(cohorts["partial"].any())
        st.caption(
            "A customer's cohort is the month of acquisition (else of the first purchase); a cell is the share "
            "of the cohort with at least one purchase in that calendar month (hover for its Wilson 95% "
            "interval). Cohort sizes are in the row labels."
            + (
                f" Cells marked * fall in {basis.end:%B %Y}, which the data cover only to {basis.end:%d %b}: "
                "a partial month, left out of the report."
                if partial
                else ""
            )
        )
        ui.download_csv(cohorts, "cohorts.csv", "Download cohort table", key="dl_cohorts")

# ---- rates
with tabs[3]:
    if tabs[3].open:
        freq = st.radio(
            "Period", ["month", "quarter"], horizontal=True, key="ret_freq", format_func=str.capitalize
        )
        rates = ui.suppress_small_groups(
            _rates(engine, url, flt, freq, version), "at_start", group_col="period"
        )
        if rates.empty:
            st.info("Not enough history for a whole period with customers at its start yet.")
        else:
            st.plotly_chart(charts.rate_trend(rates, f"Retention and churn by {freq}"), width="stretch")
            st.caption(
                "Retention = customers active at the start of the period who are still active at its end, "
                "over those at the start; churn = those of them who churned in the period. Customers who "
                "joined in the period are shown beside (new, and new who left within it), not mixed into "
                "either rate. Bands are Wilson 95% intervals; hover for n."
            )
            st.dataframe(retention.rates_table(rates), hide_index=True, width="stretch")
            ui.download_csv(retention.rates_table(rates), f"retention_by_{freq}.csv", key="dl_rates")

# ---- survival
with tabs[4]:
    if tabs[4].open:
        split = st.selectbox("Compare by", SPLITS, key="ret_split", format_func=_split_label)
        by = None if split.startswith("(") else split
        km, landmark = _survival(engine, url, flt, by, version)
        km = ui.executive_survival(km)
        if km.curves.empty:
            st.info("No customers to follow with these filters.")
        else:
            summary = ui.suppress_small_groups(km.summary, "customers")
            curves = km.curves[km.curves["segment"].isin(summary["segment"])]
            origin = "the survey that placed the customer" if landmark else "acquisition"
            st.plotly_chart(
                charts.km_curves(
                    curves,
                    f"Share of customers still with us, by months since {origin}",
                    x_title=f"Months since {origin}",
                ),
                width="stretch",
            )
            st.dataframe(survival.summary_table(summary, km.horizon_months), hide_index=True, width="stretch")
            ui.download_csv(summary, "survival_summary.csv", key="dl_survival")
            if landmark is not None:
                st.caption(
                    "Each customer is placed by their first survey answer in the period that has this measure, "
                    "and followed from that day (a landmark): placing them by a later answer would credit them "
                    "with the months they had to survive to give it. " + landmark.left_out_sentence()
                )
            if km.logrank_p is not None:
                verdict = "differ" if km.logrank_p < 0.05 else "do not differ detectably"
                st.markdown(
                    f"**Log-rank test:** the curves {verdict} (χ² = {km.logrank_statistic:.1f}, "
                    f"p = {km.logrank_p:.3g})."
                )
                with st.expander("Pairwise log-rank tests (Benjamini–Hochberg q)"):
                    st.dataframe(km.pairwise.round(4), hide_index=True, width="stretch")
            st.caption(
                "Kaplan–Meier estimate with 95% bands; customers still active are followed to the data's end "
                "(right-censored). Median lifetime with its Brookmeyer–Crowley 95% interval; restricted mean = "
                "the average months a customer stays within the horizon."
            )

# ---- relationship quality -> churn
with tabs[5]:
    if tabs[5].open:
        landmark, cox = _cox(engine, url, flt, version)
        if cox is None:
            st.info(
                f"Too few churned customers among the {landmark.customers:,} surveyed in view to estimate what "
                "the pillars do to churn (at least 10 churns are needed). " + landmark.left_out_sentence()
            )
        else:
            st.plotly_chart(
                charts.hazard_ratio_forest(cox.hazard_ratios, "How each pillar changes the risk of churn"),
                width="stretch",
            )
            st.markdown(survival.hazard_sentences(cox))
            st.caption(
                f"Cox proportional-hazards model on {cox.customers:,} surveyed customers ({cox.churned:,} "
                "churned), each followed from their first survey answer in the period that has all three "
                "pillars (a landmark); the three pillars together, so each effect holds the other two fixed. "
                f"Concordance {cox.concordance:.2f}. {cox.ph_sentence} {landmark.left_out_sentence()}"
            )

# ---- derived segments and service quality
with tabs[6]:
    if tabs[6].open:
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
                lambda v, d=defs: d.get(v, "").format(
                    days=settings.at_risk_days, days2=2 * settings.at_risk_days
                )
            )
            box.dataframe(part.drop(columns="dimension"), hide_index=True, width="stretch")
        st.caption(
            "Both are recomputed from purchases after every import and can be used as filters in the sidebar."
        )

        st.subheader("Service quality from support tickets")
        quality, bands = _service(engine, url, flt, _customer_split("ret_service_by"), version)
        quality = ui.suppress_small_groups(quality, "customers")
        bands = ui.suppress_small_groups(bands, "customers")
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
with tabs[7]:
    if tabs[7].open:
        clv = ui.suppress_small_groups(
            _clv(engine, url, flt, _customer_split("ret_clv_by"), version), "customers"
        )
        if clv.empty:
            st.info("No customers in view.")
        else:
            st.dataframe(survival.lifetime_value_table(clv), hide_index=True, width="stretch")
            ui.download_csv(clv, "lifetime_value.csv", key="dl_clv")
            st.caption(
                "Historical revenue per customer (mean with 95% interval); expected remaining months = the "
                "restricted mean residual lifetime of today's active customers from the segment's Kaplan–Meier "
                "curve (up to the longest follow-up in the data); expected remaining revenue = revenue per "
                f"customer-month × those months. Intervals: {survival.CLV_RESAMPLES} bootstrap resamples of the "
                "segment's customers."
            )
