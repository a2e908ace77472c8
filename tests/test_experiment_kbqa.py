"""The KBQA experiment's claims: paired comparisons of decoding arms on the same questions."""

from __future__ import annotations

import numpy as np
import pytest

from kexue.experiments import kbqa
from kexue.stats import mcnemar_p

STORAGE = {"entries": 10, "trie_bytes": 100, "dense_bytes": 30_720, "dict_trie_bytes": 5000, "trie_nodes": 40,
           "duplicates_dropped": 0}


def _arms(n: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    spm_lookahead = rng.random(n) < 0.7
    plain = np.where(rng.random(n) < 0.2, False, spm_lookahead)  # lookahead rescues 20% of its right answers
    smp = spm_lookahead.copy()  # differs on 40 questions, 20 each way: no true difference
    smp[np.flatnonzero(spm_lookahead)[:20]] = False
    smp[np.flatnonzero(~spm_lookahead)[:20]] = True
    arms = {}
    for name, correct in ((kbqa._name("spm", 1, True), spm_lookahead), (kbqa._name("spm", 1, False), plain),
                          (kbqa._name("smp", 1, True), smp)):
        metrics = {key: float(correct.mean()) for key in ("EM_O", "F1_O", "EM_S", "EM_P", "EM_All")}
        arms[name] = {"metrics": metrics, "seconds": 1.0, "correct": correct.astype(int).tolist()}
    return arms


def test_paired_comparison_is_in_points_on_the_same_questions():
    arms = _arms()
    a, b = kbqa._name("spm", 1, True), kbqa._name("spm", 1, False)
    paired = kbqa._paired(arms, a, b, seed=0)
    correct_a, correct_b = np.array(arms[a]["correct"]), np.array(arms[b]["correct"])
    assert paired["A - B"] == pytest.approx(100 * (correct_a.mean() - correct_b.mean()))
    assert paired["interval"].n == 400 and paired["interval"].low < paired["A - B"] < paired["interval"].high
    assert paired["only B right"] == 0 and paired["only A right"] == int((correct_a & ~correct_b.astype(bool)).sum())
    assert paired["McNemar p"] == pytest.approx(mcnemar_p(correct_a, correct_b))


def test_claims_decide_by_the_paired_interval_and_skip_missing_arms():
    arms = _arms()
    comparisons = {id: kbqa._paired(arms, a, b, 0) for id, a, b, *_ in kbqa.COMPARISONS if a in arms and b in arms}
    claims = {claim.id: claim for claim in kbqa._claims(comparisons, STORAGE, reference_em=70.0)}
    assert set(claims) == {"spm-beats-smp", "lookahead-helps", "trie-vs-dense-vectors", "trie-vs-dict-trie"}
    lookahead, order = claims["lookahead-helps"], claims["spm-beats-smp"]
    assert lookahead.verdict == "holds" and lookahead.source == "post" and lookahead.needs_training
    assert lookahead.post_figure and "4 percentage point" in lookahead.quote
    assert order.measured == 0 and order.verdict == "inconclusive"  # the interval straddles 0
    assert order.interval["low"] < 0 < order.interval["high"] and "does not exclude 0" in order.reason
    assert claims["trie-vs-dense-vectors"].verdict == "holds" and not claims["trie-vs-dense-vectors"].needs_training


def test_an_untrained_model_leaves_the_comparisons_inconclusive():
    arms = _arms()
    comparisons = {id: kbqa._paired(arms, a, b, 0) for id, a, b, *_ in kbqa.COMPARISONS if a in arms and b in arms}
    claims = {claim.id: claim for claim in kbqa._claims(comparisons, STORAGE, reference_em=12.0)}
    lookahead = claims["lookahead-helps"]
    assert lookahead.verdict == "inconclusive" and "precondition not met" in lookahead.reason
    assert lookahead.precondition == {"statement": lookahead.precondition["statement"], "measured": 12.0, "met": False}


def test_identical_arms_do_not_beat_each_other():
    arms = _arms()
    arms[kbqa._name("smp", 1, True)] = arms[kbqa._name("spm", 1, True)]  # no discordant question: interval [0, 0]
    comparisons = {id: kbqa._paired(arms, a, b, 0) for id, a, b, *_ in kbqa.COMPARISONS if a in arms and b in arms}
    order = {claim.id: claim for claim in kbqa._claims(comparisons, STORAGE, reference_em=70.0)}["spm-beats-smp"]
    assert (order.interval["low"], order.interval["high"]) == (0.0, 0.0) and order.verdict == "inconclusive"
