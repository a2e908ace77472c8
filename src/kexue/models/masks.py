"""Attention masks as small composable pure functions (bert4keras style).

Every builder returns a **bool** tensor shaped ``[batch, 1, q_len, k_len]`` where
``True`` means "this query may attend to this key". Dimensions of size 1
broadcast, so masks combine with ``&``::

    mask = masks.unilm_mask(token_type_ids) & masks.padding_mask(attention_mask)

Builders (``s`` = segment / token type id, ``i`` query index, ``j`` key index):

- ``padding_mask``: key ``j`` is a real token.            -> ``[B, 1, 1, L]``
- ``causal_mask``: ``j <= i`` (GPT).                       -> ``[1, 1, L, L]``
- ``unilm_mask``: ``cumsum(s)_j <= cumsum(s)_i`` (UniLM seq2seq, bert4keras
  ``UniLM_Mask``): the source (type 0) is bidirectional, the target (type 1)
  is causal and sees the whole source.
- ``uniae_mask``: UniVAE (kexue.fm/archives/8475): the encoder half (type 0)
  is bidirectional within itself; the decoder half (type 1) sees only the
  encoder's [CLS] (position 0) and its own causal prefix.
- ``independent_mask``: ``s_i == s_j``; the two halves never see each other.

The model turns the bool mask into a float *additive* mask itself
(:func:`additive_mask`). Rows with no visible key get a zero attention output
instead of NaN.

Traps when handing masks to Hugging Face transformers 5.x instead of kexue
(measured in ``shared/notes/env.md`` section 3):

- 3-D masks ``[B, Lq, Lk]`` are rejected (``RuntimeError: expand ...``).
- 4-D masks are passed through unchanged, so they must already be in the
  backend's format. A 4-D **bool** mask is right under sdpa but silently wrong
  under eager and RoFormer (0/1 is *added* to the scores); a 4-D **long** 0/1
  mask is silently wrong under eager and raises under sdpa.
- Safe for every HF backend: a float additive mask
  ``(~mask).float() * torch.finfo(dtype).min`` -- :func:`additive_mask`.
- A custom ``AttentionInterface`` also needs an ``AttentionMaskInterface``
  under the same name, or 2-D padding masks are silently dropped.

Example:
    >>> import torch
    >>> segments = torch.tensor([[0, 0, 1, 1]])
    >>> unilm_mask(segments)[0, 0].int()
    tensor([[1, 1, 0, 0],
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [1, 1, 1, 1]], dtype=torch.int32)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "padding_mask", "causal_mask", "unilm_mask", "uniae_mask", "independent_mask",
    "additive_mask", "as_bool_mask",
]


def _check_2d(name: str, tensor: Tensor) -> None:
    if tensor.dim() != 2:
        raise ValueError(f"`{name}` must be 2-D [batch, length], got shape {tuple(tensor.shape)}")


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Keys-only padding mask.

    Args:
        attention_mask: ``[B, L]``, nonzero / True for real tokens (the tokenizer's
            ``attention_mask``).

    Returns:
        Bool ``[B, 1, 1, L]``; broadcasts over queries.
    """
    _check_2d("attention_mask", attention_mask)
    return attention_mask.bool()[:, None, None, :]


def causal_mask(length: int, device: torch.device | str | None = None, past_length: int = 0) -> Tensor:
    """Lower-triangular mask: query ``i`` sees keys ``j <= i``.

    Args:
        length: number of query positions.
        device: device of the result.
        past_length: positions already in a KV cache; queries are positions
            ``past_length .. past_length + length - 1`` over ``past_length + length`` keys.

    Returns:
        Bool ``[1, 1, length, past_length + length]``.

    Example:
        >>> causal_mask(2, past_length=1)[0, 0].int()
        tensor([[1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
    """
    query_index = torch.arange(past_length, past_length + length, device=device)
    key_index = torch.arange(past_length + length, device=device)
    return (key_index[None, :] <= query_index[:, None])[None, None]


def unilm_mask(token_type_ids: Tensor) -> Tensor:
    """UniLM seq2seq mask: bidirectional source, causal target that sees the source.

    Padding after the target has the segment id 0 in most tokenizers, so it stays
    visible to target rows: combine with :func:`padding_mask`.

    Args:
        token_type_ids: ``[B, L]``, 0 for the source, 1 for the target.

    Returns:
        Bool ``[B, 1, L, L]``.
    """
    _check_2d("token_type_ids", token_type_ids)
    index = torch.cumsum(token_type_ids, dim=1)
    return (index[:, None, :] <= index[:, :, None])[:, None]


def uniae_mask(token_type_ids: Tensor) -> Tensor:
    """UniVAE mask: the decoder sees only the encoder's [CLS] and its own prefix.

    Args:
        token_type_ids: ``[B, L]``, 0 for the encoder half (``[CLS]`` at position 0),
            1 for the decoder half.

    Returns:
        Bool ``[B, 1, L, L]``.

    Example:
        >>> uniae_mask(torch.tensor([[0, 0, 1, 1]]))[0, 0].int()
        tensor([[1, 1, 0, 0],
                [1, 1, 0, 0],
                [1, 0, 1, 0],
                [1, 0, 1, 1]], dtype=torch.int32)
    """
    _check_2d("token_type_ids", token_type_ids)
    decoder = token_type_ids.bool()
    length = token_type_ids.shape[1]
    position = torch.arange(length, device=token_type_ids.device)
    query_dec, key_dec = decoder[:, :, None], decoder[:, None, :]
    encoder_block = ~query_dec & ~key_dec
    decoder_block = query_dec & key_dec & (position[None, :] <= position[:, None])
    sees_cls = query_dec & (position == 0)[None, None, :]
    return (encoder_block | decoder_block | sees_cls)[:, None]


def independent_mask(token_type_ids: Tensor) -> Tensor:
    """Block-diagonal mask: each segment is bidirectional within itself only.

    Args:
        token_type_ids: ``[B, L]`` segment ids.

    Returns:
        Bool ``[B, 1, L, L]``.
    """
    _check_2d("token_type_ids", token_type_ids)
    return (token_type_ids[:, None, :] == token_type_ids[:, :, None])[:, None]


def as_bool_mask(mask: Tensor, key_length: int) -> Tensor:
    """Normalise a user mask to bool ``[B, 1|H, Lq|1, Lk]`` (True = may attend).

    Accepts a 2-D padding mask of any dtype (nonzero = real token), a 4-D bool
    mask, or a 4-D float additive mask whose entries are 0 (attend) or
    ``<= -1e4`` (blocked).

    Args:
        mask: the mask as given to the model.
        key_length: number of keys (cache + new tokens), checked against the mask.

    Returns:
        Bool mask broadcastable to ``[B, H, Lq, Lk]``.

    Raises:
        ValueError: wrong rank or key length, a 4-D integer mask, or a float
            mask with soft values.
    """
    if mask.dim() == 2:
        mask = padding_mask(mask)
    elif mask.dim() != 4:
        raise ValueError(f"`attention_mask` must be 2-D [B, L] or 4-D [B, 1|H, Lq, Lk], got shape {tuple(mask.shape)}")
    elif mask.is_floating_point():
        soft = (mask < 0) & (mask > -1e4) | (mask > 0)
        if soft.any():
            raise ValueError("a float `attention_mask` must be additive: 0 to attend, <= -1e4 to block")
        mask = mask == 0
    elif mask.dtype != torch.bool:
        raise ValueError(f"a 4-D `attention_mask` must be bool or float, got {mask.dtype} "
                         "(0/1 integers are ambiguous)")
    if mask.shape[-1] != key_length:
        raise ValueError(f"`attention_mask` covers {mask.shape[-1]} keys but there are {key_length} "
                         "(with a KV cache, masks span cached + new tokens)")
    return mask


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Turn a bool mask into the float additive mask SDPA and eager attention add to scores.

    ``torch.finfo(dtype).min`` rather than ``-inf`` keeps fully masked rows finite
    (a uniform softmax) instead of NaN; kexue then zeroes those rows' output.

    Args:
        mask: bool, True = may attend.
        dtype: dtype of the attention scores.

    Returns:
        Float tensor of ``mask``'s shape: 0 where True, ``finfo(dtype).min`` where False.
    """
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)
