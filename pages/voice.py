"""Voice of the customer: search and filter comments, see their sentiment and the words and phrases
that set one group of customers apart from another."""

import streamlit as st

from relq import ui
from relq.analyses import voice
from relq.analyses.quadrants import QUADRANT_NAMES
from relq.measures import customer_sums
from relq.outputs import charts

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()

st.title("Voice of the customer")
head = ui.cached_headline(engine, flt)
if head.responses == 0:
    ui.nothing_matches()


left, mid, right = st.columns([2, 2, 2])
search = left.text_input("Search comments", key="voice_search", placeholder="e.g. support, invoice, price")
groups = mid.multiselect("NPS group", list(voice.NPS_GROUPS), key="voice_groups")
quadrant = right.selectbox(
    "Quadrant (trust × satisfaction)",
    ["", *QUADRANT_NAMES],
    format_func=lambda k: "All customers" if not k else QUADRANT_NAMES[k],
    key="voice_quadrant",
)
st.caption("Segments: use the filters in the sidebar. Search is a case-insensitive substring match.")

with st.spinner("Searching the comments and scoring their sentiment…"):
    scored = ui.cached_query(
        engine,
        voice.scored_comments,
        flt,
        search=search,
        groups=tuple(groups),
        quadrant=quadrant or None,
        limit=2000,
    )
if scored.empty:
    st.info("No comment matches this search and these filters. Try a shorter word or clear the filters.")
    st.stop()
ui.small_group_gate(voice.commenters(scored))  # executives: no numbers about fewer than 5 customers
verbatim = ui.personal_columns_visible()  # executives get counts, sentiment and terms, never the words
weights = None
if flt.weighting.per_customer:
    weights = ui.cached_query(
        engine,
        customer_sums.customer_weight_series,
        flt,
        customers=tuple(sorted(str(c) for c in scored["customer_id"].dropna().unique())),
    )
summary = voice.sentiment_summary(scored, weights)
cols = st.columns(4)
cols[0].metric("Comments shown", f"{len(scored):,}", help="The newest 2,000 at most.")
cols[0].caption(f"n = {len(scored):,}")
for col, row in zip(cols[1:], summary.itertuples(), strict=True):
    col.metric(
        f"{row.sentiment.capitalize()} sentiment",
        f"{row.share:.0f}%",
        help="VADER compound ≥ 0.05 is positive, ≤ −0.05 negative (Hutto & Gilbert 2014). The interval is "
        "Wilson's on the effective n"
        + (f" ({row.n_eff:,.0f})" if row.n_eff == row.n_eff else "")
        + ": each customer's comments count as one cluster."
        + (f" Counting each {flt.weighting.label}." if flt.weighting.per_customer else ""),
    )
    col.caption(
        f"{ui.responses_sentence(row.n, row.customers)} · 95% CI {ui.format_interval(row.low, row.high, 0)}"
    )

if verbatim:
    st.dataframe(
        scored[["submitted_at", "group", "nps", "sentiment", "compound", "comment"]],
        hide_index=True,
        width="stretch",
        column_config={"compound": st.column_config.NumberColumn("VADER compound", format="%.2f")},
    )
    ui.download_csv(scored, "comments.csv", label="Download comments (CSV)", key="voice_csv")
    ui.open_cases_for(
        scored,
        reason="detractor_comment" if groups == ["detractor"] else "comment",
        source="Voice of the customer" + (f": “{search}”" if search else ""),
        key="voice_cases",
        detail_column="comment",
    )
else:
    st.info(
        "Comments word for word are for roles that may see personal data: your role sees their count, "
        "their sentiment and the words that set groups apart (names, emails and phone numbers masked; "
        "only words used by at least 5 customers)."
    )

st.subheader("Words and phrases that set groups apart")
a, b = st.columns(2)
group_a = a.selectbox("Group", list(voice.NPS_GROUPS), index=2, key="voice_group_a")
group_b = b.selectbox(
    "Compared with", ["everyone else", *[g for g in voice.NPS_GROUPS if g != group_a]], key="voice_group_b"
)
with st.spinner("Comparing word use (log-odds with an informative Dirichlet prior)…"):
    terms = ui.cached_query(
        engine,
        voice.group_terms,
        flt,
        group_a=group_a,
        group_b=None if group_b == "everyone else" else group_b,
        private=not verbatim,
    )
if terms.empty:
    st.info("Too few comments in one of the two groups to compare their words.")
else:
    st.plotly_chart(charts.term_bars(terms, f"{group_a.capitalize()} vs {group_b}"), width="stretch")
    st.caption(
        "z of the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008), over at "
        f"most {voice.MAX_COMMENTS:,} comments in view; |z| > 1.96 is the usual line."
    )
    ui.download_csv(terms, "distinguishing-terms.csv", label="Download the terms (CSV)", key="terms_csv")
