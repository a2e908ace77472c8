"""Gaussian and sparse random projections: scikit-learn's estimators and functions, in torch.

``y = A x`` with ``A ∈ R^{n×m}`` random (post 8706, "Tools for Dimensionality Reduction"):

- Gaussian: ``A_ij ~ N(0, 1/n)`` (post 8679);
- sparse (Achlioptas 2003; Li, Hastie & Church 2006): ``A_ij = ±sqrt(s/n)`` with probability
  ``1/(2s)`` each and 0 otherwise, ``s = 1/density``; ``density=1/3`` is Achlioptas' and the default
  ``"auto"`` is Li's "very sparse" ``1/sqrt(m)``. Stored as a sparse CSR matrix.

Both have ``E‖Ax‖² = ‖x‖²``. The SRHT lives in :mod:`kexue.random_projection.hadamard`.

Input and output follow scikit-learn (see :mod:`kexue.random_projection.arrays`): NumPy arrays,
SciPy sparse matrices and torch tensors go out as the kind they came in as (tensors on their
device), float64 stays float64 and integers become the default float. Fitted attributes
(``components_``, ``inverse_components_``) are of the kind ``fit`` saw: NumPy / SciPy CSR for
array input, tensors for tensor input. The products always run in torch.

Randomness: a ``random_state`` / ``seed`` is an integer, a ``torch.Generator`` or None (fresh
entropy). Matrices are drawn in float64 on the CPU and then cast and moved, so one seed gives the
same matrix in every dtype and on every device (not scikit-learn's matrix: its stream is NumPy's).

Input dimension: ``n_components > n_features`` is allowed (sign random projection sometimes wants
``n > m``, post 8706) but warns with :class:`DataDimensionalityWarning`, as scikit-learn does;
``n_components="auto"`` refuses a bound larger than ``n_features``, as scikit-learn does.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kexue.random_projection.arrays import from_tensor, is_sparse, to_tensor
from kexue.random_projection.bounds import jl_min_dim
from kexue.random_projection.matrices import Seed, _resolve_density, gaussian_matrix, make_generator, sparse_matrix

__all__ = [
    "DataDimensionalityWarning",
    "NotFittedError",
    "GaussianRandomProjection",
    "SparseRandomProjection",
    "RandomProjection",
    "gaussian_matrix",
    "sparse_matrix",
    "gaussian_projection",
    "sparse_projection",
    "project",
    "make_generator",
    "check_input",
]


class DataDimensionalityWarning(UserWarning):
    """The projection does not reduce: ``n_components`` exceeds the input dimension."""


class NotFittedError(ValueError, AttributeError):
    """``transform`` before ``fit``. Both a ValueError and an AttributeError, as scikit-learn's
    ``sklearn.exceptions.NotFittedError`` is, so code written for either ``except`` catches it."""


def check_input(X: Tensor, name: str = "X") -> Tensor:
    """Refuse what a projection cannot handle: non-tensors, scalars, empty, non-float or non-finite input."""
    if not isinstance(X, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(X).__name__}")
    if not X.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got {X.dtype}")
    return to_tensor(X, name)[0]


def _check_n_components(n_components: object, n_features: int) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise ValueError(f"`n_components` must be a positive integer or 'auto', got {n_components!r}")
    if n_components > n_features:
        warnings.warn(f"The number of components is higher than the number of features: n_components="
                      f"{n_components} > n_features={n_features}, so the projection does not reduce the dimension",
                      DataDimensionalityWarning, stacklevel=4)
    return int(n_components)


def project(X: Tensor, components: Tensor, dense_output: bool = True) -> Tensor:
    """``X @ components.T`` over the last dimension of ``X``, in the promoted dtype of the two.

    ``X`` is dense ``[..., m]`` or sparse CSR ``[N, m]``; ``components`` dense or sparse CSR
    ``[n, m]``. Only sparse times sparse gives a sparse result, and only without ``dense_output``.
    Runs on ``components``' device.
    """
    dtype = torch.promote_types(X.dtype, components.dtype)
    X, components = X.to(device=components.device, dtype=dtype), components.to(dtype)
    if is_sparse(X):
        out = X @ components.t()
        return out.to_dense() if dense_output and is_sparse(out) else out
    flat = X.reshape(-1, X.shape[-1])
    if is_sparse(components):
        out = (components @ flat.T).T  # CSR @ dense is the fast sparse kernel
    else:
        out = flat @ components.T
    return out.reshape(*X.shape[:-1], components.shape[0])


class RandomProjection:
    """Base estimator: ``fit`` draws ``components_``, ``transform`` computes ``X @ components_.T``.

    Args:
        n_components: output dimension n, or ``"auto"``: ``jl_min_dim(n_samples, eps, bound)`` at fit.
        eps: ε for ``"auto"`` (in (0, 1)).
        bound: the :data:`~kexue.random_projection.bounds.BOUNDS` entry used by ``"auto"``.
        compute_inverse_components: compute the pseudo-inverse at fit (``inverse_components_``,
            ``[m, n]``), so that ``inverse_transform`` does not compute it per call.
        random_state: integer, ``torch.Generator`` or None.
        dtype: of the components; None (default) follows the input of ``fit`` (see the module docstring).
        device: where the components live and products run; None: they live on the device of
            ``fit``'s input and each product runs on its own input's device (the components are
            copied there once). Results always return to the input's device.

    Attributes (set by ``fit``): ``n_components_``, ``n_features_in_``, ``components_`` (``[n, m]``),
    ``inverse_components_`` (with ``compute_inverse_components``).

    Gaussian and sparse differ in :meth:`_make_random_matrix` (and the product kernel, ``_project``);
    the SRHT, which stores no matrix, overrides ``_draw``, ``_project`` and ``_dense_components``.
    """

    def __init__(self, n_components: int | str = "auto", *, eps: float = 0.1, bound: str = "dasgupta-gupta",
                 compute_inverse_components: bool = False, random_state: Seed = None,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        self.n_components = n_components
        self.eps = eps
        self.bound = bound
        self.compute_inverse_components = compute_inverse_components
        self.random_state = random_state
        self.dtype = dtype
        self.device = device

    def _make_random_matrix(self, n_components: int, n_features: int, dtype: torch.dtype,
                            device: torch.device) -> Tensor:
        """The ``[n_components, n_features]`` matrix (dense or sparse CSR); subclasses define it."""
        raise NotImplementedError

    def fit(self, X: Any, y: object = None) -> RandomProjection:
        """Draw the projection for ``X`` (``[n_samples, n_features]``; only its shape and kind are used)."""
        X, self._fit_kind = to_tensor(X)
        n_samples = X.shape[0] if is_sparse(X) else math.prod(X.shape[:-1])
        n_features = X.shape[-1]
        n_components = self._resolve_n_components(n_samples, n_features)
        self.n_components_, self.n_features_in_ = n_components, n_features
        self._conversions: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}
        for name in ("_inverse_components", "inverse_components_"):
            self.__dict__.pop(name, None)  # from an earlier fit with compute_inverse_components
        device = X.device if self.device is None else torch.device(self.device)
        self._fit_dtype = X.dtype if self.dtype is None else self.dtype
        self._draw(n_components, n_features, self._fit_dtype, device)
        if self.compute_inverse_components:
            self._inverse_components = torch.linalg.pinv(self._dense_components())
            self.inverse_components_ = self._public(self._inverse_components)
        return self

    def _resolve_n_components(self, n_samples: int, n_features: int) -> int:
        if self.n_components != "auto":
            return _check_n_components(self.n_components, n_features)
        n_components = int(jl_min_dim(n_samples, eps=self.eps, bound=self.bound))
        if n_components <= 0:
            raise ValueError(f"eps={self.eps:f} and n_samples={n_samples} lead to a target dimension of "
                             f"{n_components} which is invalid; fit on at least 2 samples or set `n_components`")
        if n_components > n_features:
            raise ValueError(f"eps={self.eps:f} and n_samples={n_samples} lead to a target dimension of "
                             f"{n_components} which is larger than the original space with n_features={n_features} "
                             f"(bound {self.bound!r}); raise `eps` or set `n_components`")
        return n_components

    def _draw(self, n_components: int, n_features: int, dtype: torch.dtype, device: torch.device) -> None:
        self._components = self._make_random_matrix(n_components, n_features, dtype, device)
        self.components_ = self._public(self._components)

    def _public(self, tensor: Tensor) -> Any:
        """A fitted tensor as the kind ``fit`` saw: itself for tensors, NumPy / SciPy CSR otherwise."""
        return from_tensor(tensor, "torch" if self._fit_kind == "torch" else "numpy")

    def _dense_components(self) -> Tensor:
        return self._components.to_dense() if is_sparse(self._components) else self._components

    def _on(self, name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The fitted tensor ``self.<name>`` on ``device`` in ``dtype``, converted once and kept, not
        once per call (float32 components used on float64 input, or on another device)."""
        tensor = getattr(self, name)
        if tensor.device == device and tensor.dtype == dtype:
            return tensor
        key = (name, device, dtype)
        if key not in self._conversions:
            self._conversions[key] = tensor.to(device=device, dtype=dtype)
        return self._conversions[key]

    def _promoted(self, X: Tensor) -> torch.dtype:
        """The dtype of the result: X's and the components' promoted, as NumPy and scikit-learn do."""
        return torch.promote_types(X.dtype, self._fit_dtype)

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_components_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call `fit` first")

    def _apply(self, X: Any, n_inputs_attribute: str, product: Any) -> Any:
        """Validate ``X`` (as many features as ``self.<n_inputs_attribute>``), run
        ``product(X, device)`` where the components are, and return the result to ``X``'s kind and device."""
        self._check_fitted()
        X, kind = to_tensor(X)
        n_inputs = getattr(self, n_inputs_attribute)
        if X.shape[-1] != n_inputs:
            raise ValueError(f"`X` has {X.shape[-1]} features, but {type(self).__name__} expects {n_inputs}")
        device = X.device if self.device is None else torch.device(self.device)
        return from_tensor(product(X, device).to(X.device), kind)

    def _project(self, X: Tensor, device: torch.device) -> Tensor:
        return project(X, self._on("_components", device, self._promoted(X)))

    def transform(self, X: Any) -> Any:
        """Project ``X`` (``[..., n_features]``) to ``[..., n_components_]``, returned as ``X``'s kind.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: ``X`` with another number of features than at ``fit``, empty or non-finite.
        """
        return self._apply(X, "n_features_in_", self._project)

    def fit_transform(self, X: Any, y: object = None) -> Any:
        return self.fit(X).transform(X)

    def inverse_transform(self, X: Any) -> Any:
        """Map ``X`` (``[..., n_components_]``) back with the pseudo-inverse of the components: ``X @ pinv(A)ᵀ``.

        ``transform(inverse_transform(Y)) == Y`` for ``Y`` in the projection's range (all of it when
        ``n_components_ <= n_features_in_``). Always dense. The pseudo-inverse is computed per call
        unless ``compute_inverse_components`` was set.
        """
        def back(Y: Tensor, device: torch.device) -> Tensor:
            if hasattr(self, "_inverse_components"):
                return project(Y, self._on("_inverse_components", device, self._promoted(Y)))
            return project(Y, torch.linalg.pinv(self._dense_components().to(device=device, dtype=self._promoted(Y))))

        return self._apply(X, "n_components_", back)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output feature names ``<class name in lower case><i>``, as scikit-learn names them."""
        self._check_fitted()
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ValueError(f"`input_features` has {len(input_features)} names, expected {self.n_features_in_}")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_components_)], dtype=object)

    def get_params(self, deep: bool = True) -> dict[str, object]:
        """The constructor's arguments (scikit-learn's ``clone`` and ``Pipeline`` rely on this)."""
        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters
                if name != "self"}

    def set_params(self, **params: object) -> RandomProjection:
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)} for {type(self).__name__}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({params})"


class GaussianRandomProjection(RandomProjection):
    """Dense Gaussian projection, ``A_ij ~ N(0, 1/n)`` (post 8679).

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).standard_normal((50, 1000))
        >>> projection = GaussianRandomProjection(n_components=64, random_state=0).fit(X)
        >>> Y = projection.transform(X)
        >>> type(Y).__name__, Y.shape, Y.dtype, projection.components_.shape
        ('ndarray', (50, 64), dtype('float64'), (64, 1000))
    """

    def _make_random_matrix(self, n_components: int, n_features: int, dtype: torch.dtype,
                            device: torch.device) -> Tensor:
        return gaussian_matrix(n_components, n_features, self.random_state, dtype, device)

    def _project(self, X: Tensor, device: torch.device) -> Tensor:
        # float32 on the CPU: oneDNN's kernel on the components prepacked once, not torch's default
        # GEMM (MKL). On the project's AMD EPYC (Zen 4) CPU, 100,000 x 4096 -> 512 on one thread
        # (7 rotated pairs, median ratio [95% bootstrap interval]): oneDNN 1.14x [1.07, 1.28]
        # scikit-learn's OpenBLAS sgemm, MKL 0.85x [0.78, 0.98]. Both are IEEE float32 products.
        if _onednn_applies(X, device, self._promoted(X)):
            if ("packed", device, X.dtype) not in self._conversions:
                self._conversions[("packed", device, X.dtype)] = torch.ops.mkldnn._reorder_linear_weight(
                    self._components, None)
            return torch.ops.mkldnn._linear_pointwise(X, self._conversions[("packed", device, X.dtype)], None,
                                                      "none", [None], "")
        return super()._project(X, device)


@functools.cache
def _has_onednn_linear() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def _onednn_applies(X: Tensor, device: torch.device, dtype: torch.dtype) -> bool:
    """A dense float32 product on the CPU, without autograd (the prepacked kernel has no backward)."""
    return (device.type == X.device.type == "cpu" and X.dtype == dtype == torch.float32 and not is_sparse(X)
            and not (X.requires_grad and torch.is_grad_enabled()) and torch.backends.mkldnn.enabled
            and _has_onednn_linear())


class SparseRandomProjection(RandomProjection):
    """Sparse projection (Achlioptas ``density=1/3``; Li's very sparse ``density="auto"`` = 1/sqrt(m)).

    Args:
        density: fraction of nonzero entries in (0, 1], or ``"auto"``.
        dense_output: for sparse input, return a dense result (otherwise sparse CSR, as scikit-learn
            does); dense input always gives dense output. Other arguments as :class:`RandomProjection`.

    Example:
        >>> import torch
        >>> X = torch.randn(50, 1000, generator=torch.Generator().manual_seed(0))
        >>> projection = SparseRandomProjection(64, density=1 / 3, random_state=0).fit(X)
        >>> projection.transform(X).shape, projection.components_.layout
        (torch.Size([50, 64]), torch.sparse_csr)
    """

    def __init__(self, n_components: int | str = "auto", *, density: float | str = "auto", eps: float = 0.1,
                 bound: str = "dasgupta-gupta", dense_output: bool = False, compute_inverse_components: bool = False,
                 random_state: Seed = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__(n_components, eps=eps, bound=bound, compute_inverse_components=compute_inverse_components,
                         random_state=random_state, dtype=dtype, device=device)
        self.density = density
        self.dense_output = dense_output

    def fit(self, X: Any, y: object = None) -> SparseRandomProjection:
        _resolve_density(self.density, 1)  # refuse a bad density before anything is drawn
        super().fit(X)
        self.density_ = _resolve_density(self.density, self.n_features_in_)
        return self

    def _make_random_matrix(self, n_components: int, n_features: int, dtype: torch.dtype,
                            device: torch.device) -> Tensor:
        return sparse_matrix(n_components, n_features, self.density, self.random_state, dtype, device)

    def _project(self, X: Tensor, device: torch.device) -> Tensor:
        return project(X, self._on("_components", device, self._promoted(X)), dense_output=self.dense_output)


def gaussian_projection(X: Any, n_components: int, seed: Seed = None) -> Any:
    """Functional Gaussian projection of ``X`` (``[..., m]``) to ``[..., n_components]``, as ``X``'s kind."""
    return GaussianRandomProjection(n_components, random_state=seed).fit_transform(X)


def sparse_projection(X: Any, n_components: int, density: float | str = "auto", seed: Seed = None) -> Any:
    """Functional sparse projection of ``X`` (``[..., m]``) to ``[..., n_components]``, as ``X``'s kind."""
    return SparseRandomProjection(n_components, density=density, random_state=seed).fit_transform(X)
