"""Contrastive losses: InfoNCE and FlatNCE (Su, kexue.fm/archives/8586; arXiv 2107.01152).

For an anchor whose positive scores ``s_t`` among K candidates, ``ξ = Σ_{i≠t} e^{s_i − s_t}``:

    InfoNCE = log Σ_i e^{s_i} − s_t = log(1 + ξ)         post eq. (1)
    FlatNCE = ξ / sg(ξ)  ≡  log Σ_{i≠t} e^{s_i} − s_t     post eq. (3) and (5), equal gradients (eq. 4)

With small batches ξ is tiny, InfoNCE ≈ ξ (eq. 2), and floating-point error in its gradient drowns
the signal; FlatNCE keeps an O(1) gradient in the same direction.

- :mod:`~kexue.contrastive.functional`: ``info_nce``, ``flat_nce``, ``flat_nce_stopgrad`` over a score
  matrix, and ``similarity_scores``.
- :mod:`~kexue.contrastive.losses`: ``InfoNCELoss`` and ``FlatNCELoss`` over embeddings (in-batch and
  explicit negatives, cosine/dot with a temperature, symmetric, supervised labels, masks).
- :mod:`~kexue.contrastive.diagnostics`: the gradients' floating-point error against float64.

Example:
    >>> import torch
    >>> from kexue.contrastive import FlatNCELoss
    >>> loss_fn = FlatNCELoss(temperature=0.05)
    >>> out = loss_fn(torch.randn(4, 8), torch.randn(4, 8))   # anchors, positives
    >>> out.loss.ndim, out.info_nce.ndim                        # backward on out.loss; log out.info_nce
    (0, 0)
"""

from kexue.contrastive.diagnostics import GradientError, gradient_errors, scores_with_xi
from kexue.contrastive.functional import (PairTerms, flat_nce, flat_nce_stopgrad, info_nce, pair_terms,
                                          similarity_scores)
from kexue.contrastive.losses import ContrastiveOutput, FlatNCELoss, InfoNCELoss, score_batch

__all__ = ["info_nce", "flat_nce", "flat_nce_stopgrad", "pair_terms", "PairTerms", "similarity_scores",
           "InfoNCELoss", "FlatNCELoss", "ContrastiveOutput", "score_batch",
           "gradient_errors", "GradientError", "scores_with_xi"]
