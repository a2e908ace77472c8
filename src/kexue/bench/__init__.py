"""Speed and memory of kexue against the anchors: ``kexue bench <name>|all [--json]``.

Adding a benchmark is one line in ``BUILTIN_BENCHMARKS``; its module registers itself with
:func:`register_benchmark`.
"""

from __future__ import annotations

import importlib

from kexue.bench.harness import (
    Benchmark,
    Comparison,
    Timing,
    benchmark_registry,
    compare,
    format_comparisons,
    peak_memory_mib,
    register_benchmark,
)

__all__ = [
    "Benchmark",
    "Comparison",
    "Timing",
    "benchmark_registry",
    "compare",
    "format_comparisons",
    "peak_memory_mib",
    "register_benchmark",
]

# One line per benchmark module; importing a module registers its benchmarks.
BUILTIN_BENCHMARKS = (
    "kexue.bench.data_readers",
    "kexue.bench.backbone",
    "kexue.bench.jl",
    "kexue.bench.flatnce",
    "kexue.bench.childtuning",
    "kexue.bench.entropy_scale",
    "kexue.bench.linear_attention",
    "kexue.bench.trie",
    "kexue.bench.univae",
    "kexue.bench.nsp_zeroshot",
)


def load_builtin_benchmarks() -> None:
    for module in BUILTIN_BENCHMARKS:
        importlib.import_module(module)
