"""``kexue bench jl``: random projection throughput against scikit-learn, and SRHT against dense Gaussian.

Cases (m = 4096 → n = 512, float32, 10⁵ vectors; 10⁴ with ``--quick``), each with the same
number of threads on both sides (torch's, and threadpoolctl limits numpy's BLAS to it):

1. our :class:`GaussianRandomProjection` vs ``sklearn.random_projection.GaussianRandomProjection``
   (goal: at least as fast);
2. our :class:`SparseRandomProjection` (CSR tensor) vs scikit-learn's (scipy sparse), both with
   density 1/sqrt(m) and dense output;
3. our SRHT vs our dense Gaussian (goal: at least 2× faster at m ≥ 4096), and the radix-2 butterfly
   (``block_size=2``) vs dense Gaussian, for the record.

scikit-learn is a bench extra (``pip install kexue[bench]``), never a core dependency.
"""

from __future__ import annotations

import torch

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.random_projection import SRHT, GaussianRandomProjection, SparseRandomProjection

N_FEATURES, N_COMPONENTS = 4096, 512


@register_benchmark("jl", anchor="scikit-learn random_projection",
                    summary="Gaussian / sparse / SRHT transform throughput, m=4096 -> n=512")
def run(quick: bool) -> list[Comparison]:
    from sklearn import random_projection
    from threadpoolctl import threadpool_limits

    vectors = 10_000 if quick else 100_000
    repeats = 3 if quick else 5
    X = torch.randn(vectors, N_FEATURES, generator=torch.Generator().manual_seed(0))
    X_numpy = X.numpy()
    facts = {"vectors": vectors, "m": N_FEATURES, "n": N_COMPONENTS, "threads": torch.get_num_threads()}
    ours_gaussian = GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X[:2])
    ours_sparse = SparseRandomProjection(N_COMPONENTS, random_state=0).fit(X[:2])
    ours_srht = SRHT(N_COMPONENTS, random_state=0).fit(X[:2])
    ours_butterfly = SRHT(N_COMPONENTS, random_state=0, block_size=2).fit(X[:2])
    with threadpool_limits(limits=torch.get_num_threads()):
        sk_gaussian = random_projection.GaussianRandomProjection(N_COMPONENTS, random_state=0).fit(X_numpy[:2])
        sk_sparse = random_projection.SparseRandomProjection(N_COMPONENTS, dense_output=True, random_state=0).fit(X_numpy[:2])
        case = f"{vectors} x {N_FEATURES} -> {N_COMPONENTS}, float32"
        return [
            compare(f"Gaussian, {case}", lambda: ours_gaussian.transform(X), "sklearn GaussianRandomProjection",
                    lambda: sk_gaussian.transform(X_numpy), repeats=repeats, measure_memory=True,
                    goal="at least as fast (speedup >= 1)", goal_met=lambda c: c.speedup >= 1, **facts),
            compare(f"sparse (density 1/sqrt(m)), {case}", lambda: ours_sparse.transform(X),
                    "sklearn SparseRandomProjection", lambda: sk_sparse.transform(X_numpy), repeats=repeats,
                    measure_memory=True, **facts),
            compare(f"SRHT (block 64) vs dense Gaussian, {case}", lambda: ours_srht.transform(X),
                    "kexue GaussianRandomProjection", lambda: ours_gaussian.transform(X), repeats=repeats,
                    measure_memory=True, goal="speedup >= 2 at m >= 4096", goal_met=lambda c: c.speedup >= 2, **facts),
            compare(f"SRHT radix-2 butterfly vs dense Gaussian, {case}", lambda: ours_butterfly.transform(X),
                    "kexue GaussianRandomProjection", lambda: ours_gaussian.transform(X), repeats=repeats, **facts),
        ]
