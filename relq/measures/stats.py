"""Intervals and tests on the small sufficient statistics that RelQ's SQL queries return.

Every function here takes counts, sums, sums of squares or cross-product matrices -- never raw
rows -- so the same numbers come out whether the data sit in DuckDB, PostgreSQL or a warehouse.
Definitions follow the Methodology page. An estimate over no data (n == 0) is NaN, never an
exception; inputs that cannot be statistics of one sample (negative counts, levels outside
(0, 1), mismatched shapes) raise ``ValueError`` naming what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import stats as _sp

__all__ = [
    "AlphaResult",
    "Comparison",
    "Interval",
    "NpsResult",
    "benjamini_hochberg",
    "correlation_from_cov",
    "correlations_from_covs",
    "covariance_from_sums",
    "cronbach_alpha",
    "csat_interval",
    "htmt",
    "is_small",
    "item_statistics",
    "mean_interval",
    "nps_difference",
    "nps_interval",
    "pearson_interval",
    "proportion_difference",
    "variance_from_sums",
    "welch_difference",
    "wilson_interval",
    "with_q_values",
]

NAN = float("nan")


def _json_float(x: float) -> float | None:
    """Full-precision float, or None for NaN (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval and the n it rests on."""

    estimate: float
    low: float
    high: float
    n: int

    def as_dict(self, key: str = "mean") -> dict:
        """``{key: estimate, "ci": [low, high], "n": n}`` with NaN as None (the report JSON shape)."""
        return {
            key: _json_float(self.estimate),
            "ci": [_json_float(self.low), _json_float(self.high)],
            "n": int(self.n),
        }


@dataclass(frozen=True)
class NpsResult:
    """NPS (-100..100) with its adjusted-Wald interval and the counts behind it.

    ``variance`` is the adjusted-Wald variance of ``p* - d*`` on the 0-1 scale, i.e. ``se**2``;
    :func:`nps_difference` adds two of them.
    """

    score: float
    low: float
    high: float
    n: int
    promoters: int
    passives: int
    detractors: int
    variance: float

    def as_dict(self) -> dict:
        """The report JSON shape: score, ci, n and the three counts (NaN as None)."""
        return {
            "score": _json_float(self.score),
            "ci": [_json_float(self.low), _json_float(self.high)],
            "n": int(self.n),
            "promoters": int(self.promoters),
            "passives": int(self.passives),
            "detractors": int(self.detractors),
        }


@dataclass(frozen=True)
class Comparison:
    """A difference between two groups (first minus second) with its interval and test."""

    delta: float
    low: float
    high: float
    p_value: float
    test: str
    q_value: float | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        """True when q (if set, else p) is below ``alpha``; NaN is never significant."""
        value = self.p_value if self.q_value is None else self.q_value
        return bool(value < alpha)  # NaN < alpha is False

    def as_dict(self) -> dict:
        """JSON-ready dict: delta, ci, p, q, test, significant."""
        return {
            "delta": _json_float(self.delta),
            "ci": [_json_float(self.low), _json_float(self.high)],
            "p": _json_float(self.p_value),
            "q": None if self.q_value is None else _json_float(self.q_value),
            "test": self.test,
            "significant": self.significant(),
        }


@dataclass(frozen=True)
class AlphaResult:
    """Cronbach's alpha with its Feldt interval, over n complete responses to k items."""

    alpha: float
    low: float
    high: float
    n: int
    k: int

    def as_dict(self) -> dict:
        """``{"alpha", "ci", "n", "k"}`` with NaN as None."""
        return {
            "alpha": _json_float(self.alpha),
            "ci": [_json_float(self.low), _json_float(self.high)],
            "n": int(self.n),
            "k": int(self.k),
        }


# --------------------------------------------------------------------------- validation


def _count(name: str, value: object) -> int:
    """A non-negative whole number; SQL drivers may hand back floats or Decimals like 12.0."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a count (a whole number >= 0), got {value!r}.")
    if isinstance(value, Integral):
        out = int(value)
    else:
        try:
            as_float = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a count (a whole number >= 0), got {value!r}.") from None
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise ValueError(f"{name} must be a count (a whole number >= 0), got {value!r}.")
        out = int(as_float)
    if out < 0:
        raise ValueError(f"{name} must be >= 0, got {out}.")
    return out


def _finite(name: str, value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return out


def _z(level: float) -> float:
    """Two-sided normal critical value for a confidence level in (0, 1)."""
    return float(_sp.norm.ppf(0.5 + _check_level(level) / 2))


def _check_level(level: float) -> float:
    if not isinstance(level, Real) or not 0 < float(level) < 1:
        raise ValueError(f"level must be a probability strictly between 0 and 1 (e.g. 0.95), got {level!r}.")
    return float(level)


def _square(name: str, matrix: object) -> np.ndarray:
    arr = np.asarray(matrix, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {arr.shape}.")
    if not np.allclose(arr, arr.T, equal_nan=True):
        raise ValueError(f"{name} must be symmetric.")
    return arr


# --------------------------------------------------------------------------- means


def variance_from_sums(n: int, total: float, total_sq: float) -> float:
    """Sample variance (divisor n-1) from n, Σx and Σx²: ``(Σx² - (Σx)²/n) / (n - 1)``.

    NaN when n < 2. Rounding can make the numerator slightly negative for constant data; it is
    clipped at 0. A clearly negative numerator means the sums are not of one sample.

    >>> variance_from_sums(3, 6.0, 14.0)  # x = 1, 2, 3
    1.0
    """
    n = _count("n", n)
    if n < 2:
        return NAN
    total, total_sq = _finite("total", total), _finite("total_sq", total_sq)
    ss = total_sq - total * total / n
    if ss < -1e-9 * max(abs(total_sq), 1.0):
        raise ValueError(
            f"total_sq ({total_sq}) is smaller than total²/n ({total * total / n}); "
            "pass Σx² and Σx of the same rows."
        )
    return max(ss, 0.0) / (n - 1)


def mean_interval(n: int, total: float, total_sq: float, level: float = 0.95) -> Interval:
    """Mean with its t-interval from n, Σx and Σx².

    ``mean ± t(1 - a/2; n-1) · s/√n`` with ``s² = (Σx² - (Σx)²/n)/(n-1)``.
    n == 0 gives NaN everywhere; n == 1 gives the value with a NaN interval.
    Reference: scipy.stats.t.interval(level, n-1, loc=mean, scale=sem).

    >>> r = mean_interval(4, 10.0, 30.0)  # x = 1, 2, 3, 4
    >>> r.estimate, round(r.low, 4), round(r.high, 4)
    (2.5, 0.4457, 4.5543)
    """
    n = _count("n", n)
    level = _check_level(level)
    if n == 0:
        return Interval(NAN, NAN, NAN, 0)
    mean = _finite("total", total) / n
    var = variance_from_sums(n, total, total_sq)
    if n < 2:
        return Interval(mean, NAN, NAN, n)
    half = float(_sp.t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half, n)


# --------------------------------------------------------------------------- proportions


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Proportion (0-1) with its Wilson score interval.

    ``(p̂ + z²/2n ± z·√(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``. Wilson (1927), JASA 22:209-212.
    Reference: statsmodels ``proportion_confint(method="wilson")``. Always contains p̂.

    >>> r = wilson_interval(8, 10)
    >>> r.estimate, round(r.low, 4), round(r.high, 4)
    (0.8, 0.4902, 0.9433)
    """
    successes, n = _count("successes", successes), _count("n", n)
    if successes > n:
        raise ValueError(f"successes ({successes}) cannot exceed n ({n}).")
    z = _z(level)
    if n == 0:
        return Interval(NAN, NAN, NAN, 0)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # Clamp rounding dust so the interval always contains p and stays in [0, 1].
    return Interval(p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)), n)


def csat_interval(top2: int, n: int, level: float = 0.95) -> Interval:
    """CSAT = 100 · share answering 4-5 on 1-5, with its Wilson interval (percent).

    >>> r = csat_interval(80, 100)
    >>> r.estimate, round(r.low, 2), round(r.high, 2)
    (80.0, 71.12, 86.66)
    """
    w = wilson_interval(top2, n, level)
    return Interval(100 * w.estimate, 100 * w.low, 100 * w.high, w.n)


def nps_interval(promoters: int, passives: int, detractors: int, level: float = 0.95) -> NpsResult:
    """NPS = 100·(P - D)/n with the adjusted-Wald interval of the Methodology page.

    ``n* = n+3, p* = (P+¾)/n*, d* = (D+¾)/n*, se = √((p*+d*-(p*-d*)²)/n*)``,
    interval ``100·((p*-d*) ± z·se)`` clipped to [-100, 100].
    Reference: Rocks (2016), "Interval estimation for the 'Net Promoter Score'",
    The American Statistician 70(4):365-372; Sauro & Lewis, MeasuringU (2021).

    The interval is centred on the shrunken ``p* - d*``, not on the score. At 95% it contains
    the score for every n >= 2; for a single unanimous answer (n == 1, score ±100) it stops at
    ±98.5. That is the published formula, kept as computed; n == 1 is far below the small-sample
    minimum and is shown greyed anyway.

    >>> r = nps_interval(50, 30, 20)
    >>> r.score, round(r.low, 1), round(r.high, 1)
    (30.0, 14.1, 44.2)
    """
    p_count = _count("promoters", promoters)
    m_count = _count("passives", passives)
    d_count = _count("detractors", detractors)
    z = _z(level)
    n = p_count + m_count + d_count
    if n == 0:
        return NpsResult(NAN, NAN, NAN, 0, 0, 0, 0, NAN)
    n_star = n + 3
    p_star = (p_count + 0.75) / n_star
    d_star = (d_count + 0.75) / n_star
    diff = p_star - d_star
    variance = (p_star + d_star - diff * diff) / n_star
    half = z * math.sqrt(variance)
    score = 100 * (p_count - d_count) / n
    low = max(-100.0, 100 * (diff - half))
    high = min(100.0, 100 * (diff + half))
    return NpsResult(score, low, high, n, p_count, m_count, d_count, variance)


# --------------------------------------------------------------------------- comparisons


def _normal_p(z_stat: float) -> float:
    return float(2 * _sp.norm.sf(abs(z_stat)))


def nps_difference(a: NpsResult, b: NpsResult, level: float = 0.95) -> Comparison:
    """NPS of ``a`` minus NPS of ``b`` (points) with a z-test using the adjusted-Wald variances.

    ``se = √(var_a + var_b)``; ``z = (score_a - score_b) / (100·se)``; interval
    ``delta ± z·100·se``, centred on the observed difference so that it excludes 0 exactly
    when p < 1 - level. Either group empty gives NaN. Reference: Rocks (2016).

    >>> c = nps_difference(nps_interval(50, 30, 20), nps_interval(30, 30, 40))
    >>> round(c.delta, 1), round(c.p_value, 4)
    (40.0, 0.0004)
    """
    z = _z(level)
    test = "nps z-test (adjusted Wald)"
    if a.n == 0 or b.n == 0:
        return Comparison(NAN, NAN, NAN, NAN, test)
    delta = a.score - b.score
    se = 100 * math.sqrt(a.variance + b.variance)
    return Comparison(delta, delta - z * se, delta + z * se, _normal_p(delta / se), test)


def proportion_difference(x1: int, n1: int, x2: int, n2: int, level: float = 0.95) -> Comparison:
    """Difference of proportions ``x1/n1 - x2/n2`` (0-1 scale), Newcombe hybrid score interval.

    Interval: Newcombe (1998), Statistics in Medicine 17:873-890, method 10, built from the two
    Wilson intervals ``(l1, u1), (l2, u2)``: ``δ - √((p1-l1)² + (u2-p2)²)`` to
    ``δ + √((u1-p1)² + (p2-l2)²)``. Reference: statsmodels
    ``confint_proportions_2indep(method="newcomb")``.

    p-value: the two-proportion pooled z-test, ``z = δ / √(p̄(1-p̄)(1/n1 + 1/n2))`` with
    ``p̄ = (x1+x2)/(n1+n2)`` (statsmodels ``proportions_ztest``). When p̄ is 0 or 1 both groups
    agree completely; the p-value is then 1. Either group empty gives NaN.

    >>> c = proportion_difference(56, 70, 48, 80)
    >>> round(c.delta, 4), round(c.low, 4), round(c.high, 4)
    (0.2, 0.0524, 0.3339)
    """
    x1, n1, x2, n2 = _count("x1", x1), _count("n1", n1), _count("x2", x2), _count("n2", n2)
    if x1 > n1 or x2 > n2:
        raise ValueError(f"successes cannot exceed n (got {x1}/{n1} and {x2}/{n2}).")
    _check_level(level)
    test = "Newcombe"
    if n1 == 0 or n2 == 0:
        return Comparison(NAN, NAN, NAN, NAN, test)
    w1, w2 = wilson_interval(x1, n1, level), wilson_interval(x2, n2, level)
    p1, p2 = w1.estimate, w2.estimate
    delta = p1 - p2
    low = delta - math.hypot(p1 - w1.low, w2.high - p2)
    high = delta + math.hypot(w1.high - p1, p2 - w2.low)
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = 1.0 if se == 0 else _normal_p(delta / se)
    return Comparison(delta, low, high, p_value, test)


def welch_difference(
    n1: int, mean1: float, var1: float, n2: int, mean2: float, var2: float, level: float = 0.95
) -> Comparison:
    """Difference of means ``mean1 - mean2`` with Welch's t-test and interval.

    ``se = √(v1/n1 + v2/n2)``, Welch-Satterthwaite
    ``df = se⁴ / ((v1/n1)²/(n1-1) + (v2/n2)²/(n2-1))``, interval ``δ ± t(1-a/2; df)·se``.
    Variances are sample variances (n-1), e.g. from :func:`variance_from_sums`.
    Either n < 2 gives NaN. With both variances 0 the interval is the point and p is NaN.
    Reference: Welch (1947), Biometrika 34:28-35; scipy ``ttest_ind_from_stats(equal_var=False)``.

    >>> c = welch_difference(10, 5.0, 4.0, 12, 3.0, 9.0)
    >>> round(c.delta, 1), round(c.p_value, 4)
    (2.0, 0.0775)
    """
    n1, n2 = _count("n1", n1), _count("n2", n2)
    level = _check_level(level)
    test = "Welch"
    if n1 < 2 or n2 < 2:
        return Comparison(NAN, NAN, NAN, NAN, test)
    mean1, mean2 = _finite("mean1", mean1), _finite("mean2", mean2)
    var1, var2 = _finite("var1", var1), _finite("var2", var2)
    if var1 < 0 or var2 < 0:
        raise ValueError(f"variances must be >= 0, got {var1} and {var2}.")
    delta = mean1 - mean2
    a, b = var1 / n1, var2 / n2
    se2 = a + b
    if se2 == 0:
        return Comparison(delta, delta, delta, NAN, test)
    # Welch-Satterthwaite in shares of se² so tiny variances cannot underflow to 0/0.
    wa, wb = a / se2, b / se2
    df = 1 / (wa * wa / (n1 - 1) + wb * wb / (n2 - 1))
    se = math.sqrt(se2)
    half = float(_sp.t.ppf(0.5 + level / 2, df)) * se
    p_value = float(2 * _sp.t.sf(abs(delta / se), df))
    return Comparison(delta, delta - half, delta + half, p_value, test)


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values (FDR-adjusted p-values); NaN stays NaN and is not counted.

    ``q_(i) = min_{j >= i} min(1, m · p_(j) / j)`` over the m non-NaN p-values sorted ascending.
    Reference: Benjamini & Hochberg (1995), JRSS B 57:289-300; statsmodels
    ``multipletests(method="fdr_bh")``.

    >>> benjamini_hochberg([0.01, 0.04, float("nan"), 0.03]).round(3).tolist()
    [0.03, 0.04, nan, 0.04]
    """
    p = np.asarray(p_values, dtype=float).ravel()
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1] (NaN is allowed and left as NaN).")
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty(m)
    out[order] = adjusted
    q[ok] = out
    return q


def with_q_values(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The same comparisons with ``q_value`` set by Benjamini-Hochberg across all of them.

    >>> cs = with_q_values([welch_difference(30, 1.0, 1.0, 30, 0.0, 1.0)] * 2)
    >>> cs[0].q_value == cs[0].p_value
    True
    """
    q = benjamini_hochberg([c.p_value for c in comparisons])
    return [replace(c, q_value=float(qi)) for c, qi in zip(comparisons, q, strict=True)]


# --------------------------------------------------------------------------- reliability


def covariance_from_sums(n: int, sums: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Sample covariance matrix (n-1) from Σxᵢ and Σxᵢxⱼ: ``(C - s sᵀ/n) / (n - 1)``.

    NaN matrix when n < 2.

    >>> covariance_from_sums(3, np.array([6.0, 6.0]), np.array([[14.0, 10.0], [10.0, 14.0]]))
    array([[ 1., -1.],
           [-1.,  1.]])
    """
    n = _count("n", n)
    s = np.asarray(sums, dtype=float).ravel()
    c = _square("cross", cross)
    if c.shape[0] != s.size:
        raise ValueError(f"sums has {s.size} items but cross is {c.shape[0]}x{c.shape[1]}.")
    if n < 2:
        return np.full(c.shape, np.nan)
    return (c - np.outer(s, s) / n) / (n - 1)


def _alpha(cov: np.ndarray) -> float:
    k = cov.shape[0]
    total = cov.sum()
    if k < 2 or not total > 0:
        return NAN
    return float(k / (k - 1) * (1 - np.trace(cov) / total))


def cronbach_alpha(cov: np.ndarray, n: int, level: float = 0.95) -> AlphaResult:
    """Cronbach's α from the items' sample covariance matrix, with Feldt's interval.

    ``α = k/(k-1) · (1 - Σσᵢ² / σ²_total)`` where ``σ²_total`` is the sum of all covariances.
    Feldt, Woodruff & Salih (1987), Applied Psychological Measurement 11:93-103, with
    ``df1 = n-1, df2 = (n-1)(k-1)``: low ``1 - (1-α)·F(1-a/2)``, high ``1 - (1-α)·F(a/2)``.
    Reference: pingouin ``cronbach_alpha`` / R ``psych::alpha``. NaN when n < 2 or the total
    variance is 0.

    >>> r = cronbach_alpha(np.array([[1.0, 0.5], [0.5, 1.0]]), n=50)
    >>> round(r.alpha, 4), round(r.low, 3), round(r.high, 3)
    (0.6667, 0.413, 0.811)
    """
    c = _square("cov", cov)
    k = c.shape[0]
    if k < 2:
        raise ValueError(f"Cronbach's alpha needs at least 2 items, got {k}.")
    n = _count("n", n)
    level = _check_level(level)
    if n < 2 or np.isnan(c).any():
        return AlphaResult(NAN, NAN, NAN, n, k)
    a = _alpha(c)
    if math.isnan(a):
        return AlphaResult(NAN, NAN, NAN, n, k)
    tail = (1 - level) / 2
    df1, df2 = n - 1, (n - 1) * (k - 1)
    low = 1 - (1 - a) * float(_sp.f.ppf(1 - tail, df1, df2))
    high = 1 - (1 - a) * float(_sp.f.ppf(tail, df1, df2))
    return AlphaResult(a, low, high, n, k)


def item_statistics(cov: np.ndarray, item_ids: list[str]) -> pd.DataFrame:
    """Per item: corrected item-total correlation and α if the item is deleted.

    Corrected item-total r is the correlation of item i with the sum of the *other* items:
    ``(Σⱼ Cᵢⱼ - Cᵢᵢ) / √(Cᵢᵢ · (ΣC - 2Σⱼ Cᵢⱼ + Cᵢᵢ))``. α if deleted is :func:`cronbach_alpha`
    on C without row/column i (NaN when fewer than 2 items would remain).
    Reference: R ``psych::alpha`` columns ``r.drop`` and ``raw_alpha``.

    >>> item_statistics(np.array([[1.0, 0.5], [0.5, 1.0]]), ["a", "b"]).round(2).to_dict("list")
    {'item_id': ['a', 'b'], 'item_total_r': [0.5, 0.5], 'alpha_if_deleted': [nan, nan]}
    """
    c = _square("cov", cov)
    k = c.shape[0]
    ids = list(item_ids)
    if len(ids) != k:
        raise ValueError(f"item_ids has {len(ids)} names but cov is {k}x{k}.")
    row = c.sum(axis=1)
    diag = np.diag(c)
    rest_var = c.sum() - 2 * row + diag
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (row - diag) / np.sqrt(diag * rest_var)
    r = np.where(np.isfinite(r), r, np.nan)
    keep = np.arange(k)
    alphas = [_alpha(c[np.ix_(keep != i, keep != i)]) if k > 2 else NAN for i in range(k)]
    return pd.DataFrame({"item_id": ids, "item_total_r": r, "alpha_if_deleted": alphas})


def correlation_from_cov(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix ``Cᵢⱼ / √(Cᵢᵢ Cⱼⱼ)``; rows/columns of zero-variance items are NaN.

    >>> correlation_from_cov(np.array([[4.0, 2.0], [2.0, 9.0]])).round(4)
    array([[1.    , 0.3333],
           [0.3333, 1.    ]])
    """
    return correlations_from_covs(_square("cov", cov)[None])[0]


def correlations_from_covs(covs: np.ndarray) -> np.ndarray:
    """:func:`correlation_from_cov` of a stack of B covariance matrices (B×k×k) at once."""
    c = np.asarray(covs, dtype=float)
    sd = np.sqrt(np.diagonal(c, axis1=1, axis2=2))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = c / (sd[:, :, None] * sd[:, None, :])
    corr = np.where(np.isfinite(corr), corr, np.nan)
    corr[:, np.eye(c.shape[1], dtype=bool)] = np.where(sd > 0, 1.0, np.nan)
    return np.clip(corr, -1.0, 1.0)


def htmt(corr: np.ndarray, groups: dict[str, list[int]]) -> pd.DataFrame:
    """Heterotrait-monotrait ratio for every pair of constructs.

    ``HTMT(A, B) = mean(r_ij, i∈A, j∈B) / √(mean(r_ij, i<j∈A) · mean(r_ij, i<j∈B))`` with the
    item correlations as they are (reverse-keyed items already recoded). Values near or above
    0.85-0.90 question discriminant validity. A construct with a single item has no monotrait
    correlations, so its HTMT is NaN. Henseler, Ringle & Sarstedt (2015), JAMS 43:115-135.

    >>> r = np.array([[1, .6, .3, .3], [.6, 1, .3, .3], [.3, .3, 1, .5], [.3, .3, .5, 1]])
    >>> htmt(r, {"trust": [0, 1], "satisfaction": [2, 3]}).round(4).to_dict("records")
    [{'a': 'trust', 'b': 'satisfaction', 'htmt': 0.5477}]
    """
    r = _square("corr", corr)
    k = r.shape[0]
    for name, idx in groups.items():
        if len(idx) == 0 or any(not 0 <= int(i) < k for i in idx):
            raise ValueError(f"group {name!r} must list item positions between 0 and {k - 1}, got {idx!r}.")

    def monotrait(idx: list[int]) -> float:
        pairs = [r[i, j] for i, j in combinations(idx, 2)]
        return float(np.mean(pairs)) if pairs else NAN

    rows = []
    for (a, ia), (b, ib) in combinations(groups.items(), 2):
        hetero = float(np.mean(r[np.ix_(ia, ib)]))
        denom = monotrait(ia) * monotrait(ib)
        value = hetero / math.sqrt(denom) if denom > 0 else NAN
        rows.append({"a": a, "b": b, "htmt": value})
    return pd.DataFrame(rows, columns=["a", "b", "htmt"])


def pearson_interval(r: float, n: int, level: float = 0.95) -> Interval:
    """Pearson r with its Fisher-z interval: ``tanh(atanh r ± z/√(n-3))``.

    NaN estimate when n == 0; NaN interval when n <= 3. Fisher (1921), Metron 1:3-32.
    Reference: scipy ``pearsonr(...).confidence_interval()``.

    >>> r = pearson_interval(0.5, 50)
    >>> round(r.low, 4), round(r.high, 4)
    (0.2575, 0.6833)
    """
    n = _count("n", n)
    z = _z(level)
    if n == 0:
        return Interval(NAN, NAN, NAN, 0)
    r = _finite("r", r)
    if not -1 <= r <= 1:
        raise ValueError(f"r must lie in [-1, 1], got {r}.")
    if n <= 3:
        return Interval(r, NAN, NAN, n)
    if abs(r) == 1:
        return Interval(r, r, r, n)
    centre, half = math.atanh(r), z / math.sqrt(n - 3)
    return Interval(r, math.tanh(centre - half), math.tanh(centre + half), n)


def is_small(n: int, min_n: int = 30) -> bool:
    """True when n is below the small-sample minimum (shown greyed with its n, never ranked).

    >>> is_small(29), is_small(30)
    (True, False)
    """
    return _count("n", n) < _count("min_n", min_n)
