"""``kexue bench entropy-scale``: the entropy-invariant scale against standard attention, forward pass.

The policy is a per-row multiply of the queries by ``log₅₁₂(n)`` before the same SDPA kernel, so
it must cost (almost) nothing: goal ``time(entropy_invariant) <= 1.05 × time(standard)``.
Cases, each on the same weights and the same padded batch (about 8192 tokens, one row padded to
3/4 of the length so that the per-row n is computed from a real mask), at n = 1024 and 4096:

1. kexue :class:`~kexue.models.Transformer` (L4/H256/4 heads, encoder only):
   ``attention_scale="entropy_invariant"`` vs ``"standard"``.
2. transformers ``BertModel`` at the same size: :func:`kexue.attention_scale.register_hf_attention`
   vs ``attn_implementation="sdpa"``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

import kexue.attention_scale  # noqa: F401 - registers the scale policies
from kexue.attention_scale import register_hf_attention
from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.models import Transformer, TransformerConfig

__all__ = ["benchmark_entropy_scale", "run"]

MAX_RATIO = 1.05
TOKENS = 8192
SIZE = dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024)


def _batch(length: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    rows = max(1, TOKENS // length)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(104, 21128, (rows, length), generator=generator)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[-1, 3 * length // 4:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def _forward(model: nn.Module, ids: Tensor, mask: Tensor) -> Callable[[], None]:
    @torch.no_grad()
    def call() -> None:
        model(input_ids=ids, attention_mask=mask)

    return call


def _kexue_pair(length: int) -> tuple[nn.Module, nn.Module]:
    config = TransformerConfig(vocab_size=21128, max_positions=length, mlm_head=False, nsp_head=False,
                               pooler=False, **SIZE)
    standard = Transformer(config).eval()
    invariant = Transformer(config.replace(attention_scale="entropy_invariant")).eval()
    invariant.load_state_dict(standard.state_dict())
    return invariant, standard


def _hf_pair(length: int) -> tuple[nn.Module, nn.Module]:
    from transformers import BertConfig, BertModel

    common = dict(vocab_size=21128, hidden_size=SIZE["hidden_size"], num_hidden_layers=SIZE["num_layers"],
                  num_attention_heads=SIZE["num_heads"], intermediate_size=SIZE["intermediate_size"],
                  max_position_embeddings=length)
    standard = BertModel(BertConfig(**common, attn_implementation="sdpa"), add_pooling_layer=False).eval()
    invariant = BertModel(BertConfig(**common, attn_implementation=register_hf_attention("entropy_invariant")),
                          add_pooling_layer=False).eval()
    invariant.load_state_dict(standard.state_dict())
    return invariant, standard


def benchmark_entropy_scale(lengths: tuple[int, ...] = (1024, 4096), repeats: int = 5) -> list[Comparison]:
    """The two cases above at each length."""
    comparisons = []
    for length in lengths:
        ids, mask = _batch(length)
        facts = dict(length=length, batch=ids.shape[0], threads=torch.get_num_threads())
        for label, anchor, make in (("kexue Transformer", "kexue standard scale", _kexue_pair),
                                    ("transformers BertModel", "transformers sdpa", _hf_pair)):
            ours, theirs = make(length)
            comparisons.append(compare(
                f"{label} forward, entropy_invariant, {ids.shape[0]} x {length}", _forward(ours, ids, mask),
                anchor, _forward(theirs, ids, mask), repeats=repeats,
                goal=f"time <= {MAX_RATIO}x standard", goal_met=lambda c: 1 / c.speedup <= MAX_RATIO, **facts))
    return comparisons


@register_benchmark("entropy-scale", anchor="standard 1/sqrt(d) scale (kexue), transformers sdpa",
                    summary="forward pass with the entropy-invariant scale vs standard attention at n = 1024, 4096")
def run(quick: bool) -> list[Comparison]:
    if quick:
        return benchmark_entropy_scale(lengths=(1024,), repeats=3)
    return benchmark_entropy_scale()
