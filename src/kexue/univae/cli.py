"""``kexue univae``: train a UniVAE, then sample, reconstruct and edit sentences with it.

Examples::

    kexue univae train --out runs/univae --latent vmf --steps 2000        # on KgCLUE + AFQMC questions
    kexue univae sample --model runs/univae/model -n 10 --temperature 1 --top-p 0.9
    kexue univae reconstruct --model runs/univae/model 青椒跟什么炒好吃
    kexue univae edit --model runs/univae/model 牙龈出血要吃什么药 --layers 0 -n 6

``train`` starts from ``--backbone`` (default ``kexue-small-zh``; any local HF BERT/RoFormer with an
MLM head), writes Trainer checkpoints under ``OUT/train`` (``--resume`` continues them) and the
model under ``OUT/model``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("univae", help="UniVAE sentence VAE: train, sample, reconstruct, edit (post 8475)")
    commands = parser.add_subparsers(dest="univae_command", metavar="SUBCOMMAND", required=True)

    train = commands.add_parser("train", help="train a UniVAE on short questions or your sentences")
    train.add_argument("--out", type=Path, required=True, help="output folder (train/ checkpoints, model/)")
    train.add_argument("--backbone", type=Path, default=None, help="HF BERT/RoFormer folder (default: kexue-small-zh)")
    train.add_argument("--data", type=Path, default=None, help="data root (default: $KEXUE_DATA, else ../shared/data)")
    train.add_argument("--sentences", type=Path, default=None, help="UTF-8 file, one sentence a line (default: "
                       "KgCLUE questions + AFQMC sentences)")
    train.add_argument("--latent", choices=("vmf", "gaussian", "vq"), default="vmf")
    train.add_argument("--independent-layers", type=int, default=2, help="k bottom layers without latents")
    train.add_argument("--latent-dims", type=int, default=16, help="latent dims per latent layer")
    train.add_argument("--kappa", type=float, default=32.0, help="vMF concentration (initial, with --learn-kappa)")
    train.add_argument("--learn-kappa", action="store_true")
    train.add_argument("--codebook-size", type=int, default=64, help="VQ codes per latent layer")
    train.add_argument("--kl-warmup", type=int, default=0, help="KL annealing steps (Gaussian / learned kappa)")
    train.add_argument("--free-bits", type=float, default=0.0, help="nats per latent layer not penalised")
    train.add_argument("--length-leakage", choices=("fixed", "condition"), default="fixed")
    train.add_argument("--max-length", type=int, default=32, help="tokens per sentence with [CLS], [SEP]")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from the checkpoints in OUT/train")
    train.set_defaults(func=_run_train)

    for name, help_text in (("sample", "sentences from the prior"), ("reconstruct", "encode and decode sentences"),
                            ("edit", "resample chosen latent layers / dims of a sentence")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--model", type=Path, required=True, help="a folder written by `kexue univae train`")
        command.add_argument("--temperature", type=float, default=1.0 if name == "sample" else 0.0,
                             help="0: greedy (default for reconstruct/edit)")
        command.add_argument("--top-p", type=float, default=0.9 if name == "sample" else 1.0)
        command.add_argument("--seed", type=int, default=0)
        command.set_defaults(func={"sample": _run_sample, "reconstruct": _run_reconstruct, "edit": _run_edit}[name])
    commands.choices["sample"].add_argument("-n", "--count", type=int, default=10)
    commands.choices["sample"].add_argument("--length", type=int, default=16,
                                            help="encoder length, used with length_leakage=condition")
    commands.choices["reconstruct"].add_argument("sentences", nargs="+", metavar="SENTENCE")
    edit = commands.choices["edit"]
    edit.add_argument("sentence", metavar="SENTENCE")
    edit.add_argument("--layers", type=int, nargs="*", default=[], help="latent layers to resample (0 = lowest)")
    edit.add_argument("--dims", type=int, nargs="*", default=[], help="dims of the concatenated latent to resample")
    edit.add_argument("-n", "--count", type=int, default=6)


def _run_train(args: argparse.Namespace) -> int:
    from kexue.checkpoints import small_zh_path
    from kexue.data import load_tokenizer
    from kexue.training import TrainingConfig
    from kexue.univae import KLSchedule, UniVAE, UniVAEConfig, question_sentences, train_univae

    backbone = args.backbone or small_zh_path()
    if backbone is None:
        raise FileNotFoundError("no --backbone given and kexue-small-zh was not found")
    if args.sentences is not None:
        sentences = [line.strip() for line in args.sentences.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        sentences = question_sentences(args.data, max_chars=args.max_length - 2)
    tokenizer = load_tokenizer(backbone)
    sequences = tokenizer(sentences, truncation=True, max_length=args.max_length)["input_ids"]
    config = UniVAEConfig(num_independent_layers=args.independent_layers, latent=args.latent,
                          latent_dims=args.latent_dims, kappa=args.kappa, learn_kappa=args.learn_kappa,
                          codebook_size=args.codebook_size, max_length=args.max_length,
                          length_leakage=args.length_leakage)
    model = UniVAE.from_pretrained(backbone, config)
    training = TrainingConfig(output_dir=str(args.out / "train"), max_steps=args.steps, learning_rate=args.lr,
                              warmup_steps=min(100, args.steps // 10), max_minutes=args.max_minutes,
                              save_every=max(1, args.steps // 10), seed=args.seed)
    result = train_univae(model, sequences, training, args.batch_size,
                          KLSchedule(args.kl_warmup, free_bits=args.free_bits), resume=args.resume,
                          pad_id=tokenizer.pad_token_id)
    model.save_pretrained(args.out / "model", vocab_file=tokenizer)
    print(f"step {result.step} ({result.stopped_by}): {result.last_train}")
    print((args.out / "model").resolve())
    return 0


def _load(args: argparse.Namespace):
    import torch

    from kexue.data import load_tokenizer
    from kexue.univae import SentenceVAE, UniVAE

    vae = SentenceVAE(UniVAE.load(args.model), load_tokenizer(args.model))
    decoding = dict(temperature=args.temperature, top_p=args.top_p, generator=torch.Generator().manual_seed(args.seed))
    return vae, decoding


def _run_sample(args: argparse.Namespace) -> int:
    import torch

    vae, decoding = _load(args)
    lengths = torch.full((args.count,), args.length)
    for text in vae.sample(args.count, lengths=lengths, **decoding):
        print(text)
    return 0


def _run_reconstruct(args: argparse.Namespace) -> int:
    vae, decoding = _load(args)
    for original, text in zip(args.sentences, vae.reconstruct(args.sentences, **decoding)):
        print(f"{original}\t{text}")
    return 0


def _run_edit(args: argparse.Namespace) -> int:
    vae, decoding = _load(args)
    for text in vae.edit(args.sentence, layers=args.layers, dims=args.dims, count=args.count, **decoding):
        print(text)
    return 0
