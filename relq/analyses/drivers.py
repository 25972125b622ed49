"""What drives NPS: how much of its variance each pillar explains, with intervals.

- **Shapley / LMG decomposition of R²** (Lindeman, Merenda & Gold 1980; Grömping 2006, J. Stat.
  Softw. 17(1)): each pillar's share is its increase in R² averaged over all 3! orders of entering
  the regression. It is computed exactly from the correlation matrix, which comes from SQL
  sufficient statistics (n, Σx, Σxxᵀ) — no rows leave the database for the point estimate.
- **Bootstrap intervals**: percentile intervals over resamples of at most 20,000 rows pulled in
  SQL in a fixed pseudo-random order (md5 of response id and seed), so the same filter gives the
  same interval on DuckDB and PostgreSQL.
- **Plain correlations** with Fisher-z intervals, next to the decomposition.
- **Importance × performance** for the pillars and their items: correlation with NPS against
  the mean (0–100).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.core.instrument import Instrument, configured_instrument
from relq.core.settings import resolve_min_n
from relq.measures import stats
from relq.store import schema
from relq.store.filters import SegmentFilter, customer_dimension
from relq.store.schema import PILLARS

__all__ = [
    "OUTCOME",
    "MAX_BOOTSTRAP_ROWS",
    "r_squared",
    "shapley_r2",
    "moments",
    "sample_rows",
    "driver_importance",
    "item_importance",
    "importance_performance",
    "churn_hazard_ratios",
]

R = schema.survey_responses
A = schema.survey_answers
OUTCOME = "nps"
MAX_BOOTSTRAP_ROWS = 20_000
_COLUMNS = [
    "segment",
    "predictor",
    "n",
    "customers",
    "small",
    "r",
    "r_low",
    "r_high",
    "lmg",
    "lmg_low",
    "lmg_high",
    "share",
    "r2",
    "r2_low",
    "r2_high",
]


def _fisher(r: float, n: int) -> stats.Interval:
    """Pearson r with its Fisher-z 95% interval; all NaN (with n) when r is undefined."""
    if math.isnan(r):
        return stats.Interval(math.nan, math.nan, math.nan, n)
    return stats.pearson_interval(float(r), n)


def r_squared(corr: np.ndarray, predictors: tuple[int, ...], outcome: int) -> float:
    """R² of the regression of ``outcome`` on ``predictors``: ``r_yS R_SS⁻¹ r_Sy``; for two
    predictors ``(r₁² + r₂² − 2r₁r₂r₁₂) / (1 − r₁₂²)``.

    >>> corr = np.array([[1.0, 0.5, 0.6], [0.5, 1.0, 0.7], [0.6, 0.7, 1.0]])
    >>> round(r_squared(corr, (0, 1), 2), 4)
    0.5733
    """
    if not predictors:
        return 0.0
    idx = list(predictors)
    r_xy = corr[idx, outcome]
    solved = np.linalg.lstsq(corr[np.ix_(idx, idx)], r_xy, rcond=None)[0]
    return float(r_xy @ solved)


def shapley_r2(corr: np.ndarray, outcome: int = -1) -> np.ndarray:
    """Exact Shapley (LMG) share of R² for every variable but ``outcome``; they sum to the full R².

    ``φⱼ = Σ_{S ⊆ P∖{j}} |S|! (p−|S|−1)! / p! · (R²(S ∪ {j}) − R²(S))`` — the average over all p!
    orders, computed over the 2ᵖ subsets. NaN when the matrix has NaN (a constant column).

    >>> corr = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 1.0]])
    >>> shapley_r2(corr).round(3).tolist()
    [0.25, 0.25]
    """
    corr = np.asarray(corr, dtype=float)
    k = corr.shape[0]
    outcome = outcome % k
    predictors = [i for i in range(k) if i != outcome]
    p = len(predictors)
    if np.isnan(corr).any():
        return np.full(p, np.nan)
    r2 = {
        subset: r_squared(corr, subset, outcome)
        for size in range(p + 1)
        for subset in combinations(predictors, size)
    }
    out = np.zeros(p)
    for j, var in enumerate(predictors):
        others = [v for v in predictors if v != var]
        for size in range(p):
            weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
            for subset in combinations(others, size):
                with_j = tuple(sorted((*subset, var)))
                out[j] += weight * (r2[with_j] - r2[subset])
    return out


def _variables(pillars: tuple[str, ...]) -> list[str]:
    return [*pillars, OUTCOME]


def _complete(columns) -> sa.ColumnElement:
    return sa.and_(*[c.is_not(None) for c in columns])


def moments(
    conn: Connection, flt: SegmentFilter, dimension: str | None = None, pillars=PILLARS
) -> pd.DataFrame:
    """Sufficient statistics per segment (or overall): segment, n, Σx for every variable and Σxy
    for every pair, over responses having all pillars and NPS. One grouped query."""
    names = _variables(tuple(pillars))
    cols = [sa.cast(R.c[name], sa.Float) for name in names]
    segment = (
        sa.func.coalesce(sa.cast(customer_dimension(dimension), sa.Text), "(no value)")
        if dimension
        else sa.literal("All responses")
    ).label("segment")
    select = [
        segment,
        sa.func.count().label("n"),
        sa.func.count(sa.distinct(R.c.customer_id)).label("customers"),
        *[sa.func.sum(c).label(f"s_{i}") for i, c in enumerate(cols)],
        *[
            sa.func.sum(cols[i] * cols[j]).label(f"c_{i}_{j}")
            for i in range(len(cols))
            for j in range(i, len(cols))
        ],
    ]
    source = R.outerjoin(schema.customers, R.c.customer_id == schema.customers.c.customer_id)
    stmt = (
        sa.select(*select)
        .select_from(source)
        .where(flt.response_clause(), _complete([R.c[n] for n in names]))
    )
    if dimension:  # in order: the bootstrap draws segment after segment from one seeded generator
        stmt = stmt.group_by(segment).order_by(segment)
    return pd.DataFrame(conn.execute(stmt).mappings().all())


def _correlation(row, k: int) -> tuple[int, np.ndarray]:
    n = int(row["n"] or 0)
    sums = np.array([float(row[f"s_{i}"] or 0.0) for i in range(k)])
    cross = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            cross[i, j] = cross[j, i] = float(row[f"c_{i}_{j}"] or 0.0)
    cov = stats.covariance_from_sums(n, sums, cross)
    if n < 3:
        return n, np.full((k, k), np.nan)
    return n, stats.correlation_from_cov(cov)


def sample_rows(
    conn: Connection,
    flt: SegmentFilter,
    columns: tuple[str, ...] = (*PILLARS, OUTCOME),
    dimension: str | None = None,
    limit: int = MAX_BOOTSTRAP_ROWS,
    seed: int = 20240601,
) -> pd.DataFrame:
    """Up to ``limit`` complete rows in a fixed pseudo-random order (md5 of response id + seed),
    the same on every engine; with ``dimension`` a ``segment`` column is added."""
    if limit > MAX_BOOTSTRAP_ROWS:
        raise ValueError(f"at most {MAX_BOOTSTRAP_ROWS:,} rows are pulled for the bootstrap, not {limit:,}.")
    order = sa.func.md5(sa.func.concat(R.c.response_id, sa.literal(str(seed))))
    select = [R.c[c] for c in columns]
    if dimension:
        select.append(
            sa.func.coalesce(sa.cast(customer_dimension(dimension), sa.Text), "(no value)").label("segment")
        )
    stmt = (
        sa.select(*select)
        .select_from(R.outerjoin(schema.customers, R.c.customer_id == schema.customers.c.customer_id))
        .where(flt.response_clause(), _complete([R.c[c] for c in columns]))
        .order_by(order)
        .limit(limit)
    )
    frame = pd.DataFrame(conn.execute(stmt).all(), columns=[*columns, *(["segment"] if dimension else [])])
    for c in columns:
        frame[c] = frame[c].astype(float)
    return frame


def _bootstrap(values: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap LMG shares and R² (rows: resamples)."""
    n, k = values.shape
    shares = np.full((resamples, k - 1), np.nan)
    r2 = np.full(resamples, np.nan)
    if n < 10:
        return shares, r2
    for b in range(resamples):
        draw = values[rng.integers(0, n, n)]
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(draw, rowvar=False)
        shares[b] = shapley_r2(corr)
        r2[b] = np.nansum(shares[b]) if not np.isnan(shares[b]).all() else np.nan
    return shares, r2


def _percentiles(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        ok = ~np.isnan(draws)
        if draws.ndim == 1:
            draws = draws[:, None]
            ok = ok[:, None]
        low = np.array(
            [
                np.percentile(draws[ok[:, j], j], 2.5) if ok[:, j].sum() > 1 else np.nan
                for j in range(draws.shape[1])
            ]
        )
        high = np.array(
            [
                np.percentile(draws[ok[:, j], j], 97.5) if ok[:, j].sum() > 1 else np.nan
                for j in range(draws.shape[1])
            ]
        )
    return low, high


def driver_importance(
    conn: Connection,
    flt: SegmentFilter,
    dimension: str | None = None,
    resamples: int = 200,
    seed: int = 20240601,
    min_n: int | None = None,
    pillars: tuple[str, ...] = PILLARS,
) -> pd.DataFrame:
    """Per segment (or overall) and pillar: n, correlation with NPS and its Fisher interval, the
    LMG share of R² with a bootstrap percentile interval, the share of the explained variance and
    the full R² with its interval. Small segments (n < min_n) are flagged and get no bootstrap.
    """
    min_n = resolve_min_n(min_n)
    k = len(pillars) + 1
    mom = moments(conn, flt, dimension, pillars)
    rng = np.random.default_rng(seed)
    sample = sample_rows(conn, flt, (*pillars, OUTCOME), dimension, seed=seed) if resamples else None
    records = []
    for _, row in mom.iterrows():
        n, corr = _correlation(row, k)
        if n == 0:
            continue
        small = stats.is_small(n, min_n)
        lmg = shapley_r2(corr)
        total = float(np.nansum(lmg)) if not np.isnan(lmg).all() else math.nan
        lo = hi = np.full(len(pillars), np.nan)
        r2_lo = r2_hi = math.nan
        if sample is not None and not small:
            part = sample if dimension is None else sample[sample["segment"] == row["segment"]]
            shares, r2 = _bootstrap(part[[*pillars, OUTCOME]].to_numpy(), resamples, rng)
            lo, hi = _percentiles(shares)
            (r2_lo,), (r2_hi,) = _percentiles(r2)
        for j, pillar in enumerate(pillars):
            r = corr[j, -1]
            fisher = _fisher(r, n)
            records.append(
                {
                    "segment": row["segment"],
                    "predictor": pillar,
                    "n": n,
                    "customers": int(row["customers"] or 0),
                    "small": small,
                    "r": fisher.estimate,
                    "r_low": fisher.low,
                    "r_high": fisher.high,
                    "lmg": lmg[j],
                    "lmg_low": lo[j],
                    "lmg_high": hi[j],
                    "share": lmg[j] / total if total and not math.isnan(total) else math.nan,
                    "r2": total,
                    "r2_low": r2_lo,
                    "r2_high": r2_hi,
                }
            )
    frame = pd.DataFrame(records, columns=_COLUMNS)
    return frame.sort_values(
        ["segment", "predictor"], key=lambda s: s.map(_order) if s.name == "predictor" else s
    ).reset_index(drop=True)


def _order(name: str) -> int:
    return PILLARS.index(name) if name in PILLARS else len(PILLARS)


def item_importance(
    conn: Connection, flt: SegmentFilter, instrument: Instrument | None = None
) -> pd.DataFrame:
    """Per instrument item, after reverse coding: n, mean on 0–100 and correlation with NPS (with
    its Fisher interval). One grouped query of sums over survey_answers × survey_responses."""
    instrument = instrument or configured_instrument()
    x, y = sa.cast(A.c.value, sa.Float), sa.cast(R.c.nps, sa.Float)
    rows = conn.execute(
        sa.select(
            A.c.item_id,
            sa.func.count().label("n"),
            sa.func.sum(x).label("sx"),
            sa.func.sum(x * x).label("sxx"),
            sa.func.sum(y).label("sy"),
            sa.func.sum(y * y).label("syy"),
            sa.func.sum(x * y).label("sxy"),
        )
        .select_from(A.join(R, A.c.response_id == R.c.response_id))
        .where(flt.response_clause(), A.c.value.is_not(None), R.c.nps.is_not(None))
        .group_by(A.c.item_id)
    ).all()
    lo, hi = instrument.scale_min, instrument.scale_max
    records = []
    known = {item.id: item for item in instrument.items}
    for r in rows:
        item = known.get(r.item_id)
        if item is None or int(r.n) < 2:
            continue
        n, sx, sxx, sy, syy, sxy = (
            int(r.n),
            float(r.sx),
            float(r.sxx),
            float(r.sy),
            float(r.syy),
            float(r.sxy),
        )
        if item.reverse:  # x' = lo + hi − x
            a = lo + hi
            sxx = n * a * a - 2 * a * sx + sxx
            sxy = a * sy - sxy
            sx = n * a - sx
        cov = stats.covariance_from_sums(n, np.array([sx, sy]), np.array([[sxx, sxy], [sxy, syy]]))
        corr = stats.correlation_from_cov(cov)[0, 1]
        fisher = _fisher(corr, n)
        records.append(
            {
                "name": item.id,
                "pillar": item.pillar,
                "text": item.text,
                "level": "item",
                "n": n,
                "performance": 100 * (sx / n - lo) / (hi - lo),
                "importance": fisher.estimate,
                "importance_low": fisher.low,
                "importance_high": fisher.high,
            }
        )
    return pd.DataFrame(
        records,
        columns=[
            "name",
            "pillar",
            "text",
            "level",
            "n",
            "performance",
            "importance",
            "importance_low",
            "importance_high",
        ],
    )


def importance_performance(
    conn: Connection, flt: SegmentFilter, instrument: Instrument | None = None
) -> pd.DataFrame:
    """Pillars and items: importance = correlation with NPS (Fisher interval), performance = mean
    index (0–100). Pillar rows come from the same sufficient statistics as the decomposition."""
    mom = moments(conn, flt)
    records = []
    if not mom.empty and int(mom.iloc[0]["n"] or 0) > 0:
        row = mom.iloc[0]
        n, corr = _correlation(row, len(PILLARS) + 1)
        for j, pillar in enumerate(PILLARS):
            r = corr[j, -1]
            fisher = _fisher(r, n)
            records.append(
                {
                    "name": pillar,
                    "pillar": pillar,
                    "text": f"{pillar.capitalize()} index",
                    "level": "pillar",
                    "n": n,
                    "performance": float(row[f"s_{j}"]) / n,
                    "importance": fisher.estimate,
                    "importance_low": fisher.low,
                    "importance_high": fisher.high,
                }
            )
    pillars = pd.DataFrame(records)
    items = item_importance(conn, flt, instrument)
    return pd.concat([pillars, items], ignore_index=True) if not pillars.empty else items


def churn_hazard_ratios(conn: Connection, flt: SegmentFilter):
    """Cox hazard ratios of churn per 10 pillar points (relq.analyses.survival), or None with too few churns."""
    from relq.analyses import survival

    return survival.cox_pillars(survival.cox_table(conn, flt))
