"""The Chinese pretraining corpus of ``kexue-small-zh``: every allowed text source, as documents.

What goes in (never any dev or test text):

- ``corpus_zh``: the classical books, one document per chapter-sized piece;
- ``corpus_zh_modern``: modern prose, news and reviews, one document per line;
- FewCLUE unlabeled sets of tnews (news titles) and chid (passages). Not eprstmt's and bustm's:
  those overlap their official test sets;
- the training sentences of CLUE and Chinese STS: AFQMC **train** pairs, OCNLI **train.10k**
  premise/hypothesis pairs, STS-B **train** pairs, one two-sentence document per pair;
- KgCLUE **train** questions, one single-sentence document each.

Every record-level source is deduplicated against every dev/valid set in the data root
(:func:`evaluation_texts`): a record sharing any text with an evaluation set is left out.
Sentence pairs become two-line documents so that a next-sentence task sees them as neighbours
(AFQMC and STS pairs are close in meaning, which is what zero-shot NSP on pair tasks uses).
ChID passages carry ``#idiom#`` blanks; the blank marker is removed, leaving the sentence around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kexue.data.clue import read_afqmc, read_cmnli, read_ocnli
from kexue.data.corpus import iter_corpus_zh, iter_corpus_zh_modern
from kexue.data.fewclue import FEWCLUE_SPLITS, FEWCLUE_TASKS, read_fewclue
from kexue.data.kgclue import read_kgclue
from kexue.data.records import Document
from kexue.data.root import resolve_data_root
from kexue.data.sts import STS_ZH_SPLITS, read_sts_zh

__all__ = ["PRETRAINING_SOURCES", "chinese_pretraining_documents", "evaluation_texts", "write_documents_jsonl"]

_CHID_BLANK = "#idiom#"
PRETRAINING_SOURCES = (
    "corpus_zh",
    "corpus_zh_modern",
    "fewclue_unlabeled",
    "afqmc_train",
    "ocnli_train",
    "stsb_train",
    "kgclue_train",
)
# eprstmt's and bustm's unlabeled sets overlap their official FewCLUE test sets, so they stay out.
_FEWCLUE_UNLABELED = ("tnews", "chid")


def evaluation_texts(root: str | Path | None = None) -> frozenset[str]:
    """Every text of every dev/valid split present in the data root (FewCLUE, CLUE, Chinese STS, KgCLUE).

    Missing files are skipped, so a partial data root works; the set is what pretraining must not see.
    """
    root = resolve_data_root(root)
    readers = [lambda: read_kgclue("dev", root), lambda: read_afqmc("dev", root), lambda: read_cmnli("dev", root),
               lambda: read_ocnli("dev_minus_fewclue_test", root)]
    readers += [lambda name=name: read_sts_zh(name, "valid", root) for name in STS_ZH_SPLITS]
    readers += [lambda task=task, split=split: read_fewclue(task, split, root)
                for task in FEWCLUE_TASKS for split in FEWCLUE_SPLITS if split.startswith("dev")]
    texts: set[str] = set()
    for read in readers:
        try:
            texts.update(text.replace(_CHID_BLANK, "") for record in read() for text in record.texts())
        except FileNotFoundError:  # DataNotFoundError is one: that evaluation set is not in this root
            continue
    return frozenset(texts)


def _records(source: str, records, evaluation: frozenset[str]) -> Iterator[Document]:
    """One document per record (its texts one per line), leaving out records that share a text with evaluation."""
    for index, record in enumerate(records):
        texts = [text.replace(_CHID_BLANK, "") for text in record.texts()]
        if not evaluation.isdisjoint(texts):
            continue
        yield Document(source, None, "\n".join(texts), index)


def _fewclue_unlabeled(root: Path, evaluation: frozenset[str]) -> Iterator[Document]:
    for task in _FEWCLUE_UNLABELED:
        yield from _records(f"fewclue:{task}", read_fewclue(task, "unlabeled", root), evaluation)


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
    evaluation = evaluation_texts(data_root)
    readers = {
        "corpus_zh": lambda: iter_corpus_zh(root=data_root),
        "corpus_zh_modern": lambda: iter_corpus_zh_modern(root=data_root),
        "fewclue_unlabeled": lambda: _fewclue_unlabeled(data_root, evaluation),
        "afqmc_train": lambda: _records("afqmc:train", read_afqmc("train", data_root), evaluation),
        "ocnli_train": lambda: _records("ocnli:train", read_ocnli("train.10k", data_root), evaluation),
        "stsb_train": lambda: _records("stsb:train", read_sts_zh("STS-B", "train", data_root), evaluation),
        "kgclue_train": lambda: _records("kgclue:train", read_kgclue("train", data_root), evaluation),
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
