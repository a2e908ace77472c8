"""Multi-head self-attention with a pluggable scale policy and a pluggable kernel.

For each head, with rotary positions (RoPE, kexue.fm/archives/8265) applied to
``q`` and ``k`` only (as Hugging Face RoFormer with ``rotary_value=False``)::

    o = kernel(R_i q, R_j k, v, mask, scale),  softmax kernel: softmax(scale * q k^T + mask) v

Two registries make the pieces choosable by name from :class:`TransformerConfig`:

- **Scale policies** (``attention_scale``): ``fn(visible_keys, head_size) -> scale``
  where ``visible_keys`` is a float ``[B, 1|H, Lq, 1]`` count of keys each query
  row may attend to (computed from the mask, so padding and causal masks are
  per row) and ``scale`` is a float or a tensor broadcastable to ``[B, H, Lq, 1]``.
  "standard" is ``1 / sqrt(head_size)``. The counts are computed only when the
  policy's ``needs_visible_keys`` attribute is true (default true). Rows with no
  visible key report 1; their output is zeroed anyway. The entropy-invariant
  ``log n`` scale (kexue.fm/archives/8823) registers itself here.
- **Kernels** (``attention_kernel``): ``factory(config, layer_index) -> nn.Module``
  whose ``forward(q, k, v, mask, scale)`` maps ``q, k, v`` ``[B, H, L, d]`` to
  ``[B, H, Lq, d]``; ``mask`` is bool (True = may attend) or None. "softmax"
  uses ``torch.nn.functional.scaled_dot_product_attention``. A float scale goes
  to SDPA's ``scale`` argument unchanged (so "standard" *is* SDPA's default);
  a tensor (per-row) scale multiplies ``q`` and SDPA gets ``scale=1.0``.

Example:
    >>> import torch
    >>> @register_attention_scale("half_standard")
    ... def half_standard(visible_keys, head_size):
    ...     return 0.5 / head_size ** 0.5
    >>> get_attention_scale("half_standard")(None, 16)
    0.125
"""

from __future__ import annotations

import importlib
import math
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.models.masks import additive_mask

__all__ = [
    "register_attention_scale", "get_attention_scale", "register_attention_kernel",
    "get_attention_kernel", "visible_key_counts", "rope_angles", "apply_rope",
    "SoftmaxAttention", "SelfAttention", "KVCache",
]

Scale = Union[float, Tensor]
ScalePolicy = Callable[[Tensor, int], Scale]
KernelFactory = Callable[..., nn.Module]

class _Registry(dict):
    """Name -> callable table whose lookup error names the config field and the known names.

    A name ``"family:argument"`` (e.g. ``"entropy_invariant:1024"``, ``"linear:taylor2"``) resolves
    to ``family.with_argument(argument)``. Families that kexue's capability packages register are
    imported on first use (``builtin_modules``), so a saved config naming them loads in a fresh
    process; the backbone still does not import any capability until a config asks for it.
    """

    def __init__(self, field: str, builtin_modules: dict[str, str]) -> None:
        super().__init__()
        self.field, self.builtin_modules = field, builtin_modules

    def register(self, name: str) -> Callable[[Callable], Callable]:
        def decorate(item: Callable) -> Callable:
            self[name] = item
            return item
        return decorate

    def lookup(self, name: str) -> Callable:
        family, colon, argument = name.partition(":")
        if family not in self and family in self.builtin_modules:
            importlib.import_module(self.builtin_modules[family])
        if family not in self:
            raise ValueError(f"unknown `{self.field}` {name!r}; registered: {sorted(self)}")
        item = self[family]
        if not colon:
            return item
        if not hasattr(item, "with_argument"):
            raise ValueError(f"`{self.field}` {family!r} takes no argument, got {name!r}")
        return item.with_argument(argument)


_SCALE_POLICIES = _Registry("attention_scale", {
    name: "kexue.attention_scale" for name in ("entropy_invariant", "log_n", "inference_only", "yarn")})
_KERNELS = _Registry("attention_kernel", {"linear": "kexue.linear_attention"})


def register_attention_scale(name: str) -> Callable[[ScalePolicy], ScalePolicy]:
    """Decorator registering a scale policy ``fn(visible_keys, head_size) -> scale`` under ``name``."""
    return _SCALE_POLICIES.register(name)


def get_attention_scale(name: str) -> ScalePolicy:
    """Look up a scale policy (``"name"`` or ``"family:argument"``); raises ``ValueError`` listing the known names."""
    return _SCALE_POLICIES.lookup(name)


def register_attention_kernel(name: str) -> Callable[[KernelFactory], KernelFactory]:
    """Decorator registering a kernel ``factory(config, layer_index) -> nn.Module`` under ``name``."""
    return _KERNELS.register(name)


def get_attention_kernel(name: str) -> KernelFactory:
    """Look up a kernel factory (``"name"`` or ``"family:argument"``); raises ``ValueError`` listing the known names."""
    return _KERNELS.lookup(name)


@register_attention_scale("standard")
def standard_scale(visible_keys: Tensor | None, head_size: int) -> float:
    """``1 / sqrt(d)`` of "Attention is all you need"; ignores the number of keys."""
    return 1.0 / math.sqrt(head_size)


standard_scale.needs_visible_keys = False  # type: ignore[attr-defined]


def visible_key_counts(mask: Tensor | None, query_length: int, key_length: int,
                       device: torch.device | None = None) -> Tensor:
    """Number of keys each query row may attend to, as float ``[B|1, 1|H, Lq, 1]`` (at least 1).

    Args:
        mask: bool ``[B, 1|H, Lq|1, Lk]`` (True = may attend) or None (all keys).
        query_length: ``Lq``.
        key_length: ``Lk``.
        device: device of the result when ``mask`` is None.
    """
    if mask is None:
        return torch.full((1, 1, query_length, 1), float(key_length), device=device)
    counts = mask.sum(-1, keepdim=True, dtype=torch.float32).clamp(min=1.0)
    return counts.expand(*counts.shape[:2], query_length, 1)


def rope_angles(position_ids: Tensor, head_size: int) -> tuple[Tensor, Tensor]:
    """Sines and cosines of RoPE: ``theta_{p,i} = p / 10000^(2i/d)``, i < d/2.

    Computed in float64 like transformers' ``RoFormerSinusoidalPositionalEmbedding``
    (which builds its table with numpy), then cast to float32.

    Args:
        position_ids: ``[B|1, L]`` integer positions.
        head_size: ``d``, even.

    Returns:
        ``(sin, cos)``, each float32 ``[B|1, 1, L, d/2]``.
    """
    exponent = torch.arange(0, head_size, 2, dtype=torch.float64, device=position_ids.device) / head_size
    angles = position_ids.to(torch.float64)[:, None, :, None] / torch.pow(10000.0, exponent)
    return angles.sin().float(), angles.cos().float()


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """Rotate interleaved pairs ``(x_{2i}, x_{2i+1})`` by ``theta_i`` (RoFormer, eq. 13 of post 8265).

    Args:
        x: ``[B, H, L, d]``.
        sin, cos: ``[B|1, 1, L, d/2]`` from :func:`rope_angles`.

    Returns:
        The rotated ``x``, same shape and dtype.
    """
    sin, cos = sin.to(x.dtype), cos.to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)
    return rotated.flatten(-2)


class SoftmaxAttention(nn.Module):
    """Scaled dot-product softmax attention through ``F.scaled_dot_product_attention``.

    Args:
        dropout: dropout on the attention probabilities, applied only in training.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: Scale) -> Tensor:
        """``q, k, v`` ``[B, H, L, d]``; ``mask`` bool or None; returns ``[B, H, Lq, d]``."""
        if isinstance(scale, Tensor):
            q, scale = q * scale.to(q.dtype), 1.0
        float_mask = None if mask is None else additive_mask(mask, q.dtype)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, dropout_p=dropout, scale=scale)
        if mask is not None:  # rows that may see nothing: zero, not a uniform average
            out = out.masked_fill(~mask.any(-1, keepdim=True), 0.0)
        return out


@register_attention_kernel("softmax")
def _softmax_factory(config, layer_index: int) -> SoftmaxAttention:
    return SoftmaxAttention(config.attention_dropout)


class SelfAttention(nn.Module):
    """Projections, RoPE, KV cache and the kernel of one layer's self-attention.

    Args:
        config: a :class:`kexue.models.TransformerConfig`.
        layer_index: index of the layer, passed to the kernel factory and the cache.
    """

    def __init__(self, config, layer_index: int) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads, self.head_size = config.num_heads, config.head_size
        self.layer_index = layer_index
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, hidden)
        self.kernel = get_attention_kernel(config.attention_kernel)(config, layer_index)

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape  # [B, L, H*d] -> [B, H, L, d]
        return x.view(batch, length, self.num_heads, self.head_size).transpose(1, 2)

    def forward(self, hidden: Tensor, mask: Tensor | None, scale: Scale,
                rope: tuple[Tensor, Tensor] | None = None, kv_cache=None) -> Tensor:
        """Attend ``hidden`` ``[B, L, H]`` to itself (plus cached keys); returns ``[B, L, H]``.

        Args:
            hidden: ``[B, L, hidden]``.
            mask: bool ``[B, 1|H, L|1, Lk]`` or None.
            scale: from the scale policy.
            rope: ``(sin, cos)`` for the new positions, or None for absolute positions.
            kv_cache: a :class:`kexue.models.KVCache` to read and extend, or None.
        """
        q, k, v = self._heads(self.query(hidden)), self._heads(self.key(hidden)), self._heads(self.value(hidden))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_index, k, v)
        out = self.kernel(q, k, v, mask, scale)  # [B, H, Lq, d]
        return self.output(out.transpose(1, 2).flatten(2))


class KVCache:
    """Keys and values of past positions, per layer, for incremental decoding.

    Feed the prefix once, then one (or a few) tokens at a time; each layer appends
    its new ``K`` (after RoPE) and ``V`` and attends over everything cached. New
    positions start at :attr:`length`. Masks passed along a cached forward span
    cached + new keys; with one new target token under a UniLM mask every key is
    visible, so ``attention_mask=None`` is right.

    Example:
        >>> cache = KVCache()
        >>> k = torch.zeros(1, 2, 3, 4)
        >>> _ = cache.update(0, k, k)
        >>> cache.length
        3
    """

    def __init__(self) -> None:
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []

    @property
    def length(self) -> int:
        """Number of cached positions (0 when empty)."""
        return self.keys[0].shape[-2] if self.keys else 0

    def update(self, layer_index: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``key``/``value`` ``[B, H, L_new, d]`` for one layer; return all ``[B, H, L, d]``."""
        if layer_index == len(self.keys):
            self.keys.append(key)
            self.values.append(value)
        elif layer_index < len(self.keys):
            self.keys[layer_index] = torch.cat([self.keys[layer_index], key], dim=-2)
            self.values[layer_index] = torch.cat([self.values[layer_index], value], dim=-2)
        else:
            raise ValueError(f"KVCache got layer {layer_index} before layer {len(self.keys)}")
        return self.keys[layer_index], self.values[layer_index]

    def reorder(self, batch_indices: Tensor) -> None:
        """Keep/reorder batch rows in place, e.g. after a beam-search step."""
        self.keys = [k.index_select(0, batch_indices) for k in self.keys]
        self.values = [v.index_select(0, batch_indices) for v in self.values]
