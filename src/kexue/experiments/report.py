"""Markdown rendering of experiment results: one report.md per experiment and REPORT.md for a batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from kexue.experiments.harness import RunResult


def format_value(value: Any) -> str:
    """A compact, human-readable cell: 4 significant digits for floats, JSON for containers."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Render rows (dicts) as a GitHub markdown table; columns are the union of keys in order."""
    if not rows:
        return "(empty)\n"
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = (format_value(row.get(column)).replace("|", "\\|").replace("\n", " ") for column in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flatten(metrics: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def claims_table(claims: list[dict[str, Any]]) -> str:
    rows = [
        {
            "claim": claim["id"],
            "statement": claim["statement"],
            "expected": claim["expected"],
            "measured": claim["measured"],
            "holds": "✅ holds" if claim["holds"] else "❌ fails",
        }
        for claim in claims
    ]
    return markdown_table(rows)


def experiment_report(result: RunResult, summary: str) -> str:
    """The report.md of one experiment."""
    mode = "quick" if result.quick else "full"
    parts = [
        f"# {result.experiment}\n",
        f"{summary}\n",
        f"- status: **{result.status}** ({mode} run, {result.seconds:.1f} s, seed {result.seed})",
        f"- command: `{result.command}`",
        f"- commit: `{result.env.get('kexue_commit')}`; torch {result.env['packages'].get('torch')}, "
        f"{result.env.get('torch_threads')} threads on {result.env.get('cpu')}\n",
    ]
    if result.status == "no-data":
        parts.append(f"**No data found**: {result.error}\n")
    elif result.status == "error":
        parts.append(f"**Error** — the experiment raised:\n\n```\n{result.error}```\n")
    if result.claims:
        parts += [
            f"## Claims ({result.claims_held} held, {result.claims_failed} failed)\n",
            claims_table(result.claims),
        ]
    for title, rows in result.tables.items():
        parts += [f"## {title}\n", markdown_table(rows)]
    if result.plots:
        parts.append("## Plots\n")
        parts += [f"![{Path(plot).stem}]({plot})\n" for plot in result.plots]
    if result.notes:
        parts.append("## Notes\n")
        parts += [f"- {note}" for note in result.notes]
        parts.append("")
    metrics = [{"metric": name, "value": value} for name, value in _flatten(result.metrics)]
    if metrics and len(metrics) <= 200:
        parts += ["## Metrics\n", markdown_table(metrics)]
    elif metrics:
        parts.append(f"## Metrics\n\n{len(metrics)} values: see result.json.\n")
    return "\n".join(parts)


def batch_report(results: list[RunResult], out: Path) -> str:
    """REPORT.md for ``kexue reproduce all``: a summary line and one row per experiment."""
    held = sum(result.claims_held for result in results)
    failed = sum(result.claims_failed for result in results)
    errored = [result.experiment for result in results if result.status == "error"]
    no_data = [result.experiment for result in results if result.status == "no-data"]
    quick = "quick" if all(result.quick for result in results) else "full"
    summary = f"**{held} claims held, {failed} failed** across {len(results)} experiments ({quick} mode)"
    if errored:
        summary += f"; errored: {', '.join(errored)}"
    if no_data:
        summary += f"; no data found for: {', '.join(no_data)}"
    rows = [
        {
            "experiment": f"[{result.experiment}]({result.experiment}/report.md)",
            "status": result.status,
            "claims held": result.claims_held,
            "claims failed": result.claims_failed,
            "seconds": round(result.seconds, 1),
        }
        for result in results
    ]
    parts = ["# kexue reproductions\n", summary + ".\n", markdown_table(rows)]
    for result in results:
        if result.status == "no-data":
            parts.append(f"- {result.experiment}: no data found ({result.error})")
        if result.claims:
            parts += [f"\n## {result.experiment}\n", claims_table(result.claims)]
    return "\n".join(parts) + "\n"
