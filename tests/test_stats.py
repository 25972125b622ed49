"""relq.measures.stats checked against outside references (scipy, statsmodels, published values)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from relq.measures import stats

SEED = 20240601
print(f"tests/test_stats.py random seed: {SEED}")

FAST = settings(max_examples=150, deadline=None)


def _sums(x: np.ndarray) -> tuple[int, float, float]:
    return len(x), float(x.sum()), float((x * x).sum())


# --------------------------------------------------------------------------- means


@pytest.mark.parametrize("n", [2, 5, 30, 400])
def test_mean_interval_matches_scipy_t_interval(n: int) -> None:
    x = np.random.default_rng(SEED + n).normal(60, 15, n)
    got = stats.mean_interval(*_sums(x))
    low, high = sp.t.interval(0.95, n - 1, loc=x.mean(), scale=sp.sem(x))
    assert got.estimate == pytest.approx(x.mean(), rel=1e-12)
    assert (got.low, got.high) == pytest.approx((low, high), rel=1e-9)
    assert got.n == n


def test_variance_from_sums_matches_numpy_var_ddof1() -> None:
    x = np.random.default_rng(SEED).uniform(0, 100, 1000)
    assert stats.variance_from_sums(*_sums(x)) == pytest.approx(np.var(x, ddof=1), rel=1e-9)


def test_mean_interval_n1_has_estimate_but_nan_interval() -> None:
    got = stats.mean_interval(1, 42.0, 42.0**2)
    assert got.estimate == 42.0 and math.isnan(got.low) and math.isnan(got.high)


def test_mean_interval_constant_data_is_a_point() -> None:
    got = stats.mean_interval(*_sums(np.full(7, 1 / 3)))  # rounding must not give sqrt(<0)
    assert got.low == pytest.approx(1 / 3) and got.high == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- proportions


@pytest.mark.parametrize(("x", "n"), [(0, 1), (0, 10), (3, 10), (10, 10), (57, 80), (999, 1000)])
def test_wilson_interval_matches_statsmodels(x: int, n: int) -> None:
    got = stats.wilson_interval(x, n)
    low, high = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert got.estimate == x / n
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)


def test_csat_interval_is_wilson_statsmodels_in_percent() -> None:
    got = stats.csat_interval(80, 100)
    low, high = proportion_confint(80, 100, method="wilson")
    assert (got.estimate, got.low, got.high) == pytest.approx((80.0, 100 * low, 100 * high))


def test_nps_interval_published_example_50_30_20() -> None:
    # MeasuringU / Rocks (2016) adjusted-Wald example: NPS 30, 95% CI about 14 to 44.
    got = stats.nps_interval(50, 30, 20)
    assert got.score == 30.0
    assert got.low == pytest.approx(14, abs=0.5)
    assert got.high == pytest.approx(44, abs=0.5)
    assert (got.n, got.promoters, got.passives, got.detractors) == (100, 50, 30, 20)


def test_nps_interval_matches_design_formula_written_out() -> None:
    p, m, d = 123, 45, 67
    n_star = p + m + d + 3
    ps, ds = (p + 0.75) / n_star, (d + 0.75) / n_star
    se = math.sqrt((ps + ds - (ps - ds) ** 2) / n_star)
    got = stats.nps_interval(p, m, d)
    assert got.low == pytest.approx(100 * (ps - ds - 1.959963984540054 * se))
    assert got.high == pytest.approx(100 * (ps - ds + 1.959963984540054 * se))
    assert got.variance == pytest.approx(se**2)


def test_nps_interval_single_unanimous_answer_is_the_documented_exception() -> None:
    # the Methodology page's interval is centred on the shrunken p*-d*; with n == 1 it stops at ±98.5.
    got = stats.nps_interval(1, 0, 0)
    assert got.score == 100.0 and got.high == pytest.approx(98.4986, abs=1e-4)


# --------------------------------------------------------------------------- comparisons


@pytest.mark.parametrize(("n1", "n2"), [(2, 2), (12, 40), (300, 250)])
def test_welch_difference_matches_scipy_ttest_ind_from_stats(n1: int, n2: int) -> None:
    rng = np.random.default_rng(SEED + n1)
    a, b = rng.normal(55, 10, n1), rng.normal(50, 20, n2)
    ia, ib = stats.mean_interval(*_sums(a)), stats.mean_interval(*_sums(b))
    va, vb = stats.variance_from_sums(*_sums(a)), stats.variance_from_sums(*_sums(b))
    got = stats.welch_difference(n1, ia.estimate, va, n2, ib.estimate, vb)
    ref = sp.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert got.delta == pytest.approx(a.mean() - b.mean())
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), rel=1e-8)
    ref_stats = sp.ttest_ind_from_stats(a.mean(), a.std(ddof=1), n1, b.mean(), b.std(ddof=1), n2, False)
    assert got.p_value == pytest.approx(ref_stats.pvalue, rel=1e-8)
    assert got.test == "Welch"


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(56, 70, 48, 80), (0, 10, 0, 20), (10, 10, 3, 12), (5, 30, 25, 30), (1, 3, 2, 2), (400, 1000, 380, 900)],
)
def test_newcombe_matches_statsmodels_confint_proportions_2indep(x1: int, n1: int, x2: int, n2: int) -> None:
    got = stats.proportion_difference(x1, n1, x2, n2)
    low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert got.delta == pytest.approx(x1 / n1 - x2 / n2)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-10)
    assert got.test == "Newcombe"


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(56, 70, 48, 80), (10, 10, 3, 12), (400, 1000, 380, 900)])
def test_proportion_difference_p_value_matches_statsmodels_proportions_ztest(x1, n1, x2, n2) -> None:
    _, p = proportions_ztest([x1, x2], [n1, n2])
    assert stats.proportion_difference(x1, n1, x2, n2).p_value == pytest.approx(p, rel=1e-10)


def test_proportion_difference_identical_all_or_nothing_groups_have_p_one() -> None:
    assert stats.proportion_difference(0, 10, 0, 20).p_value == 1.0


def test_nps_difference_matches_scipy_normal_z_test_on_adjusted_wald_variances() -> None:
    a, b = stats.nps_interval(50, 30, 20), stats.nps_interval(30, 30, 40)
    got = stats.nps_difference(a, b)
    se = 100 * math.sqrt(a.variance + b.variance)
    p = 2 * sp.norm.sf(abs(a.score - b.score) / se)
    assert got.delta == pytest.approx(40.0)
    assert got.p_value == pytest.approx(p)
    lo, hi = sp.norm.interval(0.95, loc=40.0, scale=se)
    assert (got.low, got.high) == pytest.approx((lo, hi))
    assert got.test == "nps z-test (adjusted Wald)"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benjamini_hochberg_matches_statsmodels(seed: int) -> None:
    p = np.random.default_rng(SEED + seed).beta(0.5, 2, 25)
    _, ref, _, _ = multipletests(p, method="fdr_bh")
    np.testing.assert_allclose(stats.benjamini_hochberg(p), ref, rtol=1e-12)


def test_benjamini_hochberg_keeps_nan_and_ignores_it_in_m_like_statsmodels_on_the_rest() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    q = stats.benjamini_hochberg(p)
    _, ref, _, _ = multipletests(p[~np.isnan(p)], method="fdr_bh")
    assert np.isnan(q[[1, 4]]).all()
    np.testing.assert_allclose(q[~np.isnan(p)], ref)


def test_with_q_values_sets_bh_q_and_significance_uses_q() -> None:
    cs = [stats.Comparison(0.1, 0, 0.2, p, "Welch") for p in (0.01, 0.02, 0.03, 0.04, 0.2)]
    adjusted = stats.with_q_values(cs)
    _, ref, _, _ = multipletests([c.p_value for c in cs], method="fdr_bh")
    assert [c.q_value for c in adjusted] == pytest.approx(list(ref))
    assert cs[3].significant() and not adjusted[3].significant()  # p = 0.04 but q = 0.04·5/4 = 0.05
    assert not stats.Comparison(0.1, 0, 0.2, 0.01, "Welch", q_value=0.06).significant()
    assert not stats.Comparison(math.nan, math.nan, math.nan, math.nan, "Welch").significant()


# --------------------------------------------------------------------------- reliability

# pingouin's "cronbach_alpha" dataset (15 subjects x 10 Likert items, wide form). Its docs give
# alpha = 0.5917188485995826, 95% CI [0.195, 0.840], "tested against R psych".
PINGOUIN_CRONBACH = np.array(
    [
        [3, 2, 4, 1, 4, 5, 1, 4, 3, 2],
        [5, 4, 6, 3, 5, 1, 2, 5, 5, 5],
        [7, 3, 5, 5, 6, 4, 3, 3, 6, 5],
        [2, 4, 3, 3, 2, 2, 2, 6, 6, 3],
        [6, 5, 6, 5, 4, 4, 4, 6, 7, 5],
        [1, 2, 3, 4, 2, 5, 2, 3, 5, 2],
        [4, 3, 5, 3, 5, 2, 1, 2, 4, 3],
        [2, 4, 4, 3, 7, 2, 2, 4, 6, 5],
        [6, 5, 5, 5, 1, 6, 5, 2, 3, 2],
        [5, 4, 6, 4, 3, 5, 3, 1, 7, 2],
        [4, 3, 5, 2, 5, 3, 2, 3, 4, 1],
        [4, 2, 3, 2, 5, 3, 4, 2, 3, 4],
        [5, 5, 6, 2, 3, 3, 2, 4, 4, 5],
        [6, 5, 5, 4, 2, 2, 1, 4, 6, 5],
        [4, 3, 5, 5, 3, 1, 3, 2, 3, 4],
    ],
    dtype=float,
)


def _cov_via_sums(x: np.ndarray) -> np.ndarray:
    return stats.covariance_from_sums(len(x), x.sum(axis=0), x.T @ x)


def test_covariance_from_sums_matches_numpy_cov() -> None:
    x = np.random.default_rng(SEED).normal(size=(200, 5))
    np.testing.assert_allclose(_cov_via_sums(x), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


def test_cronbach_alpha_matches_published_example() -> None:
    got = stats.cronbach_alpha(_cov_via_sums(PINGOUIN_CRONBACH), n=15)
    assert got.alpha == pytest.approx(0.5917188485995826, abs=1e-12)
    assert (got.low, got.high) == pytest.approx((0.195, 0.840), abs=5e-4)
    assert (got.n, got.k) == (15, 10)


def test_cronbach_alpha_matches_textbook_formula_and_scipy_f_quantiles() -> None:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(80, 4)) + rng.normal(size=(80, 1))  # a shared factor makes alpha positive
    n, k = x.shape
    alpha = k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / x.sum(axis=1).var(ddof=1))
    got = stats.cronbach_alpha(_cov_via_sums(x), n)
    assert got.alpha == pytest.approx(alpha, rel=1e-10)
    f_hi, f_lo = sp.f.ppf([0.975, 0.025], n - 1, (n - 1) * (k - 1))
    assert (got.low, got.high) == pytest.approx((1 - (1 - alpha) * f_hi, 1 - (1 - alpha) * f_lo))


def test_item_statistics_item_total_matches_pandas_corr_and_alpha_if_deleted() -> None:
    frame = pd.DataFrame(PINGOUIN_CRONBACH, columns=[f"Q{i}" for i in range(1, 11)])
    got = stats.item_statistics(_cov_via_sums(PINGOUIN_CRONBACH), list(frame.columns))
    assert list(got.columns) == ["item_id", "item_total_r", "alpha_if_deleted"]
    for i, item in enumerate(frame.columns):
        rest = frame.drop(columns=item)
        assert got.item_total_r[i] == pytest.approx(frame[item].corr(rest.sum(axis=1)), rel=1e-9)
        k = rest.shape[1]
        alpha = k / (k - 1) * (1 - rest.var().sum() / rest.sum(axis=1).var())
        assert got.alpha_if_deleted[i] == pytest.approx(alpha, rel=1e-9)


def test_correlation_from_cov_matches_numpy_corrcoef() -> None:
    x = np.random.default_rng(SEED).normal(size=(100, 4))
    np.testing.assert_allclose(
        stats.correlation_from_cov(np.cov(x, rowvar=False)), np.corrcoef(x, rowvar=False)
    )


def test_htmt_matches_raw_data_computation_of_henseler_2015_formula() -> None:
    rng = np.random.default_rng(SEED)
    f = rng.normal(size=(300, 3)) @ np.array([[1, 0.6, 0.3], [0, 0.8, 0.4], [0, 0, 0.85]])
    items = np.column_stack([f[:, c] + rng.normal(scale=0.7, size=300) for c in (0, 0, 0, 1, 1, 1, 2, 2)])
    groups = {"trust": [0, 1, 2], "commitment": [3, 4, 5], "satisfaction": [6, 7]}
    got = stats.htmt(stats.correlation_from_cov(_cov_via_sums(items)), groups)
    frame = pd.DataFrame(items)
    expected = []
    for (a, ia), (b, ib) in combinations(groups.items(), 2):
        hetero = np.mean([frame[i].corr(frame[j]) for i in ia for j in ib])
        mono_a = np.mean([frame[i].corr(frame[j]) for i, j in combinations(ia, 2)])
        mono_b = np.mean([frame[i].corr(frame[j]) for i, j in combinations(ib, 2)])
        expected.append({"a": a, "b": b, "htmt": hetero / np.sqrt(mono_a * mono_b)})
    pd.testing.assert_frame_equal(got, pd.DataFrame(expected), rtol=1e-9)


@pytest.mark.parametrize(("r", "n"), [(0.5, 50), (-0.3, 10), (0.95, 200)])
def test_pearson_interval_matches_scipy_pearsonr_confidence_interval(r: float, n: int) -> None:
    rng = np.random.default_rng(SEED + n)
    x = rng.normal(size=n)
    y = r * x + math.sqrt(1 - r * r) * rng.normal(size=n)
    ref = sp.pearsonr(x, y)
    ci = ref.confidence_interval(0.95)
    got = stats.pearson_interval(float(ref.statistic), n)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_is_small_uses_min_n_default_30() -> None:
    assert stats.is_small(29) and not stats.is_small(30) and stats.is_small(4, min_n=5)


# --------------------------------------------------------------------------- result shapes


def test_as_dict_keeps_full_floats_and_turns_nan_into_none() -> None:
    assert stats.Interval(1 / 3, 0.1, 0.5, 9).as_dict() == {"mean": 1 / 3, "ci": [0.1, 0.5], "n": 9}
    assert stats.csat_interval(0, 0).as_dict("score") == {"score": None, "ci": [None, None], "n": 0}
    assert stats.nps_interval(50, 30, 20).as_dict().keys() == {
        "score",
        "ci",
        "n",
        "promoters",
        "passives",
        "detractors",
    }


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "call",
    [
        lambda: stats.wilson_interval(5, 4),
        lambda: stats.wilson_interval(-1, 4),
        lambda: stats.wilson_interval(1.5, 4),
        lambda: stats.nps_interval(1, 2, 3, level=1.5),
        lambda: stats.mean_interval(3, 6.0, 1.0),
        lambda: stats.welch_difference(5, 1.0, -1.0, 5, 1.0, 1.0),
        lambda: stats.benjamini_hochberg([0.5, 1.2]),
        lambda: stats.cronbach_alpha(np.eye(3)[:2], 10),
        lambda: stats.cronbach_alpha(np.eye(1), 10),
        lambda: stats.item_statistics(np.eye(3), ["a", "b"]),
        lambda: stats.htmt(np.eye(3), {"a": [0], "b": [5]}),
        lambda: stats.pearson_interval(1.2, 10),
    ],
)
def test_bad_input_raises_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_counts_from_sql_as_whole_floats_are_accepted() -> None:
    assert stats.wilson_interval(3.0, np.int64(10)).n == 10


# --------------------------------------------------------------------------- properties

counts = st.integers(min_value=0, max_value=5000)


@FAST
@given(counts, counts, counts)
def test_property_nps_within_bounds_and_interval_contains_score(p: int, m: int, d: int) -> None:
    r = stats.nps_interval(p, m, d)
    if r.n == 0:
        assert math.isnan(r.score) and math.isnan(r.low) and math.isnan(r.high)
        return
    assert -100 <= r.low <= r.high <= 100 and -100 <= r.score <= 100
    if r.n >= 2:  # n == 1 is the documented exception of the Methodology page's shrunken interval
        assert r.low <= r.score <= r.high


@FAST
@given(st.integers(0, 5000), st.integers(0, 5000))
def test_property_wilson_and_csat_contain_estimate(x: int, extra: int) -> None:
    n = x + extra
    for r in (stats.wilson_interval(x, n), stats.csat_interval(x, n)):
        if n == 0:
            assert math.isnan(r.estimate)
        else:
            assert r.low <= r.estimate <= r.high


@FAST
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=60))
def test_property_mean_interval_contains_mean(xs: list[float]) -> None:
    r = stats.mean_interval(*_sums(np.array(xs)))
    assert r.low <= r.estimate <= r.high


@FAST
@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500), st.integers(0, 500))
def test_property_differences_contain_delta(x1: int, e1: int, x2: int, e2: int) -> None:
    c = stats.proportion_difference(x1, x1 + e1, x2, x2 + e2)
    nps = stats.nps_difference(stats.nps_interval(x1, e1, x2), stats.nps_interval(x2, e2, x1))
    for comp in (c, nps):
        if math.isnan(comp.delta):
            assert math.isnan(comp.p_value)
        else:
            assert comp.low <= comp.delta <= comp.high and 0 <= comp.p_value <= 1


@FAST
@given(
    st.integers(2, 1000),
    st.floats(-100, 100),
    st.floats(0, 1e3),
    st.integers(2, 1000),
    st.floats(-100, 100),
    st.floats(0, 1e3),
)
def test_property_welch_contains_delta(n1, m1, v1, n2, m2, v2) -> None:
    c = stats.welch_difference(n1, m1, v1, n2, m2, v2)
    assert c.low <= c.delta <= c.high


def test_n_zero_gives_nan_not_exceptions() -> None:
    nan_checks = [
        stats.mean_interval(0, None, None).estimate,  # SQL SUM over no rows is NULL
        stats.wilson_interval(0, 0).estimate,
        stats.csat_interval(0, 0).high,
        stats.nps_interval(0, 0, 0).score,
        stats.nps_difference(stats.nps_interval(0, 0, 0), stats.nps_interval(5, 1, 1)).delta,
        stats.proportion_difference(0, 0, 3, 4).p_value,
        stats.welch_difference(0, 0.0, 0.0, 5, 1.0, 1.0).p_value,
        stats.cronbach_alpha(np.full((3, 3), np.nan), 0).alpha,
        stats.pearson_interval(0.0, 0).estimate,
    ]
    assert all(math.isnan(v) for v in nan_checks)
    assert np.isnan(stats.covariance_from_sums(0, np.zeros(2), np.zeros((2, 2)))).all()
    assert stats.benjamini_hochberg([]).size == 0


@FAST
@given(st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), max_size=40))
def test_property_bh_q_at_least_p_and_monotone_in_p(ps: list[float]) -> None:
    p = np.array(ps, dtype=float)
    q = stats.benjamini_hochberg(p)
    assert np.array_equal(np.isnan(q), np.isnan(p))
    ok = ~np.isnan(p)
    assert (q[ok] >= p[ok] - 1e-15).all() and (q[ok] <= 1).all()
    order = np.argsort(p[ok], kind="stable")
    assert (np.diff(q[ok][order]) >= -1e-15).all()
