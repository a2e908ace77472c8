"""kexue.linear_attention against closed-form series in float64 and brute-force O(n²) attention."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kexue.linear_attention import (ExpLimitFeatures, LinearAttention, PerformerFeatures, PolynomialFeatures,
                                    TaylorFeatures, feature_map_from_name, linear_attention, masked_kernel_attention)
from kexue.models import Transformer, TransformerConfig, masks

torch.set_num_threads(1)


def _randn(*shape: int, seed: int = 0, scale: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def _taylor_series(s: torch.Tensor, order: int) -> torch.Tensor:
    return sum(s ** m / math.factorial(m) for m in range(order + 1))


def _brute_force(q, k, v, kernel, mask=None) -> torch.Tensor:
    """o_i = Σ_j κ(q_i·k_j) v_j / Σ_j κ(q_i·k_j) over the visible j, one row at a time, float64."""
    rows = []
    for i in range(q.shape[-2]):
        weights = kernel(k @ q[..., i, :, None])[..., 0]  # [..., Lk]
        if mask is not None:
            weights = weights * mask[..., i, :]
        rows.append((weights[..., None] * v).sum(-2) / weights.sum(-1, keepdim=True))
    return torch.stack(rows, dim=-2)


# ----------------------------------------------------------------- feature maps: exact kernels
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("d", [3, 8])
def test_taylor_kernel_equals_truncated_series(order, d):
    taylor = TaylorFeatures(order)
    q, k = _randn(20, d, seed=1, scale=0.7), _randn(30, d, seed=2, scale=0.7)
    features = taylor(q) @ taylor(k).T
    assert features.shape == (20, 30)
    assert taylor(q).shape[-1] == math.comb(d + order, order) == taylor.feature_dim(d)
    torch.testing.assert_close(features, _taylor_series(q @ k.T, order), rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_explimit_kernel_equals_power(n):
    limit = ExpLimitFeatures(n)
    q, k = _randn(10, 5, seed=3), _randn(12, 5, seed=4)
    torch.testing.assert_close(limit(q) @ limit(k).T, (1 + q @ k.T / n) ** n, rtol=0, atol=1e-10)
    assert limit.feature_dim(5) == math.comb(5 + n, n)


def test_explimit_matches_the_posts_full_tensor_power():
    """⊗^n [1; x/√n] with all (d+1)^n entries (eq. 11) gives the same inner products."""
    n, q, k = 3, _randn(4, seed=5), _randn(4, seed=6)

    def full(x):
        y = torch.cat([torch.ones(1, dtype=x.dtype), x / math.sqrt(n)])
        out = y
        for _ in range(n - 1):
            out = torch.outer(out, y).flatten()
        return out

    assert full(q).numel() == 5 ** 3 > ExpLimitFeatures(n).feature_dim(4) == 35
    assert abs(float(full(q) @ full(k)) - float(ExpLimitFeatures(n)(q) @ ExpLimitFeatures(n)(k))) < 1e-10


def test_polynomial_features_of_one_monomial_order():
    cube = PolynomialFeatures([0.0, 0.0, 0.0, 1.0])
    q, k = _randn(6, 4, seed=7), _randn(6, 4, seed=8)
    torch.testing.assert_close(cube(q) @ cube(k).T, (q @ k.T) ** 3, rtol=0, atol=1e-10)
    assert cube.feature_dim(4) == math.comb(6, 3)


def test_positivity_rules():
    assert [TaylorFeatures(p).positive for p in (1, 2, 3, 4)] == [False, True, False, True]
    assert [ExpLimitFeatures(n).positive for n in (1, 2, 3, 4, 8)] == [False, True, False, True, True]
    s = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    for p in (2, 4):
        assert float(TaylorFeatures(p).kernel(s).min()) > 0
    assert float(TaylorFeatures(2).kernel(s).min()) == pytest.approx(0.5)
    assert float(ExpLimitFeatures(4).kernel(s).min()) >= 0
    assert float(TaylorFeatures(3).kernel(s).min()) < 0 and float(ExpLimitFeatures(3).kernel(s).min()) < 0


def test_performer_features_and_stabiliser():
    performer = PerformerFeatures(head_size=8, num_features=40, seed=0)
    w = performer.projection.double()
    x = _randn(5, 8, seed=9)
    expected = torch.exp(x @ w.T - 0.5 * (x * x).sum(-1, keepdim=True)) / math.sqrt(40)
    torch.testing.assert_close(performer(x), expected)
    scaled, shift = performer.log_features(x)
    torch.testing.assert_close(scaled * shift.exp(), expected)
    assert float(scaled.max()) == pytest.approx(1 / math.sqrt(40))
    block = performer.projection[:8] / performer.projection[:8].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)  # orthogonal rows


def test_performer_estimates_exp_and_redraws():
    performer = PerformerFeatures(head_size=4, num_features=20000, seed=1)
    q, k = _randn(6, 4, seed=10, scale=0.4), _randn(6, 4, seed=11, scale=0.4)
    ratio = (performer(q.float()) @ performer(k.float()).T) / torch.exp(q @ k.T).float()
    assert abs(float(ratio.mean()) - 1) < 0.02 and float((ratio - 1).abs().max()) < 0.1
    before = performer.projection.clone()
    performer.redraw()
    assert not torch.equal(before, performer.projection)


def test_feature_map_validation():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="`order`"):
            TaylorFeatures(bad)
    with pytest.raises(ValueError, match="`n`"):
        ExpLimitFeatures(0)
    with pytest.raises(ValueError, match="`coefficients`"):
        PolynomialFeatures([1.0, -0.5, 1.0])
    with pytest.raises(ValueError, match="`num_features`"):
        PerformerFeatures(8, num_features=0)
    with pytest.raises(ValueError, match="unknown feature map 'taylor'"):
        feature_map_from_name("taylor", 8)
    assert feature_map_from_name("performer", 16).feature_dim(16) == round(16 * math.log(16))


# ----------------------------------------------------------------- attention against brute force
MAPS = {"taylor2": lambda: TaylorFeatures(2), "taylor4": lambda: TaylorFeatures(4),
        "explimit2": lambda: ExpLimitFeatures(2), "explimit4": lambda: ExpLimitFeatures(4)}


@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_equals_brute_force(name, causal):
    feature_map = MAPS[name]()
    q, k, v = _randn(2, 23, 4, seed=12, scale=0.6), _randn(2, 23, 4, seed=13, scale=0.6), _randn(2, 23, 3, seed=14)
    mask = torch.ones(23, 23, dtype=torch.float64).tril() if causal else None
    expected = _brute_force(q, k, v, feature_map.kernel, mask)
    out = linear_attention(q, k, v, feature_map, causal=causal, chunk_size=5)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_key_padding_mask_equals_brute_force():
    q, k, v = _randn(2, 9, 4, seed=15), _randn(2, 9, 4, seed=16), _randn(2, 9, 2, seed=17)
    keep = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    taylor = TaylorFeatures(2)
    for causal in (False, True):
        allowed = torch.ones(9, 9, dtype=torch.float64)
        visible = keep[:, None, :].double() * (allowed.tril() if causal else allowed)
        out = linear_attention(q, k, v, taylor, causal=causal, chunk_size=4, key_mask=keep)
        torch.testing.assert_close(out, _brute_force(q, k, v, taylor.kernel, visible), rtol=0, atol=1e-10)


def test_performer_attention_equals_brute_force_with_its_features():
    performer = PerformerFeatures(head_size=4, num_features=32, seed=3).double()
    q, k, v = _randn(17, 4, seed=18, scale=3.0), _randn(17, 4, seed=19, scale=3.0), _randn(17, 5, seed=20)

    for causal in (False, True):
        mask = torch.ones(17, 17, dtype=torch.float64)
        weights = (performer(q) @ performer(k).T) * (mask.tril() if causal else mask)
        expected = weights @ v / weights.sum(-1, keepdim=True)
        out = linear_attention(q, k, v, performer, causal=causal, chunk_size=4)
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 200])
def test_chunked_causal_equals_unchunked(chunk_size):
    q, k, v = _randn(3, 2, 130, 8, seed=21, scale=0.5), _randn(3, 2, 130, 8, seed=22, scale=0.5), _randn(3, 2, 130, 8)
    for feature_map in (TaylorFeatures(2), PerformerFeatures(8, 16, seed=0).double()):
        whole = linear_attention(q, k, v, feature_map, causal=True, chunk_size=130)
        chunked = linear_attention(q, k, v, feature_map, causal=True, chunk_size=chunk_size)
        torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-12)


def test_causal_output_never_depends_on_future_positions():
    q, k, v = _randn(40, 8, seed=23, scale=2.0), _randn(40, 8, seed=24, scale=2.0), _randn(40, 4, seed=25)
    performer = PerformerFeatures(8, 64, seed=2).double()
    out = linear_attention(q, k, v, performer, causal=True, chunk_size=8)
    k2, v2 = k.clone(), v.clone()
    k2[30:] *= 5.0  # a future key with a far larger stabiliser offset
    v2[30:] = 100.0
    changed = linear_attention(q, k2, v2, performer, causal=True, chunk_size=8)
    assert torch.equal(out[:30], changed[:30])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_stay_finite_and_close(dtype):
    q, k, v = (_randn(2, 4, 512, 16, seed=s, dtype=torch.float32) for s in (26, 27, 28))
    q, k = q * 16 ** -0.25, k * 16 ** -0.25
    for feature_map in (TaylorFeatures(2), PerformerFeatures(16, 64, seed=0)):
        for causal in (False, True):
            reference = linear_attention(q, k, v, feature_map, causal=causal)
            out = linear_attention(q.to(dtype), k.to(dtype), v.to(dtype), feature_map, causal=causal)
            assert out.dtype == dtype and torch.isfinite(out).all()
            assert float((out.float() - reference).abs().max()) < 0.05


def test_large_inputs_stay_finite_in_float32():
    q, k, v = (_randn(256, 16, seed=s, scale=6.0, dtype=torch.float32) for s in (29, 30, 31))
    for causal in (False, True):
        out = linear_attention(q, k, v, PerformerFeatures(16, 64, seed=0), causal=causal)
        assert torch.isfinite(out).all()


def test_signed_kernels_need_opt_in():
    q, k, v = _randn(12, 4, seed=32, scale=0.3), _randn(12, 4, seed=33, scale=0.3), _randn(12, 2, seed=34)
    with pytest.raises(ValueError, match="can be negative"):
        linear_attention(q, k, v, TaylorFeatures(3))
    out = linear_attention(q, k, v, TaylorFeatures(3), causal=True, chunk_size=5, allow_signed=True)
    mask = torch.ones(12, 12, dtype=torch.float64).tril()
    torch.testing.assert_close(out, _brute_force(q, k, v, TaylorFeatures(3).kernel, mask), rtol=0, atol=1e-10)


def test_empty_rows_give_zero_and_bad_arguments_raise():
    q, k, v = _randn(6, 4, seed=35), _randn(6, 4, seed=36), _randn(6, 2, seed=37)
    none = torch.zeros(6, dtype=torch.bool)
    assert torch.equal(linear_attention(q, k, v, TaylorFeatures(2), key_mask=none), torch.zeros(6, 2, dtype=q.dtype))
    with pytest.raises(ValueError, match="`chunk_size`"):
        linear_attention(q, k, v, TaylorFeatures(2), causal=True, chunk_size=0)
    with pytest.raises(ValueError, match="Lq == Lk"):
        linear_attention(q[:3], k, v, TaylorFeatures(2), causal=True)
    with pytest.raises(TypeError, match="`feature_map`"):
        linear_attention(q, k, v, torch.nn.Identity())


def test_masked_kernel_attention_under_a_unilm_mask():
    q, k, v = _randn(8, 4, seed=38), _randn(8, 4, seed=39), _randn(8, 3, seed=40)
    mask = masks.unilm_mask(torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]]))[0, 0]
    out = masked_kernel_attention(q, k, v, TaylorFeatures(2), mask)
    torch.testing.assert_close(out, _brute_force(q, k, v, TaylorFeatures(2).kernel, mask.double()), rtol=0, atol=1e-10)


# ----------------------------------------------------------------- the backbone with a linear kernel
def _config(kernel: str) -> TransformerConfig:
    return TransformerConfig(vocab_size=60, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                             attention_kernel=kernel, dropout=0.0, attention_dropout=0.0)


@pytest.mark.parametrize("kernel", ["linear:taylor2", "linear:explimit2", "linear:performer"])
def test_backbone_with_linear_kernel_trains_one_step(kernel):
    torch.manual_seed(0)
    model = Transformer(_config(kernel))
    ids = torch.randint(1, 60, (3, 10))
    positions = torch.zeros(3, 10, dtype=torch.bool)
    positions[:, 2] = positions[:, 7] = True
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    weight = model.layers[0].attention.query.weight
    before = weight.detach().clone()
    out = model(ids, attention_mask=ids != 0, mlm_positions=positions)
    loss = torch.nn.functional.cross_entropy(out.mlm_logits, ids[positions])
    loss.backward()
    assert torch.isfinite(loss) and float(weight.grad.abs().sum()) > 0
    optimizer.step()
    assert not torch.equal(before, weight)


def test_backbone_kernel_matches_manual_linear_attention_and_masks():
    torch.manual_seed(1)
    kernel = Transformer(_config("linear:taylor2")).layers[0].attention.kernel
    q, k, v = (torch.randn(2, 4, 9, 8) for _ in range(3))
    scale = 8 ** -0.5
    expected = linear_attention(q * scale ** 0.5, k * scale ** 0.5, v, TaylorFeatures(2), causal=True)
    causal = masks.causal_mask(9)
    torch.testing.assert_close(kernel(q, k, v, causal, scale), expected)
    pad = masks.padding_mask(torch.tensor([[1] * 9, [1] * 5 + [0] * 4]))
    padded = kernel(q, k, v, pad, scale)
    trimmed = kernel(q[1:], k[1:, :, :5], v[1:, :, :5], None, scale)
    torch.testing.assert_close(padded[1:], trimmed)
    unilm = masks.unilm_mask(torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1]] * 2))
    general = masked_kernel_attention(q * scale ** 0.5, k * scale ** 0.5, v, TaylorFeatures(2), unilm)
    torch.testing.assert_close(kernel(q, k, v, unilm, scale), general)


def test_backbone_padding_does_not_leak():
    torch.manual_seed(2)
    model = Transformer(_config("linear:taylor2")).eval()
    ids = torch.randint(1, 60, (1, 12))
    attention = torch.ones(1, 12, dtype=torch.bool)
    attention[0, 8:] = False
    changed = ids.clone()
    changed[0, 8:] = 5
    first = model(ids, attention_mask=attention).hidden_states[0, :8]
    second = model(changed, attention_mask=attention).hidden_states[0, :8]
    torch.testing.assert_close(first, second, rtol=0, atol=1e-6)


def test_kernel_names_are_validated():
    for name, message in (("linear:taylor", "unknown feature map"), ("linear:taylor3", "can be negative"),
                          ("linear", "needs a feature map"), ("linear:cosformer", "unknown feature map")):
        with pytest.raises(ValueError, match=message):
            Transformer(_config(name))
    model = Transformer(_config("linear:performer24"))
    assert model.layers[0].attention.kernel.feature_map.num_features == 24
    with pytest.raises(ValueError, match="`redraw_interval`"):
        LinearAttention(TaylorFeatures(2), redraw_interval=10)


def test_redraw_interval_redraws_only_in_training():
    kernel = LinearAttention(PerformerFeatures(4, 8, seed=0), redraw_interval=2)
    q = torch.randn(1, 1, 5, 4)
    first = kernel.feature_map.projection.clone()
    kernel.eval()
    for _ in range(3):
        kernel(q, q, q, None, 0.5)
    assert torch.equal(first, kernel.feature_map.projection)
    kernel.train()
    for _ in range(3):  # calls 0, 1, 2: a redraw before call 2
        kernel(q, q, q, None, 0.5)
    assert not torch.equal(first, kernel.feature_map.projection)


def test_symmetric_features_are_the_unique_monomials():
    taylor = TaylorFeatures(3)
    x = _randn(4, seed=41)
    features = taylor(x)
    expected = [1.0] + [float(x[list(c)].prod()) / math.sqrt(math.prod(math.factorial(c.count(i)) for i in set(c)))
                        for m in (1, 2, 3) for c in itertools.combinations_with_replacement(range(4), m)]
    torch.testing.assert_close(features, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_equal_brute_force_gradients(causal):
    taylor = TaylorFeatures(2)
    inputs = [_randn(2, 11, 4, seed=s, scale=0.6).requires_grad_(True) for s in (42, 43, 44)]
    mask = torch.ones(11, 11, dtype=torch.float64).tril() if causal else None
    ours = torch.autograd.grad(linear_attention(*inputs, taylor, causal=causal, chunk_size=4).square().sum(), inputs)
    reference = torch.autograd.grad(_brute_force(*inputs, taylor.kernel, mask).square().sum(), inputs)
    for got, expected in zip(ours, reference):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    with torch.no_grad():  # the preallocated-output path gives the same values
        torch.testing.assert_close(linear_attention(*inputs, taylor, causal=causal, chunk_size=4),
                                   _brute_force(*inputs, taylor.kernel, mask), rtol=0, atol=1e-10)


def test_config_names_load_their_package_in_a_fresh_process():
    """A saved config naming "linear:..." or "entropy_invariant" must build without importing the package first."""
    import subprocess
    import sys

    code = ("from kexue.models import Transformer, TransformerConfig; "
            "Transformer(TransformerConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, "
            "intermediate_size=32, attention_kernel='linear:taylor2', attention_scale='entropy_invariant'))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
