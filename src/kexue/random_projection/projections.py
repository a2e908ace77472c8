"""Gaussian and sparse random projections: scikit-learn-style estimators and functions, in torch.

``y = A x`` with ``A ∈ R^{n×m}`` random (post 8706, "Tools for Dimensionality Reduction"):

- Gaussian: ``A_ij ~ N(0, 1/n)`` (post 8679);
- sparse (Achlioptas 2003; Li, Hastie & Church 2006): ``A_ij = ±sqrt(s/n)`` with probability
  ``1/(2s)`` each and 0 otherwise, ``s = 1/density``; ``density=1/3`` is Achlioptas' and the default
  ``"auto"`` is Li's "very sparse" ``1/sqrt(m)``. Stored as a sparse CSR tensor.

Both have ``E‖Ax‖² = ‖x‖²``. The SRHT lives in :mod:`kexue.random_projection.hadamard`.

Randomness: a ``random_state`` / ``seed`` is an ``int``, a ``torch.Generator`` or None (fresh
entropy). Matrices are drawn on the CPU and then moved to ``device``, so one seed gives the same
matrix on every device.

Input dimension: ``n_components > n_features`` is allowed (sign random projection sometimes wants
``n > m``, post 8706) but warns with :class:`DataDimensionalityWarning`, as scikit-learn does;
``n_components="auto"`` refuses a bound larger than ``n_features``, as scikit-learn does.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from kexue.random_projection.bounds import jl_min_dim

__all__ = [
    "DataDimensionalityWarning",
    "GaussianRandomProjection",
    "SparseRandomProjection",
    "RandomProjection",
    "gaussian_matrix",
    "sparse_matrix",
    "gaussian_projection",
    "sparse_projection",
    "make_generator",
    "check_input",
]

Seed = int | torch.Generator | None


class DataDimensionalityWarning(UserWarning):
    """The projection does not reduce: ``n_components`` exceeds the input dimension."""


def make_generator(seed: Seed) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int, an existing generator (returned as is) or None."""
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    elif isinstance(seed, int) and not isinstance(seed, bool):
        generator.manual_seed(seed)
    else:
        raise TypeError(f"`random_state` must be an int, a torch.Generator or None, got {seed!r}")
    return generator


def check_input(X: Tensor, name: str = "X") -> Tensor:
    """Refuse what a projection cannot handle: non-tensors, scalars, empty, non-float or non-finite input."""
    if not isinstance(X, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(X).__name__}")
    if X.dim() < 1 or X.shape[-1] == 0 or X.numel() == 0:
        raise ValueError(f"`{name}` must be non-empty with features on the last dimension, got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got {X.dtype}")
    # One cheap reduction first (as scikit-learn does): a finite sum proves every entry finite.
    if not torch.isfinite(X.sum()) and not torch.isfinite(X).all():
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return X


def _check_n_components(n_components: int, n_features: int) -> None:
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"`n_components` must be a positive integer or 'auto', got {n_components!r}")
    if n_components > n_features:
        warnings.warn(f"`n_components`={n_components} > n_features={n_features}: the projection does not "
                      "reduce the dimension", DataDimensionalityWarning, stacklevel=3)


def gaussian_matrix(n_components: int, n_features: int, seed: Seed = None,
                    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """``A ∈ R^{n×m}`` with i.i.d. ``N(0, 1/n)`` entries (post 8679), shape ``[n_components, n_features]``."""
    matrix = torch.randn(n_components, n_features, generator=make_generator(seed), dtype=torch.float64)
    return (matrix / math.sqrt(n_components)).to(dtype=dtype, device=device)


def _resolve_density(density: float | str, n_features: int) -> float:
    if density == "auto":
        return 1.0 / math.sqrt(n_features)
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise ValueError(f"`density` must be in (0, 1] or 'auto', got {density!r}")
    return float(density)


def sparse_matrix(n_components: int, n_features: int, density: float | str = "auto", seed: Seed = None,
                  dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Sparse ``A`` (Achlioptas / Li): ``±sqrt(1/(density·n))`` w.p. ``density/2`` each, else 0; CSR tensor.

    The nonzero positions are a Bernoulli(density) process over the ``n·m`` entries, drawn as
    cumulative geometric gaps, so memory is O(nonzeros), not O(n·m).
    """
    density = _resolve_density(density, n_features)
    generator = make_generator(seed)
    total = n_components * n_features
    positions = _bernoulli_positions(total, density, generator)
    signs = torch.randint(0, 2, (positions.numel(),), generator=generator, dtype=torch.int8)
    values = (signs.to(torch.float64) * 2 - 1) * math.sqrt(1.0 / (density * n_components))
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


class RandomProjection:
    """Base estimator: ``fit`` draws ``components_``, ``transform`` computes ``X @ components_.T``.

    Args:
        n_components: output dimension n, or ``"auto"``: ``jl_min_dim(n_samples, eps, bound)`` at fit.
        eps: ε for ``"auto"`` (in (0, 1)).
        bound: the :data:`~kexue.random_projection.bounds.BOUNDS` entry used by ``"auto"``.
        random_state: int, ``torch.Generator`` or None.
        dtype, device: of ``components_`` (float32 on the CPU by default).

    Attributes (set by ``fit``): ``n_components_``, ``n_features_in_``, ``components_`` (``[n, m]``).

    Gaussian and sparse differ only in :meth:`_make_random_matrix`; the SRHT, which stores no
    matrix, overrides ``_draw`` and ``_project`` instead.
    """

    def __init__(self, n_components: int | str = "auto", *, eps: float = 0.1, bound: str = "dasgupta-gupta",
                 random_state: Seed = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        self.n_components = n_components
        self.eps = eps
        self.bound = bound
        self.random_state = random_state
        self.dtype = dtype
        self.device = device

    def _make_random_matrix(self, n_components: int, n_features: int) -> Tensor:
        """The ``[n_components, n_features]`` matrix (dense or sparse CSR); subclasses define it."""
        raise NotImplementedError

    def fit(self, X: Tensor, y: object = None) -> RandomProjection:
        """Draw the projection for ``X`` (``[n_samples, n_features]``; only its shape is used)."""
        X = check_input(X)
        n_samples, n_features = X.reshape(-1, X.shape[-1]).shape
        if self.n_components == "auto":
            n_components = jl_min_dim(n_samples, eps=self.eps, bound=self.bound)
            if n_components > n_features:
                raise ValueError(f"`eps`={self.eps} and n_samples={n_samples} need n_components={n_components} "
                                 f"by bound {self.bound!r}, more than n_features={n_features}; raise `eps` or "
                                 "set `n_components`")
        else:
            n_components = self.n_components
            _check_n_components(n_components, n_features)
        self.n_components_ = n_components
        self.n_features_in_ = n_features
        self._draw(n_components, n_features)
        return self

    def _draw(self, n_components: int, n_features: int) -> None:
        self.components_ = self._make_random_matrix(n_components, n_features)

    def _project(self, X: Tensor) -> Tensor:
        return project(X, self.components_)

    def transform(self, X: Tensor) -> Tensor:
        """Project ``X`` (``[..., n_features]``) to ``[..., n_components_]`` in ``components_``' dtype."""
        if not hasattr(self, "n_components_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call `fit` first")
        X = check_input(X)
        if X.shape[-1] != self.n_features_in_:
            raise ValueError(f"`X` has {X.shape[-1]} features, but {type(self).__name__} was fitted with "
                             f"{self.n_features_in_}")
        return self._project(X)

    def fit_transform(self, X: Tensor, y: object = None) -> Tensor:
        return self.fit(X).transform(X)

    def get_params(self) -> dict[str, object]:
        return {"n_components": self.n_components, "eps": self.eps, "bound": self.bound,
                "random_state": self.random_state, "dtype": self.dtype, "device": self.device}

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({params})"


def project(X: Tensor, components: Tensor) -> Tensor:
    """``X @ components.T`` over the last dimension of ``X``, for a dense or sparse CSR ``components``."""
    X = X.to(device=components.device, dtype=components.dtype)
    flat = X.reshape(-1, X.shape[-1])
    if components.layout == torch.sparse_csr:
        out = (components @ flat.T).T  # CSR @ dense is the fast sparse kernel
    else:
        out = flat @ components.T
    return out.reshape(*X.shape[:-1], components.shape[0])


class GaussianRandomProjection(RandomProjection):
    """Dense Gaussian projection, ``A_ij ~ N(0, 1/n)`` (post 8679).

    Example:
        >>> import torch
        >>> X = torch.randn(50, 1000, generator=torch.Generator().manual_seed(0))
        >>> projection = GaussianRandomProjection(n_components=64, random_state=0).fit(X)
        >>> projection.transform(X).shape, projection.components_.shape
        (torch.Size([50, 64]), torch.Size([64, 1000]))
    """

    def _make_random_matrix(self, n_components: int, n_features: int) -> Tensor:
        return gaussian_matrix(n_components, n_features, self.random_state, self.dtype, self.device)


class SparseRandomProjection(RandomProjection):
    """Sparse projection (Achlioptas ``density=1/3``; Li's very sparse ``density="auto"`` = 1/sqrt(m)).

    Args:
        density: fraction of nonzero entries in (0, 1], or ``"auto"``; other arguments as
            :class:`RandomProjection`.

    Example:
        >>> import torch
        >>> X = torch.randn(50, 1000, generator=torch.Generator().manual_seed(0))
        >>> projection = SparseRandomProjection(64, density=1 / 3, random_state=0).fit(X)
        >>> projection.transform(X).shape, projection.components_.layout
        (torch.Size([50, 64]), torch.sparse_csr)
    """

    def __init__(self, n_components: int | str = "auto", *, density: float | str = "auto", eps: float = 0.1,
                 bound: str = "dasgupta-gupta", random_state: Seed = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__(n_components, eps=eps, bound=bound, random_state=random_state, dtype=dtype, device=device)
        self.density = density

    def fit(self, X: Tensor, y: object = None) -> SparseRandomProjection:
        super().fit(X)
        self.density_ = _resolve_density(self.density, self.n_features_in_)
        return self

    def _make_random_matrix(self, n_components: int, n_features: int) -> Tensor:
        return sparse_matrix(n_components, n_features, self.density, self.random_state, self.dtype, self.device)

    def get_params(self) -> dict[str, object]:
        return {**super().get_params(), "density": self.density}


def gaussian_projection(X: Tensor, n_components: int, seed: Seed = None) -> Tensor:
    """Functional Gaussian projection of ``X`` (``[..., m]``) to ``[..., n_components]``."""
    return GaussianRandomProjection(n_components, random_state=seed, dtype=X.dtype, device=X.device).fit_transform(X)


def sparse_projection(X: Tensor, n_components: int, density: float | str = "auto", seed: Seed = None) -> Tensor:
    """Functional sparse projection of ``X`` (``[..., m]``) to ``[..., n_components]``."""
    return SparseRandomProjection(n_components, density=density, random_state=seed, dtype=X.dtype,
                                  device=X.device).fit_transform(X)
