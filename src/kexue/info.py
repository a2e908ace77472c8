"""``kexue info``: what this installation has: versions, threads, data and real models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kexue.checkpoints import available_models
from kexue.env import environment


def collect_info(data_dir: Path | None = None) -> dict[str, Any]:
    """Versions, threads, the data root (found or not, with the datasets in it) and available models."""
    from kexue.bench import benchmark_registry
    from kexue.data.root import DataNotFoundError, resolve_data_root
    from kexue.experiments import registry

    try:
        root = resolve_data_root(data_dir)
        data = {"root": str(root), "found": True, "datasets": sorted(p.name for p in root.iterdir() if p.is_dir())}
    except DataNotFoundError as exc:
        data = {"root": None, "found": False, "message": str(exc)}
    return {
        "env": environment(),
        "data": data,
        "models": available_models(),
        "experiments": list(registry()),
        "benchmarks": list(benchmark_registry()),
    }


def format_info(info: dict[str, Any]) -> str:
    env = info["env"]
    lines = [
        f"python {env['python']} on {env['platform']}",
        f"cpu: {env['cpu']} ({env['cpu_count']} cores), torch threads: {env['torch_threads']}, cuda: {env['cuda']}",
        "packages: " + ", ".join(f"{name} {version}" for name, version in env["packages"].items()),
    ]
    data = info["data"]
    if data["found"]:
        lines.append(f"data root: {data['root']} ({', '.join(data['datasets'])})")
    else:
        lines.append(f"data root: not found. {data['message']}")
    for name, path in info["models"].items():
        lines.append(f"model {name}: {path or 'not available'}")
    lines.append("experiments: " + ", ".join(info["experiments"]))
    lines.append("benchmarks: " + ", ".join(info["benchmarks"]))
    return "\n".join(lines)
