"""The Chinese pretraining corpus of ``kexue-small-zh``: every allowed text source, as documents.

What goes in (never any dev or test text):

- ``corpus_zh``: the classical books, one document per chapter-sized piece;
- ``corpus_zh_modern``: modern prose, news and reviews, one document per line;
- FewCLUE unlabeled sets (eprstmt reviews, tnews titles, bustm pairs, chid passages), less any
  record whose text also occurs in a dev split of its task;
- AFQMC **train** sentence pairs, one two-sentence document per pair;
- KgCLUE **train** questions, one single-sentence document each.

Sentence pairs become two-line documents so that a next-sentence task sees them as neighbours
(BUSTM and AFQMC pairs are close in meaning, which is what zero-shot NSP on pair tasks uses).
ChID passages carry ``#idiom#`` blanks; the blank marker is removed, leaving the sentence around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kexue.data.clue import read_afqmc
from kexue.data.corpus import iter_corpus_zh, iter_corpus_zh_modern
from kexue.data.fewclue import FEWCLUE_SPLITS, read_fewclue
from kexue.data.kgclue import read_kgclue
from kexue.data.records import Document
from kexue.data.root import resolve_data_root

__all__ = ["PRETRAINING_SOURCES", "chinese_pretraining_documents", "write_documents_jsonl"]

_CHID_BLANK = "#idiom#"
PRETRAINING_SOURCES = (
    "corpus_zh",
    "corpus_zh_modern",
    "fewclue_unlabeled",
    "afqmc_train",
    "kgclue_train",
)


def _fewclue_dev_texts(task: str, root: Path) -> frozenset[str]:
    texts: set[str] = set()
    for split in (split for split in FEWCLUE_SPLITS if split.startswith("dev")):
        if (root / "fewclue" / task / f"{split}.json").is_file():
            texts.update(text for record in read_fewclue(task, split, root) for text in record.texts())
    return frozenset(texts)


def _fewclue_unlabeled(root: Path) -> Iterator[Document]:
    # Some unlabeled sentences also occur in the dev splits (6 in eprstmt): those records are left out.
    for task in ("eprstmt", "tnews", "bustm", "chid"):
        dev_texts = _fewclue_dev_texts(task, root)
        for index, record in enumerate(read_fewclue(task, "unlabeled", root)):
            if dev_texts.intersection(record.texts()):
                continue
            texts = [text.replace(_CHID_BLANK, "") for text in record.texts()]
            yield Document(f"fewclue:{task}", None, "\n".join(texts), index)


def _afqmc_train(root: Path) -> Iterator[Document]:
    for index, pair in enumerate(read_afqmc("train", root)):
        yield Document("afqmc:train", None, f"{pair.sentence1}\n{pair.sentence2}", index)


def _kgclue_train(root: Path) -> Iterator[Document]:
    for index, example in enumerate(read_kgclue("train", root)):
        yield Document("kgclue:train", None, example.question, index)


def chinese_pretraining_documents(
    root: str | Path | None = None, sources: tuple[str, ...] = PRETRAINING_SOURCES
) -> Iterator[Document]:
    """Lazily yield the documents of the chosen sources, in the order of ``PRETRAINING_SOURCES``.

    Raises:
        ValueError: an unknown source name.
    """
    unknown = set(sources) - set(PRETRAINING_SOURCES)
    if unknown:
        raise ValueError(f"`sources` has unknown names {sorted(unknown)}; choose from {PRETRAINING_SOURCES}")
    data_root = resolve_data_root(root)
    readers = {
        "corpus_zh": lambda: iter_corpus_zh(root=data_root),
        "corpus_zh_modern": lambda: iter_corpus_zh_modern(root=data_root),
        "fewclue_unlabeled": lambda: _fewclue_unlabeled(data_root),
        "afqmc_train": lambda: _afqmc_train(data_root),
        "kgclue_train": lambda: _kgclue_train(data_root),
    }
    for source in PRETRAINING_SOURCES:
        if source in sources:
            yield from readers[source]()


def write_documents_jsonl(documents: Iterator[Document], path: str | Path) -> int:
    """Write documents as JSONL ``{"source", "text"}`` (the input format of ``kexue pretrain``); returns the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for document in documents:
            handle.write(json.dumps({"source": document.source, "text": document.text}, ensure_ascii=False) + "\n")
            count += 1
    return count
