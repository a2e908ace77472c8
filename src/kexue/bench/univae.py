"""UniVAE generation: KV-cached decoding against full recomputation per step (bojone/univae's way).

Generating 32 tokens from prior latents with the ``kexue-small-zh`` shape (L4/H256; random weights
when the checkpoint is absent; timing does not depend on the weights). The anchor re-runs the whole
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


def _model() -> UniVAE:
    from kexue.checkpoints import small_zh_path

    config = UniVAEConfig(num_independent_layers=2, max_length=32)
    path = small_zh_path()
    if path is not None:
        return UniVAE.from_pretrained(path, config).eval()
    backbone = Transformer(TransformerConfig(nsp_head=False, pooler=False))
    return UniVAE(backbone, config).eval()


@register_benchmark("univae", "bojone/univae decoding (full recomputation per step)",
                    "32-token UniVAE generation with the KV cache vs full recomputation per step")
def run(quick: bool) -> list[Comparison]:
    model = _model()
    comparisons = []
    for batch in ((8,) if quick else (1, 16)):
        z = model.prior(batch, torch.Generator().manual_seed(0))
        kwargs = dict(bos_id=101, eos_id=102, pad_id=0, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
        cached = generate(model, z, **kwargs)
        recomputed = generate(model, z, use_cache=False, **kwargs)
        comparisons.append(compare(
            f"batch {batch}, {TOKENS} tokens, greedy, L4/H256, fp32",
            lambda: generate(model, z, **kwargs), "full recomputation per step",
            lambda: generate(model, z, use_cache=False, **kwargs),
            repeats=1 if quick else 3, warmup=0 if quick else 1, goal="speedup >= 3",
            goal_met=lambda c: c.speedup >= 3, same_tokens=cached.tolist() == recomputed.tolist()))
    return comparisons
