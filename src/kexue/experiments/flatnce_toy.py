"""A controlled contrastive task in which InfoNCE's loss really reaches float32's resolution.

Why it exists: the post's mechanism (kexue.fm/archives/8586) needs ``ξ = Σ_{i≠t} e^{s_i − s_t}``
below about 3e-7, where float32 rounding drowns InfoNCE's gradient (part 1 of the reproduction
measures that threshold). SimCSE on a small pretrained encoder reaches it only for part of its
steps, and a 2-core CPU cannot train a SimCLR-sized model for long; so the mechanism is isolated
here, on a task small enough to train to convergence many times over:

- latents ``z ~ N(0, I_16)``; inputs ``x = tanh(z W1) W2 + σ ε`` (fixed random ``W1``, ``W2``, 32
  input dimensions); two draws of the noise ``ε`` are a positive pair (the "augmentation");
- an MLP encoder ``32 → 128 → 128 → 32``, cosine scores at temperature 0.02, in-batch negatives;
- evaluation as STS: Spearman between the embeddings' cosine and the latents' cosine over pairs
  of held-out latents with graded similarity.

Three arms differ only in how the loss is computed: InfoNCE in float32 (the usual), InfoNCE with
the scores and the loss in float64, computed as ``softplus(log ξ)`` (the control: the same
objective without the rounding; the usual form would round in float64 too once ξ < 1e-15, which
this task reaches), and FlatNCE (post eq. 5) in float32. Everything else (data order, noise,
initialisation) is shared by seed, so differences are paired.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.contrastive import FlatNCELoss, InfoNCELoss, similarity_scores
from kexue.contrastive.diagnostics import adam_eps_damping, batch_gradient_error, info_nce_exact
from kexue.training import Trainer, TrainingConfig

__all__ = ["ARMS", "ToyTask", "ToyBatches", "make_task", "toy_encoder", "toy_spearman", "train_toy",
           "toy_embedding_batches"]

# The arms: InfoNCE as usually computed in float32; the control, InfoNCE computed exactly
# (softplus(log ξ) in float64, kexue.contrastive.diagnostics.info_nce_exact); FlatNCE (eq. 5) in float32.
ARMS = ("info_nce", "info_nce_fp64", "flat_nce")


@dataclass(frozen=True)
class ToyTask:
    """The synthetic STS analogue (fixed by ``task_seed``, the same for every training seed)."""

    latent_dim: int = 16
    input_dim: int = 32
    noise: float = 0.1           # σ of the augmentation noise (inputs have RMS ≈ 0.5)
    train_latents: int = 4096    # latents the encoder is trained on
    eval_pairs: int = 2000       # pairs for the tuning split and for the dev split, each
    # 0.02 (scale 50) rather than SimCSE's 0.05: at 0.05 this task's ξ stays near 1e-5 and the
    # float-error regime is rare; at 0.02 most anchors end far below ξ* ≈ 3e-7, which is the regime
    # the post describes (ξ is what matters, not how it got small).
    temperature: float = 0.02
    task_seed: int = 1234


@dataclass
class _TaskData:
    task: ToyTask
    w1: Tensor
    w2: Tensor
    train: Tensor                # [N, latent_dim]
    tune: tuple[Tensor, Tensor, Tensor]  # first views, second views, gold cosine (held-out latents)
    dev: tuple[Tensor, Tensor, Tensor]

    def views(self, latents: Tensor, generator: torch.Generator) -> Tensor:
        clean = torch.tanh(latents @ self.w1) @ self.w2
        return clean + self.task.noise * torch.randn(clean.shape, generator=generator)


def _pairs(data: _TaskData, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Latent pairs whose cosine spreads over [-1, 1]: ``z2 = ρ z1 + sqrt(1 − ρ²) δ``, ρ ~ U(−1, 1)."""
    first = torch.randn(count, data.task.latent_dim, generator=generator)
    rho = 2 * torch.rand(count, 1, generator=generator) - 1
    second = rho * first + (1 - rho ** 2).sqrt() * torch.randn(count, data.task.latent_dim, generator=generator)
    gold = F.cosine_similarity(first, second)
    return data.views(first, generator), data.views(second, generator), gold


def make_task(task: ToyTask = ToyTask()) -> _TaskData:
    generator = torch.Generator().manual_seed(task.task_seed)
    hidden = 4 * task.input_dim
    w1 = torch.randn(task.latent_dim, hidden, generator=generator) / math.sqrt(task.latent_dim)
    w2 = torch.randn(hidden, task.input_dim, generator=generator) / math.sqrt(hidden)
    train = torch.randn(task.train_latents, task.latent_dim, generator=generator)
    data = _TaskData(task, w1, w2, train, (), ())
    data.tune = _pairs(data, task.eval_pairs, generator)
    data.dev = _pairs(data, task.eval_pairs, generator)
    return data


class ToyBatches:
    """``batch_size`` training latents per step, each seen through two fresh noise draws.

    The order and the noise depend only on (seed, epoch); an epoch is one pass over the latents.
    """

    def __init__(self, data: _TaskData, batch_size: int, seed: int) -> None:
        self.data, self.batch_size, self.seed, self.epoch = data, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.data.train), generator=generator)
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            latents = self.data.train[order[start: start + self.batch_size]]
            yield self.data.views(latents, generator), self.data.views(latents, generator)


def toy_encoder(task: ToyTask, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(task.input_dim, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(),
                         nn.Linear(128, 32))


@torch.no_grad()
def toy_spearman(encoder: nn.Module, pairs: tuple[Tensor, Tensor, Tensor]) -> float:
    from scipy.stats import spearmanr

    first, second, gold = pairs
    return float(spearmanr(F.cosine_similarity(encoder(first), encoder(second)).numpy(), gold.numpy()).statistic)


def contrastive_step(arm: str, temperature: float):
    """The Trainer's loss function for an arm, logging the float32 diagnostics of every step.

    ``grad_error_over_10pct``: 1 when InfoNCE's float32 gradient w.r.t. this step's scores is more
    than 10% off its float64 value (the post's mechanism engaged), else 0; its window mean is the
    share of such steps. ``log10_xi_median``: the median anchor's ξ.
    """
    if arm not in ARMS:
        raise ValueError(f"`arm` must be one of {ARMS}, got {arm!r}")
    loss_module = (FlatNCELoss if arm == "flat_nce" else InfoNCELoss)(temperature=temperature)

    def step(encoder: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        anchors, positives = encoder(batch[0]), encoder(batch[1])
        if arm == "info_nce_fp64":
            scores = similarity_scores(anchors.double(), positives.double(), "cosine", loss_module.scale)
            loss = info_nce_exact(scores, torch.arange(len(scores)))
            info = float(loss.detach())
        else:
            out = loss_module(anchors, positives)
            loss, info = out.loss, float(out.info_nce)
        error, log10_xi = batch_gradient_error(anchors.detach(), positives.detach(), loss_module.scale)
        return loss, {"info_nce": info, "grad_error_over_10pct": float(error > 0.1), "log10_xi_median": log10_xi}

    return step


def train_toy(data: _TaskData, arm: str, batch_size: int, steps: int, learning_rate: float, seed: int,
              evaluate_on: str = "dev") -> tuple[dict[str, Any], nn.Module]:
    """Train one encoder (AdamW, eps 1e-8, 10% warm-up then constant rate, no clipping).

    Returns:
        ``(row, encoder)``: the row holds the Spearman on the ``"tune"`` or ``"dev"`` pairs and the
        diagnostics of the second half of training (share of steps in the float-error regime,
        median log10 ξ, Adam's eps damping at the end).
    """
    encoder = toy_encoder(data.task, seed)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=learning_rate, eps=1e-8, weight_decay=0.0)
    with tempfile.TemporaryDirectory(prefix="kexue-toy-") as output_dir:
        # log_every = steps / 2: the last logged window (last_train) is the second half of training
        config = TrainingConfig(output_dir=output_dir, max_steps=steps, learning_rate=learning_rate,
                                warmup_steps=steps // 10, decay="constant", weight_decay=0.0, adam_eps=1e-8,
                                grad_clip=None, log_every=max(1, steps // 2), seed=seed, progress=False,
                                keep_last=1)
        result = Trainer(encoder, contrastive_step(arm, data.task.temperature), ToyBatches(data, batch_size, seed),
                         config, optimizer=optimizer).fit()
    row = {"arm": arm, "seed": seed, "learning_rate": learning_rate, "steps": steps,
           "spearman": toy_spearman(encoder, getattr(data, evaluate_on)), "evaluated_on": evaluate_on,
           "final_info_nce": result.last_train["info_nce"],
           "share_steps_grad_error_over_10pct": result.last_train["grad_error_over_10pct"],
           "log10_xi_median": result.last_train["log10_xi_median"], "adam_eps_damping": adam_eps_damping(optimizer)}
    return row, encoder


@torch.no_grad()
def toy_embedding_batches(data: _TaskData, encoder: nn.Module, batch_size: int, count: int,
                          seed: int) -> list[tuple[Tensor, Tensor]]:
    """``count`` training batches embedded by ``encoder``: ``(anchors, positives)``, each ``[B, 32]``."""
    batches = iter(ToyBatches(data, batch_size, seed))
    return [tuple(encoder(views) for views in next(batches)) for _ in range(count)]
