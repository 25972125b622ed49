"""relq.measures.clustered against outside references (each test's name says which).

statsmodels' cluster-robust OLS/WLS, numpy's s²/n, statsmodels' Wilson interval, the adjusted-Wald
NPS interval of Rocks (2016), scipy's t, statsmodels' Benjamini–Hochberg and weightipy's IPF.
Seeds are fixed and printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from relq.measures.clustered import (
    ClusteredMean,
    ClusteredShare,
    RakingError,
    benjamini_hochberg,
    cluster_sums,
    clustered_mean,
    clustered_variance,
    csat_cluster_sums,
    csat_interval_clustered,
    customer_weights,
    kish_deff,
    nps_cluster_sums,
    nps_interval_clustered,
    period_difference,
    period_difference_share,
    rake,
    rake_with_diagnostics,
    welch_clustered,
    z_difference,
)

SEED = 20240517
Z975 = stats.norm.ppf(0.975)


def _responses(seed: int, customers: int = 60, unmatched: int = 7) -> pd.DataFrame:
    """Clustered responses: 1-6 per customer, a customer effect, weights in [0.2, 3], some unmatched."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, customers)
    ids = np.repeat([f"cust{i:03d}" for i in range(customers)], sizes)
    effect = np.repeat(rng.normal(0, 1.2, customers), sizes)
    n = ids.shape[0] + unmatched
    frame = pd.DataFrame(
        {
            "customer": np.concatenate([ids, [None] * unmatched]).astype(object),
            "y": np.round(4 + np.concatenate([effect, np.zeros(unmatched)]) + rng.normal(0, 1, n), 1),
            "w": rng.uniform(0.2, 3.0, n),
            "nps": rng.integers(0, 11, n),
            "csat": rng.integers(1, 6, n),
        }
    )
    return frame


def _group_codes(customers: pd.Series) -> np.ndarray:
    """Integer cluster codes for statsmodels; each unmatched response gets a code of its own."""
    codes, _ = pd.factorize(customers)
    codes = codes.copy()
    lone = codes < 0
    codes[lone] = codes.max() + 1 + np.arange(lone.sum())
    return codes


# --------------------------------------------------------------------------- statsmodels cluster-robust


@pytest.mark.parametrize("weighted", [False, True], ids=["ols", "wls"])
def test_statsmodels_ols_wls_intercept_cluster_variance_equals_clustered_var(weighted: bool) -> None:
    # statsmodels' CRV1 for an intercept-only fit: (X'WX)^-1 Σ_c (Σ_{i∈c} wᵢeᵢ)² (X'WX)^-1 = Σt_c²/W²
    # times G/(G−1)·(N−1)/(N−k). With k = 1 the (N−1)/(N−k) factor is 1, so the default equals
    # ours; with use_correction=False both factors are gone and ours = that · G/(G−1).
    data = _responses(SEED)
    groups = _group_codes(data["customer"])
    w = data["w"].to_numpy() if weighted else np.ones(len(data))
    sums = cluster_sums(data["y"], w if weighted else None, data["customer"])
    ours = clustered_mean(sums["W"], sums["S"], sums["n"])
    exog = np.ones((len(data), 1))
    model = sm.WLS(data["y"].to_numpy(), exog, weights=w) if weighted else sm.OLS(data["y"].to_numpy(), exog)
    fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    raw = model.fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
    n_obs, k, g = len(data), 1, len(np.unique(groups))
    assert ours.customers == g == 67
    assert ours.n == n_obs
    assert ours.estimate == pytest.approx(fit.params[0], rel=1e-12)
    assert ours.var == pytest.approx(fit.cov_params()[0, 0] / ((n_obs - 1) / (n_obs - k)), rel=1e-10)
    assert ours.var == pytest.approx(raw.cov_params()[0, 0] * g / (g - 1), rel=1e-10)
    assert ours.var == pytest.approx(clustered_variance(sums["W"], sums["S"]), rel=1e-12)


@pytest.mark.parametrize("kind", ["nps", "csat"])
def test_statsmodels_wls_cluster_variance_equals_nps_csat_var(kind: str) -> None:
    # The NPS / CSAT var is the clustered variance of the mean −1/0/+1 or 0/1 score.
    data = _responses(SEED + 1)
    groups = _group_codes(data["customer"])
    w = data["w"].to_numpy()
    if kind == "nps":
        score = np.where(data["nps"] >= 9, 1.0, np.where(data["nps"] <= 6, -1.0, 0.0))
        s = nps_cluster_sums(data["nps"], w, data["customer"])
        ours = nps_interval_clustered(s["W"], s["P"], s["D"], s["n"])
    else:
        score = np.where(data["csat"] >= 4, 1.0, 0.0)
        s = csat_cluster_sums(data["csat"], w, data["customer"])
        ours = csat_interval_clustered(s["W"], s["S"], s["n"])
    fit = sm.WLS(score, np.ones((len(data), 1)), weights=w).fit(
        cov_type="cluster", cov_kwds={"groups": groups}
    )
    assert ours.score == pytest.approx(100 * fit.params[0], rel=1e-12)
    assert ours.var == pytest.approx(fit.cov_params()[0, 0], rel=1e-10)
    u = ours.p + ours.d - (ours.p - ours.d) ** 2 if kind == "nps" else ours.p * (1 - ours.p)
    assert ours.deff == pytest.approx(ours.var / (u / (ours.n - 1)), rel=1e-12)
    assert ours.n_eff == pytest.approx(min(ours.n, ours.n / ours.deff), rel=1e-12)


# --------------------------------------------------------------------------- unclustered = textbook


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_response_per_customer_var_equals_numpy_s2_over_n(seed: int) -> None:
    y = np.random.default_rng(seed).normal(5, 2, 40)
    r = clustered_mean(np.ones(40), y, np.ones(40, dtype=int))
    assert r.var == pytest.approx(np.var(y, ddof=1) / 40, rel=1e-12)
    assert r.estimate == pytest.approx(np.mean(y), rel=1e-12)


@pytest.mark.parametrize("successes, n", [(8, 10), (0, 12), (12, 12), (37, 50), (1, 2), (450, 1000)])
def test_csat_unclustered_equals_statsmodels_wilson(successes: int, n: int) -> None:
    top2 = np.r_[np.ones(successes), np.zeros(n - successes)]
    r = csat_interval_clustered(np.ones(n), top2, np.ones(n, dtype=int))
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert r.n_eff == n
    assert r.score == pytest.approx(100 * successes / n, rel=1e-12)
    assert r.low == pytest.approx(100 * low, rel=1e-12, abs=1e-12)
    assert r.high == pytest.approx(100 * high, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    "promoters, passives, detractors", [(50, 30, 20), (10, 0, 0), (0, 5, 7), (3, 1, 1), (400, 350, 250)]
)
def test_nps_unclustered_equals_adjusted_wald_rocks_2016(
    promoters: int, passives: int, detractors: int
) -> None:
    # Adjusted Wald for NPS: Rocks (2016), The American Statistician 70(4):365-372;
    # Sauro & Lewis (MeasuringU), "adjusted Wald for NPS": add 3/4 promoter and 3/4 detractor.
    n = promoters + passives + detractors
    n_star = n + 3
    p_star, d_star = (promoters + 0.75) / n_star, (detractors + 0.75) / n_star
    se = math.sqrt((p_star + d_star - (p_star - d_star) ** 2) / n_star)
    low = max(-100, 100 * (p_star - d_star - Z975 * se))
    high = min(100, 100 * (p_star - d_star + Z975 * se))
    pc = np.r_[np.ones(promoters), np.zeros(passives + detractors)]
    dc = np.r_[np.zeros(promoters + passives), np.ones(detractors)]
    r = nps_interval_clustered(np.ones(n), pc, dc, np.ones(n, dtype=int))
    assert r.n_eff == n
    assert r.score == pytest.approx(100 * (promoters - detractors) / n, rel=1e-12, abs=1e-12)
    assert r.low == pytest.approx(low, rel=1e-12, abs=1e-12)
    assert r.high == pytest.approx(high, rel=1e-12, abs=1e-12)


def test_clustered_nps_csat_shrink_n_eff_below_n_and_widen() -> None:
    # Two customers answering 10 times each the same way: deff > 1, n_eff < n, wider than plain.
    w, n = np.array([10.0, 10.0, 10.0, 10.0]), np.array([10, 10, 10, 10])
    r = csat_interval_clustered(w, np.array([10.0, 0.0, 10.0, 10.0]), n)
    plain = csat_interval_clustered(np.ones(40), np.r_[np.ones(30), np.zeros(10)], np.ones(40, dtype=int))
    assert r.n_eff < r.n == 40
    assert r.high - r.low > plain.high - plain.low


# --------------------------------------------------------------------------- scipy t


def test_mean_interval_uses_scipy_t_with_customers_minus_1() -> None:
    data = _responses(SEED + 2)
    sums = cluster_sums(data["y"], data["w"], data["customer"])
    r = clustered_mean(sums["W"], sums["S"], sums["n"])
    low, high = stats.t.interval(0.95, r.customers - 1, loc=r.estimate, scale=math.sqrt(r.var))
    assert r.df == r.customers - 1
    assert r.se == pytest.approx(math.sqrt(r.var), rel=1e-15)
    assert (r.low, r.high) == pytest.approx((low, high), rel=1e-12)


@pytest.mark.parametrize(
    "W, S, n, customers",
    [([], [], [], 0), ([2.0], [7.0], [2], 1), ([0.0, 3.0], [0.0, 6.0], [0, 3], 1)],
    ids=["empty", "one-customer", "zero-row-dropped"],
)
def test_mean_without_two_customers_has_no_interval(W: list, S: list, n: list, customers: int) -> None:
    r = clustered_mean(W, S, n)
    assert r.customers == customers
    assert math.isnan(r.low) and math.isnan(r.high) and math.isnan(r.var)
    assert math.isnan(r.estimate) == (customers == 0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: clustered_mean([1.0, -1.0], [1.0, 1.0], [1, 1]), "negative"),
        (lambda: clustered_mean([1.0, 1.0], [1.0], [1, 1]), "entries"),
        (lambda: clustered_mean([1.0, 1.0], [1.0, 2.0], [1, 1.5]), "whole numbers"),
        (lambda: csat_interval_clustered([1.0, 1.0], [2.0, 0.0], [1, 1]), "cannot exceed"),
        (lambda: nps_interval_clustered([1.0, 1.0], [1.0, 0.0], [0.5, 0.0], [1, 1]), "cannot exceed"),
        (lambda: benjamini_hochberg([0.2, 1.5]), r"\[0, 1\]"),
        (lambda: customer_weights(["a", "b"], {"a": 1.0}), "no entry"),
    ],
)
def test_bad_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- comparisons


def test_satterthwaite_df_hand_example() -> None:
    # v₁ = 0.3 over C₁ = 4 customers, v₂ = 0.1 over C₂ = 6:
    # df = (0.3 + 0.1)² / (0.3²/3 + 0.1²/5) = 0.16 / (0.03 + 0.002) = 0.16 / 0.032 = 5.
    # se = √0.4; δ = 5 − 3 = 2; t = 2/√0.4 = 3.1623.
    a = ClusteredMean(5.0, 0.3, math.sqrt(0.3), math.nan, math.nan, 9, 4, 3)
    b = ClusteredMean(3.0, 0.1, math.sqrt(0.1), math.nan, math.nan, 8, 6, 5)
    r = welch_clustered(a, b)
    assert r.df == pytest.approx(5.0, rel=1e-12)
    assert r.delta == 2.0
    assert r.se == pytest.approx(math.sqrt(0.4), rel=1e-12)
    assert r.statistic == pytest.approx(2 / math.sqrt(0.4), rel=1e-12)
    assert r.p_value == pytest.approx(2 * stats.t.sf(2 / math.sqrt(0.4), 5), rel=1e-12)
    half = stats.t.ppf(0.975, 5) * math.sqrt(0.4)
    assert (r.low, r.high) == pytest.approx((2 - half, 2 + half), rel=1e-12)


def test_welch_unclustered_equals_scipy_ttest_ind_welch() -> None:
    # One response per customer, unit weights: var = s²/n and C − 1 = n − 1, i.e. textbook Welch.
    rng = np.random.default_rng(SEED + 3)
    y1, y2 = rng.normal(5, 1, 25), rng.normal(4.5, 2, 18)
    m1 = clustered_mean(np.ones(25), y1, np.ones(25, dtype=int))
    m2 = clustered_mean(np.ones(18), y2, np.ones(18, dtype=int))
    ref = stats.ttest_ind(y1, y2, equal_var=False)
    r = welch_clustered(m1, m2)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.df == pytest.approx(ref.df, rel=1e-10)


def test_z_difference_of_groups_by_normal_formula() -> None:
    # δ = 80 − 70 = 10 points; se = 100·√(0.0016 + 0.0021) = 6.0828; z = 1.6440.
    a = ClusteredShare("csat", 80.0, 0, 0, 100, 90, 95.0, 1.05, 0.0016, 0.8, 0.0)
    b = ClusteredShare("csat", 70.0, 0, 0, 100, 90, 95.0, 1.05, 0.0021, 0.7, 0.0)
    r = z_difference(a, b)
    se = 100 * math.sqrt(0.0037)
    assert r.delta == pytest.approx(10.0)
    assert r.se == pytest.approx(se, rel=1e-12)
    assert r.p_value == pytest.approx(2 * stats.norm.sf(10 / se), rel=1e-12)
    assert (r.low, r.high) == pytest.approx((10 - Z975 * se, 10 + Z975 * se), rel=1e-12)
    with pytest.raises(ValueError, match="cannot compare"):
        z_difference(a, ClusteredShare("nps", 1.0, 0, 0, 9, 9, 9.0, 1.0, 0.01, 0.5, 0.4))


def _two_periods(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Responses in a current (1) and previous (2) period; many customers answer in both."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(50):
        effect = rng.normal(0, 1)
        for period in (1, 2):
            if rng.random() < 0.75:
                for _ in range(rng.integers(1, 4)):
                    rows.append((f"c{c}", period, 4 + effect + 0.3 * (period == 1) + rng.normal(0, 1)))
    frame = pd.DataFrame(rows, columns=["customer", "period", "y"])
    frame["w"] = rng.uniform(0.5, 2.0, len(frame))
    frame["nps"] = rng.integers(0, 11, len(frame))
    frame["csat"] = rng.integers(1, 6, len(frame))
    per = []
    for k in (1, 2):
        part = frame[frame["period"] == k]
        s = cluster_sums(part["y"], part["w"], part["customer"])
        p = nps_cluster_sums(part["nps"], part["w"], part["customer"])
        t = csat_cluster_sums(part["csat"], part["w"], part["customer"])
        per.append(
            pd.DataFrame(
                {
                    f"W{k}": s["W"],
                    f"S{k}": s["S"],
                    f"n{k}": s["n"],
                    f"P{k}": p["P"],
                    f"D{k}": p["D"],
                    f"T{k}": t["S"],
                }
            )
        )
    return frame, per[0].join(per[1], how="outer")


@pytest.mark.parametrize("score", ["mean", "nps", "csat"])
def test_period_difference_equals_statsmodels_stacked_wls_with_period_dummy(score: str) -> None:
    # Stack both periods, regress y on [1, current] by WLS with weights wᵢ/W_k (each period sums
    # to 1), cluster by customer. X'WX = [[2, 1], [1, 1]], inverse [[1, −1], [−1, 2]], so the
    # slope is ȳ₁ − ȳ₂ and its per-customer score is t_c¹/W₁ − t_c²/W₂: statsmodels' CRV1 is
    # G/(G−1)·(N−1)/(N−2)·Σ_c(t_c¹/W₁ − t_c²/W₂)², i.e. ours times (N−1)/(N−2), and with
    # use_correction=False it is ours times (G−1)/G.
    frame, per = _two_periods(SEED + 4)
    if score == "mean":
        y = frame["y"].to_numpy()
        ours = period_difference(per[["W1", "S1", "W2", "S2", "n1", "n2"]])
        scale = 1.0
    elif score == "nps":
        y = np.where(frame["nps"] >= 9, 1.0, np.where(frame["nps"] <= 6, -1.0, 0.0))
        ours = period_difference_share(per[["W1", "P1", "D1", "W2", "P2", "D2"]], "nps")
        scale = 100.0
    else:
        y = np.where(frame["csat"] >= 4, 1.0, 0.0)
        csat = per[["W1", "T1", "W2", "T2"]].rename(columns={"T1": "S1", "T2": "S2"})
        ours = period_difference_share(csat, "csat")
        scale = 100.0
    current = (frame["period"] == 1).to_numpy(dtype=float)
    w_total = frame.groupby("period")["w"].transform("sum").to_numpy()
    exog = np.column_stack([np.ones(len(frame)), current])
    groups = _group_codes(frame["customer"])
    model = sm.WLS(y, exog, weights=frame["w"].to_numpy() / w_total)
    fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    raw = model.fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
    n_obs, g = len(frame), len(np.unique(groups))
    assert ours.delta == pytest.approx(scale * fit.params[1], rel=1e-8)
    var = (ours.se / scale) ** 2
    assert var == pytest.approx(fit.cov_params()[1, 1] * (n_obs - 2) / (n_obs - 1), rel=1e-8)
    assert var == pytest.approx(raw.cov_params()[1, 1] * g / (g - 1), rel=1e-8)
    assert ours.p_value == pytest.approx(2 * stats.norm.sf(abs(ours.delta / ours.se)), rel=1e-12)


def test_period_difference_customer_absent_from_a_period_counts_zero() -> None:
    # Hand example: ȳ₁ = 5 (W₁ = 3), ȳ₂ = 4 (W₂ = 2). Per customer t¹/W₁ − t²/W₂ =
    # (−1/3 + 1/2, 0 − 1/2, 1/3 − 0) = (1/6, −1/2, 1/3); Σ² = 14/36; var = 3/2·14/36 = 7/12.
    f = pd.DataFrame({"W1": [1, 1, 1], "S1": [4, 5, 6], "W2": [1, 1, np.nan], "S2": [3, 5, np.nan]})
    r = period_difference(f)
    assert r.delta == pytest.approx(1.0)
    assert r.se == pytest.approx(math.sqrt(7 / 12), rel=1e-12)


# --------------------------------------------------------------------------- Benjamini–Hochberg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benjamini_hochberg_equals_statsmodels_fdr_bh(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.r_[rng.uniform(0, 0.05, 6), rng.uniform(0, 1, 14), [0.03, 0.03]]
    p[rng.choice(p.size, 3, replace=False)] = np.nan
    ok = ~np.isnan(p)
    q = benjamini_hochberg(p)
    assert np.all(np.isnan(q[~ok]))
    np.testing.assert_allclose(q[ok], multipletests(p[ok], method="fdr_bh")[1], rtol=1e-12)


def test_benjamini_hochberg_all_nan_and_empty() -> None:
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()
    assert benjamini_hochberg([]).shape == (0,)


# --------------------------------------------------------------------------- weights and raking


def test_customer_weights_split_sums_to_customer_weight() -> None:
    customers = ["a", "a", "a", "b", None, "c", "c"]
    answered = [True, True, False, True, True, True, True]
    value = pd.Series({"a": 300.0, "b": 50.0, "c": 10.0})
    w = customer_weights(customers, value, answered)
    np.testing.assert_allclose(w, [150.0, 150.0, np.nan, 50.0, np.nan, 5.0, 5.0])
    one = customer_weights(customers, None, answered)
    np.testing.assert_allclose(one, [0.5, 0.5, np.nan, 1.0, np.nan, 0.5, 0.5])
    sums = cluster_sums([1, 2, 3, 4, 5, 6, 7], one, customers)
    assert sums["W"].tolist() == [1.0, 1.0, 1.0]  # unmatched and unanswered rows are left out
    assert sums["n"].tolist() == [2, 1, 2]


def _base_and_respondents(seed: int, size: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    n = 3000
    base = pd.DataFrame(
        {
            "region": rng.choice(["North", "South", "East", "West"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "plan": rng.choice(["Basic", "Pro", "Enterprise"], n, p=[0.5, 0.35, 0.15]),
            "size": rng.choice(["small", "large"], n, p=[0.7, 0.3]),
        },
        index=[f"cust{i}" for i in range(n)],
    )
    prob = np.where(base["plan"] == "Enterprise", 0.6, 0.2) * np.where(base["region"] == "West", 0.5, 1.0)
    prob = prob * (np.where(base["size"] == "large", 1.3, 1.0) if size else 1.0)
    respondents = base[rng.random(n) < prob]
    return base, respondents


@pytest.mark.parametrize(
    "dims, seed", [(["region", "plan"], 11), (["region", "plan", "size"], 12), (["plan"], 13)]
)
def test_raking_matches_weightipy_ipf(dims: list[str], seed: int) -> None:
    import weightipy  # pinned in requirements-dev.txt: a missing reference fails, never skips

    base, respondents = _base_and_respondents(seed, size="size" in dims)
    ours, diag = rake_with_diagnostics(base, respondents, dims)
    assert diag.converged
    # weightipy: targets are the base's shares; its weights average 1 over the respondents.
    scheme = weightipy.scheme_from_df(
        base.assign(freq=1.0), dims, "freq", rim_params={"max_iterations": 10000, "convcrit": 0.0}
    )
    theirs = weightipy.weight(respondents, scheme)
    scaled = ours * len(respondents) / len(base)
    np.testing.assert_allclose(scaled.to_numpy(), theirs.loc[ours.index].to_numpy(), rtol=1e-8)
    for dim in dims:
        target = base[dim].value_counts()
        achieved = ours.groupby(respondents[dim]).sum()
        weightipy_margin = theirs.groupby(respondents[dim]).sum() * len(base) / len(respondents)
        np.testing.assert_allclose(achieved[target.index], target, rtol=1e-8)
        np.testing.assert_allclose(weightipy_margin[target.index], target, rtol=1e-8)
    m = diag.margins
    np.testing.assert_allclose(m["achieved"], m["target"], rtol=1e-10)
    assert diag.kish_deff == pytest.approx(100 / weightipy.weighting_efficiency(theirs), rel=1e-8)
    assert diag.weight_ratio == pytest.approx(diag.weight_max / diag.weight_min)
    assert rake(base, respondents, dims).equals(ours)


def test_kish_deff_equals_inverse_weightipy_weighting_efficiency() -> None:
    import weightipy  # pinned in requirements-dev.txt: a missing reference fails, never skips

    w = pd.Series(np.random.default_rng(SEED).uniform(0.1, 4.0, 200))
    assert kish_deff(w) == pytest.approx(100 / weightipy.weighting_efficiency(w), rel=1e-12)
    assert kish_deff(np.ones(5)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "respondent_regions, respondent_plans, named",
    [
        (["North", "South", "North"], ["Basic", "Pro", "Pro"], ["region", "East"]),
        (["North", "South", "East"], ["Basic", "Basic", "Basic"], ["plan", "Pro"]),
        (["North", "North", "North"], ["Basic", "Pro", "Basic"], ["region", "East, South"]),
    ],
)
def test_raking_error_names_the_empty_dimension_value(
    respondent_regions: list[str], respondent_plans: list[str], named: list[str]
) -> None:
    base = pd.DataFrame(
        {"region": ["North", "South", "East", "North"], "plan": ["Basic", "Pro", "Pro", "Basic"]}
    )
    respondents = pd.DataFrame(
        {"region": respondent_regions, "plan": respondent_plans}, index=["a", "b", "c"]
    )
    with pytest.raises(RakingError) as info:
        rake(base, respondents)
    assert isinstance(info.value, ValueError)
    for word in named:
        assert word in str(info.value)


def test_raking_rejects_respondent_value_missing_from_base() -> None:
    base = pd.DataFrame({"region": ["North", "South"], "plan": ["Basic", "Pro"]})
    respondents = pd.DataFrame({"region": ["North", "Mars", "South"], "plan": ["Basic", "Pro", "Pro"]})
    with pytest.raises(ValueError, match="Mars"):
        rake(base, respondents)


def test_raking_that_cannot_meet_every_margin_reports_no_convergence() -> None:
    # Base margins: region North 2, South 2; plan a 1, b 3. The only respondents are (North, a) and
    # (South, b): region needs w(North, a) = 2, plan needs it = 1, so IPF oscillates for ever.
    base = pd.DataFrame({"region": ["North", "North", "South", "South"], "plan": ["a", "b", "b", "b"]})
    respondents = pd.DataFrame({"region": ["North", "South"], "plan": ["a", "b"]}, index=["x", "y"])
    weights, diag = rake_with_diagnostics(base, respondents, max_iter=50)
    assert not diag.converged and diag.iterations == 50
    assert len(weights) == 2
    with pytest.raises(RakingError, match="did not converge"):
        rake(base, respondents, max_iter=50)
