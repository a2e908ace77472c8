"""CLUE sentence-pair tasks available in full: AFQMC, CMNLI (dev only) and OCNLI.

Files (see ``clue/SOURCE.md`` in the data root):

- ``clue/afqmc/{train,dev}.txt``: TSV ``sentence1<TAB>sentence2<TAB>0/1``, no header;
- ``clue/cmnli/dev.txt``: TSV ``sentence1<TAB>sentence2<TAB>entailment/neutral/contradiction``;
- ``clue/ocnli/{train.3k,train.10k,dev_minus_fewclue_test}.json``: JSON Lines with the official
  OCNLI keys. Its ``label`` may be ``"-"`` (no annotator majority); such pairs are kept, as in
  the official release, and callers usually drop them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kexue.data.fewclue import NLI_LABELS, parse_nli
from kexue.data.readers import read_jsonl, read_tsv, require, require_label
from kexue.data.records import NliExample, SentencePair
from kexue.data.root import data_path

__all__ = ["CLUE_SPLITS", "read_afqmc", "read_cmnli", "read_ocnli", "read_clue", "pair_builder"]

CLUE_SPLITS = {
    "afqmc": ("train", "dev"),
    "cmnli": ("dev",),
    "ocnli": ("train.3k", "train.10k", "dev_minus_fewclue_test"),
}
NO_MAJORITY = "-"


def pair_builder(labels: Sequence[str], convert: Callable[[str], Any] = str) -> Callable[[Sequence[str]], SentencePair]:
    """Return a TSV record builder for ``sentence1<TAB>sentence2<TAB>label`` lines.

    Args:
        labels: the allowed label spellings; others raise a "bad label" error.
        convert: maps the checked label text to the stored value (``int`` for 0/1 sets).
    """

    def build(fields: Sequence[str]) -> SentencePair:
        sentence1, sentence2, label = fields
        return SentencePair(sentence1=sentence1, sentence2=sentence2, label=convert(require_label(label, labels)))

    return build


def _check_split(task: str, split: str) -> None:
    if split not in CLUE_SPLITS[task]:
        raise ValueError(f"`split` of CLUE {task} must be one of {CLUE_SPLITS[task]}, got {split!r}")


def read_afqmc(split: str, root: str | Path | None = None) -> Iterator[SentencePair]:
    """Lazily read AFQMC (``"train"`` or ``"dev"``): pairs with an ``int`` label 0 or 1."""
    _check_split("afqmc", split)
    return read_tsv(data_path(f"clue/afqmc/{split}.txt", root), pair_builder(("0", "1"), int), fields=3)


def read_cmnli(split: str = "dev", root: str | Path | None = None) -> Iterator[SentencePair]:
    """Lazily read CMNLI (only ``"dev"`` is available): pairs with an NLI class label."""
    _check_split("cmnli", split)
    return read_tsv(data_path(f"clue/cmnli/{split}.txt", root), pair_builder(NLI_LABELS), fields=3)


def _ocnli(obj: Mapping[str, Any]) -> NliExample:
    return parse_nli(obj, require_label(require(obj, "label"), (*NLI_LABELS, NO_MAJORITY)))


def read_ocnli(split: str, root: str | Path | None = None) -> Iterator[NliExample]:
    """Lazily read OCNLI (``"train.3k"``, ``"train.10k"`` or ``"dev_minus_fewclue_test"``)."""
    _check_split("ocnli", split)
    return read_jsonl(data_path(f"clue/ocnli/{split}.json", root), _ocnli)


_READERS = {"afqmc": read_afqmc, "cmnli": read_cmnli, "ocnli": read_ocnli}


def read_clue(task: str, split: str, root: str | Path | None = None) -> Iterator[SentencePair | NliExample]:
    """Lazily read ``task`` (``"afqmc"``, ``"cmnli"`` or ``"ocnli"``) and ``split``."""
    if task not in _READERS:
        raise ValueError(f"`task` must be one of {tuple(_READERS)}, got {task!r}")
    return _READERS[task](split, root)
