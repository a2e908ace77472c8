"""One training loop for pretraining and every fine-tuning in kexue.

The loop is generic: a *step function* ``loss_fn(model, batch) -> (loss, metrics)`` says what a
batch means, so nothing here knows about MLM, NSP or classification. It runs on ``accelerate``:
one CPU, or several processes (CPU with gloo, GPUs with nccl) started by ``torchrun`` or
``accelerate launch``, with AdamW and a ``transformers`` warm-up/decay schedule by default,
gradient clipping, optional bf16 autocast, tqdm progress, a JSONL metrics log, periodic
evaluation, atomic checkpoints (:mod:`kexue.training.checkpoint`) and exact resume.

Several processes (:mod:`kexue.training.distributed`): every batch the data yields is the global
batch; each process trains on its own rows of it, the gradient is that of the global mean, and
the logged loss and metrics are the global means (weighted like the loss). So the same command
gives the same parameters on 1 or N processes, up to float rounding, provided the model draws no
random numbers in training (dropout masks are drawn per process). Only the main process writes
the log and the checkpoints.

Weight decay follows nanoGPT's rule: every parameter with ``dim >= 2`` (matmul weights and
embedding tables, as in the original BERT) decays; biases and norm gains (``dim < 2``) never do.

Exact resume: accelerate's ``save_state``/``load_state`` store and restore the model, optimizer,
schedule and every process's RNG states; the loop adds the data position ``(epoch, batch
index)``. On resume the loop calls ``train_data.set_position(epoch, index)`` when the data offers
it (cheap, e.g. :class:`kexue.pretrain.data.PretrainBatches`), otherwise ``set_epoch(epoch)``
when offered and then skips ``index`` batches. With a data order that depends only on ``(seed,
epoch)`` a resumed run reproduces the uninterrupted one bit for bit. A resume with changed
settings is refused unless overridden (:mod:`kexue.training.resume`). SIGINT and SIGTERM finish
the current step, save a checkpoint and exit (:class:`TrainingInterrupted`).

bf16 autocast (``mixed_precision="bf16"``; weights, optimizer state and the loss stay fp32) is
off by default because its speed depends on the CPU. Measured here (1 thread, train step with
AdamW, MLM head on masked positions only): on a CPU with AVX512-BF16 the L4/H256 model took
0.92 s in bf16 vs 1.55 s in fp32 (batch 64 x 64) and L2/H128 0.125 s vs 0.19 s; on AVX2-only CPUs
bf16 has no hardware support and is not expected to help. Measure before turning it on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (latest_checkpoint, list_checkpoints, load_model_state, load_trainer_state, publish_checkpoint,
                         read_config, remove_stale_tmp, tmp_checkpoint_dir)
from .distributed import LossModule, batch_parts, batch_rows, make_accelerator
from .interrupt import SignalFlag, TrainingInterrupted
from .resume import check_resume

__all__ = ["TrainingConfig", "Trainer", "TrainResult", "TrainingInterrupted", "param_groups", "LossFn", "EvalFn"]

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[nn.Module], "dict[str, float]"]
OptimizerFactory = Callable[[list[dict]], torch.optim.Optimizer]

# Our decay names -> transformers.get_scheduler names (linear warm-up from 0, then decay to 0 at max_steps).
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
LOSS_COUNT = "loss_count"  # metric a loss_fn may return: the number of terms its loss averages


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
    gradient_accumulation_steps: int = 1  # micro-batches per process and update; the batch stays global
    log_every: int = 10
    eval_every: int | None = None        # steps between eval_fn calls; an eval also runs at the end
    save_every: int | None = None        # steps between checkpoints; one is always saved at the end
    keep_last: int | None = 2            # newest checkpoints kept; None keeps all
    seed: int = 0
    progress: bool | None = None         # tqdm bar; None = only when stderr is a TTY
    settings: dict[str, Any] = field(default_factory=dict)  # the caller's data/objective settings, checked on resume
    resume_overrides: tuple[str, ...] = ()  # fields (or "settings.<key>") allowed to differ from the checkpoint

    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, "max_steps", self.max_steps, ">= 1")
        _check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", self.max_minutes, "> 0")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        _check(0 <= self.warmup_steps <= self.max_steps, "warmup_steps", self.warmup_steps,
               f"in [0, max_steps={self.max_steps}]")
        _check(self.decay in SCHEDULES, "decay", self.decay, f"one of {tuple(SCHEDULES)}")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _check(self.grad_clip is None or self.grad_clip > 0, "grad_clip", self.grad_clip, "> 0 or None")
        _check(self.mixed_precision in ("no", "bf16"), "mixed_precision", self.mixed_precision, "'no' or 'bf16'")
        for name in ("gradient_accumulation_steps", "log_every", "eval_every", "save_every", "keep_last"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, value, ">= 1")
        self.resume_overrides = tuple(self.resume_overrides)


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


class Trainer:
    """Trains ``model`` on ``train_data`` with ``loss_fn`` until ``config.max_steps`` or the time limit.

    Args:
        model: any ``nn.Module``.
        loss_fn: ``loss_fn(model, batch) -> (scalar loss, {name: float})``; called in train mode
            under autocast when bf16 is on. The loss is a mean over the rows of the batch, or over
            ``metrics["loss_count"]`` terms when given (e.g. masked tokens); metrics are averaged
            with the same weights.
        train_data: an iterable of *global* batches (re-iterated each epoch), identical on every
            process. Batches may be tensors or nested dicts/lists of tensors with the batch as
            first dimension; each process takes its rows and moves them to its device. Optional
            methods ``set_position(epoch, index)`` or ``set_epoch(epoch)`` make resume exact and cheap.
        config: a :class:`TrainingConfig`.
        optimizer: ``None`` (AdamW over :func:`param_groups`), an optimizer factory taking the
            parameter groups, or a ready ``torch.optim.Optimizer``.
        eval_fn: ``eval_fn(model) -> {name: float}``, called in eval mode under ``no_grad`` on every
            process (they hold the same parameters); the main process logs it.

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
        self.resume_history: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- set-up
    def _build_optimizer(self) -> torch.optim.Optimizer:
        if isinstance(self.optimizer_arg, torch.optim.Optimizer):
            return self.optimizer_arg
        groups = param_groups(self.model, self.config.weight_decay)
        if self.optimizer_arg is not None:
            return self.optimizer_arg(groups)
        return torch.optim.AdamW(groups, lr=self.config.learning_rate, betas=self.config.adam_betas,
                                 eps=self.config.adam_eps)

    def _config_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config) | {"resume_history": self.resume_history}

    def _restore(self, accelerator, optimizer, scheduler) -> tuple[int, int, int]:
        """Load the latest checkpoint (refusing changed settings); returns ``(step, epoch, batch index)``."""
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            logger.info("resume: no checkpoint in %s, starting from step 0", self.output_dir)
            return 0, 0, 0
        state, saved = load_trainer_state(checkpoint), read_config(checkpoint)
        applied = check_resume(saved, dataclasses.asdict(self.config), frozenset(self.config.resume_overrides), state["step"],
                               str(checkpoint))
        self.resume_history = saved.get("resume_history", []) + applied
        fresh = [group["initial_lr"] for group in optimizer.param_groups]  # this run's schedule base
        try:
            accelerator.load_state(str(checkpoint))
        except RuntimeError as error:  # size mismatches of load_state_dict
            raise ValueError(f"{checkpoint} holds a different model than the one given (another model config?): "
                             f"{str(error).splitlines()[0]} ...") from None
        if applied:
            self._apply_overrides(optimizer, scheduler, fresh)
            logger.warning("resume with overridden settings: %s", ", ".join(
                f"{entry['field']} {entry['from']!r} -> {entry['to']!r}" for entry in applied))
        if accelerator.is_main_process:
            self._truncate_log(state["step"])
        logger.info("resumed from %s (step %d, epoch %d, batch %d)", checkpoint, state["step"],
                    state["epoch"], state["batch_index"])
        return state["step"], state["epoch"], state["batch_index"]

    def _apply_overrides(self, optimizer, scheduler, base_lrs: list[float]) -> None:
        """Make the loaded optimizer and schedule follow this run's config (the schedule's shape is
        already this run's: transformers' lambdas are not restored from the checkpoint)."""
        config = self.config
        scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper
        scheduler.base_lrs = list(base_lrs)
        for index, (group, base, factor) in enumerate(zip(optimizer.param_groups, base_lrs, scheduler.lr_lambdas)):
            group["initial_lr"], group["lr"] = base, base * factor(scheduler.last_epoch)
            if self.optimizer_arg is None:  # our AdamW over param_groups: decayed group first
                group["betas"], group["eps"] = tuple(config.adam_betas), config.adam_eps
                group["weight_decay"] = config.weight_decay if index == 0 else 0.0
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint, so the history has no duplicated steps."""
        if self.metrics_log.exists():
            lines = self.metrics_log.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if line and json.loads(line)["step"] <= step]
            self.metrics_log.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _batches(self, epoch: int, index: int) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(epoch, batch index, batch)`` forever, starting at the given position."""
        import itertools

        data = self.train_data
        while True:
            if hasattr(data, "set_position"):
                data.set_position(epoch, index)
                iterator = iter(data)
            else:
                if hasattr(data, "set_epoch"):
                    data.set_epoch(epoch)
                iterator = itertools.islice(data, index, None)
            for batch in iterator:
                yield epoch, index, batch
                index += 1
            if index == 0:
                raise ValueError("`train_data` yielded no batches")
            epoch, index = epoch + 1, 0

    # ----------------------------------------------------------------- the loop
    def fit(self, resume: bool = False) -> TrainResult:
        """Train; with ``resume=True`` continue from the latest complete checkpoint in ``output_dir``.

        Raises:
            TrainingInterrupted: SIGINT or SIGTERM arrived; a checkpoint of the last step was saved.
            ValueError: checkpoints exist and ``resume`` is False, or the resume changes settings.
        """
        from accelerate.utils import set_seed
        from transformers import get_scheduler

        config = self.config
        if not resume and list_checkpoints(self.output_dir):
            raise ValueError(f"{self.output_dir} already holds checkpoints: resume from them (resume=True, "
                             "--resume) or choose another output directory")
        accelerator = make_accelerator(config.mixed_precision)
        set_seed(config.seed, device_specific=True)  # seed + rank: processes draw different dropout masks
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(self.output_dir)
            if not resume:
                self._truncate_log(-1)
        optimizer = self._build_optimizer()
        scheduler = get_scheduler(SCHEDULES[config.decay], optimizer, num_warmup_steps=config.warmup_steps,
                                  num_training_steps=config.max_steps)
        model, optimizer, scheduler = accelerator.prepare(LossModule(self.model, self.loss_fn), optimizer, scheduler)
        self._register_unwrapped_checkpointing(accelerator)
        accelerator.wait_for_everyone()
        step, epoch, index = self._restore(accelerator, optimizer, scheduler) if resume else (0, 0, 0)
        progress = sys.stderr.isatty() if config.progress is None else config.progress
        bar = tqdm(total=config.max_steps, initial=step, disable=not (progress and accelerator.is_main_process))
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)  # a metric may be missing from some steps
        count, last_train, last_eval = 0, {}, {}
        start = window_start = time.monotonic()
        stopped_by, checkpoint = "max_steps", None
        batches = self._batches(epoch, index)
        model.train()
        with SignalFlag() as interrupt:
            while step < config.max_steps:
                epoch, index, batch = next(batches)
                metrics, stop_signal = self._step(accelerator, model, batch, interrupt)
                if config.grad_clip is not None:
                    metrics["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(), config.grad_clip))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step, index = step + 1, index + 1
                if not math.isfinite(metrics["loss"]):
                    raise FloatingPointError(f"loss is {metrics['loss']} at step {step}")
                for name, value in metrics.items():
                    sums[name] += value
                    counts[name] += 1
                count += 1
                bar.update(1)
                timed_out = config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes
                stopped_by = "max_minutes" if timed_out else stopped_by
                done = step == config.max_steps or timed_out
                if step % config.log_every == 0 or done or stop_signal:
                    now = time.monotonic()
                    last_train = {name: value / counts[name] for name, value in sums.items()}
                    last_train |= {"lr": scheduler.get_last_lr()[0], "steps_per_sec": count / (now - window_start),
                                   "elapsed_sec": now - start}
                    self._log(accelerator, {"step": step, "kind": "train", **last_train})
                    bar.set_postfix(loss=f"{last_train['loss']:.4f}")
                    sums, counts, count, window_start = defaultdict(float), defaultdict(int), 0, now
                if self.eval_fn is not None and ((config.eval_every and step % config.eval_every == 0) or done):
                    last_eval = self._evaluate(accelerator, model, step)
                if (config.save_every and step % config.save_every == 0) or done or stop_signal:
                    checkpoint = self._save(accelerator, step, epoch, index)
                if stop_signal and not done:
                    bar.close()
                    logger.warning("stopped by %s at step %d; continue with resume (--resume) from %s",
                                   signal.Signals(stop_signal).name, step, checkpoint)
                    raise TrainingInterrupted(stop_signal, step, checkpoint)
                if timed_out:
                    logger.info("stopping at step %d: max_minutes=%s reached", step, config.max_minutes)
                    break
        if checkpoint is None:  # resumed at max_steps: nothing left to train
            checkpoint = latest_checkpoint(self.output_dir)
        bar.close()
        return TrainResult(step, stopped_by, checkpoint, last_train, last_eval)

    def _step(self, accelerator, model: nn.Module, batch: Any, interrupt: SignalFlag) -> tuple[dict[str, float], int]:
        """Forward and backward this process's parts of the global ``batch``, leaving in ``.grad`` the
        gradient of the global mean loss. Returns the global mean metrics and the signal that any
        process received (0: none), so that all processes stop at the same step."""
        from accelerate.utils import send_to_device

        parts = batch_parts(batch, accelerator.process_index, accelerator.num_processes,
                            self.config.gradient_accumulation_steps)
        weighted: dict[str, float] = defaultdict(float)
        for position, (part, empty) in enumerate(parts):
            part = send_to_device(part, accelerator.device)
            last = position == len(parts) - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                with accelerator.autocast():
                    loss, metrics = model(part)
                metrics = dict(metrics)
                weight = 0.0 if empty else float(metrics.pop(LOSS_COUNT, batch_rows(part)))
                accelerator.backward(loss * weight)  # a sum over the part's terms
            for name, value in {"loss": float(loss.detach()), **metrics}.items():
                weighted[name] += weight * float(value)
            weighted[LOSS_COUNT] += weight
        names = sorted(weighted)  # the same on every process: the batch and its task are shared
        signum = interrupt.signum  # read after the step's work: a signal during it stops after it
        totals = torch.tensor([weighted[name] for name in names] + [float(signum)], dtype=torch.float64,
                              device=accelerator.device)
        totals = accelerator.reduce(totals, reduction="sum").tolist()
        reduced = dict(zip(names, totals))
        total = reduced.pop(LOSS_COUNT)
        if total <= 0:
            raise ValueError(f"a training batch had nothing to learn from (`{LOSS_COUNT}` summed to {total})")
        # DDP averaged the gradients over the processes; make them the gradient of the global mean.
        factor = accelerator.num_processes / total
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(factor)
        stop = signum or (signal.SIGTERM if totals[-1] > 0 else 0)  # another process got the signal
        return {name: value / total for name, value in reduced.items()}, stop

    def _evaluate(self, accelerator, model: nn.Module, step: int) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            result = {name: float(value) for name, value in self.eval_fn(self.model).items()}
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

    @staticmethod
    def _register_unwrapped_checkpointing(accelerator) -> None:
        """Save and load the user's model's own state, so a checkpoint does not depend on the number
        of processes (DDP would prefix every key with ``module.``, :class:`LossModule` with ``model.``)."""
        def save_hook(models, weights, output_dir):
            weights[:] = [accelerator.unwrap_model(model).model.state_dict() for model in models]

        def load_hook(models, input_dir):
            for model in models:
                accelerator.unwrap_model(model).model.load_state_dict(load_model_state(input_dir))
            models.clear()

        accelerator.register_save_state_pre_hook(save_hook)
        accelerator.register_load_state_pre_hook(load_hook)

    def _save(self, accelerator, step: int, epoch: int, index: int) -> Path:
        tmp = tmp_checkpoint_dir(self.output_dir, step)
        if accelerator.is_main_process:
            tmp.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=False)  # tied weights: not safetensors
        accelerator.wait_for_everyone()
        path = tmp.with_name(tmp.name.removesuffix(".tmp"))
        if accelerator.is_main_process:
            state = {"step": step, "epoch": epoch, "batch_index": index, "num_processes": accelerator.num_processes}
            path = publish_checkpoint(tmp, state, self._config_record(), self.metrics_log, self.config.keep_last)
            logger.info("saved checkpoint %s", path)
        accelerator.wait_for_everyone()
        return path
