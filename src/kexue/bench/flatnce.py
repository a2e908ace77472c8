"""``kexue bench flatnce``: forward + backward of FlatNCELoss against InfoNCELoss and NTXentLoss.

Every case scores the same in-batch problem: B anchors against their B positives (cosine,
temperature 0.05), embeddings of width 384 (MiniLM's) that require gradients; one call is the
loss forward plus ``backward()``. Cases per batch size:

1. ``FlatNCELoss`` vs kexue's ``InfoNCELoss``: the only difference is which term is differentiated,
   so FlatNCE must cost at most 1.1x (goal: speedup >= 1/1.1).
2. ``FlatNCELoss`` vs pytorch-metric-learning's ``NTXentLoss`` given the same pairs
   (``ref_emb=positives``, labels ``arange(B)``), when that package (a ``bench`` extra) is installed.
   NTXent builds a ``[positive pairs, negative pairs]`` matrix, B·B·(B−1) floats, so it runs only up
   to ``NTXENT_MAX_BATCH`` (at 4096 it would need 256 GiB).

Pitfall found here: NTXentLoss treats ``ref_labels`` that *is* the ``labels`` tensor (same object) as
self-comparison and drops the diagonal, i.e. every positive pair, and returns 0. Pass a copy.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.contrastive import FlatNCELoss, InfoNCELoss

__all__ = ["benchmark_flatnce", "run"]

TEMPERATURE = 0.05
WIDTH = 384
MAX_RATIO = 1.1  # FlatNCE time / InfoNCE time
NTXENT_MAX_BATCH = 512  # 512^3 floats = 512 MiB in NTXent's pair matrix


def _embeddings(batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    anchors = torch.randn(batch_size, WIDTH, generator=generator)
    positives = anchors + 0.3 * torch.randn(batch_size, WIDTH, generator=generator)
    return anchors.requires_grad_(True), positives.requires_grad_(True)


def _forward_backward(loss: Callable[[Tensor, Tensor], Tensor], anchors: Tensor,
                      positives: Tensor) -> Callable[[], float]:
    def call() -> float:
        anchors.grad = positives.grad = None
        value = loss(anchors, positives)
        value.backward()
        return value.item()

    return call


def _kexue(loss_module: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda anchors, positives: loss_module(anchors, positives).loss


def _ntxent() -> Callable[[Tensor, Tensor], Tensor] | None:
    try:
        from pytorch_metric_learning.losses import NTXentLoss
    except ImportError:
        return None
    ntxent = NTXentLoss(temperature=TEMPERATURE)

    def loss(anchors: Tensor, positives: Tensor) -> Tensor:
        labels = torch.arange(anchors.shape[0])
        return ntxent(anchors, labels, ref_emb=positives, ref_labels=labels.clone())  # a copy: see above

    return loss


def benchmark_flatnce(batch_sizes: tuple[int, ...] = (32, 256, 4096), repeats: int = 20,
                      seed: int = 0) -> list[Comparison]:
    """The cases above at each batch size; the NTXent cases only when pytorch-metric-learning is installed."""
    flat, info, ntxent = _kexue(FlatNCELoss(TEMPERATURE)), _kexue(InfoNCELoss(TEMPERATURE)), _ntxent()
    comparisons = []
    for batch_size in batch_sizes:
        anchors, positives = _embeddings(batch_size, seed)
        facts = dict(batch=batch_size, width=WIDTH, threads=torch.get_num_threads())
        ours = _forward_backward(flat, anchors, positives)
        comparisons.append(compare(
            f"FlatNCELoss fwd+bwd, batch {batch_size} x {WIDTH}", ours, "kexue InfoNCELoss",
            _forward_backward(info, anchors, positives), repeats=repeats, measure_memory=True,
            goal=f"FlatNCE time <= {MAX_RATIO}x InfoNCE time", goal_met=lambda c: 1 / c.speedup <= MAX_RATIO,
            **facts))
        if ntxent is not None and batch_size <= NTXENT_MAX_BATCH:
            comparisons.append(compare(
                f"FlatNCELoss fwd+bwd, batch {batch_size} x {WIDTH}", ours,
                "pytorch-metric-learning NTXentLoss", _forward_backward(ntxent, anchors, positives),
                repeats=repeats, measure_memory=True, **facts))
    return comparisons


@register_benchmark("flatnce", anchor="kexue InfoNCELoss, pytorch-metric-learning NTXentLoss",
                    summary="forward + backward of FlatNCELoss vs InfoNCE at batch 32/256/4096")
def run(quick: bool) -> list[Comparison]:
    if quick:
        return benchmark_flatnce(batch_sizes=(32, 256, 1024), repeats=10)
    return benchmark_flatnce(repeats=20)
