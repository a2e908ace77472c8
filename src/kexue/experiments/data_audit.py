"""Data audit: row counts, label balance, text lengths and split leakage of every staged dataset.

Reads every file of :data:`kexue.data.DATASETS` that is present in the data root with its reader
(so every line is parsed and checked) and reports:

- row counts, compared with the data catalogue (claim ``row-counts``);
- label distributions (majority-class share: the accuracy of always guessing it);
- text lengths in characters per record (all text fields of a record together): p50/p90/p99/max,
  with a histogram per dataset (``text_lengths.png``);
- leakage between the splits of a task: dev records whose text (the exact tuple of text fields)
  also occurs in the paired train file; for KgCLUE also the dev questions whose answer triple
  answers some train question (claim ``kgclue-dev-questions-not-in-train``: no dev question
  text appears in train).

Counts are always exact. ``--quick`` computes lengths and leakage on a seeded sample of at most
``QUICK_SAMPLE`` records per file (the train side of a leakage pair is always complete).
A missing file is reported as absent.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kexue.data import DATASETS, CatalogueEntry, KgclueExample
from kexue.data.root import SAMPLES_DIR, data_origin
from kexue.experiments import Claim, Context, Outcome, register
from kexue.experiments.harness import Precondition

QUICK_SAMPLE = 2_000
_COUNT_ONLY_GROUPS = ("vocab", "labels")  # rows are tokens or label definitions, not texts
_MAX_LISTED_LABELS = 20


def _fewclue_pairs() -> list[tuple[str, str]]:
    tasks = sorted({name.split("/")[1] for name in DATASETS if name.startswith("fewclue/")})
    pairs = [(f"fewclue/{task}/train_{i}", f"fewclue/{task}/dev_{i}") for task in tasks for i in range(5)]
    pairs += [(f"fewclue/{task}/train_few_all", f"fewclue/{task}/dev_few_all") for task in tasks]
    pairs += [(f"fewclue/{task}/unlabeled", f"fewclue/{task}/dev_few_all") for task in tasks]
    return [pair for pair in pairs if all(name in DATASETS for name in pair)]


# (train side, evaluation side): evaluation records whose text also occurs on the train side.
LEAKAGE_PAIRS: list[tuple[str, str]] = [
    ("kgclue/train", "kgclue/dev"),
    ("clue/afqmc/train", "clue/afqmc/dev"),
    ("clue/ocnli/train.10k", "clue/ocnli/dev_minus_fewclue_test"),
    ("sts_zh/STS-B/train", "sts_zh/STS-B/valid"),
    ("clue/afqmc/train", "sts_zh/ATEC/valid"),
    ("en/sst2/train", "en/sst2/dev"),
    ("en/stsb/train", "en/stsb/dev"),
    *_fewclue_pairs(),
]


@dataclass
class FileStats:
    """What one pass over a file measured."""

    rows: int = 0
    labels: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)
    keys: list[tuple[str, ...]] = field(default_factory=list)  # sampled text tuples
    all_keys: set[tuple[str, ...]] = field(default_factory=set)  # every text tuple (train sides)
    records: list[Any] = field(default_factory=list)  # KgCLUE only


def _label_key(label: Any) -> str:
    if isinstance(label, float):  # STS-B English scores: one bucket per unit
        low = min(int(label), 4)
        return f"[{low}, {low + 1}{']' if low == 4 else ')'}"
    return str(label)


def _scan(entry: CatalogueEntry, root: Path, sample: int | None, keep_all_keys: bool, rng: random.Random) -> FileStats:
    """Read one file completely; keep a reservoir sample of lengths and texts."""
    stats = FileStats()
    count_only = entry.group in _COUNT_ONLY_GROUPS
    for record in entry.read(root):
        stats.rows += 1
        if count_only:
            continue
        if getattr(record, "label", None) is not None:
            stats.labels[_label_key(record.label)] += 1
        key = record.texts()
        if keep_all_keys:
            stats.all_keys.add(key)
        if isinstance(record, KgclueExample):
            stats.records.append(record)
        slot = stats.rows - 1 if sample is None or stats.rows <= sample else rng.randrange(stats.rows)
        if sample is None or slot < sample:
            if slot == len(stats.keys):
                stats.keys.append(key)
                stats.lengths.append(sum(map(len, key)))
            else:
                stats.keys[slot], stats.lengths[slot] = key, sum(map(len, key))
    return stats


def _length_row(lengths: list[int]) -> dict[str, Any]:
    if not lengths:
        return {}
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": max(lengths)}


def _label_row(name: str, stats: FileStats) -> dict[str, Any]:
    total = sum(stats.labels.values())
    top = stats.labels.most_common(_MAX_LISTED_LABELS if len(stats.labels) <= _MAX_LISTED_LABELS else 5)
    return {
        "file": name,
        "labelled": total,
        "distinct": len(stats.labels),
        "majority share": round(top[0][1] / total, 4),
        f"counts (the top 5 if over {_MAX_LISTED_LABELS} labels)": dict(top),
    }


def _leakage_rows(stats: dict[str, FileStats]) -> list[dict[str, Any]]:
    rows = []
    for train, evaluation in LEAKAGE_PAIRS:
        if train not in stats or evaluation not in stats:
            continue
        checked = stats[evaluation].keys
        shared = sum(1 for key in checked if key in stats[train].all_keys)
        rows.append({"train": train, "evaluated": evaluation, "checked": len(checked), "in train": shared,
                     "fraction": round(shared / len(checked), 4) if checked else 0.0})
    return rows


def _kgclue_triple_overlap(train: Iterable[KgclueExample], dev: Iterable[KgclueExample]) -> tuple[int, int]:
    """Dev questions whose answer triple also answers a train question, and the dev total."""
    train_answers = {example.answer for example in train}
    dev = list(dev)
    return sum(1 for example in dev if example.answer in train_answers), len(dev)


def _plot_lengths(ctx: Context, stats: dict[str, FileStats]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[int]] = {}
    for name, file_stats in stats.items():
        if file_stats.lengths:
            groups.setdefault(DATASETS[name].group, []).extend(file_stats.lengths)
    if not groups:
        return
    columns = 5
    rows = -(-len(groups) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for axis, (group, lengths) in zip(axes.flat, sorted(groups.items())):
        bins = np.logspace(0, np.log10(max(lengths) + 1), 40)
        axis.hist(lengths, bins=bins, color="tab:blue")
        axis.set_xscale("log")
        axis.set_title(f"{group} (n={len(lengths):,})", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(groups):]:
        axis.set_visible(False)
    figure.suptitle("text length per record (characters, log scale)")
    figure.tight_layout()
    ctx.save_figure(figure, "text_lengths.png")


def _scan_all(ctx: Context, root: Path) -> tuple[dict[str, FileStats], list[dict[str, Any]]]:
    rng = random.Random(ctx.seed)
    sample = QUICK_SAMPLE if ctx.quick else None
    train_sides = {train for train, _ in LEAKAGE_PAIRS}
    stats: dict[str, FileStats] = {}
    files: list[dict[str, Any]] = []
    for name, entry in DATASETS.items():
        if not (root / entry.path).exists():
            files.append({"file": name, "status": "absent", "rows": None, "catalogue": entry.rows})
            continue
        stats[name] = _scan(entry, root, sample, name in train_sides, rng)
        rows = stats[name].rows
        status = "sample" if _is_sample(root, entry) else "ok" if rows == entry.rows else "count differs"
        files.append({"file": name, "status": status, "rows": rows, "catalogue": entry.rows,
                      **_length_row(stats[name].lengths)})
    return stats, files


def _is_sample(root, entry: CatalogueEntry) -> bool:
    """Whether the embedded samples serve this file: subsets by design, whose counts say nothing of the catalogue."""
    origin = data_origin(root, Path(entry.path).parts[0])
    return origin is not None and (origin[0] == "samples" or SAMPLES_DIR.resolve() in origin[1].resolve().parents)


@register("data-audit", summary="row counts, label balance, lengths and leakage of every dataset")
def run(ctx: Context) -> Outcome:
    root = ctx.data_root
    stats, files = _scan_all(ctx, root)
    present = [row for row in files if row["status"] != "absent"]
    full = [row for row in present if row["status"] != "sample"]
    mismatches = {row["file"]: {"catalogue": row["catalogue"], "measured": row["rows"]}
                  for row in full if row["status"] != "ok"}
    leakage = _leakage_rows(stats)
    claims = [Claim.check("row-counts", f"each of the {len(full)} full data files present has the catalogue's row count",
                          expected="0 files differ", measured={"files differing": len(mismatches), **mismatches},
                          holds=not mismatches,
                          precondition=Precondition.at_least("full data files present (not the embedded samples)",
                                                             len(full), 1))]
    metrics: dict[str, Any] = {"files": {"catalogue": len(DATASETS), "present": len(present),
                                         "absent": len(DATASETS) - len(present), "count differs": len(mismatches)},
                               "rows present": sum(row["rows"] for row in present)}
    if "kgclue/train" in stats and "kgclue/dev" in stats:
        train, dev = stats["kgclue/train"].records, stats["kgclue/dev"].records
        train_questions = {example.question for example in train}
        leaked = sum(1 for example in dev if example.question in train_questions)
        shared, total = _kgclue_triple_overlap(train, dev)
        claims.append(Claim.equal("kgclue-dev-questions-not-in-train", "no KgCLUE dev question text appears in train",
                                  expected=0, measured=leaked))
        metrics["kgclue"] = {"dev questions in train": leaked, "dev triples answering a train question": shared,
                             "dev triple overlap fraction": round(shared / max(total, 1), 4)}
    metrics["leakage"] = {f"{row['evaluated']} in {row['train']}": row["in train"] for row in leakage if row["in train"]}
    _plot_lengths(ctx, stats)
    notes = [f"data root: {root}"]
    if ctx.quick:
        notes.append(f"quick: counts are exact; lengths and leakage use at most {QUICK_SAMPLE:,} records per file "
                     "(seeded reservoir sample; the train side of a leakage pair is complete)")
    absent = [row["file"] for row in files if row["status"] == "absent"]
    if absent:
        notes.append(f"{len(absent)} catalogue files are absent: {', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}")
    labels = [_label_row(name, s) for name, s in stats.items() if s.labels]
    return Outcome(metrics=metrics, claims=claims, notes=notes,
                   tables={"files": files, "labels": labels, "leakage": leakage})
