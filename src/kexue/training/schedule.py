"""Learning-rate schedules: linear warm-up, then linear or cosine decay to 0.

For step ``t`` (0-based, counted in optimizer updates), warm-up ``W`` and total ``T`` steps the
multiplier of the base learning rate is

    t < W:       (t + 1) / W
    linear:      max(0, (T - t) / (T - W))
    cosine:      0.5 * (1 + cos(pi * (t - W) / (T - W)))

so the rate reaches the base value after ``W`` updates and reaches 0 at ``t = T``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["lr_multiplier", "warmup_decay_schedule"]

DECAY_KINDS = ("linear", "cosine", "constant")


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, decay: str = "linear") -> float:
    """Factor applied to the base learning rate at optimizer update ``step``.

    Example:
        >>> [round(lr_multiplier(t, 2, 6), 3) for t in range(7)]
        [0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if decay not in DECAY_KINDS:
        raise ValueError(f"`decay` must be one of {DECAY_KINDS}, got {decay!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if decay == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_decay_schedule(optimizer: Optimizer, warmup_steps: int, total_steps: int,
                          decay: str = "linear") -> LambdaLR:
    """A ``LambdaLR`` following :func:`lr_multiplier`; its ``state_dict`` round-trips for resume."""
    return LambdaLR(optimizer, lambda step: lr_multiplier(step, warmup_steps, total_steps, decay))
