"""Trie-constrained decoding for any transformers ``generate()``: one batched mask per step.

Post 8802 (kexue.fm/archives/8802, section 前缀解码): after prefix ``p`` only the tokens of
``allowed(p)`` keep their probability, which is then renormalised::

    log p'(t | p) = log p(t | p) − log Σ_{u ∈ allowed(p)} p(u | p)   for t ∈ allowed(p), −∞ otherwise

transformers' ``PrefixConstrainedLogitsProcessor`` calls a Python function per batch row and beam
and builds the mask in a double loop; here the states of all rows advance together in one vectorised step
(:meth:`TokenTrie.step`) and the mask is one :meth:`TokenTrie.allowed_next` gather. Beam search
reorders rows between steps, so each row's state is found by matching its prefix against the
previous step's prefixes (a vectorised comparison), falling back to a walk from the root.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kexue.retrieval.decoding import constrained_log_probs
from kexue.retrieval.lookahead import Lookahead
from kexue.retrieval.trie import TokenTrie

try:  # transformers is a core dependency; keep the class importable in plain-torch code anyway
    from transformers import LogitsProcessor
except ImportError:  # pragma: no cover
    LogitsProcessor = object  # type: ignore[misc,assignment]

__all__ = ["TrieConstrainedLogitsProcessor", "constrained_log_probs"]


class TrieConstrainedLogitsProcessor(LogitsProcessor):
    """Keeps ``generate()`` on the paths of a :class:`TokenTrie` (greedy, sampling and beam search).

    The positions before ``prefix_length`` (the prompt of a decoder-only model, or the decoder
    start token of an encoder-decoder) are not constrained; by default that is the length seen at
    the first call. Use one processor per ``generate()`` call. ``end_token_id`` (the model's EOS)
    is allowed exactly where a stored sequence ends.

    Args:
        trie: the stored sequences.
        end_token_id: the EOS id of the generation config.
        prefix_length: unconstrained leading positions; None = the input length at the first call.
        lookahead: optional :class:`Lookahead`; then ``question_ids`` holds each batch row's question.
        question_ids: one token list per input row (repeated over its ``num_beams`` rows).
        num_beams: rows per input in the generation batch.

    Returns (``__call__``): renormalised log-probabilities, ``-inf`` outside the allowed set,
    computed in float32 and returned in the dtype of ``scores`` (fp32, bf16 or fp16).

    Example:
        >>> import torch
        >>> trie = TokenTrie.build([[5, 6], [5, 7]])
        >>> processor = TrieConstrainedLogitsProcessor(trie, end_token_id=2, prefix_length=1)
        >>> scores = processor(torch.tensor([[1, 5]]), torch.zeros(1, 10))
        >>> (scores[0] > float("-inf")).nonzero().flatten().tolist()
        [6, 7]
    """

    def __init__(self, trie: TokenTrie, end_token_id: int, prefix_length: int | None = None,
                 lookahead: Lookahead | None = None, question_ids: Sequence[Sequence[int]] | None = None,
                 num_beams: int = 1) -> None:
        if not 0 <= end_token_id:
            raise ValueError(f"`end_token_id` must be a token id >= 0, got {end_token_id}")
        if prefix_length is not None and prefix_length < 0:
            raise ValueError(f"`prefix_length` must be >= 0, got {prefix_length}")
        if lookahead is not None and question_ids is None:
            raise ValueError("`lookahead` needs `question_ids` (one token list per input row)")
        if num_beams < 1:
            raise ValueError(f"`num_beams` must be >= 1, got {num_beams}")
        self.trie, self.end_token_id, self.prefix_length = trie, end_token_id, prefix_length
        self.lookahead, self.question_ids, self.num_beams = lookahead, question_ids, num_beams
        self._start: int | None = None
        self._previous: tuple[Tensor, Tensor] | None = None  # (generated [N, T], states [N])

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self._start is None or input_ids.shape[1] < self._start:
            self._start = self.prefix_length if self.prefix_length is not None else input_ids.shape[1]
            self._previous = None
        generated = input_ids[:, self._start:]
        states = self._states(generated)
        self._previous = (generated, states)
        prefixes = questions = None
        if self.lookahead is not None:
            prefixes = generated.tolist()
            questions = [self.question_ids[row // self.num_beams] for row in range(len(prefixes))]
        return constrained_log_probs(self.trie, states, scores, self.end_token_id, self.lookahead, prefixes,
                                     questions).to(scores.dtype)

    def _states(self, generated: Tensor) -> Tensor:
        """Trie state of every row: extend last step's state of the row with the same prefix."""
        if generated.shape[1] == 0:
            return torch.zeros(generated.shape[0], dtype=torch.long, device=generated.device)
        previous = self._previous
        if previous is None or previous[0].shape[1] != generated.shape[1] - 1:
            return self.trie.walk(generated)
        old_generated, old_states = previous
        same = (generated[:, None, :-1] == old_generated[None, :, :]).all(dim=-1)  # [N, N_old]
        matched = same.any(dim=-1)
        source = same.float().argmax(dim=-1)
        states = self.trie.step(old_states[source], generated[:, -1].long())
        if not bool(matched.all()):
            states = torch.where(matched, states, self.trie.walk(generated))
        return states
