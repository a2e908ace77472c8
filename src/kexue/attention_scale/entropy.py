"""Attention entropy per layer and head, for kexue Transformers and Hugging Face models.

For a query row i with attention ``a_ij = softmax_j(λ_i q_i·k_j + mask_ij)`` the entropy is
(post 8823, eq. 3, natural log, in nats)::

    H_i = −Σ_j a_ij log a_ij,      0 <= H_i <= log n_i

``attention_entropy`` runs one forward pass and returns, per layer and head, the mean of ``H_i``
over the real query tokens of the batch (rows of padding tokens are left out). Uniform attention
over n keys gives ``log n``; one-hot attention gives 0. The entropy-invariant scale aims to keep
it from growing like ``log n`` when inputs get longer.

- kexue :class:`~kexue.models.Transformer`: a forward pre-hook on every layer's softmax kernel
  reads the ``q, k`` (after RoPE), the mask and the scale the kernel receives, so whatever scale
  policy the model uses is measured as applied.
- Hugging Face models using ``ALL_ATTENTION_FUNCTIONS`` (BERT, Llama, ...): the model is switched
  for one forward pass to a probe implementation that computes the entropy from the arguments of
  the model's own implementation (kexue policies from :func:`register_hf_attention` included)
  and then calls that implementation; the previous implementation is restored afterwards. The
  probe is registered globally in transformers, so do not run two measurements at once.

Scores are computed in float32 whatever the model dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["attention_entropy", "row_entropy"]

_MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "position_ids")


def row_entropy(scores: Tensor) -> Tensor:
    """Entropy of ``softmax(scores)`` over the last dimension; ``-inf`` marks keys not seen.

    Args:
        scores: float ``[..., Lk]`` logits, ``-inf`` where masked.

    Returns:
        float32 ``[...]``; rows with no visible key give NaN.

    Example:
        >>> round(float(row_entropy(torch.zeros(8))), 4) == round(math.log(8), 4)
        True
    """
    probabilities = F.softmax(scores.float(), dim=-1)  # NaN in a row with no visible key
    return -torch.special.xlogy(probabilities, probabilities).sum(-1)


def _head_means(entropy: Tensor, weights: Tensor | None) -> Tensor:
    """Weighted mean over batch and query rows: ``[B, H, Lq]`` -> float64 ``[H]``."""
    valid = ~entropy.isnan()
    if weights is not None and weights.shape == (entropy.shape[0], entropy.shape[2]):
        valid = valid & weights[:, None, :].bool()
    values = entropy.double().nan_to_num(0.0) * valid
    return values.sum((0, 2)) / valid.sum((0, 2)).clamp(min=1)


def _masked_scores(query: Tensor, key: Tensor, scale, mask: Tensor | None) -> Tensor:
    """``scale · q kᵀ`` in float32 with ``-inf`` at keys a bool mask hides (or plus a float mask)."""
    if key.shape[1] != query.shape[1]:  # grouped-query attention: share each key head
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    scale = scale.float() if isinstance(scale, Tensor) else scale
    scores = (query.float() @ key.float().transpose(-1, -2)) * scale
    if mask is None:
        return scores
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, -math.inf)
    return scores + mask.float()


def _kexue_entropy(model: nn.Module, inputs: dict, weights: Tensor | None) -> Tensor:
    from kexue.models.attention import SoftmaxAttention

    per_layer: list[Tensor] = []

    def record(module: nn.Module, args: tuple) -> None:
        query, key, _, mask, scale = args
        per_layer.append(_head_means(row_entropy(_masked_scores(query, key, scale, mask)), weights))

    handles = []
    for index, layer in enumerate(model.layers):
        kernel = layer.attention.kernel
        if not isinstance(kernel, SoftmaxAttention):
            raise TypeError(f"attention entropy needs softmax attention; layer {index} uses {type(kernel).__name__}")
        handles.append(kernel.register_forward_pre_hook(record))
    try:
        model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(per_layer)


def _hf_entropy(model: nn.Module, inputs: dict, weights: Tensor | None) -> Tensor:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from kexue.attention_scale.hf import _is_causal, hf_visible_keys, registered_policy, scaled_query

    original = model.config._attn_implementation
    inner = AttentionInterface._global_mapping.get(original, sdpa_attention_forward)  # eager == sdpa in eval
    policy = registered_policy(original)
    per_module: dict[int, Tensor] = {}

    def probe(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        scaled, scale = scaled_query(policy, module, query, key, attention_mask, scaling, kwargs) \
            if policy is not None else (query, scaling)
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        mask = attention_mask
        if _is_causal(module, attention_mask, query.shape[2], kwargs):  # SDPA's implicit causal mask
            counts = hf_visible_keys(None, query.shape[2], key.shape[2], True, query.device)
            mask = torch.arange(key.shape[2], device=query.device) < counts
        per_module[id(module)] = _head_means(row_entropy(_masked_scores(scaled, key, scale, mask)), weights)
        return inner(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)

    name = f"kexue_entropy_probe:{original}"
    AttentionInterface.register(name, probe)
    mask_function = AttentionMaskInterface._global_mapping.get(original)
    if mask_function is not None:
        AttentionMaskInterface.register(name, mask_function)
    model.set_attn_implementation(name)
    try:
        model(**inputs)
    finally:
        model.set_attn_implementation(original)
    return torch.stack(list(per_module.values()))


@torch.no_grad()
def attention_entropy(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Mean attention entropy (nats) per layer and head over the real query tokens of ``batch``.

    Args:
        model: a :class:`kexue.models.Transformer` (softmax kernel) or a Hugging Face model whose
            attention goes through ``AttentionInterface``. Run in eval mode (restored after).
        batch: ``input_ids`` ``[B, L]`` and optionally ``attention_mask`` (2-D: 1 = token; its
            zero positions are left out of the mean as queries), ``token_type_ids``, ``position_ids``.
            Other keys are ignored.

    Returns:
        float64 ``[layers, heads]`` (for HF models: one row per attention module called, in order).

    Raises:
        TypeError: a model of neither kind, or a kexue layer whose kernel is not softmax attention.

    Example:
        >>> from kexue.models import Transformer, TransformerConfig
        >>> config = TransformerConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
        ...                            intermediate_size=64)
        >>> model = Transformer(config)
        >>> batch = {"input_ids": torch.randint(1, 50, (2, 16)), "attention_mask": torch.ones(2, 16)}
        >>> entropy = attention_entropy(model, batch)
        >>> entropy.shape, bool((entropy <= math.log(16) + 1e-6).all())
        (torch.Size([2, 4]), True)
    """
    from kexue.models import Transformer

    inputs = {name: batch[name] for name in _MODEL_INPUTS if name in batch}
    mask = inputs.get("attention_mask")
    weights = mask.bool() if mask is not None and mask.dim() == 2 else None
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, Transformer):
            return _kexue_entropy(model, inputs, weights)
        if hasattr(model, "set_attn_implementation") and hasattr(model, "config"):
            return _hf_entropy(model, inputs, weights)
        raise TypeError(f"`model` must be a kexue Transformer or a Hugging Face PreTrainedModel, "
                        f"got {type(model).__name__}")
    finally:
        model.train(was_training)
