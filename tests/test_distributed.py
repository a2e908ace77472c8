"""Several processes: 2 CPU processes under torchrun (gloo) take the steps of 1 process.

The 2-process run starts real processes (about 40 s on 2 cores, mostly imports); the 1-process
reference runs in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kexue.pretrain.task as task
from kexue.pretrain.cli import main
from kexue.training import batch_parts, distributed_state, load_model_state

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_worker import recording  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "pretrain"
TINY = '{"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "dropout": 0.0, "attention_dropout": 0.0}'


def pretrain_args(out: Path) -> list[str]:
    return ["--input", str(FIXTURES / "corpus.jsonl"), "--vocab", str(FIXTURES / "vocab.txt"), "--config", TINY,
            "--seq-len", "32", "--batch-size", "8", "--eval-docs", "4", "--max-steps", "20", "--lr", "1e-3",
            "--warmup", "2", "--log-every", "1", "--save-every", "20", "--eval-every", "20", "--no-progress",
            "--threads", "1", "--out", str(out)]


def train_records(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train"]


def test_two_processes_under_torchrun_match_one_process(tmp_path, monkeypatch):
    single_calls: list[dict] = []
    monkeypatch.setattr(task, "pretraining_loss", recording(task.pretraining_loss, single_calls))
    assert main(pretrain_args(tmp_path / "one")) == 0
    monkeypatch.undo()

    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = Path(__file__).parent / "pretrain_worker.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
               str(tmp_path / "records"), "--", *pretrain_args(tmp_path / "two")]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    ranks = [json.loads((tmp_path / "records" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]  # two ranks, not two rank-0s
    assert len(single_calls) == len(ranks[0]["calls"]) == len(ranks[1]["calls"]) == 20
    for single, first, second in zip(single_calls, *(rank["calls"] for rank in ranks)):
        assert not set(first["rows"]) & set(second["rows"])  # disjoint shards ...
        assert first["rows"] + second["rows"] == single["rows"]  # ... that make up the global batch

    logged_one, logged_two = train_records(tmp_path / "one"), train_records(tmp_path / "two")
    for step, (first, second) in enumerate(zip(*(rank["calls"] for rank in ranks))):
        global_mean = (first["loss"] * first["count"] + second["loss"] * second["count"]) / (first["count"] + second["count"])
        assert logged_two[step]["loss"] == pytest.approx(global_mean, rel=1e-6)
        assert logged_two[step]["loss"] == pytest.approx(logged_one[step]["loss"], abs=1e-5)

    one = load_model_state(tmp_path / "one" / "checkpoints" / "step-00000020")
    two = load_model_state(tmp_path / "two" / "checkpoints" / "step-00000020")
    assert one.keys() == two.keys()
    assert max(float((one[name] - two[name]).abs().max()) for name in one) < 1e-5
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()  # the main process exported


def test_batch_parts_cover_the_batch_disjointly_and_pad_empty_parts():
    batch = {"x": torch.arange(7)[:, None], "pair": (torch.arange(7), torch.zeros(7)), "task": "mlm"}
    rows = []
    for rank in range(2):
        for part, empty in batch_parts(batch, rank, 2, accumulation_steps=2):
            assert not empty and part["task"] == "mlm" and torch.equal(part["x"][:, 0], part["pair"][0])
            rows += part["x"][:, 0].tolist()
    assert rows == list(range(7))
    tiny = batch_parts({"x": torch.arange(2)}, 0, 3)  # 2 rows over 3 processes: rows [0, 0), [0, 1), [1, 2)
    assert tiny[0][1] and tiny[0][0]["x"].tolist() == [0]
    with pytest.raises(ValueError, match="first dimension"):
        batch_parts({"x": torch.zeros(4, 2), "scale": torch.tensor(2.0)}, 0, 2)


def test_accelerate_launch_cpu_with_several_processes_is_refused(monkeypatch):
    """``accelerate launch --cpu --num_processes 2`` starts one process: say so instead of training alone."""
    for name in ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(ValueError, match="torchrun --nproc_per_node N"):
        distributed_state()
