"""Does an NSP head judge coherence, or only whether two sentences share a source? A diagnostic.

NSP-BERT (kexue.fm/archives/8671) reads ``P(IsNext | A, B)`` as "B is a fitting continuation of
A". A head pretrained with NotNext pairs drawn from *other documents of a mixed corpus* can solve
its task by style alone, and then it has nothing to say about sentence pairs of one source (the
FewCLUE pair tasks). This module measures which of the two the head learned, on held-out texts.

From the FewCLUE dev texts of each task (the *source*), split into sentences on Chinese
end-of-sentence punctuation, every text with two adjacent sentences of at least
:data:`MIN_SENTENCE_CHARS` characters gives one anchor ``(A, B)`` (one adjacent pair drawn at
random), and three negatives:

- ``other_source``: ``(A, C)`` with C a random sentence of another task's texts;
- ``same_source``: ``(A, C)`` with C a random sentence of another text of the same task;
- ``swapped``: ``(B, A)``, the right sentences in the wrong order (ALBERT's sentence-order task).

C is never a sentence of the anchor's own text (texts may repeat a sentence).

For each kind the score is P(IsNext) and the figure is the ROC AUC of true pairs against those
negatives, computed as the Mann–Whitney statistic ``AUC = U / (n_pos · n_neg)`` (scipy; ties
count one half), the probability that a random true pair outscores a random negative: 0.5 is
chance, 1 is perfect. A head that only tells sources apart scores high on ``other_source`` and
near 0.5 on the other two. The 95% interval is a percentile bootstrap over anchors (each
resample keeps an anchor's true pair and its negative together).

Dev texts are held out: kexue's pretraining corpus leaves out every FewCLUE dev text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from kexue.data import FEWCLUE_TASKS
from kexue.zero_shot.fewclue import CHID_BLANK
from kexue.zero_shot.runner import read_split
from kexue.zero_shot.scorer import NSPScorer

__all__ = ["coherence_auc", "format_coherence", "NoSentencePairsError", "split_sentences", "coherence_pairs", "auc", "NEGATIVE_KINDS",
           "MIN_SENTENCE_CHARS"]

NEGATIVE_KINDS = ("other_source", "same_source", "swapped")
MIN_SENTENCE_CHARS = 4  # shorter pieces ("好。", "哈哈！") carry no content to continue
BOOTSTRAP_RESAMPLES = 1000
# A sentence ends at 。！？；… (or their ASCII forms), closing quotes and brackets included.
_SENTENCE = re.compile(r"[^。！？!?；;…]+(?:[。！？!?；;…]+[”’」』）)]*|$)")


class NoSentencePairsError(ValueError):
    """No text of the chosen tasks and split has two adjacent sentences to pair."""


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, each with its closing punctuation (stripped, empty pieces dropped).

    Example:
        >>> split_sentences("今天下雨了。我们不去公园！“好吧？”他说")
        ['今天下雨了。', '我们不去公园！', '“好吧？”', '他说']
    """
    return [piece.strip() for piece in _SENTENCE.findall(text) if piece.strip()]


def _adjacent_pairs(text: str) -> list[tuple[str, str]]:
    sentences = split_sentences(text)
    return [(a, b) for a, b in zip(sentences, sentences[1:])
            if len(a) >= MIN_SENTENCE_CHARS and len(b) >= MIN_SENTENCE_CHARS]


def _task_texts(task: str, split: str, root: str | Path | None) -> list[str]:
    """Distinct texts of a task's split in file order; ChID's blank is filled with its answer."""
    texts: dict[str, None] = {}
    for record in read_split(task, split, root):
        for text in record.texts():
            if task == "chid":
                text = text.replace(CHID_BLANK, record.candidates[record.answer])
            texts[text] = None
    return list(texts)


def coherence_pairs(texts_by_source: dict[str, Sequence[str]], n: int, seed: int = 0) -> dict[str, dict[str, list]]:
    """Anchors and negatives per source (see the module docstring).

    Args:
        texts_by_source: source name -> its texts.
        n: at most this many anchors per source (texts drawn without replacement).
        seed: the draw; each source draws from its own generators, so adding or removing a source
            changes only the other-source negatives.

    Returns:
        source -> ``{"true": [(A, B)], "other_source": [(A, C)], "same_source": [(A, C)],
        "swapped": [(B, A)]}``, lists aligned by anchor. Sources with no usable text are absent;
        ``other_source`` is empty when there is only one source.
    """
    if n < 1:
        raise ValueError(f"`n` must be positive, got {n}")
    sentences = {source: [(index, sentence) for index, text in enumerate(texts) for sentence in split_sentences(text)
                          if len(sentence) >= MIN_SENTENCE_CHARS] for source, texts in texts_by_source.items()}
    out = {}
    for source, texts in texts_by_source.items():
        rng = random.Random(f"{seed}:{source}")
        rng_other = random.Random(f"{seed}:{source}:other")  # so the other sources change no other draw
        usable = [(index, pairs) for index, pairs in ((i, _adjacent_pairs(t)) for i, t in enumerate(texts)) if pairs]
        others = [other for other in texts_by_source if other != source and sentences[other]]
        kinds: dict[str, list] = {"true": [], **{kind: [] for kind in NEGATIVE_KINDS}}
        for index, pairs in rng.sample(usable, min(n, len(usable))):
            home = set(split_sentences(texts[index]))  # a negative must not be a sentence of the anchor's text
            same = [sentence for owner, sentence in sentences[source] if owner != index and sentence not in home]
            other = [s for _, s in sentences[rng_other.choice(others)] if s not in home] if others else []
            if not same or (others and not other):
                continue
            a, b = rng.choice(pairs)
            kinds["true"].append((a, b))
            kinds["same_source"].append((a, rng.choice(same)))
            kinds["swapped"].append((b, a))
            if others:
                kinds["other_source"].append((a, rng_other.choice(other)))
        if kinds["true"]:
            out[source] = kinds
    return out


def auc(positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray) -> float | np.ndarray:
    """ROC AUC of ``positive`` against ``negative`` scores: ``U / (n_pos · n_neg)`` (Mann–Whitney).

    2-D inputs give one AUC per row (the bootstrap's resamples in one call).

    Example:
        >>> auc([0.9, 0.8, 0.4], [0.5, 0.1])
        0.8333333333333334
    """
    from scipy.stats import mannwhitneyu

    positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if not positive.shape[-1] or not negative.shape[-1]:
        raise ValueError(f"AUC needs scores on both sides, got {positive.shape[-1]} positive and "
                         f"{negative.shape[-1]} negative")
    u = mannwhitneyu(positive, negative, alternative="two-sided", method="asymptotic", axis=-1).statistic
    values = u / (positive.shape[-1] * negative.shape[-1])
    return float(values) if positive.ndim == 1 else values


def _bootstrap_interval(positive: np.ndarray, negative: np.ndarray, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap of the AUC over anchors (aligned true/negative scores resampled together)."""
    rows = np.random.default_rng(seed).integers(0, len(positive), (BOOTSTRAP_RESAMPLES, len(positive)))
    low, high = np.percentile(auc(positive[rows], negative[rows]), [2.5, 97.5])
    return float(low), float(high)


def _scorer(model_or_path: Any, tokenizer: Any, max_length: int) -> tuple[NSPScorer, str]:
    if isinstance(model_or_path, NSPScorer):
        return model_or_path, type(model_or_path.model).__name__
    if isinstance(model_or_path, nn.Module):
        if tokenizer is None:
            raise ValueError("`tokenizer` is required when `model_or_path` is a model")
        return NSPScorer(model_or_path.eval(), tokenizer, max_length=max_length), type(model_or_path).__name__
    if isinstance(model_or_path, (str, Path)):
        return NSPScorer.from_pretrained(model_or_path, max_length=max_length), str(model_or_path)
    raise TypeError(f"`model_or_path` must be a checkpoint folder, an NSPScorer or a model, "
                    f"got {type(model_or_path).__name__}")


def coherence_auc(model_or_path: str | Path | NSPScorer | nn.Module, data_root: str | Path | None = None, n: int = 200,
                  seed: int = 0, *, tasks: Sequence[str] = FEWCLUE_TASKS, split: str = "dev_few_all",
                  tokenizer: Any = None, max_length: int = 128) -> dict[str, Any]:
    """Coherence AUCs of an NSP head on held-out FewCLUE texts: true next vs three kinds of negative.

    Args:
        model_or_path: a checkpoint folder with an NSP head, an :class:`NSPScorer`, or a kexue
            ``Transformer`` / transformers ``BertForPreTraining`` (then pass ``tokenizer``).
        data_root: the data root holding ``fewclue/``; None resolves it ($KEXUE_DATA).
        n: at most this many anchors per task.
        seed: the draw of anchors, negatives and bootstrap resamples.
        tasks: the FewCLUE tasks used as sources (those without two adjacent sentences drop out:
            bustm and ocnli have one-sentence texts).
        split: the FewCLUE split whose texts are used (a name present in every task's folder).
        tokenizer: the tokenizer, when ``model_or_path`` is a bare model.
        max_length: tokens per pair.

    Returns:
        A JSON-ready dict: ``model``, ``split``, ``seed``, ``n_per_task``, ``method``;
        ``anchors`` (task -> anchors used); ``auc`` (kind -> pooled AUC over all tasks' pairs);
        ``interval`` (kind -> [low, high], 95% bootstrap over anchors); ``per_task``
        (task -> kind -> AUC); ``range`` (kind -> [min, max] over tasks). Kinds: ``other_source``,
        ``same_source``, ``swapped``.

    Raises:
        ValueError: ``n`` < 1 or an unknown task. NoSentencePairsError (a ValueError): no usable text.
        NoNSPHeadError: the model has no NSP head.
    """
    unknown = [task for task in tasks if task not in FEWCLUE_TASKS]
    if unknown:
        raise ValueError(f"`tasks` must be FewCLUE tasks {FEWCLUE_TASKS}, got {unknown}")
    scorer, name = _scorer(model_or_path, tokenizer, max_length)
    pairs = coherence_pairs({task: _task_texts(task, split, data_root) for task in tasks}, n, seed)
    if not pairs:
        raise NoSentencePairsError(f"no text of {list(tasks)} ({split}) has two adjacent sentences "
                                   f"of at least {MIN_SENTENCE_CHARS} characters")
    flat = [(task, kind, pair) for task, kinds in pairs.items() for kind, items in kinds.items() for pair in items]
    scores = scorer.score([pair for _, _, pair in flat]).double().numpy()
    by = {}
    for (task, kind, _), score in zip(flat, scores):
        by.setdefault((task, kind), []).append(score)
    kinds = [kind for kind in NEGATIVE_KINDS if any((task, kind) in by for task in pairs)]
    per_task = {task: {kind: auc(by[task, "true"], by[task, kind]) for kind in kinds if (task, kind) in by}
                for task in pairs}
    pooled_true = np.concatenate([by[task, "true"] for task in pairs])
    result_auc, interval = {}, {}
    for kind in kinds:
        negative = np.concatenate([by[task, kind] for task in pairs])
        result_auc[kind] = auc(pooled_true, negative)
        interval[kind] = list(_bootstrap_interval(pooled_true, negative, seed))
    return {
        "model": name, "split": split, "seed": seed, "n_per_task": n, "max_length": max_length,
        "method": "AUC = Mann-Whitney U / (n_pos n_neg) of P(IsNext), true next vs each negative kind; "
                  f"95% interval: percentile bootstrap over anchors ({BOOTSTRAP_RESAMPLES} resamples)",
        "anchors": {task: len(kinds_["true"]) for task, kinds_ in pairs.items()},
        "auc": result_auc, "interval": interval, "per_task": per_task,
        "range": {kind: [min(p[kind] for p in per_task.values() if kind in p),
                         max(p[kind] for p in per_task.values() if kind in p)] for kind in kinds},
    }


def format_coherence(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`coherence_auc`'s result: one row per task and the pooled row."""
    kinds = list(result["auc"])
    header = "| task | anchors | " + " | ".join(f"AUC vs {kind.replace('_', ' ')}" for kind in kinds) + " |"
    lines = [header, "|---" * (len(kinds) + 2) + "|"]
    for task, values in result["per_task"].items():
        cells = " | ".join(f"{values[kind]:.3f}" if kind in values else "-" for kind in kinds)
        lines.append(f"| {task} | {result['anchors'][task]} | {cells} |")
    pooled = " | ".join(f"**{result['auc'][kind]:.3f}** [{result['interval'][kind][0]:.3f}, "
                        f"{result['interval'][kind][1]:.3f}]" for kind in kinds)
    lines.append(f"| all (pooled, 95% CI) | {sum(result['anchors'].values())} | {pooled} |")
    return "\n".join(lines)
