"""kexue.attention_scale against float64 formulas, brute-force softmax and transformers' own attention."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

import kexue.attention_scale as scale_lib
from kexue.attention_scale import (attention_entropy, expected_entropy_gap, hf_visible_keys, register_hf_attention,
                                   row_entropy, sphere_entropy)
from kexue.models import Transformer, TransformerConfig, masks
from kexue.models.attention import get_attention_scale

torch.set_num_threads(1)


def _kexue_model(scale: str, head_size: int = 16, layers: int = 2, seed: int = 0) -> Transformer:
    config = TransformerConfig(vocab_size=60, hidden_size=2 * head_size, num_layers=layers, num_heads=2,
                               intermediate_size=64, dropout=0.0, attention_dropout=0.0, initializer_range=0.3,
                               attention_scale=scale, nsp_head=False, pooler=False, mlm_head=False)
    torch.manual_seed(seed)
    return Transformer(config).eval()


def _with_scale(model: Transformer, scale: str) -> Transformer:
    other = Transformer(model.config.replace(attention_scale=scale)).eval()
    other.load_state_dict(model.state_dict())
    return other


# ----------------------------------------------------------------- the policies' formulas
@pytest.mark.parametrize("name, formula", [
    ("entropy_invariant", lambda n: math.log(n) / math.log(512)),
    ("entropy_invariant:64", lambda n: math.log(n) / math.log(64)),
    ("log_n", math.log),
    ("inference_only:64", lambda n: max(1.0, math.log(n) / math.log(64))),
    ("yarn:64", lambda n: (1 + 0.1 * math.log(max(1.0, n / 64))) ** 2),
])
def test_factor_matches_float64_formula(name, formula):
    n = torch.tensor([1.0, 2.0, 7.0, 64.0, 100.0, 512.0, 4096.0, 100000.0])
    policy = get_attention_scale(name)
    expected = torch.tensor([formula(value) for value in n.tolist()], dtype=torch.float64)
    torch.testing.assert_close(policy.factor(n).double(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(policy(n, 64).double(), expected / 8, rtol=1e-6, atol=1e-7)


def test_factor_is_exactly_one_at_the_base_and_below_the_training_length():
    for name, n in (("entropy_invariant", 512.0), ("entropy_invariant:1000", 1000.0), ("entropy_invariant:24", 24.0)):
        assert get_attention_scale(name).factor(torch.tensor([n])).item() == 1.0
    for name in ("inference_only:100", "yarn:100"):
        assert (get_attention_scale(name).factor(torch.arange(1.0, 101.0)) == 1.0).all()
    assert scale_lib.scale_factor("standard", torch.tensor([5.0]), 64).item() == 1.0


def test_bad_policy_names_and_parameters_name_the_value():
    with pytest.raises(ValueError, match="takes no argument"):
        get_attention_scale("log_n:3")
    with pytest.raises(ValueError, match="takes no argument"):
        get_attention_scale("standard:3")
    with pytest.raises(ValueError, match="must be a number, got 'abc'"):
        get_attention_scale("entropy_invariant:abc")
    with pytest.raises(ValueError, match="`base` .* must be a number > 1, got 1.0"):
        get_attention_scale("entropy_invariant:1")
    with pytest.raises(ValueError, match="`train_len` .* got -5.0"):
        get_attention_scale("yarn:-5")
    with pytest.raises(ValueError, match="unknown `attention_scale` 'entropy'"):
        get_attention_scale("entropy")


# ----------------------------------------------------------------- the kexue backbone
def test_at_n_equal_base_the_backbone_equals_standard_attention_exactly():
    standard = _kexue_model("standard")
    ids = torch.randint(1, 60, (2, 512), generator=torch.Generator().manual_seed(1))
    reference = standard(ids).hidden_states
    assert torch.equal(_with_scale(standard, "entropy_invariant")(ids).hidden_states, reference)
    short = ids[:, :16]  # "entropy_invariant:16" at n = 16, and the training-length policies below L
    for name in ("entropy_invariant:16", "inference_only:16", "yarn:40"):
        assert torch.equal(_with_scale(standard, name)(short).hidden_states, standard(short).hidden_states)
    assert not torch.allclose(_with_scale(standard, "entropy_invariant")(short).hidden_states,
                              standard(short).hidden_states, atol=1e-3)


def test_bf16_at_the_base_equals_standard_exactly():
    standard = _kexue_model("standard").to(torch.bfloat16)
    ours = _with_scale(standard, "entropy_invariant:16").to(torch.bfloat16)
    ids = torch.randint(1, 60, (2, 16), generator=torch.Generator().manual_seed(2))
    out = ours(ids).hidden_states
    assert out.dtype == torch.bfloat16 and torch.equal(out, standard(ids).hidden_states)


def _brute_force_attention(q, k, v, mask, base: float) -> torch.Tensor:
    """Row by row in float64: n = visible keys of the row, λ = log_base(n)/√d, softmax over those keys."""
    q, k, v = q.double(), k.double(), v.double()
    out = torch.zeros_like(q)
    batch, heads, queries, head_size = q.shape
    for b in range(batch):
        for h in range(heads):
            for i in range(queries):
                visible = mask[b, 0, i].nonzero().flatten()
                lam = math.log(len(visible)) / math.log(base) / math.sqrt(head_size)
                weights = torch.softmax(lam * (k[b, h, visible] @ q[b, h, i]), dim=0)
                out[b, h, i] = weights @ v[b, h, visible]
    return out


@pytest.mark.parametrize("kind", ["padding", "causal", "padding+causal"])
def test_per_row_n_under_padding_and_causal_masks_matches_brute_force(kind):
    model = _kexue_model("entropy_invariant:8", layers=1)
    ids = torch.randint(1, 60, (2, 12), generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([12, 7])
    real = torch.arange(12)[None] < lengths[:, None]
    mask = {"padding": masks.padding_mask(real), "causal": masks.causal_mask(ids.shape[1]).expand(2, -1, -1, -1),
            "padding+causal": masks.padding_mask(real) & masks.causal_mask(ids.shape[1])}[kind]
    captured = {}
    kernel = model.layers[0].attention.kernel
    handle = kernel.register_forward_hook(lambda module, args, out: captured.update(args=args, out=out))
    model(ids, attention_mask=mask)
    handle.remove()
    q, k, v, kernel_mask, scale = captured["args"]
    mask = kernel_mask.expand(2, 1, 12, 12)
    expected_n = mask.sum(-1, keepdim=True).double()
    torch.testing.assert_close(scale.double(), torch.log(expected_n) / math.log(8) / 4, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(captured["out"].double(), _brute_force_attention(q, k, v, mask, 8.0),
                               rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_n_so_a_padded_row_equals_the_row_alone():
    model = _kexue_model("entropy_invariant:8")
    ids = torch.randint(1, 60, (2, 20), generator=torch.Generator().manual_seed(4))
    real = torch.ones(2, 20, dtype=torch.bool)
    real[1, 9:] = False
    padded = model(ids.masked_fill(~real, 0), attention_mask=real).hidden_states
    alone = model(ids[1:, :9]).hidden_states
    torch.testing.assert_close(padded[1, :9], alone[0], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- Hugging Face models
_BERT = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=520, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
             initializer_range=0.3)


def _bert(implementation: str, source: BertModel | None = None) -> BertModel:
    torch.manual_seed(0)
    model = BertModel(BertConfig(**_BERT, attn_implementation=implementation)).eval()
    if source is not None:
        model.load_state_dict(source.state_dict())
    return model


@pytest.fixture(scope="module")
def bert_pair() -> tuple[BertModel, BertModel]:
    sdpa = _bert("sdpa")
    return sdpa, _bert(register_hf_attention("entropy_invariant"), sdpa)


@torch.no_grad()
def test_hf_equals_sdpa_at_n_512_and_changes_outputs_elsewhere(bert_pair):
    sdpa, ours = bert_pair
    assert ours.config._attn_implementation == "kexue_entropy_invariant"
    ids = torch.randint(1, 60, (2, 512), generator=torch.Generator().manual_seed(5))
    assert torch.equal(ours(ids).last_hidden_state, sdpa(ids).last_hidden_state)
    short = ids[:, :40]
    assert (ours(short).last_hidden_state - sdpa(short).last_hidden_state).abs().max() > 1e-2
    # the same, by hand: with no padding n = 40 for every row, so it is sdpa with scaling log_512(40)/√d
    for layer in sdpa.encoder.layer:
        layer.attention.self.scaling = math.log(40) / math.log(512) / math.sqrt(16)
    try:
        torch.testing.assert_close(ours(short).last_hidden_state, sdpa(short).last_hidden_state,
                                   rtol=1e-5, atol=1e-5)
    finally:
        for layer in sdpa.encoder.layer:
            layer.attention.self.scaling = 16 ** -0.5


@torch.no_grad()
def test_hf_respects_padding_with_per_row_n(bert_pair):
    _, ours = bert_pair
    ids = torch.randint(1, 60, (2, 30), generator=torch.Generator().manual_seed(6))
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, 11:] = 0
    padded = ours(ids, attention_mask=mask).last_hidden_state
    alone = ours(ids[1:, :11]).last_hidden_state
    torch.testing.assert_close(padded[1, :11], alone[0], rtol=1e-5, atol=1e-5)
    changed = ours(ids.masked_fill(mask == 0, 7), attention_mask=mask).last_hidden_state
    torch.testing.assert_close(changed[1, :11], padded[1, :11], rtol=0, atol=0)


@torch.no_grad()
def test_set_attn_implementation_switches_the_policy_on_and_off():
    model = _bert("sdpa")
    ids = torch.randint(1, 60, (1, 24), generator=torch.Generator().manual_seed(7))
    before = model(ids).last_hidden_state
    model.set_attn_implementation(register_hf_attention("log_n"))
    assert not torch.allclose(model(ids).last_hidden_state, before, atol=1e-3)
    model.set_attn_implementation("sdpa")
    assert torch.equal(model(ids).last_hidden_state, before)


@torch.no_grad()
def test_hf_causal_counts_agree_with_and_without_an_explicit_mask():
    config = LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         attn_implementation=register_hf_attention("entropy_invariant:4"))
    torch.manual_seed(0)
    llama = LlamaModel(config).eval()
    ids = torch.randint(1, 60, (2, 10), generator=torch.Generator().manual_seed(8))
    implicit = llama(ids, attention_mask=None).last_hidden_state
    explicit = llama(ids, attention_mask=masks.additive_mask(masks.causal_mask(10), torch.float32)).last_hidden_state
    torch.testing.assert_close(implicit, explicit, rtol=1e-5, atol=1e-5)
    llama.set_attn_implementation("sdpa")
    assert (llama(ids).last_hidden_state - implicit).abs().max() > 1e-3
    counts = hf_visible_keys(None, 3, 7, causal=True).flatten().tolist()
    assert counts == [5.0, 6.0, 7.0]


# ----------------------------------------------------------------- attention entropy
def test_row_entropy_matches_float64_definition():
    scores = torch.randn(3, 9, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    scores[1, 4:] = -math.inf
    p = torch.softmax(scores, -1)
    expected = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)
    torch.testing.assert_close(row_entropy(scores).double(), expected, rtol=1e-6, atol=1e-6)
    assert row_entropy(torch.full((4,), -math.inf)).isnan()


def test_entropy_of_uniform_attention_is_mean_log_n_over_real_query_rows():
    model = _kexue_model("entropy_invariant")
    for layer in model.layers:  # zero queries: every row attends uniformly to what it can see
        torch.nn.init.zeros_(layer.attention.query.weight)
        torch.nn.init.zeros_(layer.attention.query.bias)
    ids = torch.randint(1, 60, (2, 10), generator=torch.Generator().manual_seed(10))
    mask = torch.ones(2, 10)
    mask[1, 4:] = 0
    expected = (10 * math.log(10) + 4 * math.log(4)) / 14
    torch.testing.assert_close(attention_entropy(model, {"input_ids": ids, "attention_mask": mask}),
                               torch.full((2, 2), expected, dtype=torch.float64))
    causal = {"input_ids": ids, "attention_mask": masks.causal_mask(10)}
    expected_causal = sum(math.log(i) for i in range(1, 11)) / 10
    torch.testing.assert_close(attention_entropy(model, causal), torch.full((2, 2), expected_causal,
                                                                            dtype=torch.float64))


def test_hf_entropy_matches_transformers_eager_attention_weights(bert_pair):
    sdpa, ours = bert_pair
    ids = torch.randint(1, 60, (2, 40), generator=torch.Generator().manual_seed(11))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[0, 25:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    eager = _bert("eager", sdpa)

    def eager_entropy() -> torch.Tensor:
        with torch.no_grad():
            weights = eager(**batch, output_attentions=True).attentions
        rows = [row_entropy(torch.where(w > 0, w.log(), -math.inf)) for w in weights]  # [B, H, L] per layer
        real = mask.bool()[:, None, :].expand(-1, 2, -1)
        return torch.stack([(h * real).sum((0, 2)).double() / real.sum((0, 2)) for h in rows])

    torch.testing.assert_close(attention_entropy(sdpa, batch), eager_entropy(), rtol=1e-5, atol=1e-5)
    assert sdpa.config._attn_implementation == "sdpa"  # restored after the probe
    n = torch.tensor([25.0, 40.0])  # per-row n: eager with the entropy-invariant factor of each sequence
    for layer in eager.encoder.layer:
        layer.attention.self.scaling = 1.0
        layer.attention.self.query.register_forward_hook(
            lambda module, args, out: out * (torch.log(n) / math.log(512) / 4)[:, None, None])
    torch.testing.assert_close(attention_entropy(ours, batch), eager_entropy(), rtol=1e-5, atol=1e-5)


def test_attention_entropy_rejects_other_models():
    with pytest.raises(TypeError, match="Hugging Face PreTrainedModel"):
        attention_entropy(torch.nn.Linear(2, 2), {"input_ids": torch.zeros(1, 2, dtype=torch.long)})


# ----------------------------------------------------------------- the post's derivation
def test_expected_entropy_gap_limits():
    d = 64
    assert expected_entropy_gap(8.0, d) == pytest.approx(-(8.0 ** 2) / (2 * d), rel=0.05)  # Gaussian regime
    assert expected_entropy_gap(64.0, d) / 64 == pytest.approx(-0.24, abs=0.005)  # the post's 0.24 at λ = 1


def test_sphere_entropy_approaches_log_n_plus_the_gap_for_large_n():
    d, kappa, n = 32, 4.0, 20000
    measured = sphere_entropy(n, kappa / d, d, queries=8)
    assert measured == pytest.approx(math.log(n) + expected_entropy_gap(kappa, d), abs=0.01)
    with pytest.raises(ValueError, match="`n` must be > 0, got 0"):
        sphere_entropy(0, 0.1, d)


# ----------------------------------------------------------------- the experiment's evaluation windows
def test_window_batches_have_exactly_n_tokens_within_one_document():
    import numpy as np

    from kexue.experiments.entropy_scale import window_batches
    from kexue.pretrain import SpecialIds, TokenizedCorpus

    tokens = np.arange(1000, 1000 + 50, dtype=np.int32)  # two documents: tokens 0-29 and 30-49
    corpus = TokenizedCorpus(tokens, np.array([0, 10, 30, 50]), np.array([0, 2, 3]), None)
    special = SpecialIds(cls=101, sep=102, pad=0, mask=103, random_ids=np.arange(200, 300))
    batches = window_batches(corpus, 12, total_tokens=10 * 12, special=special)
    ids = torch.cat([batch["input_ids"] for batch in batches])
    labels = torch.cat([batch["mlm_labels"] for batch in batches])
    assert ids.shape == (5, 12)  # 3 windows of 10 in document 0, 2 in document 1
    originals = torch.where(labels >= 0, labels, ids)[:, 1:-1]
    assert (originals[:, 1:] - originals[:, :-1] == 1).all()  # contiguous text, never across documents
    assert set(originals[:, 0].tolist()) == {1000, 1010, 1020, 1030, 1040}
    assert (ids[:, 0] == 101).all() and (ids[:, -1] == 102).all()
    assert all(batch["attention_mask"].all() and batch["mlm_positions"].sum() > 0 for batch in batches)


def test_counts_cached_per_mask_are_recounted_when_the_mask_changes():
    from kexue.attention_scale.hf import _CountsPerMask

    count = _CountsPerMask()
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    assert count(mask, 3, 5, False).flatten().tolist() == [5.0, 5.0, 5.0]
    mask[..., 4] = False  # in place: a new version of the same tensor
    assert count(mask, 3, 5, False).flatten().tolist() == [4.0, 4.0, 4.0]
    other = torch.ones(1, 1, 3, 5, dtype=torch.bool).tril(1)
    assert count(other, 3, 5, False).flatten().tolist() == [2.0, 3.0, 4.0]
