"""Run ``kexue pretrain`` in this process (alone or as one of several started by torchrun) and record,
per call of the loss, the rows this process trained on and its local loss and weight.

Usage: python pretrain_worker.py RECORDS_DIR -- <kexue pretrain arguments>
Used by tests/test_distributed.py; writes RECORDS_DIR/rank-<r>.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import kexue.pretrain.task as task
from kexue.pretrain.cli import main


def recording(loss_fn, calls: list):
    def record(model, batch):
        loss, metrics = loss_fn(model, batch)
        rows = [hash(tuple(row)) for row in batch["input_ids"].tolist()]
        calls.append({"rows": rows, "loss": float(loss.detach()), "count": metrics["loss_count"]})
        return loss, metrics

    return record


if __name__ == "__main__":
    records, argv = Path(sys.argv[1]), sys.argv[3:]
    calls: list[dict] = []
    task.pretraining_loss = recording(task.pretraining_loss, calls)
    code = main(argv)
    records.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", 0))
    (records / f"rank-{rank}.json").write_text(json.dumps({"world_size": int(os.environ.get("WORLD_SIZE", 1)),
                                                           "calls": calls}))
    sys.exit(code)
