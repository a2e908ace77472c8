"""The kexue Transformer: a compact post-norm BERT / RoFormer encoder with heads.

Read top to bottom: embeddings -> blocks -> heads. Each block is post-norm as in
BERT and RoFormer::

    h = LayerNorm(h + Dropout(Attention(h)))
    h = LayerNorm(h + Dropout(W_2 act(W_1 h)))

Positions are absolute learned embeddings (BERT) or rotary (RoFormer,
kexue.fm/archives/8265), chosen by ``config.position``. Heads, all optional:

- MLM / LM head ``W_e^T LayerNorm(act(W h)) + b`` tied to the word embeddings,
  computed only at the requested positions: the vocabulary projection dominates
  CPU time, so scoring only masked positions is 2-4x faster.
- Pooler ``tanh(W h_[CLS])`` and NSP head on it (index 0 = IsNext, as in HF).

Why our own and not transformers': RoFormer there has no SDPA, no attention
hook and no 4-D bool masks; here attention scale and kernel are pluggable
(:mod:`kexue.models.attention`), masks are composable (:mod:`kexue.models.masks`)
and a ``layer_hook`` may read or replace hidden states after every layer.
Outputs match transformers on the same weights (tests/test_models_hf_parity.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.models import masks
from kexue.models.attention import (KVCache, SelfAttention, get_attention_scale, rope_angles,
                                    visible_key_counts)
from kexue.models.config import TransformerConfig

__all__ = ["Transformer", "TransformerOutput"]

LayerHook = Callable[[int, Tensor], Union[Tensor, None]]


def _gelu_tanh(x: Tensor) -> Tensor:
    """GELU with the tanh approximation (HF "gelu_new")."""
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact erf form, as BERT
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


@dataclass
class TransformerOutput:
    """What :meth:`Transformer.forward` returns.

    Attributes:
        hidden_states: ``[B, L, H]`` output of the last layer.
        pooled: ``[B, H]`` ``tanh(W h_cls)``, or None without a pooler.
        mlm_logits: ``[N, V]`` at the selected positions (row-major order of
            ``hidden[mlm_positions]``), or None.
        nsp_logits: ``[B, 2]``, index 0 = IsNext, or None without an NSP head.
    """

    hidden_states: Tensor
    pooled: Tensor | None = None
    mlm_logits: Tensor | None = None
    nsp_logits: Tensor | None = None


class Embeddings(nn.Module):
    """Word + token type (+ absolute position) embeddings, then LayerNorm and dropout."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.position = (nn.Embedding(config.max_positions, config.hidden_size)
                         if config.position == "absolute" else None)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Ids ``[B, L]`` -> embeddings ``[B, L, H]``."""
        embedded = self.word(input_ids) + self.token_type(token_type_ids)
        if self.position is not None:
            embedded = embedded + self.position(position_ids)
        return self.dropout(self.norm(embedded))


class Block(nn.Module):
    """One post-norm Transformer layer: self-attention, then feed-forward."""

    def __init__(self, config: TransformerConfig, layer_index: int) -> None:
        super().__init__()
        self.attention = SelfAttention(config, layer_index)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = _ACTIVATIONS[config.hidden_act]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden: Tensor, mask: Tensor | None, scale, rope, kv_cache) -> Tensor:
        """``[B, L, H]`` -> ``[B, L, H]``; see :class:`SelfAttention` for the other arguments."""
        attended = self.attention(hidden, mask, scale, rope, kv_cache)
        hidden = self.attention_norm(hidden + self.dropout(attended))
        fed = self.ffn_out(self.act(self.ffn_in(hidden)))
        return self.ffn_norm(hidden + self.dropout(fed))


class MLMHead(nn.Module):
    """BERT's prediction head: dense + act + LayerNorm, then the tied embedding matrix + bias."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = _ACTIVATIONS[config.hidden_act]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        """``[N, H]`` -> logits ``[N, V]``."""
        return F.linear(self.norm(self.act(self.transform(hidden))), word_embeddings, self.bias)


class Transformer(nn.Module):
    """BERT / RoFormer encoder with optional pooler, MLM and NSP heads.

    Args:
        config: the :class:`TransformerConfig`.

    Example:
        >>> import torch
        >>> from kexue.models import TransformerConfig, Transformer, masks
        >>> config = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
        ...                            intermediate_size=64, max_positions=16)
        >>> model = Transformer(config).eval()
        >>> ids = torch.tensor([[2, 5, 7, 3, 0]])
        >>> segments = torch.tensor([[0, 0, 1, 1, 0]])
        >>> mask = masks.unilm_mask(segments) & masks.padding_mask(ids != 0)
        >>> out = model(ids, segments, attention_mask=mask, mlm_positions=ids == 7)
        >>> out.hidden_states.shape, out.mlm_logits.shape, out.nsp_logits.shape
        (torch.Size([1, 5, 32]), torch.Size([1, 100]), torch.Size([1, 2]))
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.scale_policy = get_attention_scale(config.attention_scale)
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if config.pooler else None
        self.mlm = MLMHead(config) if config.mlm_head else None
        self.nsp = nn.Linear(config.hidden_size, 2) if config.nsp_head else None
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT init: N(0, initializer_range) weights, zero biases, identity LayerNorm."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            elif module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | Sequence[Tensor | None] | None = None, position_ids: Tensor | None = None,
                mlm_positions: Tensor | str | None = None, kv_cache: KVCache | None = None,
                layer_hook: LayerHook | None = None) -> TransformerOutput:
        """Encode ``input_ids`` and run the enabled heads.

        Args:
            input_ids: ``[B, L]`` token ids.
            token_type_ids: ``[B, L]`` segment ids; zeros by default.
            attention_mask: 2-D ``[B, L_keys]`` padding mask (nonzero = real token), or
                4-D bool ``[B, 1|H, Lq, Lk]`` (True = may attend) from :mod:`masks`, or
                4-D float additive (0 / ``<= -1e4``); None attends everywhere. A list or
                tuple of ``num_layers`` such masks gives each layer its own (e.g. UniVAE's
                independent masks below UniAE masks).
            position_ids: ``[B|1, L]``; by default ``cache length + arange(L)``.
            mlm_positions: bool ``[B, L]`` positions to score with the MLM head, or
                "all"; None skips the MLM head.
            kv_cache: a :class:`KVCache` read and extended in place.
            layer_hook: ``hook(layer_index, hidden)`` called after each layer; a
                returned tensor replaces the hidden states.

        Returns:
            A :class:`TransformerOutput`.

        Raises:
            ValueError: bad mask shapes or dtypes, positions past ``max_positions``
                with absolute positions, or ``mlm_positions`` without an MLM head.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must be 2-D [batch, length], got shape {tuple(input_ids.shape)}")
        length = input_ids.shape[1]
        past = kv_cache.length if kv_cache is not None else 0
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=input_ids.device)[None]
        self._check_positions(position_ids)
        layer_masks = self._layer_masks(attention_mask, past + length)
        rope = rope_angles(position_ids, self.config.head_size) if self.config.position == "rope" else None
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)
        scaled_mask: object = ()  # the scale depends on the mask: evaluate it only when the mask changes
        for index, (layer, mask) in enumerate(zip(self.layers, layer_masks)):
            if mask is not scaled_mask:
                scale, scaled_mask = self._attention_scale(mask, length, past + length, input_ids.device), mask
            hidden = layer(hidden, mask, scale, rope, kv_cache)
            if layer_hook is not None:
                replaced = layer_hook(index, hidden)
                hidden = hidden if replaced is None else replaced
        return self._heads(hidden, mlm_positions)

    def _layer_masks(self, attention_mask, key_length: int) -> list[Tensor | None]:
        """One bool mask (or None) per layer, from a single mask or a per-layer list."""
        if not isinstance(attention_mask, (list, tuple)):
            mask = None if attention_mask is None else masks.as_bool_mask(attention_mask, key_length)
            return [mask] * len(self.layers)
        if len(attention_mask) != len(self.layers):
            raise ValueError(f"a per-layer `attention_mask` needs {len(self.layers)} masks (one per layer), "
                             f"got {len(attention_mask)}")
        return [None if mask is None else masks.as_bool_mask(mask, key_length) for mask in attention_mask]

    def _check_positions(self, position_ids: Tensor) -> None:
        limit = self.config.max_positions
        if self.config.position == "absolute" and position_ids.numel() and int(position_ids.max()) >= limit:
            raise ValueError(f"position {int(position_ids.max())} is past `max_positions`={limit} "
                             "of the absolute position table")

    def _attention_scale(self, mask: Tensor | None, query_length: int, key_length: int, device: torch.device):
        """Evaluate the scale policy once per forward; every layer shares the mask."""
        needs_counts = getattr(self.scale_policy, "needs_visible_keys", True)
        counts = visible_key_counts(mask, query_length, key_length, device) if needs_counts else None
        return self.scale_policy(counts, self.config.head_size)

    def _heads(self, hidden: Tensor, mlm_positions: Tensor | str | None) -> TransformerOutput:
        out = TransformerOutput(hidden_states=hidden)
        if self.pooler is not None:
            out.pooled = torch.tanh(self.pooler(hidden[:, 0]))
        if self.nsp is not None:
            out.nsp_logits = self.nsp(out.pooled)
        if mlm_positions is not None:
            if self.mlm is None:
                raise ValueError("`mlm_positions` given but the model has no MLM head (config.mlm_head=False)")
            if isinstance(mlm_positions, str) and mlm_positions != "all":
                raise ValueError(f"`mlm_positions` must be a bool [B, L] tensor or 'all', got {mlm_positions!r}")
            selected = hidden.flatten(0, 1) if isinstance(mlm_positions, str) else hidden[mlm_positions]
            out.mlm_logits = self.mlm(selected, self.embeddings.word.weight)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, **config_overrides) -> "Transformer":
        """Load a local Hugging Face BERT or RoFormer folder; see :func:`kexue.models.checkpoint.load_pretrained`."""
        from kexue.models.checkpoint import load_pretrained

        return load_pretrained(cls, path, **config_overrides)

    def save_pretrained(self, path: str | Path, vocab_file: str | Path | None = None) -> None:
        """Write a folder transformers can load; see :func:`kexue.models.checkpoint.save_pretrained`."""
        from kexue.models.checkpoint import save_pretrained

        save_pretrained(self, path, vocab_file=vocab_file)
