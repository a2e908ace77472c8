"""What the projections take and give back: NumPy arrays, SciPy sparse matrices and torch tensors.

scikit-learn's input convention on top of torch: whatever comes in goes out as the same kind
(a NumPy array stays a NumPy array, a SciPy sparse matrix a SciPy sparse matrix or, with dense
output, a NumPy array, a tensor a tensor on its device), and the dtype follows the input:
float32 and float64 are kept, integers and booleans become the default float (float64 for NumPy
and SciPy, as in scikit-learn; ``torch.get_default_dtype()`` for tensors).

Nothing is copied on the way in or out where it can be avoided: a NumPy array becomes a tensor
with ``torch.from_numpy`` (shared memory), a SciPy CSR matrix becomes a sparse CSR tensor over its
own three arrays, and CPU results go back with ``Tensor.numpy()``. Sparse input stays sparse: it
is never densified here.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["Kind", "to_tensor", "from_tensor", "is_sparse"]

Kind = Literal["numpy", "scipy-matrix", "scipy-array", "torch"]
_NUMPY_FLOATS = (np.float32, np.float64)  # kept as they are; every other numeric dtype becomes float64


def is_sparse(X: Tensor) -> bool:
    return X.layout != torch.strided


def to_tensor(X: Any, name: str = "X") -> tuple[Tensor, Kind]:
    """``X`` as a float tensor (dense, or sparse CSR for sparse input) and the kind it came as.

    Raises:
        TypeError: ``X`` is not array-like, or its dtype is not real.
        ValueError: ``X`` is empty, not 2-D (NumPy and SciPy input), or holds NaN or infinity.
    """
    if isinstance(X, Tensor):
        return _check_tensor(_float_tensor(X, name), name), "torch"
    if sp.issparse(X):
        kind: Kind = "scipy-array" if isinstance(X, sp.sparray) else "scipy-matrix"
        return _check_tensor(_scipy_to_tensor(X, name), name), kind
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be a NumPy array, a SciPy sparse matrix or a torch tensor, "
                        f"got {type(X).__name__}") from error
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D [n_samples, n_features], got shape {array.shape}")
    return _check_tensor(torch.from_numpy(_float_array(array, name)), name), "numpy"


def _float_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype not in _NUMPY_FLOATS:
        if array.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must hold real numbers, got dtype {array.dtype}")
        array = array.astype(np.float64)
    if not array.dtype.isnative or any(stride < 0 for stride in array.strides):
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))  # what from_numpy accepts
    return array


def _float_tensor(X: Tensor, name: str) -> Tensor:
    if X.is_floating_point():
        return X
    if X.is_complex():
        raise TypeError(f"`{name}` must hold real numbers, got dtype {X.dtype}")
    return X.to(torch.get_default_dtype())


def _scipy_to_tensor(X: Any, name: str) -> Tensor:
    if X.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D [n_samples, n_features], got shape {X.shape}")
    X = X.tocsr()  # a no-op for CSR; other formats are converted, still sparse
    if not X.has_canonical_format:  # torch's kernels want sorted, unique column indices per row
        X = X.copy()
        X.sum_duplicates()
    data = _float_array(X.data, name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.from_numpy(X.indptr), torch.from_numpy(X.indices),
                                       torch.from_numpy(data), X.shape, check_invariants=False)  # canonical, see above


def _check_tensor(X: Tensor, name: str) -> Tensor:
    if X.layout in (torch.sparse_coo, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        X = X.to_sparse_csr()
    if X.dim() < 1 or X.numel() == 0 or X.shape[-1] == 0 or (is_sparse(X) and X.shape[0] == 0):
        raise ValueError(f"`{name}` must be non-empty with features on the last dimension, got shape {tuple(X.shape)}")
    values = X.values() if is_sparse(X) else X
    # One cheap reduction first (as scikit-learn does): a finite sum proves every entry finite.
    if not torch.isfinite(values.sum()) and not torch.isfinite(values).all():
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return X


def from_tensor(Y: Tensor, kind: Kind) -> Any:
    """``Y`` as ``kind``: tensors as they are; dense results as NumPy arrays; sparse CSR results as
    SciPy ``csr_array`` (for ``"scipy-array"`` input) or ``csr_matrix`` (otherwise)."""
    if kind == "torch":
        return Y
    Y = Y.detach().cpu()
    if not is_sparse(Y):
        return Y.numpy()
    parts = (Y.values().numpy(), Y.col_indices().numpy(), Y.crow_indices().numpy())
    return (sp.csr_array if kind == "scipy-array" else sp.csr_matrix)(parts, shape=tuple(Y.shape))
