"""kexue's own Transformer backbone: BERT / RoFormer with composable masks, pluggable
attention scale and kernel, MLM / NSP heads, KV cache, and Hugging Face checkpoints.

Modules: :mod:`~kexue.models.config` (the dataclass and HF name translation),
:mod:`~kexue.models.masks` (bool mask builders), :mod:`~kexue.models.attention`
(scale / kernel registries, RoPE, KV cache), :mod:`~kexue.models.transformer`
(the model), :mod:`~kexue.models.checkpoint` (HF load / save).
"""

from kexue.models import masks
from kexue.models.attention import (KVCache, register_attention_kernel, register_attention_scale)
from kexue.models.config import TransformerConfig
from kexue.models.transformer import Transformer, TransformerOutput

__all__ = [
    "TransformerConfig", "Transformer", "TransformerOutput", "masks", "KVCache",
    "register_attention_scale", "register_attention_kernel",
]
