"""The random matrices of the projections: Gaussian ``N(0, 1/n)`` and sparse (Achlioptas / Li).

Both are ``[n_components, n_features]`` (``A`` in ``y = A x``) with ``E‖Ax‖² = ‖x‖²``, drawn in
float64 on the CPU from a ``torch.Generator`` and then cast and moved, so one seed gives the same
matrix in every dtype and on every device. See :mod:`kexue.random_projection.projections` for the
estimators that use them.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import Tensor

__all__ = ["Seed", "make_generator", "gaussian_matrix", "sparse_matrix"]

Seed = int | torch.Generator | None


def make_generator(seed: Seed) -> torch.Generator:
    """A CPU ``torch.Generator`` from an integer, an existing generator (returned as is) or None."""
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        generator.manual_seed(int(seed))
    else:
        raise TypeError(f"`random_state` must be an int, a torch.Generator or None, got {seed!r}")
    return generator


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return int(value)


def gaussian_matrix(n_components: int, n_features: int, seed: Seed = None,
                    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """``A ∈ R^{n×m}`` with i.i.d. ``N(0, 1/n)`` entries (post 8679), shape ``[n_components, n_features]``.

    Raises:
        ValueError: ``n_components`` or ``n_features`` not a positive integer.
    """
    n_components, n_features = _check_size(n_components, "n_components"), _check_size(n_features, "n_features")
    matrix = torch.randn(n_components, n_features, generator=make_generator(seed), dtype=torch.float64)
    return (matrix / math.sqrt(n_components)).to(dtype=dtype, device=device)


def _resolve_density(density: float | str, n_features: int) -> float:
    if isinstance(density, str) and density == "auto":
        return 1.0 / math.sqrt(n_features)
    if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0.0 < density <= 1.0:
        raise ValueError(f"`density` must be in (0, 1] or 'auto', got {density!r}")
    return float(density)


def sparse_matrix(n_components: int, n_features: int, density: float | str = "auto", seed: Seed = None,
                  dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Sparse ``A`` (Achlioptas / Li): ``±sqrt(1/density)/sqrt(n)`` w.p. ``density/2`` each, else 0; CSR tensor.

    The nonzero positions are a Bernoulli(density) process over the ``n·m`` entries, drawn as
    cumulative geometric gaps, so memory is O(nonzeros), not O(n·m).

    Raises:
        ValueError: ``n_components`` or ``n_features`` not a positive integer, ``density`` outside (0, 1].
    """
    n_components, n_features = _check_size(n_components, "n_components"), _check_size(n_features, "n_features")
    density = _resolve_density(density, n_features)
    generator = make_generator(seed)
    positions = _bernoulli_positions(n_components * n_features, density, generator)
    signs = torch.randint(0, 2, (positions.numel(),), generator=generator, dtype=torch.int8)
    # sqrt(s)/sqrt(n) rather than sqrt(s/n): the value scikit-learn's tests look for, to the last bit
    values = (signs.to(torch.float64) * 2 - 1) * (math.sqrt(1.0 / density) / math.sqrt(n_components))
    indices = torch.stack((positions // n_features, positions % n_features))
    matrix = torch.sparse_coo_tensor(indices, values, (n_components, n_features), is_coalesced=True,
                                     check_invariants=False)  # indices are sorted and unique by construction
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.to(dtype).to_sparse_csr().to(device)


def _bernoulli_positions(total: int, p: float, generator: torch.Generator) -> Tensor:
    """Sorted indices in ``[0, total)`` each included independently with probability ``p``."""
    if p >= 1.0:
        return torch.arange(total)
    expected = total * p
    chunk = int(expected + 6 * math.sqrt(expected) + 16)
    last = -1
    pieces = []
    while last < total:
        gaps = torch.empty(chunk, dtype=torch.float64).geometric_(p, generator=generator).to(torch.int64)
        positions = last + torch.cumsum(gaps, 0)  # geometric_ counts trials to the first success (>= 1)
        pieces.append(positions)
        last = int(positions[-1])
    positions = torch.cat(pieces)
    return positions[positions < total]
