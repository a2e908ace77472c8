"""Accuracy of NSP-BERT, the PET-MLM baseline and the majority class on FewCLUE splits.

A split is any name with a file in the task's data folder (``dev`` = dev_few_all, ``train`` =
train_few_all, ``dev_0``, ``test_public``, ...) or the path of a JSON Lines file of the task.

Samples-contrast tasks (OCNLI, BUSTM, CSL, CLUEWSC) are scored two ways:

- ``nsp``: thresholds fitted on the scores of a *threshold split* (texts only, never its labels),
  applied to the evaluated split one sample at a time. By default dev_i <-> train_i and
  dev_few_all <-> train_few_all; any other split (test_public, a file) takes its thresholds from
  dev_few_all, as the paper takes its test thresholds from dev.
- ``nsp_transductive``: the uniform-prior rank assignment of the evaluated split itself.

The majority-class baseline is the accuracy of always answering the evaluated split's most
frequent label (the best constant answer, so a strict baseline). Each result keeps, per scorer,
which examples it got right, so two scorers can be compared on the same examples.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kexue.data import FEWCLUE_TASKS, DataNotFoundError, resolve_data_root
from kexue.data.fewclue import read_fewclue_file
from kexue.zero_shot.classifier import NSPZeroShotClassifier, PETZeroShotClassifier
from kexue.zero_shot.fewclue import CHID_BLANK, PAPER_ZERO_SHOT, TASKS, Query, label_words, nsp_queries, pet_queries
from kexue.zero_shot.mapping import SamplesContrast, candidates_contrast, uniform_prior_assignment
from kexue.zero_shot.mlm import MLMScorer
from kexue.zero_shot.scorer import NSPScorer

__all__ = ["TaskResult", "evaluate_task", "evaluate_fewclue", "resolve_split", "split_file", "threshold_split",
           "read_split", "format_results"]

SPLIT_ALIASES = {"dev": "dev_few_all", "train": "train_few_all"}
DEFAULT_THRESHOLD_SPLIT = "dev_few_all"


def resolve_split(split: str) -> str:
    """``dev`` -> ``dev_few_all``, ``train`` -> ``train_few_all``; other names unchanged."""
    return SPLIT_ALIASES.get(split, split)


def _is_path(split: str | Path) -> bool:
    return isinstance(split, Path) or split.endswith((".json", ".jsonl")) or "/" in split or "\\" in split


def split_file(task: str, split: str | Path, root: str | Path | None = None) -> Path:
    """The file of ``split`` for ``task``: a file path as given, or ``<root>/fewclue/<task>/<name>.json``.

    Raises:
        DataNotFoundError: the path does not exist, or the task's folder has no such split (the
            message lists the splits it has).
    """
    if _is_path(split):
        path = Path(split)
        if not path.is_file():
            raise DataNotFoundError(f"`split` {str(split)!r} names a file that does not exist", path)
        return path
    folder = resolve_data_root(root) / "fewclue" / task
    path = folder / f"{resolve_split(split)}.json"
    if not path.is_file():
        present = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise DataNotFoundError(f"FewCLUE {task} has no split {split!r}: {path} does not exist; "
                                f"splits present: {present or 'none (no folder ' + str(folder) + ')'}", path)
    return path


def threshold_split(split: str | Path) -> str:
    """The split whose scores fit the samples-contrast thresholds (see the module docstring)."""
    if _is_path(split):
        return DEFAULT_THRESHOLD_SPLIT
    split = resolve_split(split)
    for one, other in (("dev_", "train_"), ("train_", "dev_")):
        if split.startswith(one):
            return other + split[len(one):]
    return DEFAULT_THRESHOLD_SPLIT


@dataclass
class TaskResult:
    """One task's accuracies (in [0, 1]; None when that scorer was not run).

    ``correct`` maps each scorer that ran (``majority``, ``nsp``, ``nsp_transductive``, ``pet``)
    to one bool per example, in the evaluated split's order (or the ``limit`` subset's).
    """

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
    threshold_split: str | None = None
    correct: dict[str, list[bool]] = field(default_factory=dict, repr=False)

    def to_dict(self, per_example: bool = False) -> dict[str, Any]:
        """JSON-ready; the per-example ``correct`` lists only with ``per_example=True``."""
        fields = asdict(self)
        if not per_example:
            del fields["correct"]
        return fields


def read_split(task: str, split: str | Path, root: str | Path | None = None, limit: int | None = None) -> list[Any]:
    """The labelled records of a split (see :func:`split_file`), or ``limit`` of them evenly spaced
    (the files are grouped by label, so a spaced subset spreads over the labels)."""
    if not _is_path(split) and resolve_split(split) == "unlabeled":
        raise ValueError(f"`split` must be a labelled split; {split!r} has no labels to score against")
    records = list(read_fewclue_file(task, split_file(task, split, root), root))
    if limit is None or limit >= len(records):
        return records
    if limit < 1:
        raise ValueError(f"`limit` must be positive, got {limit}")
    return [records[index * len(records) // limit] for index in range(limit)]


def _templates(task_name: str, template_index: int | None) -> list[Any]:
    templates = list(TASKS[task_name].templates)
    return templates if template_index is None else [templates[template_index]]


def _correct(predicted: torch.Tensor, gold: Sequence[int]) -> list[bool]:
    return (predicted == torch.tensor(list(gold), dtype=torch.long)).tolist()


def _accuracy(correct: Sequence[bool] | None) -> float | None:
    if correct is None:
        return None
    return sum(correct) / len(correct) if len(correct) else float("nan")


def _single_gold(task: str, records: Sequence[Any], root: str | Path | None) -> tuple[list[str], list[int]]:
    labels, words = label_words(task, root)
    return words, [labels.index(str(record.label)) for record in records]


def _candidate_scores(scorer: NSPScorer, queries: Sequence[Query], blank: str | None) -> torch.Tensor:
    widths = {len(query.pairs) for query in queries}
    if len(widths) != 1:
        raise ValueError(f"candidates-contrast needs the same number of candidates per example, got {sorted(widths)}")
    log_probs = scorer.log_prob([pair for query in queries for pair in query.pairs], blank=blank)
    return log_probs.view(len(queries), widths.pop())


def nsp_correct(task_name: str, records: Sequence[Any], scorer: NSPScorer, root: str | Path | None = None,
                template_index: int | None = -1,
                threshold_records: Sequence[Any] = ()) -> tuple[list[bool] | None, list[bool] | None]:
    """Per-example correctness of NSP-BERT: ``(thresholded or argmax, transductive or None)``.

    The first is None for a samples-contrast task with fewer threshold records than labels.
    """
    task = TASKS[task_name]
    if task.mode == "single":
        words, gold = _single_gold(task_name, records, root)
        classifier = NSPZeroShotClassifier(scorer, words, _templates(task_name, template_index))
        return _correct(classifier.predict([getattr(r, task.text_field) for r in records]), gold), None
    queries = nsp_queries(task, records)
    gold = [query.label for query in queries]
    if task.mapping == "candidates":
        return _correct(candidates_contrast(_candidate_scores(scorer, queries, CHID_BLANK)), gold), None
    scores = scorer.log_prob([query.pairs[0] for query in queries])
    transductive = _correct(uniform_prior_assignment(scores, len(task.label_order)), gold)
    if len(threshold_records) < len(task.label_order):
        return None, transductive
    fit_scores = scorer.log_prob([query.pairs[0] for query in nsp_queries(task, threshold_records)])
    return _correct(SamplesContrast(len(task.label_order)).fit(fit_scores).predict(scores), gold), transductive


def pet_correct(task_name: str, records: Sequence[Any], scorer: MLMScorer, root: str | Path | None = None,
                template_index: int | None = -1) -> list[bool]:
    """Per-example correctness of the PET-style MLM baseline (candidates-contrast everywhere)."""
    task = TASKS[task_name]
    if task.mode == "single":
        words, gold = _single_gold(task_name, records, root)
        classifier = PETZeroShotClassifier(scorer, words, _templates(task_name, template_index))
        return _correct(classifier.predict([getattr(r, task.text_field) for r in records]), gold)
    queries = pet_queries(task, records)
    scores = scorer.word_log_probs([query.pairs[0] for query in queries], [query.words for query in queries])
    return _correct(candidates_contrast(scores), [query.label for query in queries])


def _majority_correct(task_name: str, records: Sequence[Any]) -> list[bool]:
    gold = [record.answer if task_name == "chid" else record.label for record in records]
    if not gold:
        return []
    majority = Counter(gold).most_common(1)[0][0]
    return [label == majority for label in gold]


def evaluate_task(task_name: str, nsp: NSPScorer | None = None, mlm: MLMScorer | None = None,
                  split: str | Path = "dev", root: str | Path | None = None, limit: int | None = None,
                  template_index: int | None = -1, thresholds_from: str | Path | None = None) -> TaskResult:
    """NSP, PET-MLM and majority-class accuracy of one FewCLUE task on one split.

    Args:
        task_name: one of :data:`kexue.data.FEWCLUE_TASKS`.
        nsp, mlm: the scorers to run (either may be None).
        split: a split name present in the task's folder (``dev`` = dev_few_all, ``train``,
            ``dev_0``, ``test_public``, ...) or the path of a JSON Lines file of the task.
        root: the data root; None resolves it.
        limit: at most this many examples, evenly spaced through the file (also for the threshold split).
        template_index: which of the task's templates (-1: the paper's third); None ensembles all.
        thresholds_from: samples-contrast tasks: the split (name or file) whose scores fit the
            thresholds; None: :func:`threshold_split` of ``split``.

    Raises:
        ValueError: an unknown task, or an unlabelled split. DataNotFoundError: missing files.
    """
    if task_name not in TASKS:
        raise ValueError(f"`task` must be one of {FEWCLUE_TASKS}, got {task_name!r}")
    task = TASKS[task_name]
    records = read_split(task_name, split, root, limit)
    shown = str(split) if _is_path(split) else resolve_split(split)
    majority = _majority_correct(task_name, records)
    result = TaskResult(task_name, task.mode, task.mapping, shown, len(records), _accuracy(majority))
    result.correct["majority"] = majority
    if nsp is not None:
        started = time.perf_counter()
        paired: Sequence[Any] = ()
        if task.mapping == "samples":
            source = threshold_split(split) if thresholds_from is None else thresholds_from
            result.threshold_split = str(source) if _is_path(source) else resolve_split(source)
            paired = read_split(task_name, source, root, limit)
        correct, transductive = nsp_correct(task_name, records, nsp, root, template_index, paired)
        for key, value in (("nsp", correct), ("nsp_transductive", transductive)):
            if value is not None:
                result.correct[key] = value
        result.nsp = float("nan") if correct is None else _accuracy(correct)
        result.nsp_transductive = _accuracy(transductive)
        result.seconds["nsp"] = round(time.perf_counter() - started, 2)
    if mlm is not None:
        started = time.perf_counter()
        result.correct["pet"] = pet_correct(task_name, records, mlm, root, template_index)
        result.pet = _accuracy(result.correct["pet"])
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
