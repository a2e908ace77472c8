"""The post's lookahead ("前瞻") step: favour next tokens whose completions cover the question.

Post 8802 (kexue.fm/archives/8802, section "前瞻"策略), equations (2) and (3). Once the subject
and the first ``t-1`` tokens of the predicate are decoded, every stored completion ``P^(k)`` is
scored by how much more of the question ``Q`` it covers, with the longest common subsequence::

    Δ^(k) = LCS(P^(k), Q) − LCS(P_<t, Q)                                   (2)
    p_k  ← p_k^{1/(Δ^(k)+1)},   Δ for a token = max over the completions through it   (3)

then the distribution over the allowed tokens is renormalised. Here ``P_<t`` is the whole decoded
prefix and ``P^(k)`` the prefix plus completion k (as in the reference code); the question is its
content tokens, without [CLS] / [SEP].

LCS is computed bit-parallel (Allison–Dix / Hyyrö): with ``M[c]`` the bit set of the positions of
token ``c`` in ``Q`` and ``V`` starting all ones, each token ``c`` of the other sequence does
``U = V & M[c]; V = (V + U) | (V − U)``; the LCS is the number of zero bits of ``V``. Vectorised
over all completions of a state with 64-bit words (carry propagated across words).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kexue.retrieval.trie import TokenTrie

__all__ = ["lcs_length", "lcs_lengths", "Lookahead", "masked_log_softmax"]

logger = logging.getLogger(__name__)
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of two sequences (bit-parallel, exact).

    Example:
        >>> lcs_length("主讲课程", "他主讲哪些课程"), lcs_length("", "abc")
        (4, 0)
    """
    if not a or not b:
        return 0
    masks: dict[Hashable, int] = {}
    for position, item in enumerate(b):
        masks[item] = masks.get(item, 0) | (1 << position)
    full = (1 << len(b)) - 1
    v = full
    for item in a:
        u = v & masks.get(item, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def lcs_lengths(question: Sequence[int], prefix: Sequence[int], continuations: np.ndarray) -> np.ndarray:
    """``LCS(prefix + continuations[k], question)`` for every row k at once.

    Args:
        question: token ids.
        prefix: token ids shared by every candidate.
        continuations: int ``[C, L]``, padded with -1 (a pad token matches nothing).

    Returns:
        int64 ``[C]``.
    """
    length = len(question)
    count = continuations.shape[0]
    if length == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    words = (length + 63) // 64
    vocabulary = np.unique(np.asarray(question, dtype=np.int64))
    table = np.zeros((len(vocabulary) + 1, words), dtype=np.uint64)  # last row: not in the question
    for position, token in enumerate(question):
        table[np.searchsorted(vocabulary, token), position // 64] |= np.uint64(1) << np.uint64(position % 64)
    v = np.full((1, words), _ONES, dtype=np.uint64)
    for token in prefix:
        v = _lcs_step(v, table[_rows(vocabulary, np.array([token]))])
    v = np.repeat(v, count, axis=0)
    for column in range(continuations.shape[1]):
        v = _lcs_step(v, table[_rows(vocabulary, continuations[:, column])])
    valid_bits = np.full(words, _ONES, dtype=np.uint64)
    if length % 64:
        valid_bits[-1] = np.uint64((1 << (length % 64)) - 1)
    ones = np.bitwise_count(v & valid_bits).sum(axis=1).astype(np.int64)
    return length - ones


def _rows(vocabulary: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Row of each token in the mask table; tokens not in the question map to the zero row."""
    index = np.searchsorted(vocabulary, tokens).clip(max=len(vocabulary) - 1)
    return np.where(vocabulary[index] == tokens, index, len(vocabulary))


def _lcs_step(v: np.ndarray, match: np.ndarray) -> np.ndarray:
    """``V ← (V + U) | (V − U)`` with ``U = V & M`` over ``[C, words]``; ``V − U = V & ~U``."""
    u = v & match
    total = np.empty_like(v)
    carry = np.zeros(v.shape[0], dtype=np.uint64)
    for word in range(v.shape[1]):
        partial = v[:, word] + u[:, word]
        overflow = partial < v[:, word]
        total[:, word] = partial + carry
        carry = (overflow | (total[:, word] < partial)).astype(np.uint64)
    return total | (v & ~u)


def masked_log_softmax(scores: Tensor, allowed: Tensor) -> Tensor:
    """``log_softmax`` over the allowed tokens only, ``-inf`` elsewhere (rows need one allowed token)."""
    return torch.where(allowed, scores.float(), float("-inf")).log_softmax(dim=-1)


@dataclass
class Lookahead:
    """Reweights next-token log-probabilities by the LCS gain of eq. (2)–(3).

    Args:
        boundary_token_id: lookahead starts once this token is in the prefix (the [SEP] closing
            the subject in ``S [SEP] P [SEP] M``; the post applies it after S is decoded).
        max_completions: states with more stored completions are left unchanged (bounded work).

    Relations: used by :func:`kexue.retrieval.trie_beam_search` and
    :class:`kexue.retrieval.TrieConstrainedLogitsProcessor`; plain trie decoding without it.

    Example:
        >>> trie = TokenTrie.build([[7, 1, 5, 8], [7, 1, 6, 9]])      # S [SEP] 主讲 / S [SEP] 主要
        >>> tokens, weights = Lookahead(boundary_token_id=1).weights(trie, [7, 1], [7, 5, 8])
        >>> tokens.tolist(), weights.tolist()
        ([5, 6], [3.0, 1.0])
    """

    boundary_token_id: int
    max_completions: int = 4096

    def weights(self, trie: TokenTrie, prefix: Sequence[int], question: Sequence[int],
                state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Next tokens after ``prefix`` and their ``Δ + 1`` (max over completions); empty if not applicable.

        ``state`` is the trie node of ``prefix`` when the caller already knows it.
        """
        empty = np.zeros(0, np.int64), np.zeros(0, np.float64)
        if self.boundary_token_id not in prefix:
            return empty
        state = int(trie.walk([list(prefix)])[0]) if state is None else state
        if state < 0 or int(trie.num_children(torch.tensor([state]))[0]) < 2:
            return empty
        paths, _, complete = trie.completion_arrays(state, self.max_completions)
        if not complete:
            logger.debug("lookahead skipped: more than %d completions", self.max_completions)
            return empty
        paths = paths[paths[:, 0] >= 0] if paths.shape[1] else paths[:0]  # drop the empty continuation
        gain = lcs_lengths(question, prefix, paths) - lcs_length(list(prefix), list(question))
        tokens, inverse = np.unique(paths[:, 0].astype(np.int64), return_inverse=True)
        best = np.full(len(tokens), -np.inf)
        np.maximum.at(best, inverse.reshape(-1), gain.astype(np.float64))
        return tokens, np.maximum(best + 1.0, 1.0)

    def __call__(self, log_probs: Tensor, trie: TokenTrie, prefixes: Sequence[Sequence[int]],
                 questions: Sequence[Sequence[int]], states: Tensor | None = None) -> Tensor:
        """Apply ``log p ← log p / (Δ + 1)`` row by row (eq. 3); renormalise afterwards.

        Args:
            log_probs: float ``[N, V]`` log-probabilities of the next token.
            prefixes: the N decoded prefixes (constrained part only).
            questions: the question tokens of each row.
            states: long ``[N]`` trie states of the prefixes, when known.

        Returns:
            A new ``[N, V]`` tensor; rows where lookahead does not apply are unchanged.
        """
        divisor = torch.ones_like(log_probs)
        known = None if states is None else states.tolist()
        for row, (prefix, question) in enumerate(zip(prefixes, questions)):
            tokens, weights = self.weights(trie, prefix, question, None if known is None else known[row])
            if len(tokens):
                divisor[row, torch.from_numpy(tokens).to(log_probs.device)] = torch.from_numpy(weights).to(divisor)
        return log_probs / divisor
