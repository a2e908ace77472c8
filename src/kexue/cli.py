"""The ``kexue`` command line: a thin layer over the library and the experiments.

Built-in commands: ``info``, ``data``, ``reproduce``, ``bench``. A capability adds its own
sub-command with one line in ``PLUGIN_COMMANDS``: the named module exposes
``add_parser(subparsers)``, which registers an argparse sub-parser whose ``func(args) -> int`` does
the work.

Rules every sub-command follows (``tests/test_cli_help.py`` checks them on the whole tree):

- every option has help text, and ``--help`` shows its default (:class:`HelpFormatter` adds it;
  every sub-parser is an :class:`ArgumentParser` and gets it without asking);
- one name per concept: ``--max-steps``, ``--model`` (a checkpoint folder, to start from or to
  use), ``--data`` (the data root), ``--out`` (the output folder), ``--seed``;
- an option taking several values (``nargs="+"``/``"*"``) never sits beside positionals, where it
  would swallow them; there, take them in one token with ``type=comma_separated(int)``;
- ``--data DIR`` that is not a directory stops the command with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

# One line per capability that brings its own sub-command.
PLUGIN_COMMANDS = (
    "kexue.pretrain.cli",
    "kexue.retrieval.cli",
    "kexue.univae.cli",
    "kexue.zero_shot.cli",
)


class UsageError(Exception):
    """A problem with the command's arguments: printed as one line, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (unless it is None, False, or the help already says it) and
    keeps descriptions' line breaks, so that a module docstring's examples stay readable."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in help_text or not action.option_strings:
            return help_text
        default = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{help_text} (default: {default})".strip()


class ArgumentParser(argparse.ArgumentParser):
    """The parser class of ``kexue`` and, through ``add_subparsers``, of every sub-command.

    A plain argparse formatter asked for by a plugin (``RawDescriptionHelpFormatter``) is upgraded
    to :class:`HelpFormatter`, which does the same and shows the defaults.
    """

    def __init__(self, *args: Any, formatter_class: type = HelpFormatter, **kwargs: Any) -> None:
        if issubclass(HelpFormatter, formatter_class):
            formatter_class = HelpFormatter
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    data = getattr(args, "data", None)
    if data is not None and not Path(data).expanduser().is_dir():
        parser.exit(2, f"kexue {args.command}: error: --data {data}: no such directory\n")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    from kexue.data.readers import KexueDataError

    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"kexue {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KexueDataError) as exc:
        # Library errors carry the file, line or argument at fault; a traceback adds nothing.
        if args.verbose:
            raise
        print(f"kexue {args.command}: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    from kexue import __version__

    parser = ArgumentParser(
        prog="kexue",
        description="Techniques from the 2021 Scientific Spaces (kexue.fm) posts, and reproductions of their claims.",
    )
    parser.add_argument("--version", action="version", version=f"kexue {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_info(subparsers)
    _add_data(subparsers)
    _add_reproduce(subparsers)
    _add_bench(subparsers)
    for module in PLUGIN_COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def _add_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="versions, threads, data root and available models")
    add_data_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_run_info)


def comma_separated(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """An argparse ``type`` for ``--option a,b,c``: several values in one token, so none is swallowed.

    Example:
        >>> comma_separated(int)("0,2")
        [0, 2]
    """

    def parse(text: str) -> list[Any]:
        try:
            return [convert(item) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {convert.__name__} values, got {text!r}")

    parse.__name__ = f"comma-separated {convert.__name__}"
    return parse


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data DIR``, the same for every command that reads data sets."""
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="data root (default: $KEXUE_DATA, else per data set: the user cache, ../shared/data, "
                             "the embedded samples; `kexue info` shows which)")


def _run_info(args: argparse.Namespace) -> int:
    from kexue.info import collect_info, format_info

    info = collect_info(args.data)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info))
    return 0


def _add_reproduce(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reproduce", help="run a registered experiment (or all) and write reports")
    parser.add_argument("name", help="experiment name, or 'all'; 'list' shows them")
    parser.add_argument("--quick", action="store_true", help="toy sizes on embedded defaults, minutes in all")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder")
    add_data_argument(parser)
    parser.add_argument("--model", type=Path, help="model checkpoint folder for experiments that take one "
                                                     "(default: each experiment's own)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.set_defaults(func=_run_reproduce)


def _run_reproduce(args: argparse.Namespace) -> int:
    from kexue.data.root import resolve_data_root
    from kexue.experiments import registry, run_all, run_experiment

    experiments = registry()
    if args.name == "list":
        for experiment in experiments.values():
            print(f"{experiment.name:24s} {experiment.summary}")
        return 0
    resolve_data_root(args.data)  # a named root (--data, KEXUE_DATA) that does not exist stops here
    options = dict(quick=args.quick, seed=args.seed, data_dir=args.data, model_path=args.model)
    if args.name == "all":
        results, report = run_all(args.out, **options)
        print(report.resolve())
        return 1 if any(result.status != "ok" for result in results) else 0
    if args.name not in experiments:
        raise UsageError(f"unknown experiment {args.name!r}; choose from: all, {', '.join(experiments)}")
    result = run_experiment(args.name, args.out, **options)
    print(f"{result.experiment}: {result.status}, claims {result.claim_counts()}")
    print((Path(args.out) / args.name / "report.md").resolve())
    return 0 if result.status == "ok" else 1


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="list the data sets and where they are found; fetch the full sets")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="each data set: where it was found, rows, checksum state")
    add_data_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_run_data_list)
    fetch = commands.add_parser("fetch", help="download full data sets into the user cache ($KEXUE_CACHE/data)")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="data sets to fetch (`kexue data list`), or 'all'")
    fetch.add_argument("--mirror", metavar="URL", help="a mirror with the <repository>/<commit>/<path> layout "
                                                       "(default: $KEXUE_DATA_MIRROR, else raw.githubusercontent.com)")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bars")
    fetch.set_defaults(func=_run_data_fetch)


def _run_data_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from kexue.data.fetch import dataset_names, dataset_status
    from kexue.data.root import resolve_data_root

    root = resolve_data_root(args.data)
    statuses = [dataset_status(root, name) for name in dataset_names()]
    if args.json:
        print(json.dumps([asdict(s) for s in statuses], indent=2, ensure_ascii=False, default=str))
        return 0
    print(f"data root: {root}")
    print(f"{'data set':18s} {'found in':9s} {'files':>9s} {'rows':>9s}  {'checksums':20s} path")
    for s in statuses:
        files = f"{s.files}/{s.catalogue_files}"
        print(f"{s.name:18s} {s.origin or 'missing':9s} {files:>9s} {s.rows:>9,}  {s.checksums:20s} {s.path or '-'}")
    return 0


def _run_data_fetch(args: argparse.Namespace) -> int:
    from kexue.data.fetch import data_sources, fetch

    sources = data_sources()
    unknown = [name for name in args.names if name != "all" and name not in sources]
    if unknown:
        raise UsageError(f"unknown data set {unknown[0]!r}; choose from: all, {', '.join(sources)}")
    names = [name for name in sources if sources[name].files] if "all" in args.names else args.names
    for name in names:
        folder = fetch(name, base_url=args.mirror, progress=not args.no_progress)
        print(f"{name}: {folder}")
        for path, why in sources[name].not_fetchable:
            print(f"  not fetched: {path} ({why})")
    if "all" in args.names:
        for source in sources.values():
            if not source.files:
                print(f"{source.name}: not fetchable: {'; '.join(why for _, why in source.not_fetchable)}")
    return 0


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
