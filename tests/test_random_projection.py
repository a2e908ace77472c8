"""kexue.random_projection against hand-computed bounds, float64 statistics and brute force."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from kexue.random_projection import (
    SRHT,
    DataDimensionalityWarning,
    GaussianRandomProjection,
    NotFittedError,
    SignRandomProjection,
    SparseRandomProjection,
    chernoff_failure_probability,
    cosine_from_hamming,
    distortion,
    fwht,
    gaussian_projection,
    hadamard_matrix,
    hamming_distance,
    jl_min_dim,
    randomized_svd,
    sparse_projection,
    srht,
)

torch.set_num_threads(1)


def _points(n: int, m: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- bounds -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("eps", "expected"), [(0.5, 663), (0.1, 11841), (0.01, 1112658)])
def test_dasgupta_gupta_matches_sklearn_documented_values(eps, expected):
    assert jl_min_dim(10**6, eps=eps) == expected


def test_closed_form_bounds_by_hand():
    log_n = math.log(1000)
    assert jl_min_dim(1000, 0.5, bound="post-24") == math.floor(24 * log_n / 0.25) + 1 == 664
    assert jl_min_dim(1000, 0.5, bound="post-16") == math.floor(16 * log_n / 0.25) + 1 == 443
    sklearn_random_projection = pytest.importorskip("sklearn.random_projection")
    for n_points, eps in itertools.product([2, 100, 12345, 10**6], [0.05, 0.3, 0.9]):
        assert jl_min_dim(n_points, eps) == int(sklearn_random_projection.johnson_lindenstrauss_min_dim(n_points, eps=eps))


def test_chernoff_is_the_smallest_dimension_meeting_its_target():
    for n_points, eps, delta in [(100, 0.5, 0.01), (10**4, 0.2, 1e-4), (10**6, 0.1, None)]:
        n = jl_min_dim(n_points, eps, bound="chernoff", failure_probability=delta)
        delta = 1 / n_points if delta is None else delta
        assert chernoff_failure_probability(n_points, eps, n) <= delta < chernoff_failure_probability(n_points, eps, n - 1)
        # exact tails are sharper than the post's e^{-eps^2 n / 8}, so it never needs more than post-24
        assert n <= jl_min_dim(n_points, eps, bound="post-24")
    inner = jl_min_dim(1000, 0.3, bound="chernoff", target="inner-product", failure_probability=0.01)
    assert chernoff_failure_probability(1000, 0.3, inner, events=1000 * 999) <= 0.01


def test_chernoff_tail_bounds_the_exact_chi_square_tail():
    # n‖u‖² ~ chi2(n) for u ~ N(0, I/n): the exact tails must sit under e^{n(log(1±eps) ∓ eps)/2}
    for n, eps in itertools.product([8, 64, 512], [0.1, 0.5, 0.9]):
        upper = stats.chi2.sf(n * (1 + eps), n)
        lower = stats.chi2.cdf(n * (1 - eps), n)
        assert upper <= math.exp(n * (math.log1p(eps) - eps) / 2)
        assert lower <= math.exp(n * (math.log1p(-eps) + eps) / 2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_points": 100, "eps": 1.5}, "`eps` must be in (0, 1), got 1.5"),
    ({"n_points": 100, "eps": 0.0}, "`eps` must be in (0, 1), got 0.0"),
    ({"n_points": 0, "eps": 0.1}, "`n_points` must be a positive integer, got 0"),
    ({"n_points": 100, "eps": 0.1, "bound": "jl"}, "`bound` must be one of"),
    ({"n_points": 100, "eps": 0.1, "bound": "chernoff", "failure_probability": 1.0}, "`failure_probability`"),
    ({"n_points": 100, "eps": 0.1, "failure_probability": 0.1}, "applies to bound='chernoff' only"),
])
def test_bound_validation(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jl_min_dim(**kwargs)


# --- projections --------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda seed: GaussianRandomProjection(64, random_state=seed, dtype=torch.float64),
    lambda seed: SparseRandomProjection(64, density=1 / 3, random_state=seed, dtype=torch.float64),
    lambda seed: SparseRandomProjection(64, random_state=seed, dtype=torch.float64),
    lambda seed: SRHT(64, random_state=seed, dtype=torch.float64),
])
def test_norm_is_preserved_in_expectation_over_seeds(make):
    x = _points(1, 300, seed=1)
    seeds = 400
    ratios = torch.stack([make(seed).fit_transform(x).pow(2).sum() / x.pow(2).sum() for seed in range(seeds)])
    # Var(‖Ax‖²/‖x‖²) <= 2/n (+ sparse kurtosis); 5 standard errors of the mean
    assert abs(float(ratios.mean()) - 1) < 5 * math.sqrt(3 / 64 / seeds)


def test_gaussian_entries_have_variance_one_over_n():
    matrix = GaussianRandomProjection(200, random_state=0, dtype=torch.float64).fit(_points(2, 500)).components_
    assert abs(float(matrix.mean())) < 1e-3 and abs(float(matrix.var()) * 200 - 1) < 0.02


def test_sparse_matrix_density_and_values():
    projection = SparseRandomProjection(100, density=0.1, random_state=3, dtype=torch.float64).fit(_points(2, 2000))
    dense = projection.components_.to_dense()
    nonzero = dense[dense != 0]
    assert abs(nonzero.numel() / dense.numel() - 0.1) < 0.005
    assert torch.allclose(nonzero.abs(), torch.full_like(nonzero, math.sqrt(1 / (0.1 * 100))))
    assert abs(float((nonzero > 0).double().mean()) - 0.5) < 0.02
    assert projection.density_ == 0.1
    assert SparseRandomProjection(10).fit(_points(2, 400)).density_ == 1 / 20


def test_same_seed_same_projection_and_sparse_transform_equals_dense():
    X = _points(7, 333)
    for cls in (GaussianRandomProjection, SparseRandomProjection, SRHT):
        first, second = cls(20, random_state=5).fit_transform(X), cls(20, random_state=5).fit_transform(X)
        assert torch.equal(first, second)
        assert not torch.equal(first, cls(20, random_state=6).fit_transform(X))
    sparse = SparseRandomProjection(20, random_state=5, dtype=torch.float64).fit(X)
    assert torch.allclose(sparse.transform(X), X @ sparse.components_.to_dense().T)


def test_functional_forms_match_the_estimators():
    X = _points(5, 100)
    assert torch.equal(gaussian_projection(X, 16, seed=1),
                       GaussianRandomProjection(16, random_state=1, dtype=X.dtype).fit_transform(X))
    assert torch.equal(sparse_projection(X, 16, seed=1),
                       SparseRandomProjection(16, random_state=1, dtype=X.dtype).fit_transform(X))
    assert torch.equal(srht(X, 16, seed=1), SRHT(16, random_state=1, dtype=X.dtype).fit_transform(X))


def test_estimator_round_trip_auto_batches_and_params():
    X = _points(50, 2000, dtype=torch.float32)
    projection = GaussianRandomProjection("auto", eps=0.5, random_state=0)
    Y = projection.fit_transform(X)
    assert projection.n_components_ == jl_min_dim(50, 0.5) == Y.shape[1]
    assert projection.n_features_in_ == 2000 and projection.components_.shape == (projection.n_components_, 2000)
    batched = projection.transform(X.reshape(5, 10, 2000))
    assert torch.allclose(batched.reshape(50, -1), Y)
    assert "eps=0.5" in repr(projection) and projection.get_params()["random_state"] == 0
    with pytest.raises(NotFittedError, match="not fitted"):
        SRHT(8).transform(X)
    with pytest.raises(ValueError, match="has 3 features, but GaussianRandomProjection expects 2000"):
        projection.transform(torch.ones(2, 3))


def test_bad_input_is_refused_with_clear_messages():
    X = _points(10, 50)
    with pytest.raises(ValueError, match="larger than the original space with n_features=50"):
        GaussianRandomProjection("auto", eps=0.1).fit(X)
    with pytest.warns(DataDimensionalityWarning, match="n_components=60 > n_features=50"):
        GaussianRandomProjection(60).fit(X)
    with pytest.raises(ValueError, match="larger than the padded dimension 64"), \
            pytest.warns(DataDimensionalityWarning):
        SRHT(65).fit(X)
    with pytest.raises(ValueError, match="non-empty"):
        GaussianRandomProjection(5).fit(torch.empty(0, 50))
    nan = X.clone()
    nan[3, 4] = float("nan")
    with pytest.raises(ValueError, match="`X` contains NaN"):
        SparseRandomProjection(5).fit(X).transform(nan)
    with pytest.raises(ValueError, match="`n_components` must be a positive integer or 'auto', got 0"):
        GaussianRandomProjection(0).fit(X)
    with pytest.raises(ValueError, match=r"`density` must be in \(0, 1\] or 'auto', got 1.5"):
        SparseRandomProjection(5, density=1.5).fit(X)
    with pytest.raises(ValueError, match=r"`eps` must be in \(0, 1\), got 1.5"):
        GaussianRandomProjection("auto", eps=1.5).fit(X)
    with pytest.raises(TypeError, match="must hold real numbers"):
        GaussianRandomProjection(5).fit(torch.ones(3, 4, dtype=torch.complex64))
    with pytest.raises(TypeError, match="`random_state` must be"):
        GaussianRandomProjection(5, random_state="0").fit(X)


# --- Hadamard -----------------------------------------------------------------------------------

@pytest.mark.parametrize("block_size", [2, 4, 64])
def test_fwht_equals_hadamard_matrix_product(block_size):
    for m in (1, 2, 8, 128, 2048):
        x = _points(3, m)
        assert torch.allclose(fwht(x, block_size=block_size), x @ hadamard_matrix(m, torch.float64))
    x = _points(4, 256)
    before = x.clone()
    assert torch.allclose(fwht(fwht(x, normalized=True, block_size=block_size), normalized=True), x)
    assert torch.equal(x, before)  # not modified in place


def test_hadamard_matrix_is_orthogonal_up_to_m():
    H = hadamard_matrix(32, torch.float64)
    assert torch.equal(H @ H.T, 32 * torch.eye(32, dtype=torch.float64))
    with pytest.raises(ValueError, match="power of two"):
        fwht(torch.ones(6))


@pytest.mark.parametrize(("m", "n"), [(256, 64), (300, 100), (1000, 1024)])
def test_srht_equals_its_dense_matrix(m, n):
    X = _points(9, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataDimensionalityWarning)
        projection = SRHT(n, random_state=2, dtype=torch.float64).fit(X)
    dense = projection.to_dense()
    assert dense.shape == (n, m)
    assert torch.allclose(projection.transform(X), X @ dense.T)
    assert projection.rows_.unique().numel() == n
    if n == projection.padded_features_:  # keeping every coordinate: an exact isometry
        assert torch.allclose(projection.transform(X).norm(dim=1), X.norm(dim=1))


# --- distortion ---------------------------------------------------------------------------------

def _brute_force(X, Y):
    ratios, inner = [], []
    for i in range(X.shape[0]):
        for j in range(i + 1, X.shape[0]):
            ratios.append(float(((Y[i] - Y[j]) ** 2).sum() / ((X[i] - X[j]) ** 2).sum()))
            scale = float((X[i] @ X[i] + X[j] @ X[j]) / 2)
            inner.append(abs(float(Y[i] @ Y[j] - X[i] @ X[j])) / scale)
    return np.array(ratios), np.array(inner)


def test_distortion_against_brute_force():
    X = _points(40, 30)
    Y = GaussianRandomProjection(10, random_state=0, dtype=torch.float64).fit_transform(X)
    ratios, inner = _brute_force(X, Y)
    result = distortion(X, Y, eps=0.3)
    deviation = np.abs(ratios - 1)
    assert result.exact and result.pairs == 40 * 39 // 2 and result.identical_pairs == 0
    assert result.max_distortion == pytest.approx(deviation.max(), rel=1e-10)
    assert result.min_ratio == pytest.approx(ratios.min()) and result.max_ratio == pytest.approx(ratios.max())
    assert result.quantiles["p90"] == pytest.approx(np.quantile(deviation, 0.9), rel=1e-10)
    assert result.fraction_within == pytest.approx(np.mean(deviation <= 0.3))
    assert result.inner_product_error_max == pytest.approx(inner.max(), rel=1e-10)
    sampled = distortion(X, Y, eps=0.3, max_pairs=500, seed=1)
    assert not sampled.exact and sampled.pairs == 500
    assert sampled.max_distortion <= result.max_distortion + 1e-12
    assert abs(sampled.fraction_within - result.fraction_within) < 0.1


def test_distortion_skips_identical_points_and_validates():
    X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    result = distortion(X, X.clone())
    assert result.identical_pairs == 1 and result.max_distortion == 0.0
    with pytest.raises(ValueError, match="same N"):
        distortion(X, X[:2])
    with pytest.raises(ValueError, match="`Y` contains NaN"):
        distortion(X, torch.full_like(X, float("nan")))


# --- applications -------------------------------------------------------------------------------

def test_sign_random_projection_estimates_angles():
    X = _points(20, 64)
    with pytest.warns(DataDimensionalityWarning):  # more bits than dimensions, as post 8706 allows
        codes = SignRandomProjection(8192, random_state=0).fit_transform(X.float())
    assert codes.dtype == torch.bool and codes.shape == (20, 8192)
    brute = (codes[:, None, :] != codes[None, :, :]).sum(-1).float()
    hamming = hamming_distance(codes, codes)
    assert torch.equal(hamming, brute)
    unit = torch.nn.functional.normalize(X, dim=1)
    cosine = unit @ unit.T
    estimate = cosine_from_hamming(hamming, 8192).double()
    assert float((estimate - cosine).abs().max()) < 0.06  # std of θ/π estimate ~ 0.5/sqrt(8192)


def test_randomized_svd_recovers_low_rank_and_matches_exact_svd():
    g = torch.Generator().manual_seed(0)
    low_rank = torch.randn(300, 10, generator=g, dtype=torch.float64) @ torch.randn(10, 200, generator=g, dtype=torch.float64)
    noisy = low_rank + 1e-3 * torch.randn(300, 200, generator=g, dtype=torch.float64)
    U, S, Vh = randomized_svd(noisy, rank=10, seed=0)
    exact = torch.linalg.svdvals(noisy)[:10]
    assert torch.allclose(S, exact, rtol=1e-8)
    assert torch.allclose(U.T @ U, torch.eye(10, dtype=torch.float64), atol=1e-10)
    optimal = torch.linalg.svdvals(noisy)[10:].pow(2).sum().sqrt()
    error = torch.linalg.matrix_norm(noisy - U @ torch.diag(S) @ Vh)
    assert float(error) <= 1.01 * float(optimal)
    batched = randomized_svd(torch.stack((noisy, 2 * noisy)), rank=10, seed=0)[1]
    assert torch.allclose(batched[1], 2 * exact, rtol=1e-8)
    with pytest.raises(ValueError, match=r"`rank` must be an integer in \[1, 200\], got 0"):
        randomized_svd(noisy, rank=0)
