"""KgCLUE metrics as the official evaluation script defines them.

CLUEbenchmark/KgCLUE ``evaluate_f1_em.py``: each field is normalised (lower case, whitespace
runs collapsed to one space), then for X in {S, P, O} and All = S+P+O concatenated::

    EM_X = mean[ pred_X == gold_X ]
    F1_X = mean[ 2 LCS(pred_X, gold_X) / (|pred_X| + |gold_X|) ]   (0 when both are empty)

LCS over characters. The leaderboard reports EM and F1 of the object O and their mean
(``EMF1``); the post's table does too, under swapped column labels (its "F1" 89.20 < "EM" 91.04
is impossible, since F1_O >= EM_O for every question).
"""

from __future__ import annotations

from collections.abc import Iterable

from kexue.retrieval.lookahead import lcs_length

__all__ = ["normalize", "f1_similarity", "kgclue_metrics"]

_FIELDS = ("S", "P", "O")


def normalize(text: str) -> str:
    """Lower case and single spaces, as the official script."""
    return " ".join(text.lower().split())


def f1_similarity(prediction: str, gold: str) -> float:
    """``2 LCS / (|a| + |b|)`` over characters; 0.0 when both strings are empty.

    Example:
        >>> f1_similarity("华南理工大学", "华南理工"), f1_similarity("", "")
        (0.8, 0.0)
    """
    if not prediction and not gold:
        return 0.0
    return 2.0 * lcs_length(prediction, gold) / (len(prediction) + len(gold))


def kgclue_metrics(predictions: Iterable[tuple[str, str, str]], golds: Iterable[tuple[str, str, str]]) -> dict[str, float]:
    """EM_X and F1_X (X in All, S, P, O) in [0, 1], plus ``EMF1 = (EM_O + F1_O) / 2``.

    Args:
        predictions: ``(S, P, O)`` per question, S with its meaning as KgCLUE writes it.
        golds: the gold ``(S, P, O)`` in the same order.

    Raises:
        ValueError: the two lists differ in length or are empty.

    Example:
        >>> m = kgclue_metrics([("甲", "身高", "180cm")], [("甲", "身高", "180 CM")])
        >>> m["EM_O"], round(m["F1_O"], 4), m["EM_S"]
        (0.0, 0.9091, 1.0)
    """
    predictions, golds = list(predictions), list(golds)
    if len(predictions) != len(golds) or not golds:
        raise ValueError(f"need as many predictions as golds (at least one), got {len(predictions)} and {len(golds)}")
    totals = {f"{kind}_{field}": 0.0 for kind in ("EM", "F1") for field in ("All", *_FIELDS)}
    for predicted, gold in zip(predictions, golds):
        predicted = tuple(normalize(x) for x in predicted)
        gold = tuple(normalize(x) for x in gold)
        for field, a, b in zip(_FIELDS, predicted, gold):
            totals[f"EM_{field}"] += float(a == b)
            totals[f"F1_{field}"] += f1_similarity(a, b)
        totals["EM_All"] += float(predicted == gold)
        totals["F1_All"] += f1_similarity("".join(predicted), "".join(gold))
    result = {name: value / len(golds) for name, value in totals.items()}
    result["EMF1"] = (result["EM_O"] + result["F1_O"]) / 2
    return result
