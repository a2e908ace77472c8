"""KV-cached greedy decoding under a UniLM mask equals recomputing the whole sequence."""

from __future__ import annotations

import pytest
import torch

from kexue.models import KVCache, Transformer, TransformerConfig, masks

torch.set_num_threads(1)

VOCAB = 60
STEPS = 6


def _model(position: str) -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4,
                               intermediate_size=64, max_positions=32, position=position,
                               initializer_range=0.3)  # large weights: greedy choices vary with context
    return Transformer(config).eval()


def _full_logits(model, ids, segments, padding):
    mask = masks.unilm_mask(segments) & masks.padding_mask(padding)
    last = torch.zeros_like(ids, dtype=torch.bool)
    last[:, -1] = True
    return model(ids, segments, attention_mask=mask, mlm_positions=last).mlm_logits


def _prefix():
    """Source of 5 tokens (row 1 padded after 3) then the first target token."""
    ids = torch.randint(1, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    padding = torch.ones_like(ids)
    padding[1, 3:5] = 0
    ids = ids.masked_fill(padding == 0, 0)
    segments = torch.zeros_like(ids)
    segments[:, 5] = 1
    return ids, segments, padding


@pytest.mark.parametrize("position", ["rope", "absolute"])
def test_cached_greedy_decoding_equals_full_recomputation(position):
    model = _model(position)
    ids, segments, padding = _prefix()
    cache = KVCache()
    with torch.no_grad():
        mask = masks.unilm_mask(segments) & masks.padding_mask(padding)
        last = torch.zeros_like(ids, dtype=torch.bool)
        last[:, -1] = True
        cached = model(ids, segments, attention_mask=mask, mlm_positions=last, kv_cache=cache).mlm_logits
        generated = []
        for _ in range(STEPS):
            full = _full_logits(model, ids, segments, padding)
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
            next_token = full.argmax(-1, keepdim=True)  # [B, 1]
            generated.append(next_token)
            ids = torch.cat([ids, next_token], dim=1)
            segments = torch.cat([segments, torch.ones_like(next_token)], dim=1)
            padding = torch.cat([padding, torch.ones_like(next_token)], dim=1)
            # the new target token sees every real key: a 2-D padding mask over cache + new
            cached = model(next_token, torch.ones_like(next_token), attention_mask=padding,
                           mlm_positions="all", kv_cache=cache).mlm_logits
        assert cache.length == ids.shape[1]
    assert len(set(torch.cat(generated, dim=1)[0].tolist())) > 1  # decoding did not collapse


def test_cache_positions_continue_from_cache_length():
    model = _model("absolute")
    ids, segments, padding = _prefix()
    cache = KVCache()
    with torch.no_grad():
        model(ids[:, :5], segments[:, :5], attention_mask=padding[:, :5], kv_cache=cache)  # the source
        rest = model(ids[:, 5:], segments[:, 5:], kv_cache=cache,
                     attention_mask=masks.unilm_mask(segments)[..., 5:, :] & masks.padding_mask(padding))
        full = model(ids, segments, attention_mask=masks.unilm_mask(segments) & masks.padding_mask(padding))
    torch.testing.assert_close(rest.hidden_states, full.hidden_states[:, 5:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="keys"):
        model(ids[:, :1], kv_cache=cache, attention_mask=padding)  # mask misses the cached keys
