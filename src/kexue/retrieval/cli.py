"""``kexue kbqa``: knowledge-base QA with Seq2Seq + prefix tree (post 8802).

Example::

    kexue kbqa build-kb --kb runs/kb.sqlite --kgclue train dev --distractors 20
    kexue kbqa train --out runs/kbqa                              # the committed recipe; --resume continues
    kexue kbqa eval --model runs/kbqa/final --kb runs/kb.sqlite --questions dev --predictions dev.jsonl
    kexue kbqa ask "刘晓华教授毕业于哪里？" "龙晶的繁体是什么" --model runs/kbqa/final --kb runs/kb.sqlite
    kexue kbqa ask --file questions.txt --model runs/kbqa/final --kb runs/kb.sqlite   # or --file - (stdin)

``ask`` and ``eval`` open the knowledge base read-only and memory-map the trie from a cache keyed
by the KB's content hash and the tokenizer, so a cold ``ask`` costs the imports (torch) and the
model load, and every further question of the same call milliseconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from kexue.retrieval.recipe import KBQA_RECIPE

__all__ = ["add_parser"]

logger = logging.getLogger(__name__)
SETTINGS_FILE = "kbqa.json"  # beside the exported model: the target order it was trained with
_DATA_HELP = "data root for split names (default: $KEXUE_DATA, else ../shared/data)"
_QUESTIONS_HELP = "KgCLUE split (train, dev, test_public) or a JSONL file of the same format"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kbqa", help="KgCLUE knowledge-base QA: Seq2Seq + prefix tree (post 8802)")
    commands = parser.add_subparsers(dest="kbqa_command", metavar="ACTION", required=True)
    _add_build(commands)
    _add_train(commands)
    _add_eval(commands)
    _add_ask(commands)


def _add_build(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser("build-kb", help="create or extend the SQLite knowledge base")
    build.add_argument("--kb", required=True, type=Path, help="SQLite file (created if missing)")
    build.add_argument("--kgclue", nargs="*", default=[], metavar="SPLIT|FILE",
                       help="KgCLUE QA files to import the answer triples of (split names or JSONL paths)")
    build.add_argument("--triples", nargs="*", default=[], type=Path, metavar="FILE",
                       help="raw triple files, one 'S ||| P ||| O' per line (the official knowledge file)")
    build.add_argument("--distractors", type=int, default=0, metavar="K",
                       help="add K same-kind (predicate, object) pairs per subject (pseudo-KB; default: 0)")
    build.add_argument("--seed", type=int, default=0, help="seed of the distractor draw (default: 0)")
    build.add_argument("--data", type=Path, help=_DATA_HELP)
    build.set_defaults(func=_run_build)


def _add_train(commands: argparse._SubParsersAction) -> None:
    recipe = KBQA_RECIPE
    train = commands.add_parser("train", help="fine-tune a UniLM KBQA model (resumable; defaults: the committed recipe)")
    train.add_argument("--out", required=True, type=Path, help="output folder; the model goes to OUT/final")
    train.add_argument("--model", type=Path, help="HF BERT/RoFormer folder (default: kexue-small-zh)")
    train.add_argument("--questions", default="train", metavar="SPLIT|FILE", help=f"{_QUESTIONS_HELP} (default: train)")
    train.add_argument("--order", choices=("spm", "smp"), default=recipe.order,
                       help=f"target field order: S,P,M or S,M,P (default: {recipe.order})")
    train.add_argument("--max-steps", type=int, default=recipe.max_steps,
                       help=f"optimizer steps (default: {recipe.max_steps}); warm-up is 1/{recipe.warmup_divisor} of them")
    train.add_argument("--max-minutes", type=float, default=recipe.max_minutes,
                       help="stop (and checkpoint) after this much wall-clock time (default: no limit)")
    train.add_argument("--batch-size", type=int, default=recipe.batch_size,
                       help=f"questions per step (default: {recipe.batch_size})")
    train.add_argument("--lr", type=float, default=recipe.learning_rate,
                       help=f"peak learning rate, linear decay (default: {recipe.learning_rate:g})")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling (default: 0)")
    train.add_argument("--data", type=Path, help=_DATA_HELP)
    train.set_defaults(func=_run_train)


def _add_decoding_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--model", required=True, type=Path, help="a model from `kexue kbqa train` (OUT/final)")
    sub.add_argument("--kb", required=True, type=Path, help="the SQLite knowledge base (opened read-only)")
    sub.add_argument("--beams", type=int, default=1, help="beam width (default: 1 = greedy)")
    sub.add_argument("--no-lookahead", action="store_true", help="plain trie decoding (default: with lookahead)")
    sub.add_argument("--trie-cache", type=Path, default=None, metavar="DIR",
                     help="folder of cached tries, keyed by KB content and tokenizer "
                          "(default: $KEXUE_CACHE/kbqa-tries, else ~/.cache/kexue/kbqa-tries)")


def _add_eval(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("eval", help="KgCLUE EM / F1 on a question file")
    sub.add_argument("--questions", required=True, metavar="SPLIT|FILE", help=f"{_QUESTIONS_HELP}, with answers")
    sub.add_argument("--limit", type=int, default=None, help="only the first N questions (default: all)")
    sub.add_argument("--predictions", type=Path, default=None, metavar="FILE",
                     help="write one JSON line per question: the prediction, the gold triple, EM_O, warnings")
    sub.add_argument("--data", type=Path, help=_DATA_HELP)
    _add_decoding_options(sub)
    sub.set_defaults(func=_run_eval)


def _add_ask(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("ask", help="answer questions: one JSON line each")
    sub.add_argument("questions", nargs="*", metavar="QUESTION", help="questions to answer")
    sub.add_argument("--file", type=Path, default=None, metavar="FILE",
                     help="also answer every line of FILE ('-': stdin, each answered as it arrives)")
    _add_decoding_options(sub)
    sub.set_defaults(func=_run_ask)


def _run_build(args: argparse.Namespace) -> int:
    from kexue.retrieval.kb import KnowledgeBase

    with KnowledgeBase(args.kb) as kb:
        for source in args.kgclue:
            logger.info("%s: %d new facts", source, kb.import_kgclue(source, args.data))
        for path in args.triples:
            logger.info("%s: %d new facts", path, kb.import_triples(path))
        if args.distractors:
            logger.info("distractors: %d new facts", kb.add_distractors(args.distractors, args.seed))
        print(json.dumps({"kb": str(args.kb), "facts": len(kb), **kb.counts(), "content_hash": kb.content_hash()},
                         ensure_ascii=False))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from kexue.checkpoints import small_zh_path
    from kexue.data import load_tokenizer
    from kexue.data.kgclue import read_kgclue_questions
    from kexue.retrieval.kbqa import KbqaCodec, train_kbqa

    model_path = args.model or small_zh_path()
    if model_path is None:
        raise ValueError("no --model given and kexue-small-zh is not available (set KEXUE_SMALL_ZH)")
    codec = KbqaCodec(load_tokenizer(model_path), args.order)
    config = KBQA_RECIPE.training_config(args.out, args.seed, args.max_steps, args.max_minutes, args.lr)
    _, result = train_kbqa(model_path, list(read_kgclue_questions(args.questions, args.data)), codec, config,
                           args.batch_size, args.resume)
    settings = {"order": args.order, "max_question_tokens": codec.max_question_tokens}
    (args.out / "final" / SETTINGS_FILE).write_text(json.dumps(settings) + "\n", encoding="utf-8")
    print(json.dumps({"step": result.step, "stopped_by": result.stopped_by, "model": str(args.out / "final"),
                      **result.last_train}))
    return 0


def _predictor(args: argparse.Namespace):
    started = time.perf_counter()
    from kexue.models import Transformer
    from kexue.retrieval.kb import KnowledgeBase
    from kexue.retrieval.kbqa import KbqaCodec, KbqaPredictor, default_trie_cache, load_or_build_trie

    settings_path = args.model / SETTINGS_FILE
    if not args.model.is_dir():
        raise FileNotFoundError(f"--model {args.model} is not a folder; train one with `kexue kbqa train`")
    settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    codec = KbqaCodec.from_pretrained(args.model, settings.get("order", "spm"), settings.get("max_question_tokens", 64))
    kb = KnowledgeBase(args.kb, read_only=True)
    trie = load_or_build_trie(kb, codec, args.trie_cache or default_trie_cache())
    model = Transformer.from_pretrained(args.model)
    logger.debug("predictor ready in %.2f s (after the imports of the CLI)", time.perf_counter() - started)
    return KbqaPredictor(model, codec, kb, trie)


def _answer_record(question: str, answer) -> dict:
    subject, predicate, object_ = answer.triple
    return {"question": question, "subject": subject, "predicate": predicate, "object": object_,
            "score": round(answer.score, 4), "truncated": answer.truncated, "warning": answer.warning}


def _run_eval(args: argparse.Namespace) -> int:
    from kexue.data.kgclue import read_kgclue_questions
    from kexue.retrieval.kbqa import evaluate_kbqa

    examples = list(read_kgclue_questions(args.questions, args.data))[:args.limit]
    answers: list = []
    metrics = evaluate_kbqa(_predictor(args), examples, args.beams, not args.no_lookahead, answers=answers)
    if args.predictions is not None:
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        with args.predictions.open("w", encoding="utf-8") as out:
            for example, answer in zip(examples, answers):
                record = {"id": example.id, **_answer_record(example.question, answer),
                          "gold": {"subject": example.subject, "predicate": example.predicate, "object": example.object},
                          "EM_O": answer.fact.object == example.object}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(json.dumps({"questions": len(examples), "warnings": sum(a.warning is not None for a in answers),
                      **{k: round(100 * v, 2) for k, v in metrics.items()}}))
    return 0


def _run_ask(args: argparse.Namespace) -> int:
    if not args.questions and args.file is None:
        raise ValueError("give questions as arguments or --file FILE ('-' for stdin)")
    if args.file is not None and str(args.file) != "-" and not args.file.is_file():
        raise FileNotFoundError(f"--file {args.file} does not exist")
    predictor = _predictor(args)

    def answer(questions: list[str]) -> None:
        for question, found in zip(questions, predictor.answer(questions, args.beams, not args.no_lookahead)):
            print(json.dumps(_answer_record(question, found), ensure_ascii=False), flush=True)

    if args.questions:
        answer(args.questions)
    if args.file is not None and str(args.file) == "-":
        for line in sys.stdin:  # one at a time: an interactive session gets each answer at once
            answer([line.rstrip("\n")])
    elif args.file is not None:
        answer(args.file.read_text(encoding="utf-8").splitlines())
    return 0
