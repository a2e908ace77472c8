"""UniVAE generation: KV-cached decoding against full recomputation per step (bojone/univae's way).

Generating 32 tokens from prior latents with the ``kexue-small-zh`` shape (L4/H256; random weights
when the checkpoint is absent) and with the post's BERT-base shape (L12/H768, k = 8, random weights;
timing does not depend on the weights). The anchor re-runs the whole
``[encoder (max_length); decoder prefix]`` sequence at every step, as the reference's
``AutoRegressiveDecoder`` does; ours caches the one [CLS] position the decoder can see and feeds one
token per step. Goal: ratio >= 3.
"""

from __future__ import annotations

import torch

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.models import Transformer, TransformerConfig
from kexue.univae import UniVAE, UniVAEConfig, generate

TOKENS = 32


def _random_model(num_independent_layers: int, **sizes) -> UniVAE:
    backbone = Transformer(TransformerConfig(nsp_head=False, pooler=False, **sizes))
    return UniVAE(backbone, UniVAEConfig(num_independent_layers=num_independent_layers, max_length=32)).eval()


def _small_model() -> UniVAE:
    """kexue-small-zh when it is there (L4/H256, k = 2), else the same shape with random weights."""
    from kexue.checkpoints import small_zh_path

    path = small_zh_path()
    if path is None:
        return _random_model(2)
    return UniVAE.from_pretrained(path, UniVAEConfig(num_independent_layers=2, max_length=32)).eval()


def _base_model() -> UniVAE:
    """The post's configuration: BERT-base, independent masks in the first 8 of 12 layers."""
    return _random_model(8, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)


@register_benchmark("univae", "bojone/univae decoding (full recomputation per step)",
                    "32-token UniVAE generation with the KV cache vs full recomputation per step")
def run(quick: bool) -> list[Comparison]:
    cases = [("L4/H256", _small_model, 8)] if quick else \
        [("L4/H256", _small_model, 1), ("L4/H256", _small_model, 16), ("L12/H768 (the post's)", _base_model, 1)]
    comparisons = []
    for shape, make_model, batch in cases:
        model = make_model()
        z = model.prior(batch, torch.Generator().manual_seed(0))
        kwargs = dict(bos_id=101, eos_id=102, pad_id=0, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
        cached = generate(model, z, **kwargs)
        recomputed = generate(model, z, use_cache=False, **kwargs)
        comparisons.append(compare(
            f"batch {batch}, {TOKENS} tokens, greedy, {shape}, fp32",
            lambda: generate(model, z, **kwargs), "full recomputation per step",
            lambda: generate(model, z, use_cache=False, **kwargs),
            repeats=1 if quick else 3, warmup=0 if quick else 1, goal="speedup >= 3",
            goal_met=lambda c: c.speedup >= 3, same_tokens=cached.tolist() == recomputed.tolist()))
    return comparisons
