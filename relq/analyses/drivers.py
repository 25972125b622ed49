"""What drives NPS: how much of its variance each pillar explains, with intervals.

- **Shapley / LMG decomposition of R²** (Lindeman, Merenda & Gold 1980; Grömping 2006, J. Stat.
  Softw. 17(1)): each pillar's share is its increase in R² averaged over all 3! orders of entering
  the regression. It is computed exactly from the correlation matrix of all rows in view, which
  comes from per-customer sums (n, Σx, Σxxᵀ) computed in SQL — no response row leaves the database.
- **Bootstrap intervals resample customers** (all of a customer's responses together: a customer is
  a cluster), seeded: each resample draws C customers with replacement and adds up their sums, so
  it uses every row of the customers drawn. Percentile intervals of the LMG values, of each pillar's
  share of R² (the number the cards show), of R² and of the correlations.
- **Weights** follow the view: under a customer-level weighting a customer's sums count ω_c/n_c.
- **Importance × performance** for the pillars and their items: correlation with NPS against
  the mean (0–100); the correlations carry Fisher-z intervals over responses.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq import store
from relq.core.instrument import Instrument, configured_instrument
from relq.core.settings import resolve_min_n
from relq.measures import customer_sums, stats
from relq.measures.metrics import weighting_problem
from relq.store import dialects, schema
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

__all__ = [
    "OUTCOME",
    "RESAMPLES",
    "shapley_r2",
    "customer_moments",
    "moments",
    "driver_importance",
    "item_importance",
    "importance_performance",
    "churn_hazard_ratios",
]

R = schema.survey_responses
A = schema.survey_answers
OUTCOME = "nps"
RESAMPLES = 200
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
    "share_low",
    "share_high",
    "r2",
    "r2_low",
    "r2_high",
    "resamples",
]


def _fisher(r: float, n: int) -> stats.Interval:
    """Pearson r with its Fisher-z 95% interval; all NaN (with n) when r is undefined."""
    if math.isnan(r):
        return stats.Interval(math.nan, math.nan, math.nan, n)
    return stats.pearson_interval(float(r), n)


def shapley_r2(corr: np.ndarray, outcome: int = -1) -> np.ndarray:
    """Exact Shapley (LMG) share of R² for every variable but ``outcome``; they sum to the full R².

    ``φⱼ = Σ_{S ⊆ P∖{j}} |S|! (p−|S|−1)! / p! · (R²(S ∪ {j}) − R²(S))`` — the average over all p!
    orders, computed over the 2ᵖ subsets. NaN when the matrix has NaN (a constant column).

    >>> corr = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 1.0]])
    >>> shapley_r2(corr).round(3).tolist()
    [0.25, 0.25]
    """
    corr = np.asarray(corr, dtype=float)
    return _shapley_many(corr[None], outcome)[0]


def _shapley_many(corrs: np.ndarray, outcome: int = -1) -> np.ndarray:
    """:func:`shapley_r2` of a stack of B correlation matrices (B×k×k) at once: B×p.

    Each subset's R² of the outcome on predictors S, ``r_yS R_SS⁺ r_Sy`` (for two predictors
    ``(r₁² + r₂² − 2r₁r₂r₁₂) / (1 − r₁₂²)``), is taken for every matrix in one batched
    pseudo-inverse (the least-squares solution); a matrix with NaN gives a row of NaN."""
    k = corrs.shape[1]
    outcome = outcome % k
    predictors = [i for i in range(k) if i != outcome]
    p = len(predictors)
    out = np.full((corrs.shape[0], p), np.nan)
    ok = ~np.isnan(corrs).any(axis=(1, 2))
    good = corrs[ok]
    r2 = {(): np.zeros(len(good))}
    for size in range(1, p + 1):
        for subset in combinations(predictors, size):
            idx = list(subset)
            r_xy = good[:, idx, outcome]  # B×s
            inverse = np.linalg.pinv(good[:, idx][:, :, idx])  # B×s×s
            r2[subset] = np.einsum("bi,bij,bj->b", r_xy, inverse, r_xy)
    phi = np.zeros((len(good), p))
    for j, var in enumerate(predictors):
        others = [v for v in predictors if v != var]
        for size in range(p):
            weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
            for subset in combinations(others, size):
                with_j = tuple(sorted((*subset, var)))
                phi[:, j] += weight * (r2[with_j] - r2[subset])
    out[ok] = phi
    return out


def _variables(pillars: tuple[str, ...]) -> list[str]:
    return [*pillars, OUTCOME]


def customer_moments(
    conn: Connection, flt: SegmentFilter, dimension: str | None = None, pillars=PILLARS
) -> pd.DataFrame:
    """Per customer (an unmatched response: per response), over its responses having every pillar
    and NPS: segment, ``customer`` (1 for a customer, 0 for an unmatched response), n, the weight
    factor ``f`` (1 per response; ω_c/n_c under a customer-level weighting, customers without a
    weight left out), Σx of every variable (``s_i``) and Σxy of every pair (``c_i_j``), in a fixed
    order: customers by id, then unmatched responses by id. One two-level query; its rows are
    customers, never responses. The ids themselves are not read: only their order matters (the
    seeded bootstrap draws rows by position), and 613k of them took 0.27 s to read and convert."""
    names = _variables(tuple(pillars))
    pc = customer_sums.listwise_customers(conn, flt, names)
    plan = customer_sums.weight_plan(conn, flt)
    weighting_problem(plan)
    omega, joins = customer_sums.weight_of(plan, pc)
    wc = customer_sums.with_weights(pc, omega, joins, dimension)
    kept = sa.true() if omega is None else wc.c.omega.is_not(None)
    # The segments first, then each row's as its place among them: the rows are numbers only, which
    # PostgreSQL sends in binary (as text, 0.08 s more to write and parse for 156k customers).
    labels, code = ["All responses"], sa.literal(0)
    if dimension:
        segment = sa.func.coalesce(sa.cast(wc.c.segment, sa.Text), "(no value)")
        labels = sorted(conn.execute(sa.select(segment).where(kept).distinct()).scalars())
        if labels:  # else no row either
            code = sa.case({label: i for i, label in enumerate(labels)}, value=segment)
    factor = sa.literal(1.0) if omega is None else wc.c.omega / sa.cast(wc.c.responses, sa.Double)
    stmt = (
        sa.select(
            code.label("segment"),
            sa.cast(sa.case((wc.c.cid.is_(None), 0.0), else_=1.0), sa.Double).label("customer"),
            sa.cast(wc.c.responses, sa.Double).label("n"),
            sa.cast(factor, sa.Double).label("f"),
            *[c for c in wc.c if c.name.startswith(("s_", "c_"))],
        )
        .select_from(wc)
        .where(kept)
    )

    # A fixed order so the seeded bootstrap draws the same customers on every engine: customers by
    # id, then unmatched responses by id, in code point order. Each segment's rows keep that order,
    # so the rows read with any dimension give the overall figures too (driver_importance's
    # moments). The whole-history sums carry that order as an integer (row_order), sorted here
    # after the read: a sort of the ids in the query took PostgreSQL 64 ms of its 190.
    order = None
    if "row_order" in wc.c:
        read = store.read_frame(conn, stmt.add_columns(wc.c.row_order), numbers=True)
        order = np.argsort(read.pop("row_order").to_numpy(), kind="stable")
    else:
        dialect = conn.dialect.name
        stmt = stmt.order_by(
            wc.c.cid.is_(None),
            dialects.code_point_order(dialect, wc.c.cid),
            dialects.code_point_order(dialect, wc.c.lone),
        )
        read = store.read_frame(conn, stmt, numbers=True)
    numbers = [c for c in read.columns if c != "segment"]
    codes = read["segment"].to_numpy(dtype=np.int64)
    block = _column_block(read, numbers, order)
    del read
    if order is not None:
        codes = codes[order]
    frame = pd.DataFrame(block, columns=numbers, copy=False)
    frame.insert(0, "segment", np.array(labels, dtype=object)[codes])
    frame.attrs["dimension"] = dimension
    return frame


def _column_block(frame: pd.DataFrame, names: list[str], order: np.ndarray | None = None) -> np.ndarray:
    """``frame``'s columns ``names`` as one block of floats laid out column by column (what pandas
    keeps as it is), each column put in its place — and its rows in ``order`` — with one copy.
    Selecting the columns, converting them to one array and ordering its rows copied 90 MB three
    times at 600k customers (0.3 s, on fresh pages)."""
    block = np.empty((len(frame), len(names)), order="F")
    for j, name in enumerate(names):
        column = frame[name].to_numpy(dtype=float)
        if order is None:
            block[:, j] = column
        else:
            np.take(column, order, out=block[:, j])
    return block


def moments(
    conn: Connection, flt: SegmentFilter, dimension: str | None = None, pillars=PILLARS
) -> pd.DataFrame:
    """Sums per segment (or overall) of :func:`customer_moments`: segment, n (responses), customers,
    the weighted count ``w`` and the weighted Σx (``s_i``) and Σxy (``c_i_j``)."""
    per = customer_moments(conn, flt, dimension, pillars)
    sums = [c for c in per.columns if c.startswith(("s_", "c_"))]
    if per.empty:
        return pd.DataFrame(columns=["segment", "n", "customers", "w", *sums])
    out = per[sums].mul(per["f"], axis=0)
    out["w"] = per["f"] * per["n"]
    out["n"] = per["n"]
    out["customers"] = per["customer"].astype(int)
    out["segment"] = per["segment"]
    out = out.groupby("segment", sort=True).sum().reset_index()
    out["n"] = out["n"].astype(int)
    return out[["segment", "n", "customers", "w", *sums]]


def _correlation_of(w: float, sums: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Correlation matrix from weighted sums: cov ∝ Σxyᵀ/w − m·mᵀ (the divisor cancels)."""
    return _correlations_of(np.array([w], dtype=float), sums[None], cross[None])[0]


def _correlations_of(w: np.ndarray, sums: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """:func:`_correlation_of` of B sets of sums at once (w: B, sums: B×k, cross: B×k×k); all NaN
    where w is not positive."""
    k = sums.shape[1]
    out = np.full((len(w), k, k), np.nan)
    ok = w > 0
    mean = sums[ok] / w[ok, None]
    cov = cross[ok] / w[ok, None, None] - mean[:, :, None] * mean[:, None, :]
    out[ok] = stats.correlations_from_covs((cov + cov.transpose(0, 2, 1)) / 2)
    return out


def _stacked(frame: pd.DataFrame, k: int) -> np.ndarray:
    """Per customer, one row: the weighted count, the weighted sums Σx (k) and the weighted cross
    products Σx_i·x_j of each pair i ≤ j (k(k+1)/2, in :func:`_pairs` order) — one copy of the
    frame's columns, multiplied by the weight factor only when some customer has one but 1."""
    columns = ["n", *(f"s_{i}" for i in range(k)), *(f"c_{i}_{j}" for i, j in zip(*_pairs(k), strict=True))]
    stacked = _column_block(frame, columns)
    f = frame["f"].to_numpy(dtype=float)
    if (f != 1.0).any():
        stacked *= f[:, None]
    return stacked


def _pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(k)


def _square(pairs: np.ndarray, k: int) -> np.ndarray:
    """The symmetric k×k matrices (B×k×k) of B rows of pair sums (B×k(k+1)/2)."""
    upper, lower = _pairs(k)
    out = np.empty((pairs.shape[0], k, k))
    out[:, upper, lower] = pairs
    out[:, lower, upper] = pairs
    return out


# Customers × resamples counted per batch: 64 MB of counts (8 bytes each), few enough batches that
# the customers' sums are read a handful of times, not once per resample.
_BATCH_CELLS = 8_000_000


def _bootstrap(stacked: np.ndarray, k: int, resamples: int, rng: np.random.Generator):
    """Resample customers (the rows of :func:`_stacked`) with replacement; a draw adds the drawn
    customers' sums (all their rows).

    Returns per resample: LMG (B×p), share of R² (B×p), R² (B,) and r with NPS (B×p).
    """
    customers, p = stacked.shape[0], k - 1
    lmg = np.full((resamples, p), np.nan)
    share = np.full((resamples, p), np.nan)
    r2 = np.full(resamples, np.nan)
    r = np.full((resamples, p), np.nan)
    if customers < 2:
        return lmg, share, r2, r
    batch = max(1, min(resamples, _BATCH_CELLS // customers))
    counts = np.empty((batch, customers))
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        # one draw of C customers per resample, in order; counted while the draw is still in cache
        for row in range(size):
            counts[row] = np.bincount(rng.integers(0, customers, customers), minlength=customers)
        totals = counts[:size] @ stacked
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = _correlations_of(totals[:, 0], totals[:, 1 : 1 + k], _square(totals[:, 1 + k :], k))
            rows = slice(start, start + size)
            lmg[rows] = _shapley_many(corr)
            some = ~np.isnan(lmg[rows]).all(axis=1)
            total = np.where(some, np.nansum(lmg[rows], axis=1), np.nan)
            r2[rows] = total
            share[rows] = np.where((total > 0)[:, None], lmg[rows] / total[:, None], np.nan)
        r[rows] = corr[:, :p, -1]
    return lmg, share, r2, r


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
    resamples: int = RESAMPLES,
    seed: int = 20240601,
    min_n: int | None = None,
    pillars: tuple[str, ...] = PILLARS,
    moments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per segment (or overall) and pillar: n (responses), customers, correlation with NPS, the LMG
    share of R², the pillar's share of the explained variance and the full R², each with a 95%
    percentile interval from ``resamples`` bootstrap resamples of customers (seeded; the column
    ``resamples`` says how many were drawn, 0 where none). Point estimates use all rows in view.
    Small segments (n < min_n) are flagged and get no bootstrap. Without resamples the correlations
    carry Fisher-z intervals over responses (right only when each customer answers once).

    ``moments``: :func:`customer_moments`' rows of this view and pillars already read — with
    ``dimension``'s segments, or with any dimension's for the overall figures (one read serves a
    page's overall and per-segment figures); read with ``conn`` when None.
    """
    if resamples < 0:
        raise ValueError(f"resamples must be >= 0, not {resamples}.")
    min_n = resolve_min_n(min_n)
    k = len(pillars) + 1
    if moments is None:
        per = customer_moments(conn, flt, dimension, pillars)
    elif dimension is None or moments.attrs.get("dimension") == dimension:
        per = moments
    else:
        raise ValueError(
            f"the customers' sums were read by {moments.attrs.get('dimension')}, not {dimension}."
        )
    # every row for the overall figures (whatever segments they were read with), else per segment
    parts = [("All responses", per)] if dimension is None else per.groupby("segment", sort=True)
    rng = np.random.default_rng(seed)
    records = []
    for segment, part in parts:
        stacked = _stacked(part, k)
        n = int(part["n"].sum())
        if n == 0:
            continue
        customers = int(part["customer"].sum())
        total = stacked.sum(axis=0)
        corr = _correlation_of(total[0], total[1 : 1 + k], _square(total[None, 1 + k :], k)[0])
        if n < 3:
            corr = np.full((k, k), np.nan)
        small = stats.is_small(n, min_n)
        lmg = shapley_r2(corr)
        total = float(np.nansum(lmg)) if not np.isnan(lmg).all() else math.nan
        nan = np.full(len(pillars), np.nan)
        lo = hi = share_lo = share_hi = r_lo = r_hi = nan
        r2_lo = r2_hi = math.nan
        drawn = 0
        if resamples and not small and n >= 10:
            b_lmg, b_share, b_r2, b_r = _bootstrap(stacked, k, resamples, rng)
            lo, hi = _percentiles(b_lmg)
            share_lo, share_hi = _percentiles(b_share)
            (r2_lo,), (r2_hi,) = _percentiles(b_r2)
            r_lo, r_hi = _percentiles(b_r)
            drawn = resamples
        for j, pillar in enumerate(pillars):
            r = corr[j, -1]
            if drawn:
                low, high = r_lo[j], r_hi[j]
            else:
                fisher = _fisher(r, n)
                low, high = fisher.low, fisher.high
            records.append(
                {
                    "segment": segment,
                    "predictor": pillar,
                    "n": n,
                    "customers": customers,
                    "small": small,
                    "r": r,
                    "r_low": low,
                    "r_high": high,
                    "lmg": lmg[j],
                    "lmg_low": lo[j],
                    "lmg_high": hi[j],
                    "share": lmg[j] / total if total and not math.isnan(total) else math.nan,
                    "share_low": share_lo[j],
                    "share_high": share_hi[j],
                    "r2": total,
                    "r2_low": r2_lo,
                    "r2_high": r2_hi,
                    "resamples": drawn,
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
    index (0–100). Pillar rows come from the same per-customer sums as the decomposition."""
    mom = moments(conn, flt)
    records = []
    k = len(PILLARS) + 1
    if not mom.empty and int(mom.iloc[0]["n"] or 0) > 0:
        row = mom.iloc[0]
        n, w = int(row["n"]), float(row["w"])
        sums = np.array([float(row[f"s_{i}"]) for i in range(k)])
        cross = np.zeros((k, k))
        for i in range(k):
            for j in range(i, k):
                cross[i, j] = cross[j, i] = float(row[f"c_{i}_{j}"])
        corr = _correlation_of(w, sums, cross) if n >= 3 else np.full((k, k), np.nan)
        for j, pillar in enumerate(PILLARS):
            fisher = _fisher(corr[j, -1], n)
            records.append(
                {
                    "name": pillar,
                    "pillar": pillar,
                    "text": f"{pillar.capitalize()} index",
                    "level": "pillar",
                    "n": n,
                    "performance": sums[j] / w,
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
