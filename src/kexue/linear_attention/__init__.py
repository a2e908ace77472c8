"""Linear attention as truncated infinite-dimensional attention (kexue.fm/archives/8601).

Softmax attention weighs key ``j`` for query ``i`` by ``e^{q_i·k_j}`` (post 8601, eq. 1). Any
feature map ``φ`` with ``φ(q)·φ(k) ≈ e^{q·k}`` (eq. 3) turns it into *linear* attention (eq. 2)::

    o_i = Σ_j (φ(q_i)·φ(k_j)) v_j / Σ_j φ(q_i)·φ(k_j)
        = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / φ(q_i)ᵀ (Σ_j φ(k_j))        O(n·m·d) instead of O(n²·d)

The post's three maps, all here behind one interface (:class:`FeatureMap`):

- :class:`PerformerFeatures` (eq. 5): ``φ(x) = m^{-1/2} [exp(ω_i·x − ‖x‖²/2)]_i``, ``ω_i ~ N(0, I)``
  (orthogonal blocks), an unbiased estimate of ``e^{q·k}``;
- :class:`TaylorFeatures` (eq. 9): ``φ(x) = [1, x, x^{⊗2}/√2!, …, x^{⊗p}/√p!]``, so that
  ``φ(q)·φ(k) = Σ_{m≤p} (q·k)^m / m!`` exactly;
- :class:`ExpLimitFeatures` (eq. 11): ``φ(x) = ⊗^n [1; x/√n]``, so ``φ(q)·φ(k) = (1 + q·k/n)^n``.

The post calls the deterministic maps impractical because ``x^{⊗m}`` has ``d^m`` entries. Only
``C(d+m−1, m)`` of them differ, so kexue stores each monomial once with the square root of its
multinomial weight (:class:`PolynomialFeatures`): Taylor order ``p`` and ExpLimit ``n = p`` both
have ``C(d+p, p)`` features (153 for d = 16, p = 2, not 273), and the kernel stays exact.

Linear attention's ``n × n`` attention matrix has rank at most ``m``, while softmax attention is
the ``m → ∞`` limit: the low-rank reason the post gives for linear attention losing on
bidirectional tasks.

Public API: the feature maps, :func:`linear_attention` (bidirectional, or causal by chunked prefix
sums), :func:`masked_kernel_attention` (any mask, O(n²)), :class:`LinearAttention` (a backbone
attention kernel) and :func:`feature_map_from_name`. Importing this package registers the
``linear:`` kernel family, so ``TransformerConfig(attention_kernel="linear:taylor2")`` (or
``linear:explimit4``, ``linear:performer``, ``linear:performer256``) switches a model's layers.
"""

from kexue.linear_attention.attention import LinearAttention, linear_attention, masked_kernel_attention
from kexue.linear_attention.features import (ExpLimitFeatures, FeatureMap, PerformerFeatures, PolynomialFeatures,
                                             TaylorFeatures, feature_map_from_name)

__all__ = [
    "FeatureMap", "PolynomialFeatures", "TaylorFeatures", "ExpLimitFeatures", "PerformerFeatures",
    "feature_map_from_name", "linear_attention", "masked_kernel_attention", "LinearAttention",
]
