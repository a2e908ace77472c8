"""Honest resume: a run continues only with the settings its checkpoint was trained with.

Every ``TrainingConfig`` field that shapes the optimisation (learning rate, schedule, optimizer,
clipping, precision, accumulation, seed) and every entry of ``TrainingConfig.settings`` (what the
caller declares about data and objective, e.g. the batch size) must equal the checkpoint's
``config.json``. A difference is an error naming the old and new values, unless the field is
listed in ``resume_overrides``; the overrides applied are appended to the run's
``resume_history``, which every later checkpoint records. ``max_steps`` is the exception that
resuming exists for: it may change without an override (the schedule is stretched or shortened
from the current step), and the change is recorded and logged all the same.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FREE_FIELDS", "RECORDED_FIELDS", "changed_settings", "check_resume"]

# Fields that may change on resume without an override: where output goes and how often.
FREE_FIELDS = frozenset({"output_dir", "max_minutes", "log_every", "eval_every", "save_every", "keep_last",
                         "progress", "resume_overrides", "resume_history"})
# Fields that may change without an override but are recorded like one.
RECORDED_FIELDS = frozenset({"max_steps"})


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # JSON has no tuples


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{name: (checkpoint value, new value)}`` of the compared fields that differ.

    Entries of ``settings`` are named ``settings.<key>``.
    """
    changed = {}
    for name in sorted(set(saved) | set(current)):
        if name in FREE_FIELDS:
            continue
        if name == "settings":
            old, new = saved.get(name) or {}, current.get(name) or {}
            changed |= {f"settings.{key}": (old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
                        if _normalise(old.get(key)) != _normalise(new.get(key))}
        elif _normalise(saved.get(name)) != _normalise(current.get(name)):
            changed[name] = (saved.get(name), current.get(name))
    return changed


def check_resume(saved: dict[str, Any], current: dict[str, Any], overrides: frozenset[str], step: int,
                 checkpoint: str) -> list[dict[str, Any]]:
    """Raise unless every changed field is overridden; returns the new ``resume_history`` entries.

    Raises:
        ValueError: naming each changed field with its checkpoint and new values.
    """
    changed = changed_settings(saved, current)
    refused = {name: values for name, values in changed.items() if name not in overrides | RECORDED_FIELDS}
    if refused:
        lines = "; ".join(f"`{name}` was {old!r} in the checkpoint, now {new!r}" for name, (old, new) in refused.items())
        names = " ".join(refused)
        raise ValueError(f"resume from {checkpoint} with changed settings: {lines}. Resume with the checkpoint's "
                         f"values, or accept the new ones explicitly with resume_overrides "
                         f"(CLI: --resume-override {names})")
    return [{"step": step, "field": name, "from": old, "to": new} for name, (old, new) in changed.items()]
