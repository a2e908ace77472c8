"""Statistics for deciding claims: intervals over seeds, rates and paired comparisons.

Every experiment decides its statistical claims with the same few tools, so that "holds" means
the same thing everywhere: a claim holds only when its whole 95% interval clears the threshold
(see :class:`kexue.experiments.harness.Claim`).

- :func:`t_interval` — Student-t interval for a mean over a few seeds, ``x̄ ± t_{n-1} · s/√n``.
- :func:`bootstrap_interval` — BCa bootstrap interval (scipy.stats.bootstrap, ``method="BCa"``)
  for any statistic; used where the sample is large or not normal (per-example scores).
- :func:`paired_difference` — the mean of ``a − b`` over paired runs (same seeds or examples),
  with a t or bootstrap interval.
- :func:`clopper_pearson` — exact interval for a success rate ``k/n``.
- :func:`paired_accuracy_difference` and :func:`mcnemar_p` — two systems scored on the same
  examples: a paired bootstrap interval for the accuracy difference and McNemar's exact test
  (binomial on the discordant pairs).
- :func:`binomial_test` — exact (one- or two-sided) binomial test, e.g. a success rate measured
  against the probability a theorem guarantees.

An :class:`Interval` records how it was made (``n``, ``method``, ``level``) so result.json can
say so. Intervals that cannot be computed (one seed) are unbounded, which makes a claim
inconclusive rather than decided on a single number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "Interval",
    "binomial_test",
    "bootstrap_interval",
    "clopper_pearson",
    "mcnemar_p",
    "paired_accuracy_difference",
    "paired_difference",
    "t_interval",
]


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]`` at ``level``, computed by ``method`` from ``n`` values.

    Example:
        >>> Interval(0.1, 0.3, n=5, method="t").to_dict()
        {'low': 0.1, 'high': 0.3, 'n': 5, 'method': 't', 'level': 0.95}
    """

    low: float
    high: float
    n: int
    method: str
    level: float = 0.95

    @property
    def bounded(self) -> bool:
        """Whether both ends are finite numbers (an interval from one seed is not)."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def to_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready; an infinite or NaN end becomes ``None``."""

        def end(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {"low": end(self.low), "high": end(self.high), "n": int(self.n), "method": self.method,
                "level": self.level}


def _as_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got {array.tolist()[:10]}")
    return array


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1), got {level}")


def _unbounded(n: int, method: str, level: float) -> Interval:
    return Interval(-math.inf, math.inf, n, method, level)


def t_interval(values, level: float = 0.95) -> Interval:
    """Student-t interval for the mean: ``x̄ ± t_{(1+level)/2, n-1} · s/√n``.

    With one value the interval is unbounded; with zero spread it is the single point.

    Example:
        >>> interval = t_interval([1.0, 2.0, 3.0])
        >>> round(interval.low, 4), round(interval.high, 4)
        (-0.4841, 4.4841)
    """
    _check_level(level)
    array = _as_vector(values, "values")
    n = array.size
    if n < 2:
        return _unbounded(n, "t", level)
    mean, sem = float(array.mean()), float(scipy_stats.sem(array))
    if sem == 0:
        return Interval(mean, mean, n, "t", level)
    low, high = scipy_stats.t.interval(level, df=n - 1, loc=mean, scale=sem)
    return Interval(float(low), float(high), n, "t", level)


def bootstrap_interval(
    values,
    statistic: Callable[..., float] = np.mean,
    n_resamples: int = 9999,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """BCa bootstrap interval of ``statistic`` (``scipy.stats.bootstrap(method="BCa")``).

    ``statistic`` must accept an ``axis`` keyword (as numpy reductions do). With one value the
    interval is unbounded; with all values equal it is the single point (BCa is undefined there).
    """
    _check_level(level)
    array = _as_vector(values, "values")
    n = array.size
    if n < 2:
        return _unbounded(n, "bootstrap BCa", level)
    if np.all(array == array[0]):
        point = float(statistic(array))
        return Interval(point, point, n, "bootstrap BCa", level)
    result = scipy_stats.bootstrap(
        (array,), statistic, n_resamples=n_resamples, confidence_level=level, method="BCa",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Interval(float(interval.low), float(interval.high), n, "bootstrap BCa", level)


def paired_difference(
    a, b, method: Literal["t", "bootstrap"] = "t", level: float = 0.95, seed: int = 0
) -> tuple[float, Interval]:
    """The mean of ``a − b`` over pairs (same seeds or examples) and its interval.

    Example:
        >>> estimate, interval = paired_difference([0.8, 0.9, 0.85], [0.7, 0.8, 0.8])
        >>> round(estimate, 4), interval.method, interval.n
        (0.0833, 'paired t', 3)
    """
    first, second = _as_vector(a, "a"), _as_vector(b, "b")
    if first.shape != second.shape:
        raise ValueError(f"`a` and `b` must be paired (same length), got {first.size} and {second.size}")
    differences = first - second
    if method == "t":
        interval = t_interval(differences, level)
    elif method == "bootstrap":
        interval = bootstrap_interval(differences, seed=seed, level=level)
    else:
        raise ValueError(f"`method` must be 't' or 'bootstrap', got {method!r}")
    interval = Interval(interval.low, interval.high, interval.n, f"paired {interval.method}", level)
    return float(differences.mean()), interval


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Interval:
    """Exact (Clopper–Pearson) interval for a success rate ``k/n``.

    Example:
        >>> interval = clopper_pearson(0, 10)
        >>> interval.low, round(interval.high, 4)
        (0.0, 0.3085)
    """
    _check_level(level)
    _check_counts(k, n)
    ci = scipy_stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return Interval(float(ci.low), float(ci.high), int(n), "Clopper-Pearson", level)


def _check_counts(k: int, n: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n}")
    if int(k) != k or not 0 <= k <= n:
        raise ValueError(f"`k` must be an integer in [0, n={n}], got {k}")


def _correct_pair(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(correct_a, dtype=bool)
    second = np.asarray(correct_b, dtype=bool)
    if first.ndim != 1 or first.size == 0 or first.shape != second.shape:
        raise ValueError(
            f"`correct_a` and `correct_b` must be non-empty 1-D and paired, got shapes {first.shape} and {second.shape}"
        )
    return first, second


def paired_accuracy_difference(
    correct_a, correct_b, seed: int = 0, n_resamples: int = 9999, level: float = 0.95
) -> tuple[float, Interval]:
    """Accuracy of system A minus system B on the same examples, with a paired bootstrap interval.

    Examples are resampled as pairs (BCa bootstrap of the per-example difference ``a_i − b_i``),
    so the interval reflects only the examples on which the systems disagree.
    """
    first, second = _correct_pair(correct_a, correct_b)
    differences = first.astype(np.float64) - second.astype(np.float64)
    interval = bootstrap_interval(differences, n_resamples=n_resamples, seed=seed, level=level)
    interval = Interval(interval.low, interval.high, interval.n, "paired bootstrap BCa", level)
    return float(differences.mean()), interval


def mcnemar_p(correct_a, correct_b) -> float:
    """McNemar's exact test: two-sided binomial p-value of the discordant pairs against 1/2.

    Only examples that exactly one system gets right count; with none, the p-value is 1.
    """
    first, second = _correct_pair(correct_a, correct_b)
    only_a = int(np.sum(first & ~second))
    only_b = int(np.sum(~first & second))
    if only_a + only_b == 0:
        return 1.0
    return float(scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def binomial_test(
    k: int, n: int, p: float, alternative: Literal["two-sided", "greater", "less"] = "two-sided"
) -> float:
    """Exact binomial test p-value of ``k`` successes in ``n`` trials against rate ``p``.

    Example:
        >>> round(binomial_test(3, 10, 0.5, "less"), 4)
        0.1719
    """
    _check_counts(k, n)
    if not 0 <= p <= 1:
        raise ValueError(f"`p` must be in [0, 1], got {p}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"`alternative` must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    return float(scipy_stats.binomtest(int(k), int(n), p, alternative=alternative).pvalue)
