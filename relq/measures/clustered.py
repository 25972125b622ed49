"""Customer-clustered intervals, tests and weights (Methodology page, "The unit is the customer").

Every interval and test here treats each **customer as a cluster**; a response that matches no
customer is a cluster of its own. For a weighted mean ``ȳ = Σwᵢyᵢ / Σwᵢ`` over the responses having
the value, with ``t_c = Σ_{i∈c} wᵢ(yᵢ − ȳ) = S_c − ȳ·W_c`` per customer and C customers::

    var = C/(C−1) · Σ_c t_c² / (Σw)²

the linearised ("ultimate cluster") variance of Stata's ``mean, vce(cluster)`` and R's
``survey::svymean(ids = ~customer)``. Only per-customer sums are needed (``W_c = Σw``,
``S_c = Σwy`` and the response count ``n_c``), so the production path gets them from SQL by a
two-level aggregation; :func:`cluster_sums` builds them from response-level arrays for tests and
small cases. With one response per customer and unit weights the variance is the usual ``s²/n``.
Weights are treated as fixed.

Pure functions on numpy / scipy / pandas: no SQL, no Streamlit. Inputs that cannot be what they
claim (negative weights, mismatched lengths, shares above their totals) raise ``ValueError``;
an estimate over no data is NaN, and a single customer gives an estimate without an interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _sp

from relq.measures.stats import benjamini_hochberg  # one definition of the Benjamini–Hochberg q-values

__all__ = [
    "Q_THRESHOLD",
    "ClusteredDifference",
    "ClusteredMean",
    "ClusteredShare",
    "CustomerSums",
    "PeriodSums",
    "RakingDiagnostics",
    "RakingError",
    "benjamini_hochberg",
    "cluster_sums",
    "clustered_mean",
    "clustered_mean_from_sums",
    "clustered_variance",
    "csat_cluster_sums",
    "csat_interval_clustered",
    "csat_interval_from_sums",
    "customer_weights",
    "kish_deff",
    "nps_cluster_sums",
    "nps_interval_clustered",
    "nps_interval_from_sums",
    "period_difference",
    "period_difference_from_sums",
    "period_difference_share",
    "rake",
    "rake_with_diagnostics",
    "welch_clustered",
    "z_difference",
]

NAN = float("nan")
Q_THRESHOLD = 0.05
"""A delta is significant only when its Benjamini–Hochberg q is below this."""

_MISSING_LABEL = "(missing)"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClusteredMean:
    """A weighted mean with its customer-clustered t-interval.

    ``var`` is the clustered variance of the mean, ``se = √var``, ``df = C − 1`` (C = customers),
    ``n`` the number of responses. One customer: ``var``, ``se`` and the bounds are NaN.
    """

    estimate: float
    var: float
    se: float
    low: float
    high: float
    n: int
    customers: int
    df: int


@dataclass(frozen=True)
class ClusteredShare:
    """NPS (−100..100) or CSAT (0..100) with its effective-n interval.

    ``p`` is the (weighted) share of promoters / of 4–5 answers, ``d`` the share of detractors
    (0 for CSAT); ``var`` is the customer-clustered variance of the mean of the −1/0/+1 (NPS) or
    0/1 (CSAT) score on the unit scale, ``deff = var / (u/(n−1))`` and ``n_eff = n / deff``
    (at most n). ``n`` counts responses, ``customers`` the clusters.
    """

    kind: Literal["nps", "csat"]
    score: float
    low: float
    high: float
    n: int
    customers: int
    n_eff: float
    deff: float
    var: float
    p: float
    d: float


@dataclass(frozen=True)
class ClusteredDifference:
    """A difference (first minus second, or current minus previous) with its test and interval.

    ``statistic`` is t (Welch) or z; ``df`` is the Satterthwaite df for Welch and ``inf`` for a
    z-test. For NPS / CSAT ``delta``, ``se`` and the bounds are in score points.
    """

    delta: float
    se: float
    statistic: float
    df: float
    p_value: float
    low: float
    high: float
    test: str


@dataclass(frozen=True)
class RakingDiagnostics:
    """How raking went: target vs achieved margins and the spread of the customer weights.

    ``margins`` is tidy: one row per dimension value with ``dimension, value, target``
    (customers in the base), ``target_share``, ``respondents`` (responding customers, unweighted),
    ``achieved`` (Σ raked weight) and ``achieved_share``. ``kish_deff = n·Σw²/(Σw)²``.
    """

    margins: pd.DataFrame
    weight_min: float
    weight_max: float
    weight_ratio: float
    kish_deff: float
    converged: bool
    iterations: int


class RakingError(ValueError):
    """The responding customers cannot be raked to the base (e.g. a base value has no respondent)."""


# --------------------------------------------------------------------------- input checks


def _vector(name: str, values: object, length: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}.")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries but {length} were expected.")
    return arr


def _finite_vector(name: str, values: object, length: int | None = None) -> np.ndarray:
    arr = _vector(name, values, length)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or infinity).")
    return arr


def _counts(name: str, values: object, length: int) -> np.ndarray:
    arr = _finite_vector(name, values, length)
    if np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be whole numbers >= 0 (responses per customer).")
    return arr.astype(np.int64)


def _check_level(level: float) -> float:
    if not 0 < float(level) < 1:
        raise ValueError(f"level must be a probability strictly between 0 and 1 (e.g. 0.95), got {level!r}.")
    return float(level)


def _z(level: float) -> float:
    return float(_sp.norm.ppf(0.5 + _check_level(level) / 2))


def _customer_arrays(
    W_c: object, sums: dict[str, object], n_c: object
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Validate per-customer arrays and drop customers without a response (n_c == 0)."""
    w = _finite_vector("W_c", W_c)
    if np.any(w < 0):
        raise ValueError("W_c must be >= 0 (weights cannot be negative).")
    out = {k: _finite_vector(k, v, w.shape[0]) for k, v in sums.items()}
    n = _counts("n_c", n_c, w.shape[0])
    empty = n == 0
    if np.any(empty):
        if np.any(w[empty] != 0) or any(np.any(v[empty] != 0) for v in out.values()):
            raise ValueError("a customer with n_c == 0 must have zero sums.")
        keep = ~empty
        w, n = w[keep], n[keep]
        out = {k: v[keep] for k, v in out.items()}
    return w, out, n


def _check_share_sums(w: np.ndarray, **parts: np.ndarray) -> None:
    tol = 1e-9 * np.maximum(w, 1.0)
    total = np.zeros_like(w)
    for name, part in parts.items():
        if np.any(part < -tol):
            raise ValueError(f"{name} must be >= 0 (a weighted count of answers).")
        total = total + part
    if np.any(total > w + tol):
        names = " + ".join(parts)
        raise ValueError(f"{names} cannot exceed W_c for a customer (they count part of its weight).")


def _clustered_var(t: np.ndarray, w_total: float) -> float:
    c = t.shape[0]
    if c < 2 or w_total <= 0:
        return NAN
    return c / (c - 1) * float(np.dot(t, t)) / (w_total * w_total)


# --------------------------------------------------------------------------- per-customer sums


def _cluster_keys(clusters: object, length: int) -> pd.Series:
    keys = pd.Series(np.asarray(clusters, dtype=object))
    if keys.shape[0] != length:
        raise ValueError(f"clusters has {keys.shape[0]} entries but {length} were expected.")
    unmatched = keys.isna().to_numpy()
    if unmatched.any():
        keys = keys.copy()
        keys[unmatched] = [f"(unmatched response {i})" for i in np.flatnonzero(unmatched)]
    return keys


def _sums_frame(
    columns: dict[str, np.ndarray], weights: object, clusters: object, keep: np.ndarray
) -> pd.DataFrame:
    length = keep.shape[0]
    if weights is None:
        w = np.ones(length)
    else:
        w = _vector("weights", weights, length)
        if np.any(w[~np.isnan(w)] < 0) or np.any(np.isinf(w)):
            raise ValueError("weights must be finite and >= 0.")
    keys = _cluster_keys(clusters, length)
    keep = keep & ~np.isnan(w)
    frame = pd.DataFrame({"W": w[keep], **{k: w[keep] * v[keep] for k, v in columns.items()}})
    frame["n"] = 1
    frame.index = pd.Index(keys[keep].to_numpy(), name="customer", dtype=object)
    out = frame.groupby(level=0, sort=False).sum()
    out["n"] = out["n"].astype(np.int64)
    return out


def cluster_sums(values: object, weights: object | None, clusters: object) -> pd.DataFrame:
    """Per-customer sums ``W_c = Σw``, ``S_c = Σwy`` and ``n_c`` from response-level arrays.

    ``clusters`` holds each response's customer id; a missing id (None / NaN) is an unmatched
    response and becomes a cluster of its own. Responses with a NaN value (not answered) or a NaN
    weight (no customer weight: unmatched under customer/value/raked weighting) are left out.
    ``weights=None`` means 1 each. Returns a frame indexed by customer with columns W, S, n.

    >>> cluster_sums([1.0, 3.0, 5.0], None, ["a", "a", None]).to_dict("list")
    {'W': [2.0, 1.0], 'S': [4.0, 5.0], 'n': [2, 1]}
    """
    y = _vector("values", values)
    if np.any(np.isinf(y)):
        raise ValueError("values must be finite (NaN marks a response without the value).")
    keep = ~np.isnan(y)
    return _sums_frame({"S": np.nan_to_num(y)}, weights, clusters, keep)


def _scores(name: str, scores: object, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    x = _vector(name, scores)
    keep = ~np.isnan(x)
    bad = keep & ((x < low) | (x > high) | (x != np.round(x)))
    if np.any(bad):
        raise ValueError(f"{name} must be whole numbers from {low} to {high} (NaN = not answered).")
    return x, keep


def nps_cluster_sums(scores: object, weights: object | None, clusters: object) -> pd.DataFrame:
    """Per-customer ``W_c``, ``P_c = Σw·[9–10]``, ``D_c = Σw·[0–6]`` and ``n_c`` from 0–10 answers.

    Clusters and missing values as in :func:`cluster_sums`.

    >>> nps_cluster_sums([10, 3, 8], None, [1, 1, 2]).to_dict("list")
    {'W': [2.0, 1.0], 'P': [1.0, 0.0], 'D': [1.0, 0.0], 'n': [2, 1]}
    """
    x, keep = _scores("scores", scores, 0, 10)
    promoter = np.where(keep & (x >= 9), 1.0, 0.0)
    detractor = np.where(keep & (x <= 6), 1.0, 0.0)
    return _sums_frame({"P": promoter, "D": detractor}, weights, clusters, keep)


def csat_cluster_sums(scores: object, weights: object | None, clusters: object) -> pd.DataFrame:
    """Per-customer ``W_c``, ``S_c = Σw·[4–5]`` and ``n_c`` from 1–5 answers.

    Clusters and missing values as in :func:`cluster_sums`.

    >>> csat_cluster_sums([5, 2, 4], [1.0, 1.0, 2.0], ["a", "a", "b"]).to_dict("list")
    {'W': [2.0, 2.0], 'S': [1.0, 2.0], 'n': [2, 1]}
    """
    x, keep = _scores("scores", scores, 1, 5)
    top2 = np.where(keep & (x >= 4), 1.0, 0.0)
    return _sums_frame({"S": top2}, weights, clusters, keep)


# --------------------------------------------------------------------------- means


def clustered_variance(W_c: object, S_c: object) -> float:
    """Clustered variance of the weighted mean: ``C/(C−1) · Σ_c (S_c − ȳ·W_c)² / (ΣW_c)²``.

    Each entry is one customer (a cluster). NaN for fewer than two customers or no weight.

    >>> clustered_variance([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])  # = s²/n = 1/3
    0.3333333333333333
    """
    w = _finite_vector("W_c", W_c)
    s = _finite_vector("S_c", S_c, w.shape[0])
    total = float(w.sum())
    if w.shape[0] < 2 or total <= 0:
        return NAN
    return _clustered_var(s - (float(s.sum()) / total) * w, total)


def clustered_mean(W_c: object, S_c: object, n_c: object, level: float = 0.95) -> ClusteredMean:
    """Weighted mean ``ȳ = ΣS_c / ΣW_c`` with its customer-clustered t-interval.

    ``ȳ ± t(C−1, 1−α/2) · √var`` with ``var = C/(C−1) · Σ_c t_c² / (ΣW_c)²``,
    ``t_c = S_c − ȳ·W_c`` over the C customers with at least one response (``n_c > 0``).
    No response gives NaN everywhere; one customer gives the mean with NaN var and bounds.
    Reference: Stata ``mean, vce(cluster customer)``; R ``survey::svymean`` with ``ids=~customer``.

    >>> r = clustered_mean([1, 1, 1, 1], [1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1])
    >>> r.estimate, round(r.low, 4), round(r.high, 4), r.customers, r.df
    (2.5, 0.4457, 4.5543, 4, 3)
    """
    level = _check_level(level)
    w, sums, n = _customer_arrays(W_c, {"S_c": S_c}, n_c)
    s = sums["S_c"]
    customers, responses = int(w.shape[0]), int(n.sum())
    if customers == 0:
        return _mean_result(NAN, NAN, 0, 0, level)
    total = float(w.sum())
    if total <= 0:
        raise ValueError("the weights of the responses sum to 0; no weighted mean exists.")
    mean = float(s.sum()) / total
    return _mean_result(mean, _clustered_var(s - mean * w, total), responses, customers, level)


def _mean_result(mean: float, var: float, responses: int, customers: int, level: float) -> ClusteredMean:
    if customers == 0:
        return ClusteredMean(NAN, NAN, NAN, NAN, NAN, 0, 0, 0)
    df = customers - 1
    if customers < 2 or math.isnan(var):
        return ClusteredMean(mean, NAN, NAN, NAN, NAN, responses, customers, df)
    se = math.sqrt(var)
    half = float(_sp.t.ppf(0.5 + level / 2, df)) * se
    return ClusteredMean(mean, var, se, mean - half, mean + half, responses, customers, df)


# --------------------------------------------------------------------------- NPS and CSAT


def _effective_n(var: float, u: float, n: int) -> tuple[float, float]:
    """``deff = var / (u/(n−1))`` and ``n_eff = min(n, n/deff)`` (n when var == 0).

    A deff within 1e-12 of 1 is rounding (one response per customer, unit weights) and gives n.
    """
    if math.isnan(var) or n < 2:
        return NAN, NAN
    deff = var / (u / (n - 1)) if u > 0 else NAN
    if var <= 0 or u <= 0 or deff <= 1 + 1e-12:
        return float(n), deff
    return n / deff, deff


def _wilson(p: float, n: float, z: float) -> tuple[float, float]:
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # Clamp rounding dust so the interval always contains p and stays in [0, 1].
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def csat_interval_clustered(W_c: object, S_c: object, n_c: object, level: float = 0.95) -> ClusteredShare:
    """CSAT = 100·p (p = weighted share answering 4–5) with a Wilson interval on the effective n.

    Per customer: ``W_c = Σw``, ``S_c = Σw·[4–5]``, ``n_c`` responses. ``t_c = S_c − p·W_c``,
    ``var = C/(C−1)·Σt_c²/(ΣW)²``, ``deff = var/(p(1−p)/(n−1))``, ``n_eff = n/deff ≤ n``; the
    interval is Wilson's with p and n_eff, ×100. With one response per customer and unit weights it
    is exactly the plain Wilson interval (statsmodels ``proportion_confint(method="wilson")``).
    Fewer than two customers: no interval (NaN bounds, n_eff, deff).

    >>> r = csat_interval_clustered([1] * 10, [1] * 8 + [0] * 2, [1] * 10)
    >>> r.score, round(r.low, 2), round(r.high, 2), r.n_eff
    (80.0, 49.02, 94.33, 10.0)
    """
    z = _z(level)
    w, sums, n = _customer_arrays(W_c, {"S_c": S_c}, n_c)
    s = sums["S_c"]
    _check_share_sums(w, S_c=s)
    customers, responses = int(w.shape[0]), int(n.sum())
    if customers == 0:
        return ClusteredShare("csat", NAN, NAN, NAN, 0, 0, NAN, NAN, NAN, NAN, 0.0)
    total = float(w.sum())
    if total <= 0:
        raise ValueError("the weights of the responses sum to 0; no weighted CSAT exists.")
    p = min(1.0, max(0.0, float(s.sum()) / total))
    return _csat_result(p, _clustered_var(s - p * w, total), responses, customers, z)


def _csat_result(p: float, var: float, responses: int, customers: int, z: float) -> ClusteredShare:
    if customers == 0:
        return ClusteredShare("csat", NAN, NAN, NAN, 0, 0, NAN, NAN, NAN, NAN, 0.0)
    n_eff, deff = _effective_n(var, p * (1 - p), responses)
    if math.isnan(n_eff):
        return ClusteredShare("csat", 100 * p, NAN, NAN, responses, customers, NAN, NAN, var, p, 0.0)
    low, high = _wilson(p, n_eff, z)
    return ClusteredShare(
        "csat", 100 * p, 100 * low, 100 * high, responses, customers, n_eff, deff, var, p, 0.0
    )


def nps_interval_clustered(
    W_c: object, P_c: object, D_c: object, n_c: object, level: float = 0.95
) -> ClusteredShare:
    """NPS = 100·(p − d) (weighted shares of promoters 9–10 and detractors 0–6), adjusted Wald on n_eff.

    Per customer: ``W_c = Σw``, ``P_c = Σw·[9–10]``, ``D_c = Σw·[0–6]``, ``n_c`` responses.
    ``t_c = (P_c − D_c) − (p − d)·W_c``, ``var = C/(C−1)·Σt_c²/(ΣW)²``,
    ``deff = var / ((p + d − (p−d)²)/(n−1))``, ``n_eff = n/deff ≤ n``. Then
    ``n* = n_eff+3, p* = (p·n_eff+¾)/n*, d* = (d·n_eff+¾)/n*,
    se = √((p*+d*−(p*−d*)²)/n*)``, interval ``100·((p*−d*) ± z·se)`` clipped to [−100, 100].
    With one response per customer and unit weights it is exactly the plain adjusted-Wald interval
    (Rocks 2016, The American Statistician 70(4):365-372; Sauro & Lewis, MeasuringU).
    Fewer than two customers: no interval.

    >>> r = nps_interval_clustered([1] * 100, [1] * 50 + [0] * 50, [0] * 80 + [1] * 20, [1] * 100)
    >>> r.score, round(r.low, 1), round(r.high, 1), r.n_eff
    (30.0, 14.1, 44.2, 100.0)
    """
    z = _z(level)
    w, sums, n = _customer_arrays(W_c, {"P_c": P_c, "D_c": D_c}, n_c)
    pc, dc = sums["P_c"], sums["D_c"]
    _check_share_sums(w, P_c=pc, D_c=dc)
    customers, responses = int(w.shape[0]), int(n.sum())
    if customers == 0:
        return ClusteredShare("nps", NAN, NAN, NAN, 0, 0, NAN, NAN, NAN, NAN, NAN)
    total = float(w.sum())
    if total <= 0:
        raise ValueError("the weights of the responses sum to 0; no weighted NPS exists.")
    p = min(1.0, max(0.0, float(pc.sum()) / total))
    d = min(1.0 - p, max(0.0, float(dc.sum()) / total))
    return _nps_result(p, d, _clustered_var((pc - dc) - (p - d) * w, total), responses, customers, z)


def _nps_result(p: float, d: float, var: float, responses: int, customers: int, z: float) -> ClusteredShare:
    if customers == 0:
        return ClusteredShare("nps", NAN, NAN, NAN, 0, 0, NAN, NAN, NAN, NAN, NAN)
    u = max(0.0, p + d - (p - d) ** 2)
    n_eff, deff = _effective_n(var, u, responses)
    score = 100 * (p - d)
    if math.isnan(n_eff):
        return ClusteredShare("nps", score, NAN, NAN, responses, customers, NAN, NAN, var, p, d)
    n_star = n_eff + 3
    p_star = (p * n_eff + 0.75) / n_star
    d_star = (d * n_eff + 0.75) / n_star
    diff = p_star - d_star
    half = z * math.sqrt((p_star + d_star - diff * diff) / n_star)
    low, high = max(-100.0, 100 * (diff - half)), min(100.0, 100 * (diff + half))
    return ClusteredShare("nps", score, low, high, responses, customers, n_eff, deff, var, p, d)


# --------------------------------------------------------------------------- comparisons


def _normal_p(z_stat: float) -> float:
    return float(2 * _sp.norm.sf(abs(z_stat)))


def _z_result(delta: float, se: float, level: float, test: str) -> ClusteredDifference:
    z = _z(level)
    if math.isnan(delta) or math.isnan(se):
        return ClusteredDifference(delta, se, NAN, math.inf, NAN, NAN, NAN, test)
    if se == 0:
        return ClusteredDifference(delta, 0.0, NAN, math.inf, NAN, delta, delta, test)
    stat = delta / se
    return ClusteredDifference(
        delta, se, stat, math.inf, _normal_p(stat), delta - z * se, delta + z * se, test
    )


def welch_clustered(mean1: ClusteredMean, mean2: ClusteredMean, level: float = 0.95) -> ClusteredDifference:
    """``mean1 − mean2`` for two disjoint groups: Welch's t with clustered variances.

    ``se = √(v₁+v₂)`` (v = clustered variance of each mean), Satterthwaite
    ``df = (v₁+v₂)² / (v₁²/(C₁−1) + v₂²/(C₂−1))`` with C = customers per group,
    ``t = δ/se``, interval ``δ ± t(df, 1−α/2)·se``. A group with fewer than two customers gives
    NaN; both variances 0 give the point as interval and NaN t, df and p.

    >>> a = ClusteredMean(5.0, 0.3, 0.3**0.5, 0, 0, 9, 4, 3)
    >>> b = ClusteredMean(3.0, 0.1, 0.1**0.5, 0, 0, 8, 6, 5)
    >>> round(welch_clustered(a, b).df, 10)  # 0.4² / (0.3²/3 + 0.1²/5) = 0.16 / 0.032
    5.0
    """
    level = _check_level(level)
    test = "Welch (customer-clustered)"
    delta = mean1.estimate - mean2.estimate
    v1, v2 = mean1.var, mean2.var
    if mean1.customers < 2 or mean2.customers < 2 or math.isnan(v1) or math.isnan(v2):
        return ClusteredDifference(NAN, NAN, NAN, NAN, NAN, NAN, NAN, test)
    if v1 < 0 or v2 < 0:
        raise ValueError(f"variances must be >= 0, got {v1} and {v2}.")
    se2 = v1 + v2
    if se2 == 0:
        return ClusteredDifference(delta, 0.0, NAN, NAN, NAN, delta, delta, test)
    # Satterthwaite in shares of se² so tiny variances cannot underflow to 0/0.
    a, b = v1 / se2, v2 / se2
    df = 1 / (a * a / (mean1.customers - 1) + b * b / (mean2.customers - 1))
    se = math.sqrt(se2)
    stat = delta / se
    half = float(_sp.t.ppf(0.5 + level / 2, df)) * se
    p_value = float(2 * _sp.t.sf(abs(stat), df))
    return ClusteredDifference(delta, se, stat, df, p_value, delta - half, delta + half, test)


def z_difference(share1: ClusteredShare, share2: ClusteredShare, level: float = 0.95) -> ClusteredDifference:
    """``score1 − score2`` (points) for two disjoint groups: z-test with the clustered variances.

    ``se = 100·√(var₁+var₂)`` (var = clustered variance of the mean −1/0/+1 or 0/1 score),
    ``z = δ/se``, interval ``δ ± z(1−α/2)·se``. Both must be NPS or both CSAT.

    >>> a = ClusteredShare("csat", 80.0, 0, 0, 100, 100, 100.0, 1.0, 0.0016, 0.8, 0.0)
    >>> b = ClusteredShare("csat", 70.0, 0, 0, 100, 100, 100.0, 1.0, 0.0021, 0.7, 0.0)
    >>> r = z_difference(a, b)
    >>> round(r.delta, 6), round(r.se, 4), round(r.p_value, 4)
    (10.0, 6.0828, 0.1002)
    """
    if share1.kind != share2.kind:
        raise ValueError(f"cannot compare {share1.kind} with {share2.kind}.")
    test = f"{share1.kind} z-test (customer-clustered)"
    if share1.customers < 2 or share2.customers < 2:
        return ClusteredDifference(NAN, NAN, NAN, math.inf, NAN, NAN, NAN, test)
    if share1.var < 0 or share2.var < 0:
        raise ValueError(f"variances must be >= 0, got {share1.var} and {share2.var}.")
    delta = share1.score - share2.score
    return _z_result(delta, 100 * math.sqrt(share1.var + share2.var), level, test)


def _period_columns(per_customer: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    if not isinstance(per_customer, pd.DataFrame):
        raise ValueError("per_customer must be a pandas DataFrame with one row per customer.")
    missing = [c for c in names if c not in per_customer.columns]
    if missing:
        raise ValueError(f"per_customer lacks column(s) {', '.join(missing)}.")
    out = {}
    for c in names:
        col = pd.to_numeric(per_customer[c], errors="raise").to_numpy(dtype=float)
        out[c] = _finite_vector(c, np.nan_to_num(col, nan=0.0))
    for c in ("W1", "W2"):
        if np.any(out[c] < 0):
            raise ValueError(f"{c} must be >= 0 (weights cannot be negative).")
    if {"n1", "n2"} <= set(per_customer.columns):
        n1 = _counts("n1", np.nan_to_num(per_customer["n1"].to_numpy(dtype=float)), len(per_customer))
        n2 = _counts("n2", np.nan_to_num(per_customer["n2"].to_numpy(dtype=float)), len(per_customer))
        present = (n1 + n2) > 0
    else:
        present = (out["W1"] > 0) | (out["W2"] > 0)
    return {c: v[present] for c, v in out.items()}


def _linearised_difference(
    w1: np.ndarray, s1: np.ndarray, w2: np.ndarray, s2: np.ndarray
) -> tuple[float, float]:
    total1, total2 = float(w1.sum()), float(w2.sum())
    if total1 <= 0 or total2 <= 0:
        return NAN, NAN
    m1, m2 = float(s1.sum()) / total1, float(s2.sum()) / total2
    e = (s1 - m1 * w1) / total1 - (s2 - m2 * w2) / total2
    c = e.shape[0]
    var = c / (c - 1) * float(np.dot(e, e)) if c >= 2 else NAN
    return m1 - m2, var


def period_difference(per_customer: pd.DataFrame, level: float = 0.95) -> ClusteredDifference:
    """Mean of period 1 (current) minus period 2 (previous), linearised over customers.

    ``per_customer`` has one row per customer appearing in either period and columns
    ``W1, S1`` (current period: Σw, Σwy) and ``W2, S2`` (previous); a customer absent from a period
    has 0 (or NaN) there. Optional ``n1, n2`` (responses) decide who appears; without them a
    customer appears where it has weight. ``δ = ȳ₁ − ȳ₂``,
    ``var(δ) = C/(C−1) · Σ_c (t_c¹/W₁ − t_c²/W₂)²`` with ``t_c^k = S_c^k − ȳ_k·W_c^k`` and
    C = customers in either period; z-test, interval ``δ ± z·se``.

    >>> f = pd.DataFrame({"W1": [1, 1, 1], "S1": [4, 5, 6], "W2": [1, 1, 0], "S2": [3, 5, 0]})
    >>> r = period_difference(f)
    >>> r.delta, round(r.se, 4)
    (1.0, 0.7638)
    """
    cols = _period_columns(per_customer, ["W1", "S1", "W2", "S2"])
    delta, var = _linearised_difference(cols["W1"], cols["S1"], cols["W2"], cols["S2"])
    return _z_result(
        delta, NAN if math.isnan(var) else math.sqrt(var), level, "period z-test (customer-linearised)"
    )


def period_difference_share(
    per_customer: pd.DataFrame, kind: Literal["nps", "csat"], level: float = 0.95
) -> ClusteredDifference:
    """NPS or CSAT of period 1 (current) minus period 2 (previous), in points, linearised over customers.

    NPS columns ``W1, P1, D1, W2, P2, D2`` (Σw, Σw·promoter, Σw·detractor per customer and period);
    CSAT columns ``W1, S1, W2, S2`` (Σw, Σw·[4–5]). The score per response is −1/0/+1 (NPS) or 0/1
    (CSAT); then as :func:`period_difference`, times 100.

    >>> f = pd.DataFrame({"W1": [1, 1], "P1": [1, 0], "D1": [0, 1], "W2": [1, 1], "P2": [0, 0], "D2": [0, 1]})
    >>> period_difference_share(f, "nps").delta
    50.0
    """
    if kind == "nps":
        cols = _period_columns(per_customer, ["W1", "P1", "D1", "W2", "P2", "D2"])
        _check_share_sums(cols["W1"], P1=cols["P1"], D1=cols["D1"])
        _check_share_sums(cols["W2"], P2=cols["P2"], D2=cols["D2"])
        s1, s2 = cols["P1"] - cols["D1"], cols["P2"] - cols["D2"]
    elif kind == "csat":
        cols = _period_columns(per_customer, ["W1", "S1", "W2", "S2"])
        _check_share_sums(cols["W1"], S1=cols["S1"])
        _check_share_sums(cols["W2"], S2=cols["S2"])
        s1, s2 = cols["S1"], cols["S2"]
    else:
        raise ValueError(f"kind must be 'nps' or 'csat', got {kind!r}.")
    delta, var = _linearised_difference(cols["W1"], s1, cols["W2"], s2)
    se = NAN if math.isnan(var) else 100 * math.sqrt(var)
    return _z_result(100 * delta, se, level, f"{kind} period z-test (customer-linearised)")


# --------------------------------------------------------------------------- from sums over customers


@dataclass(frozen=True)
class CustomerSums:
    """One score in one group, as sums over its customers of their per-customer sums.

    ``customers`` C (customers with a response having the score; an unmatched response is one),
    ``responses`` N = Σn_c, ``W = ΣW_c``, ``S = ΣS_c``, ``WW = ΣW_c²``, ``WS = ΣW_c·S_c`` and
    ``SS = ΣS_c²``. SQL returns them from a two-level aggregation (per customer first, then over
    customers). Each field is a sum over customers, so two disjoint groups add and "the rest" of a
    group is a difference. ``Σ_c t_c² = SS − 2ȳ·WS + ȳ²·WW`` with ``ȳ = S/W``.

    >>> s = CustomerSums.of_customers([1, 1, 1, 1], [1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1])
    >>> s.customers, s.sum_t2(), round(s.variance(), 6)
    (4, 5.0, 0.416667)
    """

    customers: int = 0
    responses: int = 0
    W: float = 0.0
    S: float = 0.0
    WW: float = 0.0
    WS: float = 0.0
    SS: float = 0.0

    @classmethod
    def of_customers(cls, W_c: object, S_c: object, n_c: object) -> CustomerSums:
        """The sums of per-customer arrays (customers with ``n_c == 0`` are left out)."""
        w, sums, n = _customer_arrays(W_c, {"S_c": S_c}, n_c)
        s = sums["S_c"]
        return cls(
            int(w.shape[0]),
            int(n.sum()),
            float(w.sum()),
            float(s.sum()),
            float(np.dot(w, w)),
            float(np.dot(w, s)),
            float(np.dot(s, s)),
        )

    def __add__(self, other: CustomerSums) -> CustomerSums:
        return CustomerSums(*(a + b for a, b in zip(self._fields(), other._fields(), strict=True)))

    def __sub__(self, other: CustomerSums) -> CustomerSums:
        return CustomerSums(*(a - b for a, b in zip(self._fields(), other._fields(), strict=True)))

    def _fields(self) -> tuple:
        return (self.customers, self.responses, self.W, self.S, self.WW, self.WS, self.SS)

    def mean(self) -> float:
        """``ȳ = S/W`` (NaN without weight)."""
        return self.S / self.W if self.W > 0 else NAN

    def sum_t2(self) -> float:
        """``Σ_c t_c² = Σ_c (S_c − ȳW_c)²`` from the sums (rounding below 0 is clipped)."""
        if self.W <= 0:
            return NAN
        m = self.S / self.W
        return max(0.0, self.SS - 2 * m * self.WS + m * m * self.WW)

    def variance(self) -> float:
        """``C/(C−1) · Σt_c² / W²``; NaN for fewer than two customers."""
        if self.customers < 2 or self.W <= 0:
            return NAN
        return self.customers / (self.customers - 1) * self.sum_t2() / (self.W * self.W)

    def check(self, what: str) -> None:
        if self.customers < 0 or self.responses < 0 or self.W < 0 or self.WW < 0 or self.SS < 0:
            raise ValueError(f"the sums of {what} cannot be negative: {self}.")
        if self.customers > 0 and self.W <= 0:
            raise ValueError(f"the weights of the responses sum to 0; no weighted {what} exists.")


def clustered_mean_from_sums(sums: CustomerSums, shift: float = 0.0, level: float = 0.95) -> ClusteredMean:
    """:func:`clustered_mean` from the sums over customers (``S_c`` of ``y − shift``).

    SQL sums ``y − shift`` (e.g. 50 for a 0–100 index) so that ``SS − 2ȳ·WS + ȳ²·WW`` does not
    cancel digits away; the shift moves the mean and nothing else.

    >>> r = clustered_mean_from_sums(CustomerSums(4, 4, 4.0, -2.0, 4.0, -2.0, 6.0), shift=3.0)
    >>> r.estimate, round(r.low, 4), round(r.high, 4)
    (2.5, 0.4457, 4.5543)
    """
    level = _check_level(level)
    sums.check("mean")
    if sums.customers == 0:
        return _mean_result(NAN, NAN, 0, 0, level)
    return _mean_result(shift + sums.mean(), sums.variance(), sums.responses, sums.customers, level)


def csat_interval_from_sums(sums: CustomerSums, level: float = 0.95) -> ClusteredShare:
    """:func:`csat_interval_clustered` from the sums over customers (``S_c`` = weight answering 4–5).

    >>> r = csat_interval_from_sums(CustomerSums(10, 10, 10.0, 8.0, 10.0, 8.0, 8.0))
    >>> r.score, round(r.low, 2), round(r.high, 2), r.n_eff
    (80.0, 49.02, 94.33, 10.0)
    """
    z = _z(level)
    sums.check("CSAT")
    if sums.customers == 0:
        return _csat_result(NAN, NAN, 0, 0, z)
    p = min(1.0, max(0.0, sums.mean()))
    return _csat_result(p, sums.variance(), sums.responses, sums.customers, z)


def nps_interval_from_sums(sums: CustomerSums, P: float, D: float, level: float = 0.95) -> ClusteredShare:
    """:func:`nps_interval_clustered` from the sums over customers: ``sums`` of ``S_c = P_c − D_c``
    and the totals ``P = ΣP_c``, ``D = ΣD_c`` (weight of promoters and of detractors).

    >>> r = nps_interval_from_sums(CustomerSums(100, 100, 100.0, 30.0, 100.0, 30.0, 70.0), 50.0, 20.0)
    >>> r.score, round(r.low, 1), round(r.high, 1), r.n_eff
    (30.0, 14.1, 44.2, 100.0)
    """
    z = _z(level)
    sums.check("NPS")
    if sums.customers == 0:
        return _nps_result(NAN, NAN, NAN, 0, 0, z)
    if P < 0 or D < 0 or P + D > sums.W * (1 + 1e-9):
        raise ValueError(
            f"promoters ({P}) and detractors ({D}) must be >= 0 and add up to at most W ({sums.W})."
        )
    p = min(1.0, max(0.0, P / sums.W))
    d = min(1.0 - p, max(0.0, D / sums.W))
    return _nps_result(p, d, sums.variance(), sums.responses, sums.customers, z)


@dataclass(frozen=True)
class PeriodSums:
    """One score in two periods, linearised over the customers of both (current = 1, previous = 2).

    ``customers`` counts the customers having the score in either period; ``current`` and
    ``previous`` are each period's :class:`CustomerSums`; the cross sums over customers are
    ``S1S2 = ΣS_c¹S_c²``, ``S1W2 = ΣS_c¹W_c²``, ``W1S2 = ΣW_c¹S_c²`` and ``W1W2 = ΣW_c¹W_c²``
    (0 for a customer absent from a period).
    """

    customers: int
    current: CustomerSums
    previous: CustomerSums
    S1S2: float = 0.0
    S1W2: float = 0.0
    W1S2: float = 0.0
    W1W2: float = 0.0

    def __add__(self, other: PeriodSums) -> PeriodSums:
        return PeriodSums(
            self.customers + other.customers,
            self.current + other.current,
            self.previous + other.previous,
            self.S1S2 + other.S1S2,
            self.S1W2 + other.S1W2,
            self.W1S2 + other.W1S2,
            self.W1W2 + other.W1W2,
        )


def period_difference_from_sums(
    sums: PeriodSums, kind: Literal["mean", "nps", "csat"] = "mean", level: float = 0.95
) -> ClusteredDifference:
    """:func:`period_difference` / :func:`period_difference_share` from sums over customers.

    ``e_c = t_c¹/W₁ − t_c²/W₂``; ``Σe_c² = Σt¹²/W₁² − 2Σt¹t²/(W₁W₂) + Σt²²/W₂²`` with
    ``Σt¹t² = S1S2 − ȳ₂·S1W2 − ȳ₁·W1S2 + ȳ₁ȳ₂·W1W2``; ``var(δ) = C/(C−1)·Σe_c²``; z-test.
    NPS and CSAT differences are in points (× 100).

    >>> one = CustomerSums(3, 3, 3.0, 15.0, 3.0, 15.0, 77.0)
    >>> two = CustomerSums(2, 2, 2.0, 8.0, 2.0, 8.0, 34.0)
    >>> r = period_difference_from_sums(PeriodSums(3, one, two, 37.0, 9.0, 8.0, 2.0))
    >>> r.delta, round(r.se, 4)
    (1.0, 0.7638)
    """
    if kind not in ("mean", "nps", "csat"):
        raise ValueError(f"kind must be 'mean', 'nps' or 'csat', got {kind!r}.")
    scale = 1.0 if kind == "mean" else 100.0
    test = (
        "period z-test (customer-linearised)"
        if kind == "mean"
        else f"{kind} period z-test (customer-linearised)"
    )
    a, b = sums.current, sums.previous
    a.check(kind)
    b.check(kind)
    if a.W <= 0 or b.W <= 0:
        return _z_result(NAN, NAN, level, test)
    m1, m2 = a.mean(), b.mean()
    cross = sums.S1S2 - m2 * sums.S1W2 - m1 * sums.W1S2 + m1 * m2 * sums.W1W2
    sum_e2 = a.sum_t2() / (a.W * a.W) - 2 * cross / (a.W * b.W) + b.sum_t2() / (b.W * b.W)
    c = sums.customers
    var = c / (c - 1) * max(0.0, sum_e2) if c >= 2 else NAN
    se = NAN if math.isnan(var) else scale * math.sqrt(var)
    return _z_result(scale * (m1 - m2), se, level, test)


# --------------------------------------------------------------------------- weights


def kish_deff(weights: object) -> float:
    """Kish's design effect due to weighting: ``n·Σw² / (Σw)²`` (1 for equal weights).

    NaN for no weights or weights summing to 0.

    >>> kish_deff([1.0, 1.0, 2.0])
    1.125
    """
    w = _finite_vector("weights", weights)
    if np.any(w < 0):
        raise ValueError("weights must be >= 0.")
    total = float(w.sum())
    if w.shape[0] == 0 or total <= 0:
        return NAN
    return w.shape[0] * float(np.dot(w, w)) / (total * total)


def customer_weights(
    customers: object,
    weight: Mapping[object, float] | pd.Series | None = None,
    answered: object | None = None,
) -> np.ndarray:
    """Split a per-customer weight over that customer's responses having the score.

    Response i of customer c gets ``weight[c] / (c's responses with answered == True)``, so each
    customer's responses to a score add up to its weight (``customer``: 1; ``value``: annual
    value; ``raked``: the raked weight). ``weight=None`` means 1 per customer. Responses not
    answering the score, and unmatched responses (missing customer id: they carry no customer
    weight), get NaN and are left out by :func:`cluster_sums`.

    >>> customer_weights(["a", "a", "b", None], {"a": 2.0, "b": 1.0}).tolist()
    [1.0, 1.0, 1.0, nan]
    """
    ids = pd.Series(np.asarray(customers, dtype=object))
    length = ids.shape[0]
    if answered is None:
        ans = np.ones(length, dtype=bool)
    else:
        ans = np.asarray(answered)
        if ans.shape != (length,):
            raise ValueError(f"answered has shape {ans.shape} but {length} responses were given.")
        ans = ans.astype(bool)
    use = ans & ids.notna().to_numpy()
    out = np.full(length, np.nan)
    if not use.any():
        return out
    used = ids[use]
    per_customer = used.map(used.value_counts()).to_numpy(dtype=float)
    if weight is None:
        base = np.ones(per_customer.shape[0])
    else:
        table = weight if isinstance(weight, pd.Series) else pd.Series(dict(weight), dtype=float)
        if not table.index.is_unique:
            raise ValueError("weight has more than one entry for a customer.")
        absent = pd.Index(used.unique()).difference(table.index)
        if len(absent):
            shown = ", ".join(map(str, list(absent[:5])))
            raise ValueError(f"weight has no entry for {len(absent)} customer(s), e.g. {shown}.")
        base = used.map(table).to_numpy(dtype=float)
        if not np.all(np.isfinite(base)) or np.any(base < 0):
            raise ValueError("customer weights must be finite and >= 0.")
    out[use] = base / per_customer
    return out


def _dimension_labels(frame: pd.DataFrame, dim: str, role: str) -> pd.Series:
    if dim not in frame.columns:
        raise ValueError(f"the {role} has no column {dim!r} to rake on.")
    col = frame[dim].astype(object)
    return col.where(col.notna(), _MISSING_LABEL)


def rake_with_diagnostics(
    base: pd.DataFrame,
    respondents: pd.DataFrame,
    dims: Sequence[str] = ("region", "plan"),
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> tuple[pd.Series, RakingDiagnostics]:
    """Raked customer weights by iterative proportional fitting, with diagnostics.

    ``base`` has one row per customer of the customer base, ``respondents`` one row per responding
    customer (index = customer id); both carry the ``dims`` columns (a missing value is its own
    level, "(missing)"). Starting from weight 1 per respondent, each pass multiplies the weights
    of respondents with value v of a dimension by ``target_v / Σ weight`` for every dimension in
    turn; targets are the base's customer counts, so the weights sum to the base size. It stops
    when every margin is within ``tol`` of its target (relative) after a full pass, or after
    ``max_iter`` passes (``converged=False``). Raises :class:`RakingError` (a ``ValueError``)
    naming the dimension and value(s) present in the base with no responding customer, or
    present among respondents but not in the base.

    >>> base = pd.DataFrame({"region": list("NNNS"), "plan": list("abbb")})
    >>> resp = pd.DataFrame({"region": list("NS"), "plan": list("ab")}, index=["c1", "c2"])
    >>> rake_with_diagnostics(base, resp, ["region"])[0].tolist()
    [3.0, 1.0]
    """
    dims = list(dims)
    if not dims:
        raise ValueError("dims must name at least one dimension to rake on.")
    if len(set(dims)) != len(dims):
        raise ValueError(f"dims has a repeated dimension: {dims}.")
    if not respondents.index.is_unique:
        raise ValueError("respondents must have one row per customer (a unique index).")
    if len(base) == 0:
        raise RakingError("the customer base is empty; there is nothing to rake to.")
    if len(respondents) == 0:
        raise RakingError("no responding customers; there is nothing to rake.")
    if tol <= 0 or max_iter < 1:
        raise ValueError("tol must be > 0 and max_iter >= 1.")

    codes: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    levels: list[pd.Index] = []
    problems: list[str] = []
    for dim in dims:
        base_labels = _dimension_labels(base, dim, "customer base")
        resp_labels = _dimension_labels(respondents, dim, "respondents")
        counts = base_labels.value_counts(sort=False)
        counts = counts.iloc[np.argsort([str(v) for v in counts.index], kind="stable")]
        index = pd.Index(counts.index, dtype=object)
        code = index.get_indexer(resp_labels)
        empty = [str(v) for v in index[np.bincount(code[code >= 0], minlength=len(index)) == 0]]
        if empty:
            problems.append(
                f"{dim} = {', '.join(sorted(empty))} (in the customer base, no responding customer)"
            )
        extra = sorted({str(v) for v in resp_labels[code < 0]})
        if extra:
            problems.append(f"{dim} = {', '.join(extra)} (responding customers not in the customer base)")
        codes.append(code)
        targets.append(counts.to_numpy(dtype=float))
        levels.append(index)
    if problems:
        raise RakingError("Cannot rake: " + "; ".join(problems) + ".")

    w = np.ones(len(respondents))
    converged, iterations = False, 0
    while iterations < max_iter:
        iterations += 1
        for code, target in zip(codes, targets, strict=True):
            w = w * (target / np.bincount(code, weights=w, minlength=target.shape[0]))[code]
        worst = max(
            float(np.max(np.abs(np.bincount(code, weights=w, minlength=target.shape[0]) / target - 1)))
            for code, target in zip(codes, targets, strict=True)
        )
        if worst <= tol:
            converged = True
            break

    weights = pd.Series(w, index=respondents.index, name="weight")
    rows = []
    n_base = float(len(base))
    total = float(w.sum())
    for dim, code, target, index in zip(dims, codes, targets, levels, strict=True):
        achieved = np.bincount(code, weights=w, minlength=target.shape[0])
        unweighted = np.bincount(code, minlength=target.shape[0])
        for k, value in enumerate(index):
            rows.append(
                {
                    "dimension": dim,
                    "value": value,
                    "target": target[k],
                    "target_share": target[k] / n_base,
                    "respondents": int(unweighted[k]),
                    "achieved": achieved[k],
                    "achieved_share": achieved[k] / total,
                }
            )
    diagnostics = RakingDiagnostics(
        margins=pd.DataFrame(rows),
        weight_min=float(w.min()),
        weight_max=float(w.max()),
        weight_ratio=float(w.max() / w.min()) if w.min() > 0 else math.inf,
        kish_deff=kish_deff(w),
        converged=converged,
        iterations=iterations,
    )
    return weights, diagnostics


def rake(
    base: pd.DataFrame,
    respondents: pd.DataFrame,
    dims: Sequence[str] = ("region", "plan"),
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> pd.Series:
    """Per-customer raked weights (IPF to the base's counts on each of ``dims``), indexed like ``respondents``.

    As :func:`rake_with_diagnostics`, but raises :class:`RakingError` when the margins are not
    within ``tol`` after ``max_iter`` passes.

    >>> base = pd.DataFrame({"region": list("NNNS"), "plan": list("abbb")})
    >>> resp = pd.DataFrame({"region": list("NNS"), "plan": list("abb")}, index=[1, 2, 3])
    >>> rake(base, resp).round(6).tolist()
    [1.0, 2.0, 1.0]
    """
    weights, diagnostics = rake_with_diagnostics(base, respondents, dims, tol=tol, max_iter=max_iter)
    if not diagnostics.converged:
        raise RakingError(
            f"Raking on {', '.join(dims)} did not converge within {max_iter} passes "
            "(the responding customers cannot match every margin at once)."
        )
    return weights
