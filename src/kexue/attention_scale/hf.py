"""The scale policies for Hugging Face models, through transformers' ``AttentionInterface``.

:func:`register_hf_attention` registers one named attention implementation per policy. It
computes ``n``, the keys each query row can see, from the mask the model built, multiplies the
query by the policy's factor (the model keeps its own ``scaling``, usually ``1/√d``), and hands
over to transformers' SDPA function::

    o = SDPA(factor(n) · q, k, v, mask, scaling)  =  softmax(factor(n) · scaling · q kᵀ + mask) v

It also registers transformers' ``sdpa_mask`` under the same name: without a mask function of
its own name transformers skips mask creation and silently drops 2-D padding masks.

Works for models whose attention goes through ``ALL_ATTENTION_FUNCTIONS`` (BERT, Llama, Qwen2,
Mistral, ...). Hugging Face's RoFormer does not (transformers 5.x hard-codes its attention): use
:class:`kexue.models.Transformer`, which loads RoFormer checkpoints, instead.

How ``n`` is read, per query row:

- a boolean mask (``sdpa_mask``): the number of True keys in the row;
- a float additive mask (a user's 4-D mask): keys above ``finfo.min / 2``;
- no mask: all keys, or for causal self-attention (``is_causal`` as SDPA decides it)
  ``n_i = Lk − Lq + i + 1`` (a dynamic KV cache).
Rows that see nothing count 1. dtype: the factor is computed in float32 and cast to the query
dtype (fp32/bf16/fp16); at ``n = base`` it is exactly 1, so the output equals plain ``"sdpa"``.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor, nn

from kexue.attention_scale.policies import LengthScale
from kexue.models.attention import get_attention_scale

__all__ = ["register_hf_attention", "hf_visible_keys", "scaled_query", "registered_policy"]

_POLICIES: dict[str, Any] = {}  # implementation name -> scale policy, as registered in transformers


def hf_visible_keys(attention_mask: Tensor | None, query_length: int, key_length: int, causal: bool,
                    device: torch.device | None = None) -> Tensor:
    """Keys each query row can see, float32 ``[B|1, 1|H, Lq, 1]`` (at least 1).

    Args:
        attention_mask: bool ``[B, 1|H, Lq|1, Lk]`` (True = attend), float additive, or None.
        query_length: ``Lq``.
        key_length: ``Lk``.
        causal: without a mask, whether query ``i`` sees only keys ``<= Lk − Lq + i``.
        device: device of the result when ``attention_mask`` is None.

    Example:
        >>> hf_visible_keys(None, 3, 5, causal=True).flatten().tolist()
        [3.0, 4.0, 5.0]
    """
    if attention_mask is None:
        if causal:
            counts = torch.arange(key_length - query_length + 1, key_length + 1, device=device, dtype=torch.float32)
            return counts.view(1, 1, query_length, 1)
        return torch.full((1, 1, query_length, 1), float(key_length), device=device)
    visible = attention_mask if attention_mask.dtype == torch.bool else \
        attention_mask > torch.finfo(attention_mask.dtype).min / 2
    counts = visible.sum(-1, keepdim=True, dtype=torch.float32).clamp(min=1.0)
    return counts.expand(*counts.shape[:2], query_length, 1)


def _is_causal(module: nn.Module, attention_mask: Tensor | None, query_length: int, kwargs: dict) -> bool:
    """SDPA's own rule (transformers.integrations.sdpa_attention) for applying a causal mask."""
    flag = kwargs.get("is_causal")
    flag = getattr(module, "is_causal", True) if flag is None else flag
    return bool(query_length > 1 and attention_mask is None and flag)


class _CountsPerMask:
    """:func:`hf_visible_keys`, counted once per mask tensor: every layer of a forward pass gets the same mask.

    Counting a ``[B, 1, L, L]`` mask costs about as much as a layer's attention at L = 4096, so
    it is not repeated per layer. The cache holds the counts and a weak reference to the mask.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._counts: Tensor | None = None

    def __call__(self, attention_mask: Tensor | None, query_length: int, key_length: int, causal: bool,
                 device: torch.device | None = None) -> Tensor:
        if attention_mask is None:
            return hf_visible_keys(None, query_length, key_length, causal, device)
        key = (attention_mask._version, query_length, key_length)
        if self._key is not None and self._key[0]() is attention_mask and self._key[1:] == key:
            return self._counts
        self._counts = hf_visible_keys(attention_mask, query_length, key_length, causal, device)
        self._key = (weakref.ref(attention_mask), *key)
        return self._counts


def scaled_query(policy, module: nn.Module, query: Tensor, key: Tensor, attention_mask: Tensor | None,
                 scaling: float | None, kwargs: dict, count=hf_visible_keys) -> tuple[Tensor, float | None]:
    """``(query, scaling)`` to pass to SDPA so that it applies ``policy`` per row.

    A :class:`LengthScale` multiplies the query by ``factor(n)`` and keeps the model's scaling;
    any other registered policy ``λ(n, d)`` replaces the scaling (a float) or multiplies the
    query with ``λ`` and passes ``scaling=1`` (a tensor). ``count`` computes n (see :func:`hf_visible_keys`).
    """
    query_length, key_length, head_size = query.shape[2], key.shape[2], query.shape[-1]
    causal = _is_causal(module, attention_mask, query_length, kwargs)
    needs_counts = getattr(policy, "needs_visible_keys", True)
    visible = count(attention_mask, query_length, key_length, causal, query.device) if needs_counts else None
    if isinstance(policy, LengthScale):
        return query * policy.factor(visible).to(query.dtype), scaling
    scale = policy(visible, head_size)
    if isinstance(scale, Tensor):
        return query * scale.to(query.dtype), 1.0
    return query, scale


def _attention_function(policy):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    count = _CountsPerMask()

    def attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                  dropout: float = 0.0, scaling: float | None = None, **kwargs):
        query, scaling = scaled_query(policy, module, query, key, attention_mask, scaling, kwargs, count)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)

    return attention


def register_hf_attention(policy: str = "entropy_invariant", name: str | None = None) -> str:
    """Register ``policy`` as a transformers attention implementation and return its name.

    Switch it on with ``from_pretrained(..., attn_implementation=name)``, ``Config(...,
    attn_implementation=name)`` or ``model.set_attn_implementation(name)``.

    Args:
        policy: a kexue scale-policy name, e.g. ``"entropy_invariant"``, ``"inference_only:2048"``.
        name: the implementation name; default ``"kexue_" + policy``.

    Returns:
        The implementation name.

    Raises:
        ValueError: an unknown policy, or a name with "/" (transformers reads those as Hub kernels).

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> name = register_hf_attention("entropy_invariant")
        >>> config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                     intermediate_size=64, attn_implementation=name)
        >>> BertModel(config).config._attn_implementation
        'kexue_entropy_invariant'
    """
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    scale_policy = get_attention_scale(policy)
    name = name or f"kexue_{policy}"
    if "/" in name:
        raise ValueError(f"`name` must not contain '/', got {name!r}")
    AttentionInterface.register(name, _attention_function(scale_policy))
    AttentionMaskInterface.register(name, sdpa_mask)  # else 2-D padding masks are dropped
    _POLICIES[name] = scale_policy
    return name


def registered_policy(implementation: str):
    """The kexue policy behind an implementation name, or None for any other (sdpa, eager, ...)."""
    return _POLICIES.get(implementation)
