"""Greedy and beam search for a UniLM seq2seq backbone, constrained to a :class:`TokenTrie`.

Post 8802 (kexue.fm/archives/8802): a UniLM model reads ``[CLS] Q [SEP]`` bidirectionally and
writes the target left to right; each step keeps only the trie's allowed tokens, optionally
reweighted by the lookahead of eq. (3), and renormalises. A hypothesis finishes when it emits
``end_token_id`` at a node where a stored sequence ends, so every returned hypothesis is a
complete trie path and carries that path's payload id: answers map back to the exact stored row
even when the tokenizer turned characters into [UNK]. Scores are sums of the renormalised
log-probabilities (no length penalty, as in the reference beam search).

Sources of different lengths share one batch: they are right-padded, the padding is masked out
as keys, and target token ``t`` of source ``b`` gets position ``len_b + t``, so positions and
visibility are exactly those of the unpadded sequence seen in training. The source is encoded
once; each step feeds one token per beam through the :class:`~kexue.models.KVCache`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from kexue.models import KVCache, Transformer
from kexue.retrieval.lookahead import Lookahead, masked_log_softmax
from kexue.retrieval.trie import TokenTrie

__all__ = ["Hypothesis", "constrained_log_probs", "trie_beam_search"]


def constrained_log_probs(trie: TokenTrie, states: Tensor, scores: Tensor, end_token_id: int,
                          lookahead: Lookahead | None = None, prefixes: Sequence[Sequence[int]] | None = None,
                          questions: Sequence[Sequence[int]] | None = None) -> Tensor:
    """One constrained step: mask, optional lookahead, renormalise.

    A row whose state is off the trie (or already finished) may only emit ``end_token_id``, so no
    row is ever all ``-inf`` and no softmax produces NaN.

    Args:
        states: long ``[N]`` trie states of the rows (-1 = off the trie).
        scores: float ``[N, V]`` logits or log-probabilities.
        end_token_id: the token that closes a complete path.
        lookahead, prefixes, questions: the lookahead step and its inputs (all or none).

    Returns:
        float32 ``[N, V]`` log-probabilities, ``-inf`` outside the allowed set.
    """
    allowed = trie.allowed_next(states, end_token_id)
    if scores.shape[-1] < trie.vocab_size:
        raise ValueError(f"`scores` has {scores.shape[-1]} columns but the trie's vocab_size is {trie.vocab_size}")
    if scores.shape[-1] > trie.vocab_size:
        allowed = torch.nn.functional.pad(allowed, (0, scores.shape[-1] - trie.vocab_size))
    allowed[~allowed.any(dim=-1), end_token_id] = True
    log_probs = scores.float().log_softmax(dim=-1)
    if lookahead is not None:
        if prefixes is None or questions is None:
            raise ValueError("`lookahead` needs `prefixes` and `questions`")
        log_probs = lookahead(log_probs, trie, prefixes, questions, states)
    return masked_log_softmax(log_probs, allowed)


@dataclass(frozen=True)
class Hypothesis:
    """A finished decoding: its tokens (without the end token), score and trie payload id."""

    tokens: tuple[int, ...]
    score: float
    payload: int


@torch.no_grad()
def trie_beam_search(model: Transformer, sources: Sequence[Sequence[int]], trie: TokenTrie | None, end_token_id: int,
                     num_beams: int = 1, lookahead: Lookahead | None = None,
                     questions: Sequence[Sequence[int]] | None = None,
                     max_length: int | None = None) -> list[list[Hypothesis]]:
    """Decode every source along the trie; ``num_beams=1`` is greedy search.

    Args:
        model: a :class:`Transformer` with an MLM head (used as the LM head, as in UniLM).
        sources: token ids per source, e.g. ``[CLS] Q [SEP]``; nothing may be padding.
        trie: the allowed target sequences (without ``end_token_id``); None decodes without a
            constraint (the same loop, e.g. to measure the constraint's cost), up to ``max_length``
            tokens, and hypotheses cut there are returned too, all with payload -1.
        end_token_id: the token closing a target (the final [SEP]). It may also occur inside
            stored sequences (``S [SEP] P``); it ends a hypothesis only where a stored sequence
            ends (where a sequence both ends and continues with it, ending wins).
        num_beams: beam width.
        lookahead: optional :class:`Lookahead` (eq. 2-3 of the post).
        questions: tokens the lookahead compares with, per source (default: the sources).
        max_length: target tokens at most, needed without a trie (with one: its depth).

    Returns:
        Per source, up to ``num_beams`` hypotheses sorted by score (best first).

    Raises:
        ValueError: an empty source, ``num_beams < 1``, no trie and no ``max_length``, lookahead
            without a trie, or a source too long for the model.

    Example:
        >>> from kexue.models import TransformerConfig
        >>> config = TransformerConfig(vocab_size=20, hidden_size=16, num_layers=1, num_heads=2,
        ...                            intermediate_size=32, position="rope")
        >>> model = Transformer(config).eval()
        >>> trie = TokenTrie.build([[5, 3, 6], [7, 3, 8, 9]], payloads=[100, 200])
        >>> best = trie_beam_search(model, [[2, 11, 12, 3]], trie, end_token_id=3, num_beams=2)[0][0]
        >>> best.payload in (100, 200), best.tokens in ((5, 3, 6), (7, 3, 8, 9))
        (True, True)
    """
    if num_beams < 1:
        raise ValueError(f"`num_beams` must be >= 1, got {num_beams}")
    if any(len(source) == 0 for source in sources):
        raise ValueError("every source needs at least one token")
    if trie is None and (max_length is None or max_length < 1 or lookahead is not None):
        raise ValueError(f"without a trie, `max_length` must be >= 1 (got {max_length}) and `lookahead` None")
    questions = sources if questions is None else questions
    device = next(model.parameters()).device
    lengths = torch.tensor([len(s) for s in sources], device=device)
    depth = trie.max_depth if trie is not None else max_length
    if model.config.position == "absolute" and int(lengths.max()) + depth + 1 > model.config.max_positions:
        raise ValueError(f"a source of {int(lengths.max())} tokens plus a target of up to {depth + 1} "
                         f"exceeds the model's max_positions={model.config.max_positions}")
    search = _BeamSearch(model, trie, end_token_id, num_beams, lookahead, questions, sources, lengths, depth)
    return search.run()


class _BeamSearch:
    """State of one batched search: Q sources x K beams, rows ordered source-major."""

    def __init__(self, model, trie, end_token_id, num_beams, lookahead, questions, sources, lengths, depth) -> None:
        self.model, self.trie, self.end, self.beams, self.depth = model, trie, end_token_id, num_beams, depth
        self.lookahead, self.questions, self.lengths = lookahead, questions, lengths
        self.sources = sources
        self.device = lengths.device
        self.num_sources = len(sources)
        self.finished: list[list[Hypothesis]] = [[] for _ in sources]

    def _encode(self) -> tuple[Tensor, KVCache, Tensor]:
        """Encode the padded sources once; return first-step logits, the cache and the key mask."""
        width = int(self.lengths.max())
        ids = torch.zeros(self.num_sources, width, dtype=torch.long, device=self.device)
        for row, source in enumerate(self.sources):
            ids[row, :len(source)] = torch.as_tensor(list(source), device=self.device)
        keys = torch.arange(width, device=self.device)[None] < self.lengths[:, None]
        cache = KVCache()
        last = torch.zeros_like(keys)
        last[torch.arange(self.num_sources), self.lengths - 1] = True
        out = self.model(ids, torch.zeros_like(ids), attention_mask=keys, kv_cache=cache, mlm_positions=last)
        rows = torch.arange(self.num_sources, device=self.device).repeat_interleave(self.beams)
        cache.reorder(rows)
        return out.mlm_logits[rows], cache, keys[rows]

    def run(self) -> list[list[Hypothesis]]:
        logits, cache, keys = self._encode()
        rows = self.num_sources * self.beams
        scores = torch.full((self.num_sources, self.beams), float("-inf"), device=self.device)
        scores[:, 0] = 0.0  # one live beam per source at the start, so beams never duplicate
        scores = scores.flatten()
        states = torch.zeros(rows, dtype=torch.long, device=self.device)
        prefixes: list[list[int]] = [[] for _ in range(rows)]
        positions = self.lengths.repeat_interleave(self.beams)
        for step in range(self.depth + 1):
            if self.trie is None:
                log_probs = logits.float().log_softmax(dim=-1)
            else:
                questions = [self.questions[row // self.beams] for row in range(rows)]
                log_probs = constrained_log_probs(self.trie, states, logits, self.end, self.lookahead,
                                                  prefixes if self.lookahead else None, questions)
            chosen = self._select(scores, log_probs, states, prefixes)
            if chosen is None:
                break
            beam_rows, tokens, scores = chosen
            prefixes = [prefixes[r] + [t] for r, t in zip(beam_rows.tolist(), tokens.tolist())]
            if self.trie is not None:
                states = self.trie.step(states[beam_rows], tokens)
            elif step == self.depth - 1:  # unconstrained: keep the hypotheses cut at max_length
                for row, score in enumerate(scores.tolist()):
                    if score > float("-inf"):
                        self.finished[row // self.beams].append(Hypothesis(tuple(prefixes[row]), score, -1))
                break
            cache.reorder(beam_rows)
            keys = torch.cat([keys, torch.ones(rows, 1, dtype=torch.bool, device=self.device)], dim=1)
            out = self.model(tokens[:, None], torch.ones_like(tokens)[:, None], attention_mask=keys,
                             position_ids=(positions + step)[:, None], kv_cache=cache, mlm_positions="all")
            logits = out.mlm_logits
        return [sorted(found, key=lambda h: -h.score)[:self.beams] for found in self.finished]

    def _select(self, scores: Tensor, log_probs: Tensor, states: Tensor,
                prefixes: list[list[int]]) -> tuple[Tensor, Tensor, Tensor] | None:
        """Record finished hypotheses; return (source rows, tokens, scores) of the next beams, or None when done."""
        vocab = log_probs.shape[-1]
        total = (scores[:, None] + log_probs).view(self.num_sources, self.beams * vocab)
        top_scores, top_index = total.topk(2 * self.beams, dim=-1)  # enough to keep K beams after K ends
        beam = top_index // vocab
        token = top_index % vocab
        base = torch.arange(self.num_sources, device=self.device)[:, None] * self.beams
        if self.trie is None:
            payloads = torch.full_like(token, -1)
            ends = (token == self.end) & torch.isfinite(top_scores)
        else:  # the end token closes a stored sequence; elsewhere it is an ordinary edge ([SEP] in S [SEP] P)
            payloads = self.trie.payloads(states)[base + beam]
            ends = (token == self.end) & (payloads >= 0) & torch.isfinite(top_scores)
        for (source, _), score, payload, row in zip(ends.nonzero().tolist(), top_scores[ends].tolist(),
                                                    payloads[ends].tolist(), (base + beam)[ends].tolist()):
            self.finished[source].append(Hypothesis(tuple(prefixes[row]), score, payload))
        keep = (~ends).long()
        rank = torch.cumsum(keep, dim=-1) - 1
        selected = (keep == 1) & (rank < self.beams)
        next_scores = torch.full((self.num_sources, self.beams), float("-inf"), device=self.device)
        next_rows = base.expand(-1, self.beams).clone()
        next_tokens = torch.full((self.num_sources, self.beams), self.end, dtype=torch.long, device=self.device)
        source_index, slot = selected.nonzero(as_tuple=True)
        target = rank[source_index, slot]
        next_scores[source_index, target] = top_scores[source_index, slot]
        next_rows[source_index, target] = (base[:, 0][source_index] + beam[source_index, slot])
        next_tokens[source_index, target] = token[source_index, slot]
        if self._done(next_scores):
            return None
        return next_rows.flatten(), next_tokens.flatten(), next_scores.flatten()

    def _done(self, next_scores: Tensor) -> bool:
        """Every source has K finished hypotheses no live beam can beat (scores only decrease)."""
        best_live = next_scores.max(dim=-1).values.tolist()
        for found, live in zip(self.finished, best_live):
            if live == float("-inf"):
                continue
            if len(found) < self.beams or sorted(h.score for h in found)[-self.beams] < live:
                return False
        return True
