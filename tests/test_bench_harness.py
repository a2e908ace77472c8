"""The benchmark harness measures both sides and computes the ratios (timings are never asserted)."""

import pytest

from kexue.bench import compare, format_comparisons, peak_memory_mib


def test_compare_records_both_sides_and_ratio():
    calls = {"ours": 0, "anchor": 0}

    def ours():
        calls["ours"] += 1

    def anchor():
        calls["anchor"] += 1

    result = compare("toy", ours, "anchor", anchor, repeats=3, warmup=2,
                     goal="speedup >= 0", goal_met=lambda c: c.speedup >= 0, size=7)
    assert calls == {"ours": 5, "anchor": 5}
    assert result.ours.repeats == 3 and result.ours.min <= result.ours.median <= result.ours.max
    assert result.speedup == pytest.approx(result.theirs.median / result.ours.median)
    assert result.goal_met is True and result.to_dict()["extra"] == {"size": 7}
    assert "speedup" in format_comparisons("toy", [result])


def test_peak_memory_sees_a_large_allocation():
    import numpy as np

    peak = peak_memory_mib(lambda: np.ones(64 * 1024 * 1024 // 8).sum())  # 64 MiB
    if peak is not None:  # Linux only
        assert peak > 32


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        compare("x", lambda: None, "a", lambda: None, repeats=0)
