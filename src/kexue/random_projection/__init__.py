"""Random projections and the Johnson–Lindenstrauss lemma (kexue.fm posts 8679 and 8706).

The JL lemma (post 8679): given N vectors ``v_1 … v_N ∈ R^m``, ``ε ∈ (0, 1)`` and
``n > 24 log N / ε²``, a random ``A ∈ R^{n×m}`` with i.i.d. ``N(0, 1/n)`` entries satisfies, with
probability at least ``(N − 1)/N``, for all ``i ≠ j``:

    (1 − ε)‖v_i − v_j‖² ≤ ‖Av_i − Av_j‖² ≤ (1 + ε)‖v_i − v_j‖²

So N vectors fit in O(log N / ε²) dimensions, whatever m is, and a random linear map finds them.

What this package offers:

- :mod:`.bounds`: :func:`jl_min_dim` with the post's 24 and 16 log N/ε², scikit-learn's
  Dasgupta–Gupta bound and the sharper exact-Chernoff bound, for distances or inner products;
- :mod:`.projections`: :class:`GaussianRandomProjection`, :class:`SparseRandomProjection`
  (scikit-learn's estimator API and input conventions: NumPy, SciPy sparse or torch in, the same
  kind out; computed in torch, CPU or GPU, batched) and functional forms;
- :mod:`.hadamard`: :func:`fwht` and the :class:`SRHT` (O(m log m) per vector, no stored matrix);
- :mod:`.distortion`: :func:`distortion`, measured pairwise distortion (exact or sampled);
- :mod:`.applications`: sign random projection (binary codes, cosine from Hamming distance,
  post 8706 "Localized Hashing") and :func:`randomized_svd` (post 8706 "Randomized Decomposition").
"""

from kexue.random_projection.applications import (
    SignRandomProjection,
    cosine_from_hamming,
    hamming_distance,
    randomized_svd,
)
from kexue.random_projection.bounds import BOUNDS, Bound, chernoff_failure_probability, jl_min_dim
from kexue.random_projection.distortion import Distortion, distortion
from kexue.random_projection.hadamard import SRHT, fwht, hadamard_matrix, next_power_of_two, srht
from kexue.random_projection.projections import (
    DataDimensionalityWarning,
    GaussianRandomProjection,
    NotFittedError,
    RandomProjection,
    SparseRandomProjection,
    gaussian_matrix,
    gaussian_projection,
    sparse_matrix,
    sparse_projection,
)

__all__ = [
    "BOUNDS",
    "Bound",
    "DataDimensionalityWarning",
    "Distortion",
    "GaussianRandomProjection",
    "NotFittedError",
    "RandomProjection",
    "SRHT",
    "SignRandomProjection",
    "SparseRandomProjection",
    "chernoff_failure_probability",
    "cosine_from_hamming",
    "distortion",
    "fwht",
    "gaussian_matrix",
    "gaussian_projection",
    "hadamard_matrix",
    "hamming_distance",
    "jl_min_dim",
    "next_power_of_two",
    "randomized_svd",
    "sparse_matrix",
    "sparse_projection",
    "srht",
]
