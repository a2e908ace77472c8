"""Measured distortion of a projection: how far ``‖y_i − y_j‖²`` strays from ``‖x_i − x_j‖²``.

For each pair ``i < j`` the ratio ``r_ij = ‖y_i − y_j‖² / ‖x_i − x_j‖²``; the projection is an
ε-embedding of the points (post 8679, eq. ``\\eqref{eq:bound}``) exactly when every
``|r_ij − 1| ≤ ε``. The inner-product error is
``|⟨y_i, y_j⟩ − ⟨x_i, x_j⟩| / ((‖x_i‖² + ‖x_j‖²)/2)``: the post's inner-product lemma bounds it by ε
(for unit vectors it is the plain error).

All pairs are used when there are at most ``max_pairs`` of them (through float64 Gram matrices);
otherwise ``max_pairs`` pairs are drawn uniformly at random (with replacement), so the maximum is
then a lower estimate of the true maximum. Pairs of identical points (``x_i = x_j``) have no
ratio: they are counted in ``identical_pairs`` and left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kexue.random_projection.projections import Seed, check_input, make_generator

__all__ = ["Distortion", "distortion"]

_QUANTILES = (0.5, 0.9, 0.99)
_CHUNK = 65_536


@dataclass(frozen=True)
class Distortion:
    """Pairwise distortion statistics (see the module docstring for the definitions)."""

    pairs: int  # pairs measured
    exact: bool  # True: all pairs; False: a uniform sample of pairs
    identical_pairs: int  # pairs with x_i == x_j, left out
    max_distortion: float  # max |r_ij − 1|
    min_ratio: float
    max_ratio: float
    quantiles: dict[str, float]  # of |r_ij − 1|: "p50", "p90", "p99"
    fraction_within: float | None  # share of pairs with |r_ij − 1| <= eps (None without eps)
    inner_product_error_max: float
    inner_product_error_mean: float


def _pairs_from_gram(X: Tensor, Y: Tensor) -> tuple[Tensor, ...]:
    rows, cols = torch.triu_indices(X.shape[0], X.shape[0], 1)
    gram_x, gram_y = X @ X.T, Y @ Y.T
    sq_x, sq_y = gram_x.diagonal(), gram_y.diagonal()
    inner_x, inner_y = gram_x[rows, cols], gram_y[rows, cols]
    dist_x = sq_x[rows] + sq_x[cols] - 2 * inner_x
    dist_y = sq_y[rows] + sq_y[cols] - 2 * inner_y
    return dist_x, dist_y, inner_x, inner_y, (sq_x[rows] + sq_x[cols]) / 2


def _pairs_sampled(X: Tensor, Y: Tensor, count: int, generator: torch.Generator) -> tuple[Tensor, ...]:
    n_points = X.shape[0]
    rows = torch.randint(0, n_points, (count,), generator=generator)
    cols = torch.randint(0, n_points - 1, (count,), generator=generator)
    cols = cols + (cols >= rows)  # uniform over j != i
    parts = []
    for start in range(0, count, _CHUNK):
        i, j = rows[start:start + _CHUNK].to(X.device), cols[start:start + _CHUNK].to(X.device)
        xi, xj, yi, yj = X[i], X[j], Y[i], Y[j]
        parts.append(torch.stack((((xi - xj) ** 2).sum(-1), ((yi - yj) ** 2).sum(-1), (xi * xj).sum(-1),
                                  (yi * yj).sum(-1), ((xi**2).sum(-1) + (xj**2).sum(-1)) / 2)))
    return tuple(torch.cat(parts, dim=1))


def distortion(X: Tensor, Y: Tensor, eps: float | None = None, max_pairs: int = 2_000_000,
               seed: Seed = 0) -> Distortion:
    """Distortion of the map ``X -> Y`` over pairs of rows.

    Args:
        X: ``[N, m]`` original points (N >= 2).
        Y: ``[N, n]`` their projections.
        eps: report the share of pairs within ``(1 ± eps)``; optional, in (0, 1).
        max_pairs: all pairs when ``N(N−1)/2 <= max_pairs``, else this many sampled pairs.
        seed: for the pair sample.

    Returns:
        A :class:`Distortion` (computed in float64).

    Raises:
        ValueError: shapes that do not match, N < 2, NaN or infinite values, ``eps`` outside (0, 1).

    Example:
        >>> X = torch.eye(3)
        >>> result = distortion(X, 2 * X, eps=0.5)
        >>> result.pairs, result.max_distortion, result.fraction_within, result.inner_product_error_max
        (3, 3.0, 0.0, 0.0)
    """
    X, Y = check_input(X, "X"), check_input(Y, "Y")
    if X.dim() != 2 or Y.dim() != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"`X` and `Y` must be [N, m] and [N, n] with the same N, got {tuple(X.shape)} "
                         f"and {tuple(Y.shape)}")
    if X.shape[0] < 2:
        raise ValueError(f"distortion needs at least 2 points, got N={X.shape[0]}")
    if eps is not None and not 0.0 < eps < 1.0:
        raise ValueError(f"`eps` must be in (0, 1), got {eps!r}")
    X, Y = X.double(), Y.double().to(X.device)
    n_points = X.shape[0]
    exact = n_points * (n_points - 1) // 2 <= max_pairs
    if exact:
        dist_x, dist_y, inner_x, inner_y, scale = _pairs_from_gram(X, Y)
    else:
        dist_x, dist_y, inner_x, inner_y, scale = _pairs_sampled(X, Y, max_pairs, make_generator(seed))
    distinct = dist_x > 0
    ratio = dist_y[distinct] / dist_x[distinct]
    deviation = (ratio - 1).abs()
    inner_error = (inner_y - inner_x).abs() / scale.clamp_min(torch.finfo(torch.float64).tiny)
    quantiles = torch.quantile(deviation, torch.tensor(_QUANTILES, dtype=torch.float64, device=X.device)) \
        if deviation.numel() <= 16_000_000 else torch.sort(deviation).values[
            (torch.tensor(_QUANTILES) * (deviation.numel() - 1)).long()]
    return Distortion(
        pairs=int(dist_x.numel()),
        exact=exact,
        identical_pairs=int((~distinct).sum()),
        max_distortion=float(deviation.max()) if deviation.numel() else 0.0,
        min_ratio=float(ratio.min()) if ratio.numel() else 1.0,
        max_ratio=float(ratio.max()) if ratio.numel() else 1.0,
        quantiles={f"p{round(q * 100)}": float(value) for q, value in zip(_QUANTILES, quantiles)},
        fraction_within=None if eps is None else float((deviation <= eps).double().mean()),
        inner_product_error_max=float(inner_error.max()),
        inner_product_error_mean=float(inner_error.mean()),
    )
