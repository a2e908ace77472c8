"""Answer mappings of NSP-BERT (kexue.fm/archives/8671; paper §3.3, Table 12).

- **Candidates-contrast (C-C)**: one score per (sample, candidate); the answer is
  ``argmax_k score[i, k]``. Used for single-sentence classification and ChID.
- **Samples-contrast (S-C)**: one score ``s_i = P(IsNext)`` per sample, and labels ordered from
  "least next-like" to "most next-like" (e.g. OCNLI contradiction < neutral < entailment). Sort the
  N samples by score and cut them into L groups of ``N // L`` (the last takes the remainder): the
  lowest group gets label 0, the highest label L-1. This assumes a **uniform label prior** and
  is **transductive**: a sample's label depends on the other samples' scores. Among all labellings
  with those group sizes it maximises ``Σ_i label_i · s_i`` (rearrangement inequality), which is
  what the brute-force test checks.

  The paper fits thresholds on dev (the group boundaries) and applies them to test, so test
  samples are labelled one at a time. :class:`SamplesContrast` does both: ``fit`` stores the
  boundaries as midpoints between neighbouring groups (the reference stores the top score of
  each group, which relabels that dev sample when thresholds are applied back to dev), and
  ``predict`` labels each score by the thresholds it reaches. ``fit`` uses no labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["candidates_contrast", "uniform_prior_assignment", "SamplesContrast"]


def candidates_contrast(scores: Tensor) -> Tensor:
    """``argmax`` over candidates: ``[N, K]`` scores -> ``[N]`` long indices."""
    if scores.dim() != 2:
        raise ValueError(f"`scores` must be [samples, candidates], got shape {tuple(scores.shape)}")
    return scores.argmax(dim=-1)


def _check(scores: Tensor, num_labels: int) -> None:
    if scores.dim() != 1:
        raise ValueError(f"`scores` must be 1-D [samples], got shape {tuple(scores.shape)}")
    if num_labels < 2:
        raise ValueError(f"`num_labels` must be at least 2, got {num_labels}")


def uniform_prior_assignment(scores: Tensor, num_labels: int) -> Tensor:
    """Samples-contrast labels under a uniform prior (transductive): rank, then cut into equal groups.

    Ties are broken by sample index, so the result is deterministic.

    Args:
        scores: ``[N]`` one score per sample (higher = later label).
        num_labels: L; labels are ``0 .. L-1`` from the lowest-scoring group up.

    Returns:
        ``[N]`` long labels; groups 0..L-2 hold ``N // L`` samples, group L-1 the rest.

    Raises:
        ValueError: ``scores`` not 1-D, or ``num_labels`` < 2.

    Example:
        >>> uniform_prior_assignment(torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7]), 2).tolist()
        [1, 0, 1, 0, 1]
    """
    _check(scores, num_labels)
    order = torch.argsort(scores, stable=True)
    group = len(scores) // num_labels
    ranks = torch.arange(len(scores))
    # Fewer samples than labels: every group but the last is empty, as in the reference.
    by_rank = (ranks // group).clamp(max=num_labels - 1) if group else torch.full_like(ranks, num_labels - 1)
    labels = torch.empty(len(scores), dtype=torch.long)
    labels[order] = by_rank
    return labels


class SamplesContrast:
    """Samples-contrast with thresholds: ``fit`` on one split's scores, ``predict`` on another's.

    Args:
        num_labels: L, the number of ordered labels.

    Attributes:
        thresholds_: ``[L-1]`` increasing boundaries; a score ``>= thresholds_[k]`` is above group k.

    Example:
        >>> mapping = SamplesContrast(2).fit(torch.tensor([0.1, 0.2, 0.8, 0.9]))
        >>> mapping.thresholds_.tolist()
        [0.5]
        >>> mapping.predict(torch.tensor([0.3, 0.6])).tolist()
        [0, 1]
    """

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels

    def fit(self, scores: Tensor) -> "SamplesContrast":
        """Boundaries of the uniform-prior groups of ``scores`` (no labels needed)."""
        _check(scores, self.num_labels)
        if len(scores) < self.num_labels:
            raise ValueError(f"need at least `num_labels`={self.num_labels} scores to fit, got {len(scores)}")
        ordered = torch.sort(scores.double()).values
        group = len(scores) // self.num_labels
        cuts = torch.arange(1, self.num_labels) * group  # first index of groups 1..L-1
        self.thresholds_ = ((ordered[cuts - 1] + ordered[cuts]) / 2).to(scores.dtype)
        return self

    def predict(self, scores: Tensor) -> Tensor:
        """``[N]`` labels: the number of thresholds each score reaches."""
        if not hasattr(self, "thresholds_"):
            raise RuntimeError("SamplesContrast is not fitted: call fit(scores) on a dev split first")
        _check(scores, self.num_labels)
        return (scores[:, None] >= self.thresholds_.to(scores.dtype)[None, :]).sum(dim=-1)

    def fit_predict(self, scores: Tensor) -> Tensor:
        """Fit on ``scores`` and return their uniform-prior labels (the transductive assignment)."""
        self.fit(scores)
        return uniform_prior_assignment(scores, self.num_labels)
