"""Pretraining objectives over :class:`kexue.models.Transformer` as ``loss_fn(model, batch)``.

    MLM:    L = CE(mlm_logits, labels) over the masked positions only (the head runs on them only)
            + CE(nsp_logits, nsp_labels) when the batch has NSP labels (0 = IsNext)
    UniLM:  L = CE over target positions under ``padding_mask & unilm_mask(token_type_ids)``, where
            position p predicts token p + 1 (the MLM head doubles as the LM head, as in UniLM)

Batches come from :class:`kexue.pretrain.data.PretrainBatches`. Losses are computed in float32
even under bf16 autocast (logits are upcast), so the reported numbers do not depend on the dtype.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from kexue.models import masks

__all__ = ["pretraining_loss", "evaluate_pretraining"]


def _forward(model: nn.Module, batch: dict):
    attention = batch["attention_mask"]
    if batch["task"] == "unilm":
        attention = masks.padding_mask(attention) & masks.unilm_mask(batch["token_type_ids"])
    return model(batch["input_ids"], token_type_ids=batch["token_type_ids"], attention_mask=attention,
                 mlm_positions=batch["mlm_positions"])


def _counts(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Summed losses and correct counts of one batch (sums, so that eval can pool batches)."""
    out = _forward(model, batch)
    labels = batch["mlm_labels"][batch["mlm_positions"]]
    logits = out.mlm_logits.float()
    task = batch["task"]
    counts = {f"{task}_loss_sum": F.cross_entropy(logits, labels, reduction="sum"),
              f"{task}_correct": (logits.argmax(-1) == labels).sum(), f"{task}_total": torch.tensor(labels.numel())}
    if "nsp_labels" in batch:
        nsp_logits = out.nsp_logits.float()
        counts |= {"nsp_loss_sum": F.cross_entropy(nsp_logits, batch["nsp_labels"], reduction="sum"),
                   "nsp_correct": (nsp_logits.argmax(-1) == batch["nsp_labels"]).sum(),
                   "nsp_total": torch.tensor(len(batch["nsp_labels"]))}
    return counts


def pretraining_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """The training step function for :class:`kexue.training.Trainer`.

    Returns ``(loss, metrics)`` with ``{task}_loss``, ``{task}_accuracy`` (task = mlm or unilm),
    ``nsp_loss``/``nsp_accuracy`` when the batch has NSP labels, and ``loss_count``: the predicted
    tokens the loss averages, so that the Trainer weights the batch's parts on several processes
    by it and the step is that of the whole batch's mean.
    """
    counts = _counts(model, batch)
    task = batch["task"]
    loss = counts[f"{task}_loss_sum"] / counts[f"{task}_total"]
    metrics = {f"{task}_loss": float(loss.detach()),
               f"{task}_accuracy": float(counts[f"{task}_correct"]) / int(counts[f"{task}_total"]),
               "loss_count": float(counts[f"{task}_total"])}
    if "nsp_total" in counts:
        nsp_loss = counts["nsp_loss_sum"] / counts["nsp_total"]
        loss = loss + nsp_loss
        metrics |= {"nsp_loss": float(nsp_loss.detach()),
                    "nsp_accuracy": float(counts["nsp_correct"]) / int(counts["nsp_total"])}
    return loss, metrics


@torch.no_grad()
def evaluate_pretraining(model: nn.Module, batches: Iterable[dict]) -> dict[str, float]:
    """Pooled loss and accuracy over fixed batches (build them once, with a fixed seed).

    Returns ``mlm_loss``, ``mlm_accuracy`` and, where present, ``nsp_*`` and ``unilm_*``: each
    loss is averaged over all predicted tokens (sequences for NSP) of all batches.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals: dict[str, float] = {}
    for batch in batches:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        for name, value in _counts(model, batch).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    model.train(was_training)
    result = {}
    for task in ("mlm", "nsp", "unilm"):
        if totals.get(f"{task}_total"):
            result[f"{task}_loss"] = totals[f"{task}_loss_sum"] / totals[f"{task}_total"]
            result[f"{task}_accuracy"] = totals[f"{task}_correct"] / totals[f"{task}_total"]
    return result
