"""The reproduction harness: claims computed, errors recorded, reports written."""

import json
import math

import pytest

from kexue.experiments import Claim, Outcome, register, run_all, run_experiment


@register("_test-ok", summary="a toy experiment whose claims are computed")
def _ok(ctx):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    axis.plot([1, 2, 3])
    ctx.save_figure(figure, "line.png")
    measured = 0.75 if ctx.quick else 0.25
    return Outcome(
        metrics={"accuracy": measured, "nested": {"a": 1}},
        claims=[
            Claim.at_least("beats-half", "accuracy is at least one half", measured, 0.5),
            Claim.equal("count", "two plus two", 4, 2 + 2),
        ],
        tables={"rows": [{"x": 1, "y": 2.5}]},
        notes=["toy"],
    )


@register("_test-error", summary="an experiment that raises")
def _error(ctx):
    raise RuntimeError("boom from the experiment")


@register("_test-nodata", summary="an experiment whose data is missing")
def _nodata(ctx):
    return Outcome(metrics={"root": str(ctx.data_root)})


def test_claim_constructors_compute_holds():
    assert Claim.at_least("a", "", 1.0, 1.0).holds
    assert not Claim.at_least("a", "", 0.99, 1.0).holds
    assert Claim.at_most("a", "", 0.5, 1.0).holds
    assert not Claim.at_most("a", "", None, 1.0).holds
    assert not Claim.within("a", "", math.nan, 0.0, 1.0).holds
    assert Claim.within("a", "", 0.5, 0.0, 1.0).expected == "in [0, 1]"
    assert not Claim.equal("a", "", {"x": 1}, {"x": 2}).holds
    assert not Claim.check("a", "", "x", None, True).holds


def test_result_json_schema_and_report(tmp_path):
    result = run_experiment("_test-ok", tmp_path, quick=True, seed=3)
    data = json.loads((tmp_path / "_test-ok" / "result.json").read_text())
    for key in ("experiment", "quick", "seconds", "env", "metrics", "claims", "command", "seed", "status"):
        assert key in data
    assert data["experiment"] == "_test-ok" and data["quick"] is True and data["seed"] == 3
    assert data["status"] == "ok" and data["env"]["packages"]["torch"]
    assert [claim["holds"] for claim in data["claims"]] == [True, True]
    assert set(data["claims"][0]) == {"id", "statement", "expected", "measured", "holds"}
    assert (tmp_path / "_test-ok" / "line.png").stat().st_size > 0
    report = (tmp_path / "_test-ok" / "report.md").read_text()
    assert "beats-half" in report and "line.png" in report and "nested.a" in report
    assert result.claims_held == 2 and result.claims_failed == 0


def test_failing_claim_is_reported_as_failing(tmp_path):
    result = run_experiment("_test-ok", tmp_path, quick=False)
    assert result.claims_failed == 1
    assert "❌ fails" in (tmp_path / "_test-ok" / "report.md").read_text()


def test_errored_experiment_is_reported_and_all_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "absent"))
    results, report = run_all(tmp_path, quick=True, names=["_test-error", "_test-ok", "_test-nodata"])
    assert [r.status for r in results] == ["error", "ok", "no-data"]
    text = report.read_text()
    assert "errored: _test-error" in text and "2 claims held, 0 failed" in text
    assert "no data found" in text
    error = json.loads((tmp_path / "_test-error" / "result.json").read_text())
    assert "boom from the experiment" in error["error"]


def test_unknown_experiment(tmp_path):
    with pytest.raises(KeyError, match="unknown experiment"):
        run_experiment("_no-such-experiment", tmp_path)
