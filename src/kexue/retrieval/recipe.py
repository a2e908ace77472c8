"""The KBQA training recipe of the committed reproduction (docs/results/kbqa), in one place.

``kexue kbqa train`` takes its defaults from :data:`KBQA_RECIPE` and ``kexue reproduce kbqa``
trains with it, so the README's commands train the model the committed figures come from. This
module imports nothing heavy: the CLI reads it while building its parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kexue.training import TrainingConfig

__all__ = ["KbqaRecipe", "KBQA_RECIPE"]


@dataclass(frozen=True)
class KbqaRecipe:
    """How a KBQA model is fine-tuned from ``kexue-small-zh`` (L4/H256) on KgCLUE train."""

    learning_rate: float = 3e-4  # the small 4-layer model fine-tunes at a larger rate than BERT-base's 2e-5..1e-4
    max_steps: int = 600  # 1.07 epochs of KgCLUE train; fixed steps (not minutes), so a run does not depend on the machine
    max_minutes: float | None = None  # an optional wall-clock cap; None trains all max_steps
    batch_size: int = 32
    warmup_divisor: int = 20  # warm-up steps = max_steps // 20 (at least 1)
    order: str = "spm"  # S [SEP] P [SEP] M: the post's better order
    save_every: int = 50
    log_every: int = 10
    keep_last: int = 1  # checkpoints kept for --resume

    def warmup_steps(self, max_steps: int) -> int:
        return max(max_steps // self.warmup_divisor, 1)

    def training_config(self, output_dir: str | Path, seed: int = 0, max_steps: int | None = None,
                        max_minutes: float | None = None, learning_rate: float | None = None) -> "TrainingConfig":
        """The :class:`~kexue.training.TrainingConfig` of the recipe; arguments left None keep its values."""
        from kexue.training import TrainingConfig

        max_steps = self.max_steps if max_steps is None else max_steps
        return TrainingConfig(output_dir=str(output_dir), max_steps=max_steps,
                              max_minutes=self.max_minutes if max_minutes is None else max_minutes,
                              learning_rate=self.learning_rate if learning_rate is None else learning_rate,
                              warmup_steps=self.warmup_steps(max_steps), save_every=self.save_every,
                              log_every=self.log_every, keep_last=self.keep_last, seed=seed)


KBQA_RECIPE = KbqaRecipe()
