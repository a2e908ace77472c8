"""One training loop for pretraining and every fine-tuning in kexue.

The loop is generic: a *step function* ``loss_fn(model, batch) -> (loss, metrics)`` says what a
batch means, so nothing here knows about MLM, NSP or classification. It runs on ``accelerate``
(one CPU, or several devices under ``accelerate launch``), with AdamW + warm-up/decay by default,
gradient clipping, optional bf16 autocast, tqdm progress, a JSONL metrics log, periodic
evaluation, atomic checkpoints (see :mod:`kexue.training.checkpoint`) and exact resume.

Weight decay follows nanoGPT's rule: every parameter with ``dim >= 2`` (matmul weights and
embedding tables, as in the original BERT) decays; biases and norm gains (``dim < 2``) never do.

Exact resume: a checkpoint stores the step, optimizer and scheduler states, the RNG states and the
data position ``(epoch, batch index)``. On resume the loop calls ``train_data.set_position(epoch,
index)`` when the data offers it (cheap, e.g. :class:`kexue.pretrain.data.PretrainBatches`),
otherwise ``set_epoch(epoch)`` when offered and then skips ``index`` batches. With a data order
that depends only on ``(seed, epoch)`` a resumed run reproduces the uninterrupted one bit for bit.

bf16 autocast (``mixed_precision="bf16"``; weights, optimizer state and the loss stay fp32) is
off by default because its speed depends on the CPU. Measured here (1 thread, train step with
AdamW, MLM head on masked positions only): on a CPU with AVX512-BF16 the L4/H256 model took
0.92 s in bf16 vs 1.55 s in fp32 (batch 64 x 64) and L2/H128 0.125 s vs 0.19 s; on AVX2-only CPUs
bf16 has no hardware support and is not expected to help. Measure before turning it on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (capture_rng_state, latest_checkpoint, list_checkpoints, load_model_state,
                         load_training_state, restore_rng_state, save_checkpoint)
from .schedule import DECAY_KINDS, warmup_decay_schedule

__all__ = ["TrainingConfig", "Trainer", "TrainResult", "param_groups", "LossFn", "EvalFn"]

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[nn.Module], "dict[str, float]"]
OptimizerFactory = Callable[[list[dict]], torch.optim.Optimizer]


@dataclass
class TrainingConfig:
    output_dir: str                      # checkpoints/ and metrics.jsonl go here
    max_steps: int = 1000                # optimizer updates; also the length of the lr schedule
    max_minutes: float | None = None     # stop (and checkpoint) once this much wall-clock time passed
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    decay: str = "linear"                # "linear" | "cosine" | "constant", to 0 at max_steps
    weight_decay: float = 0.01           # only on tensors with dim >= 2 (see module docstring)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-6
    grad_clip: float | None = 1.0        # max global grad norm; None disables clipping
    mixed_precision: str = "no"          # "no" | "bf16" (autocast; see module docstring)
    log_every: int = 10
    eval_every: int | None = None        # steps between eval_fn calls; an eval also runs at the end
    save_every: int | None = None        # steps between checkpoints; one is always saved at the end
    keep_last: int | None = 2            # newest checkpoints kept; None keeps all
    seed: int = 0
    progress: bool | None = None         # tqdm bar; None = only when stderr is a TTY

    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, "max_steps", self.max_steps, ">= 1")
        _check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", self.max_minutes, "> 0")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        _check(0 <= self.warmup_steps <= self.max_steps, "warmup_steps", self.warmup_steps,
               f"in [0, max_steps={self.max_steps}]")
        _check(self.decay in DECAY_KINDS, "decay", self.decay, f"one of {DECAY_KINDS}")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _check(self.grad_clip is None or self.grad_clip > 0, "grad_clip", self.grad_clip, "> 0 or None")
        _check(self.mixed_precision in ("no", "bf16"), "mixed_precision", self.mixed_precision, "'no' or 'bf16'")
        for name in ("log_every", "eval_every", "save_every", "keep_last"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, value, ">= 1")


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")


@dataclass
class TrainResult:
    step: int                             # optimizer updates done in total (including before resume)
    stopped_by: str                       # "max_steps" | "max_minutes"
    checkpoint: Path                      # the checkpoint written at the end
    last_train: dict[str, float]          # last logged training metrics
    last_eval: dict[str, float]           # last evaluation, {} without eval_fn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: tensors with ``dim >= 2`` decay, biases and norm gains do not."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() skips tied duplicates
    decayed = [p for p in params if p.dim() >= 2]
    kept = [p for p in params if p.dim() < 2]
    logger.info("weight decay on %d tensors (%d values), none on %d tensors (%d values)",
                len(decayed), sum(p.numel() for p in decayed), len(kept), sum(p.numel() for p in kept))
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]


def _accelerator(mixed_precision: str):
    """An ``Accelerator`` with this run's precision, whatever an earlier run in the process used.

    accelerate keeps one process-wide ``AcceleratorState`` and refuses a new ``Accelerator`` whose
    ``mixed_precision`` differs from the first one's. One process often trains several times with
    different settings: ``kexue reproduce all`` runs a bf16 fine-tuning and then an fp32 pretraining.
    So the precision part of that state is reset first. The distributed part, ``PartialState``
    (process group, rank, device), is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    previous = AcceleratorState._shared_state.get("_mixed_precision")
    if previous is not None and previous != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision)


class Trainer:
    """Trains ``model`` on ``train_data`` with ``loss_fn`` until ``config.max_steps`` or the time limit.

    Args:
        model: any ``nn.Module``.
        loss_fn: ``loss_fn(model, batch) -> (scalar loss, {name: float})``; called in train mode
            under autocast when bf16 is on.
        train_data: an iterable of batches (re-iterated each epoch). Batches may be tensors or
            nested dicts/lists of tensors; they are moved to the device. Optional methods
            ``set_position(epoch, index)`` or ``set_epoch(epoch)`` make resume exact and cheap.
            Under several processes each process must see its own shard.
        config: a :class:`TrainingConfig`.
        optimizer: ``None`` (AdamW over :func:`param_groups`), an optimizer factory taking the
            parameter groups, or a ready ``torch.optim.Optimizer``.
        eval_fn: ``eval_fn(model) -> {name: float}``, called in eval mode under ``no_grad``.

    Example:
        >>> import tempfile, torch
        >>> model = torch.nn.Linear(2, 1)
        >>> data = [(torch.randn(8, 2), torch.randn(8, 1)) for _ in range(4)]
        >>> def loss_fn(model, batch):
        ...     x, y = batch
        ...     loss = torch.nn.functional.mse_loss(model(x), y)
        ...     return loss, {}
        >>> config = TrainingConfig(output_dir=tempfile.mkdtemp(), max_steps=6, learning_rate=1e-2)
        >>> Trainer(model, loss_fn, data, config).fit().step
        6
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, train_data: Iterable, config: TrainingConfig,
                 optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
                 eval_fn: EvalFn | None = None) -> None:
        self.model, self.loss_fn, self.train_data = model, loss_fn, train_data
        self.config, self.optimizer_arg, self.eval_fn = config, optimizer, eval_fn
        self.output_dir = Path(config.output_dir)
        self.metrics_log = self.output_dir / "metrics.jsonl"

    # ----------------------------------------------------------------- set-up
    def _build_optimizer(self) -> torch.optim.Optimizer:
        if isinstance(self.optimizer_arg, torch.optim.Optimizer):
            return self.optimizer_arg
        groups = param_groups(self.model, self.config.weight_decay)
        if self.optimizer_arg is not None:
            return self.optimizer_arg(groups)
        return torch.optim.AdamW(groups, lr=self.config.learning_rate, betas=self.config.adam_betas,
                                 eps=self.config.adam_eps)

    def _restore(self, model: nn.Module, optimizer, scheduler) -> tuple[int, int, int]:
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            logger.info("resume: no checkpoint in %s, starting from step 0", self.output_dir)
            return 0, 0, 0
        state = load_training_state(checkpoint)
        model.load_state_dict(load_model_state(checkpoint))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        self._truncate_log(state["step"])
        logger.info("resumed from %s (step %d, epoch %d, batch %d)", checkpoint, state["step"],
                    state["epoch"], state["batch_index"])
        return state["step"], state["epoch"], state["batch_index"]

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint, so the history has no duplicated steps."""
        if self.metrics_log.exists():
            lines = self.metrics_log.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if line and json.loads(line)["step"] <= step]
            self.metrics_log.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _batches(self, epoch: int, index: int) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(epoch, batch index, batch)`` forever, starting at the given position."""
        data = self.train_data
        while True:
            if hasattr(data, "set_position"):
                data.set_position(epoch, index)
                iterator = iter(data)
            else:
                if hasattr(data, "set_epoch"):
                    data.set_epoch(epoch)
                iterator = iter(data)
                for _ in range(index):
                    next(iterator, None)
            for batch in iterator:
                yield epoch, index, batch
                index += 1
            if index == 0:
                raise ValueError("`train_data` yielded no batches")
            epoch, index = epoch + 1, 0

    # ----------------------------------------------------------------- the loop
    def fit(self, resume: bool = False) -> TrainResult:
        """Train; with ``resume=True`` continue from the latest complete checkpoint in ``output_dir``."""
        from accelerate.utils import send_to_device, set_seed

        config = self.config
        if not resume and list_checkpoints(self.output_dir):
            raise ValueError(f"{self.output_dir} already holds checkpoints: resume from them (resume=True, "
                             "--resume) or choose another output directory")
        accelerator = _accelerator(config.mixed_precision)
        set_seed(config.seed)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        optimizer = self._build_optimizer()
        scheduler = warmup_decay_schedule(optimizer, config.warmup_steps, config.max_steps, config.decay)
        model, optimizer = accelerator.prepare(self.model, optimizer)
        step, epoch, index = (self._restore(accelerator.unwrap_model(model), optimizer, scheduler)
                              if resume else (0, 0, 0))
        if not resume:
            self._truncate_log(-1)
        progress = sys.stderr.isatty() if config.progress is None else config.progress
        bar = tqdm(total=config.max_steps, initial=step, disable=not (progress and accelerator.is_main_process))
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)  # a metric may be missing from some steps
        count, last_train, last_eval = 0, {}, {}
        start = window_start = time.monotonic()
        stopped_by, checkpoint = "max_steps", None
        batches = self._batches(epoch, index)
        model.train()
        while step < config.max_steps:
            epoch, index, batch = next(batches)
            batch = send_to_device(batch, accelerator.device)
            with accelerator.autocast():
                loss, metrics = self.loss_fn(model, batch)
            accelerator.backward(loss)
            if config.grad_clip is not None:
                grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), config.grad_clip))
                sums["grad_norm"] += grad_norm
                counts["grad_norm"] += 1
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, index = step + 1, index + 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {step}")
            for name, value in {"loss": loss_value, **metrics}.items():
                sums[name] += float(value)
                counts[name] += 1
            count += 1
            bar.update(1)
            timed_out = config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes
            if timed_out:
                stopped_by = "max_minutes"
            done = step == config.max_steps or timed_out
            if step % config.log_every == 0 or done:
                now = time.monotonic()
                last_train = {name: value / counts[name] for name, value in sums.items()}
                last_train |= {"lr": scheduler.get_last_lr()[0], "steps_per_sec": count / (now - window_start),
                               "elapsed_sec": now - start}
                self._log(accelerator, {"step": step, "kind": "train", **last_train})
                bar.set_postfix(loss=f"{last_train['loss']:.4f}")
                sums, counts, count, window_start = defaultdict(float), defaultdict(int), 0, now
            if self.eval_fn is not None and ((config.eval_every and step % config.eval_every == 0) or done):
                last_eval = self._evaluate(accelerator, model, step)
            if (config.save_every and step % config.save_every == 0) or done:
                checkpoint = self._save(accelerator, model, optimizer, scheduler, step, epoch, index)
            if timed_out:
                logger.info("stopping at step %d: max_minutes=%s reached", step, config.max_minutes)
                break
        if checkpoint is None:  # resumed at max_steps: nothing left to train
            checkpoint = latest_checkpoint(self.output_dir)
        bar.close()
        return TrainResult(step, stopped_by, checkpoint, last_train, last_eval)

    def _evaluate(self, accelerator, model: nn.Module, step: int) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            result = {name: float(value) for name, value in self.eval_fn(accelerator.unwrap_model(model)).items()}
        model.train()
        self._log(accelerator, {"step": step, "kind": "eval", **result})
        return result

    def _log(self, accelerator, record: dict[str, Any]) -> None:
        if not accelerator.is_main_process:
            return
        logger.info("step %d %s: %s", record["step"], record["kind"], ", ".join(
            f"{k}={v:.4g}" for k, v in record.items() if k not in ("step", "kind")))
        with self.metrics_log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _save(self, accelerator, model, optimizer, scheduler, step: int, epoch: int, index: int) -> Path:
        accelerator.wait_for_everyone()
        path = self.output_dir / "checkpoints" / f"step-{step:08d}"
        if accelerator.is_main_process:
            state = {"step": step, "epoch": epoch, "batch_index": index, "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": capture_rng_state()}
            path = save_checkpoint(self.output_dir, step, accelerator.unwrap_model(model).state_dict(), state,
                                   dataclasses.asdict(self.config), self.metrics_log, self.config.keep_last)
            logger.info("saved checkpoint %s", path)
        accelerator.wait_for_everyone()
        return path
