"""Fast Walsh–Hadamard transform and the subsampled randomized Hadamard transform (SRHT).

SRHT (Ailon & Chazelle 2006; Tropp 2011): ``y = sqrt(m'/n) · P · (H/sqrt(m')) · D · x = (1/sqrt(n)) · P H D x``
where ``D`` is a diagonal of random signs, ``H`` the ``m'×m'`` Hadamard matrix (entries ±1,
``H Hᵀ = m' I``), and ``P`` keeps ``n`` of the ``m'`` coordinates, sampled uniformly without
replacement. ``E‖y‖² = ‖x‖²`` as for the Gaussian projection of post 8679, but ``Hx`` costs
O(m log m) instead of O(n m), and nothing of size ``n×m`` is stored.

Padding: ``H`` exists for powers of two only, so ``x ∈ R^m`` is zero-padded to ``m' = 2^⌈log2 m⌉``.
Zero padding changes no norm or distance; it costs up to 2× work when ``m`` is just above a power
of two, and ``n_components`` can be at most ``m'``.

The transform uses ``H_{m'} = H_{r_1} ⊗ … ⊗ H_{r_k}``: the vector is viewed as a
``r_1 × … × r_k`` array and a small dense Hadamard matrix is applied along each axis. With
``block_size=2`` this is the textbook in-place radix-2 butterfly, ``m log2 m`` additions; the
default ``block_size=64`` does ``m·Σr_i`` multiply-adds (2·64 per coordinate at m = 4096 versus
n = 512 for a dense projection) but as a few large matrix products, which is what CPUs and
GPUs run fastest (``kexue bench jl`` measures both).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from kexue.random_projection.projections import RandomProjection, Seed, make_generator

__all__ = ["fwht", "hadamard_matrix", "SRHT", "srht", "next_power_of_two"]

_CPU_CHUNK_ELEMENTS = 1 << 18  # rows per block on the CPU: 256K floats (1 MiB in float32)


def next_power_of_two(m: int) -> int:
    """``2^⌈log2 m⌉``: the length ``fwht`` needs (``m`` itself when it is a power of two)."""
    return 1 << max(m - 1, 0).bit_length()


@lru_cache(maxsize=32)
def _hadamard_cpu(size: int, dtype: torch.dtype) -> Tensor:
    matrix = torch.ones(1, 1, dtype=dtype)
    while matrix.shape[0] < size:  # Sylvester: H_2k = [[H, H], [H, -H]]
        matrix = torch.cat((torch.cat((matrix, matrix), 1), torch.cat((matrix, -matrix), 1)), 0)
    return matrix


def hadamard_matrix(size: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The unnormalised ``size×size`` Sylvester Hadamard matrix (entries ±1); ``size`` a power of two.

    Example:
        >>> hadamard_matrix(4)
        tensor([[ 1.,  1.,  1.,  1.],
                [ 1., -1.,  1., -1.],
                [ 1.,  1., -1., -1.],
                [ 1., -1., -1.,  1.]])
    """
    if size < 1 or size & (size - 1):
        raise ValueError(f"`size` must be a power of two, got {size}")
    return _hadamard_cpu(size, dtype).to(device)


def _factors(m: int, block_size: int) -> list[int]:
    bits, block_bits = m.bit_length() - 1, block_size.bit_length() - 1
    count = max(math.ceil(bits / block_bits), 1)
    sizes = [bits // count + (1 if i < bits % count else 0) for i in range(count)]  # balanced
    return [1 << b for b in sizes if b]


def fwht(x: Tensor, normalized: bool = False, block_size: int = 64) -> Tensor:
    """Walsh–Hadamard transform ``H x`` over the last dimension (length a power of two), batched.

    Args:
        x: ``[..., m]``, ``m`` a power of two.
        normalized: divide by ``sqrt(m)`` so that the transform is orthogonal.
        block_size: largest dense Hadamard factor (a power of two >= 2); 2 is the radix-2 butterfly.

    Returns:
        ``[..., m]``, a new tensor (``x`` is not modified).

    Example:
        >>> fwht(torch.tensor([1.0, 0.0, 0.0, 0.0])), fwht(torch.tensor([1.0, 2.0, 3.0, 4.0]), block_size=2)
        (tensor([1., 1., 1., 1.]), tensor([10., -2., -4.,  0.]))
    """
    m = x.shape[-1]
    if m < 1 or m & (m - 1):
        raise ValueError(f"the last dimension of `x` must be a power of two (pad it), got {m}")
    if block_size < 2 or block_size & (block_size - 1):
        raise ValueError(f"`block_size` must be a power of two >= 2, got {block_size}")
    flat = x.reshape(-1, m)
    y = torch.empty_like(flat)
    for chunk, start in _row_chunks(x):
        y[start:start + chunk.shape[0]] = _fwht_rows(chunk, block_size)
    y = y.reshape(x.shape)
    return y / math.sqrt(m) if normalized else y


def _row_chunks(X: Tensor) -> list[tuple[Tensor, int]]:
    """Dense (rows, first row index) blocks of a 2-D or ``[..., m]`` ``X``: on the CPU about 1 MiB
    each, so that every stage runs in cache (3x faster at m = 4096 than whole-batch stages,
    measured); elsewhere the whole batch. A sparse CSR ``X`` is densified one block at a time."""
    m = X.shape[-1]
    if X.is_sparse_csr:
        n_rows, rows = X.shape[0], max(_CPU_CHUNK_ELEMENTS // m, 1)
        return [(_dense_rows(X, start, min(start + rows, n_rows)), start) for start in range(0, n_rows, rows)]
    flat = X.reshape(-1, m)
    rows = flat.shape[0] if flat.device.type != "cpu" else max(_CPU_CHUNK_ELEMENTS // m, 1)
    return [(flat[start:start + rows], start) for start in range(0, flat.shape[0], rows)]


def _dense_rows(X: Tensor, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of a sparse CSR ``X``, dense."""
    crow = X.crow_indices()
    first, last = int(crow[start]), int(crow[stop])
    block = torch.sparse_csr_tensor(crow[start:stop + 1] - first, X.col_indices()[first:last], X.values()[first:last],
                                    (stop - start, X.shape[1]), check_invariants=False)  # a slice of a valid CSR
    return block.to_dense()


def _fwht_rows(y: Tensor, block_size: int) -> Tensor:
    """Unnormalised transform of the rows of a 2-D ``y`` (see :func:`fwht`)."""
    rows, m = y.shape
    left, right = 1, m
    owned = False  # the butterfly works in place, never on the caller's tensor
    for size in _factors(m, block_size):
        right //= size
        if size == 2:
            y = _butterfly(y if owned else y.clone(), rows * left, right)
        else:
            hadamard = hadamard_matrix(size, y.dtype, y.device)
            if right == 1:
                y = y.reshape(-1, size) @ hadamard  # H is symmetric
            else:
                y = torch.matmul(hadamard, y.reshape(rows * left, size, right))
        owned = True
        left *= size
    return y.reshape(rows, m)


def _butterfly(y: Tensor, groups: int, half: int) -> Tensor:
    """One radix-2 stage in place: ``(a, b) -> (a + b, a − b)`` along the pairs of a ``[groups, 2, half]`` view."""
    pairs = y.reshape(groups, 2, half)
    a, b = pairs[:, 0], pairs[:, 1]
    a.add_(b)  # a + b
    b.mul_(-2).add_(a)  # (a + b) − 2b = a − b
    return pairs


class SRHT(RandomProjection):
    """Subsampled randomized Hadamard transform as a scikit-learn-style estimator.

    ``fit`` draws ``signs_`` (``[m']``, ±1) and ``rows_`` (``[n]`` sampled coordinates);
    ``transform`` computes ``(1/sqrt(n)) · (H D x)[rows_]`` with :func:`fwht`;
    :meth:`to_dense` returns the equivalent ``[n, m]`` matrix (a tensor). Inputs and outputs as
    :class:`~kexue.random_projection.projections.RandomProjection`, plus ``block_size`` for
    :func:`fwht`. Sparse input is densified a block of rows at a time (about 1 MiB), never whole.

    Raises:
        ValueError: at ``fit``, ``n_components`` larger than the padded dimension ``m'``.

    Example:
        >>> X = torch.randn(10, 300, generator=torch.Generator().manual_seed(0))
        >>> projection = SRHT(64, random_state=0).fit(X)
        >>> torch.allclose(projection.transform(X), X @ projection.to_dense().T, atol=1e-5)
        True
    """

    def __init__(self, n_components: int | str = "auto", *, eps: float = 0.1, bound: str = "dasgupta-gupta",
                 compute_inverse_components: bool = False, random_state: Seed = None,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                 block_size: int = 64) -> None:
        super().__init__(n_components, eps=eps, bound=bound, compute_inverse_components=compute_inverse_components,
                         random_state=random_state, dtype=dtype, device=device)
        self.block_size = block_size

    def _draw(self, n_components: int, n_features: int, dtype: torch.dtype, device: torch.device) -> None:
        padded = next_power_of_two(n_features)
        if n_components > padded:
            raise ValueError(f"`n_components`={n_components} is larger than the padded dimension {padded} "
                             f"(n_features={n_features}); the SRHT samples coordinates without replacement")
        generator = make_generator(self.random_state)
        signs = torch.randint(0, 2, (padded,), generator=generator).to(torch.float64) * 2 - 1
        rows = torch.randperm(padded, generator=generator)[:n_components].sort().values
        self.padded_features_ = padded
        self._signs, self._rows = signs.to(dtype=dtype, device=device), rows.to(device)
        self.signs_, self.rows_ = self._public(self._signs), self._public(self._rows)
        self._scaled_signs = (signs[:n_features] / math.sqrt(n_components)).to(dtype=dtype, device=device)

    def _project(self, X: Tensor, device: torch.device) -> Tensor:
        dtype = self._promoted(X)
        scaled_signs, rows = self._on("_scaled_signs", device, dtype), self._on("_rows", device, torch.int64)
        out = torch.empty(X.shape[0] if X.is_sparse_csr else math.prod(X.shape[:-1]), self.n_components_,
                          dtype=dtype, device=device)
        for chunk, start in _row_chunks(X):
            signed = chunk.to(device=device, dtype=dtype) * scaled_signs
            if self.padded_features_ > self.n_features_in_:
                signed = torch.nn.functional.pad(signed, (0, self.padded_features_ - self.n_features_in_))
            out[start:start + chunk.shape[0]] = _fwht_rows(signed, self.block_size).index_select(-1, rows)
        return out.reshape(*X.shape[:-1], self.n_components_)

    def _dense_components(self) -> Tensor:
        return self.to_dense()

    def to_dense(self) -> Tensor:
        """The ``[n_components_, n_features_in_]`` matrix ``S`` with ``transform(X) == X @ S.T``."""
        hadamard = hadamard_matrix(self.padded_features_, self._signs.dtype, self._signs.device)
        matrix = hadamard[self._rows] * self._signs / math.sqrt(self.n_components_)
        return matrix[:, : self.n_features_in_]


def srht(X: Any, n_components: int, seed: Seed = None, block_size: int = 64) -> Any:
    """Functional SRHT of ``X`` (``[..., m]``) to ``[..., n_components]``, as ``X``'s kind; see :class:`SRHT`."""
    return SRHT(n_components, random_state=seed, block_size=block_size).fit_transform(X)
