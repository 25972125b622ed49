"""What customers talk about: each comment theme's share of the comments, what it does to NPS and
the pillars, its trend, sentiment and segments — from the stored assignments (``comment_themes``,
written by :mod:`relq.ingest.themes`).

The unit is the customer (Methodology page). SQL returns per-customer sums — responses in view
with a read comment, and those mentioning each theme — and :mod:`relq.measures.clustered` turns
them into figures, each customer a cluster (an unmatched response a cluster of its own):

- **Share** of a theme: responses mentioning it / responses with a comment, Wilson interval on
  the effective n (``csat_interval_clustered`` on per-customer counts). Comments in another
  language count as not themed.
- **NPS and each pillar with vs without** the theme, among responses with a comment: the
  difference is linearised over the customers of both groups — a customer often writes comments
  that mention the theme and comments that do not — ``var(δ) = C/(C−1)·Σ_c (t_c¹/W₁ − t_c⁰/W₀)²``,
  z-test, interval ``δ ± 1.96·se``. This is the slope of an OLS of the score on an indicator of
  the theme with a cluster-robust variance by customer (CR1 without the (N−1)/(N−K) factor).
  Benjamini–Hochberg across the themes shown, per score; significant only at q < 0.05.
- **Impact**: how many NPS points the view's NPS would gain if the theme's detractors (responses
  scoring 0–6 that mention it) scored like the average response: ``100·ā·(1 + ȳ)`` where
  ``ā = detractors mentioning the theme / responses with an NPS`` and ``ȳ`` is the mean
  −1/0/+1 score, over every response in view. Its interval linearises ā(1+ȳ) over customers:
  ``t_c = (1+ȳ)(A_c − ā·n_c) + ā(Y_c − ȳ·n_c)``, ``var = C/(C−1)·Σt_c²/N²``. Themes are ranked
  by impact; a theme with fewer mentioning NPS answers than the minimum n is shown greyed, not
  ranked and never significant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats as _sp
from sqlalchemy.engine import Connection

from relq.core.settings import resolve_min_n
from relq.measures import clustered
from relq.store import schema
from relq.store import themes as stored
from relq.store.filters import SegmentFilter, customer_dimension
from relq.store.schema import PILLARS

__all__ = [
    "METRICS",
    "ThemeImpact",
    "impact_interval",
    "theme_overview",
    "theme_table",
    "theme_trend",
    "theme_segments",
    "theme_comments",
    "themes_report",
    "rule_catalog",
    "rule_versions",
]

R = schema.survey_responses
F = schema.comment_facts
T = schema.comment_themes
C = schema.customers
METRICS: tuple[str, ...] = ("nps", *PILLARS)
SENTIMENTS = ("positive", "neutral", "negative")
NAN = float("nan")


# --------------------------------------------------------------------------- impact


@dataclass(frozen=True)
class ThemeImpact:
    """NPS points gained if the theme's detractors scored like the average response, with its
    customer-linearised interval; ``detractors`` mention the theme, ``n`` answered NPS in view."""

    points: float
    low: float
    high: float
    se: float
    detractors: float
    n: float
    customers: int


def impact_interval(n_c, y_c, a_c, level: float = 0.95) -> ThemeImpact:
    """Impact ``100·ā·(1+ȳ)`` from per-customer sums over the responses with an NPS in view:
    ``n_c`` responses, ``y_c = promoters − detractors``, ``a_c`` detractors mentioning the theme.

    Linearised over customers: ``t_c = (1+ȳ)(a_c − ā·n_c) + ā(y_c − ȳ·n_c)``,
    ``var = C/(C−1)·Σt_c²/N²`` (N = Σn_c, C customers with n_c > 0), interval ``± z·100·√var``.

    >>> r = impact_interval([1, 1, 1, 1], [-1, -1, 1, 1], [1, 0, 0, 0])
    >>> r.points, round(r.se, 4)  # ā = 1/4, ȳ = 0: 100·0.25·1
    (25.0, 25.0)
    """
    n = np.asarray(n_c, dtype=float)
    y = np.asarray(y_c, dtype=float)
    a = np.asarray(a_c, dtype=float)
    keep = n > 0
    n, y, a = n[keep], y[keep], a[keep]
    total = float(n.sum())
    customers = int(keep.sum())
    if total <= 0:
        return ThemeImpact(NAN, NAN, NAN, NAN, 0.0, 0.0, 0)
    ybar, abar = float(y.sum()) / total, float(a.sum()) / total
    points = 100 * abar * (1 + ybar)
    if customers < 2:
        return ThemeImpact(points, NAN, NAN, NAN, float(a.sum()), total, customers)
    t = (1 + ybar) * (a - abar * n) + abar * (y - ybar * n)
    var = customers / (customers - 1) * float(np.dot(t, t)) / (total * total)
    se = 100 * math.sqrt(var)
    z = float(_sp.norm.ppf(0.5 + level / 2))
    return ThemeImpact(points, points - z * se, points + z * se, se, float(a.sum()), total, customers)


# --------------------------------------------------------------------------- SQL: per-customer sums


def _cluster():
    """The customer, or the response itself when it matched no customer (a cluster of its own)."""
    return sa.func.coalesce(R.c.customer_id, sa.literal("~") + R.c.response_id).label("cluster")


def _count_if(condition, label: str):
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0).label(label)


def _score_sums(with_sentiment: bool = False) -> list:
    cols = [
        sa.func.count().label("n"),
        sa.func.count(R.c.nps).label("nps_w"),
        _count_if(R.c.nps >= 9, "promoters"),
        _count_if(R.c.nps <= 6, "detractors"),
    ]
    for p in PILLARS:
        cols.append(sa.func.count(R.c[p]).label(f"{p}_w"))
        cols.append(sa.func.coalesce(sa.func.sum(sa.cast(R.c[p], sa.Double)), 0.0).label(f"{p}_s"))
    if with_sentiment:
        cols += [_count_if(F.c.sentiment == s, s) for s in SENTIMENTS]
        cols.append(_count_if(sa.not_(F.c.themable), "other_language"))
    return cols


_THEME_SOURCES = ("rule", "discovered")


def _frame(conn: Connection, query) -> pd.DataFrame:
    """The rows of ``query`` (per-customer sums) as a frame; DuckDB hands them over columnar."""
    result = conn.execute(query)
    columns = list(result.keys())
    if conn.dialect.name == "duckdb" and hasattr(result.cursor, "fetchdf"):
        frame = result.cursor.fetchdf()
        frame.columns = columns
    else:
        frame = pd.DataFrame(result.fetchall(), columns=columns)
    for col in frame.columns:
        if col not in ("cluster", "theme", "segment", "month"):
            frame[col] = pd.to_numeric(frame[col]).astype(float)
    return frame


def _commented_sums(conn: Connection, flt: SegmentFilter, by=()) -> pd.DataFrame:
    """Per customer (and ``by``): responses in view whose comment was read, with their scores."""
    query = (
        sa.select(*by, _cluster(), *_score_sums(with_sentiment=True))
        .select_from(R.join(F, F.c.response_id == R.c.response_id))
        .where(flt.response_clause())
        .group_by(*by, sa.literal_column("cluster"))
    )
    return _frame(conn, query)


def _theme_sums(conn: Connection, flt: SegmentFilter, themes=None, by=()) -> pd.DataFrame:
    """Per theme and customer (and ``by``): responses in view mentioning the theme."""
    query = (
        sa.select(T.c.theme, *by, _cluster(), *_score_sums(with_sentiment=True))
        .select_from(
            R.join(F, F.c.response_id == R.c.response_id).join(T, T.c.response_id == R.c.response_id)
        )
        .where(flt.response_clause(), T.c.source.in_(_THEME_SOURCES))
        .group_by(T.c.theme, *by, sa.literal_column("cluster"))
    )
    if themes is not None:
        query = query.where(T.c.theme.in_(list(themes)))
    return _frame(conn, query)


def _nps_sums(conn: Connection, flt: SegmentFilter) -> pd.DataFrame:
    """Per customer: every response in view with an NPS (for the impact on the view's NPS)."""
    query = (
        sa.select(
            _cluster(),
            sa.func.count().label("n"),
            _count_if(R.c.nps >= 9, "promoters"),
            _count_if(R.c.nps <= 6, "detractors"),
        )
        .where(flt.response_clause(), R.c.nps.is_not(None))
        .group_by(sa.literal_column("cluster"))
    )
    return _frame(conn, query)


# --------------------------------------------------------------------------- figures


def _aligned(part: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    return part.set_index("cluster").reindex(index, fill_value=0.0)


def _share(total_n: np.ndarray, part_n: np.ndarray) -> clustered.ClusteredShare:
    return clustered.csat_interval_clustered(total_n, part_n, total_n)


def _nps_pair(every: pd.DataFrame, part: pd.DataFrame):
    """NPS with and without (the rest of ``every``) and their linearised difference."""
    rest = every - part
    with_ = clustered.nps_interval_clustered(
        part["nps_w"], part["promoters"], part["detractors"], part["nps_w"]
    )
    without = clustered.nps_interval_clustered(
        rest["nps_w"], rest["promoters"], rest["detractors"], rest["nps_w"]
    )
    frame = pd.DataFrame(
        {
            "W1": part["nps_w"].to_numpy(),
            "P1": part["promoters"].to_numpy(),
            "D1": part["detractors"].to_numpy(),
            "n1": part["nps_w"].to_numpy(),
            "W2": rest["nps_w"].to_numpy(),
            "P2": rest["promoters"].to_numpy(),
            "D2": rest["detractors"].to_numpy(),
            "n2": rest["nps_w"].to_numpy(),
        }
    )
    return with_, without, clustered.period_difference_share(frame, "nps")


def _mean_pair(every: pd.DataFrame, part: pd.DataFrame, pillar: str):
    """Mean with and without (ratios of the sums) and their linearised difference."""
    w1, s1 = part[f"{pillar}_w"].to_numpy(), part[f"{pillar}_s"].to_numpy()
    w2 = every[f"{pillar}_w"].to_numpy() - w1
    s2 = np.where(w2 > 0, every[f"{pillar}_s"].to_numpy() - s1, 0.0)  # no rounding dust where none is left
    with_ = s1.sum() / w1.sum() if w1.sum() > 0 else NAN
    without = s2.sum() / w2.sum() if w2.sum() > 0 else NAN
    frame = pd.DataFrame({"W1": w1, "S1": s1, "n1": w1, "W2": w2, "S2": s2, "n2": w2})
    return with_, without, clustered.period_difference(frame)


def _nan_to_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _theme_row(theme: str, every: pd.DataFrame, part: pd.DataFrame, nps_all: pd.DataFrame) -> dict:
    customers = int((part["n"] > 0).sum())
    share = _share(every["n"].to_numpy(), part["n"].to_numpy())
    with_, without, delta = _nps_pair(every, part)
    row = {
        "theme": theme,
        "responses": int(part["n"].sum()),
        "customers": customers,
        "comments": int(every["n"].sum()),
        "share": share.score / 100 if math.isfinite(share.score) else NAN,
        "share_low": share.low / 100,
        "share_high": share.high / 100,
        "share_n_eff": share.n_eff,
        "nps_n": int(part["nps_w"].sum()),
        "nps_with": with_.score,
        "nps_with_low": with_.low,
        "nps_with_high": with_.high,
        "nps_without": without.score,
        "nps_without_low": without.low,
        "nps_without_high": without.high,
        "nps_delta": delta.delta,
        "nps_delta_low": delta.low,
        "nps_delta_high": delta.high,
        "nps_p": delta.p_value,
    }
    for pillar in PILLARS:
        m1, m0, d = _mean_pair(every, part, pillar)
        row.update(
            {
                f"{pillar}_with": m1,
                f"{pillar}_without": m0,
                f"{pillar}_delta": d.delta,
                f"{pillar}_delta_low": d.low,
                f"{pillar}_delta_high": d.high,
                f"{pillar}_p": d.p_value,
            }
        )
    for s in SENTIMENTS:
        mix = _share(part["n"].to_numpy(), part[s].to_numpy())
        row[f"{s}_share"] = mix.score / 100 if math.isfinite(mix.score) else NAN
        row[f"{s}_low"] = mix.low / 100
        row[f"{s}_high"] = mix.high / 100
    detractors = part["detractors"].reindex(nps_all.index, fill_value=0.0)
    impact = impact_interval(
        nps_all["n"].to_numpy(),
        (nps_all["promoters"] - nps_all["detractors"]).to_numpy(),
        detractors.to_numpy(),
    )
    row.update(
        {
            "impact": impact.points,
            "impact_low": impact.low,
            "impact_high": impact.high,
            "detractors": int(impact.detractors),
        }
    )
    return row


def _with_q(frame: pd.DataFrame, metrics, min_n: int, n_col: str = "nps_n") -> pd.DataFrame:
    small = frame[n_col] < min_n
    frame["small"] = small
    for m in metrics:
        p = frame[f"{m}_p"].where(~small)
        frame[f"{m}_q"] = clustered.benjamini_hochberg(p.to_numpy(dtype=float))
        frame[f"{m}_significant"] = (frame[f"{m}_q"] < clustered.Q_THRESHOLD).fillna(False).astype(bool)
    return frame


def theme_table(
    conn: Connection, flt: SegmentFilter = SegmentFilter(), min_n: int | None = None
) -> pd.DataFrame:
    """One row per theme in force, ranked by impact (small themes last, unranked): share of the
    comments with its interval, NPS and each pillar with vs without it (delta, interval, p, q),
    sentiment mix, impact. Empty columns when no comment in view was read."""
    min_n = resolve_min_n(min_n)
    catalog = stored.theme_catalog(conn)
    every = _commented_sums(conn, flt).set_index("cluster")
    per_theme = _theme_sums(conn, flt)
    nps_all = _nps_sums(conn, flt).set_index("cluster")
    rows = []
    groups = dict(tuple(per_theme.groupby("theme"))) if not per_theme.empty else {}
    for item in catalog.itertuples(index=False):
        part = groups.get(item.theme)
        part = (
            _aligned(part.drop(columns="theme"), every.index)
            if part is not None
            else pd.DataFrame(0.0, index=every.index, columns=every.columns)
        )
        row = _theme_row(item.theme, every, part, nps_all)
        row.update({"source": item.source, "terms": list(item.terms)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = _with_q(frame, METRICS, min_n)
    order = frame.assign(_small=frame["small"], _impact=-frame["impact"].fillna(-np.inf))
    frame = frame.loc[order.sort_values(["_small", "_impact", "theme"]).index].reset_index(drop=True)
    frame["rank"] = np.where(frame["small"], np.nan, np.arange(1, len(frame) + 1))
    first = ["rank", "theme", "source", "responses", "customers", "share", "share_low", "share_high"]
    return frame[first + [c for c in frame.columns if c not in first]]


def theme_overview(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> dict:
    """Comments in view read for themes, how many mention a theme, how many are in another
    language (not themed), how many are waiting to be read, and the latest discovery."""
    counts = conn.execute(
        sa.select(
            sa.func.count().label("comments"),
            _count_if(sa.not_(F.c.themable), "other_language"),
            _count_if(
                sa.exists().where(T.c.response_id == R.c.response_id, T.c.source.in_(_THEME_SOURCES)),
                "themed",
            ),
        )
        .select_from(R.join(F, F.c.response_id == R.c.response_id))
        .where(flt.response_clause())
    ).one()
    languages = conn.execute(
        sa.select(F.c.language, sa.func.count())
        .select_from(R.join(F, F.c.response_id == R.c.response_id))
        .where(flt.response_clause())
        .group_by(F.c.language)
        .order_by(sa.func.count().desc())
    ).all()
    model = stored.latest_model(conn)
    return {
        "comments": int(counts.comments),
        "themed": int(counts.themed),
        "other_language": int(counts.other_language),
        "not_themed": int(counts.comments) - int(counts.themed),
        "pending": stored.pending_comments(conn),
        "languages": {str(code): int(n) for code, n in languages},
        "discovery": None
        if model is None
        else {
            "k": int(model["k"]),
            "seed": int(model["seed"]),
            "sample_size": int(model["sample_size"]),
            "comments": int(model["comments"]),
            "fitted_at": model["fitted_at"],
            "fitted_by": model["fitted_by"],
        },
    }


def theme_trend(conn: Connection, flt: SegmentFilter, themes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per theme and month: share of the month's comments mentioning it, with its interval
    (Wilson on the effective n) and the month's responses and customers mentioning it."""
    month = sa.func.date_trunc("month", R.c.submitted_at).label("month")
    every = _commented_sums(conn, flt, by=(month,))
    part = _theme_sums(conn, flt, themes=themes or None, by=(month,))
    rows = []
    for (theme, when), mentions in part.groupby(["theme", "month"]):
        month_all = every[every["month"] == when].set_index("cluster")
        aligned = mentions.set_index("cluster")["n"].reindex(month_all.index, fill_value=0.0)
        share = _share(month_all["n"].to_numpy(), aligned.to_numpy())
        rows.append(
            {
                "theme": theme,
                "month": pd.Timestamp(when),
                "comments": int(month_all["n"].sum()),
                "responses": int(aligned.sum()),
                "customers": int((aligned > 0).sum()),
                "share": share.score / 100,
                "low": share.low / 100,
                "high": share.high / 100,
            }
        )
    return pd.DataFrame(
        rows, columns=["theme", "month", "comments", "responses", "customers", "share", "low", "high"]
    ).sort_values(["theme", "month"], ignore_index=True)


def theme_segments(
    conn: Connection, flt: SegmentFilter, theme: str, dimension: str, min_n: int | None = None
) -> pd.DataFrame:
    """The theme in each value of a customer dimension: share of the segment's comments with its
    interval, NPS with vs without it (delta, interval, p, and q across the segment's values)."""
    min_n = resolve_min_n(min_n)
    segment = customer_dimension(dimension).label("segment")
    joined_flt = flt.with_dimension(dimension, ())
    every = _segment_frame(conn, joined_flt, segment, theme=None)
    part = _segment_frame(conn, joined_flt, segment, theme=theme)
    nps_all = _nps_sums(conn, flt).set_index("cluster")
    rows = []
    for value, seg_all in every.groupby("segment", dropna=False):
        seg_all = seg_all.drop(columns="segment").set_index("cluster")
        mentions = part[part["segment"] == value].drop(columns=["segment", "theme"])
        aligned = _aligned(mentions, seg_all.index) if not mentions.empty else seg_all * 0.0
        row = _theme_row(theme, seg_all, aligned, nps_all.reindex(seg_all.index).dropna())
        row["segment"] = (
            "(no value)" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = _with_q(frame, ("nps",), min_n)
    keep = [
        "segment",
        "responses",
        "customers",
        "comments",
        "share",
        "share_low",
        "share_high",
        "nps_n",
        "nps_with",
        "nps_without",
        "nps_delta",
        "nps_delta_low",
        "nps_delta_high",
        "nps_p",
        "nps_q",
        "nps_significant",
        "small",
    ]
    return frame[keep].sort_values(["small", "share"], ascending=[True, False], ignore_index=True)


def _segment_frame(conn: Connection, flt: SegmentFilter, segment, theme: str | None) -> pd.DataFrame:
    joined = R.join(F, F.c.response_id == R.c.response_id).join(C, C.c.customer_id == R.c.customer_id)
    where = [flt.response_clause()]
    cols = [segment, _cluster(), *_score_sums(with_sentiment=True)]
    if theme is not None:
        joined = joined.join(T, T.c.response_id == R.c.response_id)
        where += [T.c.theme == theme, T.c.source.in_(_THEME_SOURCES)]
        cols = [T.c.theme, *cols]
    query = sa.select(*cols).select_from(joined).where(*where).group_by(*cols[: -len(_score_sums(True))])
    return _frame(conn, query)


def theme_comments(conn: Connection, flt: SegmentFilter, theme: str, limit: int = 200) -> pd.DataFrame:
    """Comments in view mentioning ``theme`` — newest first for a rule, most typical first for a
    discovered theme — with the phrases that placed them marked « » (plain text) and listed."""
    from relq.ingest.themes import compiled_themes, highlight

    if limit > 2000:
        raise ValueError(f"at most 2,000 comments are listed at once, not {limit:,}.")
    group = sa.case((R.c.nps >= 9, "promoter"), (R.c.nps >= 7, "passive"), (R.c.nps >= 0, "detractor"))
    rows = conn.execute(
        sa.select(
            R.c.response_id,
            R.c.customer_id,
            R.c.submitted_at,
            R.c.nps,
            group.label("group"),
            F.c.sentiment,
            T.c.source,
            T.c.score,
            R.c.comment,
        )
        .select_from(
            R.join(F, F.c.response_id == R.c.response_id).join(T, T.c.response_id == R.c.response_id)
        )
        .where(flt.response_clause(), T.c.theme == theme, T.c.source.in_(_THEME_SOURCES))
        .order_by(T.c.score.desc(), R.c.submitted_at.desc(), R.c.response_id)
        .limit(limit)
    ).all()
    frame = pd.DataFrame(
        rows,
        columns=[
            "response_id",
            "customer_id",
            "submitted_at",
            "nps",
            "group",
            "sentiment",
            "source",
            "score",
            "comment",
        ],
    )
    patterns = [p for p in compiled_themes(conn) if p.name == theme]
    marked = [highlight(text, patterns) for text in frame["comment"]]
    frame["comment"] = [m[0] for m in marked]
    frame["matched"] = ["; ".join(m[1]) for m in marked]
    if not frame.empty and (frame["source"] == "rule").all():
        frame = frame.sort_values(["submitted_at", "response_id"], ascending=[False, True], ignore_index=True)
    return frame.drop(columns=["source", "score"])


def rule_catalog(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> pd.DataFrame:
    """The rules in force (the filter plays no part): theme, phrases, exclusions, version, who, when."""
    from relq.ingest.themes import STARTER_RULES

    rules = stored.current_rules(conn)
    if not rules and not stored.has_rules(conn):
        rules = [
            {
                "theme": r.name,
                "phrases": list(r.phrases),
                "exclusions": list(r.exclusions),
                "version": 0,
                "source": "starter",
                "edited_by": None,
                "edited_at": None,
            }
            for r in STARTER_RULES
        ]
    columns = ["theme", "phrases", "exclusions", "version", "source", "edited_by", "edited_at"]
    return pd.DataFrame([{c: r[c] for c in columns} for r in rules], columns=columns)


def rule_versions(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> pd.DataFrame:
    """Every version of every rule, newest first (the filter plays no part)."""
    return stored.rule_history(conn)


def themes_report(conn: Connection, flt: SegmentFilter = SegmentFilter(), min_n: int | None = None) -> dict:
    """The ``themes --json`` document: every theme with its share, interval and NPS delta."""
    table = theme_table(conn, flt, min_n)
    overview = theme_overview(conn, flt)
    out = []
    for row in table.to_dict("records") if not table.empty else []:
        item = {
            "name": row["theme"],
            "source": row["source"],
            "terms": list(row["terms"]),
            "responses": int(row["responses"]),
            "customers": int(row["customers"]),
            "share": row["share"],
            "ci": [row["share_low"], row["share_high"]],
            "n_eff": row["share_n_eff"],
            "nps_delta": {
                "delta": row["nps_delta"],
                "ci": [row["nps_delta_low"], row["nps_delta_high"]],
                "p": row["nps_p"],
                "q": row["nps_q"],
                "significant": bool(row["nps_significant"]),
                "with": row["nps_with"],
                "without": row["nps_without"],
                "n": int(row["nps_n"]),
            },
            "impact": {
                "points": row["impact"],
                "ci": [row["impact_low"], row["impact_high"]],
                "detractors": int(row["detractors"]),
            },
            "pillars": {
                p: {
                    "delta": row[f"{p}_delta"],
                    "ci": [row[f"{p}_delta_low"], row[f"{p}_delta_high"]],
                    "p": row[f"{p}_p"],
                    "q": row[f"{p}_q"],
                }
                for p in PILLARS
            },
            "sentiment": {s: row[f"{s}_share"] for s in SENTIMENTS},
            "rank": None if row["small"] else int(row["rank"]),
            "small": bool(row["small"]),
        }
        out.append(item)
    return {
        "themes": out,
        "comments": overview["comments"],
        "themed": overview["themed"],
        "not_themed": overview["not_themed"],
        "other_language": overview["other_language"],
        "pending": overview["pending"],
        "discovery": overview["discovery"],
    }
