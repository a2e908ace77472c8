"""kexue.stats against scipy.stats, closed forms and brute force."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kexue.stats import (
    Interval,
    binomial_test,
    bootstrap_interval,
    clopper_pearson,
    mcnemar_p,
    paired_accuracy_difference,
    paired_difference,
    t_interval,
)


def test_t_interval_matches_the_closed_form():
    values = np.array([0.81, 0.84, 0.79, 0.86, 0.83])
    interval = t_interval(values)
    half = scipy_stats.t.ppf(0.975, df=4) * values.std(ddof=1) / math.sqrt(5)
    assert interval.low == pytest.approx(values.mean() - half, rel=1e-12)
    assert interval.high == pytest.approx(values.mean() + half, rel=1e-12)
    assert (interval.n, interval.method, interval.level) == (5, "t", 0.95)
    assert t_interval(values, level=0.99).high > interval.high


def test_t_interval_edge_cases():
    assert not t_interval([0.7]).bounded
    assert t_interval([0.7]).to_dict()["low"] is None
    assert (t_interval([0.5, 0.5, 0.5]).low, t_interval([0.5, 0.5, 0.5]).high) == (0.5, 0.5)
    with pytest.raises(ValueError, match="values"):
        t_interval([])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=95)


def test_bootstrap_interval_matches_scipy_bca():
    values = np.random.default_rng(3).exponential(size=40)
    interval = bootstrap_interval(values, n_resamples=2000, seed=7)
    reference = scipy_stats.bootstrap((values,), np.mean, n_resamples=2000, method="BCa",
                                      rng=np.random.default_rng(7)).confidence_interval
    assert (interval.low, interval.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert interval.method == "bootstrap BCa" and interval.n == 40
    assert bootstrap_interval(values, n_resamples=2000, seed=7) == interval  # seeded


def test_bootstrap_interval_covers_the_mean_about_95_percent():
    rng = np.random.default_rng(0)
    covered = sum(
        (lambda interval: interval.low <= 1.0 <= interval.high)(
            bootstrap_interval(rng.exponential(size=60), n_resamples=999, seed=trial)
        )
        for trial in range(200)
    )
    assert 176 <= covered <= 199  # ~95% of 200 (binomial 99.9% range, BCa slightly under-covers)


def test_paired_difference_is_the_one_sample_interval_of_differences():
    a, b = np.array([0.82, 0.85, 0.80, 0.84]), np.array([0.80, 0.84, 0.77, 0.84])
    estimate, interval = paired_difference(a, b)
    reference = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    assert estimate == pytest.approx(np.mean(a - b))
    assert (interval.low, interval.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert interval.method == "paired t"
    _, boot = paired_difference(a, b, method="bootstrap")
    assert boot.method == "paired bootstrap BCa"
    with pytest.raises(ValueError, match="paired"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="method"):
        paired_difference(a, b, method="wilcoxon")


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (990, 1000), (57, 200)])
def test_clopper_pearson_matches_beta_quantiles(k, n):
    interval = clopper_pearson(k, n)
    low = 0.0 if k == 0 else scipy_stats.beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else scipy_stats.beta.ppf(0.975, k + 1, n - k)
    assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert interval.method == "Clopper-Pearson" and interval.n == n


def test_clopper_pearson_checks_counts():
    with pytest.raises(ValueError, match="`k`"):
        clopper_pearson(11, 10)
    with pytest.raises(ValueError, match="`n`"):
        clopper_pearson(0, 0)


def _mcnemar_brute_force(only_a: int, only_b: int) -> float:
    """Two-sided exact test: total probability of outcomes no more likely than the observed one."""
    total = only_a + only_b
    pmf = [math.comb(total, i) / 2**total for i in range(total + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[only_a] * (1 + 1e-7)))


def test_mcnemar_counts_only_discordant_pairs():
    rng = np.random.default_rng(1)
    a = rng.random(500) < 0.7
    b = np.where(rng.random(500) < 0.9, a, ~a)  # 10% of examples flipped
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert mcnemar_p(a, b) == pytest.approx(_mcnemar_brute_force(only_a, only_b))
    # concordant examples do not change the test
    both = np.ones(100, dtype=bool)
    assert mcnemar_p(np.r_[a, both], np.r_[b, both]) == pytest.approx(mcnemar_p(a, b))
    assert mcnemar_p([True, False], [True, False]) == 1.0


def test_paired_accuracy_difference():
    rng = np.random.default_rng(2)
    a = rng.random(2000) < 0.6
    b = np.where(rng.random(2000) < 0.1, ~a, a)
    estimate, interval = paired_accuracy_difference(a, b, seed=0, n_resamples=2000)
    assert estimate == pytest.approx(a.mean() - b.mean())
    assert interval.low < estimate < interval.high and interval.n == 2000
    # pairing: the interval is narrower than for two independent samples of the same accuracies
    independent = 1.96 * math.sqrt(a.mean() * (1 - a.mean()) / 2000 + b.mean() * (1 - b.mean()) / 2000)
    assert interval.high - interval.low < independent
    with pytest.raises(ValueError, match="paired"):
        paired_accuracy_difference([True], [True, False])


def test_binomial_test_matches_the_binomial_tail():
    # one-sided: P(X <= k) for the "less" alternative
    assert binomial_test(90, 100, 0.95, "less") == pytest.approx(scipy_stats.binom.cdf(90, 100, 0.95))
    assert binomial_test(99, 100, 0.9, "greater") == pytest.approx(scipy_stats.binom.sf(98, 100, 0.9))
    with pytest.raises(ValueError, match="alternative"):
        binomial_test(1, 2, 0.5, "bigger")
    with pytest.raises(ValueError, match="`p`"):
        binomial_test(1, 2, 1.5)


def test_interval_to_dict():
    assert Interval(0.1, math.inf, 3, "t").to_dict() == {"low": 0.1, "high": None, "n": 3, "method": "t",
                                                          "level": 0.95}
