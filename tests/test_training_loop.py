"""kexue.training: schedule, weight-decay groups, atomic checkpoints, time limit, exact and honest resume."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from kexue.training import (Trainer, TrainingConfig, TrainingInterrupted, batch_parts, latest_checkpoint,
                            list_checkpoints, load_model_state, param_groups)
from kexue.training.checkpoint import load_trainer_state, read_config


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


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
def test_lr_schedule_warms_up_from_zero_and_decays_to_zero(tmp_path, decay):
    """transformers' schedules: warm-up t/W, then linear, half-cosine or constant; lr 0 at max_steps."""
    Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, decay, decay=decay, log_every=1)).fit()
    records = [json.loads(line) for line in (tmp_path / decay / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["kind"] == "train"]  # after update t = 1..13
    expected = {"linear": 1e-2 * 3 / 10, "cosine": 1e-2 * 0.5 * (1 + np.cos(np.pi * 0.7)), "constant": 1e-2}
    assert lrs[:3] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2])
    assert lrs[9] == pytest.approx(expected[decay])  # t = 10
    assert lrs[-1] == pytest.approx(1e-2 if decay == "constant" else 0.0, abs=1e-12)


def test_weight_decay_only_on_matrices():
    model = make_model()
    decayed, kept = param_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and len(decayed["params"]) == 2
    assert all(p.dim() == 1 for p in kept["params"]) and len(kept["params"]) == 4  # 2 biases, norm gain/bias


class Crash(RuntimeError):
    pass


def assert_same_training_state(expected, actual, steps: int) -> None:
    """Weights and AdamW moments of two checkpoints are bitwise equal."""
    optimizer = [torch.load(path / "optimizer.bin", weights_only=False)["state"] for path in (expected, actual)]
    assert optimizer[0].keys() == optimizer[1].keys()
    for key in optimizer[0]:
        assert optimizer[0][key]["step"] == optimizer[1][key]["step"] == steps
        assert torch.equal(optimizer[0][key]["exp_avg"], optimizer[1][key]["exp_avg"])
        assert torch.equal(optimizer[0][key]["exp_avg_sq"], optimizer[1][key]["exp_avg_sq"])
    weights = load_model_state(expected)
    for name, value in load_model_state(actual).items():
        assert torch.equal(value, weights[name]), name


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
    full_state, cut_state = load_trainer_state(full.checkpoint), load_trainer_state(resumed.checkpoint)
    assert (cut_state["epoch"], cut_state["batch_index"]) == (full_state["epoch"], full_state["batch_index"]) == (2, 3)
    assert_same_training_state(full.checkpoint, resumed.checkpoint, steps=13)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 13  # the log has no duplicated steps


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    cfg = config(tmp_path, "run", keep_last=2)
    (tmp_path / "run" / "checkpoints" / "step-00000099.tmp").mkdir(parents=True)  # a save that was killed
    assert latest_checkpoint(tmp_path / "run") is None
    result = Trainer(make_model(), loss_fn, ShuffledBatches(), cfg).fit()
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names == ["step-00000012", "step-00000013"]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp*"))
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


def test_resume_with_a_changed_learning_rate_is_refused_unless_overridden(tmp_path):
    Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "run", max_steps=8)).fit()
    changed = config(tmp_path, "run", max_steps=8, learning_rate=5.0)
    with pytest.raises(ValueError, match=r"`learning_rate` was 0\.01 in the checkpoint, now 5\.0.*--resume-override learning_rate"):
        Trainer(make_model(), loss_fn, ShuffledBatches(), changed).fit(resume=True)

    overridden = config(tmp_path, "run", max_steps=13, learning_rate=5e-3, log_every=1,
                        resume_overrides=("learning_rate",))  # a longer run needs no override
    result = Trainer(make_model(), loss_fn, ShuffledBatches(), overridden).fit(resume=True)
    saved = read_config(result.checkpoint)
    assert saved["learning_rate"] == 5e-3 and saved["resume_overrides"] == ["learning_rate"]
    assert saved["resume_history"] == [{"step": 8, "field": "learning_rate", "from": 1e-2, "to": 5e-3},
                                       {"step": 8, "field": "max_steps", "from": 8, "to": 13}]
    lr_at_9 = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-5]
    assert lr_at_9["step"] == 9 and lr_at_9["lr"] == pytest.approx(5e-3 * 4 / 10)  # the new rate and schedule apply


def test_resume_with_other_settings_or_another_model_is_a_clear_error(tmp_path):
    Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "run", max_steps=4,
                                                             settings={"batch_size": 8})).fit()
    with pytest.raises(ValueError, match=r"`settings\.batch_size` was 8 in the checkpoint, now 16"):
        Trainer(make_model(), loss_fn, ShuffledBatches(),
                config(tmp_path, "run", max_steps=4, settings={"batch_size": 16})).fit(resume=True)
    wider = nn.Sequential(nn.Linear(6, 32), nn.LayerNorm(32), nn.Dropout(0.2), nn.Linear(32, 1))
    with pytest.raises(ValueError, match="different model"):
        Trainer(wider, loss_fn, ShuffledBatches(), config(tmp_path, "run", max_steps=4,
                                                          settings={"batch_size": 8})).fit(resume=True)


def test_sigterm_saves_a_checkpoint_and_resume_continues_identically(tmp_path):
    full = Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "full")).fit()
    calls = {"n": 0}

    def killed_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 6:  # SIGTERM arrives during step 6: the step finishes, then a checkpoint is saved
            os.kill(os.getpid(), signal.SIGTERM)
        return loss_fn(model, batch)

    with pytest.raises(TrainingInterrupted) as stopped:
        Trainer(make_model(), killed_loss, ShuffledBatches(), config(tmp_path, "cut")).fit()
    assert stopped.value.code == 128 + signal.SIGTERM and stopped.value.step == 6
    assert latest_checkpoint(tmp_path / "cut").name == "step-00000006"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed after training
    resumed = Trainer(make_model(), loss_fn, ShuffledBatches(), config(tmp_path, "cut")).fit(resume=True)
    assert resumed.step == 13
    assert_same_training_state(full.checkpoint, resumed.checkpoint, steps=13)


def test_gradient_accumulation_takes_the_same_steps(tmp_path):
    """A global batch of 8 in 4 micro-batches of 2 gives the step of the whole batch (no dropout)."""
    runs = {}
    for steps in (1, 4):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Linear(16, 1))
        runs[steps] = Trainer(model, loss_fn, ShuffledBatches(),
                              config(tmp_path, f"acc{steps}", gradient_accumulation_steps=steps)).fit()
        runs[steps] = (load_model_state(runs[steps].checkpoint), runs[steps].last_train["loss"])
    assert runs[1][1] == pytest.approx(runs[4][1], rel=1e-6)
    for name, value in runs[1][0].items():
        assert torch.allclose(value, runs[4][0][name], atol=1e-6), name
