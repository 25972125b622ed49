"""Comment themes: what customers talk about, how often, and what each theme does to NPS — from
the rules analysts keep and the themes discovered in the comments."""

import pandas as pd
import streamlit as st

from relq import ui
from relq.analyses import themes
from relq.exceptions import RelqError
from relq.ingest import themes as tagging
from relq.outputs import charts, theme_charts
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()
may_edit = ui.can("edit_themes")
reads_comments = ui.personal_columns_visible()  # executives see aggregates, never a comment

st.title("Comment themes")
st.caption(
    "What customers talk about in their comments, how often, and what each theme does to NPS. "
    "Themes come from rules analysts keep (phrases and exclusions) and from themes discovered in the "
    "comments; each is also a filter in the sidebar, like a region or a plan."
)

# The counts, the comments waiting to be read (the same for every view) and the themes' table are
# read side by side.
overview, pending, table = ui.read_side_by_side(
    engine,
    lambda: ui.cached_query(engine, themes.theme_overview, flt, pending=False),
    lambda: ui.cached_query(engine, themes.pending_count, SegmentFilter()),
    lambda: ui.cached_query(engine, themes.theme_table, flt),
)
overview = {**overview, "pending": pending}
if overview["pending"]:
    if may_edit:
        st.info(
            f"{overview['pending']:,} comments imported since the last refresh have not been read for themes."
        )
        if st.button("Read them now", key="themes_refresh"):
            with st.spinner("Reading the new comments: language, sentiment, rules and discovered themes…"):
                summary = tagging.refresh_themes(engine, user=ui.current_user_email())
            ui.bump_data_version()
            st.success(summary.sentence())
            st.rerun()
    else:
        st.info(
            f"{overview['pending']:,} recent comments have not been read for themes yet; an analyst can read "
            "them from this page. The figures below cover the comments read so far."
        )
if overview["comments"] == 0:
    st.info("No comment in view has been read for themes. Widen the period or clear the filters.")
    st.stop()

no_theme = overview["not_themed"] - overview["other_language"]
st.caption(
    f"{overview['comments']:,} comments in view · {overview['themed']:,} mention at least one theme · "
    f"{no_theme:,} mention none · {overview['other_language']:,} are in another language than English, "
    "French, German or Spanish and are counted as not themed."
)

if table.empty:
    st.info("No theme is in force: add a rule below or run discovery.")
    st.stop()
shown = ui.suppress_small_groups(table, n_col="customers")
shown = shown[shown["customers"] > 0] if not reads_comments else shown

# Only the open tab computes: one theme's trend, segments and comments are three more queries.
ranked_tab, theme_tab = st.tabs(
    ["Themes ranked by their impact on NPS", "One theme"], key="themes_tab", on_change="rerun"
)

with ranked_tab:
    if ranked_tab.open:
        ranked = shown[~shown["small"]]
        if not ranked.empty:
            st.plotly_chart(
                theme_charts.impact_bars(ranked.head(20), "NPS points at stake in each theme"),
                width="stretch",
            )
        st.caption(
            "Impact: how many points the NPS in view would gain if the detractors (0–6) who mention the theme "
            "scored like the average response, with its 95% interval (customer-linearised). Coral: NPS among "
            "responses mentioning it is significantly lower than among the other comments; teal: higher "
            "(z-test linearised over customers, Benjamini–Hochberg q < 0.05 across the themes). "
            f"Themes with fewer than {ui.min_n()} NPS answers are greyed in the table and not ranked."
        )

        display = pd.DataFrame(
            {
                "rank": shown["rank"],
                "theme": shown["theme"],
                "source": shown["source"],
                "responses": shown["responses"],
                "customers": shown["customers"],
                "share %": 100 * shown["share"],
                "share 95% CI": [
                    ui.format_interval(100 * lo, 100 * hi)
                    for lo, hi in zip(shown["share_low"], shown["share_high"], strict=True)
                ],
                "NPS with": shown["nps_with"],
                "NPS without": shown["nps_without"],
                "NPS delta": shown["nps_delta"],
                "delta 95% CI": [
                    ui.format_interval(lo, hi)
                    for lo, hi in zip(shown["nps_delta_low"], shown["nps_delta_high"], strict=True)
                ],
                "q": shown["nps_q"],
                "significant": shown["nps_significant"],
                "impact (NPS points)": shown["impact"],
                "impact 95% CI": [
                    ui.format_interval(lo, hi, 2)
                    for lo, hi in zip(shown["impact_low"], shown["impact_high"], strict=True)
                ],
                **{f"{p} delta": shown[f"{p}_delta"] for p in PILLARS},
                "positive %": 100 * shown["positive_share"],
                "negative %": 100 * shown["negative_share"],
                "small sample": shown["small"],
                "terms": ["; ".join(t[:8]) for t in shown["terms"]],
            }
        )
        ui.table_with_download(
            display,
            "comment-themes.csv",
            key="themes_csv",
            column_config={
                "share %": st.column_config.NumberColumn(format="%.1f"),
                "NPS with": st.column_config.NumberColumn(format="%.1f"),
                "NPS without": st.column_config.NumberColumn(format="%.1f"),
                "NPS delta": st.column_config.NumberColumn(format="%+.1f"),
                "q": st.column_config.NumberColumn(format="%.3f"),
                "impact (NPS points)": st.column_config.NumberColumn(format="%.2f"),
                **{f"{p} delta": st.column_config.NumberColumn(format="%+.1f") for p in PILLARS},
                "positive %": st.column_config.NumberColumn(format="%.0f"),
                "negative %": st.column_config.NumberColumn(format="%.0f"),
            },
        )
        st.caption(
            "Share: responses whose comment mentions the theme among the responses with a comment, 95% Wilson "
            "interval on the effective n (each customer a cluster). NPS and pillars with vs without: among "
            "responses with a comment. Sentiment: VADER on the comments mentioning the theme."
        )

with theme_tab:
    if theme_tab.open:
        choice = st.selectbox("Theme", shown["theme"].tolist(), key="themes_pick")
        row = shown.set_index("theme").loc[choice]
        cols = st.columns(4)
        cols[0].metric("Share of comments", f"{100 * row['share']:.1f}%")
        cols[0].caption(
            f"n = {int(row['responses']):,} responses from {int(row['customers']):,} customers · 95% CI "
            f"{ui.format_interval(100 * row['share_low'], 100 * row['share_high'])}"
        )
        cols[1].metric("NPS mentioning it", charts.format_number(row["nps_with"], 1))
        cols[1].caption(
            f"n = {int(row['nps_n']):,} · without it: {charts.format_number(row['nps_without'], 1)}"
        )
        cols[2].metric(
            "NPS delta",
            f"{row['nps_delta']:+.1f}" if pd.notna(row["nps_delta"]) else "–",
            help="NPS among comments mentioning the theme minus among the other comments.",
        )
        cols[2].caption(
            f"95% CI {ui.format_interval(row['nps_delta_low'], row['nps_delta_high'])} · q = "
            f"{charts.format_number(row['nps_q'], 3)}" + (" · significant" if row["nps_significant"] else "")
        )
        cols[3].metric("Impact", f"+{row['impact']:.2f} NPS points" if pd.notna(row["impact"]) else "–")
        cols[3].caption(f"95% CI {ui.format_interval(row['impact_low'], row['impact_high'], 2)}")

        left, right = st.columns(2)
        trend = ui.cached_query(engine, themes.theme_trend, flt, themes=(choice,))
        if not reads_comments:
            trend = trend[trend["customers"] >= 5]
        if not trend.empty:
            tidy = pd.DataFrame(
                {
                    "period": trend["month"],
                    "metric": choice,
                    "estimate": 100 * trend["share"],
                    "low": 100 * trend["low"],
                    "high": 100 * trend["high"],
                    "n": trend["responses"],
                }
            )
            left.plotly_chart(
                charts.trend_with_band(tidy, [choice], "Share of the month's comments", "% of comments"),
                width="stretch",
            )
        pillars = pd.DataFrame(
            {
                "score": ["NPS", *[charts.METRIC_LABELS[p] for p in PILLARS]],
                "label": ["NPS", *[charts.METRIC_LABELS[p] for p in PILLARS]],
                "with": [row["nps_with"], *[row[f"{p}_with"] for p in PILLARS]],
                "without": [row["nps_without"], *[row[f"{p}_without"] for p in PILLARS]],
                "delta": [row["nps_delta"], *[row[f"{p}_delta"] for p in PILLARS]],
                "low": [row["nps_delta_low"], *[row[f"{p}_delta_low"] for p in PILLARS]],
                "high": [row["nps_delta_high"], *[row[f"{p}_delta_high"] for p in PILLARS]],
                "q": [row["nps_q"], *[row[f"{p}_q"] for p in PILLARS]],
                "significant": [row["nps_significant"], *[row[f"{p}_significant"] for p in PILLARS]],
            }
        )
        right.plotly_chart(
            theme_charts.delta_bars(pillars, "label", "With vs without the theme (points)"), width="stretch"
        )
        sentiment = pd.DataFrame(
            {
                "sentiment": ["positive", "neutral", "negative"],
                "share %": [100 * row[f"{s}_share"] for s in ("positive", "neutral", "negative")],
                "95% CI": [
                    ui.format_interval(100 * row[f"{s}_low"], 100 * row[f"{s}_high"])
                    for s in ("positive", "neutral", "negative")
                ],
            }
        )
        a, b = st.columns(2)
        with a:
            ui.table_with_download(
                pillars.drop(columns=["label"]), "theme-scores.csv", key="theme_scores_csv"
            )
        with b:
            ui.table_with_download(sentiment, "theme-sentiment.csv", key="theme_sentiment_csv")
            st.caption("VADER reads English; comments in French, German or Spanish mostly score neutral.")

        dimension = st.selectbox(
            "By segment",
            list(ui.FILTER_DIMENSIONS),
            key="themes_dimension",
            format_func=lambda d: d.replace("_", " "),
        )
        segments = ui.cached_query(engine, themes.theme_segments, flt, theme=choice, dimension=dimension)
        if not segments.empty:
            segments = ui.suppress_small_groups(segments, n_col="customers")
            ui.table_with_download(
                segments,
                f"theme-by-{dimension}.csv",
                key="theme_segments_csv",
                column_config={
                    "share": st.column_config.NumberColumn(format="%.3f"),
                    "nps_delta": st.column_config.NumberColumn(format="%+.1f"),
                },
            )
            st.caption(
                "Benjamini–Hochberg q across the segment's values; a segment under the minimum n is not tested."
            )

        st.markdown("**Comments mentioning it**")
        if not reads_comments:
            st.info(
                "Comments are hidden for your role: executives see aggregates only. A CX lead or analyst can read the "
                "comments behind each theme."
            )
        else:
            listed = ui.cached_query(engine, themes.theme_comments, flt, theme=choice, limit=200)
            st.caption(
                "The phrases that placed each comment in the theme are marked « ». Newest first for a rule."
            )
            ui.table_with_download(
                listed[["submitted_at", "group", "nps", "sentiment", "comment", "matched"]],
                "theme-comments.csv",
                key="theme_comments_csv",
            )

# --------------------------------------------------------------------------- discovery
st.subheader("Discovered themes")
found = overview["discovery"]
if found is None:
    st.info("No discovery has run yet: there are too few comments to find themes in.")
else:
    st.caption(
        f"TF-IDF + NMF over the sentences of a seeded sample of {found['sample_size']:,} comments, "
        f"{found['k']} themes (seed {found['seed']}), fitted {pd.Timestamp(found['fitted_at']):%Y-%m-%d %H:%M}. "
        "Each is named by its top words until an analyst promotes it to a rule."
    )
discovered = table[table["source"] == "discovered"]
if not discovered.empty:
    ui.table_with_download(
        pd.DataFrame(
            {
                "theme": discovered["theme"],
                "top words": ["; ".join(t) for t in discovered["terms"]],
                "responses": discovered["responses"],
                "customers": discovered["customers"],
            }
        ).pipe(ui.suppress_small_groups, n_col="customers"),
        "discovered-themes.csv",
        key="themes_discovered_csv",
    )
if may_edit:
    with st.expander("Discover again, or promote a discovered theme to a rule"):
        k = st.number_input(
            "Themes to discover", 2, 40, value=found["k"] if found else tagging.DEFAULT_K, key="themes_k"
        )
        if st.button("Discover again", key="themes_rediscover"):
            try:
                with st.spinner("Discovering themes in a seeded sample, then assigning every comment…"):
                    summary = tagging.refresh_themes(
                        engine, rediscover=True, k=int(k), user=ui.current_user_email()
                    )
                ui.audit("discover_themes", {"k": int(k)})
                ui.bump_data_version()
                st.success(summary.sentence())
            except RelqError as exc:
                st.error(str(exc))
        if not discovered.empty:
            pick = st.selectbox("Discovered theme", discovered["theme"].tolist(), key="themes_promote_pick")
            terms = discovered.set_index("theme").loc[pick, "terms"]
            name = st.text_input("Name it", key="themes_promote_name", placeholder="e.g. Reporting")
            phrases = st.text_area(
                "Phrases (one per line; word* matches any ending)",
                "\n".join(terms[:5]),
                key=f"themes_promote_phrases_{pick}",
            )
            if st.button("Promote to a rule", key="themes_promote"):
                try:
                    rule = tagging.promote(
                        engine, pick, name, phrases.splitlines(), user=ui.current_user_email()
                    )
                    ui.audit("promote_theme", {"discovered": pick, "rule": rule.name})
                    ui.bump_data_version()
                    st.success(f"{pick} is now the rule {rule.name}; every comment was tagged with it.")
                except tagging.ThemeRuleError as exc:
                    st.error(str(exc))

# --------------------------------------------------------------------------- rules
st.subheader("Rules")
catalog = ui.cached_query(engine, themes.rule_catalog, flt)
ui.table_with_download(
    catalog.assign(
        phrases=["; ".join(p) for p in catalog["phrases"]],
        exclusions=["; ".join(x) for x in catalog["exclusions"]],
    ),
    "theme-rules.csv",
    key="themes_rules_csv",
)
st.caption(
    "A phrase is found with accents and case folded, at word boundaries; word* matches any ending; "
    "/…/ is a regular expression on the folded text. An exclusion's text is blanked before the phrases are "
    "looked for. Every edit is a new version; the history is kept."
)
if may_edit:
    with st.expander("Add or edit a rule"):
        names = ["(new theme)", *catalog["theme"].tolist()]
        editing = st.selectbox("Theme", names, key="themes_edit_pick")
        current = catalog.set_index("theme").loc[editing] if editing != "(new theme)" else None
        suffix = "new" if current is None else editing
        name = st.text_input("Name", "" if current is None else editing, key=f"themes_edit_name_{suffix}")
        phrases = st.text_area(
            "Phrases (one per line)",
            "" if current is None else "\n".join(current["phrases"]),
            key=f"themes_edit_phrases_{suffix}",
        )
        exclusions = st.text_area(
            "Exclusions (one per line)",
            "" if current is None else "\n".join(current["exclusions"]),
            key=f"themes_edit_exclusions_{suffix}",
        )
        save, delete = st.columns(2)
        if save.button("Save the rule", key="themes_save", type="primary"):
            try:
                rule = tagging.save_rule(
                    engine,
                    tagging.ThemeRule(name, tuple(phrases.splitlines()), tuple(exclusions.splitlines())),
                    user=ui.current_user_email(),
                    editing=None if current is None else editing,
                )
                ui.audit("edit_theme_rule", {"theme": rule.name, "phrases": list(rule.phrases)})
                ui.bump_data_version()
                st.success(f"Saved {rule.name}; every comment was tagged with it again.")
            except tagging.ThemeRuleError as exc:
                st.error(str(exc))
        if current is not None and delete.button("Delete this rule", key="themes_delete"):
            tagging.delete_rule(engine, editing, user=ui.current_user_email())
            ui.audit("delete_theme_rule", {"theme": editing})
            ui.bump_data_version()
            st.success(f"Deleted {editing}; its history is kept.")
    with st.expander("History of the rules"):
        ui.table_with_download(
            ui.cached_query(engine, themes.rule_versions, flt),
            "theme-rule-history.csv",
            key="themes_history_csv",
        )
