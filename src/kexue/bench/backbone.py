"""``kexue bench backbone``: a pretraining step of our Transformer against transformers' at the same size.

Cases, all on the same weights (ours saved with :meth:`Transformer.save_pretrained` and loaded by
transformers) and the same batch (padded sequences, 15% of the real tokens masked):

1. **BERT training step**: forward of the MLM + NSP loss, backward, one AdamW step. Ours scores only
   the masked positions with the MLM head (``mlm_positions=masked``), our design point; the anchor,
   ``BertForPreTraining`` with ``attn_implementation="sdpa"``, scores the whole sequence and ignores
   the unmasked rows through ``labels=-100``, as its users do. Goal: ours not slower (speedup >= 1).
2. **RoFormer training step**: the same with rotary positions against ``RoFormerForMaskedLM``
   (eager attention, the only one transformers has for it). It has no NSP head, so both sides
   train the MLM loss only.
3. **MLM head**: inside our own model, forward + backward of the MLM loss scoring masked positions
   only against scoring all of them (``mlm_positions="all"``) and then keeping the masked rows. The
   vocabulary projection dominates CPU time, so DEVELOPERS.md expects 2-4x.

The loss functions are public so that tests can check both sides of every case compute the same
loss on the same weights: the ratios compare equal work, done two ways.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.models import Transformer, TransformerConfig

__all__ = ["PretrainingBatch", "make_batch", "ours_pretraining_loss", "hf_pretraining_loss",
           "masked_head_mlm_loss", "full_head_mlm_loss", "copy_to_transformers", "benchmark_backbone", "run"]

# The size of the model `kexue pretrain` trains (bert-base-chinese vocabulary); see env.md section 4.
BENCH_CONFIG = TransformerConfig(vocab_size=21128, hidden_size=256, num_layers=4, num_heads=4,
                                 intermediate_size=1024, max_positions=512)
MASK_RATE = 0.15  # BERT's share of masked tokens
MASK_TOKEN_ID = 103  # [MASK] in the bert-base-chinese vocabulary
LEARNING_RATE = 1e-4


@dataclass(frozen=True)
class PretrainingBatch:
    """One MLM + NSP batch, in the forms both implementations take.

    Attributes:
        input_ids, token_type_ids, attention_mask: ``[B, L]``; padding has mask 0 and id 0.
        masked: bool ``[B, L]``, the positions whose token was replaced by [MASK].
        mlm_targets: ``[N]`` original ids at ``masked`` (row-major order), N = masked.sum().
        hf_labels: ``[B, L]`` the same targets with -100 at every other position (transformers' form).
        nsp_labels: ``[B]`` 0 = IsNext, 1 = random next sentence.
    """

    input_ids: Tensor
    token_type_ids: Tensor
    attention_mask: Tensor
    masked: Tensor
    mlm_targets: Tensor
    hf_labels: Tensor
    nsp_labels: Tensor


def make_batch(vocab_size: int, batch_size: int, length: int, seed: int = 0) -> PretrainingBatch:
    """A random padded pretraining batch: lengths in [L/2, L], two segments, 15% of real tokens masked.

    Position 0 ([CLS]) is never masked, and at least one token per sequence is.
    """
    generator = torch.Generator().manual_seed(seed)
    original = torch.randint(MASK_TOKEN_ID + 1, vocab_size, (batch_size, length), generator=generator)
    lengths = torch.randint(length // 2, length + 1, (batch_size, 1), generator=generator)
    positions = torch.arange(length)[None]
    real = positions < lengths
    original = original.masked_fill(~real, 0)
    token_type_ids = (positions >= lengths // 2).long() & real
    masked = (torch.rand(batch_size, length, generator=generator) < MASK_RATE) & real
    masked[:, 0] = False
    masked[:, 1] = True
    input_ids = original.masked_fill(masked, MASK_TOKEN_ID)
    return PretrainingBatch(
        input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=real.long(), masked=masked,
        mlm_targets=original[masked], hf_labels=original.masked_fill(~masked, -100),
        nsp_labels=torch.randint(0, 2, (batch_size,), generator=generator))


def _forward(model: Transformer, batch: PretrainingBatch, mlm_positions: Tensor | str):
    return model(batch.input_ids, batch.token_type_ids, attention_mask=batch.attention_mask,
                 mlm_positions=mlm_positions)


def ours_pretraining_loss(model: Transformer, batch: PretrainingBatch) -> Tensor:
    """MLM cross-entropy over the masked positions only (+ NSP cross-entropy if the model has the head)."""
    out = _forward(model, batch, batch.masked)
    loss = F.cross_entropy(out.mlm_logits, batch.mlm_targets)
    if out.nsp_logits is not None:
        loss = loss + F.cross_entropy(out.nsp_logits, batch.nsp_labels)
    return loss


def masked_head_mlm_loss(model: Transformer, batch: PretrainingBatch) -> Tensor:
    """MLM loss with the head run on the masked positions only (ours in case 3)."""
    return F.cross_entropy(_forward(model, batch, batch.masked).mlm_logits, batch.mlm_targets)


def full_head_mlm_loss(model: Transformer, batch: PretrainingBatch) -> Tensor:
    """MLM loss with the head run on every position, then the masked rows kept (the anchor of case 3)."""
    logits = _forward(model, batch, "all").mlm_logits.view(*batch.input_ids.shape, -1)  # [B, L, V]
    return F.cross_entropy(logits[batch.masked], batch.mlm_targets)


def hf_pretraining_loss(hf_model: nn.Module, batch: PretrainingBatch) -> Tensor:
    """transformers' own loss: full-sequence MLM head with ``labels`` (-100 = ignored) (+ NSP for BERT)."""
    inputs = dict(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids,
                  attention_mask=batch.attention_mask, labels=batch.hf_labels)
    if hasattr(hf_model, "cls") and hasattr(hf_model.cls, "seq_relationship"):
        inputs["next_sentence_label"] = batch.nsp_labels
    return hf_model(**inputs).loss


def copy_to_transformers(model: Transformer, attn_implementation: str) -> nn.Module:
    """The transformers model (``BertForPreTraining`` / ``RoFormerForMaskedLM``) with ``model``'s weights.

    Goes through our checkpoint writer, which tests/test_models_hf_parity.py checks against transformers.
    """
    from transformers import BertForPreTraining, RoFormerForMaskedLM

    hf_class = BertForPreTraining if model.config.position == "absolute" else RoFormerForMaskedLM
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        hf_model = hf_class.from_pretrained(folder, attn_implementation=attn_implementation)
    for name, parameter in hf_model.named_parameters():
        # RoFormer's sinusoid table is frozen when built, but transformers 5.x loads it trainable;
        # refreeze it so AdamW updates the same parameters on both sides.
        if name.endswith("embed_positions.weight"):
            parameter.requires_grad_(False)
    return hf_model


def _training_step(model: nn.Module, loss_fn: Callable[[nn.Module, PretrainingBatch], Tensor],
                   batch: PretrainingBatch) -> Callable[[], float]:
    """A closure doing one step: zero grads, loss, backward, AdamW (on the trainable parameters)."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def _forward_backward(model: Transformer, loss_fn: Callable[[Transformer, PretrainingBatch], Tensor],
                      batch: PretrainingBatch) -> Callable[[], float]:
    def run_once() -> float:
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        return loss.item()

    return run_once


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _step_case(config: TransformerConfig, batch: PretrainingBatch, repeats: int, seed: int,
               attn_implementation: str, anchor_name: str, facts: dict) -> tuple[Transformer, Comparison]:
    torch.manual_seed(seed)
    ours = Transformer(config)
    hf_model = copy_to_transformers(ours, attn_implementation)
    heads = "MLM+NSP" if config.nsp_head else "MLM"
    name = "BERT" if config.position == "absolute" else "RoFormer"
    comparison = compare(
        f"{name} training step ({heads} loss, backward, AdamW), batch {tuple(batch.input_ids.shape)}",
        _training_step(ours, ours_pretraining_loss, batch),
        anchor_name,
        _training_step(hf_model, hf_pretraining_loss, batch),
        repeats=repeats, measure_memory=True,
        goal="ours not slower (speedup >= 1)", goal_met=lambda c: c.speedup >= 1,
        parameters=_trainable(ours), anchor_parameters=_trainable(hf_model), **facts)
    return ours, comparison


def benchmark_backbone(config: TransformerConfig = BENCH_CONFIG, batch_size: int = 64, length: int = 128,
                       repeats: int = 5, seed: int = 0) -> list[Comparison]:
    """Run the three cases at the given size; ``config`` is the BERT one (its RoPE twin is derived).

    Args:
        config: model size; ``position`` and heads are set per case.
        batch_size, length: the batch is ``[batch_size, length]`` with padding and 15% masked tokens.
        repeats: timed calls per side (after one warm-up call each).
        seed: seeds the weights and the batch.

    Returns:
        Comparisons of the BERT step, the RoFormer step and the MLM head, in that order.
    """
    batch = make_batch(config.vocab_size, batch_size, length, seed)
    facts = dict(masked_tokens=int(batch.masked.sum()), real_tokens=int(batch.attention_mask.sum()),
                 layers=config.num_layers, hidden=config.hidden_size, vocab=config.vocab_size,
                 threads=torch.get_num_threads())
    bert_config = config.replace(position="absolute", mlm_head=True, nsp_head=True, pooler=True)
    rope_config = config.replace(position="rope", mlm_head=True, nsp_head=False, pooler=False)
    bert, bert_step = _step_case(bert_config, batch, repeats, seed, "sdpa",
                                 "transformers BertForPreTraining (sdpa, full-sequence MLM head)", facts)
    _, rope_step = _step_case(rope_config, batch, repeats, seed, "eager",
                              "transformers RoFormerForMaskedLM (eager, full-sequence MLM head)", facts)
    head = compare(
        f"MLM head on masked positions vs all, fwd+bwd of the MLM loss, batch {tuple(batch.input_ids.shape)}",
        _forward_backward(bert, masked_head_mlm_loss, batch),
        "kexue full-sequence MLM head",
        _forward_backward(bert, full_head_mlm_loss, batch),
        repeats=repeats, measure_memory=True,
        goal="masked-only at least 2x faster (DEVELOPERS.md: 2-4x)", goal_met=lambda c: c.speedup >= 2,
        **facts)
    return [bert_step, rope_step, head]


@register_benchmark("backbone", anchor="transformers BertForPreTraining",
                    summary="pretraining step (MLM head on masked positions) vs transformers at the same size")
def run(quick: bool) -> list[Comparison]:
    if quick:
        return benchmark_backbone(batch_size=32, length=64, repeats=2)
    return benchmark_backbone(batch_size=64, length=128, repeats=5)
