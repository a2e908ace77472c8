"""Entropy-invariant attention scale (kexue.fm/archives/8823, 9034, 9588) and attention-entropy diagnostics.

Standard attention is ``softmax(QKᵀ/√d) V``. The post keeps the entropy of each attention row,
``H_i = −Σ_j a_ij log a_ij ≈ log n − 0.24·λd``, from growing with the number of keys n by letting
the scale grow like ``log n`` (eq. ei2, anchored so that n = 512 is standard attention)::

    Attention(Q, K, V) = softmax(log₅₁₂(n) / √d · QKᵀ) V

with n counted per query row: the keys that row can see under its padding / causal mask.
Importing this package registers, in the backbone's scale registry (:mod:`kexue.models.attention`):

- ``"entropy_invariant"`` (``"entropy_invariant:<base>"``): ``log_b(n)/√d``, b = 512;
- ``"log_n"``: ``ln(n)/√d`` (Chiang & Cholak 2022);
- ``"inference_only"`` (``"inference_only:<train_len>"``): standard up to the training length,
  ``log_L(n)/√d`` beyond (Qwen-1 ``use_logn_attn``);
- ``"yarn"`` (``"yarn:<train_len>"``): YaRN's temperature ``(1 + 0.1 ln(n/L))²/√d`` beyond L;

next to the backbone's ``"standard"``. See :mod:`.policies` for formulas and sources,
:mod:`.hf` for Hugging Face models, :mod:`.entropy` for measuring attention entropy and
:mod:`.theory` for the post's derivation checked numerically.

Example:
    >>> import torch
    >>> import kexue.attention_scale
    >>> from kexue.models import Transformer, TransformerConfig
    >>> config = TransformerConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=2,
    ...                            intermediate_size=64, attention_scale="entropy_invariant")
    >>> model = Transformer(config).eval()
    >>> ids = torch.randint(1, 50, (1, 12))
    >>> kexue.attention_scale.attention_entropy(model, {"input_ids": ids}).shape
    torch.Size([1, 2])
"""

from kexue.attention_scale.entropy import attention_entropy, row_entropy
from kexue.attention_scale.hf import hf_visible_keys, register_hf_attention
from kexue.attention_scale.policies import (DEFAULT_BASE, ENTROPY_INVARIANT, INFERENCE_ONLY, LOG_N, YARN, LengthScale,
                                            scale_factor)
from kexue.attention_scale.theory import expected_entropy_gap, sphere_entropy

__all__ = ["attention_entropy", "row_entropy", "register_hf_attention", "hf_visible_keys", "LengthScale",
           "DEFAULT_BASE", "ENTROPY_INVARIANT", "LOG_N", "INFERENCE_ONLY", "YARN", "scale_factor",
           "expected_entropy_gap", "sphere_entropy"]
