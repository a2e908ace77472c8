"""kexue's one training loop (on accelerate): see :mod:`kexue.training.loop`."""

from .checkpoint import latest_checkpoint, list_checkpoints, load_model_state
from .distributed import batch_parts, distributed_state
from .loop import EvalFn, LossFn, Trainer, TrainingConfig, TrainingInterrupted, TrainResult, param_groups

__all__ = ["Trainer", "TrainingConfig", "TrainResult", "TrainingInterrupted", "LossFn", "EvalFn", "param_groups",
           "latest_checkpoint", "list_checkpoints", "load_model_state", "batch_parts", "distributed_state"]
