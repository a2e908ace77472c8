"""``kexue pretrain``: MLM (+ optional NSP / UniLM) pretraining of a small BERT/RoFormer.

Example (a tiny run on a few lines of Chinese text)::

    kexue pretrain --input corpus/*.jsonl --vocab vocab.txt --out runs/pt --config tiny --max-steps 30

Several processes (``--batch-size`` stays the global batch; see :mod:`kexue.training.distributed`)::

    torchrun --nproc_per_node 2 -m kexue.cli pretrain ...                                  # CPU (gloo) or GPUs (nccl)
    accelerate launch --multi_gpu --num_processes 2 -m kexue.cli pretrain ...             # GPUs
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m kexue.cli pretrain ...  # CPU

Writes ``<out>/checkpoints/step-*/`` (resumable with ``--resume``; a changed setting needs
``--resume-override NAME``), ``<out>/metrics.jsonl``, ``<out>/model_config.json``,
``<out>/summary.json`` and the export ``<out>/final/`` (``Transformer.save_pretrained`` with the
tokenizer files; fp16 weights with ``--export-fp16``). SIGINT/SIGTERM save a checkpoint and exit.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import glob
import json
import logging
import sys
import time
from pathlib import Path

__all__ = ["add_parser", "build_parser", "main", "MODEL_PRESETS"]

logger = logging.getLogger(__name__)

EVAL_SEED = 20211  # masks and pairs of the held-out batches: fixed, so eval numbers are reproducible
MODEL_PRESETS = {
    "small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "tiny": dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
}


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="FILE",
                        help="*.jsonl (one document per line) or text files; globs are expanded")
    source.add_argument("--corpus", choices=("zh",),
                        help="zh: the Chinese pretraining corpus of kexue-small-zh (kexue.data.pretraining)")
    data.add_argument("--data", default=None, help="data root for --corpus (default: $KEXUE_DATA, else ../shared/data)")
    data.add_argument("--text-field", default="text", help="JSONL field with the text (default: text)")
    data.add_argument("--text-format", choices=("blocks", "lines"), default="blocks",
                      help="text files: a document per blank-line-separated block (default) or per line")
    data.add_argument("--vocab", required=True, help="vocab.txt or a checkpoint folder with vocab.txt or tokenizer.json")
    data.add_argument("--eval-docs", type=int, default=None, help="held-out documents, spread evenly")
    data.add_argument("--eval-fraction", type=float, default=0.01, help="held-out fraction if --eval-docs unset")
    data.add_argument("--eval-file", nargs="+", default=None, help="held-out documents from these files instead (left out of training)")
    data.add_argument("--eval-batches", type=int, default=20, help="at most this many held-out batches")
    model = parser.add_argument_group("model")
    model.add_argument("--config", default="small", help="small | tiny | a JSON file or JSON object of TransformerConfig fields")
    model.add_argument("--init-from", default=None, metavar="DIR",
                       help="start from this save_pretrained folder's weights (same config) instead of a random init")
    model.add_argument("--position", choices=("rope", "absolute"), default=None, help="overrides the config")
    task = parser.add_argument_group("objectives")
    task.add_argument("--seq-len", type=int, default=128)
    task.add_argument("--mlm-prob", type=float, default=0.15)
    task.add_argument("--wwm", action="store_true", help="whole-word masking (Chinese words cut by jieba)")
    task.add_argument("--nsp", action="store_true", help="add next-sentence prediction (50%% random B)")
    task.add_argument("--unilm", type=float, nargs="?", const=0.5, default=0.0, metavar="FRACTION",
                      help="fraction of batches trained as UniLM seq2seq (default when given: 0.5)")
    train = parser.add_argument_group("training")
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument("--batch-size", type=int, default=64, help="global batch, split over the processes")
    train.add_argument("--grad-accumulation", type=int, default=1, help="micro-batches per process and update")
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 6%% of --max-steps)")
    train.add_argument("--decay", choices=("linear", "cosine"), default="linear")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--max-steps", type=int, default=10000, help="also the length of the lr schedule")
    train.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    train.add_argument("--eval-every", type=int, default=500)
    train.add_argument("--save-every", type=int, default=500)
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--bf16", action="store_true", help="bf16 autocast (slower on AVX2 CPUs)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("--resume-override", action="append", default=[], metavar="NAME",
                       help="on --resume, accept a changed setting (e.g. learning_rate, settings.batch_size); "
                            "recorded in the checkpoints' config.json")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint on the held-out slice")
    parser.add_argument("--checkpoint", default=None, help="a checkpoints/step-* or save_pretrained folder")
    parser.add_argument("--export-fp16", action="store_true", help="store the exported weights as fp16")
    parser.set_defaults(func=command)
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``pretrain`` on a ``parser.add_subparsers()`` object (used by ``kexue.cli``)."""
    parser = subparsers.add_parser("pretrain", help="MLM/NSP/UniLM pretraining of a small Transformer",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return _configure(parser)


def build_parser() -> argparse.ArgumentParser:
    return _configure(argparse.ArgumentParser(prog="kexue pretrain", description=__doc__,
                                              formatter_class=argparse.RawDescriptionHelpFormatter))


def _expand(patterns: list[str], argument: str) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).is_file() else [])
        if not found:
            raise ValueError(f"`{argument}`: no file matches {pattern!r}")
        paths.extend(found)
    return paths


def _model_config(args, vocab_size: int):
    from kexue.models import TransformerConfig

    if args.config in MODEL_PRESETS:
        fields = dict(MODEL_PRESETS[args.config])
    else:
        text = Path(args.config).read_text(encoding="utf-8") if Path(args.config).is_file() else args.config
        try:
            fields = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"`--config` must be small, tiny, a JSON file or a JSON object, got {args.config!r}") from None
    fields.update(vocab_size=vocab_size, max_positions=max(512, args.seq_len))
    if args.position:
        fields["position"] = args.position
    try:
        return TransformerConfig(**fields)
    except TypeError as error:
        raise ValueError(f"`--config`: {error}") from None


def _validate(args) -> None:
    checks = [("--seq-len", args.seq_len, args.seq_len >= 8), ("--batch-size", args.batch_size, args.batch_size >= 1),
              ("--mlm-prob", args.mlm_prob, 0 < args.mlm_prob < 1), ("--unilm", args.unilm, 0 <= args.unilm <= 1),
              ("--eval-fraction", args.eval_fraction, 0 <= args.eval_fraction < 1),
              ("--eval-batches", args.eval_batches, args.eval_batches >= 1)]
    for name, value, ok in checks:
        if not ok:
            raise ValueError(f"`{name}` is out of range: {value}")
    if args.eval_only and not args.checkpoint:
        raise ValueError("`--eval-only` needs `--checkpoint DIR`")


def _prepare_data(args, tokenizer):
    """Read, split off the held-out slice, tokenize and pack. Returns (train batches, eval batches)."""
    from .data import PretrainBatches, SpecialIds, pack_segments, read_documents, split_eval_documents, tokenize_corpus

    started = time.monotonic()
    if args.corpus == "zh":
        from kexue.data.pretraining import chinese_pretraining_documents

        corpus = list(chinese_pretraining_documents(args.data))
        documents, sources = [document.text for document in corpus], [document.source for document in corpus]
    else:
        documents = read_documents(_expand(args.input, "--input"), args.text_field, args.text_format)
        sources = None
    train_sources = eval_sources = None
    if args.eval_file:
        eval_docs = read_documents(_expand(args.eval_file, "--eval-file"), args.text_field, args.text_format)
        held_out = set(eval_docs)  # a held-out document is never trained on, even if the corpus has it
        kept = [i for i, document in enumerate(documents) if document not in held_out]
        train_docs = [documents[i] for i in kept]
        train_sources = None if sources is None else [sources[i] for i in kept]
    else:
        count = args.eval_docs if args.eval_docs is not None else max(1, round(args.eval_fraction * len(documents)))
        train_docs, eval_docs = split_eval_documents(documents, count)
        if sources is not None:
            train_sources, eval_sources = split_eval_documents(sources, count)
    special = SpecialIds.from_tokenizer(tokenizer)
    common = dict(special=special, batch_size=args.batch_size, seq_len=args.seq_len, mlm_prob=args.mlm_prob,
                  nsp=args.nsp, whole_word=args.wwm)
    train = None
    if not args.eval_only:
        train_corpus = tokenize_corpus(train_docs, tokenizer, whole_word=args.wwm, sources=train_sources)
        # Global batches, the same on every process: the Trainer gives each process its rows.
        train = PretrainBatches(train_corpus, pack_segments(train_corpus, args.seq_len - 3), seed=args.seed,
                                unilm_fraction=args.unilm, **common)
        logger.info("data: %d train documents, %d tokens, %d batches/epoch", len(train_docs),
                    len(train_corpus.tokens), len(train))
    eval_corpus = tokenize_corpus(eval_docs, tokenizer, whole_word=args.wwm, sources=eval_sources)
    eval_segments = pack_segments(eval_corpus, args.seq_len - 3)
    eval_batches = list(PretrainBatches(eval_corpus, eval_segments, seed=EVAL_SEED, **common))[:args.eval_batches]
    if args.unilm:
        eval_batches += list(PretrainBatches(eval_corpus, eval_segments, seed=EVAL_SEED, unilm_fraction=1.0,
                                             **common))[:args.eval_batches]
    logger.info("data: %d held-out documents, %d batches; prepared in %.1f s", len(eval_docs), len(eval_batches),
                time.monotonic() - started)
    return train, eval_batches


def _load_for_eval(checkpoint: Path):
    from kexue.models import Transformer, TransformerConfig
    from kexue.training import load_model_state

    if (checkpoint / "trainer_state.json").is_file() or (checkpoint / "model.pt").is_file():
        config_file = checkpoint.parent.parent / "model_config.json"  # a training checkpoint: <out>/checkpoints/step-*/
        if not config_file.is_file():
            raise ValueError(f"`--checkpoint`: {config_file} (written by kexue pretrain) not found")
        model = Transformer(TransformerConfig(**json.loads(config_file.read_text(encoding="utf-8"))))
        model.load_state_dict(load_model_state(checkpoint))
        return model
    return Transformer.from_pretrained(checkpoint)


def _check_model_config(out: Path, model_config) -> None:
    """On resume, refuse a model config that differs from the run's ``model_config.json``."""
    fields, path = dataclasses.asdict(model_config), out / "model_config.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    changed = {name: (saved.get(name), fields.get(name)) for name in sorted(set(saved) | set(fields))
               if saved.get(name) != fields.get(name)}
    if changed:
        raise ValueError("--resume with a different model (--config/--position/--seq-len): " + "; ".join(
            f"`{name}` was {old!r} in {path}, now {new!r}" for name, (old, new) in changed.items()))


def _training_config(args):
    from kexue.training import TrainingConfig

    settings = {name: getattr(args, name) for name in ("input", "corpus", "text_field", "text_format", "eval_docs",
                                                        "eval_fraction", "eval_file", "seq_len", "mlm_prob", "wwm",
                                                        "nsp", "unilm", "batch_size")}
    warmup = args.warmup if args.warmup is not None else round(0.06 * args.max_steps)
    return TrainingConfig(output_dir=str(args.out), max_steps=args.max_steps, max_minutes=args.max_minutes,
                          learning_rate=args.lr, warmup_steps=warmup, decay=args.decay,
                          weight_decay=args.weight_decay, mixed_precision="bf16" if args.bf16 else "no",
                          gradient_accumulation_steps=args.grad_accumulation, log_every=args.log_every,
                          eval_every=args.eval_every, save_every=args.save_every, seed=args.seed,
                          progress=False if args.no_progress else None, settings=settings,
                          resume_overrides=tuple(args.resume_override))


def run(args) -> dict:
    """Run ``kexue pretrain`` from parsed arguments; returns the summary written to ``summary.json``."""
    import torch
    from accelerate.utils import reduce

    from kexue.data.tokenizer import load_tokenizer
    from kexue.models import Transformer
    from kexue.training import Trainer, distributed_state

    from .task import evaluate_pretraining, pretraining_loss

    _validate(args)
    state = distributed_state()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.vocab)
    train, eval_batches = _prepare_data(args, tokenizer)
    out = Path(args.out)
    if args.eval_only:
        model = _load_for_eval(Path(args.checkpoint))
        return {"checkpoint": str(args.checkpoint), "eval": evaluate_pretraining(model, eval_batches)}
    model_config = _model_config(args, len(tokenizer))
    config = _training_config(args)
    if args.resume:
        _check_model_config(out, model_config)  # on every process, so that all of them stop
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "model_config.json").write_text(json.dumps(dataclasses.asdict(model_config), indent=2), encoding="utf-8")
    torch.manual_seed(args.seed)
    model = Transformer(model_config)
    if args.init_from:
        model.load_state_dict(_initial_weights(Path(args.init_from), model_config))
    seen = {"tokens": 0.0, "calls": 0}

    def loss_fn(model, batch):
        seen["tokens"] += float(batch["attention_mask"].sum())
        seen["calls"] += 1
        return pretraining_loss(model, batch)

    started = time.monotonic()
    result = Trainer(model, loss_fn, train, config, eval_fn=lambda m: evaluate_pretraining(m, eval_batches)).fit(
        resume=args.resume)
    seconds = time.monotonic() - started
    tokens = float(reduce(torch.tensor(seen["tokens"], device=state.device), reduction="sum"))
    steps = seen["calls"] // args.grad_accumulation  # every process calls loss_fn once per micro-batch
    summary: dict = {"step": result.step, "stopped_by": result.stopped_by, "checkpoint": str(result.checkpoint),
                     "processes": state.num_processes, "steps_this_run": steps, "seconds": seconds,
                     "steps_per_sec": steps / seconds, "tokens_per_sec": tokens / seconds,
                     "parameters": sum(p.numel() for p in model.parameters()), "train": result.last_train,
                     "eval": result.last_eval, "model_config": dataclasses.asdict(model_config),
                     "args": {k: v for k, v in vars(args).items() if k != "func"}}
    if state.is_main_process:
        export = copy.deepcopy(model).half() if args.export_fp16 else model
        export.save_pretrained(out / "final", vocab_file=tokenizer)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    state.wait_for_everyone()
    return summary


def _initial_weights(folder: Path, model_config) -> dict:
    """The float32 state dict of a save_pretrained folder whose config equals ``model_config``."""
    from kexue.models import Transformer

    start = Transformer.from_pretrained(folder)
    if start.config != model_config:
        raise ValueError(f"`--init-from`: {folder} has config {start.config}, but this run builds {model_config}")
    return {name: tensor.float() for name, tensor in start.state_dict().items()}


def command(args: argparse.Namespace) -> int:
    """The sub-command (``func`` for ``kexue.cli``): run, then print the summary as JSON."""
    try:
        summary = run(args)
    except ImportError as error:  # an optional dependency (jieba for --wwm): a usage problem, not a crash
        raise ValueError(str(error)) from None
    from kexue.training import distributed_state

    if distributed_state().is_main_process:
        shown = {k: v for k, v in summary.items() if k not in ("args", "model_config")}
        print(json.dumps(shown, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m kexue.pretrain.cli``), with ``kexue.cli``'s error handling."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"kexue pretrain: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
