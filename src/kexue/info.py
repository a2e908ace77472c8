"""``kexue info``: what this installation has: versions, threads, data and real models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kexue.checkpoints import available_models
from kexue.env import environment


def collect_info(data_dir: Path | None = None) -> dict[str, Any]:
    """Versions, threads, the data root and which folder serves each data set, and available models."""
    from kexue.bench import benchmark_registry
    from kexue.data.fetch import dataset_names
    from kexue.data.root import DataNotFoundError, data_origin, resolve_data_root
    from kexue.experiments import registry

    try:
        root = resolve_data_root(data_dir)
        found = {name: data_origin(root, name) for name in dataset_names()}
        data = {"root": str(root), "found": True,
                "datasets": {name: {"origin": where[0], "path": str(where[1])} if where else None
                             for name, where in found.items()}}
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
        lines.append(f"data root: {data['root']}")
        for name, where in data["datasets"].items():
            lines.append(f"  {name:18s} {where['origin'] + ': ' + where['path'] if where else 'not found'}")
    else:
        lines.append(f"data root: not found. {data['message']}")
    for name, path in info["models"].items():
        lines.append(f"model {name}: {path or 'not available'}")
    lines.append("experiments: " + ", ".join(info["experiments"]))
    lines.append("benchmarks: " + ", ".join(info["benchmarks"]))
    return "\n".join(lines)
