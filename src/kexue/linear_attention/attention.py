"""Linear attention with a feature map ``φ`` (kexue.fm/archives/8601, eq. 2), and its backbone kernel.

Bidirectional, in ``O(n·m·d)`` time (``m`` features, ``d`` value width)::

    S = Σ_j φ(k_j) v_jᵀ  [m, d],   z = Σ_j φ(k_j)  [m],   o_i = φ(q_i)ᵀ S / φ(q_i)ᵀ z

(``S`` and ``z`` are summed over chunks of keys, then read by chunks of queries.)

Causal (``j ≤ i``), by chunked prefix sums: the sequence is cut into chunks of ``C`` positions;
inside a chunk the ``C × C`` kernel matrix ``φ(Q_c) φ(K_c)ᵀ`` is masked to its lower triangle, and
everything before the chunk enters through the running state ``(S, z)``, updated after each chunk.
Features are computed chunk by chunk in both modes, so besides its inputs and output the forward
pass holds ``O(C·m + C² + m·d)`` per head instead of the ``O(n·m·d)`` of a cumulative sum over
per-position states; without autograd the chunks are written into one preallocated output
(autograd saves each chunk's features and state for the backward pass).

**Normaliser.** ``o_i = num_i / max(den_i, eps)`` for positive kernels: exact whenever the true
denominator exceeds ``eps`` (Taylor-2's is at least ``n/2``); a row that sees no key (all masked)
gets 0, not NaN. A signed kernel (odd orders) must be asked for with ``allow_signed=True``; its
denominator keeps its sign and is pushed away from zero to ``±eps``.

**dtype.** bf16 / fp16 / fp32 inputs are computed in float32 (features, state and sums: fp32
accumulation) and the output is cast back to the input dtype; float64 stays float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kexue.linear_attention.features import FeatureMap, feature_map_from_name
from kexue.models.attention import register_attention_kernel

__all__ = ["linear_attention", "masked_kernel_attention", "LinearAttention"]


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap, allow_signed: bool) -> torch.dtype:
    if not isinstance(feature_map, FeatureMap):
        raise TypeError(f"`feature_map` must be a kexue FeatureMap, got {type(feature_map).__name__}")
    if not feature_map.positive and not allow_signed:
        raise ValueError(f"`feature_map` {feature_map} gives a kernel that can be negative (odd order), so the "
                         "normaliser can cross zero; use an even order or pass allow_signed=True")
    if q.dim() < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or k.shape[-2] == 0:
        raise ValueError(f"`q`, `k`, `v` must be [..., Lq, d], [..., Lk, d], [..., Lk, dv] with Lk >= 1, "
                         f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def _normalise(numerator: Tensor, denominator: Tensor, eps: float, signed: bool) -> Tensor:
    if signed:
        sign = torch.where(denominator < 0, -1.0, 1.0).to(denominator.dtype)
        return numerator / (sign * denominator.abs().clamp_min(eps))
    return numerator / denominator.clamp_min(eps)


def _key_features(feature_map: FeatureMap, k: Tensor, key_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``(ψ, c)`` of the keys with masked keys' features zeroed and their ``c`` set to -inf."""
    features, log_scale = feature_map.log_features(k)
    if key_mask is not None:
        features = features * key_mask[..., None].to(features.dtype)
        if log_scale is not None:
            log_scale = log_scale.masked_fill(~key_mask[..., None], -math.inf)
    return features, log_scale


class _RunningState:
    """``S = Σ φ(k_j) v_jᵀ`` and ``z = Σ φ(k_j)`` over the keys seen so far, chunk by chunk.

    With a stabilised map (Performer) every key is scaled to one reference, the running max of
    the keys' offsets; when a new chunk raises it, ``S`` and ``z`` are rescaled (as online softmax
    does), so no chunk ever looks at a later one.
    """

    def __init__(self) -> None:
        self.state: Tensor | None = None  # [..., m, dv]
        self.normaliser: Tensor | None = None  # [..., m, 1]
        self.reference: Tensor | None = None  # [..., 1, 1]

    def scale_keys(self, key_features: Tensor, log_scale: Tensor | None) -> Tensor:
        """Bring a chunk's keys to the (possibly raised) reference; rescale the state to match."""
        if log_scale is None:
            return key_features
        chunk_max = log_scale.amax(-2, keepdim=True)
        previous = torch.full_like(chunk_max, -math.inf) if self.reference is None else self.reference
        self.reference = torch.maximum(previous, chunk_max)
        finite = torch.where(torch.isfinite(self.reference), self.reference, torch.zeros_like(self.reference))
        if self.state is not None:
            shift = (previous - finite).exp()
            self.state, self.normaliser = self.state * shift, self.normaliser * shift
        return key_features * (log_scale - finite).exp()

    def add(self, key_features: Tensor, values: Tensor) -> None:
        state, normaliser = key_features.transpose(-1, -2) @ values, key_features.sum(-2)[..., None]
        if self.state is None:
            self.state, self.normaliser = state, normaliser
        else:
            self.state, self.normaliser = self.state + state, self.normaliser + normaliser

    def read(self, query_features: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ(q)ᵀ S, φ(q)ᵀ z)`` for a chunk of queries."""
        return query_features @ self.state, query_features @ self.normaliser


def linear_attention(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap, causal: bool = False,
                     chunk_size: int = 128, key_mask: Tensor | None = None, eps: float = 1e-12,
                     allow_signed: bool = False) -> Tensor:
    """Normalised linear attention ``o_i = Σ_j κ_ij v_j / Σ_j κ_ij`` with ``κ_ij = φ(q_i)·φ(k_j)``.

    The kernel is ``e^{q·k}`` approximated: scale ``q`` and ``k`` yourself (``d^{-1/4}`` each gives
    softmax attention's ``1/√d``).

    Args:
        q: ``[..., Lq, d]``.
        k: ``[..., Lk, d]``.
        v: ``[..., Lk, dv]``.
        feature_map: a :class:`FeatureMap`.
        causal: query ``i`` sees keys ``j ≤ i`` (needs ``Lq == Lk``).
        chunk_size: positions per chunk (keys and queries are processed chunk by chunk).
        key_mask: bool ``[..., Lk]`` broadcastable to ``k.shape[:-1]``; False keys are ignored.
        eps: floor of the normaliser (see the module docstring).
        allow_signed: accept a kernel that can be negative (odd Taylor / ExpLimit orders).

    Returns:
        ``[..., Lq, dv]`` in ``q``'s dtype.

    Raises:
        ValueError: a signed kernel without ``allow_signed``, bad shapes, causal with ``Lq != Lk``,
            ``chunk_size < 1``.
        TypeError: ``feature_map`` is not a :class:`FeatureMap`.

    Example:
        >>> from kexue.linear_attention import TaylorFeatures
        >>> q, k, v = torch.randn(3, 100, 16), torch.randn(3, 100, 16), torch.randn(3, 100, 8)
        >>> out = linear_attention(q / 2, k / 2, v, TaylorFeatures(2), causal=True, chunk_size=32)
        >>> out.shape
        torch.Size([3, 100, 8])
    """
    accumulate = _check_inputs(q, k, v, feature_map, allow_signed)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an int >= 1, got {chunk_size!r}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal linear attention needs Lq == Lk, got {q.shape[-2]} and {k.shape[-2]}")
    if key_mask is not None:
        key_mask = key_mask.to(torch.bool).expand(k.shape[:-1])
    dtype, signed = q.dtype, not feature_map.positive
    q, k, v = q.to(accumulate), k.to(accumulate), v.to(accumulate)
    run = _causal if causal else _bidirectional
    return run(q, k, v, feature_map, chunk_size, key_mask, eps, signed).to(dtype)


def _chunks(length: int, chunk_size: int):
    return [(start, min(start + chunk_size, length)) for start in range(0, length, chunk_size)]


def _output_buffer(q: Tensor, k: Tensor, v: Tensor) -> list[Tensor] | Tensor:
    """Chunks are written into one preallocated output, or collected for ``cat`` when autograd records."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return []
    return v.new_empty(*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]), q.shape[-2], v.shape[-1])


def _write(output: list[Tensor] | Tensor, start: int, end: int, chunk: Tensor) -> None:
    if isinstance(output, list):
        output.append(chunk)
    else:
        output[..., start:end, :] = chunk


def _finish(output: list[Tensor] | Tensor) -> Tensor:
    return torch.cat(output, dim=-2) if isinstance(output, list) else output


def _bidirectional(q, k, v, feature_map, chunk_size, key_mask, eps, signed) -> Tensor:
    running = _RunningState()
    for start, end in _chunks(k.shape[-2], chunk_size):  # all keys first
        key_features, log_scale = _key_features(feature_map, k[..., start:end, :],
                                                None if key_mask is None else key_mask[..., start:end])
        running.add(running.scale_keys(key_features, log_scale), v[..., start:end, :])
    output = _output_buffer(q, k, v)
    for start, end in _chunks(q.shape[-2], chunk_size):
        query_features, _ = feature_map.log_features(q[..., start:end, :])  # the per-query factor cancels
        _write(output, start, end, _normalise(*running.read(query_features), eps, signed))
    return _finish(output)


def _causal(q, k, v, feature_map, chunk_size, key_mask, eps, signed) -> Tensor:
    running, output = _RunningState(), _output_buffer(q, k, v)
    for start, end in _chunks(q.shape[-2], chunk_size):
        query_features, _ = feature_map.log_features(q[..., start:end, :])
        key_features, log_scale = _key_features(feature_map, k[..., start:end, :],
                                                None if key_mask is None else key_mask[..., start:end])
        key_features = running.scale_keys(key_features, log_scale)
        scores = (query_features @ key_features.transpose(-1, -2)).tril()  # [..., C, C], j <= i inside the chunk
        numerator, denominator = scores @ v[..., start:end, :], scores.sum(-1, keepdim=True)
        if running.state is not None:
            before_numerator, before_denominator = running.read(query_features)
            numerator, denominator = numerator + before_numerator, denominator + before_denominator
        _write(output, start, end, _normalise(numerator, denominator, eps, signed))
        running.add(key_features, v[..., start:end, :])
    return _finish(output)


def masked_kernel_attention(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap, mask: Tensor | None,
                            eps: float = 1e-12, allow_signed: bool = False) -> Tensor:
    """The same attention under any mask, by the ``[Lq, Lk]`` kernel matrix ``φ(Q) φ(K)ᵀ`` (``O(n²)``).

    For masks that are neither key padding nor causal (UniLM, decoding with a KV cache). Same
    normaliser and dtype rules as :func:`linear_attention`.

    Args:
        q, k, v: as :func:`linear_attention`.
        feature_map: a :class:`FeatureMap`.
        mask: bool ``[..., Lq|1, Lk]`` (True = may attend) or None.
        eps: floor of the normaliser.
        allow_signed: accept a kernel that can be negative.

    Returns:
        ``[..., Lq, dv]`` in ``q``'s dtype.

    Example:
        >>> from kexue.linear_attention import TaylorFeatures
        >>> q, k, v = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 4)
        >>> causal = torch.ones(5, 5, dtype=torch.bool).tril()
        >>> full = masked_kernel_attention(q, k, v, TaylorFeatures(2), causal)
        >>> torch.allclose(full, linear_attention(q, k, v, TaylorFeatures(2), causal=True), atol=1e-5)
        True
    """
    accumulate = _check_inputs(q, k, v, feature_map, allow_signed)
    dtype = q.dtype
    q, k, v = q.to(accumulate), k.to(accumulate), v.to(accumulate)
    query_features, _ = feature_map.log_features(q)
    key_features, log_scale = feature_map.log_features(k)
    if log_scale is not None:
        key_features = key_features * (log_scale - log_scale.amax(-2, keepdim=True)).exp()
    scores = query_features @ key_features.transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(~mask.to(torch.bool), 0.0)
    return _normalise(scores @ v, scores.sum(-1, keepdim=True), eps, not feature_map.positive).to(dtype)


class LinearAttention(nn.Module):
    """A backbone attention kernel (:mod:`kexue.models.attention`): ``forward(q, k, v, mask, scale)``.

    The softmax kernel ``exp(scale · q·k)`` becomes ``φ(√scale q)·φ(√scale k)`` for a float scale
    (``d^{-1/4}`` each for the standard ``1/√d``), or ``φ(scale q)·φ(k)`` for a per-row tensor scale.
    Masks: None or key padding → bidirectional; causal (& padding) → chunked causal; anything else
    (UniLM, KV-cache decoding) → :func:`masked_kernel_attention`. There are no attention
    probabilities, so attention dropout does not apply.

    Args:
        feature_map: a :class:`FeatureMap`.
        chunk_size: chunk of the causal path.
        allow_signed: accept odd orders (see :func:`linear_attention`).
        redraw_interval: redraw Performer features every this many training forward calls (None: never).

    Raises:
        ValueError: a signed kernel without ``allow_signed``; ``redraw_interval`` on a map without ``redraw``.

    Example:
        >>> from kexue.models import Transformer, TransformerConfig
        >>> config = TransformerConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=2,
        ...                            intermediate_size=64, attention_kernel="linear:taylor2")
        >>> model = Transformer(config)
        >>> type(model.layers[0].attention.kernel).__name__
        'LinearAttention'
        >>> model(torch.randint(1, 50, (2, 7))).hidden_states.shape
        torch.Size([2, 7, 32])
    """

    def __init__(self, feature_map: FeatureMap, chunk_size: int = 128, allow_signed: bool = False,
                 redraw_interval: int | None = None) -> None:
        super().__init__()
        if not feature_map.positive and not allow_signed:
            raise ValueError(f"`feature_map` {feature_map} gives a kernel that can be negative (odd order); "
                             "use an even order or allow_signed=True")
        if redraw_interval is not None and not hasattr(feature_map, "redraw"):
            raise ValueError(f"`redraw_interval` needs a random feature map, got {type(feature_map).__name__}")
        self.feature_map, self.chunk_size, self.allow_signed = feature_map, chunk_size, allow_signed
        self.redraw_interval, self.calls = redraw_interval, 0

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale) -> Tensor:
        """``q, k, v`` ``[B, H, L, d]``; ``mask`` bool ``[B, 1|H, Lq|1, Lk]`` or None; returns ``[B, H, Lq, d]``."""
        if self.training and self.redraw_interval:
            if self.calls % self.redraw_interval == 0 and self.calls:
                self.feature_map.redraw()
            self.calls += 1
        if isinstance(scale, Tensor):
            q = q * scale.to(q.dtype)
        else:
            q, k = q * math.sqrt(scale), k * math.sqrt(scale)
        options = dict(feature_map=self.feature_map, allow_signed=self.allow_signed)
        if mask is None:
            return linear_attention(q, k, v, **options)
        keys = mask.any(-2, keepdim=True)  # [B, 1|H, 1, Lk]: keys some query may see
        if bool((mask == keys).all()):
            return linear_attention(q, k, v, key_mask=keys[..., 0, :], **options)
        length = q.shape[-2]
        if length == k.shape[-2]:
            lower = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
            if bool((mask == (keys & lower)).all()):
                return linear_attention(q, k, v, causal=True, chunk_size=self.chunk_size,
                                        key_mask=keys[..., 0, :], **options)
        return masked_kernel_attention(q, k, v, mask=mask, **options)


@register_attention_kernel("linear")
def _linear_kernel(config, layer_index: int) -> LinearAttention:
    """``attention_kernel="linear"`` alone: refused, the feature map must be named."""
    raise ValueError("`attention_kernel` 'linear' needs a feature map: 'linear:taylor2', 'linear:explimit4', "
                     "'linear:performer' or 'linear:performer<m>'")


def _linear_with_argument(argument: str):
    """``attention_kernel="linear:<map>"``: taylor<p>, explimit<n>, performer or performer<m>."""
    def factory(config, layer_index: int) -> LinearAttention:
        try:
            return LinearAttention(feature_map_from_name(argument, config.head_size))
        except ValueError as error:
            raise ValueError(f"`attention_kernel` 'linear:{argument}': {error}") from None
    return factory


_linear_kernel.with_argument = _linear_with_argument  # type: ignore[attr-defined]
