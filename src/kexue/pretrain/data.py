"""Pretraining data: documents → sentences → token ids → packed segments → MLM/NSP/UniLM batches.

Input formats (:func:`read_documents`):
    ``*.jsonl``  one document per line, text in the field ``text_field`` (default ``"text"``).
    other files  plain UTF-8 text; ``text_format="blocks"`` (default) makes one document of each
                 blank-line-separated block, ``"lines"`` one document per non-empty line.

Documents are split into sentences after Chinese/Western end punctuation (。！？；… !?;, with any
closing quotes) and at newlines (:func:`split_sentences`), tokenized once (batched fast
tokenizer) and stored as one flat id array (:class:`TokenizedCorpus`). As in BERT's
``create_pretraining_data.py``, consecutive sentences of one document are packed into segments of
at most ``seq_len - 3`` tokens; a longer sentence is cut. :class:`PretrainBatches` then builds
batches on the fly: the segment order, the length buckets, the masks and the NSP/UniLM pairs
depend only on ``(seed, epoch, batch index)``, so masking is dynamic (re-drawn each epoch) and a
resumed run sees exactly the data an uninterrupted one would.

NSP negatives (:data:`NSP_NEGATIVES`). BERT draws the NotNext B from another document of the whole
corpus; on a corpus mixing classical novels, news, reviews and questions, the style of B alone
then gives the answer, and kexue-small-zh v1's head learned exactly that (held-out AUC 0.73–0.95
against another source, 0.53–0.59 against the same source, 0.48–0.52 against A/B swapped). So
negatives here come in three equal shares, one per way a pair can be incoherent:

- ``same_document``: B starts at a sentence of the same document that is neither in A nor right
  after it (topic and style match; only the order of thought differs);
- ``swapped``: the true pair in the wrong order, ``[CLS] B [SEP] A [SEP]`` (ALBERT's sentence-order
  prediction);
- ``same_source``: B starts a segment of another document of the same source (same style, another
  topic: what a zero-shot template followed by a text of the wrong class looks like).

A document too short for a same-document negative falls back to ``same_source``, and a source with
one document to any other document.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kexue.data.readers import RecordError, read_jsonl

from .masking import IGNORE_INDEX, mask_tokens

__all__ = ["read_documents", "split_sentences", "TokenizedCorpus", "tokenize_corpus", "split_eval_documents",
           "pack_segments", "PretrainBatches", "NSP_NEGATIVES"]

logger = logging.getLogger(__name__)

# The kinds of NotNext pairs and their shares among the negatives (see the module docstring).
NSP_NEGATIVES = {"same_document": 1 / 3, "swapped": 1 / 3, "same_source": 1 / 3}

_SENTENCE_END = re.compile(r"([。！？；!?;…]+[”’」』\"')）]*|\n+)")


def read_documents(paths: Sequence[str | Path], text_field: str = "text", text_format: str = "blocks") -> list[str]:
    """Read documents from JSONL or text files (see the module docstring). Empty documents are skipped.

    Raises:
        ValueError: naming the file and line of a bad JSON line or a line without ``text_field``.
    """
    if text_format not in ("blocks", "lines"):
        raise ValueError(f"`text_format` must be 'blocks' or 'lines', got {text_format!r}")
    documents: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"input file not found: {path}")
        if path.suffix == ".jsonl":
            documents.extend(_read_jsonl(path, text_field))
            continue
        with path.open(encoding="utf-8") as f:
            if text_format == "lines":
                documents.extend(line.strip() for line in f if line.strip())
            else:
                documents.extend(block.strip() for block in re.split(r"\n\s*\n", f.read()) if block.strip())
    return documents


def _read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    def text_of(record) -> str:
        if not isinstance(record.get(text_field), str):
            raise RecordError(f"no string field {text_field!r} (set it with --text-field)")
        return record[text_field]

    return (text for text in read_jsonl(path, text_of) if text.strip())


def split_sentences(text: str) -> list[str]:
    """Split after end punctuation (with closing quotes) and at newlines; drop empty pieces.

    Example:
        >>> split_sentences("他说：“好！”然后走了。\\n第二段？是的")
        ['他说：“好！”', '然后走了。', '第二段？', '是的']
    """
    pieces = _SENTENCE_END.split(text)
    sentences = [(body + end).strip() for body, end in zip(pieces[0::2], pieces[1::2] + [""])]
    return [s for s in sentences if s]


def split_eval_documents(documents: list[str], eval_docs: int) -> tuple[list[str], list[str]]:
    """Hold out ``eval_docs`` documents spread evenly over the corpus (deterministic: every k-th).

    Spreading them keeps every source represented, which "the last N documents" of concatenated
    files would not. Returns ``(train, eval)``.
    """
    if not 0 <= eval_docs < len(documents):
        raise ValueError(f"`eval_docs` must be in [0, {len(documents)}), got {eval_docs}")
    held = set(np.linspace(0, len(documents) - 1, eval_docs).round().astype(int).tolist()) if eval_docs else set()
    train = [d for i, d in enumerate(documents) if i not in held]
    return train, [documents[i] for i in sorted(held)]


@dataclass
class TokenizedCorpus:
    tokens: np.ndarray               # int32 [T] all token ids, no special tokens
    sentence_starts: np.ndarray      # int64 [S + 1] token offset of each sentence, then T
    document_starts: np.ndarray      # int64 [D + 1] sentence index of each document, then S
    word_starts: np.ndarray | None   # bool [T] True where a (jieba) word begins; only for wwm
    document_sources: np.ndarray | None = None  # int64 [D] source id of each document (NSP negatives)


def tokenize_corpus(documents: Sequence[str], tokenizer, whole_word: bool = False,
                    chunk: int = 20000, sources: Sequence[str] | None = None) -> TokenizedCorpus:
    """Split into sentences and tokenize once (batched). ``whole_word`` cuts words with jieba.

    ``sources`` names each document's source (for example ``"news_msra"``); NSP draws its
    same-source negatives from it. None puts every document in one source.
    """
    if sources is not None and len(sources) != len(documents):
        raise ValueError(f"`sources` has {len(sources)} names for {len(documents)} documents")
    if whole_word:
        try:
            import jieba
        except ImportError:
            raise ImportError("whole-word masking needs jieba: pip install 'kexue[zh]' (or pip install jieba)") from None
        jieba.setLogLevel(logging.WARNING)
    sentences_per_doc = [split_sentences(doc) for doc in documents]
    sentences = [s for doc in sentences_per_doc for s in doc]
    ids: list[list[int]] = []
    word_starts: list[np.ndarray] = []
    for begin in range(0, len(sentences), chunk):
        part = sentences[begin:begin + chunk]
        if whole_word:
            words = [jieba.lcut(s) for s in part]
            encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
            for i, row in enumerate(encoded["input_ids"]):
                word = np.array([-1 if w is None else w for w in encoded.word_ids(i)])
                word_starts.append(np.diff(word, prepend=-2) != 0)
                ids.append(row)
        else:
            ids.extend(tokenizer(part, add_special_tokens=False)["input_ids"])
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    sentence_starts = np.concatenate([[0], np.cumsum(lengths)])
    doc_sizes = np.array([len(doc) for doc in sentences_per_doc], dtype=np.int64)
    tokens = np.fromiter((t for row in ids for t in row), dtype=np.int32, count=int(lengths.sum()))
    source_ids = None
    if sources is not None:
        source_ids = np.unique(np.asarray(sources, dtype=object).astype(str), return_inverse=True)[1].astype(np.int64)
    return TokenizedCorpus(tokens, sentence_starts, np.concatenate([[0], np.cumsum(doc_sizes)]),
                           np.concatenate(word_starts) if whole_word and word_starts else None, source_ids)


def pack_segments(corpus: TokenizedCorpus, max_tokens: int) -> np.ndarray:
    """Pack consecutive sentences of each document into segments of at most ``max_tokens`` tokens.

    Returns int64 ``[N, 3]`` rows ``(token start, token end, document index)``.
    """
    segments: list[tuple[int, int, int]] = []
    starts = corpus.sentence_starts
    for doc in range(len(corpus.document_starts) - 1):
        first, last = corpus.document_starts[doc], corpus.document_starts[doc + 1]
        begin = end = int(starts[first])
        for sentence in range(first, last):
            s_begin, s_end = int(starts[sentence]), int(starts[sentence + 1])
            if s_end - begin > max_tokens and end > begin:  # close the segment before this sentence
                segments.append((begin, end, doc))
                begin = s_begin
            while s_end - begin > max_tokens:  # a sentence longer than a segment is cut
                segments.append((begin, begin + max_tokens, doc))
                begin += max_tokens
            end = s_end
        if end > begin:
            segments.append((begin, end, doc))
    return np.array(segments, dtype=np.int64).reshape(-1, 3)


@dataclass
class SpecialIds:
    cls: int
    sep: int
    pad: int
    mask: int
    random_ids: np.ndarray           # ids a masked token may be replaced with (no special tokens)

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SpecialIds":
        special = set(tokenizer.all_special_ids)
        vocab = tokenizer.get_vocab()
        normal = [i for token, i in vocab.items() if i not in special and not re.fullmatch(r"\[unused\d+\]", token)]
        return cls(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                   tokenizer.mask_token_id, np.array(sorted(normal), dtype=np.int64))


class PretrainBatches:
    """Iterable of pretraining batches over packed segments; resumable with ``set_position``.

    Each batch is a dict of tensors: ``input_ids``, ``token_type_ids`` (long ``[B, L]``),
    ``attention_mask`` (bool ``[B, L]``, True = token), ``mlm_positions`` (bool ``[B, L]``, True =
    predicted), ``mlm_labels`` (long ``[B, L]``, -100 elsewhere), ``nsp_labels`` (long ``[B]``,
    0 = IsNext, 1 = NotNext; only with ``nsp``) and ``task`` (``"mlm"`` or ``"unilm"``).

    MLM rows are ``[CLS] A [SEP]`` or, with NSP, ``[CLS] A [SEP] B [SEP]`` where A is a segment's
    first sentences and B is, with probability 1/2, the rest (IsNext), else a NotNext pair of one
    of the kinds in :data:`NSP_NEGATIVES`. UniLM rows (a ``unilm_fraction`` of the batches) are
    ``[CLS] A [SEP] B [SEP]`` with token types 0/1, where the position before each token of
    ``B [SEP]`` predicts it (labels shifted left by one); attend with ``padding & unilm_mask``.

    Batches are length-bucketed: within each window of ``bucket_batches`` batches, segments are
    sorted by length before being cut into batches, whose order is then shuffled.
    """

    def __init__(self, corpus: TokenizedCorpus, segments: np.ndarray, special: SpecialIds, batch_size: int,
                 seq_len: int, seed: int = 0, mlm_prob: float = 0.15, nsp: bool = False,
                 unilm_fraction: float = 0.0, whole_word: bool = False, bucket_batches: int = 50,
                 shard_index: int = 0, num_shards: int = 1) -> None:
        if whole_word and corpus.word_starts is None:
            raise ValueError("`whole_word` needs a corpus tokenized with whole_word=True")
        if not 0.0 <= unilm_fraction <= 1.0:
            raise ValueError(f"`unilm_fraction` must be in [0, 1], got {unilm_fraction}")
        lengths = segments[:, 1] - segments[:, 0]
        if nsp or unilm_fraction > 0:  # a pair needs one token on each side
            segments = segments[lengths >= 2]
        if len(segments) == 0:
            raise ValueError("no segments to train on: the input has no usable text")
        self.corpus, self.segments, self.special = corpus, segments, special
        self.batch_size, self.seq_len, self.seed, self.mlm_prob = batch_size, seq_len, seed, mlm_prob
        self.nsp, self.unilm_fraction, self.whole_word = nsp, unilm_fraction, whole_word
        self.bucket_batches, self.shard_index, self.num_shards = bucket_batches, shard_index, num_shards
        self.epoch, self.start_index, self._order = 0, 0, (-1, [])
        documents = len(corpus.document_starts) - 1
        sources = corpus.document_sources if corpus.document_sources is not None else np.zeros(documents, np.int64)
        segment_sources = sources[segments[:, 2]]
        self._segments_by_source = {int(source): np.flatnonzero(segment_sources == source)
                                    for source in np.unique(segment_sources)}
        self._segment_sources = segment_sources

    def set_position(self, epoch: int, index: int) -> None:
        self.epoch, self.start_index = epoch, index

    def set_epoch(self, epoch: int) -> None:
        self.set_position(epoch, 0)

    def epoch_order(self, epoch: int) -> list[np.ndarray]:
        """Segment indices of each batch of this shard in ``epoch``."""
        if self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.segments))
            lengths = self.segments[:, 1] - self.segments[:, 0]
            batches: list[np.ndarray] = []
            window = self.batch_size * self.bucket_batches
            for begin in range(0, len(order), window):
                part = order[begin:begin + window]
                part = part[np.argsort(-lengths[part], kind="stable")]
                cut = [part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size)]
                batches.extend(cut[i] for i in rng.permutation(len(cut)))
            self._order = (epoch, batches[self.shard_index::self.num_shards])
        return self._order[1]

    def __len__(self) -> int:
        return len(self.epoch_order(self.epoch))

    def __iter__(self) -> Iterator[dict]:
        epoch, batches = self.epoch, self.epoch_order(self.epoch)
        for index in range(self.start_index, len(batches)):
            yield self.make_batch(batches[index], np.random.default_rng([self.seed, epoch, index, self.shard_index]))

    # ----------------------------------------------------------------- one batch
    def _span(self, begin: int, end: int) -> tuple[np.ndarray, np.ndarray | None]:
        words = self.corpus.word_starts[begin:end] if self.whole_word else None
        return self.corpus.tokens[begin:end].astype(np.int64), words

    def _pair(self, segment: int, rng: np.random.Generator, allow_random: bool):
        """``(A span, B span, nsp label)`` from one segment; spans are ``(ids, word_starts)``."""
        begin, end, doc = (int(v) for v in self.segments[segment])
        starts = self.corpus.sentence_starts
        inner = starts[np.searchsorted(starts, begin, "right"):np.searchsorted(starts, end, "left")]
        cut = int(rng.choice(inner)) if len(inner) else begin + int(rng.integers(1, end - begin))
        a, b = self._span(begin, cut), self._span(cut, end)
        if not (allow_random and rng.random() < 0.5):
            return a, b, 0
        kinds = list(NSP_NEGATIVES)
        kind = kinds[int(rng.choice(len(kinds), p=list(NSP_NEGATIVES.values())))]
        if kind == "swapped":
            return b, a, 1
        if kind == "same_document":
            other = self._same_document_start(doc, begin, cut, rng)
            if other is not None:
                return a, self._b_from(other, self._document_end(doc), len(a[0])), 1
        other_b = self._b_from_other_document(segment, doc, len(a[0]), rng)
        return (a, other_b, 1) if other_b is not None else (b, a, 1)

    def _document_end(self, doc: int) -> int:
        return int(self.corpus.sentence_starts[self.corpus.document_starts[doc + 1]])

    def _same_document_start(self, doc: int, begin: int, cut: int, rng: np.random.Generator) -> int | None:
        """Token start of a sentence of ``doc`` that is neither in A nor right after it; None if there is none."""
        starts = self.corpus.sentence_starts
        first, last = int(self.corpus.document_starts[doc]), int(self.corpus.document_starts[doc + 1])
        a_first = int(np.searchsorted(starts, begin, "right")) - 1
        at_cut = int(np.searchsorted(starts, cut, "right")) - 1  # the sentence B (or its rest) comes from
        candidates = [i for i in (*range(first, a_first), *range(at_cut + 2, last)) if starts[i + 1] > starts[i]]
        if not candidates:
            return None
        return int(starts[candidates[int(rng.integers(len(candidates)))]])

    def _b_from(self, start: int, stop: int, a_length: int):
        return self._span(start, min(stop, start + self.seq_len - 3 - a_length))

    def _b_from_other_document(self, segment: int, doc: int, a_length: int, rng: np.random.Generator):
        """The start of a segment of another document of the same source (else of any); None if none is found."""
        same_source = self._segments_by_source[int(self._segment_sources[segment])]
        for pool_size, pick in ((len(same_source), lambda i: int(same_source[i])), (len(self.segments), int)):
            for _ in range(10):
                other = pick(rng.integers(pool_size))
                if self.segments[other, 2] != doc:
                    return self._b_from(int(self.segments[other, 0]), int(self.segments[other, 1]), a_length)
        return None

    def _row(self, pieces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[CLS] p0 [SEP] p1 [SEP]...`` with token types, special flags and word ids."""
        special = self.special
        ids, types, word_starts = [np.array([special.cls])], [np.zeros(1, np.int64)], [np.ones(1, bool)]
        for segment_id, (piece, words) in enumerate(pieces):
            ids += [piece, np.array([special.sep])]
            types.append(np.full(len(piece) + 1, segment_id, np.int64))
            starts = np.ones(len(piece), bool) if words is None else words.copy()
            if len(starts):
                starts[0] = True
            word_starts += [starts, np.ones(1, bool)]
        return np.concatenate(ids), np.concatenate(types), np.cumsum(np.concatenate(word_starts))

    def _fit(self, a, b):
        """Truncate the longer side from its end until ``[CLS] A [SEP] B [SEP]`` fits ``seq_len``."""
        (a_ids, a_words), (b_ids, b_words) = a, b
        excess = len(a_ids) + len(b_ids) + 3 - self.seq_len
        while excess > 0:
            if len(a_ids) > len(b_ids):
                a_ids, a_words = a_ids[:-1], None if a_words is None else a_words[:-1]
            else:
                b_ids, b_words = b_ids[:-1], None if b_words is None else b_words[:-1]
            excess -= 1
        return (a_ids, a_words), (b_ids, b_words)

    def make_batch(self, segment_indices: np.ndarray, rng: np.random.Generator) -> dict:
        unilm = self.unilm_fraction > 0 and rng.random() < self.unilm_fraction
        rows, nsp_labels = [], []
        for segment in segment_indices:
            if unilm or self.nsp:
                a, b, label = self._pair(int(segment), rng, allow_random=not unilm)
                rows.append(self._row(self._fit(a, b)))
                nsp_labels.append(label)
            else:
                begin, end, _ = (int(v) for v in self.segments[segment])
                rows.append(self._row([self._span(begin, min(end, begin + self.seq_len - 2))]))
        width = max(len(ids) for ids, _, _ in rows)
        input_ids = np.full((len(rows), width), self.special.pad, np.int64)
        token_types = np.zeros((len(rows), width), np.int64)
        word_ids = np.full((len(rows), width), -1, np.int64)
        for i, (ids, types, words) in enumerate(rows):
            input_ids[i, :len(ids)], token_types[i, :len(ids)], word_ids[i, :len(ids)] = ids, types, words
        attention = input_ids != self.special.pad
        if unilm:
            targets = np.zeros_like(input_ids)
            targets[:, :-1] = input_ids[:, 1:]  # position p predicts token p + 1 ...
            positions = np.zeros_like(attention)
            positions[:, :-1] = (token_types[:, 1:] == 1) & attention[:, 1:]  # ... when p + 1 is in B [SEP]
            inputs, labels = input_ids, np.where(positions, targets, IGNORE_INDEX)
        else:
            candidates = attention & (input_ids != self.special.cls) & (input_ids != self.special.sep)
            inputs, labels = mask_tokens(input_ids, candidates, rng, self.special.mask, self.special.random_ids,
                                         self.mlm_prob, word_ids if self.whole_word else None)
        batch = {"input_ids": torch.from_numpy(inputs), "token_type_ids": torch.from_numpy(token_types),
                 "attention_mask": torch.from_numpy(attention), "mlm_positions": torch.from_numpy(labels != IGNORE_INDEX),
                 "mlm_labels": torch.from_numpy(labels), "task": "unilm" if unilm else "mlm"}
        if self.nsp and not unilm:
            batch["nsp_labels"] = torch.tensor(nsp_labels, dtype=torch.long)
        return batch
