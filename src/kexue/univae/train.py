"""Training UniVAE with kexue's one training loop (:class:`kexue.training.Trainer`).

The step function is the negative ELBO of post 8475, one regulariser per latent layer::

    loss = reconstruction + beta(t) sum_l max(KL_l, free_bits)     (vMF, Gaussian; KLSchedule)
    loss = reconstruction + sum_l VQ_l                              (VQ)

``t`` is the model's ``training_step`` buffer, saved in checkpoints so a resumed run continues the
KL schedule where it stopped. Data: :class:`SentenceBatches` over pre-tokenised sentences, shuffled
per epoch from ``(seed, epoch)`` so resume is exact.

Example:
    >>> batches = SentenceBatches([[2, 5, 3], [2, 6, 7, 3], [2, 8, 3]], batch_size=2, seed=0)
    >>> sorted(tuple(b["input_ids"].shape)[0] for b in batches)
    [1, 2]
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from kexue.training import Trainer, TrainingConfig, TrainResult
from kexue.univae.latent import KLSchedule
from kexue.univae.model import UniVAE

__all__ = ["SentenceBatches", "univae_loss_fn", "train_univae", "question_sentences"]


class SentenceBatches:
    """Padded batches ``{"input_ids", "attention_mask"}`` of token-id lists, reshuffled every epoch.

    Args:
        sequences: token ids per sentence, ``[CLS] .. [SEP]`` included.
        batch_size: sentences per batch.
        seed: the order of epoch ``e`` depends only on ``(seed, e)``.
        pad_id: the padding id.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], batch_size: int, seed: int = 0, pad_id: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        if not sequences:
            raise ValueError("`sequences` is empty")
        self.sequences, self.batch_size, self.seed, self.pad_id = list(sequences), batch_size, seed, pad_id
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.sequences) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = list(range(len(self.sequences)))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        for start in range(0, len(order), self.batch_size):
            rows = [self.sequences[i] for i in order[start:start + self.batch_size]]
            width = max(len(row) for row in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, :len(row)] = torch.tensor(row)
            yield {"input_ids": ids, "attention_mask": (torch.arange(width) < torch.tensor(
                [len(r) for r in rows])[:, None]).long()}


def univae_loss_fn(schedule: KLSchedule | None = None) -> Callable[[nn.Module, dict], tuple[Tensor, dict]]:
    """``loss_fn(model, batch)`` for the Trainer; metrics name every part of the loss per layer."""
    schedule = schedule or KLSchedule()

    def loss_fn(model: UniVAE, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        out = model(batch["input_ids"], batch["attention_mask"])
        vae = getattr(model, "module", model)  # unwrapped under distributed training
        step = int(vae.training_step)
        if out.kind == "kl":
            penalty = schedule.penalty(out.regulariser, step)
        else:
            penalty = out.regulariser.sum()
        if model.training:
            vae.training_step += 1
        metrics = {"reconstruction": float(out.reconstruction.detach()), "token_accuracy": float(out.token_accuracy)}
        metrics |= {f"{out.kind}_{i}": float(value) for i, value in enumerate(out.regulariser.detach())}
        if out.kind == "kl":
            metrics["kl_weight"] = schedule.weight(step)
        return out.reconstruction + penalty, metrics

    return loss_fn


def train_univae(model: UniVAE, sequences: Sequence[Sequence[int]], config: TrainingConfig, batch_size: int = 32,
                 schedule: KLSchedule | None = None, eval_fn=None, resume: bool = False,
                 pad_id: int = 0) -> TrainResult:
    """Fit ``model`` on tokenised sentences with :class:`~kexue.training.Trainer`; see the module docstring."""
    batches = SentenceBatches(sequences, batch_size, seed=config.seed, pad_id=pad_id)
    return Trainer(model, univae_loss_fn(schedule), batches, config, eval_fn=eval_fn).fit(resume=resume)


def question_sentences(root: str | Path | None = None, max_chars: int = 30) -> list[str]:
    """Distinct short Chinese questions: KgCLUE train questions and AFQMC train sentences, in file order.

    Args:
        root: the data root (None: ``KEXUE_DATA`` or ``../shared/data``).
        max_chars: longer sentences are left out (they would not fit ``max_length`` = 32 tokens).
    """
    from kexue.data import read_afqmc, read_kgclue

    seen: dict[str, None] = {}
    for example in read_kgclue("train", root):
        seen.setdefault(example.question.strip(), None)
    for pair in read_afqmc("train", root):
        seen.setdefault(pair.sentence1.strip(), None)
        seen.setdefault(pair.sentence2.strip(), None)
    return [s for s in seen if 0 < len(s) <= max_chars]
