"""Processes, ranks and batch sharding for :class:`kexue.training.Trainer`.

Data parallelism in kexue keeps one rule: a batch yielded by the training data is the *global*
batch, the same on every process, and the same whatever the number of processes. Process ``r`` of
``N`` (with ``A`` gradient-accumulation steps) trains on rows ``[k·B/(N·A), (k+1)·B/(N·A))`` of
it for ``k = r·A + a``: disjoint parts that cover the batch. The data code therefore never needs
to know the world size, and every random choice made while building a batch (masks, pairs,
negatives) depends on the batch, never on the process that uses it.

The gradient is that of the global mean: each part's loss is a mean over ``n_k`` terms (rows by
default; a loss function reports another count as the metric ``loss_count``, e.g. the masked
tokens of MLM), so the loop back-propagates ``n_k · loss_k`` and divides the reduced gradient by
``Σ_k n_k``. Hence 1 and N processes take the same steps up to float rounding.

Ranks: accelerate's ``PartialState`` only uses the CPU process group (gloo) when told ``cpu=True``;
without it, two processes started by ``torchrun`` on a host without GPUs both become rank 0 of 1.
:func:`distributed_state` passes ``cpu=True`` whenever no accelerator is present or
``ACCELERATE_USE_CPU`` is set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["distributed_state", "use_cpu", "make_accelerator", "LossModule", "batch_rows", "batch_parts"]

logger = logging.getLogger(__name__)

_LAUNCH_VARIABLES = ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def use_cpu() -> bool:
    """True when training must run on the CPU: ``ACCELERATE_USE_CPU`` is set or no accelerator exists."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()


def distributed_state():
    """accelerate's ``PartialState`` with the right rank and world size on CPU-only hosts too.

    Raises:
        ValueError: ``accelerate launch --cpu --num_processes N`` (N > 1) without an MPI host file,
            which accelerate runs as one process.
    """
    from accelerate import PartialState

    cpu = use_cpu()
    launched_alone = not any(name in os.environ for name in _LAUNCH_VARIABLES)
    if cpu and launched_alone and "MASTER_ADDR" in os.environ and "ACCELERATE_USE_CPU" in os.environ:
        raise ValueError("`accelerate launch --cpu --num_processes N` starts a single process (accelerate runs "
                         "several CPU processes only under MPI). Start N CPU processes with "
                         "`torchrun --nproc_per_node N -m kexue.cli ...` or with "
                         "`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N -m kexue.cli ...`")
    return PartialState(cpu=cpu)


def make_accelerator(mixed_precision: str):
    """An ``Accelerator`` with this run's precision, whatever an earlier run in the process used.

    accelerate keeps one process-wide ``AcceleratorState`` and refuses a new ``Accelerator`` whose
    ``mixed_precision`` differs from the first one's. One process often trains several times with
    different settings: ``kexue reproduce all`` runs a bf16 fine-tuning and then an fp32 pretraining.
    So the precision part of that state is reset first. The distributed part, ``PartialState``
    (process group, rank, device), is kept. The schedule steps once per update (the batch is
    global, see :mod:`kexue.training.distributed`); unused parameters (e.g. the NSP head on a
    UniLM batch) are allowed under DDP.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    distributed_state()
    previous = AcceleratorState._shared_state.get("_mixed_precision")
    if previous is not None and previous != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=use_cpu(), step_scheduler_with_optimizer=False,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


class LossModule(nn.Module):
    """``model`` and ``loss_fn`` as one module whose output is the loss, for DDP to wrap.

    DDP's ``find_unused_parameters`` follows the graph back from the forward's outputs; a model's
    outputs that the loss does not use (the pooler or NSP logits of an MLM-only batch) would make
    it wait for gradients that never come. Wrapping the loss makes the output exactly the loss.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss_fn(self.model, batch)


def batch_rows(batch: Any) -> int:
    """The number of rows of a batch: the common first dimension of all its tensors.

    Raises:
        ValueError: a tensor without that first dimension, or no tensor at all.
    """
    from accelerate.utils import recursively_apply

    shapes: list[torch.Size] = []
    recursively_apply(lambda tensor: shapes.append(tensor.shape), batch)
    if not shapes:
        raise ValueError("a training batch must hold at least one tensor")
    for shape in shapes:
        if len(shape) == 0 or shape[0] != shapes[0][0]:
            raise ValueError(f"every tensor of a training batch must have the batch as its first dimension to be "
                             f"split across processes, got shapes {[tuple(s) for s in shapes]}")
    return shapes[0][0]


def batch_parts(batch: Any, process_index: int, num_processes: int, accumulation_steps: int = 1) -> list[tuple[Any, bool]]:
    """This process's micro-batches of a global ``batch``: ``[(part, is_empty), ...]``.

    Every tensor in ``batch`` (nested dicts, lists, tuples) must have the batch as its first
    dimension; other values (e.g. a task name) are passed through. A part with no rows (a batch
    smaller than ``num_processes · accumulation_steps``) is returned as the batch's first row with
    ``is_empty=True``: the process still runs forward and backward, as data-parallel training
    requires, but with weight 0.

    Example:
        >>> batch = {"x": torch.arange(10)[:, None], "task": "mlm"}
        >>> [part["x"].flatten().tolist() for part, _ in batch_parts(batch, 1, 2, accumulation_steps=2)]
        [[5, 6], [7, 8, 9]]
    """
    from accelerate.utils import slice_tensors

    rows = batch_rows(batch)
    parts = num_processes * accumulation_steps
    result = []
    for step in range(accumulation_steps):
        k = process_index * accumulation_steps + step
        begin, end = k * rows // parts, (k + 1) * rows // parts
        empty = begin == end
        result.append((slice_tensors(batch, slice(0, 1) if empty else slice(begin, end)), empty))
    return result
