"""Atomic training checkpoints written with accelerate's ``save_state``.

A checkpoint is a directory ``<output_dir>/checkpoints/step-00001234/`` holding

    pytorch_model.bin        the unwrapped model's ``state_dict`` (the same for any number of processes)
    optimizer.bin            accelerate's ``save_state``: optimizer,
    scheduler.bin            learning-rate schedule,
    random_states_<r>.pkl    and the python/numpy/torch RNG states of every process ``r``
    trainer_state.json       step, data position (epoch, batch index), number of processes
    config.json              the ``TrainingConfig`` used, with the resume overrides applied so far
    metrics.jsonl            the metrics history up to this step

All processes write into ``step-00001234.tmp/`` (each its own RNG file; accelerate writes the
rest from the main process only), then the main process renames it with ``os.replace``. So a
directory named ``step-<digits>`` is always complete: a run killed while saving leaves only a
``.tmp`` directory, which :func:`latest_checkpoint` ignores and the next run removes.

Checkpoints from kexue before accelerate's ``save_state`` (``model.pt`` + ``training_state.pt``)
still load with :func:`load_model_state`, but cannot be resumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

__all__ = ["latest_checkpoint", "list_checkpoints", "load_model_state", "load_trainer_state", "read_config",
           "remove_stale_tmp", "publish_checkpoint", "tmp_checkpoint_dir"]

_NAME = re.compile(r"^step-(\d+)$")
MODEL_FILE = "pytorch_model.bin"  # accelerate's name with safe_serialization=False (tied weights)
LEGACY_MODEL_FILE = "model.pt"
TRAINER_STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.json"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or ``None``."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def remove_stale_tmp(output_dir: str | os.PathLike) -> None:
    """Remove ``.tmp`` directories left by a run killed while saving (call from the main process)."""
    for stale in (Path(output_dir) / "checkpoints").glob("step-*.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)


def tmp_checkpoint_dir(output_dir: str | os.PathLike, step: int) -> Path:
    """The directory every process passes to ``accelerator.save_state`` for ``step``."""
    return Path(output_dir) / "checkpoints" / f"step-{step:08d}.tmp"


def publish_checkpoint(tmp: Path, trainer_state: dict[str, Any], config: dict[str, Any],
                       metrics_log: Path | None, keep_last: int | None = None) -> Path:
    """Main process: add the loop's files to ``tmp``, rename it to its final name and prune old ones."""
    (tmp / TRAINER_STATE_FILE).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
    if metrics_log is not None and metrics_log.exists():
        shutil.copyfile(metrics_log, tmp / "metrics.jsonl")
    final = tmp.with_name(tmp.name.removesuffix(".tmp"))
    if final.exists():  # re-saving the same step (e.g. the time limit hit right after a save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last is not None:
        for old in list_checkpoints(final.parent.parent)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """``{"step", "epoch", "batch_index", "num_processes"}`` of a checkpoint."""
    path = Path(checkpoint) / TRAINER_STATE_FILE
    if not path.is_file():
        legacy = (Path(checkpoint) / LEGACY_MODEL_FILE).is_file()
        raise ValueError(f"{checkpoint} cannot be resumed: no {TRAINER_STATE_FILE}"
                         + (" (it was written by kexue before checkpoints used accelerate's save_state; "
                            "load its weights with load_model_state and start a new run)" if legacy else ""))
    return json.loads(path.read_text(encoding="utf-8"))


def read_config(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint (the ``TrainingConfig`` fields and the resume history)."""
    return json.loads((Path(checkpoint) / CONFIG_FILE).read_text(encoding="utf-8"))


def load_model_state(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` saved in a checkpoint directory."""
    for name in (MODEL_FILE, LEGACY_MODEL_FILE):
        path = Path(checkpoint) / name
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{Path(checkpoint) / MODEL_FILE} not found: `checkpoint` must be a directory written "
                            "by kexue.training")
