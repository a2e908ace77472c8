"""Unsupervised SimCSE (Gao et al. 2021) on kexue's Transformer, trained by :mod:`kexue.training`.

Each sentence is encoded twice in one forward pass; dropout makes the two encodings differ, and
they form the positive pair. The other sentences of the batch are the negatives. The sentence
embedding is the mean of the last hidden states over real tokens. Evaluation: Spearman correlation
between the cosine of the two sentences' embeddings and the gold score of an STS set.

Used by the FlatNCE reproduction (``kexue reproduce flatnce``) to compare InfoNCE and FlatNCE at
small batch sizes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.contrastive import FlatNCELoss, InfoNCELoss
from kexue.contrastive.diagnostics import adam_eps_damping, batch_gradient_error
from kexue.models import Transformer
from kexue.training import Trainer, TrainingConfig

__all__ = ["SentenceEncoder", "SentenceBatches", "StsPairs", "tokenize", "sts_spearman", "SimcseRun",
           "train_simcse"]

LOSSES = {"info_nce": InfoNCELoss, "flat_nce": FlatNCELoss}


class SentenceEncoder(nn.Module):
    """A Transformer with mean pooling over real tokens: ``[B, L]`` ids -> ``[B, H]`` embeddings."""

    def __init__(self, transformer: Transformer) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.transformer(input_ids, attention_mask=attention_mask).hidden_states  # [B, L, H]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def tokenize(tokenizer, sentences: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids with [CLS]/[SEP], truncated to ``max_length``."""
    return tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]


def _pad(sequences: Sequence[list[int]]) -> dict[str, Tensor]:
    length = max(len(sequence) for sequence in sequences)
    input_ids = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}


class SentenceBatches:
    """Shuffled, padded batches of tokenized sentences; the order depends only on (seed, epoch).

    The last incomplete batch is dropped, so every step contrasts exactly ``batch_size`` sentences
    (the losses themselves accept any batch size).
    """

    def __init__(self, token_ids: list[list[int]], batch_size: int, seed: int) -> None:
        if len(token_ids) < batch_size:
            raise ValueError(f"{len(token_ids)} training sentences are fewer than `batch_size`={batch_size}")
        self.token_ids, self.batch_size, self.seed, self.epoch = token_ids, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.token_ids), generator=generator).tolist()
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            yield _pad([self.token_ids[index] for index in order[start: start + self.batch_size]])


@dataclass
class StsPairs:
    """Tokenized evaluation pairs with gold scores."""

    first: list[list[int]]
    second: list[list[int]]
    scores: list[float]


def _embed(encoder: SentenceEncoder, token_ids: list[list[int]], batch_size: int = 128) -> Tensor:
    device = next(encoder.parameters()).device  # the training loop may have moved the model
    parts = []
    for start in range(0, len(token_ids), batch_size):
        batch = _pad(token_ids[start: start + batch_size])
        parts.append(encoder(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu())
    return torch.cat(parts)


@torch.no_grad()
def sts_spearman(encoder: SentenceEncoder, pairs: StsPairs) -> float:
    """Spearman correlation between the pairs' cosine similarities and their gold scores."""
    from scipy.stats import spearmanr

    was_training = encoder.training
    encoder.eval()
    cosine = F.cosine_similarity(_embed(encoder, pairs.first), _embed(encoder, pairs.second)).tolist()
    encoder.train(was_training)
    return float(spearmanr(cosine, pairs.scores).statistic)


def _simcse_step(loss_module: nn.Module):
    def step(encoder: SentenceEncoder, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        doubled = {name: torch.cat([value, value]) for name, value in batch.items()}  # two dropout masks
        anchors, positives = encoder(doubled["input_ids"], doubled["attention_mask"]).chunk(2)
        out = loss_module(anchors, positives)
        # Whether this step is in the post's float-error regime (InfoNCE's float32 gradient w.r.t.
        # the scores > 10% off the exact one), whatever the loss trained with.
        error, log10_xi = batch_gradient_error(anchors.detach(), positives.detach(), loss_module.scale)
        return out.loss, {"info_nce": float(out.info_nce), "flat_nce": float(out.flat_nce),
                          "grad_error_over_10pct": float(error > 0.1), "log10_xi_median": log10_xi}

    return step


@dataclass
class SimcseRun:
    loss: str
    batch_size: int
    seed: int
    steps: int
    spearman: float
    seconds: float
    final_info_nce: float
    final_flat_nce: float
    curve: list[tuple[int, float]]  # (step, mean training InfoNCE since the previous entry)
    # Over the logged windows that end in the second half of training (``late_steps`` steps):
    share_steps_grad_error_over_10pct: float  # share of steps in the post's float-error regime
    log10_xi_median: float                    # mean of the batch's median log10 ξ
    late_steps: int
    adam_eps_damping: float                   # kexue.contrastive.adam_eps_damping at the end


def train_simcse(model_path: str | Path, loss: str, batch_size: int, steps: int, seed: int,
                 train_ids: list[list[int]], dev: StsPairs, learning_rate: float = 3e-5,
                 temperature: float = 0.05) -> SimcseRun:
    """Fine-tune a fresh copy of the checkpoint with SimCSE and return its dev Spearman.

    AdamW with eps 1e-8 (SimCSE's, and PyTorch's default; see the Adam-invariance part of the
    reproduction for why eps matters here), constant learning rate after 10% warm-up, no weight
    decay, gradient clipping off (clipping rescales the gradient and would hide the loss's scale).
    """
    torch.manual_seed(seed)
    encoder = SentenceEncoder(Transformer.from_pretrained(model_path))
    loss_module = LOSSES[loss](temperature=temperature)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=learning_rate, eps=1e-8, weight_decay=0.0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kexue-simcse-") as output_dir:
        config = TrainingConfig(output_dir=output_dir, max_steps=steps, learning_rate=learning_rate,
                                warmup_steps=steps // 10, decay="constant", weight_decay=0.0, adam_eps=1e-8,
                                grad_clip=None, log_every=max(1, steps // 10), seed=seed, progress=False,
                                keep_last=1)
        result = Trainer(encoder, _simcse_step(loss_module), SentenceBatches(train_ids, batch_size, seed), config,
                         optimizer=optimizer, eval_fn=lambda model: {"spearman": sts_spearman(model, dev)}).fit()
        records = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    train_records = [record for record in records if record["kind"] == "train"]
    curve = [(record["step"], record["info_nce"]) for record in train_records]
    late = [(record, record["step"] - previous) for previous, record in
            zip([0] + [r["step"] for r in train_records], train_records) if record["step"] > steps // 2]
    late_steps = sum(length for _, length in late)

    def late_mean(key: str) -> float:  # step-weighted mean over the late windows
        return sum(record[key] * length for record, length in late) / late_steps

    return SimcseRun(loss, batch_size, seed, steps, result.last_eval["spearman"], time.perf_counter() - started,
                     result.last_train.get("info_nce", float("nan")), result.last_train.get("flat_nce", float("nan")),
                     curve, late_mean("grad_error_over_10pct"), late_mean("log10_xi_median"), late_steps,
                     adam_eps_damping(optimizer))
