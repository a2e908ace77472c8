"""kexue's one training loop (on accelerate): see :mod:`kexue.training.loop`."""

from .checkpoint import latest_checkpoint, list_checkpoints, load_model_state
from .loop import EvalFn, LossFn, Trainer, TrainingConfig, TrainResult, param_groups
from .schedule import lr_multiplier, warmup_decay_schedule

__all__ = ["Trainer", "TrainingConfig", "TrainResult", "LossFn", "EvalFn", "param_groups",
           "latest_checkpoint", "list_checkpoints", "load_model_state", "lr_multiplier",
           "warmup_decay_schedule"]
