"""``kexue bench backbone`` compares equal work: both sides of each case give the same loss on the same weights.

Timings are never asserted; only that they were measured.
"""

from __future__ import annotations

import pytest
import torch

from kexue.bench import Comparison
from kexue.bench.backbone import (benchmark_backbone, copy_to_transformers, full_head_mlm_loss,
                                  hf_pretraining_loss, make_batch, masked_head_mlm_loss,
                                  ours_pretraining_loss)
from kexue.models import Transformer, TransformerConfig

torch.set_num_threads(1)

TINY = TransformerConfig(vocab_size=211, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                         max_positions=32, dropout=0.0, attention_dropout=0.0)


def _model(position: str, nsp: bool) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(TINY.replace(position=position, nsp_head=nsp, pooler=nsp))
    with torch.no_grad():  # a non-zero MLM bias, so a lost bias would show
        model.mlm.bias.normal_()
    return model.train()


def test_batch_masks_only_real_tokens_and_labels_agree():
    batch = make_batch(TINY.vocab_size, batch_size=6, length=20, seed=3)
    real = batch.attention_mask.bool()
    assert batch.masked.any(dim=1).all() and not (batch.masked & ~real).any()
    assert not batch.masked[:, 0].any()
    assert torch.equal(batch.hf_labels[batch.masked], batch.mlm_targets)
    assert (batch.hf_labels[~batch.masked] == -100).all()
    assert (batch.input_ids[~real] == 0).all() and (batch.token_type_ids[~real] == 0).all()


@pytest.mark.parametrize("position,nsp,attn", [("absolute", True, "sdpa"), ("rope", False, "eager")])
def test_ours_and_transformers_compute_the_same_loss_and_gradients(position, nsp, attn):
    ours = _model(position, nsp)
    hf_model = copy_to_transformers(ours, attn).train()
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in hf_model.parameters() if p.requires_grad)
    batch = make_batch(TINY.vocab_size, batch_size=4, length=16, seed=1)
    ours_loss = ours_pretraining_loss(ours, batch)
    hf_loss = hf_pretraining_loss(hf_model, batch)
    torch.testing.assert_close(ours_loss, hf_loss, atol=1e-5, rtol=0)
    ours_loss.backward()
    hf_loss.backward()
    word_embeddings = hf_model.get_input_embeddings().weight  # tied to the MLM decoder on both sides
    torch.testing.assert_close(ours.embeddings.word.weight.grad, word_embeddings.grad, atol=1e-5, rtol=0)


def test_masked_only_head_equals_full_head_restricted_to_masked_positions():
    model = _model("absolute", nsp=True)
    batch = make_batch(TINY.vocab_size, batch_size=4, length=16, seed=2)
    masked_loss = masked_head_mlm_loss(model, batch)
    masked_loss.backward()
    masked_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    full_loss = full_head_mlm_loss(model, batch)
    full_loss.backward()
    torch.testing.assert_close(masked_loss, full_loss, atol=1e-5, rtol=0)
    for name, grad in masked_grads.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, atol=1e-5, rtol=0)


def test_benchmark_returns_positive_timings_for_every_case():
    comparisons = benchmark_backbone(TINY, batch_size=2, length=8, repeats=1)
    assert len(comparisons) == 3
    for comparison in comparisons:
        assert isinstance(comparison, Comparison)
        assert comparison.ours.median > 0 and comparison.theirs.median > 0 and comparison.speedup > 0
        assert comparison.goal_met is not None
        assert comparison.extra["parameters" if "step" in comparison.case else "masked_tokens"] > 0
