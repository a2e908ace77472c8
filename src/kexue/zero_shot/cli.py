"""``kexue zeroshot``: NSP-BERT zero-shot classification from the command line.

Examples::

    kexue zeroshot fewclue --model checkpoints/kexue-small-zh --task all --split dev
    kexue zeroshot fewclue --task csl --split test_public          # any split in the data folder, or a file
    kexue zeroshot fewclue --nsp-auc                               # does the NSP head judge coherence?
    kexue zeroshot classify --model checkpoints/kexue-small-zh --labels 体育,财经 \\
        --template 这是一则{label}新闻 梅西梅开二度 央行降息

``fewclue`` prints a Markdown accuracy table (NSP, PET-MLM, majority class, the paper's numbers),
or with ``--nsp-auc`` the coherence AUCs of :func:`kexue.zero_shot.coherence_auc`; ``classify``
prints one line per text: the predicted label and each label's exp(score): P(IsNext) (geometric
mean over templates), divided by the content-free P(IsNext) with ``--calibrate``.

Every option takes one token (``--labels`` is comma-separated, ``--template`` is repeated for
several templates), so no option swallows the texts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from kexue.cli import comma_separated

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("zeroshot", help="NSP-BERT zero-shot classification (post 8671)",
                                   description="NSP-BERT zero-shot classification (kexue.fm/archives/8671)")
    commands = parser.add_subparsers(dest="zeroshot_command", metavar="SUBCOMMAND", required=True,
                                     help="fewclue or classify")

    fewclue = commands.add_parser("fewclue", help="accuracy table on FewCLUE (NSP, PET-MLM, majority class), "
                                  "or the NSP head's coherence AUCs (--nsp-auc)")
    _common(fewclue)
    fewclue.add_argument("--task", default="all", help="a FewCLUE task name, or 'all' (default)")
    fewclue.add_argument("--split", default="dev",
                         help="a split present in the task's data folder: dev (= dev_few_all, default), train, "
                              "dev_0..4, test_public, ...; or the path of a JSON Lines file of one --task")
    fewclue.add_argument("--thresholds-from", default=None, metavar="SPLIT",
                         help="samples-contrast tasks: the split (or file) whose scores fit the thresholds "
                              "(default: train_* for dev_*, dev_* for train_*, else dev_few_all)")
    fewclue.add_argument("--data", type=Path, default=None, help="data root (default: $KEXUE_DATA, else ../shared/data)")
    fewclue.add_argument("--limit", type=int, default=None, help="at most this many examples per task, evenly spaced")
    fewclue.add_argument("--templates", choices=("paper", "all"), default="paper",
                         help="paper: the paper's third template; all: ensemble the task's templates")
    fewclue.add_argument("--no-pet", action="store_true", help="skip the PET-MLM baseline")
    fewclue.add_argument("--nsp-auc", action="store_true",
                         help="report instead the NSP head's coherence AUCs on the split's texts: true next "
                              "sentence vs a random one from another task, from the same task, and A/B swapped")
    fewclue.add_argument("--auc-anchors", type=int, default=200, metavar="N",
                         help="--nsp-auc: at most N sentence pairs per task (default: 200)")
    fewclue.add_argument("--seed", type=int, default=0, help="--nsp-auc: seed of the pair draw (default: 0)")
    fewclue.add_argument("--json", action="store_true", help="print JSON instead of the table")
    fewclue.set_defaults(func=_run_fewclue)

    classify = commands.add_parser("classify", help="classify your own texts against your own labels")
    _common(classify)
    classify.add_argument("--labels", type=comma_separated(str), required=True, metavar="A,B,...",
                          help="two or more comma-separated label names (the words put in {label})")
    classify.add_argument("--template", action="append", default=None, metavar="TEMPLATE",
                          help="a template with {label}; repeat the option for several (ensembled); "
                               "default: {label}")
    classify.add_argument("--suffix", action="store_true", help="put the prompt after the text (default: before)")
    classify.add_argument("--calibrate", action="store_true", help="divide out each prompt's content-free P(IsNext)")
    classify.add_argument("texts", nargs="+", metavar="TEXT", help="the texts to classify")
    classify.set_defaults(func=_run_classify)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="BERT/RoFormer checkpoint folder with an NSP head (default: kexue-small-zh)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per pair (default: 128, as the paper)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _model_path(args: argparse.Namespace) -> Path:
    from kexue.checkpoints import small_zh_path

    path = args.model or small_zh_path()
    if path is None:
        raise FileNotFoundError("no --model given and kexue-small-zh was not found (set KEXUE_SMALL_ZH)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return path


def _run_fewclue(args: argparse.Namespace) -> int:
    from kexue.data import FEWCLUE_TASKS
    from kexue.zero_shot import MLMScorer, NSPScorer, evaluate_fewclue, format_results

    if args.task != "all" and args.task not in FEWCLUE_TASKS:
        raise ValueError(f"`--task` must be 'all' or one of {FEWCLUE_TASKS}, got {args.task!r}")
    tasks = FEWCLUE_TASKS if args.task == "all" else (args.task,)
    if args.split.endswith((".json", ".jsonl")) and len(tasks) > 1:
        raise ValueError(f"`--split` {args.split!r} is a file of one task: give --task too")
    path = _model_path(args)
    nsp = NSPScorer.from_pretrained(path, max_length=args.max_length, progress=not args.json)
    if args.nsp_auc:
        return _report_nsp_auc(args, nsp, path, tasks)
    mlm = None if args.no_pet else MLMScorer.from_pretrained(path, max_length=args.max_length, progress=not args.json)
    results = evaluate_fewclue(tasks, nsp=nsp, mlm=mlm, split=args.split, root=args.data, limit=args.limit,
                               template_index=-1 if args.templates == "paper" else None,
                               thresholds_from=args.thresholds_from)
    if args.json:
        print(json.dumps([result.to_dict() for result in results], indent=2, ensure_ascii=False))
    else:
        print(f"model: {path} ({nsp.num_parameters():,} parameters); accuracy in %; paper: UER BERT-base, test_public")
        print(format_results(results))
    return 0


def _report_nsp_auc(args: argparse.Namespace, nsp, path: Path, tasks) -> int:
    from kexue.zero_shot import coherence_auc, format_coherence

    result = coherence_auc(nsp, args.data, n=args.auc_anchors, seed=args.seed, tasks=tasks, split=args.split)
    result["model"] = str(path)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"model: {path}; P(IsNext) AUC of true next sentences against each negative kind "
              f"({result['split']}, seed {args.seed}; 0.5 = chance)")
        print(format_coherence(result))
    return 0


def _run_classify(args: argparse.Namespace) -> int:
    from kexue.zero_shot import NSPScorer, NSPZeroShotClassifier

    if len(args.labels) < 2:
        raise ValueError(f"`--labels` needs two or more comma-separated names, got {args.labels}")
    templates = args.template or ["{label}"]
    scorer = NSPScorer.from_pretrained(_model_path(args), max_length=args.max_length)
    classifier = NSPZeroShotClassifier(scorer, args.labels, templates,
                                       prompt_position="suffix" if args.suffix else "prefix", calibrate=args.calibrate)
    scores = classifier.scores(args.texts)
    for text, row in zip(args.texts, scores):
        best = int(row.argmax())
        detail = "  ".join(f"{label}={value:.4f}" for label, value in zip(args.labels, row.exp().tolist()))
        print(f"{args.labels[best]}\t{text}\t{detail}")
    return 0
