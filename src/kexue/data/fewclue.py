"""FewCLUE, the few-shot Chinese benchmark: nine tasks, their splits and label sets.

Layout: ``fewclue/<task>/<split>.json`` (JSON Lines with the official keys), where split is one
of ``train_0..4``, ``dev_0..4`` (dev_i pairs with train_i), ``train_few_all``, ``dev_few_all``
and, for eprstmt, tnews, bustm and chid, ``unlabeled``. The labelled test sets are withheld.

Record types (one per shape, see :mod:`kexue.data.records`):

=========  ==================  ==============================================================
task       record              label
=========  ==================  ==============================================================
eprstmt    LabeledText         Positive / Negative
tnews      TnewsExample        15 codes "100".."116" (label_index2en2zh.json)
csldcp     LabeledText         67 discipline names (labels.json, labels_all.txt)
iflytek    IflytekExample      119 categories "0".."118" (labels.json)
bustm      SentencePair        "0" / "1"
ocnli      NliExample          entailment / neutral / contradiction
csl        CslExample          "0" / "1" (are the keywords genuine?)
cluewsc    CluewscExample      "false" / "true"
chid       ChidExample         answer: index of the right idiom among its 7 candidates
=========  ==================  ==============================================================

Every label read from a labelled split is checked against the task's label set (integer codes
of tnews and iflytek become strings), so a typo in a file is an error, not a new class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kexue.data.readers import DataNotFoundError, RecordError, optional, read_jsonl, require, require_label
from kexue.data.records import (
    ChidExample,
    CluewscExample,
    CluewscTarget,
    CslExample,
    IflytekExample,
    LabeledText,
    LabelInfo,
    NliExample,
    SentencePair,
    TnewsExample,
)
from kexue.data.root import resolve_data_root

__all__ = ["FEWCLUE_TASKS", "FEWCLUE_SPLITS", "NLI_LABELS", "fewclue_labels", "read_fewclue", "read_fewclue_file",
           "parse_nli"]

FEWCLUE_TASKS = ("eprstmt", "tnews", "csldcp", "iflytek", "bustm", "ocnli", "csl", "cluewsc", "chid")
FEWCLUE_SPLITS = (
    *(f"train_{i}" for i in range(5)),
    *(f"dev_{i}" for i in range(5)),
    "train_few_all",
    "dev_few_all",
    "unlabeled",
)
NLI_LABELS = ("entailment", "neutral", "contradiction")
_FIXED_LABELS = {
    "eprstmt": ("Negative", "Positive"),
    "bustm": ("0", "1"),
    "ocnli": NLI_LABELS,
    "csl": ("0", "1"),
    "cluewsc": ("false", "true"),
}
LABEL_FILES = {
    "tnews": "label_index2en2zh.json",
    "csldcp": "labels.json",
    "iflytek": "labels.json",
}

Builder = Callable[[Mapping[str, Any], "str | None"], Any]


def _tnews_label(obj: Mapping[str, Any]) -> LabelInfo:
    return LabelInfo(label=str(require(obj, "label", (str, int))), description=require(obj, "label_zh"),
                     english=require(obj, "label_desc"))


def _csldcp_label(obj: Mapping[str, Any]) -> LabelInfo:
    label = require(obj, "label")
    return LabelInfo(label=label, description=label, tag=require(obj, "label_tag2"))


def _iflytek_label(obj: Mapping[str, Any]) -> LabelInfo:
    return LabelInfo(label=str(require(obj, "label", int)), description=require(obj, "label_des"),
                     tag=require(obj, "label_tag2"))


_LABEL_PARSERS = {"tnews": _tnews_label, "csldcp": _csldcp_label, "iflytek": _iflytek_label}


def _check_task(task: str) -> None:
    if task not in FEWCLUE_TASKS:
        raise ValueError(f"`task` must be one of {FEWCLUE_TASKS}, got {task!r}")


def fewclue_labels(task: str, root: str | Path | None = None) -> tuple[LabelInfo, ...]:
    """Return the label set of a FewCLUE task, in the official order.

    tnews, csldcp and iflytek read their label file; the other tasks have fixed label sets.

    Args:
        task: one of :data:`FEWCLUE_TASKS` except chid, whose candidates differ per example.
        root: the data root; None resolves it.

    Raises:
        ValueError: unknown task, or chid.
        DataNotFoundError: the task's label file does not exist (the message names it).
        DataFormatError: a malformed line in the label file.
    """
    _check_task(task)
    if task in _FIXED_LABELS:
        return tuple(LabelInfo(label=label, description=label) for label in _FIXED_LABELS[task])
    if task not in LABEL_FILES:
        raise ValueError(f"FewCLUE {task} has no fixed label set: each example has its own candidates")
    path = resolve_data_root(root) / "fewclue" / task / LABEL_FILES[task]
    if not path.is_file():
        raise DataNotFoundError(f"label file {path} for FewCLUE {task} does not exist", path)
    return tuple(read_jsonl(path, _LABEL_PARSERS[task]))


def _label(obj: Mapping[str, Any], labels: tuple[str, ...] | None, labelled: bool) -> str | None:
    value = require(obj, "label", (str, int)) if labelled else optional(obj, "label", (str, int))
    if value is None or labels is None:
        return value
    return require_label(str(value), labels)


def _eprstmt(obj: Mapping[str, Any], label: str | None) -> LabeledText:
    return LabeledText(text=require(obj, "sentence"), label=label, id=require(obj, "id", int))


def _csldcp(obj: Mapping[str, Any], label: str | None) -> LabeledText:
    return LabeledText(text=require(obj, "content"), label=label, id=require(obj, "id", int))


def _tnews(obj: Mapping[str, Any], label: str | None) -> TnewsExample:
    return TnewsExample(id=require(obj, "id", int), sentence=require(obj, "sentence"),
                        keywords=optional(obj, "keywords") or "", label=label, label_desc=optional(obj, "label_desc"))


def _iflytek(obj: Mapping[str, Any], label: str | None) -> IflytekExample:
    return IflytekExample(id=require(obj, "id", int), sentence=require(obj, "sentence"), label=label,
                          label_des=optional(obj, "label_des"))


def _bustm(obj: Mapping[str, Any], label: str | None) -> SentencePair:
    return SentencePair(sentence1=require(obj, "sentence1"), sentence2=require(obj, "sentence2"), label=label,
                        id=require(obj, "id", int))


def parse_nli(obj: Mapping[str, Any], label: str | None) -> NliExample:
    """Build an OCNLI :class:`NliExample` (shared by FewCLUE ocnli and CLUE ocnli)."""
    annotators = {f"label{i}": optional(obj, f"label{i}") for i in range(5)}
    return NliExample(id=require(obj, "id", int), sentence1=require(obj, "sentence1"),
                      sentence2=require(obj, "sentence2"), label=label, level=require(obj, "level"),
                      genre=require(obj, "genre"), prem_id=require(obj, "prem_id"), **annotators)


def _csl(obj: Mapping[str, Any], label: str | None) -> CslExample:
    keywords = require(obj, "keyword", list)
    if not all(isinstance(keyword, str) for keyword in keywords):
        raise RecordError(f"key 'keyword' must be a list of strings, got {keywords!r}")
    return CslExample(id=require(obj, "id", int), abst=require(obj, "abst"), keyword=tuple(keywords), label=label)


def _cluewsc(obj: Mapping[str, Any], label: str | None) -> CluewscExample:
    target = require(obj, "target", dict)
    spans = CluewscTarget(span1_index=require(target, "span1_index", int), span1_text=require(target, "span1_text"),
                          span2_index=require(target, "span2_index", int), span2_text=require(target, "span2_text"))
    return CluewscExample(idx=require(obj, "idx", int), text=require(obj, "text"), target=spans, label=label)


def _chid(obj: Mapping[str, Any], labelled: bool) -> ChidExample:
    candidates = require(obj, "candidates", list)
    if not candidates or not all(isinstance(candidate, str) for candidate in candidates):
        raise RecordError(f"key 'candidates' must be a non-empty list of strings, got {candidates!r}")
    answer = require(obj, "answer", int) if labelled else optional(obj, "answer", int)
    if answer is not None and not 0 <= answer < len(candidates):
        raise RecordError(f"bad answer {answer}: expected an index into the {len(candidates)} candidates")
    return ChidExample(id=require(obj, "id", int), candidates=tuple(candidates), content=require(obj, "content"),
                       answer=answer)


_BUILDERS: dict[str, Builder] = {
    "eprstmt": _eprstmt,
    "tnews": _tnews,
    "csldcp": _csldcp,
    "iflytek": _iflytek,
    "bustm": _bustm,
    "ocnli": parse_nli,
    "csl": _csl,
    "cluewsc": _cluewsc,
}


def read_fewclue(task: str, split: str, root: str | Path | None = None) -> Iterator[Any]:
    """Lazily read one split of a FewCLUE task.

    Args:
        task: one of :data:`FEWCLUE_TASKS`.
        split: one of :data:`FEWCLUE_SPLITS`; ``unlabeled`` exists for eprstmt, tnews, bustm, chid.
        root: the data root; None resolves it.

    Returns:
        An iterator of the task's record type (table in the module docstring); records of the
        ``unlabeled`` split have ``label`` None.

    Raises:
        ValueError: unknown task or split.
        DataNotFoundError: the split file, or the task's label file, does not exist.
        DataFormatError: a malformed line or a label outside the label set (while iterating).
    """
    _check_task(task)
    if split not in FEWCLUE_SPLITS:
        raise ValueError(f"`split` must be one of {FEWCLUE_SPLITS}, got {split!r}")
    data_root = resolve_data_root(root)
    return read_fewclue_file(task, data_root / "fewclue" / task / f"{split}.json", data_root, split != "unlabeled")


def read_fewclue_file(task: str, path: str | Path, root: str | Path | None = None,
                      labelled: bool = True) -> Iterator[Any]:
    """Lazily read a FewCLUE task's records from any JSON Lines file (``test_public.json``, your own).

    Args:
        task: one of :data:`FEWCLUE_TASKS`; it fixes the record type and the label set.
        path: the file.
        root: the data root holding the task's label file (tnews, csldcp, iflytek); None resolves it.
        labelled: every line must carry a label from the label set; False: labels are optional.

    Raises:
        ValueError: unknown task. DataNotFoundError: the file or the label file does not exist.
        DataFormatError: a malformed line or a label outside the label set (while iterating).
    """
    _check_task(task)
    if task == "chid":
        return read_jsonl(path, lambda obj: _chid(obj, labelled))
    labels = tuple(info.label for info in fewclue_labels(task, root)) if labelled else None
    build = _BUILDERS[task]
    return read_jsonl(path, lambda obj: build(obj, _label(obj, labels, labelled)))
