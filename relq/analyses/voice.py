"""Voice of the customer: search comments, score their sentiment, find the words that set groups
apart.

- Search runs in the database: case-insensitive ``ILIKE`` with a bound, escaped parameter.
- Sentiment: VADER (Hutto & Gilbert 2014) from the vaderSentiment package, whose lexicon ships
  inside the package — nothing is downloaded at run time. The compound score runs −1 … +1.
- Distinguishing words and phrases: log-odds ratio with an informative Dirichlet prior
  (Monroe, Colaresi & Quinn 2008, "Fightin' Words", Political Analysis 16:372-403, eq. 16-22),
  over a capped sample of comments pulled in SQL.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.measures import clustered
from relq.store import schema
from relq.store.filters import SegmentFilter

__all__ = [
    "NPS_GROUPS",
    "MAX_COMMENTS",
    "nps_group",
    "comments",
    "sentiment",
    "tokens",
    "log_odds_dirichlet",
    "distinguishing_terms",
    "scored_comments",
    "sentiment_summary",
    "group_terms",
    "commenters",
]

R = schema.survey_responses
NPS_GROUPS = ("promoter", "passive", "detractor")
MAX_COMMENTS = 20_000
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i if in is it its of on or our so that the their this to "
    "was we were with you your they them me my us".split()
)
_WORD = re.compile(r"[a-z][a-z']+")


def nps_group(score=None):
    """SQL CASE (or, given a number, the Python value) of the NPS group: promoter 9–10, passive
    7–8, detractor 0–6.

    >>> nps_group(9), nps_group(7), nps_group(6)
    ('promoter', 'passive', 'detractor')
    """
    if score is None:
        return sa.case((R.c.nps >= 9, "promoter"), (R.c.nps >= 7, "passive"), (R.c.nps >= 0, "detractor"))
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def comments(
    conn: Connection,
    flt: SegmentFilter,
    search: str = "",
    groups: tuple[str, ...] = (),
    quadrant: str | None = None,
    limit: int = 500,
) -> pd.DataFrame:
    """Comments in view, newest first: response_id, customer_id, submitted_at, nps, group, csat,
    comment. ``search`` is a case-insensitive substring (bound parameter, % and _ escaped);
    ``groups`` keeps the named NPS groups; ``quadrant`` a trust × satisfaction quadrant key."""
    if limit > MAX_COMMENTS:
        raise ValueError(f"at most {MAX_COMMENTS:,} comments are pulled at once, not {limit:,}.")
    unknown = [g for g in groups if g not in NPS_GROUPS]
    if unknown:
        raise ValueError(f"unknown NPS group(s) {', '.join(unknown)}; choose from {', '.join(NPS_GROUPS)}.")
    if quadrant:
        flt = replace(flt, quadrant=quadrant)
    group = nps_group().label("group")
    clauses = [flt.response_clause(), R.c.comment.is_not(None), sa.func.length(sa.func.trim(R.c.comment)) > 0]
    # A NUL cannot be stored in a comment (imports refuse it; PostgreSQL cannot hold it), so it
    # is no part of any search: dropped, the same on every engine.
    search = search.replace("\x00", "").strip()
    if search:
        clauses.append(R.c.comment.icontains(search, autoescape=True))
    if groups:
        clauses.append(nps_group().in_(list(groups)))
    rows = conn.execute(
        sa.select(R.c.response_id, R.c.customer_id, R.c.submitted_at, R.c.nps, group, R.c.csat, R.c.comment)
        .where(*clauses)
        .order_by(R.c.submitted_at.desc(), R.c.response_id.desc())
        .limit(limit)
    ).all()
    frame = pd.DataFrame(
        rows, columns=["response_id", "customer_id", "submitted_at", "nps", "group", "csat", "comment"]
    )
    return frame


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(texts) -> pd.DataFrame:
    """VADER scores of each text: compound (−1 … +1), pos, neu, neg, and a label (positive at
    compound ≥ 0.05, negative at ≤ −0.05, else neutral — the thresholds of Hutto & Gilbert)."""
    analyzer = _analyzer()
    scores = [analyzer.polarity_scores(str(t) if t is not None else "") for t in texts]
    frame = pd.DataFrame(scores, columns=["neg", "neu", "pos", "compound"])
    frame["sentiment"] = np.select(
        [frame["compound"] >= 0.05, frame["compound"] <= -0.05], ["positive", "negative"], "neutral"
    )
    return frame


def tokens(text: str, bigrams: bool = True) -> list[str]:
    """Lower-case words (stop words dropped) and, optionally, two-word phrases of the kept words.

    >>> tokens("The support was slow and slow again")
    ['support', 'slow', 'slow', 'again', 'support slow', 'slow slow', 'slow again']
    """
    words = [w for w in _WORD.findall(str(text).lower()) if w not in STOPWORDS]
    if not bigrams:
        return words
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def log_odds_dirichlet(
    counts_a: Counter, counts_b: Counter, prior: Counter | None = None, prior_size: float | None = None
) -> pd.DataFrame:
    """Log-odds ratio of each term between groups a and b with an informative Dirichlet prior.

    With yᵢ the term's count in group i, nᵢ its total, αw the prior count of w and α₀ = Σαw:
    ``δw = ln((ya+αw)/(na+α₀−ya−αw)) − ln((yb+αw)/(nb+α₀−yb−αw))``,
    ``σ²(δw) ≈ 1/(ya+αw) + 1/(yb+αw)``, ``z = δw/σ``. Monroe et al. (2008), eq. 16, 18-20.
    The prior defaults to the pooled counts of both groups, rescaled to ``prior_size`` (default
    the pooled total); positive z leans to group a.

    >>> a, b = Counter({"slow": 8, "great": 2}), Counter({"slow": 2, "great": 8})
    >>> log_odds_dirichlet(a, b).set_index("term")["z"].round(3).to_dict()
    {'slow': 2.176, 'great': -2.176}
    """
    prior = Counter(prior) if prior is not None else counts_a + counts_b
    terms = sorted(set(counts_a) | set(counts_b))
    if not terms:
        return pd.DataFrame(columns=["term", "count_a", "count_b", "delta", "variance", "z"])
    ya = np.array([counts_a.get(t, 0) for t in terms], dtype=float)
    yb = np.array([counts_b.get(t, 0) for t in terms], dtype=float)
    raw_prior = np.array([prior.get(t, 0) for t in terms], dtype=float)
    total_prior = float(sum(prior.values()))
    scale = 1.0 if prior_size is None else prior_size / total_prior
    alpha = raw_prior * scale
    alpha0 = total_prior * scale
    na, nb = ya.sum(), yb.sum()
    delta = np.log((ya + alpha) / (na + alpha0 - ya - alpha)) - np.log(
        (yb + alpha) / (nb + alpha0 - yb - alpha)
    )
    variance = 1 / (ya + alpha) + 1 / (yb + alpha)
    return pd.DataFrame(
        {
            "term": terms,
            "count_a": ya.astype(int),
            "count_b": yb.astype(int),
            "delta": delta,
            "variance": variance,
            "z": delta / np.sqrt(variance),
        }
    ).sort_values("z", ascending=False, ignore_index=True)


def distinguishing_terms(
    frame: pd.DataFrame, group_a: str, group_b: str | None = None, top: int = 15, min_count: int = 3
) -> pd.DataFrame:
    """The words and phrases that most set ``group_a`` apart from ``group_b`` (or from every other
    group) in a comments frame with ``group`` and ``comment`` columns. Returns the top terms for
    each side: term, leans_to, count_a, count_b, z (|z| > 1.96 is the usual line)."""
    in_a = frame["group"] == group_a
    in_b = frame["group"] == group_b if group_b else ~in_a
    counts_a = Counter(t for text in frame.loc[in_a, "comment"] for t in tokens(text))
    counts_b = Counter(t for text in frame.loc[in_b, "comment"] for t in tokens(text))
    scored = log_odds_dirichlet(counts_a, counts_b)
    scored = scored[(scored["count_a"] + scored["count_b"]) >= min_count]
    other = group_b or f"not {group_a}"
    top_a = scored.head(top).assign(leans_to=group_a)
    top_b = scored.iloc[::-1].head(top).assign(leans_to=other)
    out = pd.concat([top_a[top_a["z"] > 0], top_b[top_b["z"] < 0]], ignore_index=True)
    return out[["term", "leans_to", "count_a", "count_b", "z"]]


def scored_comments(conn: Connection, flt: SegmentFilter, **options) -> pd.DataFrame:
    """:func:`comments` with their VADER scores (neg, neu, pos, compound, sentiment)."""
    frame = comments(conn, flt, **options)
    return pd.concat([frame, sentiment(frame["comment"]).set_index(frame.index)], axis=1)


def sentiment_summary(scored: pd.DataFrame, weights: pd.Series | None = None) -> pd.DataFrame:
    """Share of positive, neutral and negative comments (percent) with Wilson 95% intervals on the
    effective n: each customer is a cluster (an unmatched response its own), as for CSAT.

    ``weights``: each customer's weight under a customer-level weighting (split over the customer's
    comments; unmatched comments are then left out); None counts each comment once.
    """
    ids = scored["customer_id"] if "customer_id" in scored else pd.Series([None] * len(scored))
    w = None
    if weights is not None:  # customers without a weight (and unmatched comments) are left out
        weighted = ids.where(ids.isin(weights.index))
        w = clustered.customer_weights(weighted.to_numpy(dtype=object), weights)
    records = []
    for label in ("positive", "neutral", "negative"):
        hit = (scored["sentiment"] == label).to_numpy(dtype=float) if len(scored) else np.zeros(0)
        sums = clustered.cluster_sums(hit, w, ids.to_numpy(dtype=object))
        share = clustered.csat_interval_clustered(sums["W"], sums["S"], sums["n"])
        records.append(
            {
                "sentiment": label,
                "comments": int(hit.sum()),
                "share": share.score,
                "low": share.low,
                "high": share.high,
                "n": share.n,
                "customers": share.customers,
                "n_eff": share.n_eff,
            }
        )
    return pd.DataFrame(records)


def group_terms(
    conn: Connection,
    flt: SegmentFilter,
    group_a: str,
    group_b: str | None = None,
    top: int = 15,
    private: bool = False,
):
    """:func:`distinguishing_terms` over the newest comments in view (at most MAX_COMMENTS).

    ``private`` (for roles that may not see personal data): emails, phone numbers and the CRM's
    names are masked before the words are counted, and a term is shown only when at least
    MIN_GROUP_CUSTOMERS respondents used it (column ``customers``), so no term is one person's words.
    """
    frame = comments(conn, flt, limit=MAX_COMMENTS)
    if (frame["group"] == group_a).sum() < 5 or (
        (frame["group"] == group_b).sum() < 5 if group_b else (frame["group"] != group_a).sum() < 5
    ):
        return pd.DataFrame(columns=["term", "leans_to", "count_a", "count_b", "z"])
    if not private:
        return distinguishing_terms(frame, group_a, group_b, top)
    from relq.core.auth import MIN_GROUP_CUSTOMERS
    from relq.core.redact import NameMasker
    from relq.store.privacy import personal_names

    masker = NameMasker(personal_names(conn))
    frame = frame.assign(comment=frame["comment"].map(masker.mask))
    who = frame["customer_id"].fillna("response:" + frame["response_id"].astype(str))
    users: dict[str, set] = {}
    for person, text in zip(who, frame["comment"], strict=True):
        for term in set(tokens(text)):
            users.setdefault(term, set()).add(person)
    terms = distinguishing_terms(frame, group_a, group_b, top=len(users) or 1)
    terms["customers"] = terms["term"].map(lambda t: len(users.get(t, ())))
    terms = terms[terms["customers"] >= MIN_GROUP_CUSTOMERS]
    return pd.concat(
        [terms[terms["leans_to"] == group_a].head(top), terms[terms["leans_to"] != group_a].head(top)],
        ignore_index=True,
    )


def commenters(frame: pd.DataFrame) -> int:
    """Distinct respondents behind a comments frame (an unmatched response is someone of its own)."""
    if frame.empty:
        return 0
    return int(frame["customer_id"].fillna("response:" + frame["response_id"].astype(str)).nunique())
