"""Seq2Seq + prefix tree retrieval (post 8802, kexue.fm/archives/8802).

- :class:`TokenTrie`: a prefix tree in flat arrays with batched ``allowed_next`` masks
  ``[batch, vocab]`` on any device, payload ids, completions, memory-mapped save / load.
- :class:`TrieConstrainedLogitsProcessor`: the trie constraint for transformers ``generate()``.
- :func:`trie_beam_search`: greedy / beam search for kexue's UniLM backbone with the KV cache.
- :class:`Lookahead`: the post's "前瞻" reweighting ``p <- p^{1/(Δ+1)}`` (eq. 2-3).
- KgCLUE KBQA: :class:`KnowledgeBase` (SQLite), :class:`KbqaPredictor`, :func:`kgclue_metrics`.

Example:
    >>> trie = TokenTrie.build([[4, 5], [4, 6]], payloads=[7, 8])
    >>> trie.allowed_next(trie.walk([[4]]))[0].nonzero().flatten().tolist()
    [5, 6]
"""

from kexue.retrieval.decoding import Hypothesis, trie_beam_search
from kexue.retrieval.kb import Fact, KnowledgeBase, subject_kind
from kexue.retrieval.kbqa import (TARGET_ORDERS, Answer, KbqaBatches, KbqaCodec, KbqaPredictor, build_kb_trie,
                                  evaluate_kbqa, load_or_build_trie, train_kbqa)
from kexue.retrieval.lookahead import Lookahead, lcs_length
from kexue.retrieval.metrics import f1_similarity, kgclue_metrics
from kexue.retrieval.processor import TrieConstrainedLogitsProcessor, constrained_log_probs
from kexue.retrieval.builder import TrieBuilder
from kexue.retrieval.trie import TokenTrie

__all__ = [
    "TokenTrie", "TrieBuilder", "TrieConstrainedLogitsProcessor", "constrained_log_probs", "trie_beam_search",
    "Hypothesis", "Lookahead", "lcs_length", "Fact", "KnowledgeBase", "subject_kind", "TARGET_ORDERS",
    "KbqaCodec", "KbqaBatches", "KbqaPredictor", "Answer", "build_kb_trie", "load_or_build_trie",
    "evaluate_kbqa", "train_kbqa", "kgclue_metrics", "f1_similarity",
]
