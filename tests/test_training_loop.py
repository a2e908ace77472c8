"""kexue.training: schedule, weight-decay groups, atomic checkpoints, time limit and exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from kexue.training import Trainer, TrainingConfig, latest_checkpoint, list_checkpoints, lr_multiplier, param_groups
from kexue.training.checkpoint import load_training_state


class ShuffledBatches:
    """5 batches per epoch whose order depends only on the epoch (like a sampler with set_epoch)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(40, 6, generator=generator)
        self.y = self.x @ torch.randn(6, 1, generator=generator)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(40, generator=torch.Generator().manual_seed(self.epoch))
        for chunk in order.split(8):
            yield {"x": self.x[chunk], "y": self.y[chunk]}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Dropout(0.2), nn.Linear(16, 1))


def loss_fn(model, batch):
    loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
    return loss, {"mse": float(loss.detach())}


def config(tmp_path, name, **changes) -> TrainingConfig:
    fields = dict(output_dir=str(tmp_path / name), max_steps=13, learning_rate=1e-2, warmup_steps=3,
                  save_every=4, log_every=2, keep_last=None, progress=False)
    return TrainingConfig(**(fields | changes))


def test_lr_schedule_warms_up_and_decays_to_zero():
    assert lr_multiplier(0, 4, 20) == pytest.approx(0.25)
    assert lr_multiplier(3, 4, 20) == pytest.approx(1.0)
    assert lr_multiplier(12, 4, 20) == pytest.approx(0.5)
    assert lr_multiplier(20, 4, 20, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_multiplier(12, 4, 20, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_weight_decay_only_on_matrices():
    model = make_model()
    decayed, kept = param_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and len(decayed["params"]) == 2
    assert all(p.dim() == 1 for p in kept["params"]) and len(kept["params"]) == 4  # 2 biases, norm gain/bias


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    data = ShuffledBatches()
    full = Trainer(make_model(), loss_fn, data, config(tmp_path, "full")).fit()
    calls = {"n": 0}

    def crashing_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 11:  # killed during step 11: the last complete checkpoint is step 8
            raise Crash
        return loss_fn(model, batch)

    with pytest.raises(Crash):
        Trainer(make_model(), crashing_loss, data, config(tmp_path, "cut")).fit()
    assert latest_checkpoint(tmp_path / "cut").name == "step-00000008"
    resumed_model = make_model()
    torch.manual_seed(123)  # the resumed run must not depend on the RNG state it starts with
    resumed = Trainer(resumed_model, loss_fn, data, config(tmp_path, "cut")).fit(resume=True)
    assert resumed.step == full.step == 13
    full_state, cut_state = load_training_state(full.checkpoint), load_training_state(resumed.checkpoint)
    assert (cut_state["epoch"], cut_state["batch_index"]) == (full_state["epoch"], full_state["batch_index"]) == (2, 3)
    full_opt, cut_opt = full_state["optimizer"]["state"], cut_state["optimizer"]["state"]
    assert full_opt.keys() == cut_opt.keys()
    for key in full_opt:
        assert full_opt[key]["step"] == cut_opt[key]["step"] == 13
        assert torch.equal(full_opt[key]["exp_avg"], cut_opt[key]["exp_avg"])
        assert torch.equal(full_opt[key]["exp_avg_sq"], cut_opt[key]["exp_avg_sq"])
    full_weights = torch.load(full.checkpoint / "model.pt")
    for name, value in torch.load(resumed.checkpoint / "model.pt").items():
        assert torch.equal(value, full_weights[name]), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 13  # the log has no duplicated steps


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    cfg = config(tmp_path, "run", keep_last=2)
    (tmp_path / "run" / "checkpoints" / "step-00000099.tmp-1").mkdir(parents=True)  # a save that was killed
    assert latest_checkpoint(tmp_path / "run") is None
    result = Trainer(make_model(), loss_fn, ShuffledBatches(), cfg).fit()
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names == ["step-00000012", "step-00000013"]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp-*"))
    assert json.loads((result.checkpoint / "config.json").read_text())["max_steps"] == 13
    assert (result.checkpoint / "metrics.jsonl").read_text().count('"kind": "train"') == 7


def test_max_minutes_stops_with_a_checkpoint_and_eval(tmp_path):
    evals = []
    cfg = config(tmp_path, "run", max_steps=1000, max_minutes=1e-9, save_every=None)
    result = Trainer(make_model(), loss_fn, ShuffledBatches(), cfg, eval_fn=lambda m: evals.append(1) or {"x": 1.0}).fit()
    assert result.stopped_by == "max_minutes" and result.step == 1
    assert result.checkpoint.name == "step-00000001" and result.last_eval == {"x": 1.0} and len(evals) == 1


def test_eval_runs_every_n_steps_in_eval_mode(tmp_path):
    modes = []

    def eval_fn(model):
        modes.append(model.training)
        return {"mse": 0.0}

    Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "run", eval_every=5), eval_fn=eval_fn).fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [5, 10, 13]
    assert modes == [False, False, False]
    train = [r for r in records if r["kind"] == "train"]
    assert {"loss", "mse", "lr", "grad_norm", "steps_per_sec"} <= train[0].keys()


@pytest.mark.parametrize("field, value", [("max_steps", 0), ("warmup_steps", 50), ("decay", "step"),
                                          ("mixed_precision", "fp16"), ("grad_clip", -1.0)])
def test_config_errors_name_the_argument(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        config(tmp_path, "run", **{field: value})


def test_a_fresh_run_refuses_a_directory_with_checkpoints(tmp_path):
    cfg = config(tmp_path, "run", max_steps=4)
    Trainer(make_model(), loss_fn, ShuffledBatches(), cfg).fit()
    with pytest.raises(ValueError, match="already holds checkpoints"):
        Trainer(make_model(), loss_fn, ShuffledBatches(), cfg).fit()
    assert Trainer(make_model(), loss_fn, ShuffledBatches(), cfg).fit(resume=True).step == 4  # nothing left to do


def test_one_process_trains_in_bf16_then_in_fp32(tmp_path):
    """``kexue reproduce all`` trains a bf16 fine-tuning and then fp32 models in one process."""
    bf16 = Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "bf16", mixed_precision="bf16")).fit()
    fp32 = Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "fp32")).fit()
    again = Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "again")).fit()
    assert bf16.step == fp32.step == 13
    assert fp32.last_train["mse"] == again.last_train["mse"]  # fp32 runs stay exactly reproducible
    assert fp32.last_train["mse"] != bf16.last_train["mse"]  # and the bf16 run really used autocast
