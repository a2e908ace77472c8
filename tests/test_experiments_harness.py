"""The reproduction harness: claims computed, errors recorded, reports written."""

import json
import math

import pytest

from kexue.experiments import Claim, Outcome, register, run_all, run_experiment
from kexue.experiments.harness import Precondition
from kexue.stats import Interval


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
            Claim.at_least("trained-beats-half", "the trained model beats one half", measured, 0.5,
                           source="post", quote="it beats one half", post_figure="0.6", needs_training=True),
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
    assert Claim.within("a", "", 0.5, 0.0, 1.0).expected == "in [0, 1]"
    assert not Claim.equal("a", "", {"x": 1}, {"x": 2}).holds
    assert Claim.check("a", "", "x", 3, True).verdict == "holds"
    assert Claim.check("a", "", "x", 3, False).verdict == "fails"
    # old-style claims: source defaults to ours, no interval, holds mirrors the verdict
    claim = Claim.at_least("a", "", 0.99, 1.0)
    assert (claim.verdict, claim.source, claim.interval, claim.needs_training) == ("fails", "ours", None, False)


@pytest.mark.parametrize("claim", [
    Claim.at_most("a", "", None, 1.0),
    Claim.within("a", "", math.nan, 0.0, 1.0),
    Claim.check("a", "", "x", None, True),
    Claim.check("a", "", "x", 1.0, None),
    Claim.equal("a", "", 4, None),
])
def test_missing_measurement_or_undecided_is_inconclusive(claim):
    assert claim.verdict == "inconclusive" and claim.holds is None and claim.reason


def _interval(low, high):
    return Interval(low, high, n=5, method="t")


@pytest.mark.parametrize(("low", "high", "at_least", "at_most", "within"), [
    (0.6, 0.9, "holds", "fails", "fails"),          # wholly above 0.5; wholly outside [0.1, 0.5]
    (0.5, 0.9, "holds", "inconclusive", "inconclusive"),  # touches 0.5
    (0.4, 0.6, "inconclusive", "inconclusive", "inconclusive"),  # straddles 0.5
    (0.1, 0.4, "fails", "holds", "holds"),          # wholly below 0.5, inside [0.1, 0.5]
    (-0.3, 0.05, "fails", "holds", "fails"),        # wholly below [0.1, 0.5]
])
def test_verdict_rule_with_an_interval(low, high, at_least, at_most, within):
    # the point estimate alone would decide otherwise: 0.55 >= 0.5, 0.55 not <= 0.5
    interval = _interval(low, high)
    assert Claim.at_least("a", "", 0.55, 0.5, interval=interval).verdict == at_least
    assert Claim.at_most("a", "", 0.55, 0.5, interval=interval).verdict == at_most
    assert Claim.within("a", "", 0.55, 0.1, 0.5, interval=interval).verdict == within


def test_straddling_interval_is_inconclusive_and_says_why():
    claim = Claim.at_least("gain", "A beats B", 0.01, 0.0, interval=_interval(-0.02, 0.04))
    assert claim.verdict == "inconclusive" and claim.holds is None
    assert "straddles" in claim.reason and claim.interval == {"low": -0.02, "high": 0.04, "n": 5, "method": "t",
                                                              "level": 0.95}


def test_unbounded_interval_is_inconclusive():
    claim = Claim.at_least("a", "", 0.9, 0.5, interval=Interval(-math.inf, math.inf, 1, "t"))
    assert claim.verdict == "inconclusive" and claim.interval["low"] is None


def test_unmet_precondition_is_inconclusive_never_fails():
    unmet = Precondition.at_least("loss is small enough for float error to matter", 1e-3, 1e-2)
    met = Precondition.at_most("loss is small enough for float error to matter", 1e-3, 1e-2)
    assert not unmet.met and met.met
    claim = Claim.at_least("a", "", 0.1, 0.5, precondition=unmet)
    assert claim.verdict == "inconclusive" and "precondition not met" in claim.reason
    assert claim.precondition == {"statement": unmet.statement, "measured": 1e-3, "met": False}
    assert Claim.at_least("a", "", 0.1, 0.5, precondition=met).verdict == "fails"
    assert Claim.check("a", "", "x", 1, True, precondition=unmet).verdict == "inconclusive"


def test_claim_options_are_checked():
    with pytest.raises(TypeError, match="unknown claim option"):
        Claim.at_least("a", "", 1.0, 0.5, sorce="post")
    with pytest.raises(ValueError, match="source"):
        Claim.at_least("a", "", 1.0, 0.5, source="blog")


def test_quick_mode_training_claims_are_inconclusive(tmp_path):
    quick = run_experiment("_test-ok", tmp_path / "quick", quick=True)
    trained = {claim["id"]: claim for claim in quick.claims}["trained-beats-half"]
    assert trained["verdict"] == "inconclusive" and trained["reason"] == "quick mode" and trained["holds"] is None
    full = run_experiment("_test-ok", tmp_path / "full", quick=False)
    assert {claim["id"]: claim for claim in full.claims}["trained-beats-half"]["verdict"] == "fails"


def test_result_json_schema_and_report(tmp_path):
    result = run_experiment("_test-ok", tmp_path, quick=True, seed=3)
    data = json.loads((tmp_path / "_test-ok" / "result.json").read_text())
    for key in ("experiment", "quick", "seconds", "env", "metrics", "claims", "command", "seed", "status"):
        assert key in data
    assert data["experiment"] == "_test-ok" and data["quick"] is True and data["seed"] == 3
    assert data["status"] == "ok" and data["env"]["packages"]["torch"]
    assert [claim["holds"] for claim in data["claims"]] == [True, True, None]
    assert [claim["verdict"] for claim in data["claims"]] == ["holds", "holds", "inconclusive"]
    assert set(data["claims"][0]) == {"id", "statement", "expected", "measured", "holds", "verdict", "source",
                                      "quote", "post_figure", "interval", "precondition", "needs_training", "reason"}
    assert data["claims"][2]["quote"] == "it beats one half" and data["claims"][2]["source"] == "post"
    assert (tmp_path / "_test-ok" / "line.png").stat().st_size > 0
    report = (tmp_path / "_test-ok" / "report.md").read_text()
    assert "beats-half" in report and "line.png" in report and "nested.a" in report
    # the post's claims come first, then our checks
    assert report.index("## The post's claims") < report.index("## Our checks") < report.index("## rows")
    assert "it beats one half" in report and "inconclusive (quick mode)" in report
    assert result.claims_held == 2 and result.claims_failed == 0 and result.claims_inconclusive == 1


def test_failing_claim_is_reported_as_failing(tmp_path):
    result = run_experiment("_test-ok", tmp_path, quick=False)
    assert result.claims_failed == 2
    assert "❌ fails" in (tmp_path / "_test-ok" / "report.md").read_text()


def test_errored_experiment_is_reported_and_all_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "absent"))
    results, report = run_all(tmp_path, quick=True, names=["_test-error", "_test-ok", "_test-nodata"])
    assert [r.status for r in results] == ["error", "ok", "no-data"]
    text = report.read_text()
    assert "errored: _test-error" in text and "2 claims held, 0 failed, 1 inconclusive" in text
    assert "no data found" in text
    # REPORT.md opens with the posts' headline claims and their verdicts
    assert text.index("## The posts' headline claims") < text.index("the trained model beats one half") < text.index(
        "## Experiments")
    error = json.loads((tmp_path / "_test-error" / "result.json").read_text())
    assert "boom from the experiment" in error["error"]


def test_unknown_experiment(tmp_path):
    with pytest.raises(KeyError, match="unknown experiment"):
        run_experiment("_no-such-experiment", tmp_path)
