"""The nine FewCLUE tasks as NSP-BERT zero-shot problems, with the paper's templates (arXiv 2109.03564).

Strategies (paper Table 12, reference repo sunyilgdx/NSP-BERT):

=========  ============  ==========  =========================================================
task       mode          mapping     NSP input (segment A, segment B)
=========  ============  ==========  =========================================================
eprstmt    single        candidates  (prompt, review); prompts 好评/差评, 东西不错/东西很差,
                                     这次买的东西很好/这次买的东西很差
tnews      single        candidates  (prompt, title); "{label}", "{label}新闻", "这是一则{label}新闻"
csldcp     single        candidates  (prompt, abstract); "{label}", "{label}类论文", "这是一篇{label}类论文"
iflytek    single        candidates  (prompt, description); "{label}", "{label}类软件", "这是一款{label}类软件"
ocnli      pairs         samples     (hypothesis, premise); contradiction < neutral < entailment
bustm      pairs         samples     (sentence2, sentence1); 0 < 1
csl        pairs         samples     (abstract, keywords joined by ","); 0 < 1
cluewsc    coreference   samples     (span1, text + "上文中" + span2 + "是指"); false < true
chid       cloze         candidates  (idiom, passage), the idiom at the blank's positions (soft positions)
=========  ============  ==========  =========================================================

Single-sentence tasks use the third template by default (the reference's ``PATTERN_INDEX = -1``).
TNEWS label words are the reference's: 民生 for code 100 (故事 in the label file) and 证券 for 114
(股票); the others are ``label_zh``. The PET baseline uses the same templates (the prompt's label
part becomes ``[MASK]`` tokens); for the pair tasks, where NSP needs no template, it uses the
yes/no patterns in ``PET_PAIR_PATTERNS`` (ours: the paper gives none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kexue.data import fewclue_labels

__all__ = ["FewCLUETask", "TASKS", "Query", "nsp_queries", "pet_queries", "label_words", "PAPER_ZERO_SHOT",
           "PAPER_BASELINES", "CHID_BLANK"]

CHID_BLANK = "#idiom#"
COREFERENCE_PATTERN = "上文中"  # the reference's patterns ['其中', '上文中'], index 1 used

# Zero-shot FewCLUE test_public accuracy, UER mixed-corpus BERT-base (paper Table 1).
PAPER_ZERO_SHOT = {"eprstmt": 86.9, "csldcp": 47.6, "tnews": 51.0, "iflytek": 41.6, "ocnli": 37.4,
                   "bustm": 63.4, "csl": 64.4, "chid": 52.0, "cluewsc": 59.4}
PAPER_BASELINES = {"NSP-BERT average": 55.96, "GPT-zero average": 43.40, "PET-zero average": 45.10}


@dataclass(frozen=True)
class FewCLUETask:
    """How a FewCLUE task is posed zero-shot.

    Attributes:
        name: the task.
        mode: "single", "pairs", "cloze" or "coreference".
        mapping: "candidates" or "samples".
        templates: single-sentence tasks: templates for the label words (strings with ``{label}``
            or prompt lists in label order); empty otherwise.
        label_order: samples-contrast tasks: the labels from the least to the most IsNext-like.
        text_field: the record field holding the text (single-sentence tasks).
    """

    name: str
    mode: str
    mapping: str
    templates: tuple[Any, ...] = ()
    label_order: tuple[str, ...] = ()
    text_field: str = ""


TASKS: dict[str, FewCLUETask] = {task.name: task for task in (
    FewCLUETask("eprstmt", "single", "candidates", text_field="text", templates=(
        ("差评", "好评"), ("东西很差", "东西不错"), ("这次买的东西很差", "这次买的东西很好"))),  # Negative, Positive
    FewCLUETask("tnews", "single", "candidates", ("{label}", "{label}新闻", "这是一则{label}新闻"), text_field="sentence"),
    FewCLUETask("csldcp", "single", "candidates", ("{label}", "{label}类论文", "这是一篇{label}类论文"), text_field="text"),
    FewCLUETask("iflytek", "single", "candidates", ("{label}", "{label}类软件", "这是一款{label}类软件"),
                text_field="sentence"),
    FewCLUETask("ocnli", "pairs", "samples", label_order=("contradiction", "neutral", "entailment")),
    FewCLUETask("bustm", "pairs", "samples", label_order=("0", "1")),
    FewCLUETask("csl", "pairs", "samples", label_order=("0", "1")),
    FewCLUETask("cluewsc", "coreference", "samples", label_order=("false", "true")),
    FewCLUETask("chid", "cloze", "candidates"),
)}

_TNEWS_WORDS = {"100": "民生", "114": "证券"}  # the reference's words where they differ from label_zh

# PET patterns for the tasks NSP poses without a template: (first, second) builders and label words.
PET_PAIR_PATTERNS = {
    "ocnli": {"entailment": "是的", "neutral": "可能", "contradiction": "不是"},
    "bustm": {"1": "是的", "0": "不是"},
    "csl": {"1": "都", "0": "不"},
    "cluewsc": {"true": "就", "false": "不"},
}


@dataclass(frozen=True)
class Query:
    """One example posed to a scorer: candidate pairs (or a single pair) and the gold index."""

    pairs: tuple[tuple[str, str], ...]
    label: int
    words: tuple[str, ...] = ()  # PET: candidate words for the {label} slot of the single pair


def label_words(task: str, root: str | Path | None = None) -> tuple[list[str], list[str]]:
    """``(gold labels in index order, the word each template puts in {label})`` of a single-sentence task."""
    infos = fewclue_labels(task, root)
    labels = [info.label for info in infos]
    if task == "tnews":
        return labels, [_TNEWS_WORDS.get(info.label, info.description) for info in infos]
    return labels, [info.description for info in infos]


def _pair(task: str, record: Any) -> tuple[str, str]:
    """The NSP pair of a sentence-pair or coreference record (module docstring table)."""
    if task in ("ocnli", "bustm"):
        return record.sentence2, record.sentence1
    if task == "csl":
        return record.abst, ",".join(record.keyword)
    target = record.target
    return target.span1_text, f"{record.text}{COREFERENCE_PATTERN}{target.span2_text}是指"


def _pet_pair(task: str, record: Any) -> tuple[str, str]:
    if task in ("ocnli", "bustm"):
        return record.sentence1 + "？", "{label}，" + record.sentence2
    if task == "csl":
        return record.abst, "，".join(record.keyword) + "{label}是这篇论文的关键词"
    target = record.target
    return record.text, f"{COREFERENCE_PATTERN}{target.span2_text}{{label}}是指{target.span1_text}"


def nsp_queries(task: FewCLUETask, records: Sequence[Any]) -> list[Query]:
    """NSP queries of the pair, coreference and cloze tasks (single-sentence ones go through
    :class:`~kexue.zero_shot.NSPZeroShotClassifier` with :func:`label_words`)."""
    if task.mode == "single":
        raise ValueError(f"{task.name} is a single-sentence task: use NSPZeroShotClassifier with its templates")
    if task.mode == "cloze":
        return [Query(tuple((candidate, record.content) for candidate in record.candidates), record.answer)
                for record in records]
    return [Query((_pair(task.name, record),), task.label_order.index(str(record.label))) for record in records]


def pet_queries(task: FewCLUETask, records: Sequence[Any]) -> list[Query]:
    """PET queries of the pair, coreference and cloze tasks: one slotted pair and its candidate words."""
    if task.mode == "cloze":
        return [Query(((record.content.replace(CHID_BLANK, "{label}", 1), ""),), record.answer,
                      tuple(record.candidates)) for record in records]
    if task.mode == "single":
        raise ValueError(f"{task.name} is a single-sentence task: use PETZeroShotClassifier with its templates")
    words = PET_PAIR_PATTERNS[task.name]
    return [Query((_pet_pair(task.name, record),), task.label_order.index(str(record.label)),
                  tuple(words[label] for label in task.label_order)) for record in records]
