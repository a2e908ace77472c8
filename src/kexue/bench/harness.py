"""The benchmark harness: ours against a named anchor, in the same process, with warm-up and repeats.

A benchmark is a function ``run(quick: bool) -> list[Comparison]`` registered with
:func:`register_benchmark`. Each :class:`Comparison` times two callables on the same input,
interleaving their repeats so that a machine slowing down affects both alike, and records the
median, min and max seconds of each and their ratios:

- ``speedup = anchor median / ours median`` (above 1: ours is faster);
- ``memory_ratio = ours peak / anchor peak`` (below 1: ours needs less), where peak memory is the
  growth of the process's resident set during one call (Linux only; ``None`` elsewhere).

Timings are evidence, never test assertions.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class Timing:
    """Seconds per call over the repeats, and peak resident-memory growth of one call (MiB)."""

    median: float
    min: float
    max: float
    repeats: int
    peak_mib: float | None = None


@dataclass(frozen=True)
class Comparison:
    """One case of a benchmark: ours against the anchor, with ratios and an optional goal."""

    case: str
    anchor: str
    ours: Timing
    theirs: Timing
    goal: str | None = None
    goal_met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.theirs.median / self.ours.median

    @property
    def memory_ratio(self) -> float | None:
        if self.ours.peak_mib is None or not self.theirs.peak_mib:
            return None
        return self.ours.peak_mib / self.theirs.peak_mib

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["speedup"] = self.speedup
        data["memory_ratio"] = self.memory_ratio
        return data


def _rss_status(field_name: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        return None
    return None


def peak_memory_mib(fn: Callable[[], Any]) -> float | None:
    """Growth of the peak resident set (VmHWM) while ``fn`` runs once, in MiB; None off Linux.

    Writing "5" to /proc/self/clear_refs resets the high-water mark to the current RSS, so the
    difference afterwards is what this one call needed on top of what was already resident.
    Freed heap memory is first handed back to the system (``malloc_trim``); otherwise a call
    could reuse what an earlier call freed and appear to need nothing.
    """
    gc.collect()
    _release_free_heap()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    before = _rss_status("VmRSS")
    fn()
    after = _rss_status("VmHWM")
    if before is None or after is None:
        return None
    return max(after - before, 0.0)


def _release_free_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def compare(
    case: str,
    ours: Callable[[], Any],
    anchor_name: str,
    anchor: Callable[[], Any],
    repeats: int = 5,
    warmup: int = 1,
    measure_memory: bool = False,
    goal: str | None = None,
    goal_met: Callable[[Comparison], bool] | None = None,
    **extra: Any,
) -> Comparison:
    """Time ``ours`` against ``anchor`` with ``warmup`` untimed calls each and ``repeats`` interleaved calls.

    Args:
        case: what is measured (sizes, dtype, ...).
        ours, anchor: zero-argument callables doing the same work.
        anchor_name: the anchor as users know it (e.g. "sklearn GaussianRandomProjection").
        goal: the goal in words (e.g. "speedup >= 2"); ``goal_met`` computes it from the result.
        extra: JSON-ready facts printed with the case.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats}")
    for _ in range(warmup):
        ours()
        anchor()
    ours_times: list[float] = []
    anchor_times: list[float] = []
    for _ in range(repeats):
        for fn, times in ((ours, ours_times), (anchor, anchor_times)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    ours_peak = peak_memory_mib(ours) if measure_memory else None
    anchor_peak = peak_memory_mib(anchor) if measure_memory else None
    comparison = Comparison(
        case=case,
        anchor=anchor_name,
        ours=_timing(ours_times, ours_peak),
        theirs=_timing(anchor_times, anchor_peak),
        goal=goal,
        extra=extra,
    )
    if goal_met is not None:
        comparison = Comparison(**{**comparison.__dict__, "goal_met": bool(goal_met(comparison))})
    return comparison


def _timing(times: list[float], peak: float | None) -> Timing:
    return Timing(statistics.median(times), min(times), max(times), len(times), peak)


BenchmarkFn = Callable[[bool], list[Comparison]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    anchor: str
    summary: str
    run: BenchmarkFn


_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(name: str, anchor: str, summary: str) -> Callable[[BenchmarkFn], BenchmarkFn]:
    """Decorator: register ``run(quick) -> list[Comparison]`` as ``kexue bench <name>``."""

    def decorate(run: BenchmarkFn) -> BenchmarkFn:
        if name in _REGISTRY and _REGISTRY[name].run is not run:
            raise ValueError(f"benchmark {name!r} is registered twice")
        _REGISTRY[name] = Benchmark(name, anchor, summary, run)
        return run

    return decorate


def benchmark_registry() -> dict[str, Benchmark]:
    from kexue.bench import load_builtin_benchmarks

    load_builtin_benchmarks()
    return dict(sorted(_REGISTRY.items()))


def format_comparisons(name: str, comparisons: list[Comparison]) -> str:
    """Plain-text table of one benchmark's cases for the terminal."""
    lines = [f"== {name}"]
    for item in comparisons:
        memory = f", memory x{item.memory_ratio:.2f}" if item.memory_ratio is not None else ""
        goal = ""
        if item.goal:
            goal = f"  [goal {item.goal}: {'met' if item.goal_met else 'NOT met'}]"
        lines.append(
            f"  {item.case}: ours {item.ours.median * 1e3:.2f} ms, {item.anchor} {item.theirs.median * 1e3:.2f} ms"
            f" -> speedup x{item.speedup:.2f}{memory}{goal}"
        )
    return "\n".join(lines)
