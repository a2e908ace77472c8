"""Accuracy of NSP-BERT, the PET-MLM baseline and the majority class on FewCLUE splits.

Samples-contrast tasks (OCNLI, BUSTM, CSL, CLUEWSC) are scored two ways:

- ``nsp``: thresholds fitted on the *paired* split's scores, applied to the evaluated split one
  sample at a time (dev_few_all <- train_few_all, dev_i <- train_i). This mirrors the paper's
  "thresholds from dev, applied to test"; it uses the paired split's texts, never its labels.
- ``nsp_transductive``: the uniform-prior rank assignment of the evaluated split itself.

The majority-class baseline is the accuracy of always answering the evaluated split's most
frequent label (the best constant answer, so a strict baseline).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kexue.data import FEWCLUE_TASKS, read_fewclue
from kexue.zero_shot.classifier import NSPZeroShotClassifier, PETZeroShotClassifier
from kexue.zero_shot.fewclue import CHID_BLANK, PAPER_ZERO_SHOT, TASKS, Query, label_words, nsp_queries, pet_queries
from kexue.zero_shot.mapping import SamplesContrast, candidates_contrast, uniform_prior_assignment
from kexue.zero_shot.mlm import MLMScorer
from kexue.zero_shot.scorer import NSPScorer

__all__ = ["TaskResult", "evaluate_task", "evaluate_fewclue", "resolve_split", "paired_split", "format_results"]

SPLIT_ALIASES = {"dev": "dev_few_all", "train": "train_few_all"}


def resolve_split(split: str) -> str:
    """``dev`` -> ``dev_few_all``, ``train`` -> ``train_few_all``; other names unchanged."""
    return SPLIT_ALIASES.get(split, split)


def paired_split(split: str) -> str:
    """The split whose scores fit the samples-contrast thresholds: dev_* <-> train_*.

    Raises:
        ValueError: ``unlabeled`` or an unknown split.
    """
    split = resolve_split(split)
    for one, other in (("dev_", "train_"), ("train_", "dev_")):
        if split.startswith(one):
            return other + split[len(one):]
    raise ValueError(f"`split` must be a labelled FewCLUE split (dev, train, dev_0..4, train_0..4, "
                     f"dev_few_all, train_few_all), got {split!r}")


@dataclass
class TaskResult:
    """One task's accuracies (in [0, 1]; None when that scorer was not run)."""

    task: str
    mode: str
    mapping: str
    split: str
    examples: int
    majority: float
    nsp: float | None = None
    nsp_transductive: float | None = None
    pet: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _records(task: str, split: str, root: str | Path | None, limit: int | None) -> list[Any]:
    """The split's records, or ``limit`` of them evenly spaced (the files are grouped by label)."""
    records = list(read_fewclue(task, split, root))
    if limit is None or limit >= len(records):
        return records
    if limit < 1:
        raise ValueError(f"`limit` must be positive, got {limit}")
    return [records[index * len(records) // limit] for index in range(limit)]


def _templates(task_name: str, template_index: int | None) -> list[Any]:
    templates = list(TASKS[task_name].templates)
    return templates if template_index is None else [templates[template_index]]


def _accuracy(predicted: torch.Tensor, gold: Sequence[int]) -> float:
    return float((predicted == torch.tensor(list(gold))).double().mean()) if len(gold) else float("nan")


def _single_gold(task: str, records: Sequence[Any], root: str | Path | None) -> tuple[list[str], list[int]]:
    labels, words = label_words(task, root)
    return words, [labels.index(str(record.label)) for record in records]


def _candidate_scores(scorer: NSPScorer, queries: Sequence[Query], blank: str | None) -> torch.Tensor:
    widths = {len(query.pairs) for query in queries}
    if len(widths) != 1:
        raise ValueError(f"candidates-contrast needs the same number of candidates per example, got {sorted(widths)}")
    log_probs = scorer.log_prob([pair for query in queries for pair in query.pairs], blank=blank)
    return log_probs.view(len(queries), widths.pop())


def nsp_accuracy(task_name: str, records: Sequence[Any], scorer: NSPScorer, root: str | Path | None = None,
                 template_index: int | None = -1, threshold_records: Sequence[Any] = ()) -> tuple[float, float | None]:
    """``(accuracy, transductive accuracy or None)`` of NSP-BERT on ``records`` (see module docstring)."""
    task = TASKS[task_name]
    if task.mode == "single":
        words, gold = _single_gold(task_name, records, root)
        classifier = NSPZeroShotClassifier(scorer, words, _templates(task_name, template_index))
        return _accuracy(classifier.predict([getattr(r, task.text_field) for r in records]), gold), None
    queries = nsp_queries(task, records)
    gold = [query.label for query in queries]
    if task.mapping == "candidates":
        return _accuracy(candidates_contrast(_candidate_scores(scorer, queries, CHID_BLANK)), gold), None
    scores = scorer.log_prob([query.pairs[0] for query in queries])
    transductive = _accuracy(uniform_prior_assignment(scores, len(task.label_order)), gold)
    if len(threshold_records) < len(task.label_order):
        return float("nan"), transductive
    fit_scores = scorer.log_prob([query.pairs[0] for query in nsp_queries(task, threshold_records)])
    return _accuracy(SamplesContrast(len(task.label_order)).fit(fit_scores).predict(scores), gold), transductive


def pet_accuracy(task_name: str, records: Sequence[Any], scorer: MLMScorer, root: str | Path | None = None,
                 template_index: int | None = -1) -> float:
    """Accuracy of the PET-style MLM baseline on ``records`` (candidates-contrast everywhere)."""
    task = TASKS[task_name]
    if task.mode == "single":
        words, gold = _single_gold(task_name, records, root)
        classifier = PETZeroShotClassifier(scorer, words, _templates(task_name, template_index))
        return _accuracy(classifier.predict([getattr(r, task.text_field) for r in records]), gold)
    queries = pet_queries(task, records)
    scores = scorer.word_log_probs([query.pairs[0] for query in queries], [query.words for query in queries])
    return _accuracy(candidates_contrast(scores), [query.label for query in queries])


def _majority(task_name: str, records: Sequence[Any]) -> float:
    gold = [record.answer if task_name == "chid" else record.label for record in records]
    return Counter(gold).most_common(1)[0][1] / len(gold) if gold else float("nan")


def evaluate_task(task_name: str, nsp: NSPScorer | None = None, mlm: MLMScorer | None = None, split: str = "dev",
                  root: str | Path | None = None, limit: int | None = None,
                  template_index: int | None = -1) -> TaskResult:
    """NSP, PET-MLM and majority-class accuracy of one FewCLUE task on one split.

    Args:
        task_name: one of :data:`kexue.data.FEWCLUE_TASKS`.
        nsp, mlm: the scorers to run (either may be None).
        split: ``dev`` (= dev_few_all), ``train`` or any labelled FewCLUE split name.
        root: the data root; None resolves it.
        limit: at most this many examples, evenly spaced through the file (also for the paired split).
        template_index: which of the task's templates (-1: the paper's third); None ensembles all.

    Raises:
        ValueError: an unknown task or split. DataNotFoundError: missing files.
    """
    if task_name not in TASKS:
        raise ValueError(f"`task` must be one of {FEWCLUE_TASKS}, got {task_name!r}")
    split = resolve_split(split)
    task = TASKS[task_name]
    records = _records(task_name, split, root, limit)
    result = TaskResult(task_name, task.mode, task.mapping, split, len(records), _majority(task_name, records))
    if nsp is not None:
        started = time.perf_counter()
        paired = _records(task_name, paired_split(split), root, limit) if task.mapping == "samples" else ()
        result.nsp, result.nsp_transductive = nsp_accuracy(task_name, records, nsp, root, template_index, paired)
        result.seconds["nsp"] = round(time.perf_counter() - started, 2)
    if mlm is not None:
        started = time.perf_counter()
        result.pet = pet_accuracy(task_name, records, mlm, root, template_index)
        result.seconds["pet"] = round(time.perf_counter() - started, 2)
    return result


def evaluate_fewclue(tasks: Sequence[str] = FEWCLUE_TASKS, **options) -> list[TaskResult]:
    """:func:`evaluate_task` for each task, in order; ``options`` are passed through."""
    return [evaluate_task(task, **options) for task in tasks]


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}"


def format_results(results: Sequence[TaskResult]) -> str:
    """A Markdown table like the paper's: accuracy (%) per task and the average, paper beside."""
    header = "| task | mode | mapping | n | majority | PET-MLM | NSP | NSP transductive | paper NSP |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for r in results:
        lines.append(f"| {r.task} | {r.mode} | {r.mapping} | {r.examples} | {_percent(r.majority)} | {_percent(r.pet)} "
                     f"| {_percent(r.nsp)} | {_percent(r.nsp_transductive)} | {PAPER_ZERO_SHOT[r.task]:.1f} |")
    if len(results) > 1:
        average = {key: _mean([getattr(r, key) for r in results]) for key in ("majority", "pet", "nsp")}
        paper = sum(PAPER_ZERO_SHOT[r.task] for r in results) / len(results) / 100
        lines.append(f"| average | | | | {_percent(average['majority'])} | {_percent(average['pet'])} "
                     f"| {_percent(average['nsp'])} | | {_percent(paper)} |")
    return "\n".join(lines)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None and value == value]
    return sum(present) / len(present) if present and len(present) == len(values) else None
