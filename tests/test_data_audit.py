"""The data-audit experiment on the fixture data root (tests/fixtures/data)."""

import json
import shutil
from pathlib import Path

from kexue.experiments import run_experiment

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "data"


def _audit(tmp_path: Path, root: Path, quick: bool = True) -> dict:
    result = run_experiment("data-audit", tmp_path / "out", quick=quick, data_dir=root)
    assert result.status == "ok", result.error
    return json.loads((tmp_path / "out" / "data-audit" / "result.json").read_text(encoding="utf-8"))


def test_audit_on_fixtures_counts_labels_lengths_and_leakage(tmp_path):
    result = _audit(tmp_path, FIXTURE_ROOT)
    claims = {claim["id"]: claim for claim in result["claims"]}
    # the fixture files are tiny, so every present file differs from the real catalogue
    assert not claims["row-counts"]["holds"]
    assert claims["row-counts"]["measured"]["files differing"] == 49
    assert claims["row-counts"]["measured"]["kgclue/train"] == {"catalogue": 18000, "measured": 4}
    assert claims["kgclue-dev-questions-not-in-train"]["holds"]
    assert result["metrics"]["files"] == {"catalogue": 145, "present": 49, "absent": 96, "count differs": 49}
    assert result["metrics"]["kgclue"]["dev triples answering a train question"] == 1
    assert result["metrics"]["leakage"] == {"clue/afqmc/dev in clue/afqmc/train": 1}
    files = {row["file"]: row for row in result["tables"]["files"]}
    assert files["fewclue/tnews/train_1"]["status"] == "absent"
    assert files["sts_zh/STS-B/train"]["max"] == len("一架飞机要起飞了。一架飞机正在起飞。")
    labels = {row["file"]: row for row in result["tables"]["labels"]}
    assert labels["clue/ocnli/train.3k"]["distinct"] == 2 and labels["en/sst2/dev"]["majority share"] == 0.5
    assert (tmp_path / "out" / "data-audit" / "text_lengths.png").stat().st_size > 0


def test_dev_question_in_train_fails_the_claim_and_missing_folders_are_absent(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURE_ROOT / "kgclue", root / "kgclue")
    with (root / "kgclue" / "dev.json").open("a", encoding="utf-8") as dev:
        dev.write('{"id": 9, "question": "郑多彬是哪国人？", "answer": "x ||| y ||| z"}\n')
    result = _audit(tmp_path, root, quick=False)
    claims = {claim["id"]: claim for claim in result["claims"]}
    assert claims["kgclue-dev-questions-not-in-train"]["measured"] == 1
    assert not claims["kgclue-dev-questions-not-in-train"]["holds"]
    assert result["metrics"]["files"]["present"] == 2 and result["metrics"]["files"]["absent"] == 143
    assert any("143 catalogue files are absent" in note for note in result["notes"])
