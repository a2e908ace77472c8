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


def format_verdict(claim: dict[str, Any]) -> str:
    """``✅ holds``, ``❌ fails`` or ``❔ inconclusive (why)``; reads old claims (``holds`` only) too."""
    verdict = claim.get("verdict") or ("holds" if claim.get("holds") else "fails")
    if verdict == "holds":
        return "✅ holds"
    if verdict == "fails":
        return "❌ fails"
    reason = claim.get("reason")
    return f"❔ inconclusive ({reason})" if reason else "❔ inconclusive"


def format_interval(interval: dict[str, Any] | None) -> str:
    """``[0.12, 0.34] (n=5, t)``; empty when the claim has no interval."""
    if not interval:
        return ""
    low = "-∞" if interval["low"] is None else format_value(interval["low"])
    high = "∞" if interval["high"] is None else format_value(interval["high"])
    return f"[{low}, {high}] (n={interval['n']}, {interval['method']})"


def _post_rows(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "claim": claim["id"],
            "the post says": claim["statement"],
            "post's figure": claim.get("post_figure") or "",
            "ours": claim["measured"],
            "95% interval": format_interval(claim.get("interval")),
            "verdict": format_verdict(claim),
        }
        for claim in claims
    ]


def claims_table(claims: list[dict[str, Any]]) -> str:
    """Our checks: statement, expected, measured, interval and verdict per claim."""
    rows = [
        {
            "claim": claim["id"],
            "statement": claim["statement"],
            "expected": claim["expected"],
            "measured": claim["measured"],
            "95% interval": format_interval(claim.get("interval")),
            "verdict": format_verdict(claim),
        }
        for claim in claims
    ]
    if not any(row["95% interval"] for row in rows):
        for row in rows:
            del row["95% interval"]
    return markdown_table(rows)


def _is_post_claim(claim: dict[str, Any]) -> bool:
    return claim.get("source") == "post"


def _claims_sections(result: RunResult) -> list[str]:
    post_claims = [claim for claim in result.claims if _is_post_claim(claim)]
    our_claims = [claim for claim in result.claims if not _is_post_claim(claim)]
    parts = [f"**Claims: {result.claim_counts()}.**\n"]
    if post_claims:
        parts += ["## The post's claims\n", markdown_table(_post_rows(post_claims))]
        quotes = [f"- `{claim['id']}`: “{claim['quote']}”" for claim in post_claims if claim.get("quote")]
        if quotes:
            parts += ["The post, quoted:\n", *quotes, ""]
    if our_claims:
        parts += ["## Our checks\n", claims_table(our_claims)]
    return parts


def experiment_report(result: RunResult, summary: str) -> str:
    """The report.md of one experiment: the post's claims first, then our checks, tables, plots,
    notes, metrics and how the run was made."""
    mode = "quick" if result.quick else "full"
    parts = [f"# {result.experiment}\n", f"{summary}\n"]
    if result.post:
        parts.append(f"Post: {result.post}\n")
    parts.append(f"Status: **{result.status}** ({mode} run, {result.seconds:.1f} s, seed {result.seed}).\n")
    if result.status == "no-data":
        parts.append(f"**No data found**: {result.error}\n")
    elif result.status == "error":
        parts.append(f"**Error** — the experiment raised:\n\n```\n{result.error}```\n")
    if result.claims:
        parts += _claims_sections(result)
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
    parts += [
        "## Run\n",
        f"- command: `{result.command}`",
        f"- commit: `{result.env.get('kexue_commit')}`; torch {result.env['packages'].get('torch')}, "
        f"{result.env.get('torch_threads')} threads on {result.env.get('cpu')}\n",
    ]
    return "\n".join(parts)


def _headline_rows(results: list[RunResult]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        link = f"[{result.experiment}]({result.experiment}/report.md)"
        post_claims = [claim for claim in result.claims if _is_post_claim(claim)]
        for claim in post_claims:
            rows.append({"post": result.post or "—", "experiment": link, "headline claim": claim["statement"],
                         "post's figure": claim.get("post_figure") or "", "ours": claim["measured"],
                         "verdict": format_verdict(claim)})
        if not post_claims:
            rows.append({"post": result.post or "—", "experiment": link,
                         "headline claim": "(no claim marked as the post's yet; see the report)",
                         "post's figure": "", "ours": "", "verdict": f"{result.status}: {result.claim_counts()}"})
    return rows


def batch_report(results: list[RunResult], out: Path) -> str:
    """REPORT.md for ``kexue reproduce all``: the posts' headline claims with their verdicts, then
    one row per experiment."""
    held = sum(result.claims_held for result in results)
    failed = sum(result.claims_failed for result in results)
    inconclusive = sum(result.claims_inconclusive for result in results)
    errored = [result.experiment for result in results if result.status == "error"]
    no_data = [result.experiment for result in results if result.status == "no-data"]
    quick = "quick" if all(result.quick for result in results) else "full"
    summary = (f"**{held} claims held, {failed} failed, {inconclusive} inconclusive** across {len(results)} "
               f"experiments ({quick} mode)")
    if errored:
        summary += f"; errored: {', '.join(errored)}"
    if no_data:
        summary += f"; no data found for: {', '.join(no_data)}"
    rows = [
        {
            "experiment": f"[{result.experiment}]({result.experiment}/report.md)",
            "status": result.status,
            "held": result.claims_held,
            "failed": result.claims_failed,
            "inconclusive": result.claims_inconclusive,
            "seconds": round(result.seconds, 1),
        }
        for result in results
    ]
    parts = ["# kexue reproductions\n", "## The posts' headline claims\n", markdown_table(_headline_rows(results)),
             "## Experiments\n", summary + ".\n", markdown_table(rows)]
    parts += [f"- {result.experiment}: no data found ({result.error})" for result in results
              if result.status == "no-data"]
    return "\n".join(parts) + "\n"
