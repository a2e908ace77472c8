"""The ``kexue`` command line: a thin layer over the library and the experiments.

Built-in commands: ``info``, ``reproduce``, ``bench``. A capability adds its own sub-command with
one line in ``PLUGIN_COMMANDS``: the named module exposes ``add_parser(subparsers)``, which
registers an argparse sub-parser whose ``func(args) -> int`` does the work.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

# One line per capability that brings its own sub-command.
PLUGIN_COMMANDS = (
    "kexue.pretrain.cli",
    "kexue.retrieval.cli",
    "kexue.univae.cli",
    "kexue.zero_shot.cli",
)


class UsageError(Exception):
    """A problem with the command's arguments: printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"kexue {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        # Library errors carry the file, line or argument at fault; a traceback adds nothing.
        if args.verbose:
            raise
        print(f"kexue {args.command}: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    from kexue import __version__

    parser = argparse.ArgumentParser(
        prog="kexue",
        description="Techniques from the 2021 Scientific Spaces (kexue.fm) posts, and reproductions of their claims.",
    )
    parser.add_argument("--version", action="version", version=f"kexue {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_info(subparsers)
    _add_reproduce(subparsers)
    _add_bench(subparsers)
    for module in PLUGIN_COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def _add_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="versions, threads, data root and available models")
    parser.add_argument("--data", type=Path, help="data root (default: $KEXUE_DATA, else ../shared/data)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from kexue.info import collect_info, format_info

    info = collect_info(args.data)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info))
    return 0


def _add_reproduce(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reproduce", help="run a registered experiment (or all) and write reports")
    parser.add_argument("name", help="experiment name, or 'all'; 'list' shows them")
    parser.add_argument("--quick", action="store_true", help="toy sizes on embedded defaults, minutes in all")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs)")
    parser.add_argument("--data", type=Path, help="data root (default: $KEXUE_DATA, else ../shared/data)")
    parser.add_argument("--model", type=Path, help="model checkpoint folder for experiments that take one")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run_reproduce)


def _run_reproduce(args: argparse.Namespace) -> int:
    from kexue.experiments import registry, run_all, run_experiment

    experiments = registry()
    if args.name == "list":
        for experiment in experiments.values():
            print(f"{experiment.name:24s} {experiment.summary}")
        return 0
    options = dict(quick=args.quick, seed=args.seed, data_dir=args.data, model_path=args.model)
    if args.name == "all":
        results, report = run_all(args.out, **options)
        print(report.resolve())
        return 1 if any(result.status == "error" for result in results) else 0
    if args.name not in experiments:
        raise UsageError(f"unknown experiment {args.name!r}; choose from: all, {', '.join(experiments)}")
    result = run_experiment(args.name, args.out, **options)
    print(f"{result.experiment}: {result.status}, claims {result.claim_counts()}")
    print((Path(args.out) / args.name / "report.md").resolve())
    return 1 if result.status == "error" else 0


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="time kexue against the named anchor implementations")
    parser.add_argument("name", help="benchmark name, or 'all'; 'list' shows them")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from kexue.bench import benchmark_registry, format_comparisons
    from kexue.env import environment

    benchmarks = benchmark_registry()
    if args.name == "list":
        for benchmark in benchmarks.values():
            print(f"{benchmark.name:24s} against {benchmark.anchor}: {benchmark.summary}")
        return 0
    if args.name != "all" and args.name not in benchmarks:
        raise UsageError(f"unknown benchmark {args.name!r}; choose from: all, {', '.join(benchmarks)}")
    chosen = list(benchmarks.values()) if args.name == "all" else [benchmarks[args.name]]
    results = {}
    for benchmark in chosen:
        comparisons = benchmark.run(args.quick)
        results[benchmark.name] = {"anchor": benchmark.anchor, "cases": [c.to_dict() for c in comparisons]}
        if not args.json:
            print(format_comparisons(benchmark.name, comparisons), flush=True)
    if args.json:
        print(json.dumps({"env": environment(), "benchmarks": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
