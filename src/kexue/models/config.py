"""Configuration of the kexue Transformer, and its translation to Hugging Face names.

One ``@dataclass`` describes every backbone kexue builds: BERT (absolute learned
positions) and RoFormer (rotary positions, kexue.fm/archives/8265). The attention
scale policy and the attention kernel are chosen *by name* from registries in
:mod:`kexue.models.attention`, so techniques such as the entropy-invariant scale
(kexue.fm/archives/8823) or linear attention (kexue.fm/archives/8601) plug in
without subclassing.

:meth:`TransformerConfig.from_hf` and :meth:`TransformerConfig.to_hf` are the only
places where Hugging Face config names (``num_hidden_layers``,
``hidden_dropout_prob`` ...) are translated. Unknown keys raise, so a misspelt or
unsupported option is never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["TransformerConfig", "HF_MODEL_TYPES"]

# kexue position scheme -> Hugging Face ``model_type`` that stores it.
HF_MODEL_TYPES = {"absolute": "bert", "rope": "roformer"}

# Hugging Face name -> kexue field name; shared by BERT and RoFormer.
_HF_TO_KEXUE = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_positions",
    "type_vocab_size": "type_vocab_size",
    "hidden_dropout_prob": "dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_act": "hidden_act",
    "pad_token_id": "pad_token_id",
    "initializer_range": "initializer_range",
    # kexue-only choices round-trip through config.json under a prefixed name.
    "kexue_attention_scale": "attention_scale",
    "kexue_attention_kernel": "attention_kernel",
}

# HF keys that must hold one value, because kexue implements only that case.
_HF_REQUIRED_VALUES: dict[str, tuple[Any, ...]] = {
    "position_embedding_type": ("absolute",),
    "rotary_value": (False,),
    "is_decoder": (False,),
    "add_cross_attention": (False,),
    "tie_word_embeddings": (True,),
}

# HF keys with no effect on the backbone's forward pass (bookkeeping, generation
# defaults, task heads built elsewhere, bert-base-chinese's unused pooler_* fields).
_HF_IGNORED = frozenset({
    "_name_or_path", "architectures", "model_type", "transformers_version", "dtype",
    "torch_dtype", "use_cache", "gradient_checkpointing", "classifier_dropout",
    "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
    "id2label", "label2id", "num_labels", "problem_type", "finetuning_task",
    "tokenizer_class", "prefix", "task_specific_params", "output_past",
    "output_attentions", "output_hidden_states", "return_dict", "directionality",
    "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers",
    "pooler_size_per_head", "pooler_type", "chunk_size_feed_forward",
    "embedding_size",  # checked against hidden_size in from_hf
})

_SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")


@dataclass
class TransformerConfig:
    """Hyper-parameters of :class:`kexue.models.Transformer`.

    Example:
        >>> config = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2,
        ...                            num_heads=4, intermediate_size=64, position="rope")
        >>> config.head_size
        8
        >>> TransformerConfig.from_hf(config.to_hf()) == config
        True
    """

    vocab_size: int = 21128  # bert-base-chinese vocabulary
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024  # feed-forward width, usually 4 * hidden_size
    max_positions: int = 512  # size of the absolute position table; RoPE may run longer
    type_vocab_size: int = 2  # segment (token type) ids 0 .. type_vocab_size - 1
    position: str = "rope"  # "rope" (RoFormer) or "absolute" (BERT)
    dropout: float = 0.1  # after embeddings, attention output and feed-forward
    attention_dropout: float = 0.1  # on attention probabilities, training only
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"  # "gelu" is the exact erf GELU of BERT
    pad_token_id: int = 0  # its embedding row is zero-initialised and gets no gradient
    initializer_range: float = 0.02  # std of the normal init of weights, as BERT
    attention_scale: str = "standard"  # name in the scale registry (attention.py)
    attention_kernel: str = "softmax"  # name in the kernel registry (attention.py)
    mlm_head: bool = True  # MLM / LM head tied to the word embeddings
    nsp_head: bool = True  # next-sentence head on the pooled [CLS]; needs pooler
    pooler: bool = True  # tanh(W h_cls) as in BERT

    def __post_init__(self) -> None:
        if self.position not in HF_MODEL_TYPES:
            raise ValueError(f"`position` must be 'rope' or 'absolute', got {self.position!r}")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads",
                     "intermediate_size", "max_positions", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"`hidden_size` ({self.hidden_size}) must be divisible by "
                             f"`num_heads` ({self.num_heads})")
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(f"RoPE rotates pairs, so the head size must be even, got {self.head_size}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)!r}")
        if self.hidden_act not in _SUPPORTED_ACTIVATIONS:
            raise ValueError(f"`hidden_act` must be one of {_SUPPORTED_ACTIVATIONS}, got {self.hidden_act!r}")
        if self.nsp_head and not self.pooler:
            raise ValueError("`nsp_head=True` needs `pooler=True`: NSP reads the pooled [CLS]")

    @property
    def head_size(self) -> int:
        """Width of one attention head, ``hidden_size // num_heads``."""
        return self.hidden_size // self.num_heads

    def replace(self, **changes: Any) -> "TransformerConfig":
        """Return a copy with some fields changed; unknown names raise ``TypeError``."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise TypeError(f"unknown TransformerConfig field(s) {unknown}; valid: {sorted(fields)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf(cls, hf_config: dict[str, Any]) -> "TransformerConfig":
        """Build a config from a Hugging Face BERT or RoFormer ``config.json`` dict.

        Heads (``mlm_head``, ``nsp_head``, ``pooler``) are left at their defaults:
        whether a checkpoint has them is decided by its weights, not its config.

        Args:
            hf_config: the parsed ``config.json``; ``model_type`` must be "bert" or "roformer".

        Returns:
            The equivalent :class:`TransformerConfig`.

        Raises:
            ValueError: unknown keys, an unsupported value (e.g. ``rotary_value=True``),
                or a RoFormer ``embedding_size`` different from ``hidden_size``.
        """
        model_type = hf_config.get("model_type")
        if model_type not in ("bert", "roformer"):
            raise ValueError(f"`model_type` must be 'bert' or 'roformer', got {model_type!r}")
        known = set(_HF_TO_KEXUE) | set(_HF_REQUIRED_VALUES) | _HF_IGNORED
        unknown = sorted(set(hf_config) - known)
        if unknown:
            raise ValueError(f"unknown Hugging Face config key(s) {unknown} for model_type {model_type!r}")
        for key, allowed in _HF_REQUIRED_VALUES.items():
            if key in hf_config and hf_config[key] not in allowed:
                raise ValueError(f"config `{key}`={hf_config[key]!r} is not supported; kexue needs {allowed[0]!r}")
        embedding_size = hf_config.get("embedding_size")
        if embedding_size not in (None, hf_config.get("hidden_size")):
            raise ValueError(f"config `embedding_size` ({embedding_size}) differs from `hidden_size` "
                             f"({hf_config.get('hidden_size')}); kexue has no embedding projection")
        fields = {_HF_TO_KEXUE[k]: v for k, v in hf_config.items() if k in _HF_TO_KEXUE}
        if fields.get("pad_token_id") is None:
            fields.pop("pad_token_id", None)
        position = "rope" if model_type == "roformer" else "absolute"
        return cls(position=position, **fields)

    def to_hf(self, model_type: str | None = None) -> dict[str, Any]:
        """Translate to a Hugging Face ``config.json`` dict.

        Args:
            model_type: "bert" or "roformer"; defaults to the one matching ``position``.

        Returns:
            A dict that ``transformers.AutoConfig.for_model(**d)`` accepts.

        Raises:
            ValueError: if ``model_type`` cannot represent this config's positions.
        """
        expected = HF_MODEL_TYPES[self.position]
        model_type = model_type or expected
        if model_type != expected:
            raise ValueError(f"`model_type` {model_type!r} cannot store position={self.position!r}; "
                             f"use {expected!r}")
        hf = {hf_name: getattr(self, name) for hf_name, name in _HF_TO_KEXUE.items()}
        hf.update(model_type=model_type, tie_word_embeddings=True)
        if model_type == "bert":
            hf["position_embedding_type"] = "absolute"
        else:
            hf.update(embedding_size=self.hidden_size, rotary_value=False)
        return hf
