"""The reproduction harness: a registry of experiments, claims checked by measurement, and reports.

An experiment is a function ``run(ctx: Context) -> Outcome`` registered under a name. The harness
gives it a :class:`Context` (quick mode, seed, output folder, data root, model path), times it and
writes three things into ``<out>/<name>/``:

- ``result.json``: ``{"experiment", "quick", "seconds", "env", "command", "seed", "status",
  "metrics", "claims": [{"id", "statement", "expected", "measured", "holds"}], ...}``;
- ``report.md``: the claims table, metrics, tables, plots and notes;
- the PNG plots the experiment saved with :meth:`Context.save_figure`.

A claim's ``holds`` is always computed from the measurement by one of the :class:`Claim`
constructors, never typed in. A claim that fails is reported as failing.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from kexue.env import environment

logger = logging.getLogger(__name__)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Claim:
    """A statement from a post, or one of our goals, and whether the measurement supports it.

    Build claims with the constructors (:meth:`at_least`, :meth:`at_most`, :meth:`equal`,
    :meth:`within`, :meth:`check`) so that ``holds`` is computed from ``measured``. A missing
    or NaN measurement never holds.

    Example:
        >>> Claim.at_least("acc", "accuracy beats chance", measured=0.61, threshold=0.5).holds
        True
        >>> Claim.at_most("err", "error is small", measured=float("nan"), threshold=1e-3).holds
        False
    """

    id: str
    statement: str
    expected: str
    measured: Any
    holds: bool

    @classmethod
    def at_least(cls, id: str, statement: str, measured: float | None, threshold: float) -> Claim:
        holds = not _is_missing(measured) and measured >= threshold
        return cls(id, statement, f">= {threshold:g}", measured, bool(holds))

    @classmethod
    def at_most(cls, id: str, statement: str, measured: float | None, threshold: float) -> Claim:
        holds = not _is_missing(measured) and measured <= threshold
        return cls(id, statement, f"<= {threshold:g}", measured, bool(holds))

    @classmethod
    def within(cls, id: str, statement: str, measured: float | None, low: float, high: float) -> Claim:
        holds = not _is_missing(measured) and low <= measured <= high
        return cls(id, statement, f"in [{low:g}, {high:g}]", measured, bool(holds))

    @classmethod
    def equal(cls, id: str, statement: str, expected: Any, measured: Any) -> Claim:
        return cls(id, statement, _short(expected), measured, bool(expected == measured))

    @classmethod
    def check(cls, id: str, statement: str, expected: str, measured: Any, holds: bool) -> Claim:
        """A claim whose test is not a single comparison; ``holds`` must come from code."""
        return cls(id, statement, expected, measured, bool(holds) and not _is_missing(measured))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class Outcome:
    """What an experiment returns.

    Args:
        metrics: JSON-ready numbers (nested dicts allowed).
        claims: the claims checked by this run.
        tables: titled tables, each a list of rows (dicts with the same keys), rendered in report.md.
        notes: sentences for the reader (approximations made, what quick mode leaves out).
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What the harness hands an experiment."""

    name: str
    out_dir: Path
    quick: bool = False
    seed: int = 0
    data_dir: Path | None = None
    model_path: Path | None = None
    plots: list[str] = field(default_factory=list)

    @property
    def data_root(self) -> Path:
        """The resolved data root; raises ``DataNotFoundError`` (reported as "no data found")."""
        from kexue.data.root import resolve_data_root

        return resolve_data_root(self.data_dir)

    def save_figure(self, figure: Any, filename: str) -> Path:
        """Save a matplotlib figure as a PNG beside the report and close it."""
        import matplotlib.pyplot as plt

        path = self.out_dir / filename
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        self.plots.append(filename)
        return path


ExperimentFn = Callable[[Context], Outcome]


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    run: ExperimentFn


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, summary: str) -> Callable[[ExperimentFn], ExperimentFn]:
    """Decorator: register ``run(ctx) -> Outcome`` as ``kexue reproduce <name>``."""

    def decorate(run: ExperimentFn) -> ExperimentFn:
        if name in _REGISTRY and _REGISTRY[name].run is not run:
            raise ValueError(f"experiment {name!r} is registered twice")
        _REGISTRY[name] = Experiment(name, summary, run)
        return run

    return decorate


def registry() -> dict[str, Experiment]:
    """All registered experiments, by name (importing the built-in experiment modules first)."""
    from kexue.experiments import load_builtin_experiments

    load_builtin_experiments()
    return dict(sorted(_REGISTRY.items()))


@dataclass
class RunResult:
    """The outcome of one experiment run as written to ``result.json``."""

    experiment: str
    quick: bool
    seconds: float
    status: str  # "ok", "no-data" or "error"
    env: dict[str, Any]
    command: str
    seed: int
    metrics: dict[str, Any]
    claims: list[dict[str, Any]]
    tables: dict[str, list[dict[str, Any]]]
    notes: list[str]
    plots: list[str]
    error: str | None = None

    @property
    def claims_held(self) -> int:
        return sum(1 for claim in self.claims if claim["holds"])

    @property
    def claims_failed(self) -> int:
        return len(self.claims) - self.claims_held


def run_experiment(
    name: str,
    out: Path,
    quick: bool = False,
    seed: int = 0,
    data_dir: Path | None = None,
    model_path: Path | None = None,
) -> RunResult:
    """Run one registered experiment and write its result.json, report.md and plots under ``out/name``.

    An exception inside the experiment is caught and recorded (status ``"error"``, with the
    traceback in result.json); a missing data root is recorded as ``"no-data"``.
    """
    from kexue.data.root import DataNotFoundError

    experiments = registry()
    if name not in experiments:
        raise KeyError(f"unknown experiment {name!r}; registered: {', '.join(experiments)}")
    out_dir = Path(out) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(name, out_dir, quick, seed, data_dir, model_path)
    _seed_everything(seed)
    started = time.perf_counter()
    outcome, status, error = Outcome(), "ok", None
    try:
        outcome = experiments[name].run(ctx)
    except DataNotFoundError as exc:
        status, error = "no-data", str(exc)
        logger.warning("%s: no data found: %s", name, exc)
    except Exception:  # noqa: BLE001 - one failing experiment must not stop `reproduce all`
        status, error = "error", traceback.format_exc()
        logger.error("%s: error\n%s", name, error)
    result = RunResult(
        experiment=name,
        quick=quick,
        seconds=round(time.perf_counter() - started, 3),
        status=status,
        env=environment(),
        command=" ".join(shlex.quote(arg) for arg in ["kexue", *sys.argv[1:]]),
        seed=seed,
        metrics=outcome.metrics,
        claims=[asdict(claim) for claim in outcome.claims],
        tables=outcome.tables,
        notes=outcome.notes,
        plots=ctx.plots,
        error=error,
    )
    (out_dir / "result.json").write_text(
        json.dumps(asdict(result), indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8"
    )
    from kexue.experiments.report import experiment_report

    (out_dir / "report.md").write_text(experiment_report(result, experiments[name].summary), encoding="utf-8")
    return result


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
