"""Reproductions of the posts' claims: ``kexue reproduce <name>|all``.

Each experiment module registers itself with :func:`register`; adding one to kexue is one line in
``BUILTIN_EXPERIMENTS``. Experiments use the core library, never the reverse.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from kexue.experiments.harness import (
    Claim,
    Context,
    Experiment,
    Outcome,
    RunResult,
    register,
    registry,
    run_experiment,
)

__all__ = [
    "Claim",
    "Context",
    "Experiment",
    "Outcome",
    "RunResult",
    "register",
    "registry",
    "run_all",
    "run_experiment",
]

# One line per experiment module; importing a module registers its experiments.
BUILTIN_EXPERIMENTS = (
    "kexue.experiments.data_audit",
    "kexue.experiments.jl",
    "kexue.experiments.flatnce",
    "kexue.experiments.childtuning",
    "kexue.experiments.entropy_scale",
    "kexue.experiments.linear_attention",
    "kexue.experiments.kbqa",
    "kexue.experiments.univae",
    "kexue.experiments.nsp_zeroshot",
)


def load_builtin_experiments() -> None:
    for module in BUILTIN_EXPERIMENTS:
        importlib.import_module(module)


def run_all(
    out: Path,
    quick: bool = False,
    seed: int = 0,
    data_dir: Path | None = None,
    model_path: Path | None = None,
    names: list[str] | None = None,
) -> tuple[list[RunResult], Path]:
    """Run experiments (default: every registered one) and write ``out/REPORT.md``.

    An experiment that raises is recorded as errored and the run goes on with the next.
    """
    from kexue.experiments.report import batch_report

    results = [
        run_experiment(name, out, quick=quick, seed=seed, data_dir=data_dir, model_path=model_path)
        for name in (names if names is not None else registry())
    ]
    report = Path(out) / "REPORT.md"
    report.write_text(batch_report(results, Path(out)), encoding="utf-8")
    return results, report
