"""Overview: relationship quality, its three pillars and NPS for the filtered period, with n."""

import pandas as pd
import streamlit as st

from pages import components
from relq import charts

engine = components.get_engine()
flt = components.current_filter()

st.title("Relationship quality overview")
head = components.cached_headline(engine, flt)
if head.responses == 0:
    st.warning("No survey responses match the current filters. Widen the period or clear the filters.")
    st.stop()

st.caption(f"{head.responses:,} survey responses in view. Every score shows its n and 95% interval.")
cols = st.columns(5)
cards = [
    ("Relationship quality (RQ)", head.rq),
    ("Trust", head.pillars["trust"]),
    ("Commitment", head.pillars["commitment"]),
    ("Satisfaction", head.pillars["satisfaction"]),
]
for col, (label, score) in zip(cols, cards, strict=False):
    components.score_card(label, score.estimate, score.low, score.high, score.n, container=col)
components.score_card(
    "NPS", head.nps.score, head.nps.low, head.nps.high, head.nps.n, digits=0, container=cols[4]
)

left, right = st.columns(2)
bars = pd.DataFrame(
    [
        {"label": name, "estimate": s.estimate, "low": s.low, "high": s.high, "n": s.n}
        for name, s in [("rq", head.rq), *head.pillars.items()]
    ]
)
left.plotly_chart(
    charts.score_bars(bars, title="Pillar indices (0–100)", y_title="Index", range_y=[0, 100]),
    width="stretch",
)
trend = components.cached_trend(engine, flt)
right.plotly_chart(
    charts.trend_with_band(trend, ["trust", "commitment", "satisfaction"], "Pillars by month", "Index"),
    width="stretch",
)
st.plotly_chart(charts.trend_with_band(trend, ["nps"], "NPS by month", "NPS"), width="stretch")
