"""How many dimensions a random projection needs: the Johnson–Lindenstrauss bounds, named and cited.

Every bound answers: the smallest ``n`` such that a random ``A ∈ R^{n×m}`` with i.i.d.
``N(0, 1/n)`` entries keeps all ``N(N-1)/2`` pairwise squared distances within ``(1 ± ε)``
(post 8679, eq. ``\\eqref{eq:bound}``) with some guaranteed probability.

=====================  ========================================  =================================
bound                  n                                         guarantee
=====================  ========================================  =================================
``"post-24"``          smallest integer > 24 ln N / ε²           P(success) ≥ (N-1)/N  (post 8679)
``"post-16"``          smallest integer > 16 ln N / ε²           P(success) ≥ 1/N > 0: existence
``"dasgupta-gupta"``   ⌊4 ln N / (ε²/2 − ε³/3)⌋                  P(success) ≥ 1/N > 0  (scikit-learn)
``"chernoff"``         smallest n with pairs·(e^{-a n}+e^{-b n})  P(success) ≥ 1 − δ  (solved)
                       ≤ δ
=====================  ========================================  =================================

The Chernoff bound keeps the exact tails the post derives before it loosens them to
``e^{-ε²n/8}``:  P(‖u‖² − 1 ≥ ε) ≤ e^{n(log(1+ε) − ε)/2}  and  P(1 − ‖u‖² ≥ ε) ≤ e^{n(log(1−ε) + ε)/2}
(post 8679, the two equations after the choice λ = nε / (2(1+ε))), so ``a = (ε − log(1+ε))/2`` and
``b = −(ε + log(1−ε))/2``, and a union bound over the pairs. With the post's δ = 1/N it is the sharpest
bound that guarantees high probability.

Note that scikit-learn's bound, like ``"post-16"``, only guarantees existence: Dasgupta and
Gupta make each of the two tails at most ``1/N²`` for each of the ``N(N−1)/2`` pairs, so success
has probability at least ``1/N`` (their Theorem 2.1). It is smaller than ``"chernoff"`` at
``δ = 1/N`` for that reason, not because it is sharper.

The inner-product version (post 8679, "Inner Product Version of the JL Lemma": unit vectors,
|⟨Av_i, Av_j⟩ − ⟨v_i, v_j⟩| ≤ ε) needs both ``v_i − v_j`` and ``v_i + v_j`` preserved, so twice as
many events enter the union bound: ``target="inner-product"`` uses ``N(N−1)`` events and, for the
closed forms, the post's weaker guarantee ``(N−2)/N``.

References:
    Su Jianlin, "The Amazing Johnson–Lindenstrauss Lemma: Theoretical Edition", kexue.fm/archives/8679.
    S. Dasgupta and A. Gupta, "An elementary proof of a theorem of Johnson and Lindenstrauss",
    Random Structures & Algorithms 22(1), 2003 (the formula of
    ``sklearn.random_projection.johnson_lindenstrauss_min_dim``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["BOUNDS", "Bound", "jl_min_dim", "chernoff_failure_probability"]


@dataclass(frozen=True)
class Bound:
    """A named JL dimension bound: its formula, its guarantee and where it comes from."""

    name: str
    formula: str
    guarantee: str
    reference: str


BOUNDS: dict[str, Bound] = {
    bound.name: bound
    for bound in (
        Bound("post-24", "n > 24 ln N / eps^2", "P >= (N-1)/N", "kexue.fm/archives/8679, JL lemma (math version)"),
        Bound("post-16", "n > 16 ln N / eps^2", "P >= 1/N (existence only)", "kexue.fm/archives/8679, 'Extreme Sufficiency'"),
        Bound("dasgupta-gupta", "n >= 4 ln N / (eps^2/2 - eps^3/3)", "P >= 1/N (existence only)",
              "Dasgupta & Gupta 2003, Theorem 2.1; sklearn johnson_lindenstrauss_min_dim"),
        Bound("chernoff", "pairs * (e^{n(log(1+eps)-eps)/2} + e^{n(log(1-eps)+eps)/2}) <= delta", "P >= 1 - delta",
              "kexue.fm/archives/8679, the exact Cramér–Chernoff tails before the eps^2/8 step"),
    )
}
_TARGETS = ("distance", "inner-product")


def _check_inputs(n_points: int, eps: float, bound: str, target: str) -> None:
    if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 1:
        raise ValueError(f"`n_points` must be a positive integer, got {n_points!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 < eps < 1.0:
        raise ValueError(f"`eps` must be in (0, 1), got {eps!r}")
    _check_choices(bound, target)


def _check_choices(bound: str, target: str) -> None:
    if bound not in BOUNDS:
        raise ValueError(f"`bound` must be one of {', '.join(map(repr, BOUNDS))}, got {bound!r}")
    if target not in _TARGETS:
        raise ValueError(f"`target` must be one of {', '.join(map(repr, _TARGETS))}, got {target!r}")


def chernoff_failure_probability(n_points: int, eps: float, n_components: int, events: float | None = None) -> float:
    """Union bound on the probability that some pair is distorted by more than ``eps``.

    ``events · (e^{n(log(1+ε) − ε)/2} + e^{n(log(1−ε) + ε)/2})`` with ``events = N(N−1)/2`` pairs by
    default (post 8679, the exact tails of the unit-norm lemma). May exceed 1 (then it says nothing).

    Example:
        >>> round(chernoff_failure_probability(1000, 0.5, 400), 6)
        0.003071
    """
    events = n_points * (n_points - 1) / 2 if events is None else events
    upper = n_components * (math.log1p(eps) - eps) / 2
    lower = n_components * (math.log1p(-eps) + eps) / 2
    return events * (math.exp(upper) + math.exp(lower))


def _chernoff_min_dim(n_points: int, eps: float, delta: float, events: float) -> int:
    """Smallest integer n with ``chernoff_failure_probability(...) <= delta``, by integer bisection.

    The failure bound decreases in n; since ``b > a`` (lower tail is lighter), ``e^{-an}`` alone
    brackets the answer: ``log(events/δ)/a <= n <= log(2·events/δ)/a``.
    """
    a = (eps - math.log1p(eps)) / 2
    low = max(int(math.log(events / delta) / a) - 1, 0)
    high = int(math.ceil(math.log(2 * events / delta) / a)) + 1
    while high - low > 1:  # invariant: fails at low (or low == 0), holds at high
        middle = (low + high) // 2
        if chernoff_failure_probability(n_points, eps, middle, events) <= delta:
            high = middle
        else:
            low = middle
    return high


def _strictly_above(value: float) -> int:
    return math.floor(value) + 1


def _dasgupta_gupta(n_points: int, eps: float) -> float:
    """Dasgupta and Gupta's real-valued bound 4 ln N / (ε²/2 − ε³/3), before rounding."""
    return 4 * math.log(n_points) / (eps**2 / 2 - eps**3 / 3)


_CLOSED_FORMS: dict[str, Callable[[int, float], int]] = {
    "post-24": lambda n_points, eps: _strictly_above(24 * math.log(n_points) / eps**2),
    "post-16": lambda n_points, eps: _strictly_above(16 * math.log(n_points) / eps**2),
    # scikit-learn truncates (astype(int64)); kept so that its documented values are reproduced.
    "dasgupta-gupta": lambda n_points, eps: int(_dasgupta_gupta(n_points, eps)),
}


def _check_arrays(n_points: np.ndarray, eps: np.ndarray) -> None:
    """Array arguments: integer counts >= 1 and real ``eps`` in (0, 1), naming the first bad value."""
    if n_points.dtype.kind not in "iu":
        raise ValueError(f"`n_points` must hold integers, got dtype {n_points.dtype}")
    if eps.dtype.kind not in "iuf":
        raise ValueError(f"`eps` must hold real numbers, got dtype {eps.dtype}")
    if (n_points < 1).any():
        raise ValueError(f"`n_points` must be positive integers, got {n_points[n_points < 1].flat[0].item()!r}")
    outside = ~((eps > 0) & (eps < 1))
    if outside.any():
        raise ValueError(f"`eps` must be in (0, 1), got {eps[outside].flat[0].item()!r}")


def _min_dim(n_points: int, eps: float, bound: str, target: str, failure_probability: float | None) -> int:
    """:func:`jl_min_dim` for one validated (N, ε)."""
    if n_points == 1:
        return 0  # no pairs: any map, even to 0 dimensions, keeps every pairwise distance
    if bound != "chernoff":
        return _CLOSED_FORMS[bound](n_points, eps)
    pairs = n_points * (n_points - 1) / 2
    events = pairs if target == "distance" else 2 * pairs
    delta = failure_probability
    if delta is None:
        delta = (1 if target == "distance" else 2) / n_points
        if delta >= 1.0:
            raise ValueError(f"the default `failure_probability` 2/N is {delta} for N={n_points}; pass one in (0, 1)")
    return _chernoff_min_dim(n_points, eps, delta, events)


def jl_min_dim(
    n_points: int,
    eps: float = 0.1,
    bound: str = "dasgupta-gupta",
    target: str = "distance",
    failure_probability: float | None = None,
) -> int | np.ndarray:
    """Dimension a Gaussian random projection needs to be an ε-embedding of ``n_points`` points.

    An ε-embedding keeps every pair: ``(1 − ε)‖v_i − v_j‖² ≤ ‖Av_i − Av_j‖² ≤ (1 + ε)‖v_i − v_j‖²``
    (or, for ``target="inner-product"`` and unit vectors, ``|⟨Av_i, Av_j⟩ − ⟨v_i, v_j⟩| ≤ ε``).
    The result does not depend on the input dimension ``m``; if it exceeds ``m``, projecting does
    not reduce anything. One point has no pairs, so it needs 0 dimensions.

    ``n_points`` and ``eps`` may be any integer / real numbers (NumPy scalars included) or arrays,
    which broadcast against each other as in NumPy (and as scikit-learn's
    ``johnson_lindenstrauss_min_dim`` does).

    Args:
        n_points: N, the number of points (>= 1), or an integer array.
        eps: ε in (0, 1), the allowed relative distortion of squared distances, or an array.
        bound: one of :data:`BOUNDS`: ``"post-24"``, ``"post-16"``, ``"dasgupta-gupta"`` (scikit-learn's,
            the default) or ``"chernoff"``.
        target: ``"distance"`` (N(N−1)/2 union events) or ``"inner-product"`` (N(N−1) events).
        failure_probability: δ, only for ``"chernoff"``; by default the post's ``1/N`` for distances
            and ``2/N`` for inner products, so that it compares with ``"post-24"``.

    Returns:
        The dimension n: an ``int`` for scalar arguments, else an int64 array of the broadcast shape.

    Raises:
        ValueError: ``n_points`` < 1, ``eps`` outside (0, 1), shapes that do not broadcast, an unknown
            ``bound`` or ``target``, or
            ``failure_probability`` outside (0, 1) or given for a closed-form bound.

    Example:
        >>> jl_min_dim(10**6, eps=0.5), jl_min_dim(10**6, eps=0.1), jl_min_dim(10**6, eps=0.01)
        (663, 11841, 1112658)
        >>> jl_min_dim(10**6, eps=0.1, bound="post-24"), jl_min_dim(10**6, eps=0.1, bound="post-16")
        (33158, 22105)
        >>> jl_min_dim(10**6, eps=0.1, bound="chernoff")
        17381
        >>> jl_min_dim(10**4, eps=0.5, bound="chernoff", failure_probability=0.01)
        473
        >>> jl_min_dim(10**4, eps=0.5, bound="chernoff", target="inner-product", failure_probability=0.01)
        488
        >>> jl_min_dim(np.int64(1000), eps=np.float32(0.5)), jl_min_dim([10, 1000], eps=[[0.5], [0.1]])
        (331, array([[ 110,  331],
               [1973, 5920]]))
        >>> jl_min_dim(100, eps=1.5)
        Traceback (most recent call last):
        ...
        ValueError: `eps` must be in (0, 1), got 1.5
    """
    _check_choices(bound, target)
    if bound != "chernoff" and failure_probability is not None:
        raise ValueError(f"`failure_probability` applies to bound='chernoff' only, got bound={bound!r}")
    if failure_probability is not None and not 0.0 < failure_probability < 1.0:
        raise ValueError(f"`failure_probability` must be in (0, 1), got {failure_probability!r}")
    if np.ndim(n_points) == 0 and np.ndim(eps) == 0:
        n_points, eps = (value.item() if isinstance(value, np.ndarray) else value for value in (n_points, eps))
        _check_inputs(n_points, eps, bound, target)
        return _min_dim(int(n_points), float(eps), bound, target, failure_probability)
    n_array, eps_array = np.broadcast_arrays(np.asarray(n_points), np.asarray(eps))  # ValueError if they do not
    _check_arrays(n_array, eps_array)
    dims = [_min_dim(int(n), float(e), bound, target, failure_probability) for n, e in zip(n_array.flat, eps_array.flat)]
    return np.asarray(dims, dtype=np.int64).reshape(n_array.shape)


def jl_sufficient_dim(
    n_points: int,
    eps: float = 0.1,
    bound: str = "dasgupta-gupta",
    target: str = "distance",
    failure_probability: float | None = None,
) -> int:
    """Like :func:`jl_min_dim`, but always a dimension the bound's guarantee covers.

    :func:`jl_min_dim` truncates the Dasgupta–Gupta bound as scikit-learn does
    (``n >= 4 ln N / (ε²/2 − ε³/3)`` rounded down), which can land one below the bound; a claim
    that the bound *suffices* needs the ceiling. The other bounds are already the smallest
    sufficient integer and are returned unchanged. Arguments and errors as :func:`jl_min_dim`.

    Example:
        >>> jl_min_dim(100, eps=0.5), jl_sufficient_dim(100, eps=0.5)
        (221, 222)
    """
    dimension = jl_min_dim(n_points, eps, bound, target, failure_probability)  # validates the arguments
    if bound != "dasgupta-gupta":
        return dimension
    return math.ceil(_dasgupta_gupta(n_points, eps))
