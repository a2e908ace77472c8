"""NSP pairs that need coherence: IsNext continues A; NotNext is one of three kinds in equal shares."""

from __future__ import annotations

import numpy as np
import pytest

from kexue.pretrain.data import NSP_NEGATIVES, PretrainBatches, SpecialIds, TokenizedCorpus, pack_segments

SENTENCES_PER_DOCUMENT, SENTENCE_LENGTH, DOCUMENTS_PER_SOURCE, SOURCES = 8, 3, 6, 3


def _unique_token_corpus() -> TokenizedCorpus:
    """Every token id occurs once, so a span's position (document, sentence) can be read from its ids."""
    documents = SOURCES * DOCUMENTS_PER_SOURCE
    sentences = documents * SENTENCES_PER_DOCUMENT
    tokens = np.arange(10, 10 + sentences * SENTENCE_LENGTH, dtype=np.int32)
    sentence_starts = np.arange(sentences + 1, dtype=np.int64) * SENTENCE_LENGTH
    document_starts = np.arange(documents + 1, dtype=np.int64) * SENTENCES_PER_DOCUMENT
    sources = np.repeat(np.arange(SOURCES), DOCUMENTS_PER_SOURCE).astype(np.int64)
    return TokenizedCorpus(tokens, sentence_starts, document_starts, None, sources)


def _where(token_id: int) -> tuple[int, int, int]:
    """(document, sentence within the document, source) of a token id of the corpus above."""
    sentence = (token_id - 10) // SENTENCE_LENGTH
    document = sentence // SENTENCES_PER_DOCUMENT
    return document, sentence % SENTENCES_PER_DOCUMENT, document // DOCUMENTS_PER_SOURCE


def _kind(a: np.ndarray, b: np.ndarray) -> str:
    if b[0] == a[-1] + 1:
        return "is_next"
    if a[0] == b[-1] + 1:
        return "swapped"
    (doc_a, sentence_a, source_a), (doc_b, sentence_b, source_b) = _where(int(a[0])), _where(int(b[0]))
    if doc_a == doc_b:
        return "same_document"
    return "same_source" if source_a == source_b else "other_source"


def test_negatives_are_the_three_kinds_in_equal_shares():
    corpus = _unique_token_corpus()
    special = SpecialIds(cls=1, sep=2, pad=0, mask=3, random_ids=np.arange(10, 20))
    # Segments of 12 tokens (4 sentences): a document holds two, so same-document negatives always exist.
    batches = PretrainBatches(corpus, pack_segments(corpus, 12), special, batch_size=4, seq_len=32, nsp=True)
    rng = np.random.default_rng(0)
    counts = {"is_next": 0, "swapped": 0, "same_document": 0, "same_source": 0, "other_source": 0}
    for _ in range(3000):
        segment = int(rng.integers(len(batches.segments)))
        (a, _), (b, _), label = batches._pair(segment, rng, allow_random=True)
        kind = _kind(a, b)
        assert (label == 0) == (kind == "is_next")
        if kind == "same_document":  # B starts at a sentence boundary, neither in A nor right after it
            assert (b[0] - 10) % SENTENCE_LENGTH == 0
            start_a, start_b = _where(int(a[0]))[1], _where(int(b[0]))[1]
            end_a = _where(int(a[-1]))[1]
            assert start_b < start_a or start_b > end_a + 1
        counts[kind] += 1
    assert counts["other_source"] == 0
    assert counts["is_next"] / 3000 == pytest.approx(0.5, abs=0.03)
    negatives = 3000 - counts["is_next"]
    for kind, share in NSP_NEGATIVES.items():
        assert counts[kind] / negatives == pytest.approx(share, abs=0.04), counts


def test_two_sentence_documents_fall_back_to_the_same_source():
    # Sentence pairs (AFQMC, STS) leave no same-document candidate: those negatives come from the same source.
    corpus = _unique_token_corpus()
    pairs = TokenizedCorpus(corpus.tokens, corpus.sentence_starts, np.arange(0, len(corpus.sentence_starts), 2),
                            None, np.repeat(np.arange(SOURCES), len(corpus.sentence_starts) // 2 // SOURCES))
    special = SpecialIds(cls=1, sep=2, pad=0, mask=3, random_ids=np.arange(10, 20))
    batches = PretrainBatches(pairs, pack_segments(pairs, 24), special, batch_size=4, seq_len=64, nsp=True)
    rng = np.random.default_rng(1)
    kinds = []
    for segment in rng.integers(len(batches.segments), size=1500):
        (a, _), (b, _), _ = batches._pair(int(segment), rng, allow_random=True)
        document_a, document_b = (int(a[0]) - 10) // (2 * SENTENCE_LENGTH), (int(b[0]) - 10) // (2 * SENTENCE_LENGTH)
        kinds.append("is_next" if b[0] == a[-1] + 1 else "swapped" if a[0] == b[-1] + 1
                     else "same_document" if document_a == document_b else "other_document")
        if kinds[-1] == "other_document":
            assert pairs.document_sources[document_a] == pairs.document_sources[document_b]
    negatives = 1500 - kinds.count("is_next")
    assert kinds.count("same_document") == 0
    assert kinds.count("other_document") / negatives == pytest.approx(2 / 3, abs=0.05)
