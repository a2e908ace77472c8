"""``kexue reproduce flatnce --quick`` on tiny random models and a synthetic STS-B data root."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from kexue.experiments import run_experiment
from kexue.experiments.flatnce import QUICK, failure_threshold, float_sweep
from kexue.models import Transformer, TransformerConfig

torch.set_num_threads(1)

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "data"
WORDS = "a man woman dog cat is are playing running eating the guitar ball food on in park street".split()
CHARACTERS = list("一个男人女在弹吉他狗猫吃饭跑步公园街上球")


def _tiny_model(folder: Path, position: str) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *CHARACTERS]
    (folder.parent / f"{folder.name}-vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=len(vocab), hidden_size=16, num_layers=1, num_heads=2,
                               intermediate_size=32, max_positions=64, position=position)
    Transformer(config).save_pretrained(folder, vocab_file=folder.parent / f"{folder.name}-vocab.txt")
    return folder


def _synthetic_root(root: Path, pairs: int = 40) -> Path:
    rng = random.Random(0)
    english = [(" ".join(rng.choices(WORDS, k=6)), " ".join(rng.choices(WORDS, k=5)), rng.uniform(0, 5))
               for _ in range(pairs)]
    chinese = [("".join(rng.choices(CHARACTERS, k=7)), "".join(rng.choices(CHARACTERS, k=6)), rng.randint(0, 5))
               for _ in range(pairs)]
    (root / "en" / "stsb").mkdir(parents=True)
    (root / "sts_zh" / "STS-B").mkdir(parents=True)
    for split in ("train", "dev"):
        lines = [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score:.3f}\t{a}\t{b}"
                 for i, (a, b, score) in enumerate(english)]
        (root / "en" / "stsb" / f"sts-{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split in ("train", "valid"):
        lines = [f"{a}\t{b}\t{label}" for a, b, label in chinese]
        (root / "sts_zh" / "STS-B" / f"STS-B.{split}.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _result(out: Path) -> dict:
    return json.loads((out / "flatnce" / "result.json").read_text(encoding="utf-8"))


def test_quick_run_trains_both_languages_and_reports_every_claim(tmp_path, monkeypatch):
    english = _tiny_model(tmp_path / "tiny-bert", "absolute")
    monkeypatch.setenv("KEXUE_SMALL_ZH", str(_tiny_model(tmp_path / "tiny-roformer", "rope")))
    result = run_experiment("flatnce", tmp_path / "out", quick=True, data_dir=_synthetic_root(tmp_path / "data"),
                            model_path=english)
    assert result.status == "ok", result.error
    saved = _result(tmp_path / "out")
    claims = {claim["id"]: claim for claim in saved["claims"]}
    assert set(claims) == {"float32-infonce-threshold", "float32-flatnce-error-at-threshold",
                           "stopgrad-gradient-identity", "adam-update-invariant",
                           "en-batch8-flatnce-ge-infonce", "en-batch16-flatnce-ge-infonce",
                           "zh-batch8-flatnce-ge-infonce", "zh-batch16-flatnce-ge-infonce"}
    assert claims["float32-infonce-threshold"]["holds"] and claims["float32-flatnce-error-at-threshold"]["holds"]
    assert claims["stopgrad-gradient-identity"]["holds"]
    assert 1e-9 <= claims["float32-infonce-threshold"]["measured"] <= 1e-5  # near float32's epsilon, 6e-8
    simcse = saved["tables"]["simcse"]
    assert len(simcse) == 2 * len(QUICK.batch_sizes) * 2  # languages x batch sizes x losses
    assert {row["steps"] for row in simcse if row["batch"] == 8} == {QUICK.sentences_per_run // 8}
    for claim in ("en-batch8-flatnce-ge-infonce", "zh-batch16-flatnce-ge-infonce"):
        language, batch = claim.split("-")[0], int(claim.split("-")[1].removeprefix("batch"))
        means = {row["loss"]: row["spearman mean"] for row in simcse
                 if row["language"] == language and row["batch"] == batch}
        assert claims[claim]["measured"] == pytest.approx(means["flat_nce"] - means["info_nce"], abs=1e-4)
        assert claims[claim]["holds"] == (claims[claim]["measured"] >= 0)
    assert saved["metrics"]["training"]["zh"]["model"] == str(tmp_path / "tiny-roformer")
    assert all(run["curve"] for run in saved["metrics"]["training"]["en"]["runs"])
    for plot in ("gradient_error_vs_xi.png", "spearman_vs_batch_size.png", "training_infonce.png"):
        assert (tmp_path / "out" / "flatnce" / plot).stat().st_size > 0


def test_training_degrades_with_a_note_when_data_or_models_are_missing(tmp_path, monkeypatch):
    monkeypatch.setattr("kexue.checkpoints.small_zh_path", lambda: None)
    result = run_experiment("flatnce", tmp_path / "out", quick=True, data_dir=FIXTURE_ROOT,
                            model_path=_tiny_model(tmp_path / "tiny-bert", "absolute"))
    assert result.status == "ok", result.error
    saved = _result(tmp_path / "out")
    assert [claim["id"] for claim in saved["claims"]] == ["float32-infonce-threshold",
                                                          "float32-flatnce-error-at-threshold",
                                                          "stopgrad-gradient-identity", "adam-update-invariant"]
    notes = " ".join(saved["notes"])
    assert "small-batch training (en) skipped" in notes and "too few" in notes
    assert "small-batch training (zh) skipped" in notes and "kexue-small-zh does not exist" in notes
    assert "simcse" not in saved["tables"]


def test_float_sweep_thresholds_are_ordered_by_precision():
    sweep = float_sweep(rows=4)
    # fewer mantissa bits fail earlier (at larger ξ): float32 < float16 < bfloat16
    assert failure_threshold(sweep, "float32", 16) < failure_threshold(sweep, "float16", 16) \
        < failure_threshold(sweep, "bfloat16", 16)
    assert max(row["flat_nce_error"] for row in sweep if row["dtype"] == "float32") < 1e-5
