"""InfoNCE and FlatNCE over a score matrix (Su, kexue.fm/archives/8586; Chen et al., arXiv 2107.01152).

An anchor scores K candidates ``s_1 .. s_K``; ``s_t`` is its positive. With
``ξ = Σ_{i≠t} e^{s_i − s_t}`` (the post's notation):

    InfoNCE  = −log(e^{s_t} / Σ_i e^{s_i}) = log Σ_i e^{s_i} − s_t = log(1 + ξ)     post eq. (1)
    FlatNCE  = ξ / sg(ξ)                                                         post eq. (3)
    ∇(ξ / sg(ξ)) = ∇ξ / ξ = ∇ log ξ                                               post eq. (4)
    FlatNCE  ≡ log ξ = log Σ_{i≠t} e^{s_i} − s_t                                  post eq. (5)

Eq. (5) is cross-entropy with the positive removed from the logsumexp; its value can be negative.
Once training separates positives from negatives, ξ is tiny: InfoNCE ≈ ξ (eq. 2) and its gradient,
computed as ``softmax − one_hot``, loses the positive's component to rounding (``1 − p_t`` with
``p_t ≈ 1``). FlatNCE's gradient is ``softmax over the negatives − one_hot``: every term is O(1/K).

Several positives (supervised contrastive learning, every same-label item a positive): each pair
(anchor i, positive p) is its own problem with candidates {p} ∪ N(i), where N(i) are the anchor's
valid candidates that are not positives. Other positives neither compete nor are pushed away
(as in pytorch-metric-learning's NTXentLoss and DCL):

    InfoNCE_ip = log(e^{s_ip} + Σ_{n∈N(i)} e^{s_in}) − s_ip,   FlatNCE_ip = log Σ_{n∈N(i)} e^{s_in} − s_ip

The loss averages over each anchor's positives, then over the anchors that have one (SupCon's
``L_out``, Khosla et al. 2020 eq. 2). With one positive per anchor this is the plain mean.

dtype: everything is computed in the dtype of ``scores`` (fp32, bf16, fp16 all work; see
``tests/test_contrastive.py``). In bf16/fp16 FlatNCE keeps a usable gradient where InfoNCE's
vanishes; :mod:`kexue.contrastive.diagnostics` measures it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PairTerms", "pair_terms", "info_nce", "flat_nce", "flat_nce_stopgrad", "similarity_scores",
           "SIMILARITIES"]

SIMILARITIES = ("cosine", "dot")


class PairTerms(NamedTuple):
    """Per (anchor, positive) pair: ``log ξ``, ``log(1 + ξ)`` and the pair's weight in the mean.

    Attributes:
        log_xi: ``[P]`` FlatNCE terms, ``log Σ_{n∈N(i)} e^{s_in} − s_ip`` (eq. 5).
        log_one_plus_xi: ``[P]`` InfoNCE terms, ``log(e^{s_ip} + Σ_n e^{s_in}) − s_ip`` (eq. 1).
        weights: ``[P]``, ``1 / (positives of the anchor × anchors with a positive)``; sums to 1.
            At least float32, so that bf16/fp16 losses average without rounding the weights.
    """

    log_xi: Tensor
    log_one_plus_xi: Tensor
    weights: Tensor

    def mean(self, values: Tensor) -> Tensor:
        """The weighted mean of per-pair ``values`` (accumulated in >= float32), in their dtype."""
        return (self.weights * values).sum().to(values.dtype)


def _positive_mask(scores: Tensor, targets: Tensor, mask: Tensor | None, loss_name: str) -> Tensor | None:
    """The bool ``[R, K]`` positives, or None for int targets without a mask (the fast path)."""
    rows, columns = scores.shape
    if targets.dtype == torch.bool:
        if targets.shape != scores.shape:
            raise ValueError(f"{loss_name}: bool `targets` must have the shape of `scores` {tuple(scores.shape)}, "
                             f"got {tuple(targets.shape)}")
        return targets
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"{loss_name}: `targets` must be int class indices [R] or a bool mask [R, K], "
                        f"got dtype {targets.dtype}")
    if targets.shape != (rows,):
        raise ValueError(f"{loss_name}: int `targets` must have shape [{rows}] (one index per row of `scores`), "
                         f"got {tuple(targets.shape)}")
    if rows and (int(targets.min()) < 0 or int(targets.max()) >= columns):
        raise ValueError(f"{loss_name}: `targets` must index the {columns} columns of `scores`, "
                         f"got values in [{int(targets.min())}, {int(targets.max())}]")
    if mask is None:
        return None
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, targets[:, None], True)


def _check_scores(scores: Tensor, mask: Tensor | None, loss_name: str) -> None:
    if scores.dim() != 2:
        raise ValueError(f"{loss_name}: `scores` must be 2-D [anchors, candidates], got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"{loss_name}: `scores` must be floating point, got {scores.dtype}")
    if scores.shape[0] == 0:
        raise ValueError(f"{loss_name}: the batch is empty (`scores` has shape {tuple(scores.shape)})")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"{loss_name}: `mask` must be bool (True = the pair takes part), got {mask.dtype}")
        if mask.shape != scores.shape:
            raise ValueError(f"{loss_name}: `mask` must have the shape of `scores` {tuple(scores.shape)}, "
                             f"got {tuple(mask.shape)}")


def _check_finite(log_xi: Tensor, rows: Tensor, scores: Tensor, mask: Tensor | None, loss_name: str) -> None:
    """NaN or ±inf scores reach ``log ξ`` of their row; only then is the matrix searched for them."""
    if bool(torch.isfinite(log_xi).all()):
        return
    bad = ~torch.isfinite(scores)
    if mask is not None:
        bad &= mask
    row = int(rows[~torch.isfinite(log_xi)][0])
    columns = bad[row].nonzero()
    where = f"row {row}, column {int(columns[0])}" if len(columns) else f"row {row}: every negative is -inf"
    raise ValueError(f"{loss_name}: `scores` contains NaN or inf ({where}); check the embeddings and the temperature")


def _no_negative(loss_name: str, row: int, scores: Tensor) -> ValueError:
    return ValueError(f"{loss_name}: anchor {row} has a positive but no negative candidate (scores "
                      f"{tuple(scores.shape)}); contrastive losses need at least one negative: use a batch of "
                      "2 or more, or pass explicit negatives")


def _single_positive(scores: Tensor, targets: Tensor, loss_name: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fast path, one int target per row and no mask: no [R, K] masks, no search for the positives."""
    rows, columns = scores.shape
    if columns < 2:
        raise _no_negative(loss_name, 0, scores)
    index = targets[:, None]
    positive_scores = scores.gather(1, index).squeeze(1)  # [R]
    log_negatives = torch.logsumexp(scores.scatter(1, index, float("-inf")), dim=1)  # [R]
    weights = torch.full((rows,), 1.0 / rows, dtype=torch.promote_types(scores.dtype, torch.float32),
                         device=scores.device)
    return torch.arange(rows, device=scores.device), positive_scores, log_negatives, weights


def _several_positives(scores: Tensor, positives: Tensor, mask: Tensor | None,
                       loss_name: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """General path: bool positives and/or a mask; one term per (anchor, positive) pair."""
    negatives = ~positives
    if mask is not None:
        positives, negatives = positives & mask, negatives & mask
    positive_count = positives.sum(dim=1)  # [R]
    has_positive = positive_count > 0
    if not bool(has_positive.any()):
        raise ValueError(f"{loss_name}: no (anchor, positive) pair in the batch (every positive is masked out)")
    starved = has_positive & ~negatives.any(dim=1)
    if bool(starved.any()):
        row = int(starved.nonzero()[0])
        raise _no_negative(loss_name, row, scores)
    log_negatives = torch.logsumexp(scores.masked_fill(~negatives, float("-inf")), dim=1)  # [R]
    rows, columns = positives.nonzero(as_tuple=True)  # [P] each
    anchors = has_positive.sum()
    weights = 1.0 / (positive_count[rows] * anchors).to(torch.promote_types(scores.dtype, torch.float32))
    return rows, scores[rows, columns], log_negatives[rows], weights


def pair_terms(scores: Tensor, targets: Tensor, mask: Tensor | None = None,
               loss_name: str = "pair_terms") -> PairTerms:
    """The InfoNCE and FlatNCE terms of every (anchor, positive) pair of a score matrix.

    Args:
        scores: ``[R, K]`` scores of R anchors against K candidates (already scaled: s = sim / τ).
        targets: int ``[R]`` index of each anchor's positive, or bool ``[R, K]`` (True = positive).
        mask: bool ``[R, K]``, True where the pair takes part; False pairs are ignored (neither
            positive nor negative). None keeps every pair.
        loss_name: named in error messages.

    Returns:
        :class:`PairTerms`, pairs in row-major order.

    Raises:
        ValueError: shapes that do not match, targets out of range, NaN or inf scores in a pair
            that takes part, no positive pair at all, or an anchor with a positive but no negative.
        TypeError: non-float scores, float targets, non-bool mask.
    """
    _check_scores(scores, mask, loss_name)
    positives = _positive_mask(scores, targets, mask, loss_name)
    if positives is None:
        rows, positive_scores, log_negatives, weights = _single_positive(scores, targets, loss_name)
    else:
        rows, positive_scores, log_negatives, weights = _several_positives(scores, positives, mask, loss_name)
    log_xi = log_negatives - positive_scores  # eq. (5)
    _check_finite(log_xi, rows, scores, mask, loss_name)
    log_one_plus_xi = torch.logaddexp(log_negatives, positive_scores) - positive_scores  # eq. (1)
    return PairTerms(log_xi, log_one_plus_xi, weights)


def info_nce(scores: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """InfoNCE, ``log Σ_i e^{s_i} − s_t = log(1 + ξ)`` (post eq. 1): cross-entropy over the candidates.

    Args:
        scores: ``[R, K]`` scaled scores (``scale = 1 / temperature`` already applied).
        targets: int ``[R]`` positive index per row, or bool ``[R, K]`` positives.
        mask: bool ``[R, K]``, True where the pair takes part.

    Returns:
        Scalar tensor, mean over positives, then over anchors (see the module docstring).

    Raises:
        ValueError, TypeError: see :func:`pair_terms`.

    Relations: equals ``F.cross_entropy(scores, targets)`` for int targets and no mask.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[5.0, 1.0, 0.0], [0.0, 4.0, 2.0]])
        >>> targets = torch.tensor([0, 1])
        >>> round(info_nce(scores, targets).item(), 4)
        0.0838
        >>> round(torch.nn.functional.cross_entropy(scores, targets).item(), 4)
        0.0838
    """
    terms = pair_terms(scores, targets, mask, "info_nce")
    return terms.mean(terms.log_one_plus_xi)


def flat_nce(scores: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """FlatNCE, ``log Σ_{i≠t} e^{s_i} − s_t = log ξ`` (post eq. 5): the positive leaves the logsumexp.

    Its gradient equals that of the paper's ``ξ / sg(ξ)`` (eq. 3, :func:`flat_nce_stopgrad`) by
    eq. (4). The value can be negative; ``softplus(flat_nce term) = InfoNCE term`` per pair.

    Args:
        scores: ``[R, K]`` scaled scores.
        targets: int ``[R]`` positive index per row, or bool ``[R, K]`` positives.
        mask: bool ``[R, K]``, True where the pair takes part.

    Returns:
        Scalar tensor, mean over positives, then over anchors.

    Raises:
        ValueError, TypeError: see :func:`pair_terms`.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[5.0, 1.0, 0.0], [0.0, 4.0, 2.0]])
        >>> round(flat_nce(scores, torch.tensor([0, 1])).item(), 4)
        -2.7799
    """
    terms = pair_terms(scores, targets, mask, "flat_nce")
    return terms.mean(terms.log_xi)


def flat_nce_stopgrad(scores: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """FlatNCE in the paper's form ``ξ / sg(ξ)`` (post eq. 3); its value is always 1.

    Computed as ``exp(log ξ − sg(log ξ))``, which equals ``ξ / sg(ξ)`` without overflowing when ξ is
    huge or underflowing when it is tiny. The gradient is ``∇ log ξ`` (eq. 4), that of
    :func:`flat_nce`. Prefer :func:`flat_nce`; this form exists to show the identity.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[5.0, 1.0, 0.0], [0.0, 4.0, 2.0]])
        >>> flat_nce_stopgrad(scores, torch.tensor([0, 1])).item()
        1.0
    """
    terms = pair_terms(scores, targets, mask, "flat_nce_stopgrad")
    return terms.mean(torch.exp(terms.log_xi - terms.log_xi.detach()))


def similarity_scores(anchors: Tensor, candidates: Tensor, similarity: str = "cosine",
                      scale: float = 20.0) -> Tensor:
    """Scaled scores ``s = scale · sim(anchor, candidate)`` with ``scale = 1 / temperature``.

    Args:
        anchors: ``[R, D]``.
        candidates: ``[K, D]``.
        similarity: ``"cosine"`` (L2-normalised dot product) or ``"dot"``.
        scale: ``1 / temperature``, > 0.

    Returns:
        ``[R, K]`` scores.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"`similarity` must be one of {SIMILARITIES}, got {similarity!r}")
    if similarity == "cosine":
        anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
    return (anchors * scale) @ candidates.T  # scaling [R, D] is cheaper than scaling [R, K]
