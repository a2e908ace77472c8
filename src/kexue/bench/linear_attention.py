"""``kexue bench linear-attention``: kexue's linear attention against SDPA and performer-pytorch.

Inputs ``[1, 4 heads, n, d = 16]`` float32, forward under ``no_grad``, causal and bidirectional:

1. Taylor-2 linear attention (153 features) vs ``torch.nn.functional.scaled_dot_product_attention``
   on the same ``q, k, v`` (queries and keys are pre-scaled by ``d^{-1/4}`` outside the timed call,
   since SDPA applies its ``1/√d`` inside). Goal (issue 7): causal at n = 16384 at least 3× faster
   than causal SDPA, with at most a quarter of its peak memory.
2. kexue Performer features (``m = int(d ln d) = 44``, performer-pytorch's default) vs
   performer-pytorch's ``FastAttention`` with the same ``m`` (a ``bench`` extra, measured when
   installed). Its causal path on CPU is ``causal_linear_attention_noncuda``, which cuts the sequence
   into 128 pieces and materialises a per-position ``[m, d]`` state inside each.

Memory is the growth of the process's peak RSS during one call (see :mod:`kexue.bench.harness`).
PyTorch's CPU SDPA is a flash-style kernel whose memory is already ``O(n·d)``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.linear_attention import PerformerFeatures, TaylorFeatures, linear_attention

__all__ = ["benchmark_linear_attention", "run"]

HEADS, HEAD_SIZE = 4, 16
GOAL_LENGTH, GOAL_SPEEDUP, GOAL_MEMORY = 16384, 3.0, 0.25


def _inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, HEADS, n, HEAD_SIZE, generator=generator) for _ in range(3))


def _performer_pytorch(num_features: int, causal: bool) -> Callable | None:
    try:
        from performer_pytorch import FastAttention
    except ImportError:
        return None
    torch.manual_seed(0)
    return FastAttention(dim_heads=HEAD_SIZE, nb_features=num_features, causal=causal)


def _goal(n: int, causal: bool) -> dict:
    if not (causal and n == GOAL_LENGTH):
        return {}
    return dict(goal=f"speedup >= {GOAL_SPEEDUP:g} and memory ratio <= {GOAL_MEMORY:g}",
                goal_met=lambda c: c.speedup >= GOAL_SPEEDUP and c.memory_ratio is not None
                and c.memory_ratio <= GOAL_MEMORY)


def benchmark_linear_attention(lengths: tuple[int, ...] = (4096, 16384), repeats: int = 5,
                               seed: int = 0) -> list[Comparison]:
    """The cases above at each length; the performer-pytorch cases only when it is installed."""
    taylor = TaylorFeatures(2)
    num_features = int(HEAD_SIZE * math.log(HEAD_SIZE))
    performer = PerformerFeatures(HEAD_SIZE, num_features, seed=seed)
    comparisons = []
    for n in lengths:
        q, k, v = _inputs(n, seed)
        q_scaled, k_scaled = q * HEAD_SIZE ** -0.25, k * HEAD_SIZE ** -0.25
        for causal in (True, False):
            mode = "causal" if causal else "bidirectional"
            facts = dict(n=n, heads=HEADS, head_size=HEAD_SIZE, threads=torch.get_num_threads())
            with torch.no_grad():
                comparisons.append(compare(
                    f"taylor2 (153 features) {mode} n={n}",
                    lambda: linear_attention(q_scaled, k_scaled, v, taylor, causal=causal),
                    "torch SDPA", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                    repeats=repeats, measure_memory=True, **_goal(n, causal), **facts))
                anchor = _performer_pytorch(num_features, causal)
                if anchor is not None:
                    comparisons.append(compare(
                        f"performer ({num_features} features) {mode} n={n}",
                        lambda: linear_attention(q_scaled, k_scaled, v, performer, causal=causal),
                        "performer-pytorch FastAttention", lambda: anchor(q, k, v),
                        repeats=repeats, measure_memory=True, **facts))
    return comparisons


@register_benchmark("linear-attention", anchor="torch SDPA, performer-pytorch FastAttention",
                    summary="Taylor-2 / Performer linear attention vs SDPA and performer-pytorch, n = 4096 and 16384")
def run(quick: bool) -> list[Comparison]:
    if quick:
        return benchmark_linear_attention(lengths=(1024, 4096), repeats=3)
    return benchmark_linear_attention()
