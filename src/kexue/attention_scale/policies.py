"""Length-dependent attention scale policies: ``λ(n, d) = factor(n) / √d``.

Softmax attention is ``softmax(λ · q kᵀ)``; "standard" attention uses ``λ = 1/√d``. Each policy
here multiplies that by a factor of ``n``, the number of keys the query row can see (so padding
and causal masks are handled per row: :func:`kexue.models.attention.visible_key_counts`):

=====================  =================================================  ==========================
registry name          factor(n)                                          source
=====================  =================================================  ==========================
``entropy_invariant``  ``log_b(n) = 1 + ln(n / b) / ln(b)``, b = 512      post 8823 eq. (ei2); 9034
``log_n``              ``ln(n)`` (natural log)                            Chiang & Cholak 2022 §4.3
``inference_only``     ``max(1, log_L(n))``, L = training length 512      Qwen-1 ``use_logn_attn``
``yarn``               ``(1 + 0.1 ln s)²``, ``s = max(1, n / L)``         YaRN (Peng et al. 2023) §3.4
=====================  =================================================  ==========================

- **entropy_invariant**: the post's ``softmax(log₅₁₂(n)/√d · QKᵀ)``. Attention entropy is
  ``H ≈ log n − 0.24 λd`` (8823) or ``log n − λ(s_max − s̄)`` (9034), so ``λ ∝ log n / d``
  cancels the ``log n``; anchoring ``λ = 1/√d`` at ``n = 512`` fixes the constant. Written
  ``1 + ln(n/b)/ln(b)`` so that the factor is exactly 1.0 at ``n = b``.
- **log_n**: the natural-log scale of "Overcoming a Theoretical Limitation of Self-Attention"
  (ACL 2022, eq. 1 of §4.3), which the post criticises as far too large for long inputs.
- **inference_only**: standard up to the training length L and ``log_L(n)`` beyond, per query
  position, as Qwen-1 applies it at inference only. Meant to be switched on after training.
- **yarn**: YaRN's attention temperature ``√(1/t) = 0.1 ln s + 1`` on both q and k, i.e. logits
  × ``(0.1 ln s + 1)²``, with the dynamic scale factor ``s = max(1, n/L)`` of its §3.4.

A name may carry the parameter (b or L): ``"entropy_invariant:1024"``, ``"inference_only:64"``,
``"yarn:2048"``. Scales are float32 tensors ``[B|1, 1|H, Lq, 1]``; the backbone's kernel casts them
to the query dtype (in bf16 the factor is rounded to 8 bits of mantissa; 1.0 stays exact).

Example:
    >>> import torch
    >>> from kexue.models.attention import get_attention_scale
    >>> n = torch.tensor([[[[64.0], [512.0], [4096.0]]]])
    >>> [round(x, 4) for x in get_attention_scale("entropy_invariant").factor(n).flatten().tolist()]
    [0.6667, 1.0, 1.3333]
    >>> get_attention_scale("inference_only:64").factor(n).flatten().tolist()
    [1.0, 1.5, 2.0]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from kexue.models.attention import get_attention_scale, register_attention_scale

__all__ = ["LengthScale", "DEFAULT_BASE", "ENTROPY_INVARIANT", "LOG_N", "INFERENCE_ONLY", "YARN",
           "scale_factor"]

DEFAULT_BASE = 512  # the post: "mainstream parameters are tuned for n = 512"


def _log_base(n: Tensor, base: float) -> Tensor:
    return 1.0 + torch.log(n / base) / math.log(base)  # = log_base(n), exactly 1.0 at n = base


def _natural_log(n: Tensor, base: float | None) -> Tensor:
    return torch.log(n)


def _log_beyond(n: Tensor, train_len: float) -> Tensor:
    return 1.0 + torch.log(n / train_len).clamp(min=0.0) / math.log(train_len)


def _yarn(n: Tensor, train_len: float) -> Tensor:
    return (1.0 + 0.1 * torch.log(n / train_len).clamp(min=0.0)) ** 2


@dataclass(frozen=True)
class LengthScale:
    """A scale policy ``λ(n, d) = factor(n; parameter) / √d`` for the backbone's registry.

    Args:
        name: the registry name (without the parameter).
        factor_fn: ``factor_fn(n, parameter) -> factor``, elementwise on float32 ``n``.
        parameter: the base b or training length L (> 1), or None for a policy without one.
        parameter_name: what the parameter is called in error messages.

    Example:
        >>> policy = ENTROPY_INVARIANT.with_argument("64")
        >>> policy.registry_name, float(policy(torch.tensor(64.0), 16))
        ('entropy_invariant:64', 0.25)
    """

    name: str
    factor_fn: Callable[[Tensor, float | None], Tensor]
    parameter: float | None = None
    parameter_name: str = "base"

    needs_visible_keys = True  # read by the backbone: compute per-row key counts

    def __post_init__(self) -> None:
        if self.parameter is not None and not (math.isfinite(self.parameter) and self.parameter > 1):
            raise ValueError(f"`{self.parameter_name}` of attention scale {self.name!r} must be a number > 1, "
                             f"got {self.parameter!r}")

    @property
    def registry_name(self) -> str:
        """The name that selects exactly this policy, e.g. ``"entropy_invariant:512"``."""
        return self.name if self.parameter is None else f"{self.name}:{self.parameter:g}"

    def factor(self, visible_keys: Tensor) -> Tensor:
        """The multiplier of the standard scale, float32, same shape as ``visible_keys``."""
        return self.factor_fn(visible_keys.float(), self.parameter)

    def __call__(self, visible_keys: Tensor, head_size: int) -> Tensor:
        """``factor(n) / √d``: the scale the backbone multiplies the queries with."""
        return self.factor(visible_keys) * (1.0 / math.sqrt(head_size))

    def with_argument(self, argument: str) -> "LengthScale":
        """This policy with its parameter parsed from a name such as ``"entropy_invariant:1024"``."""
        if self.parameter is None:
            raise ValueError(f"`attention_scale` {self.name!r} takes no argument, got {argument!r}")
        try:
            value = float(argument)
        except ValueError:
            raise ValueError(f"`{self.parameter_name}` of attention scale {self.name!r} must be a number, "
                             f"got {argument!r}") from None
        return dataclasses.replace(self, parameter=value)


ENTROPY_INVARIANT = register_attention_scale("entropy_invariant")(
    LengthScale("entropy_invariant", _log_base, DEFAULT_BASE))
LOG_N = register_attention_scale("log_n")(LengthScale("log_n", _natural_log))
INFERENCE_ONLY = register_attention_scale("inference_only")(
    LengthScale("inference_only", _log_beyond, DEFAULT_BASE, "train_len"))
YARN = register_attention_scale("yarn")(LengthScale("yarn", _yarn, DEFAULT_BASE, "train_len"))


def scale_factor(policy: str, visible_keys: Tensor, head_size: int) -> Tensor:
    """``λ(n, d) · √d`` of any registered policy (1 for "standard"), float32 like ``visible_keys``.

    Args:
        policy: a registry name, e.g. ``"standard"`` or ``"yarn:64"``.
        visible_keys: float ``[...]`` key counts n.
        head_size: d.

    Example:
        >>> scale_factor("standard", torch.tensor([100.0]), 64).tolist()
        [1.0]
    """
    scale_policy = get_attention_scale(policy)
    if isinstance(scale_policy, LengthScale):
        return scale_policy.factor(visible_keys)
    scale = scale_policy(visible_keys, head_size)
    return torch.as_tensor(scale, dtype=torch.float32) * math.sqrt(head_size) * torch.ones_like(visible_keys)
