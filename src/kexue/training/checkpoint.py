"""Atomic training checkpoints.

A checkpoint is a directory ``<output_dir>/checkpoints/step-00001234/`` holding

    model.pt           the unwrapped model's ``state_dict``
    training_state.pt  optimizer, scheduler, step, data position, RNG states (torch, numpy, python)
    config.json        the ``TrainingConfig`` used
    metrics.jsonl      the metrics history up to this step

It is written into ``step-00001234.tmp-<pid>/`` first and then renamed with ``os.replace``,
so a directory named ``step-<digits>`` is always complete: a run killed while saving leaves only
a ``.tmp`` directory, which :func:`latest_checkpoint` ignores and the next save removes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["latest_checkpoint", "list_checkpoints", "save_checkpoint", "load_training_state",
           "load_model_state", "capture_rng_state", "restore_rng_state"]

_NAME = re.compile(r"^step-(\d+)$")
MODEL_FILE = "model.pt"
STATE_FILE = "training_state.pt"


def capture_rng_state() -> dict[str, Any]:
    """The python, numpy and torch RNG states (plus CUDA when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def save_checkpoint(output_dir: str | os.PathLike, step: int, model_state: dict[str, torch.Tensor],
                    training_state: dict[str, Any], config: dict[str, Any], metrics_log: Path | None,
                    keep_last: int | None = None) -> Path:
    """Write a checkpoint atomically and prune all but the ``keep_last`` newest. Returns its path."""
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("step-*.tmp-*"):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step-{step:08d}"
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    torch.save(model_state, tmp / MODEL_FILE)
    torch.save(training_state, tmp / STATE_FILE)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
    if metrics_log is not None and metrics_log.exists():
        shutil.copyfile(metrics_log, tmp / "metrics.jsonl")
    if final.exists():  # re-saving the same step (e.g. the time limit hit right after a save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last is not None:
        for old in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    # weights_only=False: the state holds python/numpy RNG tuples written by us, not foreign data.
    return torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=False)


def load_model_state(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` saved in a checkpoint directory."""
    path = Path(checkpoint) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: `checkpoint` must be a directory written by kexue.training")
    return torch.load(path, map_location="cpu", weights_only=True)
