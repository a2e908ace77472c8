"""``kexue bench jl``: random projection throughput against scikit-learn, and SRHT against dense Gaussian.

Cases (m = 4096 → n = 512, 10⁵ vectors; 10⁴ with ``--quick``), each with the same number of
threads on both sides (torch's, and threadpoolctl limits NumPy's BLAS to it):

1. our :class:`GaussianRandomProjection` vs ``sklearn.random_projection.GaussianRandomProjection``,
   float32, on a torch tensor and on the very NumPy array scikit-learn gets (goal: at least as
   fast). Our float32 CPU product is oneDNN's prepacked kernel; scikit-learn's is NumPy's
   OpenBLAS ``sgemm``;
2. the same in float64 on a quarter of the vectors (float64 stays float64 on both sides: MKL's
   ``dgemm`` against OpenBLAS's), and against our own float32 path on the same vectors (its cost);
3. our :class:`SparseRandomProjection` (CSR tensor) vs scikit-learn's (SciPy sparse), both with
   density 1/sqrt(m) and dense output;
4. our SRHT vs our dense Gaussian (goal: at least 2× faster at m ≥ 4096), and the radix-2 butterfly
   (``block_size=2``) vs dense Gaussian, for the record.

scikit-learn is a bench extra (``pip install kexue[bench]``), never a core dependency.
"""

from __future__ import annotations

import torch

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.random_projection import SRHT, GaussianRandomProjection, SparseRandomProjection

N_FEATURES, N_COMPONENTS = 4096, 512


@register_benchmark("jl", anchor="scikit-learn random_projection",
                    summary="Gaussian (float32, float64) / sparse / SRHT transform throughput, m=4096 -> n=512")
def run(quick: bool) -> list[Comparison]:
    from threadpoolctl import threadpool_limits

    vectors = 10_000 if quick else 100_000
    repeats = 3 if quick else 5
    X = torch.randn(vectors, N_FEATURES, generator=torch.Generator().manual_seed(0))
    facts = {"vectors": vectors, "m": N_FEATURES, "n": N_COMPONENTS, "threads": torch.get_num_threads()}
    with threadpool_limits(limits=torch.get_num_threads()):
        return [*_gaussian_float32(X, repeats, facts), *_gaussian_float64(X[: vectors // 4], repeats, facts),
                *_sparse_and_srht(X, repeats, facts)]


def _gaussian_float32(X: torch.Tensor, repeats: int, facts: dict) -> list[Comparison]:
    from sklearn import random_projection

    X_numpy = X.numpy()  # the same memory as X
    ours = GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X[:2])
    theirs = random_projection.GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X_numpy[:2])
    case = f"{X.shape[0]} x {N_FEATURES} -> {N_COMPONENTS}, float32"
    goal = {"goal": "at least as fast (speedup >= 1)", "goal_met": lambda c: c.speedup >= 1}
    return [
        compare(f"Gaussian, {case}, torch input", lambda: ours.transform(X), "sklearn GaussianRandomProjection",
                lambda: theirs.transform(X_numpy), repeats=repeats, measure_memory=True, **goal, **facts),
        compare(f"Gaussian, {case}, NumPy input", lambda: ours.transform(X_numpy), "sklearn GaussianRandomProjection",
                lambda: theirs.transform(X_numpy), repeats=repeats, **goal, **facts),
    ]


def _gaussian_float64(X: torch.Tensor, repeats: int, facts: dict) -> list[Comparison]:
    """float64 against scikit-learn's float64, and against our own float32 (what float64 costs)."""
    from sklearn import random_projection

    X64 = X.double().numpy()
    ours = GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X64[:2])
    theirs = random_projection.GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X64[:2])
    ours32 = GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X[:2])
    case = f"{X.shape[0]} x {N_FEATURES} -> {N_COMPONENTS}, float64, NumPy input"
    return [
        compare(f"Gaussian, {case}", lambda: ours.transform(X64), "sklearn GaussianRandomProjection (float64)",
                lambda: theirs.transform(X64), repeats=repeats, **facts),
        compare(f"Gaussian, {case}, vs our float32", lambda: ours.transform(X64),
                "kexue GaussianRandomProjection (float32, torch input)", lambda: ours32.transform(X),
                repeats=repeats, **facts),
    ]


def _sparse_and_srht(X: torch.Tensor, repeats: int, facts: dict) -> list[Comparison]:
    from sklearn import random_projection

    X_numpy = X.numpy()
    ours_gaussian = GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X[:2])
    ours_sparse = SparseRandomProjection(N_COMPONENTS, random_state=0).fit(X[:2])
    ours_srht = SRHT(N_COMPONENTS, random_state=0).fit(X[:2])
    ours_butterfly = SRHT(N_COMPONENTS, random_state=0, block_size=2).fit(X[:2])
    sk_sparse = random_projection.SparseRandomProjection(N_COMPONENTS, dense_output=True, random_state=0).fit(X_numpy[:2])
    case = f"{X.shape[0]} x {N_FEATURES} -> {N_COMPONENTS}, float32"
    return [
        compare(f"sparse (density 1/sqrt(m)), {case}", lambda: ours_sparse.transform(X),
                "sklearn SparseRandomProjection", lambda: sk_sparse.transform(X_numpy), repeats=repeats,
                measure_memory=True, **facts),
        compare(f"SRHT (block 64) vs dense Gaussian, {case}", lambda: ours_srht.transform(X),
                "kexue GaussianRandomProjection", lambda: ours_gaussian.transform(X), repeats=repeats,
                measure_memory=True, goal="speedup >= 2 at m >= 4096", goal_met=lambda c: c.speedup >= 2, **facts),
        compare(f"SRHT radix-2 butterfly vs dense Gaussian, {case}", lambda: ours_butterfly.transform(X),
                "kexue GaussianRandomProjection", lambda: ours_gaussian.transform(X), repeats=repeats, **facts),
    ]
