"""The reproduction harness: a registry of experiments, claims checked by measurement, and reports.

An experiment is a function ``run(ctx: Context) -> Outcome`` registered under a name. The harness
gives it a :class:`Context` (quick mode, seed, output folder, data root, model path), times it and
writes three things into ``<out>/<name>/``:

- ``result.json``: ``{"experiment", "post", "quick", "seconds", "env", "command", "seed", "status",
  "metrics", "claims": [{"id", "statement", "expected", "measured", "holds", "verdict", "source",
  "quote", "post_figure", "interval", "precondition", "needs_training", "reason"}], ...}``;
- ``report.md``: the post's headline claims, then our checks, tables, plots, notes and metrics;
- the PNG plots the experiment saved with :meth:`Context.save_figure`.

A claim's ``verdict`` (holds / fails / inconclusive) is always computed from the measurement by one
of the :class:`Claim` constructors, never typed in; in a quick run the harness makes every claim
that needs training inconclusive ("quick mode"), since toy training decides nothing.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kexue.env import environment

if TYPE_CHECKING:
    from kexue.stats import Interval

logger = logging.getLogger(__name__)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


VERDICTS = ("holds", "fails", "inconclusive")
SOURCES = ("post", "ours")


@dataclass(frozen=True)
class Precondition:
    """What must be true of the regime for a claim to be testable at all (unmet: inconclusive).

    Example:
        >>> Precondition.at_least("float error engages: InfoNCE loss ≥ 1e-6", 3e-4, 1e-6).met
        True
    """

    statement: str
    measured: Any
    met: bool

    @classmethod
    def at_least(cls, statement: str, measured: float | None, threshold: float) -> Precondition:
        return cls(statement, measured, not _is_missing(measured) and bool(measured >= threshold))

    @classmethod
    def at_most(cls, statement: str, measured: float | None, threshold: float) -> Precondition:
        return cls(statement, measured, not _is_missing(measured) and bool(measured <= threshold))

    def to_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "measured": self.measured, "met": self.met}


@dataclass(frozen=True)
class Claim:
    """A statement from a post, or one of our checks, and the verdict the measurement gives it.

    Build claims with the constructors (:meth:`at_least`, :meth:`at_most`, :meth:`within`,
    :meth:`equal`, :meth:`check`) so that ``verdict`` is computed, never typed in:

    - with a 95% ``interval``, a claim holds only when the whole interval clears the threshold,
      fails only when the whole interval lies on the wrong side, and is otherwise inconclusive;
    - without one (an exact or deterministic measurement) the point estimate decides;
    - a missing or NaN measurement, or an unmet ``precondition``, is inconclusive;
    - in quick mode the harness makes every ``needs_training`` claim inconclusive.

    ``source="post"`` marks the post's own claims (give ``quote``, the post's sentence or the name
    of its equation, and ``post_figure``, the number the post reports); ``"ours"`` marks our checks
    and goals. ``holds`` (True / False / None when inconclusive) is kept for readers of the old
    result.json schema.

    Example:
        >>> from kexue.stats import Interval
        >>> Claim.at_least("acc", "accuracy beats chance", 0.61, 0.5).verdict
        'holds'
        >>> Claim.at_least("gain", "A beats B", 0.01, 0.0, interval=Interval(-0.02, 0.04, 5, "t")).verdict
        'inconclusive'
        >>> Claim.at_most("err", "error is small", measured=float("nan"), threshold=1e-3).holds is None
        True
    """

    id: str
    statement: str
    expected: str
    measured: Any
    verdict: str
    source: str = "ours"
    quote: str | None = None
    post_figure: str | None = None
    interval: dict[str, Any] | None = None
    precondition: dict[str, Any] | None = None
    needs_training: bool = False
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.id!r}: `verdict` must be one of {VERDICTS}, got {self.verdict!r}")
        if self.source not in SOURCES:
            raise ValueError(f"claim {self.id!r}: `source` must be one of {SOURCES}, got {self.source!r}")

    @property
    def holds(self) -> bool | None:
        """True / False for a decided claim, None when inconclusive (the old schema's field)."""
        return None if self.verdict == "inconclusive" else self.verdict == "holds"

    def to_dict(self) -> dict[str, Any]:
        """The result.json form: every field, with ``holds`` beside ``verdict``."""
        fields = asdict(self)
        return {**{key: fields[key] for key in ("id", "statement", "expected", "measured")},
                "holds": self.holds, **{key: value for key, value in fields.items()
                                        if key not in ("id", "statement", "expected", "measured")}}

    @classmethod
    def _decide(
        cls, id: str, statement: str, expected: str, measured: Any, point_holds: bool,
        interval_verdict: Callable[[Interval], str | None] | None, options: dict[str, Any],
        undecided: bool = False,
    ) -> Claim:
        interval: Interval | None = options.pop("interval", None)
        precondition: Precondition | None = options.pop("precondition", None)
        reason: str | None = options.pop("reason", None)
        if _is_missing(measured) or undecided:
            verdict, reason = "inconclusive", reason or "no measurement"
        elif precondition is not None and not precondition.met:
            verdict, reason = "inconclusive", f"precondition not met: {precondition.statement}"
        elif interval is not None and interval_verdict is not None:
            if not interval.bounded:
                verdict, reason = "inconclusive", f"no bounded interval from n = {interval.n}"
            else:
                verdict = interval_verdict(interval) or "inconclusive"
                if verdict == "inconclusive":
                    reason = f"{interval.level:.0%} interval [{interval.low:.4g}, {interval.high:.4g}] straddles {expected}"
        else:
            verdict = "holds" if point_holds else "fails"
        return cls(
            id, statement, expected, measured, verdict,
            interval=interval.to_dict() if interval is not None else None,
            precondition=precondition.to_dict() if precondition is not None else None,
            reason=reason if verdict == "inconclusive" else None, **options,
        )

    @classmethod
    def at_least(cls, id: str, statement: str, measured: float | None, threshold: float, **options: Any) -> Claim:
        """Holds when ``measured >= threshold`` (with an interval: when ``interval.low >= threshold``).

        Keyword options (all constructors): ``source``, ``quote``, ``post_figure``, ``interval``
        (an :class:`~kexue.stats.Interval`), ``precondition`` (a :class:`Precondition`),
        ``needs_training``.
        """

        def by_interval(interval: Interval) -> str | None:
            return "holds" if interval.low >= threshold else "fails" if interval.high < threshold else None

        point = not _is_missing(measured) and measured >= threshold
        return cls._decide(id, statement, f">= {threshold:g}", measured, point, by_interval, _options(options))

    @classmethod
    def at_most(cls, id: str, statement: str, measured: float | None, threshold: float, **options: Any) -> Claim:
        """Holds when ``measured <= threshold`` (with an interval: when ``interval.high <= threshold``)."""

        def by_interval(interval: Interval) -> str | None:
            return "holds" if interval.high <= threshold else "fails" if interval.low > threshold else None

        point = not _is_missing(measured) and measured <= threshold
        return cls._decide(id, statement, f"<= {threshold:g}", measured, point, by_interval, _options(options))

    @classmethod
    def within(cls, id: str, statement: str, measured: float | None, low: float, high: float,
               **options: Any) -> Claim:
        """Holds when ``low <= measured <= high``; with an interval, when it lies inside ``[low, high]``
        (fails when it lies wholly outside)."""

        def by_interval(interval: Interval) -> str | None:
            if low <= interval.low and interval.high <= high:
                return "holds"
            return "fails" if interval.high < low or interval.low > high else None

        point = not _is_missing(measured) and low <= measured <= high
        return cls._decide(id, statement, f"in [{low:g}, {high:g}]", measured, point, by_interval,
                           _options(options))

    @classmethod
    def equal(cls, id: str, statement: str, expected: Any, measured: Any, **options: Any) -> Claim:
        """Holds when ``measured == expected`` exactly (no interval: an exact measurement)."""
        return cls._decide(id, statement, _short(expected), measured, bool(expected == measured), None,
                           _options(options, allow_interval=False))

    @classmethod
    def check(cls, id: str, statement: str, expected: str, measured: Any, holds: bool | None,
              **options: Any) -> Claim:
        """A claim whose test is not a single comparison: ``holds`` comes from the caller's code
        (True, False, or None for undecided, with ``reason=``). An unmet precondition or a missing
        measurement still makes it inconclusive; an ``interval`` given here is reported, not used."""
        options = _options(options, allow_reason=True)
        if holds is None:
            options.setdefault("reason", "undecided by the measurement")
        return cls._decide(id, statement, expected, measured, bool(holds), None, options, undecided=holds is None)


_CLAIM_OPTIONS = {"source", "quote", "post_figure", "interval", "precondition", "needs_training"}


def _options(options: dict[str, Any], allow_interval: bool = True, allow_reason: bool = False) -> dict[str, Any]:
    allowed = (_CLAIM_OPTIONS - (set() if allow_interval else {"interval"})) | ({"reason"} if allow_reason else set())
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unknown claim option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return dict(options)


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
    post: str | None = None  # the kexue.fm post(s) reproduced, e.g. "kexue.fm/archives/8679"


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, summary: str, post: str | None = None) -> Callable[[ExperimentFn], ExperimentFn]:
    """Decorator: register ``run(ctx) -> Outcome`` as ``kexue reproduce <name>``."""

    def decorate(run: ExperimentFn) -> ExperimentFn:
        if name in _REGISTRY and _REGISTRY[name].run is not run:
            raise ValueError(f"experiment {name!r} is registered twice")
        _REGISTRY[name] = Experiment(name, summary, run, post)
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
    post: str | None = None

    def _count(self, verdict: str) -> int:
        return sum(1 for claim in self.claims if claim["verdict"] == verdict)

    @property
    def claims_held(self) -> int:
        return self._count("holds")

    @property
    def claims_failed(self) -> int:
        return self._count("fails")

    @property
    def claims_inconclusive(self) -> int:
        return self._count("inconclusive")

    def claim_counts(self) -> str:
        """``"5 held, 1 failed, 2 inconclusive"``."""
        return f"{self.claims_held} held, {self.claims_failed} failed, {self.claims_inconclusive} inconclusive"


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
        claims=[_quick_mode_rule(claim, quick).to_dict() for claim in outcome.claims],
        tables=outcome.tables,
        notes=outcome.notes,
        plots=ctx.plots,
        error=error,
        post=experiments[name].post,
    )
    (out_dir / "result.json").write_text(
        json.dumps(asdict(result), indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8"
    )
    from kexue.experiments.report import experiment_report

    (out_dir / "report.md").write_text(experiment_report(result, experiments[name].summary), encoding="utf-8")
    return result


def _quick_mode_rule(claim: Claim, quick: bool) -> Claim:
    """A quick run's toy training decides nothing: its training claims are inconclusive."""
    if quick and claim.needs_training:
        return replace(claim, verdict="inconclusive", reason="quick mode")
    return claim


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
