"""``kexue kbqa``: knowledge-base QA with Seq2Seq + prefix tree (post 8802).

Example::

    kexue kbqa build-kb --kb runs/kb.sqlite --kgclue train dev --distractors 20
    kexue kbqa train --out runs/kbqa --max-steps 2000            # from kexue-small-zh; --resume continues
    kexue kbqa eval --model runs/kbqa/final --kb runs/kb.sqlite --questions dev --beams 3
    kexue kbqa ask "刘晓华教授毕业于哪里？" --model runs/kbqa/final --kb runs/kb.sqlite
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

__all__ = ["add_parser"]

logger = logging.getLogger(__name__)
SETTINGS_FILE = "kbqa.json"  # beside the exported model: the target order it was trained with


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kbqa", help="KgCLUE knowledge-base QA: Seq2Seq + prefix tree (post 8802)")
    commands = parser.add_subparsers(dest="kbqa_command", metavar="ACTION", required=True)

    build = commands.add_parser("build-kb", help="create or extend the SQLite knowledge base")
    build.add_argument("--kb", required=True, type=Path, help="SQLite file (created if missing)")
    build.add_argument("--kgclue", nargs="*", default=[], metavar="SPLIT|FILE",
                       help="KgCLUE QA files to import the answer triples of (train, dev or JSONL paths)")
    build.add_argument("--triples", nargs="*", default=[], type=Path, metavar="FILE",
                       help="raw triple files, one 'S ||| P ||| O' per line (the official knowledge file)")
    build.add_argument("--distractors", type=int, default=0, metavar="K",
                       help="add K same-kind (predicate, object) pairs per subject (pseudo-KB)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--data", type=Path, help="data root (default: $KEXUE_DATA, else ../shared/data)")
    build.set_defaults(func=_run_build)

    train = commands.add_parser("train", help="fine-tune a UniLM KBQA model (resumable)")
    train.add_argument("--out", required=True, type=Path, help="output folder; the model goes to OUT/final")
    train.add_argument("--model", type=Path, help="HF BERT/RoFormer folder (default: kexue-small-zh)")
    train.add_argument("--questions", default="train", help="KgCLUE split or JSONL file (default: train)")
    train.add_argument("--order", choices=("spm", "smp"), default="spm", help="target field order")
    train.add_argument("--max-steps", type=int, default=2000)
    train.add_argument("--max-minutes", type=float, default=None)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data", type=Path, help="data root (default: $KEXUE_DATA, else ../shared/data)")
    train.set_defaults(func=_run_train)

    for name, help_text in (("eval", "KgCLUE EM / F1 on a question file"), ("ask", "answer one question")):
        sub = commands.add_parser(name, help=help_text)
        if name == "eval":
            sub.add_argument("--questions", required=True, help="KgCLUE split (dev) or JSONL file with answers")
            sub.add_argument("--limit", type=int, default=None, help="only the first N questions")
            sub.add_argument("--data", type=Path, help="data root (default: $KEXUE_DATA, else ../shared/data)")
        else:
            sub.add_argument("question")
        sub.add_argument("--model", required=True, type=Path, help="a model from `kexue kbqa train` (OUT/final)")
        sub.add_argument("--kb", required=True, type=Path, help="the SQLite knowledge base")
        sub.add_argument("--beams", type=int, default=1, help="beam width (1 = greedy)")
        sub.add_argument("--no-lookahead", action="store_true", help="plain trie decoding")
        sub.add_argument("--trie-cache", type=Path, default=None, help="folder to cache the trie in")
        sub.set_defaults(func=_run_eval if name == "eval" else _run_ask)


def _examples(questions: str, data: Path | None):
    from kexue.data.kgclue import KGCLUE_SPLITS, parse_kgclue, read_kgclue
    from kexue.data.readers import read_jsonl

    if questions in KGCLUE_SPLITS and not Path(questions).is_file():
        return list(read_kgclue(questions, data))
    return list(read_jsonl(questions, parse_kgclue))


def _run_build(args: argparse.Namespace) -> int:
    from kexue.retrieval.kb import KnowledgeBase

    with KnowledgeBase(args.kb) as kb:
        for source in args.kgclue:
            logger.info("%s: %d new facts", source, kb.import_kgclue(source, args.data))
        for path in args.triples:
            logger.info("%s: %d new facts", path, kb.import_triples(path))
        if args.distractors:
            logger.info("distractors: %d new facts", kb.add_distractors(args.distractors, args.seed))
        print(json.dumps({"kb": str(args.kb), "facts": len(kb), **kb.counts()}, ensure_ascii=False))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from kexue.checkpoints import small_zh_path
    from kexue.data import load_tokenizer
    from kexue.retrieval.kbqa import KbqaCodec, train_kbqa
    from kexue.training import TrainingConfig

    model_path = args.model or small_zh_path()
    if model_path is None:
        raise ValueError("no --model given and kexue-small-zh is not available (set KEXUE_SMALL_ZH)")
    codec = KbqaCodec(load_tokenizer(model_path), args.order)
    config = TrainingConfig(output_dir=str(args.out), max_steps=args.max_steps, max_minutes=args.max_minutes,
                            learning_rate=args.lr, warmup_steps=min(100, args.max_steps // 10),
                            save_every=200, seed=args.seed)
    _, result = train_kbqa(model_path, _examples(args.questions, args.data), codec, config, args.batch_size,
                           args.resume)
    settings = {"order": args.order, "max_question_tokens": codec.max_question_tokens}
    (args.out / "final" / SETTINGS_FILE).write_text(json.dumps(settings) + "\n", encoding="utf-8")
    print(json.dumps({"step": result.step, "stopped_by": result.stopped_by, "model": str(args.out / "final"),
                      **result.last_train}))
    return 0


def _predictor(args: argparse.Namespace):
    from kexue.data import load_tokenizer
    from kexue.models import Transformer
    from kexue.retrieval.kb import KnowledgeBase
    from kexue.retrieval.kbqa import KbqaCodec, KbqaPredictor, load_or_build_trie

    if not args.kb.is_file():
        raise FileNotFoundError(f"--kb {args.kb} does not exist; create it with `kexue kbqa build-kb`")
    settings_path = args.model / SETTINGS_FILE
    settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    codec = KbqaCodec(load_tokenizer(args.model), settings.get("order", "spm"),
                      settings.get("max_question_tokens", 64))
    kb = KnowledgeBase(args.kb)
    trie = load_or_build_trie(kb, codec, args.trie_cache)
    return KbqaPredictor(Transformer.from_pretrained(args.model), codec, kb, trie)


def _run_eval(args: argparse.Namespace) -> int:
    from kexue.retrieval.kbqa import evaluate_kbqa

    examples = _examples(args.questions, args.data)[:args.limit]
    metrics = evaluate_kbqa(_predictor(args), examples, args.beams, not args.no_lookahead)
    print(json.dumps({"questions": len(examples), **{k: round(100 * v, 2) for k, v in metrics.items()}}))
    return 0


def _run_ask(args: argparse.Namespace) -> int:
    answer = _predictor(args).answer([args.question], args.beams, not args.no_lookahead)[0]
    subject, predicate, object_ = answer.triple
    print(json.dumps({"subject": subject, "predicate": predicate, "object": object_, "score": answer.score,
                      "truncated": answer.truncated}, ensure_ascii=False))
    return 0
