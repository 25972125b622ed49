"""What customers talk about: each comment theme's share of the comments, what it does to NPS and
the pillars, its trend, sentiment and segments — from the stored assignments (``comment_themes``,
written by :mod:`relq.ingest.themes`).

The unit is the customer (Methodology page). SQL forms per-customer sums — responses in view
with a read comment, and those mentioning each theme — and adds up, per theme, what the clustered
formulas of :mod:`relq.measures.clustered` need from them (one row per theme, never a row per
customer), each customer a cluster (an unmatched response a cluster of its own):

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
from types import SimpleNamespace

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats as _sp
from sqlalchemy.engine import Connection

from relq.core.settings import resolve_min_n
from relq.measures import clustered, customer_sums
from relq.store import database, dialects, schema
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
    "rebuild_theme_cells",
    "save_theme_cells",
]

R = schema.survey_responses
F = schema.comment_facts
T = schema.comment_themes
C = schema.customers
TS = schema.theme_sums
SGT = schema.segment_themes
_CELLS = schema.SEGMENT_SUM_DIMENSIONS
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


def _cells_of(source, customer_id) -> tuple[list, sa.Join]:
    """The segment cell of each row of ``source`` (its customer's value of each dimension of
    ``schema.SEGMENT_SUM_DIMENSIONS``; none for an unmatched response): the columns, and ``source``
    joined to the customers on ``customer_id``."""
    return [C.c[d] for d in _CELLS], source.outerjoin(C, C.c.customer_id == customer_id)


def _in_cells(per_customer: sa.Select) -> sa.Select:
    """The rows of a query per customer (its column ``cluster``) with the customer's segment cell."""
    rows = per_customer.subquery()
    dims, source = _cells_of(rows, rows.c.cluster)
    return sa.select(rows, *dims).select_from(source)


def _stored_query(flt: SegmentFilter, keys: list, where) -> sa.Select:
    """Per ``keys`` (written on ``survey_responses``) and customer: the stored sums of the rows
    ``where`` (on ``theme_sums``) in view ``flt`` — the names and figures the responses give."""
    on = customer_sums.on_source
    keys = [on(TS, k.element).label(k.name) for k in keys]
    cluster = on(TS, _cluster().element).label("cluster")
    sums = [sa.func.sum(TS.c[name]).label(name) for name in _SUM_COLUMNS]
    return (
        sa.select(*keys, cluster, *sums)
        .where(on(TS, flt.response_clause()), where)
        .group_by(*[k.element for k in keys], cluster.element)
    )


def _frame(conn: Connection, query) -> pd.DataFrame:
    """The rows of ``query`` as a frame, every column but the keys as floats; DuckDB hands them
    over columnar."""
    result = conn.execute(query)
    columns = list(result.keys())
    if conn.dialect.name == "duckdb" and hasattr(result.cursor, "fetchdf"):
        frame = result.cursor.fetchdf()
        frame.columns = columns
    else:
        frame = pd.DataFrame(result.fetchall(), columns=columns)
    for col in frame.columns:
        if col not in _KEYS:
            frame[col] = pd.to_numeric(frame[col]).astype(float)
    return frame


def _commented_query(conn: Connection, flt: SegmentFilter, by=()) -> sa.Select:
    """Per customer (and ``by``): responses in view whose comment was read, with their scores."""
    if _stored(conn, flt):
        return _stored_query(flt, list(by), TS.c.theme == "")
    return (
        sa.select(*by, _cluster(), *_score_sums(with_sentiment=True))
        .select_from(R.join(F, F.c.response_id == R.c.response_id))
        .where(flt.response_clause())
        .group_by(*by, sa.literal_column("cluster"))
    )


def _theme_query(conn: Connection, flt: SegmentFilter, themes=None, by=()) -> sa.Select:
    """Per theme and customer (and ``by``): responses in view mentioning the theme."""
    if _stored(conn, flt):
        where = TS.c.theme != "" if themes is None else TS.c.theme.in_(list(themes))
        return _stored_query(flt, [TS.c.theme.label("theme"), *by], where)
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
    return query


def _nps_query(conn: Connection, flt: SegmentFilter) -> sa.Select:
    """Per customer: every response in view with an NPS (for the impact on the view's NPS) — the
    per-customer sums every clustered score reads, from the stored month sums when they fit."""
    pc = customer_sums.per_customer(flt, scores=("nps",), source=customer_sums.customer_source(conn, flt))
    cluster = sa.func.coalesce(pc.c.cid, sa.literal("~") + pc.c.lone).label("cluster")
    return sa.select(
        cluster,
        pc.c.nps_n.label("n"),
        pc.c.nps_p.label("promoters"),
        pc.c.nps_d.label("detractors"),
    ).where(pc.c.nps_n > 0)


def _segment_query(flt: SegmentFilter, segment, theme: str | None) -> sa.Select:
    """Per segment and customer: responses in view with a read comment (mentioning ``theme``)."""
    joined = R.join(F, F.c.response_id == R.c.response_id).join(C, C.c.customer_id == R.c.customer_id)
    where = [flt.response_clause()]
    cols = [segment, _cluster(), *_score_sums(with_sentiment=True)]
    if theme is not None:
        joined = joined.join(T, T.c.response_id == R.c.response_id)
        where += [T.c.theme == theme, T.c.source.in_(_THEME_SOURCES)]
        cols = [T.c.theme, *cols]
    return sa.select(*cols).select_from(joined).where(*where).group_by(*cols[: -len(_score_sums(True))])


# --------------------------------------------------------------------------- SQL: the figures' sums

# A theme's figures come from sums over customers (clusters). Those of the responses that do not
# mention it are the view's sums minus the theme's, so only the customers who mention it are
# visited: Σ_c rest_c·rest'_c = Σ_c every_c·every'_c − Σ_{c mentions} (every·every' − rest·rest').
# The database adds these up — the view's totals, and per theme the sums over its customers of
# their mentions, of their responses with a comment and of the rest, and of the products of these
# — and returns one row per theme (per month, per segment), never a row per customer. The formulas
# are those of relq.measures.clustered (ultimate-cluster variance, effective n, Wilson, adjusted
# Wald, the linearised difference); the tests check they agree on the aligned per-customer arrays.

_WEIGHT = {"nps": "nps_w", **{p: f"{p}_w" for p in PILLARS}}
_SUM_COLUMNS = tuple(c.name for c in _score_sums(with_sentiment=True))  # a theme's per-customer sums
_KEYS = ("cluster", "theme", "segment", "month", "language", *_CELLS)


def _sum(x):
    return sa.func.coalesce(sa.func.sum(x), 0.0)


def _positive(x):
    """How many rows have ``x`` > 0 (customers with some answers)."""
    return _sum(sa.case((x > 0, 1.0), else_=0.0))


def _double(sums, name: str):
    return sa.cast(sums.c[name], sa.Double)


def _nps_score(sums):
    """The NPS answers' sum of −1/0/+1 scores: promoters − detractors."""
    return _double(sums, "promoters") - _double(sums, "detractors")


def _outcomes(sums) -> list:
    """Σ promoters and Σ detractors over the rows of ``sums``."""
    return [_sum(_double(sums, name)).label(name) for name in ("promoters", "detractors")]


def _weight_score(sums, metric: str) -> tuple:
    """A metric's answers (its weight W) and their sum (S; NPS: promoters − detractors)."""
    if metric == "nps":
        return _double(sums, "nps_w"), _nps_score(sums)
    return _double(sums, _WEIGHT[metric]), _double(sums, f"{metric}_s")


def _total_columns(e, share_only: bool) -> list:
    """The view's totals over the customers of ``e`` (responses with a read comment)."""
    n = _double(e, "n")
    cols = [_sum(n).label("N"), _sum(n * n).label("NN"), _positive(n).label("NC")]
    if share_only:
        return cols
    cols += _outcomes(e)
    for metric in METRICS:
        w, s = _weight_score(e, metric)
        named = {"W": w, "S": s, "SS": s * s, "SW": s * w, "WW": w * w}
        cols += [_sum(x).label(f"{metric}_{k}") for k, x in named.items()]
        cols.append(_positive(w).label(f"{metric}_C"))
    return cols


def _theme_columns(p, e, share_only: bool, impact: bool) -> list:
    """Per theme, over the customers mentioning it: the sums of their mentions (``p``), of the
    products with their responses with a comment (``e``) and with the rest (e − p) and, for the
    ``impact``, of the detractors mentioning it times their NPS answers in view (``e``'s base_n and
    base_y)."""
    pn = _double(p, "n")
    cols = [
        _sum(pn).label("n"),
        _positive(pn).label("customers"),
        _sum(pn * pn).label("nn"),
        _sum(pn * _double(e, "n")).label("nN"),
    ]
    if share_only:
        return cols
    cols += _outcomes(p)
    for label in SENTIMENTS:
        x = _double(p, label)
        cols += [_sum(x).label(label), _sum(x * x).label(f"{label}_xx"), _sum(x * pn).label(f"{label}_xn")]
    for metric in METRICS:
        pw, ps = _weight_score(p, metric)
        ew, es = _weight_score(e, metric)
        rw = ew - pw
        rs = sa.case((rw > 0, es - ps), else_=0.0)  # a sum minus itself leaves no rounding dust
        named = {
            "W1": pw,
            "S1": ps,
            "SS1": ps * ps,
            "SW1": ps * pw,
            "WW1": pw * pw,
            "ESS": es * es,
            "ESW": es * ew,
            "EWW": ew * ew,
            "RSS": rs * rs,
            "RSW": rs * rw,
            "RWW": rw * rw,
            "S1S0": ps * rs,
            "S1W0": ps * rw,
            "W1S0": pw * rs,
            "W1W0": pw * rw,
        }
        cols += [_sum(x).label(f"{metric}_{k}") for k, x in named.items()]
        cols += [_positive(x).label(f"{metric}_{k}") for k, x in (("C1", pw), ("EC", ew), ("RC", rw))]
    if impact:  # a detractor's customer has an NPS answer in view: base_n and base_y are there
        a = _double(p, "detractors")
        named = {"a": a, "aa": a * a, "ay": a * e.c.base_y, "an": a * e.c.base_n}
        cols += [_sum(x).label(f"impact_{k}") for k, x in named.items()]
    return cols


@dataclass(frozen=True)
class _FigureSums:
    """What the figures of the themes are computed from: the view's totals (per key), each theme's
    sums (per key) and, for the impact, the totals of every NPS answer in view."""

    totals: pd.DataFrame
    themes: pd.DataFrame
    base: dict | pd.DataFrame | None  # a frame when summed per keys (the segment cells)

    def zeros(self) -> dict[str, float]:
        """The sums of a theme no customer in view mentions."""
        return {c: 0.0 for c in self.themes.columns if c not in _KEYS}


def _figure_sums(
    conn: Connection,
    every: sa.Select,
    part: sa.Select,
    keys: tuple[str, ...] = (),
    base: sa.Select | None = None,
    share_only: bool = False,
    matched: tuple[str, ...] | None = None,
) -> _FigureSums:
    """Three grouped reads of per-customer sums (``every``: responses with a read comment; ``part``:
    those mentioning each theme; ``base``: every NPS answer), added up in the database per ``keys``
    (columns of both; of ``base`` too when it has them: the base is then a frame per ``keys``, else
    one dict). A theme's row of a customer meets the customer's row of ``every`` with the same
    ``matched`` keys (all of ``keys`` unless told: a month; not a segment, which the customer
    decides)."""
    e, p = every.subquery("every"), part.subquery("part")
    group = [e.c[k] for k in keys]
    totals = _frame(conn, sa.select(*group, *_total_columns(e, share_only)).group_by(*group))
    b = None if base is None else base.subquery("base")
    if b is not None:  # each customer's NPS answers in view beside its comments
        e = (
            sa.select(e, _double(b, "n").label("base_n"), _nps_score(b).label("base_y"))
            .select_from(e.outerjoin(b, b.c.cluster == e.c.cluster))
            .subquery("every")
        )
    on = keys if matched is None else matched
    joined = p.join(e, sa.and_(p.c.cluster == e.c.cluster, *[p.c[k] == e.c[k] for k in on]))
    group = [p.c.theme, *[p.c[k] for k in keys]]
    columns = _theme_columns(p, e, share_only, impact=b is not None)
    themes = _frame(conn, sa.select(*group, *columns).select_from(joined).group_by(*group))
    if b is None:
        return _FigureSums(totals, themes, None)
    n, y = _double(b, "n"), _nps_score(b)
    named = {"N": n, "Y": y, "YY": y * y, "YN": y * n, "NN": n * n}
    query = sa.select(*[_sum(x).label(k) for k, x in named.items()], _positive(n).label("C"))
    by = [b.c[k] for k in keys if k in b.c]
    if by:
        return _FigureSums(totals, themes, _frame(conn, query.add_columns(*by).group_by(*by)))
    return _FigureSums(totals, themes, dict(conn.execute(query).mappings().one()))


# --------------------------------------------------------------------------- the sums per segment cell

# A view choosing segments of schema.SEGMENT_SUM_DIMENSIONS only, over the whole history, adds up
# its cells' rows of schema.segment_themes instead of its customers' rows of theme_sums: every sum
# above is a sum over customers, and a customer is in one cell.


def rebuild_theme_cells(conn: Connection) -> bool:
    """Rebuild the themes' sums per segment cell (``schema.segment_themes``) inside ``conn``'s
    transaction from the stored month sums of the themes (current ones) and the customers' NPS
    answers: what :func:`theme_table` and :func:`theme_overview` add up (the view's totals, each
    theme's sums, the NPS base, the comments per language), per cell, marked with the data version.
    False on ClickHouse or when the month sums are not current (nothing is built)."""
    if dialects.is_clickhouse(conn) or not stored.theme_sums_ready(conn):
        return False
    everything = SegmentFilter()
    # each customer's sums first, then its cell: grouped by the cells' names too, the query held 0.2 GB
    # more on the large tier
    every = _in_cells(_stored_query(everything, [], TS.c.theme == ""))
    part = _in_cells(_stored_query(everything, [TS.c.theme.label("theme")], TS.c.theme != ""))
    base = _in_cells(_nps_query(conn, everything))
    sums = _figure_sums(conn, every, part, keys=_CELLS, base=base, matched=())
    languages = _frame(conn, _language_query(everything, cells=True))
    frames = {
        "totals": sums.totals.assign(key=""),
        "theme": sums.themes.rename(columns={"theme": "key"}),
        "base": sums.base.assign(key=""),
        "language": languages.rename(columns={"language": "key"}),
    }
    with database.rebuilding_derived_in(conn, stored.THEME_CELLS, (SGT,)):
        for name, frame in frames.items():  # a few hundred cells at a time: a row per statistic
            for start in range(0, len(frame), _CELL_ROWS):
                part = frame.iloc[start : start + _CELL_ROWS].assign(part=name)
                customer_sums.save_cell_stats(
                    conn, SGT, customer_sums.cell_stat_rows(part, keys=("part", "key"))
                )
    return True


# Rows of the sums per cell (a cell, or a cell and theme) made long and written at a time: each holds
# about a hundred statistics, and all of them at once on the large tier (11k rows, 750k statistics)
# took the import's refresh of the themes 0.7 GB past its memory.
_CELL_ROWS = 500


def save_theme_cells(engine) -> bool:
    """:func:`rebuild_theme_cells` in a transaction of its own — after a change of the stored data or
    of the themes (whose transaction rebuilt their month sums and so forgot the cells) — unless they
    are current already."""
    if dialects.is_clickhouse(engine):
        return False
    with engine.begin() as conn:
        database.serialise_imports(conn)
        return stored.theme_cells_ready(conn) or rebuild_theme_cells(conn)


def _cells_fit(conn: Connection, flt: SegmentFilter) -> bool:
    """Whether the sums per segment cell stand in for view ``flt``'s customers: the whole history,
    segments of the cells' dimensions only, and the cells current."""
    return flt.whole_history and flt.picks_cells() and stored.theme_cells_ready(conn)


def _cell_parts(conn: Connection, flt: SegmentFilter, *parts: str) -> dict[str, dict[str, dict[str, float]]]:
    """``parts`` of the sums per segment cell added up over the view's cells: part → key → stat → value."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for part, key, stat, value in customer_sums.cell_stats(
        conn, SGT, flt, keys=("part", "key"), where=SGT.c.part.in_(parts)
    ):
        out.setdefault(part, {}).setdefault(key, {})[stat] = float(value)
    return out


def _cell_figure_sums(conn: Connection, flt: SegmentFilter) -> _FigureSums | None:
    """:func:`theme_table`'s sums added up from the view's segment cells; None when no cell of the
    view has a read comment or a theme (the view's own rows then say what is there)."""
    parts = _cell_parts(conn, flt, "totals", "theme", "base")
    if not all(parts.get(name) for name in ("totals", "theme", "base")):
        return None
    themes = pd.DataFrame([{"theme": key, **stats} for key, stats in parts["theme"].items()])
    return _FigureSums(pd.DataFrame([parts["totals"][""]]), themes, parts["base"][""])


# --------------------------------------------------------------------------- figures


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b. Not np.dot: on a busy machine BLAS threads make it tens of times slower here."""
    return float(np.einsum("i,i->", a, b))


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


def _proportion(s: float, w: float, ss: float, sw: float, ww: float, c: float) -> tuple:
    """``Σpart / Σtotal`` from sums over customers (Σpart, Σtotal, Σpart², Σpart·total, Σtotal²,
    customers) with its Wilson interval on the effective n: (p, low, high, n_eff) —
    :func:`relq.measures.clustered.csat_interval_clustered`'s figures."""
    if w <= 0:
        return NAN, NAN, NAN, NAN
    p = min(1.0, max(0.0, s / w))
    n_eff = _n_eff(_cluster_var(s, w, ss, sw, ww, c), p * (1 - p), w)
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


def _moments(g, t, metric: str) -> dict:
    """Sums of the part (mentioning: 1), of the rest (0) and their cross-products, over customers:
    the theme's ``t`` and the view's totals ``g``."""

    def part(k: str) -> float:
        return float(t[f"{metric}_{k}"])

    def every(k: str) -> float:
        return float(g[f"{metric}_{k}"])

    return {
        **{k: part(k) for k in ("W1", "S1", "SS1", "SW1", "WW1", "C1", "S1S0", "S1W0", "W1S0", "W1W0")},
        "W0": every("W") - part("W1"),
        "S0": every("S") - part("S1"),
        "SS0": every("SS") - part("ESS") + part("RSS"),
        "SW0": every("SW") - part("ESW") + part("RSW"),
        "WW0": every("WW") - part("EWW") + part("RWW"),
        "C0": every("C") - part("EC") + part("RC"),
        "C": every("C"),
    }


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


def _impact(base: dict, t) -> tuple[float, float, float]:
    """:func:`impact_interval` from the totals of every NPS answer in view (``base``: N, Y = Σy,
    YY, YN, NN, C) and the theme's sums of its detractors a_c with an NPS in view (``t``): with
    ``h_c = y_c − (1+2ȳ)·n_c``, ``t_c = (1+ȳ)·a_c + ā·h_c``."""
    total, customers = float(base["N"]), float(base["C"])
    if total <= 0:
        return NAN, NAN, NAN
    ybar = float(base["Y"]) / total
    abar = float(t["impact_a"]) / total
    points = 100 * abar * (1 + ybar)
    if customers < 2:
        return points, NAN, NAN
    k, j = 1 + ybar, 1 + 2 * ybar
    hh = float(base["YY"]) - 2 * j * float(base["YN"]) + j * j * float(base["NN"])
    ah = float(t["impact_ay"]) - j * float(t["impact_an"])
    t2 = k * k * float(t["impact_aa"]) + 2 * k * abar * ah + abar * abar * hh
    var = customers / (customers - 1) * max(0.0, t2) / (total * total)
    se = 100 * math.sqrt(var)
    return points, points - Z * se, points + Z * se


def _theme_row(theme: str, t, g, base: dict | None) -> dict:
    """One theme's figures from its sums ``t`` and the view's totals ``g`` (:func:`_figure_sums`)."""
    share = _proportion(t["n"], g["N"], t["nn"], t["nN"], g["NN"], g["NC"])
    m = _moments(g, t, "nps")
    p1, d1 = float(t["promoters"]), float(t["detractors"])
    with_ = _nps(p1, d1, m["W1"], m["SS1"], m["SW1"], m["WW1"], m["C1"])
    rest = (float(g["promoters"]) - p1, float(g["detractors"]) - d1)
    without = _nps(*rest, m["W0"], m["SS0"], m["SW0"], m["WW0"], m["C0"])
    delta = _difference(m, 100.0)
    row = {
        "theme": theme,
        "responses": int(t["n"]),
        "customers": int(t["customers"]),
        "comments": int(g["N"]),
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
        mp = _moments(g, t, pillar)
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
        mix = _proportion(t[label], t["n"], t[f"{label}_xx"], t[f"{label}_xn"], t["nn"], t["customers"])
        row[f"{label}_share"], row[f"{label}_low"], row[f"{label}_high"], _ = mix
    impact = (NAN, NAN, NAN) if base is None else _impact(base, t)
    row.update(
        {
            "impact": impact[0],
            "impact_low": impact[1],
            "impact_high": impact[2],
            "detractors": int(t["detractors"]),
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
    sums = _cell_figure_sums(conn, flt) if _cells_fit(conn, flt) else None
    if sums is None:
        sums = _figure_sums(
            conn, _commented_query(conn, flt), _theme_query(conn, flt), base=_nps_query(conn, flt)
        )
    totals = sums.totals.iloc[0]
    per_theme = {row["theme"]: row for row in sums.themes.to_dict("records")}
    zeros = sums.zeros()
    rows = []
    for item in catalog.itertuples(index=False):
        row = _theme_row(item.theme, per_theme.get(item.theme, zeros), totals, sums.base)
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


def _language_query(flt: SegmentFilter, stored_sums: bool = True, cells: bool = False) -> sa.Select:
    """Per language (and, when ``cells``, segment cell): the comments in view read for themes, those
    in another language and those mentioning a theme — from the stored month sums, or without
    ``stored_sums`` from the comments' facts."""
    if not stored_sums:
        return (
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
    dims, source = _cells_of(TS, TS.c.customer_id) if cells else ([], TS)
    return (
        sa.select(
            TS.c.language,
            *dims,
            sa.func.sum(TS.c.n).label("comments"),
            sa.func.sum(TS.c.other_language).label("other_language"),
            sa.func.sum(TS.c.themed).label("themed"),
        )
        .select_from(source)
        .where(customer_sums.on_source(TS, flt.response_clause()), TS.c.theme == "")
        .group_by(TS.c.language, *dims)
    )


def theme_overview(conn: Connection, flt: SegmentFilter = SegmentFilter(), pending: bool = True) -> dict:
    """Comments in view read for themes, how many mention a theme, how many are in another
    language (not themed), how many are waiting to be read (every stored one, whatever the view:
    without ``pending`` the caller counts them itself, see :func:`pending_count`), and the latest
    discovery. One grouped query per language gives the counts of the view."""
    if _cells_fit(conn, flt):
        counted = _cell_parts(conn, flt, "language").get("language", {})
        rows = [SimpleNamespace(language=key, **stats) for key, stats in counted.items()]
    else:
        rows = conn.execute(_language_query(flt, stored_sums=_stored(conn, flt))).all()
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
    every = _commented_query(conn, flt, by=(month,))
    part = _theme_query(conn, flt, themes=themes or None, by=(month,))
    sums = _figure_sums(conn, every, part, keys=("month",), share_only=True)
    months = {row["month"]: row for row in sums.totals.to_dict("records")}
    rows = []
    for t in sums.themes.to_dict("records"):
        g = months[t["month"]]
        share = _proportion(t["n"], g["N"], t["nn"], t["nN"], g["NN"], g["NC"])
        rows.append(
            {
                "theme": t["theme"],
                "month": pd.Timestamp(t["month"]),
                "comments": int(g["N"]),
                "responses": int(t["n"]),
                "customers": int(t["customers"]),
                "share": share[0],
                "low": share[1],
                "high": share[2],
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
    every = _segment_query(joined_flt, segment, theme=None)
    part = _segment_query(joined_flt, segment, theme=theme)
    # a customer is in one segment: its mentions meet its comments by the customer alone (an
    # unmatched response, whose segment is empty, is its own customer)
    sums = _figure_sums(conn, every, part, keys=("segment",), matched=())
    rows = []
    zeros = sums.zeros()
    mentioned = {_segment_name(t["segment"]): t for t in sums.themes.to_dict("records")}
    for g in sums.totals.to_dict("records"):
        name = _segment_name(g["segment"])
        row = _theme_row(theme, mentioned.get(name, zeros), g, None)
        row["segment"] = name
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


def _segment_name(value):
    return "(no value)" if value is None or (isinstance(value, float) and math.isnan(value)) else value


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
