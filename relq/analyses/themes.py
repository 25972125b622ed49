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
from relq.measures import clustered, customer_sums
from relq.store import schema
from relq.store import themes as stored
from relq.store.filters import SegmentFilter, customer_dimension
from relq.store.schema import PILLARS
from relq.store.themes import SENTIMENTS
from relq.store.themes import THEME_SOURCES as _THEME_SOURCES
from relq.store.themes import count_if as _count_if
from relq.store.themes import theme_score_sums as _score_sums

__all__ = [
    "METRICS",
    "ThemeImpact",
    "impact_interval",
    "theme_overview",
    "pending_count",
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
TS = schema.theme_sums
METRICS: tuple[str, ...] = ("nps", *PILLARS)
NAN = float("nan")
Z = float(_sp.norm.ppf(0.975))


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
    >>> r.points, round(r.se, 4)  # ā = 1/4, ȳ = 0; t = (.5, −.5, 0, 0): √(4/3·.5/16) = .2041
    (25.0, 20.4124)
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
    var = customers / (customers - 1) * _dot(t, t) / (total * total)
    se = 100 * math.sqrt(var)
    z = float(_sp.norm.ppf(0.5 + level / 2))
    return ThemeImpact(points, points - z * se, points + z * se, se, float(a.sum()), total, customers)


# --------------------------------------------------------------------------- SQL: per-customer sums


def _cluster():
    """The customer, or the response itself when it matched no customer (a cluster of its own)."""
    return sa.func.coalesce(R.c.customer_id, sa.literal("~") + R.c.response_id).label("cluster")


def _stored(conn: Connection, flt: SegmentFilter) -> bool:
    """Whether the stored month sums of the themes (``schema.theme_sums``) stand in for the
    responses of view ``flt``: its dates start and end on month boundaries, no theme is chosen, and
    the rows are current (rebuilt by every change of the themes and after every data change)."""
    return customer_sums.stored_sums_fit(flt) and stored.theme_sums_ready(conn)


def _stored_sums(conn: Connection, flt: SegmentFilter, keys: list, where) -> pd.DataFrame:
    """Per ``keys`` (written on ``survey_responses``) and customer: the stored sums of the rows
    ``where`` (on ``theme_sums``) in view ``flt`` — the names and figures the responses give."""
    on = customer_sums.on_source
    keys = [on(TS, k.element).label(k.name) for k in keys]
    cluster = on(TS, _cluster().element).label("cluster")
    sums = [sa.func.sum(TS.c[name]).label(name) for name in _SUM_COLUMNS]
    query = (
        sa.select(*keys, cluster, *sums)
        .where(on(TS, flt.response_clause()), where)
        .group_by(*[k.element for k in keys], cluster.element)
    )
    return _frame(conn, query)


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
    if _stored(conn, flt):
        return _stored_sums(conn, flt, list(by), TS.c.theme == "")
    query = (
        sa.select(*by, _cluster(), *_score_sums(with_sentiment=True))
        .select_from(R.join(F, F.c.response_id == R.c.response_id))
        .where(flt.response_clause())
        .group_by(*by, sa.literal_column("cluster"))
    )
    return _frame(conn, query)


def _theme_sums(conn: Connection, flt: SegmentFilter, themes=None, by=()) -> pd.DataFrame:
    """Per theme and customer (and ``by``): responses in view mentioning the theme."""
    if _stored(conn, flt):
        where = TS.c.theme != "" if themes is None else TS.c.theme.in_(list(themes))
        return _stored_sums(conn, flt, [TS.c.theme.label("theme"), *by], where)
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
    """Per customer: every response in view with an NPS (for the impact on the view's NPS) — the
    per-customer sums every clustered score reads, from the stored month sums when they fit."""
    pc = customer_sums.per_customer(flt, scores=("nps",), source=customer_sums.source_for(conn, flt))
    cluster = sa.func.coalesce(pc.c.cid, sa.literal("~") + pc.c.lone).label("cluster")
    query = sa.select(
        cluster,
        pc.c.nps_n.label("n"),
        pc.c.nps_p.label("promoters"),
        pc.c.nps_d.label("detractors"),
    ).where(pc.c.nps_n > 0)
    return _frame(conn, query)


# --------------------------------------------------------------------------- figures


def _share(total_n: np.ndarray, part_n: np.ndarray) -> clustered.ClusteredShare:
    return clustered.csat_interval_clustered(total_n, part_n, total_n)


# A theme's figures come from sums over customers (clusters). Those of the responses that do not
# mention it are the view's sums minus the theme's, so a theme costs only as much as the customers
# who mention it: Σ_c rest_c·rest'_c = Σ_c every_c·every'_c − Σ_{c mentions} (every·every' −
# rest·rest'). The formulas are those of relq.measures.clustered (ultimate-cluster variance,
# effective n, Wilson, adjusted Wald, the linearised difference); the tests check they agree.

_WEIGHT = {"nps": "nps_w", **{p: f"{p}_w" for p in PILLARS}}
_SUM_COLUMNS = tuple(c.name for c in _score_sums(with_sentiment=True))  # a theme's per-customer sums


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b. Not np.dot: on a busy machine BLAS threads make it tens of times slower here."""
    return float(np.einsum("i,i->", a, b))


def _score(metric: str, cols: dict[str, np.ndarray]) -> np.ndarray:
    if metric == "nps":
        return cols["promoters"] - cols["detractors"]
    return cols[f"{metric}_s"]


class _Every:
    """The per-customer sums of the responses with a read comment in view, and their totals."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.index = frame.index
        self.cols = {c: frame[c].to_numpy(dtype=float) for c in frame.columns}
        self._totals: dict[str, dict[str, float]] = {}

    def pair(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        return self.cols[_WEIGHT[metric]], _score(metric, self.cols)

    def totals(self, metric: str) -> dict[str, float]:
        if metric not in self._totals:
            w, sc = self.pair(metric)
            self._totals[metric] = {
                "W": float(w.sum()),
                "S": float(sc.sum()),
                "SS": _dot(sc, sc),
                "SW": _dot(sc, w),
                "WW": _dot(w, w),
                "C": float((w > 0).sum()),
            }
        return self._totals[metric]


def _moments(every: _Every, metric: str, pos: np.ndarray, pw: np.ndarray, ps: np.ndarray) -> dict:
    """Sums of the part (mentioning: 1), of the rest (0) and their cross-products, over customers."""
    g = every.totals(metric)
    w_all, s_all = every.pair(metric)
    ew, es = w_all[pos], s_all[pos]
    rw = ew - pw
    rs = np.where(rw > 0, es - ps, 0.0)  # a sum minus itself leaves no rounding dust
    return {
        "W1": float(pw.sum()),
        "S1": float(ps.sum()),
        "SS1": _dot(ps, ps),
        "SW1": _dot(ps, pw),
        "WW1": _dot(pw, pw),
        "C1": float((pw > 0).sum()),
        "W0": g["W"] - float(pw.sum()),
        "S0": g["S"] - float(ps.sum()),
        "SS0": g["SS"] - _dot(es, es) + _dot(rs, rs),
        "SW0": g["SW"] - _dot(es, ew) + _dot(rs, rw),
        "WW0": g["WW"] - _dot(ew, ew) + _dot(rw, rw),
        "C0": g["C"] - float((ew > 0).sum()) + float((rw > 0).sum()),
        "S1S0": _dot(ps, rs),
        "S1W0": _dot(ps, rw),
        "W1S0": _dot(pw, rs),
        "W1W0": _dot(pw, rw),
        "C": g["C"],
    }


def _cluster_var(s: float, w: float, ss: float, sw: float, ww: float, c: float) -> float:
    """``C/(C−1)·Σ_c (S_c − ȳ·W_c)² / (ΣW)²`` from the sums (NaN under two customers)."""
    if c < 2 or w <= 0:
        return NAN
    mean = s / w
    t2 = max(0.0, ss - 2 * mean * sw + mean * mean * ww)
    return c / (c - 1) * t2 / (w * w)


def _n_eff(var: float, u: float, n: float) -> float:
    if math.isnan(var) or n < 2:
        return NAN
    deff = var / (u / (n - 1)) if u > 0 else NAN
    if var <= 0 or u <= 0 or deff <= 1 + 1e-12:
        return n
    return n / deff


def _wilson(p: float, n: float) -> tuple[float, float]:
    if math.isnan(n):
        return NAN, NAN
    z2n = Z * Z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = Z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _proportion(part: np.ndarray, total: np.ndarray) -> tuple[float, float, float, float]:
    """``Σpart / Σtotal`` (counts per customer) with its Wilson interval on the effective n:
    (p, low, high, n_eff) — :func:`relq.measures.clustered.csat_interval_clustered`'s figures."""
    w = float(total.sum())
    if w <= 0:
        return NAN, NAN, NAN, NAN
    s = float(part.sum())
    p = min(1.0, max(0.0, s / w))
    var = _cluster_var(
        s,
        w,
        _dot(part, part),
        _dot(part, total),
        _dot(total, total),
        float((total > 0).sum()),
    )
    n_eff = _n_eff(var, p * (1 - p), w)
    low, high = _wilson(p, n_eff)
    return p, low, high, n_eff


def _nps(p_sum: float, d_sum: float, w: float, ss: float, sw: float, ww: float, c: float) -> tuple:
    """NPS with its adjusted-Wald interval on the effective n: (score, low, high) —
    :func:`relq.measures.clustered.nps_interval_clustered`'s figures."""
    if w <= 0:
        return NAN, NAN, NAN
    p = min(1.0, max(0.0, p_sum / w))
    d = min(1.0 - p, max(0.0, d_sum / w))
    n_eff = _n_eff(_cluster_var(p_sum - d_sum, w, ss, sw, ww, c), max(0.0, p + d - (p - d) ** 2), w)
    if math.isnan(n_eff):
        return 100 * (p - d), NAN, NAN
    n_star = n_eff + 3
    p_star, d_star = (p * n_eff + 0.75) / n_star, (d * n_eff + 0.75) / n_star
    diff = p_star - d_star
    half = Z * math.sqrt((p_star + d_star - diff * diff) / n_star)
    return 100 * (p - d), max(-100.0, 100 * (diff - half)), min(100.0, 100 * (diff + half))


def _difference(m: dict, scale: float) -> tuple[float, float, float, float]:
    """Mean of the part minus the rest, linearised over the customers of both: (delta, low, high,
    p) — :func:`relq.measures.clustered.period_difference`'s formula."""
    if m["W1"] <= 0 or m["W0"] <= 0 or m["C"] < 2:
        return NAN, NAN, NAN, NAN
    m1, m0 = m["S1"] / m["W1"], m["S0"] / m["W0"]
    a2 = m["SS1"] - 2 * m1 * m["SW1"] + m1 * m1 * m["WW1"]
    b2 = m["SS0"] - 2 * m0 * m["SW0"] + m0 * m0 * m["WW0"]
    ab = m["S1S0"] - m0 * m["S1W0"] - m1 * m["W1S0"] + m1 * m0 * m["W1W0"]
    e2 = max(0.0, a2 / m["W1"] ** 2 - 2 * ab / (m["W1"] * m["W0"]) + b2 / m["W0"] ** 2)
    se = scale * math.sqrt(m["C"] / (m["C"] - 1) * e2)
    delta = scale * (m1 - m0)
    if se == 0:
        return delta, delta, delta, NAN
    return delta, delta - Z * se, delta + Z * se, float(2 * _sp.norm.sf(abs(delta / se)))


class _ImpactBase:
    """Every response in view with an NPS, per customer, for the impact on the view's NPS."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.index = frame.index
        self.n = frame["n"].to_numpy(dtype=float)
        self.y = (frame["promoters"] - frame["detractors"]).to_numpy(dtype=float)
        self.total = float(self.n.sum())
        self.ybar = float(self.y.sum()) / self.total if self.total > 0 else NAN
        self.h = self.y - (1 + 2 * self.ybar) * self.n
        self.hh = _dot(self.h, self.h)
        self.customers = int((self.n > 0).sum())

    def impact(self, pos: np.ndarray, detractors: np.ndarray) -> tuple[float, float, float]:
        """:func:`impact_interval` from the theme's detractors per customer (a_c), the customers at
        ``pos`` of this index (-1: a customer without an NPS in view): with
        ``h_c = y_c − (1+2ȳ)·n_c``, ``t_c = (1+ȳ)·a_c + ā·h_c``."""
        if self.total <= 0:
            return NAN, NAN, NAN
        keep = pos >= 0
        a, pos = detractors[keep], pos[keep]
        abar = float(a.sum()) / self.total
        points = 100 * abar * (1 + self.ybar)
        if self.customers < 2:
            return points, NAN, NAN
        k = 1 + self.ybar
        t2 = k * k * _dot(a, a) + 2 * k * abar * _dot(a, self.h[pos]) + abar * abar * self.hh
        var = self.customers / (self.customers - 1) * max(0.0, t2) / (self.total * self.total)
        se = 100 * math.sqrt(var)
        return points, points - Z * se, points + Z * se


def _theme_row(
    theme: str,
    every: _Every,
    part: pd.DataFrame | dict[str, np.ndarray],
    base: _ImpactBase | None,
    pos: np.ndarray | None = None,
    base_pos: np.ndarray | None = None,
) -> dict:
    """One theme's figures; ``part`` holds the per-customer sums of the responses mentioning it
    (only the customers who mention it), indexed by customer — or, as arrays by column, in any order
    with ``pos``, their places in ``every``, and ``base_pos``, in ``base`` (found once for every
    theme)."""
    if pos is None:
        pos = every.index.get_indexer(part.index)
    if (pos < 0).any():
        raise ValueError("a customer mentions a theme without a read comment in view.")
    cols = {c: np.asarray(part[c], dtype=float) for c in _SUM_COLUMNS}
    n_all = every.cols["n"]
    mentions = cols["n"]
    aligned = np.zeros_like(n_all)
    aligned[pos] = mentions
    share = _proportion(aligned, n_all)
    m = _moments(every, "nps", pos, cols["nps_w"], cols["promoters"] - cols["detractors"])
    p1, d1 = float(cols["promoters"].sum()), float(cols["detractors"].sum())
    p_all, d_all = float(every.cols["promoters"].sum()), float(every.cols["detractors"].sum())
    with_ = _nps(p1, d1, m["W1"], m["SS1"], m["SW1"], m["WW1"], m["C1"])
    without = _nps(p_all - p1, d_all - d1, m["W0"], m["SS0"], m["SW0"], m["WW0"], m["C0"])
    delta = _difference(m, 100.0)
    row = {
        "theme": theme,
        "responses": int(mentions.sum()),
        "customers": int((mentions > 0).sum()),
        "comments": int(n_all.sum()),
        "share": share[0],
        "share_low": share[1],
        "share_high": share[2],
        "share_n_eff": share[3],
        "nps_n": int(m["W1"]),
        "nps_with": with_[0],
        "nps_with_low": with_[1],
        "nps_with_high": with_[2],
        "nps_without": without[0],
        "nps_without_low": without[1],
        "nps_without_high": without[2],
        "nps_delta": delta[0],
        "nps_delta_low": delta[1],
        "nps_delta_high": delta[2],
        "nps_p": delta[3],
    }
    for pillar in PILLARS:
        mp = _moments(every, pillar, pos, cols[f"{pillar}_w"], cols[f"{pillar}_s"])
        d = _difference(mp, 1.0)
        row.update(
            {
                f"{pillar}_with": mp["S1"] / mp["W1"] if mp["W1"] > 0 else NAN,
                f"{pillar}_without": mp["S0"] / mp["W0"] if mp["W0"] > 0 else NAN,
                f"{pillar}_delta": d[0],
                f"{pillar}_delta_low": d[1],
                f"{pillar}_delta_high": d[2],
                f"{pillar}_p": d[3],
            }
        )
    for label in SENTIMENTS:
        row[f"{label}_share"], row[f"{label}_low"], row[f"{label}_high"], _ = _proportion(
            cols[label], mentions
        )
    if base is None:
        impact = (NAN, NAN, NAN)
    else:
        where = base.index.get_indexer(part.index) if base_pos is None else base_pos
        impact = base.impact(where, cols["detractors"])
    row.update(
        {
            "impact": impact[0],
            "impact_low": impact[1],
            "impact_high": impact[2],
            "detractors": int(cols["detractors"].sum()),
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
    every = _Every(_commented_sums(conn, flt).set_index("cluster"))
    per_theme = _theme_sums(conn, flt)
    base = _ImpactBase(_nps_sums(conn, flt).set_index("cluster"))
    rows = []
    # each mention's customer found once among the commented and the NPS answers, not per theme
    clusters = pd.Index(per_theme["cluster"])
    places = {"pos": every.index.get_indexer(clusters), "base_pos": base.index.get_indexer(clusters)}
    groups = per_theme.groupby("theme", sort=False).indices if not per_theme.empty else {}
    sums = {c: per_theme[c].to_numpy(dtype=float) for c in _SUM_COLUMNS}
    empty = every.frame.iloc[0:0]
    for item in catalog.itertuples(index=False):
        at = groups.get(item.theme)
        if at is None:
            row = _theme_row(item.theme, every, empty, base)
        else:
            part = {c: sums[c][at] for c in _SUM_COLUMNS}
            row = _theme_row(item.theme, every, part, base, *(places[k][at] for k in ("pos", "base_pos")))
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


def pending_count(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> int:
    """Stored comments not read for themes yet: every one of them, whichever view ``flt`` is (the
    refresh reads them all), so a page keeps the count once per data version, not once per filter."""
    return stored.pending_comments(conn)


def theme_overview(conn: Connection, flt: SegmentFilter = SegmentFilter(), pending: bool = True) -> dict:
    """Comments in view read for themes, how many mention a theme, how many are in another
    language (not themed), how many are waiting to be read (every stored one, whatever the view:
    without ``pending`` the caller counts them itself, see :func:`pending_count`), and the latest
    discovery. One grouped query per language gives the counts of the view."""
    if _stored(conn, flt):
        query = (
            sa.select(
                TS.c.language,
                sa.func.sum(TS.c.n).label("comments"),
                sa.func.sum(TS.c.other_language).label("other_language"),
                sa.func.sum(TS.c.themed).label("themed"),
            )
            .where(customer_sums.on_source(TS, flt.response_clause()), TS.c.theme == "")
            .group_by(TS.c.language)
        )
    else:
        query = (
            sa.select(
                F.c.language,
                sa.func.count().label("comments"),
                _count_if(sa.not_(F.c.themable), "other_language"),
                _count_if(stored.themed_clause(), "themed"),
            )
            .select_from(R.join(F, F.c.response_id == R.c.response_id))
            .where(flt.response_clause())
            .group_by(F.c.language)
        )
    rows = conn.execute(query).all()
    comments = sum(int(r.comments) for r in rows)
    themed = sum(int(r.themed) for r in rows)
    languages = sorted(
        ((str(r.language), int(r.comments)) for r in rows), key=lambda pair: (-pair[1], pair[0])
    )
    model = stored.latest_model(conn)
    return {
        "comments": comments,
        "themed": themed,
        "other_language": sum(int(r.other_language) for r in rows),
        "not_themed": comments - themed,
        "pending": stored.pending_comments(conn) if pending else None,
        "languages": dict(languages),
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
    rows = []
    for value, seg_all in every.groupby("segment", dropna=False):
        seg_all = seg_all.drop(columns="segment").set_index("cluster")
        mentions = part[part["segment"] == value].drop(columns=["segment", "theme"]).set_index("cluster")
        row = _theme_row(theme, _Every(seg_all), mentions, None)
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
