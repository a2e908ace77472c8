"""Masks: builders against brute-force loops, information flow in the model, dtypes, scale policies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.models import Transformer, TransformerConfig, masks, register_attention_scale
from kexue.models.attention import SoftmaxAttention

torch.set_num_threads(1)

SEGMENTS = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def _model(position: str = "rope", num_layers: int = 2, **overrides) -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=50, hidden_size=32, num_layers=num_layers, num_heads=4,
                               intermediate_size=64, max_positions=16, position=position, **overrides)
    return Transformer(config).eval()


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 50, SEGMENTS.shape, generator=torch.Generator().manual_seed(seed))


def _brute_force(rule) -> torch.Tensor:
    batch, length = SEGMENTS.shape
    return torch.tensor([[[rule(SEGMENTS[b], i, j) for j in range(length)] for i in range(length)]
                         for b in range(batch)])[:, None]


def test_builders_match_brute_force():
    def unilm(s, i, j):  # target sees source and its own prefix; source sees only source
        return bool(s[j] == 0 or (s[i] == 1 and j <= i))

    def uniae(s, i, j):
        if s[i] == 0:
            return bool(s[j] == 0)
        return j == 0 or bool(s[j] == 1 and j <= i)

    assert torch.equal(masks.unilm_mask(SEGMENTS), _brute_force(unilm))
    assert torch.equal(masks.uniae_mask(SEGMENTS), _brute_force(uniae))
    assert torch.equal(masks.independent_mask(SEGMENTS), _brute_force(lambda s, i, j: bool(s[i] == s[j])))
    assert torch.equal(masks.causal_mask(7)[0], _brute_force(lambda s, i, j: j <= i)[0])
    padding = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    assert masks.padding_mask(padding).shape == (1, 1, 1, 7)
    assert torch.equal(masks.causal_mask(3, past_length=4), masks.causal_mask(7)[..., 4:, :])


def _change_token(ids: torch.Tensor, position: int) -> torch.Tensor:
    changed = ids.clone()
    changed[:, position] = changed[:, position] % 49 + 1
    return changed


@pytest.mark.parametrize("position", ["rope", "absolute"])
@pytest.mark.parametrize("kind", ["causal", "unilm"])
def test_later_tokens_do_not_change_earlier_positions(position, kind):
    model = _model(position)
    mask = masks.causal_mask(7) if kind == "causal" else masks.unilm_mask(SEGMENTS)
    ids = _ids()
    with torch.no_grad():
        base = model(ids, SEGMENTS, attention_mask=mask).hidden_states
        for changed_at in (4, 6):
            changed = model(_change_token(ids, changed_at), SEGMENTS, attention_mask=mask).hidden_states
            assert torch.equal(changed[:, :changed_at], base[:, :changed_at])
            assert not torch.allclose(changed[:, changed_at], base[:, changed_at])


def test_unilm_source_ignores_target():
    model = _model()
    ids = _ids()
    with torch.no_grad():
        base = model(ids, SEGMENTS, attention_mask=masks.unilm_mask(SEGMENTS)).hidden_states
        changed = model(_change_token(ids, 3), SEGMENTS, attention_mask=masks.unilm_mask(SEGMENTS)).hidden_states
    # row 1 has source length 2, row 0 has 3: position 3 is row 0's first target token
    assert torch.equal(changed[0, :3], base[0, :3]) and not torch.allclose(changed[0, 3:], base[0, 3:])


def test_uniae_decoder_sees_encoder_only_through_cls():
    mask = masks.uniae_mask(SEGMENTS)
    ids = _ids()
    changed_ids = _change_token(ids, 1)  # a non-CLS encoder token in both rows
    decoder = SEGMENTS.bool()
    with torch.no_grad():
        one_layer = _model(num_layers=1)
        base = one_layer(ids, SEGMENTS, attention_mask=mask).hidden_states
        changed = one_layer(changed_ids, SEGMENTS, attention_mask=mask).hidden_states
        assert torch.equal(changed[decoder], base[decoder])
        assert not torch.allclose(changed[~decoder], base[~decoder])

        model = _model(num_layers=3)
        cls_per_layer = {}

        def record_cls(index: int, hidden: torch.Tensor) -> None:
            cls_per_layer[index] = hidden[:, 0].clone()

        base = model(ids, SEGMENTS, attention_mask=mask, layer_hook=record_cls)
        free = model(changed_ids, SEGMENTS, attention_mask=mask).hidden_states
        assert not torch.allclose(free[decoder], base.hidden_states[decoder])  # via the changed [CLS]

        def pin_cls(index: int, hidden: torch.Tensor) -> torch.Tensor:
            pinned = hidden.clone()
            pinned[:, 0] = cls_per_layer[index]
            return pinned

        pinned = model(changed_ids, SEGMENTS, attention_mask=mask, layer_hook=pin_cls).hidden_states
        assert torch.equal(pinned[decoder], base.hidden_states[decoder])


def test_independent_halves_never_interact():
    model = _model()
    mask = masks.independent_mask(SEGMENTS)
    ids = _ids()
    first = ~SEGMENTS.bool()
    with torch.no_grad():
        base = model(ids, SEGMENTS, attention_mask=mask).hidden_states
        change_first = model(_change_token(ids, 1), SEGMENTS, attention_mask=mask).hidden_states
        change_second = model(_change_token(ids, 6), SEGMENTS, attention_mask=mask).hidden_states
    assert torch.equal(change_first[~first], base[~first]) and not torch.allclose(change_first[first], base[first])
    assert torch.equal(change_second[first], base[first]) and not torch.allclose(change_second[~first], base[~first])


def test_bool_float_and_2d_masks_agree_and_full_masking_gives_no_nan():
    model = _model("absolute")
    ids = _ids()
    padding = torch.ones_like(ids)
    padding[1, 4:] = 0
    bool_mask = masks.padding_mask(padding)
    with torch.no_grad():
        outputs = [model(ids, attention_mask=m).hidden_states for m in
                   (padding, padding.bool(), bool_mask, masks.additive_mask(bool_mask, torch.float32),
                    bool_mask.expand(2, 4, 7, 7))]
        for other in outputs[1:]:
            assert torch.equal(other, outputs[0])
        blocked = masks.causal_mask(7).expand(2, 1, 7, 7).clone()
        blocked[0, 0, 2] = False  # query 2 of row 0 may see nothing
        padding[0] = 0  # and row 0 of a 2-D mask is all padding
        for mask in (blocked, padding):
            out = model(ids, attention_mask=mask, mlm_positions="all")
            assert torch.isfinite(out.hidden_states).all() and torch.isfinite(out.mlm_logits).all()


def test_bad_masks_raise():
    model = _model()
    ids = _ids()
    with pytest.raises(ValueError, match="ambiguous"):
        model(ids, attention_mask=masks.causal_mask(7).long())
    with pytest.raises(ValueError, match="additive"):
        model(ids, attention_mask=masks.causal_mask(7).float())  # 0/1 floats are not additive
    with pytest.raises(ValueError, match="keys"):
        model(ids, attention_mask=masks.causal_mask(6))


def test_standard_scale_is_sdpa_default():
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 7, 8, generator=generator) for _ in range(3))
    mask = masks.causal_mask(7)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    kernel = SoftmaxAttention().eval()
    assert torch.equal(kernel(q, k, v, mask, 1 / math.sqrt(8)), expected)
    per_row = torch.full((2, 1, 7, 1), 1 / math.sqrt(8))
    torch.testing.assert_close(kernel(q, k, v, mask, per_row), expected, atol=1e-6, rtol=0)


def test_custom_scale_policy_gets_per_row_visible_keys():
    calls = []

    @register_attention_scale("test_log_n")
    def log_n(visible_keys: torch.Tensor, head_size: int) -> torch.Tensor:
        calls.append(visible_keys.clone())
        return torch.log(visible_keys + 1) / math.sqrt(head_size)

    model = _model("absolute", attention_scale="test_log_n", num_layers=1)
    ids = _ids()
    padding = torch.ones_like(ids)
    padding[1, 4:] = 0
    mask = masks.causal_mask(7) & masks.padding_mask(padding)
    captured = {}
    attention = model.layers[0].attention
    handle = attention.kernel.register_forward_hook(lambda m, args, out: captured.update(args=args, out=out))
    with torch.no_grad():
        model(ids, attention_mask=mask)
    handle.remove()
    expected_counts = torch.tensor([[min(i + 1, 7) for i in range(7)], [min(i + 1, 4) for i in range(7)]])
    assert len(calls) == 1 and calls[0].shape == (2, 1, 7, 1)
    assert torch.equal(calls[0][:, 0, :, 0], expected_counts.float())
    q, k, v, _, _ = captured["args"]  # brute force softmax(log(n+1)/sqrt(d) q k^T) v in float64
    scale = torch.log(expected_counts[:, None, :, None] + 1.0) / math.sqrt(8)
    scores = q.double() @ k.double().transpose(-1, -2) * scale
    probs = scores.masked_fill(~mask, -math.inf).softmax(-1)
    torch.testing.assert_close(captured["out"].double(), probs @ v.double(), atol=1e-6, rtol=0)


def test_unknown_scale_or_kernel_names_raise():
    with pytest.raises(ValueError, match="attention_scale"):
        _model(attention_scale="nope")
    with pytest.raises(ValueError, match="attention_kernel"):
        _model(attention_kernel="nope")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_follows_float32(dtype):
    model = _model()
    ids = _ids()
    mask = masks.unilm_mask(SEGMENTS)
    with torch.no_grad():
        expected = model(ids, SEGMENTS, attention_mask=mask, mlm_positions="all")
        got = model.to(dtype)(ids, SEGMENTS, attention_mask=mask, mlm_positions="all")
    assert got.hidden_states.dtype == dtype and got.mlm_logits.dtype == dtype
    torch.testing.assert_close(got.hidden_states.float(), expected.hidden_states, atol=0.1, rtol=0)
