"""``kexue reproduce flatnce --quick`` on a tiny random model and a synthetic STS-B data root, and the claim wiring."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import torch

from kexue.experiments import run_experiment
from kexue.experiments.flatnce import (MIN_GAIN, QUICK, REGIME_SHARE, _training_claims, arm_study, failure_threshold,
                                       float_sweep)
from kexue.models import Transformer, TransformerConfig

torch.set_num_threads(1)

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "data"
CHARACTERS = list("一个男人女在弹吉他狗猫吃饭跑步公园街上球")
TRAINING_CLAIMS = {"zh-simcse-reaches-float-regime", "toy-flatnce-beats-infonce", "toy-float-error-costs-infonce",
                   "toy-float-error-immaterial", "toy-flatnce-beats-float64-infonce",
                   "toy-per-anchor-direction-equal", "toy-batch-direction-equal"}


def _tiny_roformer(folder: Path) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARACTERS]
    (folder.parent / "tiny-vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=len(vocab), hidden_size=16, num_layers=1, num_heads=2,
                               intermediate_size=32, max_positions=64, position="rope")
    Transformer(config).save_pretrained(folder, vocab_file=folder.parent / "tiny-vocab.txt")
    return folder


def _synthetic_root(root: Path, pairs: int = 40) -> Path:
    rng = random.Random(0)
    chinese = [("".join(rng.choices(CHARACTERS, k=7)), "".join(rng.choices(CHARACTERS, k=6)), rng.randint(0, 5))
               for _ in range(pairs)]
    (root / "sts_zh" / "STS-B").mkdir(parents=True)
    for split in ("train", "valid"):
        lines = [f"{a}\t{b}\t{label}" for a, b, label in chinese]
        (root / "sts_zh" / "STS-B" / f"STS-B.{split}.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _claims(out: Path) -> tuple[dict, dict]:
    saved = json.loads((out / "flatnce" / "result.json").read_text(encoding="utf-8"))
    return saved, {claim["id"]: claim for claim in saved["claims"]}


def test_quick_run_reports_every_claim_and_leaves_training_claims_inconclusive(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_SMALL_ZH", str(_tiny_roformer(tmp_path / "tiny-roformer")))
    result = run_experiment("flatnce", tmp_path / "out", quick=True, data_dir=_synthetic_root(tmp_path / "data"))
    assert result.status == "ok", result.error
    saved, claims = _claims(tmp_path / "out")
    assert set(claims) == TRAINING_CLAIMS | {
        "float32-infonce-error-below-xi-star", "float32-flatnce-error-at-xi-star",
        "adam-scale-invariant-while-cg-above-eps", "adam-eps-damps-when-cg-below-eps",
        "zh-per-anchor-direction-equal", "zh-batch-direction-equal"}
    for name in TRAINING_CLAIMS:  # toy training decides nothing
        assert claims[name]["needs_training"] and claims[name]["verdict"] == "inconclusive", name
        assert claims[name]["reason"] == "quick mode"
    for name in ("float32-infonce-error-below-xi-star", "float32-flatnce-error-at-xi-star",
                 "adam-scale-invariant-while-cg-above-eps", "adam-eps-damps-when-cg-below-eps",
                 "zh-per-anchor-direction-equal"):
        assert claims[name]["verdict"] == "holds", (name, claims[name])
    assert 1e-9 <= claims["float32-infonce-error-below-xi-star"]["measured"] <= 1e-5  # near float32's epsilon
    assert claims["toy-flatnce-beats-infonce"]["interval"]["n"] == len(QUICK.seeds)
    assert {row["arm"] for row in saved["tables"]["toy: arms"]} == {"InfoNCE float32", "InfoNCE exact (float64)",
                                                                    "FlatNCE float32"}
    assert saved["metrics"]["zh simcse probe"]["steps"] == QUICK.simcse_steps
    for plot in ("gradient_error_vs_xi.png", "adam_invariance_vs_eps.png", "update_direction.png",
                 "paired_differences.png"):
        assert (tmp_path / "out" / "flatnce" / plot).stat().st_size > 0


def test_without_the_chinese_checkpoint_the_probe_is_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr("kexue.checkpoints.small_zh_path", lambda: None)
    monkeypatch.setattr("kexue.experiments.flatnce.QUICK", replace(QUICK, toy_steps=10, direction_batches=2))
    monkeypatch.setattr("kexue.experiments.flatnce.ADAM_MULTIPLIERS", (1.0, 1e-10))
    result = run_experiment("flatnce", tmp_path / "out", quick=True, data_dir=FIXTURE_ROOT)
    assert result.status == "ok", result.error
    saved, claims = _claims(tmp_path / "out")
    assert not [name for name in claims if name.startswith("zh-")]
    assert "toy-flatnce-beats-infonce" in claims
    assert "SimCSE probe skipped" in " ".join(saved["notes"])


def test_lr_is_chosen_per_loss_and_the_exact_control_takes_infonce_rate():
    calls = []

    def train(arm, learning_rate, seed, evaluate_on):
        calls.append((arm, learning_rate, seed, evaluate_on))
        best = {"info_nce": 1e-3, "flat_nce": 3e-3}.get(arm)
        return {"arm": arm, "seed": seed, "learning_rate": learning_rate,
                "spearman": 1.0 - abs(learning_rate - best) if best else 0.0}

    study = arm_study(train, (3e-4, 1e-3, 3e-3), QUICK)
    assert study["chosen_learning_rate"] == {"info_nce": 1e-3, "flat_nce": 3e-3, "info_nce_fp64": 1e-3}
    assert {call[0] for call in calls if call[3] == "tune"} == {"info_nce", "flat_nce"}
    assert all(call[2] == QUICK.tune_seed for call in calls if call[3] == "tune")
    dev = [call for call in calls if call[3] == "dev"]
    assert len(dev) == 3 * len(QUICK.seeds) and {call[2] for call in dev} == set(QUICK.seeds)


def _study(spearman: dict[str, list[float]], share: float) -> dict:
    runs = [{"arm": arm, "seed": seed, "spearman": value, "share_steps_grad_error_over_10pct": share}
            for arm, values in spearman.items() for seed, value in enumerate(values)]
    return {"runs": runs}


def test_training_verdicts_follow_the_intervals_and_the_precondition():
    identical = [0.90, 0.91, 0.92, 0.93, 0.94]
    study = _study({"info_nce": identical, "info_nce_fp64": identical,
                    "flat_nce": [value + 0.02 + 0.001 * i for i, value in enumerate(identical)]}, share=0.5)
    claims = {claim.id: claim for claim in _training_claims("toy", "toy", study, "steps")}
    assert claims["toy-float-error-costs-infonce"].verdict == "fails"  # a zero difference is no gain
    assert claims["toy-float-error-immaterial"].verdict == "holds"
    assert claims["toy-flatnce-beats-infonce"].verdict == "holds"
    assert claims["toy-flatnce-beats-infonce"].measured > MIN_GAIN
    noisy = _study({"info_nce": identical, "info_nce_fp64": identical,
                    "flat_nce": [value + delta for value, delta in zip(identical, (0.03, -0.03, 0.02, -0.02, 0.01))]},
                   share=0.5)
    assert {c.id: c for c in _training_claims("toy", "toy", noisy, "steps")}[
        "toy-flatnce-beats-infonce"].verdict == "inconclusive"  # the interval straddles the threshold
    outside = _study({"info_nce": identical, "info_nce_fp64": identical, "flat_nce": identical},
                     share=REGIME_SHARE / 2)
    claims = {claim.id: claim for claim in _training_claims("toy", "toy", outside, "steps")}
    assert claims["toy-float-error-costs-infonce"].verdict == "inconclusive"  # not in the post's regime
    assert "precondition not met" in claims["toy-float-error-costs-infonce"].reason


def test_float_sweep_thresholds_are_ordered_by_precision():
    sweep = float_sweep(rows=4)
    # fewer mantissa bits fail earlier (at larger ξ): float32 < float16 < bfloat16
    assert failure_threshold(sweep, "float32", 16) < failure_threshold(sweep, "float16", 16) \
        < failure_threshold(sweep, "bfloat16", 16)
    assert max(row["flat_nce_error"] for row in sweep if row["dtype"] == "float32") < 1e-5
