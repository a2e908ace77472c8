"""Two applications of random projection from post 8706: sign random projection and randomized SVD.

Sign random projection (post 8706, "Localized Hashing"; Charikar 2002, "SimHash"):
``code(v) = sign(A v) ∈ {±1}^n`` with Gaussian ``A``. For one row ``a``, ``P(sign⟨a, u⟩ ≠ sign⟨a, v⟩) = θ/π``
where θ is the angle between u and v, so the Hamming distance ``h`` of two codes estimates the
angle: ``cos θ ≈ cos(π h / n)`` (:func:`cosine_from_hamming`). The post's shortcut
``cos(sign(Au), sign(Av)) = 1 − 2h/n`` is the cosine of the codes themselves; it is biased toward 0
(for cos θ = 0.5 it tends to 1/3), which the ``jl`` reproduction measures.

Randomized SVD (post 8706, "Randomized Decomposition"; Halko, Martinsson & Tropp 2011, Alg. 4.4):
with a Gaussian test matrix ``Ω ∈ R^{n×(k+p)}``, ``Q = qr(M Ω)`` spans the dominant column space
of M (refined by ``q`` power iterations ``Q ← qr(M qr(Mᵀ Q))``); then the SVD of the small
``B = Qᵀ M = U_B Σ Vᵀ`` gives ``M ≈ (Q U_B) Σ Vᵀ``. The post applies the same idea on the right
(``M ≈ M Q Qᵀ``); both are the JL lemma keeping the geometry of M's columns in k + p dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kexue.random_projection.projections import GaussianRandomProjection, Seed, check_input, make_generator

__all__ = ["SignRandomProjection", "hamming_distance", "cosine_from_hamming", "randomized_svd"]


class SignRandomProjection(GaussianRandomProjection):
    """Binary codes ``sign(A x)`` (bool, True for >= 0) from a Gaussian projection to ``n_components`` bits.

    ``n_components > n_features`` is allowed (post 8706: more bits than dimensions can help); it
    warns like the other projections. Arguments as :class:`GaussianRandomProjection`.

    Example:
        >>> X = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]).repeat(1, 1000)
        >>> codes = SignRandomProjection(2048, random_state=0).fit_transform(X)
        >>> cos = cosine_from_hamming(hamming_distance(codes, codes), 2048)
        >>> [round(value, 1) for value in cos[0].tolist()]
        [1.0, 0.7, -1.0]
    """

    def transform(self, X: Tensor) -> Tensor:
        return super().transform(X) >= 0


def hamming_distance(codes_a: Tensor, codes_b: Tensor) -> Tensor:
    """All Hamming distances between bool codes ``[Na, n]`` and ``[Nb, n]``: ``[Na, Nb]`` (float32 counts).

    Computed as ``(n − s_a · s_bᵀ)/2`` with ``s = ±1``: one matrix product, exact below 2^24 bits.
    """
    if codes_a.dtype != torch.bool or codes_b.dtype != torch.bool:
        raise TypeError(f"codes must be bool tensors, got {codes_a.dtype} and {codes_b.dtype}")
    if codes_a.shape[-1] != codes_b.shape[-1]:
        raise ValueError(f"codes differ in length: {codes_a.shape[-1]} and {codes_b.shape[-1]} bits")
    signs_a, signs_b = codes_a.float() * 2 - 1, codes_b.float() * 2 - 1
    return (codes_a.shape[-1] - signs_a @ signs_b.mT) / 2


def cosine_from_hamming(hamming: Tensor, n_bits: int) -> Tensor:
    """Charikar's estimate ``cos(π h / n)`` of the cosine between the original vectors."""
    return torch.cos(math.pi * hamming / n_bits)


def _orthonormal(Y: Tensor) -> Tensor:
    return torch.linalg.qr(Y).Q


def randomized_svd(M: Tensor, rank: int, oversamples: int = 10, power_iterations: int = 2,
                   seed: Seed = None) -> tuple[Tensor, Tensor, Tensor]:
    """Approximate truncated SVD ``M ≈ U diag(S) Vh`` (Halko et al. 2011, Alg. 4.4), batched over ``[..., m, n]``.

    Args:
        M: ``[..., m, n]`` floating-point matrix.
        rank: k, singular triplets returned (1 <= k <= min(m, n)).
        oversamples: p, extra random directions (``k + p`` is capped at ``min(m, n)``).
        power_iterations: q; each sharpens the spectrum's decay by a power, at 2 passes over M.
        seed: for the Gaussian test matrix (drawn on the CPU, moved to M's device).

    Returns:
        ``U [..., m, k]``, ``S [..., k]`` (descending), ``Vh [..., k, n]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> M = torch.randn(100, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 80, generator=g, dtype=torch.float64)
        >>> U, S, Vh = randomized_svd(M, rank=5, seed=0)
        >>> torch.allclose(U @ torch.diag(S) @ Vh, M)
        True
    """
    M = check_input(M, "M")
    if M.dim() < 2:
        raise ValueError(f"`M` must be [..., m, n], got shape {tuple(M.shape)}")
    rows, cols = M.shape[-2:]
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= min(rows, cols):
        raise ValueError(f"`rank` must be an integer in [1, {min(rows, cols)}], got {rank!r}")
    if oversamples < 0 or power_iterations < 0:
        raise ValueError(f"`oversamples` and `power_iterations` must be >= 0, got {oversamples} and {power_iterations}")
    width = min(rank + oversamples, rows, cols)
    omega = torch.randn(cols, width, generator=make_generator(seed), dtype=torch.float64)
    Q = _orthonormal(M @ omega.to(dtype=M.dtype, device=M.device))
    for _ in range(power_iterations):  # re-orthonormalise between passes: keeps small singular values
        Q = _orthonormal(M @ _orthonormal(M.mT @ Q))
    B = Q.mT @ M  # [..., k+p, n]
    U_small, S, Vh = torch.linalg.svd(B, full_matrices=False)
    return (Q @ U_small)[..., :rank], S[..., :rank], Vh[..., :rank, :]
