"""kexue.random_projection's input conventions: the kind and dtype that come in go out, sparse stays sparse.

scikit-learn's own test module (tests/test_random_projection_sklearn.py) covers its estimator
contract; these cases cover what it does not: torch tensors, SRHT, promotion between the fitted
and the transformed dtype, and that sparse input is never densified.
"""

from __future__ import annotations

import numbers

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kexue.random_projection import (
    SRHT,
    GaussianRandomProjection,
    NotFittedError,
    SignRandomProjection,
    SparseRandomProjection,
    gaussian_matrix,
    hadamard_matrix,
    jl_min_dim,
    sparse_matrix,
)
from kexue.random_projection.projections import project

ESTIMATORS = [GaussianRandomProjection, SparseRandomProjection, SRHT]


def _data(n_samples: int = 20, n_features: int = 300, density: float = 0.05, seed: int = 0) -> sp.csr_matrix:
    return sp.random(n_samples, n_features, density=density, format="csr", random_state=seed)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_each_kind_comes_back_as_itself_with_the_same_numbers(estimator):
    X_sparse = _data()
    X_numpy = X_sparse.toarray()
    X_torch = torch.from_numpy(X_numpy)
    projection = estimator(16, random_state=0).fit(X_numpy)
    Y_numpy = projection.transform(X_numpy)
    assert isinstance(Y_numpy, np.ndarray) and Y_numpy.dtype == np.float64 and Y_numpy.shape == (20, 16)
    Y_torch = projection.transform(X_torch)
    assert isinstance(Y_torch, torch.Tensor) and Y_torch.dtype == torch.float64
    np.testing.assert_allclose(Y_torch.numpy(), Y_numpy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(projection.transform(X_numpy.tolist()), Y_numpy, rtol=1e-12, atol=1e-12)
    for container in (sp.csr_matrix, sp.csr_array, sp.coo_matrix, sp.csc_array):
        Y_sparse = projection.transform(container(X_sparse))
        dense = Y_sparse.toarray() if sp.issparse(Y_sparse) else Y_sparse
        np.testing.assert_allclose(dense, Y_numpy, rtol=1e-12, atol=1e-12)
        if sp.issparse(Y_sparse):  # sparse only from the sparse projection, and of the input's flavour
            assert estimator is SparseRandomProjection and isinstance(Y_sparse, sp.sparray) == (
                container in (sp.csr_array, sp.csc_array))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_dtype_follows_the_input_and_promotes_like_numpy(estimator):
    X64 = torch.randn(10, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fitted32 = estimator(8, random_state=0).fit(X64.float())
    fitted64 = estimator(8, random_state=0).fit(X64)
    assert fitted32.transform(X64.float()).dtype == torch.float32
    # float32 components on float64 input: float64 out, equal to the float64 product of the same matrix
    exact = X64 @ fitted32._dense_components().double().T
    torch.testing.assert_close(fitted32.transform(X64), exact, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fitted64.transform(X64), X64 @ fitted64._dense_components().T, rtol=1e-12, atol=1e-12)
    integers = torch.arange(640).reshape(10, 64) % 7
    assert estimator(8, random_state=0).fit_transform(integers).dtype == torch.get_default_dtype()
    assert estimator(8, random_state=0).fit_transform(integers.numpy()).dtype == np.float64


def test_project_keeps_float64():
    X = torch.randn(4, 30, dtype=torch.float64)
    components = gaussian_matrix(5, 30, seed=0)  # float32
    assert project(X, components).dtype == torch.float64
    assert project(X, components.to_sparse_csr()).dtype == torch.float64


def test_sparse_input_is_never_densified(monkeypatch):
    X = _data(n_samples=600, n_features=1000, density=0.01)  # 600 rows: the SRHT needs three blocks
    densified = []
    original = torch.Tensor.to_dense
    monkeypatch.setattr(torch.Tensor, "to_dense", lambda self, *a, **k: densified.append(tuple(self.shape))
                        or original(self, *a, **k))
    monkeypatch.setattr(sp.csr_matrix, "toarray", lambda self, *a, **k: pytest.fail("SciPy input was densified"))
    for projection in (GaussianRandomProjection(8, random_state=0), SparseRandomProjection(8, random_state=0),
                       SparseRandomProjection(8, dense_output=True, random_state=0), SRHT(8, random_state=0)):
        Y = projection.fit_transform(X)
        assert Y.shape == (600, 8)
        assert isinstance(Y, sp.csr_matrix) == (type(projection) is SparseRandomProjection and
                                                 not projection.dense_output)
    assert all(shape[0] < 600 or shape[1] == 8 for shape in densified), densified  # blocks, or the output


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("n_features", [7, 64])
def test_inverse_transform_round_trips_for_torch(estimator, n_features):
    X = torch.randn(12, n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for precompute in (True, False):
        projection = estimator(5, compute_inverse_components=precompute, random_state=0).fit(X)
        Y = projection.transform(X)
        back = projection.inverse_transform(Y)
        assert isinstance(back, torch.Tensor) and back.shape == X.shape
        torch.testing.assert_close(projection.transform(back), Y, rtol=1e-9, atol=1e-12)
        assert hasattr(projection, "inverse_components_") == precompute
    with pytest.raises(ValueError, match="has 4 features, but .* expects 5"):
        projection.inverse_transform(torch.ones(2, 4))


def test_fitted_attributes_are_of_the_kind_fit_saw():
    X = _data().toarray()
    numpy_fit = SparseRandomProjection(6, compute_inverse_components=True, random_state=0).fit(X)
    torch_fit = SparseRandomProjection(6, compute_inverse_components=True, random_state=0).fit(torch.from_numpy(X))
    assert isinstance(numpy_fit.components_, sp.csr_matrix) and numpy_fit.components_.dtype == np.float64
    assert torch_fit.components_.layout == torch.sparse_csr
    np.testing.assert_array_equal(numpy_fit.components_.toarray(), torch_fit.components_.to_dense().numpy())
    assert numpy_fit.inverse_components_.shape == (300, 6) and isinstance(torch_fit.inverse_components_, torch.Tensor)
    srht = SRHT(6, random_state=0).fit(X)
    assert isinstance(srht.signs_, np.ndarray) and isinstance(srht.to_dense(), torch.Tensor)


def test_not_fitted_error_is_both_value_and_attribute_error():
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    for estimator in (*ESTIMATORS, SignRandomProjection):
        for method in ("transform", "inverse_transform", "get_feature_names_out"):
            with pytest.raises(NotFittedError, match=f"this {estimator.__name__} is not fitted yet"):
                getattr(estimator(4), method)(np.ones((2, 4)))


def test_sklearn_clone_and_feature_names():
    from sklearn.base import clone

    projection = SparseRandomProjection(4, density=0.5, dense_output=True, random_state=3)
    copy = clone(projection)
    assert copy.get_params() == projection.get_params() and copy is not projection
    assert projection.set_params(n_components=5).n_components == 5
    with pytest.raises(ValueError, match="unknown parameters"):
        projection.set_params(seed=1)
    projection.fit(np.ones((3, 10)))
    assert list(SRHT(3, random_state=0).fit(np.ones((3, 10))).get_feature_names_out()) == ["srht0", "srht1", "srht2"]
    with pytest.raises(ValueError, match="`input_features` has 2 names, expected 10"):
        projection.get_feature_names_out(["a", "b"])


@pytest.mark.parametrize("builder", [gaussian_matrix, sparse_matrix])
@pytest.mark.parametrize(("n_components", "n_features", "argument"), [
    (0, 0, "n_components"), (1, 0, "n_features"), (-1, 5, "n_components"), (2.0, 5, "n_components"),
    (True, 5, "n_components")])
def test_matrix_builders_validate_sizes(builder, n_components, n_features, argument):
    with pytest.raises(ValueError, match=f"`{argument}` must be a positive integer"):
        builder(n_components, n_features)


def test_matrix_builders_take_numpy_integers_and_hadamard_validates():
    assert gaussian_matrix(np.int64(3), np.int32(4), seed=np.int64(0)).shape == (3, 4)
    assert sparse_matrix(np.int64(3), 4, density=np.float32(0.5)).shape == (3, 4)
    with pytest.raises(ValueError, match="power of two"):
        hadamard_matrix(0)


def test_jl_min_dim_takes_numpy_scalars_and_broadcasts_like_sklearn():
    sklearn_random_projection = pytest.importorskip("sklearn.random_projection")
    theirs = sklearn_random_projection.johnson_lindenstrauss_min_dim
    assert isinstance(jl_min_dim(np.int64(1000), eps=np.float64(0.2)), numbers.Integral)
    assert jl_min_dim(np.int64(1000), eps=np.float64(0.2)) == theirs(1000, eps=0.2)
    assert jl_min_dim(1000, eps=np.float32(0.25)) == jl_min_dim(1000, eps=0.25)  # 0.25 is exact in float32
    n_points, eps = np.array([[1], [2], [10], [10**6]]), np.array([0.05, 0.3, 0.9])
    ours = jl_min_dim(n_points, eps)
    assert ours.shape == (4, 3) and ours.dtype == np.int64
    np.testing.assert_array_equal(ours, theirs(n_points, eps=eps))
    assert (jl_min_dim(1, eps=[0.1, 0.5], bound="chernoff") == 0).all()  # one point has no pairs
    with pytest.raises(ValueError, match="shape mismatch"):
        jl_min_dim([100, 200, 300], eps=[0.5, 0.1])
    with pytest.raises(ValueError, match=r"`eps` must be in \(0, 1\), got 1.5"):
        jl_min_dim([100, 200], eps=[0.5, 1.5])
    with pytest.raises(ValueError, match="`n_points` must be positive integers, got -4"):
        jl_min_dim([100, -4], eps=0.5)
    with pytest.raises(ValueError, match="`n_points` must hold integers"):
        jl_min_dim([100.0, 4.5], eps=0.5)


@pytest.mark.parametrize(("shape", "n_components"), [((1, 7), 3), ((2, 3, 1000), 17), ((300, 513), 1)])
def test_float32_cpu_product_matches_float64(shape, n_components):
    X = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    projection = GaussianRandomProjection(n_components, random_state=0).fit(X.reshape(-1, shape[-1]))
    exact = (X.double() @ projection.components_.double().T).float()
    fast = projection.transform(X)  # oneDNN's prepacked kernel where torch has it
    assert fast.shape == (*shape[:-1], n_components) and fast.dtype == torch.float32
    torch.testing.assert_close(fast, exact, rtol=1e-5, atol=1e-5 * shape[-1] ** 0.5)


def test_gradients_flow_through_the_projection():
    X = torch.randn(4, 30, requires_grad=True)
    projection = GaussianRandomProjection(6, random_state=0).fit(X.detach())
    projection.transform(X).sum().backward()
    torch.testing.assert_close(X.grad, projection.components_.sum(0).expand(4, 30))
