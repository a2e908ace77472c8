"""Sentence(-pair) classification fine-tuning for the reproductions: model, batches, training, accuracy.

A :class:`kexue.models.Transformer` loaded from a checkpoint, mean-pooled over real tokens, then
dropout and a linear layer. Batches are bucketed by length (padding is most of the cost on short
sentences: SST-2 train phrases average 13 tokens, a random batch of 32 pads to about 34). Training
goes through :class:`kexue.training.Trainer`; the optimizer is whatever factory the caller passes
(this is where ChildTuning plugs in).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from kexue.models import Transformer
from kexue.training import Trainer, TrainingConfig

__all__ = ["SentenceClassifier", "Examples", "LengthBucketedBatches", "tokenize_examples", "accuracy",
           "fine_tune", "FineTuneConfig", "classification_loss"]

OptimizerFactory = Callable[[list[dict]], torch.optim.Optimizer]


class SentenceClassifier(nn.Module):
    """``[B, L]`` token ids -> ``[B, num_labels]`` logits: mean pooling, dropout, linear."""

    def __init__(self, transformer: Transformer, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.transformer = transformer
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(transformer.config.hidden_size, num_labels)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.transformer(input_ids, token_type_ids=token_type_ids,
                                  attention_mask=attention_mask).hidden_states  # [B, L, H]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.classifier(self.dropout(pooled))


@dataclass(frozen=True)
class Examples:
    """Tokenized examples: token ids and token types (segment ids) per example, and labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[int]

    def subset(self, indices: Sequence[int]) -> Examples:
        return Examples([self.input_ids[i] for i in indices], [self.token_type_ids[i] for i in indices],
                        [self.labels[i] for i in indices])

    def __len__(self) -> int:
        return len(self.labels)


def tokenize_examples(tokenizer, texts: Sequence[tuple[str, ...]], labels: Sequence[int],
                      max_length: int) -> Examples:
    """One or two segments per example, ``[CLS] a [SEP] (b [SEP])``, truncated to ``max_length``."""
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if texts and len(texts[0]) == 2 else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
    return Examples(encoded["input_ids"], encoded["token_type_ids"], list(labels))


def _pad(examples: Examples, indices: Sequence[int]) -> dict[str, Tensor]:
    length = max(len(examples.input_ids[i]) for i in indices)
    input_ids = torch.zeros(len(indices), length, dtype=torch.long)
    token_type_ids = torch.zeros_like(input_ids)
    for row, index in enumerate(indices):
        ids = examples.input_ids[index]
        input_ids[row, :len(ids)] = torch.tensor(ids)
        token_type_ids[row, :len(ids)] = torch.tensor(examples.token_type_ids[index])
    return {"input_ids": input_ids, "token_type_ids": token_type_ids,
            "attention_mask": (input_ids != 0).long(),
            "labels": torch.tensor([examples.labels[i] for i in indices])}


class LengthBucketedBatches:
    """Shuffled batches of similar length; the order depends only on (seed, epoch).

    Each epoch shuffles, cuts the order into pools of ``pool_batches`` batches, sorts each pool by
    length, batches it, and shuffles the batches.
    """

    def __init__(self, examples: Examples, batch_size: int, seed: int, pool_batches: int = 20) -> None:
        self.examples, self.batch_size, self.seed, self.pool = examples, batch_size, seed, pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.examples), generator=generator).tolist()
        batches = []
        pool_size = self.pool * self.batch_size
        for start in range(0, len(order), pool_size):
            pool = sorted(order[start:start + pool_size], key=lambda i: len(self.examples.input_ids[i]))
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield _pad(self.examples, batches[index])


@torch.inference_mode()
def accuracy(model: SentenceClassifier, examples: Examples, batch_size: int = 128) -> float:
    """Accuracy on ``examples``, in eval mode, batches sorted by length."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples.input_ids[i]))
    correct = 0
    for start in range(0, len(order), batch_size):
        batch = _pad(examples, order[start:start + batch_size])
        logits = model(batch["input_ids"].to(device), batch["token_type_ids"].to(device),
                       batch["attention_mask"].to(device))
        correct += int((logits.argmax(-1).cpu() == batch["labels"]).sum())
    model.train(was_training)
    return correct / len(examples)


def classification_loss(model: SentenceClassifier, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
    return loss, {}


@dataclass(frozen=True)
class FineTuneConfig:
    """How one fine-tuning run trains (the defaults are BERT fine-tuning's usual ones)."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    mixed_precision: str = "bf16"  # autocast; the optimizer and its masks stay fp32


def fine_tune(model_path: str | Path, num_labels: int, train: Examples, seed: int, config: FineTuneConfig,
              make_optimizer: Callable[[SentenceClassifier, float], OptimizerFactory]) -> SentenceClassifier:
    """Fine-tune a fresh classifier from ``model_path``; returns it in train mode.

    ``make_optimizer(model, learning_rate)`` returns the Trainer's optimizer factory; it sees the
    model first so that it can compute Fisher masks or name parameters.
    """
    torch.manual_seed(seed)
    model = SentenceClassifier(Transformer.from_pretrained(model_path), num_labels)
    batches = LengthBucketedBatches(train, config.batch_size, seed)
    steps = config.epochs * len(batches)
    with tempfile.TemporaryDirectory(prefix="kexue-finetune-") as output_dir:
        training = TrainingConfig(output_dir=output_dir, max_steps=steps, learning_rate=config.learning_rate,
                                  warmup_steps=round(config.warmup_fraction * steps),
                                  weight_decay=config.weight_decay, adam_eps=1e-6, seed=seed,
                                  mixed_precision=config.mixed_precision, log_every=10 ** 9, progress=False)
        Trainer(model, classification_loss, batches, training,
                optimizer=make_optimizer(model, config.learning_rate)).fit()
    return model
