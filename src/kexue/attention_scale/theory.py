"""The post's entropy estimate ``H ≈ log n − 0.24·λd`` for random vectors on the sphere.

Setting of post 8823 ("Derivation"): q and k_1..k_n independent and uniform on the sphere of
radius √d, so ``q·k_j = d·c_j`` with ``c_j = cos θ_j``, attention ``a_j = softmax_j(λ q·k_j)`` and
``H = −Σ_j a_j log a_j``. Replacing each sum by ``n ×`` its expectation (eq. 6-7) gives::

    H ≈ log n + log E[e^{κc}] − κ E[c e^{κc}] / E[e^{κc}],    κ = λd,  p(c) ∝ (1 − c²)^{(d−3)/2}

and Laplace's method turns the last two terms into ``−0.24·λd + O(1)`` (eq. 8). So ``λ ∝ log n / d``
keeps H steady, which with ``λ(512) = 1/√d`` is the ``log₅₁₂ n / √d`` scale.

- :func:`sphere_entropy` measures H by Monte Carlo for finite n.
- :func:`expected_entropy_gap` evaluates the expectation form, i.e. ``H − log n`` as ``n → ∞``,
  by quadrature over the density of c.

Where the estimate holds (numbers for d = 64): the gap is ≈ −0.24·κ only for κ near d (−0.24 at
κ = 64, slope ≈ −0.25 over κ ∈ [d/2, 2d]); at the standard κ = √d it is ≈ −κ²/(2d) = −0.49.
And n must be large: the expectation is dominated by rare keys with c ≈ 0.6, so for κ ≈ d the
Monte Carlo H at n ≤ 10⁴ is far from ``log n + gap``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from kexue.attention_scale.entropy import row_entropy

__all__ = ["sphere_entropy", "expected_entropy_gap"]


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")


def sphere_entropy(n: int, lam: float, d: int, queries: int = 64, seed: int = 0) -> float:
    """Mean attention entropy (nats) of ``softmax(λ q·k_j)`` for random q, k_j on the sphere of radius √d.

    Each query gets its own ``n`` keys; computed in float64.

    Args:
        n: number of keys.
        lam: λ, the scale.
        d: dimension.
        queries: number of independent queries averaged.
        seed: random seed.

    Example:
        >>> round(sphere_entropy(4, lam=0.0, d=8), 6) == round(math.log(4), 6)
        True
    """
    for name, value in (("n", n), ("d", d), ("queries", queries)):
        _check_positive(name, value)
    generator = torch.Generator().manual_seed(seed)

    def on_sphere(*shape: int) -> torch.Tensor:
        x = torch.randn(*shape, d, generator=generator, dtype=torch.float64)
        return x / x.norm(dim=-1, keepdim=True) * math.sqrt(d)

    q, k = on_sphere(queries, 1), on_sphere(queries, n)
    scores = lam * (q @ k.transpose(1, 2)).squeeze(1)  # [queries, n]
    return float(row_entropy(scores.double()).mean())


def expected_entropy_gap(kappa: float, d: int, grid: int = 200_001) -> float:
    """``H − log n`` as ``n → ∞``: ``log E[e^{κc}] − κ E[c e^{κc}]/E[e^{κc}]``, c the cosine in d dimensions.

    Args:
        kappa: κ = λd.
        d: dimension (>= 3).
        grid: quadrature points on (−1, 1).

    Example:
        >>> abs(expected_entropy_gap(0.0, 64)) < 1e-9  # uniform attention: H = log n
        True
        >>> round(expected_entropy_gap(64.0, 64) / 64, 2)  # the post's 0.24 at λ = 1
        -0.24
    """
    if d < 3:
        raise ValueError(f"`d` must be >= 3, got {d!r}")
    c = np.linspace(-1.0, 1.0, grid)[1:-1]
    log_density = (d - 3) / 2 * np.log1p(-c * c)
    log_density -= np.logaddexp.reduce(log_density)  # normalised weights on the grid
    log_tilted = log_density + kappa * c
    log_mean = np.logaddexp.reduce(log_tilted)  # log E[e^{κc}]
    tilted = np.exp(log_tilted - log_mean)
    return float(log_mean - kappa * np.sum(tilted * c))
