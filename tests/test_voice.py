"""Voice of the customer: search, sentiment, distinguishing words."""

from collections import Counter
from math import log, sqrt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from relq import store
from relq.analyses import voice
from relq.store import schema
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent


def test_sentiment_matches_vadersentiment_own_analyzer(demo_db_url):
    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        frame = voice.scored_comments(conn, SegmentFilter(), limit=300)
    engine.dispose()
    reference = SentimentIntensityAnalyzer()
    for text, compound, pos, neg in zip(
        frame["comment"], frame["compound"], frame["pos"], frame["neg"], strict=True
    ):
        ref = reference.polarity_scores(text)
        assert (compound, pos, neg) == (ref["compound"], ref["pos"], ref["neg"])
    assert set(frame["sentiment"]) <= {"positive", "neutral", "negative"}


def test_log_odds_with_dirichlet_prior_matches_a_hand_computed_example():
    """Monroe et al. (2008) eq. 16-20 by hand: 'slow' 8 of 10 words in a, 2 of 10 in b; the prior
    is the pooled counts (α_slow = 10, α₀ = 20)."""
    a, b = Counter({"slow": 8, "great": 2}), Counter({"slow": 2, "great": 8})
    delta = log((8 + 10) / (10 + 20 - 8 - 10)) - log((2 + 10) / (10 + 20 - 2 - 10))
    z = delta / sqrt(1 / (8 + 10) + 1 / (2 + 10))
    got = voice.log_odds_dirichlet(a, b).set_index("term")
    assert got.loc["slow", "delta"] == pytest.approx(delta)
    assert got.loc["slow", "z"] == pytest.approx(z)
    assert got.loc["great", "z"] == pytest.approx(-z)
    # A prior of a chosen size: α_w = pooled share × size.
    sized = voice.log_odds_dirichlet(a, b, prior_size=4).set_index("term")
    d2 = log((8 + 2) / (10 + 4 - 8 - 2)) - log((2 + 2) / (10 + 4 - 2 - 2))
    assert sized.loc["slow", "delta"] == pytest.approx(d2)


def test_search_is_a_bound_case_insensitive_substring_with_wildcards_escaped(engine):
    rows = pd.DataFrame(
        {
            "response_id": ["R1", "R2", "R3", "R4"],
            "submitted_at": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"]),
            "nps": [10, 3, 8, 0],
            "comment": ["Great SUPPORT team", "support was slow", "50% off was nice", "'; DROP TABLE x; --"],
        }
    )
    with engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, rows)
    with engine.connect() as conn:
        assert set(voice.comments(conn, SegmentFilter(), search="support")["response_id"]) == {"R1", "R2"}
        assert set(voice.comments(conn, SegmentFilter(), search="50%")["response_id"]) == {"R3"}
        assert voice.comments(conn, SegmentFilter(), search="5_%").empty
        assert set(voice.comments(conn, SegmentFilter(), search="drop table")["response_id"]) == {"R4"}
        det = voice.comments(conn, SegmentFilter(), groups=("detractor",))
        assert set(det["response_id"]) == {"R2", "R4"} and set(det["group"]) == {"detractor"}


def test_detractor_words_differ_from_promoter_words_on_the_demo(demo_db_url):
    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        terms = voice.group_terms(conn, SegmentFilter(), "detractor", "promoter")
    engine.dispose()
    assert (terms.loc[terms["leans_to"] == "detractor", "z"] > 0).all()
    assert (terms.loc[terms["leans_to"] == "promoter", "z"] < 0).all()
    assert len(terms) > 10


def test_voice_page_searches_and_filters(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/voice.py").run()
    assert not at.exception
    total = len(at.dataframe[0].value)
    at.text_input(key="voice_search").input("support").run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert 0 < len(shown) < total
    assert shown["comment"].str.lower().str.contains("support").all()
    at.multiselect(key="voice_groups").select("detractor").run()
    assert not at.exception


def test_sentiment_shares_are_wilson_on_the_effective_n_like_statsmodels():
    # One comment per customer: statsmodels' plain Wilson interval. Several per customer: the
    # clustered variance of the 0/1 share equals statsmodels' cluster-robust OLS on a constant.
    import statsmodels.api as sm
    from statsmodels.stats.proportion import proportion_confint

    from relq.analyses.voice import sentiment_summary

    labels = ["positive"] * 30 + ["neutral"] * 12 + ["negative"] * 18
    alone = pd.DataFrame({"customer_id": [f"c{i}" for i in range(60)], "sentiment": labels})
    got = sentiment_summary(alone).set_index("sentiment")
    low, high = proportion_confint(30, 60, method="wilson")
    assert got.loc["positive", "n_eff"] == 60
    assert (got.loc["positive", "low"], got.loc["positive", "high"]) == pytest.approx((100 * low, 100 * high))
    grouped = alone.assign(customer_id=[f"c{i // 4}" for i in range(60)])  # 15 customers, 4 comments each
    got = sentiment_summary(grouped).set_index("sentiment")
    y = (grouped["sentiment"] == "positive").to_numpy(float)
    fit = sm.OLS(y, np.ones((60, 1))).fit(cov_type="cluster", cov_kwds={"groups": np.arange(60) // 4})
    deff = fit.cov_params()[0, 0] / (0.5 * 0.5 / 59)
    assert got.loc["positive", "customers"] == 15
    assert got.loc["positive", "n_eff"] == pytest.approx(60 / deff, rel=1e-9)
    weighted = sentiment_summary(grouped, pd.Series({f"c{i}": 1.0 for i in range(15)}))
    assert weighted.set_index("sentiment").loc["positive", "share"] == pytest.approx(50.0)
