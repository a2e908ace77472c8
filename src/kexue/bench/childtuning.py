"""``kexue bench childtuning``: one optimizer step of each ChildTuning mode against the bare optimizer.

The parameters are MiniLM-L6's (a ``BertModel`` of the packaged checkpoint's config, 22.7 M
parameters, 11.7 M of them in the word embeddings), every one with a random gradient. One call is
one ``step()``; the bare optimizer is ``torch.optim.AdamW`` (PyTorch's default foreach
implementation) with the same settings. Goals: F and D at most 1.3x the bare step, update dropout
at most 1.6x (it must also snapshot and restore the parameters).

One more case compares our F mask with the AliceMind code's way of drawing it
(``grad *= Bernoulli(p).sample() / p`` per tensor, a fresh full-size float tensor each time).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.childtuning import ChildTuning, fisher_mask

__all__ = ["benchmark_childtuning", "run"]

RESERVE_P = 0.3
GOALS = {"F": 1.3, "D": 1.3, "update": 1.6}  # at most this many times the bare step


def _minilm_parameters() -> list[tuple[str, nn.Parameter]]:
    """MiniLM-L6's parameter shapes with random values and gradients (no weights are read)."""
    from transformers import BertConfig, BertModel

    from kexue.checkpoints import minilm_path

    config = BertConfig.from_pretrained(minilm_path())
    model = BertModel(config, add_pooling_layer=False)
    named = list(model.named_parameters())
    generator = torch.Generator().manual_seed(0)
    for _, parameter in named:
        parameter.grad = torch.randn(parameter.shape, generator=generator)
    return named


def _adamw(named: list[tuple[str, nn.Parameter]]) -> torch.optim.AdamW:
    return torch.optim.AdamW([p for _, p in named], lr=1e-5, weight_decay=0.01)


def _alicemind_gradient_dropout(optimizer: torch.optim.Optimizer, reserve_p: float) -> Callable[[], None]:
    """ChildTuningAdamW's F mask (AliceMind ``ChildTuningOptimizer.py``), then the bare step."""
    bernoulli = torch.distributions.Bernoulli(torch.tensor(reserve_p))

    def step() -> None:
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                mask = bernoulli.sample(parameter.grad.shape)
                parameter.grad *= mask / reserve_p
        optimizer.step()

    return step


def benchmark_childtuning(repeats: int = 10) -> list[Comparison]:
    """The three modes against bare AdamW, and our F against AliceMind's F, on MiniLM's parameters."""
    # F and D rescale the gradients in place, call after call; over a few dozen calls the kept
    # elements grow by 1/p each time and stay finite, which leaves the timings unaffected.
    named = _minilm_parameters()
    bare = _adamw(named).step
    mask = fisher_mask({n: torch.rand(p.shape) for n, p in named}, RESERVE_P)
    facts = dict(parameters=sum(p.numel() for _, p in named), reserve_p=RESERVE_P,
                 threads=torch.get_num_threads())
    comparisons = []
    for mode, limit in GOALS.items():
        extra = dict(named_parameters=named, gradient_mask=mask) if mode == "D" else {}
        wrapped = ChildTuning(_adamw(named), mode, RESERVE_P, seed=0, **extra)
        comparisons.append(compare(
            f"ChildTuning-{mode}(AdamW).step() on MiniLM-L6", wrapped.step,
            "bare AdamW.step()", bare, repeats=repeats, goal=f"time <= {limit}x bare step",
            goal_met=lambda c, limit=limit: 1 / c.speedup <= limit, **facts))
    ours_f = ChildTuning(_adamw(named), "F", RESERVE_P, seed=0).step
    comparisons.append(compare(
        "ChildTuning-F(AdamW).step() on MiniLM-L6", ours_f, "AliceMind ChildTuningAdamW-style F mask",
        _alicemind_gradient_dropout(_adamw(named), RESERVE_P), repeats=repeats, **facts))
    return comparisons


@register_benchmark("childtuning", anchor="bare torch.optim.AdamW; AliceMind's gradient-dropout mask",
                    summary="optimizer-step time of ChildTuning F / D / update on MiniLM-L6's parameters")
def run(quick: bool) -> list[Comparison]:
    return benchmark_childtuning(repeats=5 if quick else 10)
