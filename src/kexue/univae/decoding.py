"""Decoding UniVAE latents into token ids, with a KV cache or by full recomputation.

The decoder half sees the encoder only through the [CLS] column of the latent layers, and that
column's keys and values depend only on ``z`` (its input there is ``W_up z_l``). So decoding
caches one position: ``[CLS]`` at position 0 with ``z`` injected, then feeds one decoder token per
step at positions ``offset, offset + 1, ..`` (``offset`` = ``max_length``, or the encoder length
under ``length_leakage="condition"``). Each step costs one token through the network instead of the
whole ``[encoder; decoder prefix]`` sequence the reference (bojone/univae) recomputes every step;
:func:`generate` with ``use_cache=False`` does the latter and is the reference for tests and the
benchmark.

Choosing a token: greedy (``temperature=0``), or sampling from ``softmax(logits / temperature)``
restricted to the smallest set of tokens whose probability reaches ``top_p`` (nucleus sampling,
Holtzman et al. 2020).

Example:
    >>> import torch
    >>> from kexue.models import Transformer, TransformerConfig
    >>> from kexue.univae.model import UniVAE, UniVAEConfig
    >>> backbone = Transformer(TransformerConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
    ...                                          intermediate_size=64, nsp_head=False, pooler=False)).eval()
    >>> model = UniVAE(backbone, UniVAEConfig(num_independent_layers=1, latent_dims=4, max_length=8)).eval()
    >>> z = model.prior(3, torch.Generator().manual_seed(0))
    >>> ids = generate(model, z, bos_id=2, eos_id=3, pad_id=0, max_new_tokens=5)
    >>> ids.shape[0], ids.shape[1] <= 5
    (3, True)
"""

from __future__ import annotations

import torch
from torch import Tensor

from kexue.models import KVCache, masks
from kexue.univae.model import UniVAE

__all__ = ["generate", "choose_tokens"]


def choose_tokens(logits: Tensor, temperature: float = 0.0, top_p: float = 1.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """Next token ``[B]`` from ``logits`` ``[B, V]``: greedy, or temperature / top-p sampling.

    Example:
        >>> choose_tokens(torch.tensor([[0.0, 2.0, 1.0]])).tolist()
        [1]
        >>> choose_tokens(torch.tensor([[0.0, 9.0, 1.0]]), temperature=1.0, top_p=0.5).tolist()
        [1]
    """
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"`top_p` must be in (0, 1], got {top_p}")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(-1, descending=True)
    keep = sorted_probs.cumsum(-1) - sorted_probs < top_p  # the most likely token is always kept
    choice = torch.multinomial((sorted_probs * keep).cpu(), 1, generator=generator).to(order.device)
    return order.gather(-1, choice)[:, 0]


def _step_masks(model: UniVAE, past: int, new: int, device: torch.device) -> list[Tensor]:
    """Masks of ``new`` decoder queries over ``[CLS] + past + new`` cached keys, one per layer."""
    decoder = masks.causal_mask(new, device, past_length=past)  # [1, 1, new, past + new]
    cls = torch.ones(1, 1, new, 1, dtype=torch.bool, device=device)
    k = model.config.num_independent_layers
    return [torch.cat([~cls, decoder], -1)] * k + [torch.cat([cls, decoder], -1)] * model.num_latent_layers


def _offsets(model: UniVAE, batch: int, lengths: Tensor | None, device: torch.device) -> Tensor:
    if model.config.length_leakage == "condition":
        if lengths is None:
            raise ValueError("`lengths` (encoder tokens, [CLS] and [SEP] included) is required when "
                             "length_leakage='condition'")
        return model.decoder_offset(lengths.to(device))
    return torch.full((batch,), model.config.max_length, device=device)


def _cached_logits(model: UniVAE, z: Tensor, bos_id: int, offsets: Tensor):
    """Generator of next-token logits ``[B, V]``; ``send`` it the chosen tokens ``[B]``."""
    batch, device = z.shape[0], z.device
    cache = KVCache()
    bos = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    model.transformer(bos, kv_cache=cache, layer_hook=model.latent_hook(lambda layer, cls: z[:, layer]))
    token, step = bos, 0
    while True:
        out = model.transformer(token, torch.ones_like(token), _step_masks(model, step, 1, device),
                                (offsets + step)[:, None], mlm_positions="all", kv_cache=cache)
        token = (yield out.mlm_logits)[:, None]
        step += 1


def _recomputed_logits(model: UniVAE, z: Tensor, bos_id: int, pad_id: int, offsets: Tensor):
    """As :func:`_cached_logits`, re-running ``[CLS, pads; decoder prefix]`` at every step."""
    batch, device = z.shape[0], z.device
    encoder_length = int(offsets.max()) if model.config.length_leakage == "condition" else model.config.max_length
    encoder = torch.full((batch, encoder_length), pad_id, dtype=torch.long, device=device)
    encoder[:, 0] = bos_id
    decoder = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    hook = model.latent_hook(lambda layer, cls: z[:, layer])
    while True:
        steps = decoder.shape[1]
        ids = torch.cat([encoder, decoder], 1)
        segments = torch.cat([torch.zeros_like(encoder), torch.ones_like(decoder)], 1)
        real = torch.cat([encoder != pad_id, torch.ones_like(decoder, dtype=torch.bool)], 1)
        real[:, 0] = True
        positions = torch.cat([torch.arange(encoder_length, device=device).expand(batch, -1),
                               offsets[:, None] + torch.arange(steps, device=device)], 1)
        last = torch.zeros_like(real)
        last[:, -1] = True
        out = model.transformer(ids, segments, model.layer_masks(segments, real), positions,
                                mlm_positions=last, layer_hook=hook)
        token = yield out.mlm_logits
        decoder = torch.cat([decoder, token[:, None]], 1)


@torch.no_grad()
def generate(model: UniVAE, z: Tensor, *, bos_id: int, eos_id: int, pad_id: int, max_new_tokens: int | None = None,
             min_new_tokens: int = 0, temperature: float = 0.0, top_p: float = 1.0, lengths: Tensor | None = None,
             banned_ids: tuple[int, ...] = (), generator: torch.Generator | None = None,
             use_cache: bool = True) -> Tensor:
    """Decode latents ``z`` ``[B, n_latent, d]`` into token ids ``[B, <= max_new_tokens]``.

    Args:
        model: a :class:`UniVAE` (use eval mode: dropout would make the output random).
        z: latents, e.g. from :meth:`UniVAE.encode` or :meth:`UniVAE.prior`.
        bos_id, eos_id, pad_id: ``[CLS]``, ``[SEP]`` and ``[PAD]`` ids; ``[SEP]`` is kept in the output,
            positions after it hold ``pad_id``.
        max_new_tokens: default ``max_length - 1``.
        min_new_tokens: ``eos_id`` is banned before this many tokens.
        temperature, top_p: see :func:`choose_tokens` (0: greedy).
        lengths: encoder lengths ``[B]``, required under ``length_leakage="condition"``.
        banned_ids: never generated (``bos_id`` and ``pad_id`` always are).
        generator: for sampling.
        use_cache: False recomputes the whole sequence every step (the reference's way).

    Returns:
        Long ``[B, T]``; generation stops when every row has produced ``eos_id``.
    """
    batch = z.shape[0]
    if z.shape[1:] != (model.num_latent_layers, model.config.latent_dims):
        raise ValueError(f"`z` must be [B, {model.num_latent_layers}, {model.config.latent_dims}], "
                         f"got {tuple(z.shape)}")
    max_new_tokens = model.config.max_length - 1 if max_new_tokens is None else max_new_tokens
    if max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}")
    offsets = _offsets(model, batch, lengths, z.device)
    steps = (_cached_logits(model, z, bos_id, offsets) if use_cache
             else _recomputed_logits(model, z, bos_id, pad_id, offsets))
    banned = torch.tensor(sorted({bos_id, pad_id, *banned_ids}), device=z.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=z.device)
    tokens: list[Tensor] = []
    logits = next(steps)
    for step in range(max_new_tokens):
        logits = logits.float().index_fill(-1, banned, float("-inf"))
        if step < min_new_tokens:
            logits[:, eos_id] = float("-inf")
        token = choose_tokens(logits, temperature, top_p, generator)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens.append(token)
        finished |= token == eos_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        logits = steps.send(token)
    steps.close()
    return torch.stack(tokens, 1)
