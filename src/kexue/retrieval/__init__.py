"""Seq2Seq + prefix tree retrieval (post 8802, kexue.fm/archives/8802).

- :class:`TokenTrie`: a prefix tree in flat arrays with batched ``allowed_next`` masks
  ``[batch, vocab]`` on any device, payload ids, completions, memory-mapped save / load.
- :class:`TrieConstrainedLogitsProcessor`: the trie constraint for transformers ``generate()``.
- :func:`trie_beam_search`: greedy / beam search for kexue's UniLM backbone with the KV cache.
- :class:`Lookahead`: the post's "前瞻" reweighting ``p <- p^{1/(Δ+1)}`` (eq. 2-3).
- KgCLUE KBQA: :class:`KnowledgeBase` (SQLite), :class:`KbqaPredictor`, :func:`kgclue_metrics`.

Example:
    >>> from kexue.retrieval import TokenTrie
    >>> trie = TokenTrie.build([[4, 5], [4, 6]], payloads=[7, 8])
    >>> trie.allowed_next(trie.walk([[4]]))[0].nonzero().flatten().tolist()
    [5, 6]
"""

import importlib

# Names are imported on first use (PEP 562), so that `kexue kbqa ...` loads only what it runs:
# transformers (for the generate() processor) alone takes about a second to import.
_EXPORTS = {
    "kexue.retrieval.trie": ["TokenTrie"],
    "kexue.retrieval.builder": ["TrieBuilder"],
    "kexue.retrieval.processor": ["TrieConstrainedLogitsProcessor"],
    "kexue.retrieval.decoding": ["constrained_log_probs", "trie_beam_search", "Hypothesis"],
    "kexue.retrieval.lookahead": ["Lookahead", "lcs_length"],
    "kexue.retrieval.kb": ["Fact", "KnowledgeBase", "subject_kind"],
    "kexue.retrieval.recipe": ["KBQA_RECIPE", "KbqaRecipe"],
    "kexue.retrieval.kbqa": ["TARGET_ORDERS", "KbqaCodec", "KbqaBatches", "KbqaPredictor", "Answer", "build_kb_trie",
                             "load_or_build_trie", "evaluate_kbqa", "train_kbqa"],
    "kexue.retrieval.metrics": ["kgclue_metrics", "f1_similarity"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
