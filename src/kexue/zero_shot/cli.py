"""``kexue zeroshot``: NSP-BERT zero-shot classification from the command line.

Examples::

    kexue zeroshot fewclue --model checkpoints/kexue-small-zh --task all --split dev
    kexue zeroshot classify --model checkpoints/kexue-small-zh --labels 体育 财经 \\
        --template "这是一则{label}新闻" "梅西梅开二度"

``fewclue`` prints a Markdown accuracy table (NSP, PET-MLM, majority class, the paper's numbers);
``classify`` prints one line per text: the predicted label and each label's exp(score): P(IsNext)
(geometric mean over templates), divided by the content-free P(IsNext) with ``--calibrate``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("zeroshot", help="NSP-BERT zero-shot classification (post 8671)")
    commands = parser.add_subparsers(dest="zeroshot_command", metavar="SUBCOMMAND", required=True)

    fewclue = commands.add_parser("fewclue", help="accuracy table on FewCLUE (NSP, PET-MLM, majority class)")
    _common(fewclue)
    fewclue.add_argument("--task", default="all", help="a FewCLUE task name, or 'all' (default)")
    fewclue.add_argument("--split", default="dev", help="dev (= dev_few_all, default), train, dev_0..4, ...")
    fewclue.add_argument("--data", type=Path, default=None, help="data root (default: $KEXUE_DATA, else ../shared/data)")
    fewclue.add_argument("--limit", type=int, default=None, help="at most this many examples per task, evenly spaced")
    fewclue.add_argument("--templates", choices=("paper", "all"), default="paper",
                         help="paper: the paper's third template; all: ensemble the task's templates")
    fewclue.add_argument("--no-pet", action="store_true", help="skip the PET-MLM baseline")
    fewclue.add_argument("--json", action="store_true", help="print JSON instead of the table")
    fewclue.set_defaults(func=_run_fewclue)

    classify = commands.add_parser("classify", help="classify your own texts against your own labels")
    _common(classify)
    classify.add_argument("--labels", nargs="+", required=True, help="label names (the words put in {label})")
    classify.add_argument("--template", nargs="+", default=["{label}"],
                          help="one or more templates with {label}; several are ensembled (default: {label})")
    classify.add_argument("--suffix", action="store_true", help="put the prompt after the text (default: before)")
    classify.add_argument("--calibrate", action="store_true", help="divide out each prompt's content-free P(IsNext)")
    classify.add_argument("texts", nargs="+", metavar="TEXT")
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
    path = _model_path(args)
    nsp = NSPScorer.from_pretrained(path, max_length=args.max_length, progress=True)
    mlm = None if args.no_pet else MLMScorer.from_pretrained(path, max_length=args.max_length, progress=True)
    tasks = FEWCLUE_TASKS if args.task == "all" else (args.task,)
    results = evaluate_fewclue(tasks, nsp=nsp, mlm=mlm, split=args.split, root=args.data, limit=args.limit,
                               template_index=-1 if args.templates == "paper" else None)
    if args.json:
        print(json.dumps([result.to_dict() for result in results], indent=2, ensure_ascii=False))
    else:
        print(f"model: {path} ({nsp.num_parameters():,} parameters); accuracy in %; paper: UER BERT-base, test_public")
        print(format_results(results))
    return 0


def _run_classify(args: argparse.Namespace) -> int:
    from kexue.zero_shot import NSPScorer, NSPZeroShotClassifier

    scorer = NSPScorer.from_pretrained(_model_path(args), max_length=args.max_length)
    classifier = NSPZeroShotClassifier(scorer, args.labels, args.template,
                                       prompt_position="suffix" if args.suffix else "prefix", calibrate=args.calibrate)
    scores = classifier.scores(args.texts)
    for text, row in zip(args.texts, scores):
        best = int(row.argmax())
        detail = "  ".join(f"{label}={value:.4f}" for label, value in zip(args.labels, row.exp().tolist()))
        print(f"{args.labels[best]}\t{text}\t{detail}")
    return 0
