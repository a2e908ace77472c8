"""Floating-point error of the InfoNCE and FlatNCE gradients, measured against float64.

The post's argument (kexue.fm/archives/8586): when ``ξ = Σ_{i≠t} e^{s_i − s_t}`` is tiny, the
cross-entropy gradient ``softmax − one_hot`` has the positive's component ``p_t − 1 = −ξ/(1+ξ)``,
computed from ``p_t ≈ 1`` and so rounded away below ξ ≈ machine epsilon; the negatives' components
``e^{s_i}/Σ e^{s}`` may underflow (fp16). FlatNCE's gradient ``softmax over the negatives − one_hot``
has no such cancellation (eq. 4, 5).

:func:`gradient_errors` computes both gradients w.r.t. the scores in a low precision, normalises
them (Adam is roughly invariant to the gradient's scale, so the direction is what counts) and
compares them with each loss's exact float64 gradient at the *same rounded scores*, so the error
measured is that of the computation, not of storing the scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue.contrastive.functional import flat_nce, info_nce, pair_terms, similarity_scores

__all__ = ["GradientError", "gradient_errors", "scores_with_xi", "INFO_NCE_FORMS", "batch_gradient_error",
           "update_direction_cosines", "adam_eps_damping", "info_nce_exact"]

# How InfoNCE's gradient is computed: "cross_entropy" is the usual F.cross_entropy (int targets,
# no mask); "kexue" is :func:`kexue.contrastive.info_nce`.
INFO_NCE_FORMS = ("cross_entropy", "kexue")


@dataclass(frozen=True)
class GradientError:
    """How far a low-precision gradient's direction is from the float64 one.

    Attributes:
        loss: ``"info_nce"`` or ``"flat_nce"``.
        dtype: the precision measured, e.g. ``"float32"``.
        relative_error: ``‖ĝ − ĝ₆₄‖`` with ``ĝ = g / ‖g‖`` over the whole ``[R, K]`` gradient;
            1.0 when the gradient vanished entirely, inf when it is not finite.
        cosine: ``ĝ · ĝ₆₄`` (0.0 for a vanished gradient, NaN for a non-finite one).
    """

    loss: str
    dtype: str
    relative_error: float
    cosine: float


def _gradient(loss_fn: Callable[[Tensor], Tensor], scores: Tensor) -> Tensor:
    scores = scores.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss_fn(scores), scores)
    return gradient


def _compare(loss: str, low: Tensor, exact: Tensor) -> GradientError:
    dtype = str(low.dtype).removeprefix("torch.")
    low = low.double()
    if not bool(torch.isfinite(low).all()):
        return GradientError(loss, dtype, float("inf"), float("nan"))
    norm = low.norm()
    if float(norm) == 0.0:
        return GradientError(loss, dtype, 1.0, 0.0)
    low_unit, exact_unit = low / norm, exact / exact.norm()
    return GradientError(loss, dtype, float((low_unit - exact_unit).norm()), float((low_unit * exact_unit).sum()))


def gradient_errors(scores: Tensor, targets: Tensor, dtype: torch.dtype = torch.float32,
                    mask: Tensor | None = None, info_nce_form: str = "cross_entropy") -> dict[str, GradientError]:
    """Relative error of the InfoNCE and FlatNCE gradients (w.r.t. ``scores``) computed in ``dtype``.

    Args:
        scores: ``[R, K]`` scores (any float dtype); they are rounded to ``dtype`` first.
        targets: int ``[R]`` positive per row, or bool ``[R, K]``.
        dtype: the precision to measure (``torch.float32``, ``torch.bfloat16``, ``torch.float16``).
        mask: bool ``[R, K]``, True where the pair takes part.
        info_nce_form: ``"cross_entropy"`` (``F.cross_entropy`` autograd, as users compute InfoNCE;
            needs int targets and no mask) or ``"kexue"`` (:func:`kexue.contrastive.info_nce`).

    Returns:
        ``{"info_nce": GradientError, "flat_nce": GradientError}``.

    Example:
        >>> scores, targets = scores_with_xi(1e-9, num_candidates=16, rows=4)
        >>> errors = gradient_errors(scores, targets, torch.float32)
        >>> errors["info_nce"].relative_error > 0.1, errors["flat_nce"].relative_error < 1e-3
        (True, True)
    """
    if info_nce_form not in INFO_NCE_FORMS:
        raise ValueError(f"`info_nce_form` must be one of {INFO_NCE_FORMS}, got {info_nce_form!r}")
    if info_nce_form == "cross_entropy" and (targets.dtype == torch.bool or mask is not None):
        raise ValueError("`info_nce_form='cross_entropy'` needs int targets and no mask; use 'kexue'")
    if info_nce_form == "cross_entropy":
        def info(values: Tensor) -> Tensor:
            return F.cross_entropy(values, targets)
    else:
        def info(values: Tensor) -> Tensor:
            return info_nce(values, targets, mask)

    def flat(values: Tensor) -> Tensor:
        return flat_nce(values, targets, mask)

    low = scores.detach().to(dtype)
    exact_scores = low.double()  # the rounded scores, exactly
    return {name: _compare(name, _gradient(fn, low), _gradient(fn, exact_scores))
            for name, fn in (("info_nce", info), ("flat_nce", flat))}


def scores_with_xi(xi: float, num_candidates: int, rows: int = 1, seed: int = 0,
                   positive_score: float = 10.0) -> tuple[Tensor, Tensor]:
    """float64 scores whose every row has exactly the given ``ξ = Σ_{i≠t} e^{s_i − s_t}``.

    The positive (column 0) scores ``positive_score`` (10 ≈ cosine 0.5 at temperature 0.05); the
    ``K − 1`` negatives share ξ with Dirichlet(1) weights w: ``s_i = s_t + log(ξ w_i)``.

    Returns:
        ``(scores [rows, K] float64, targets [rows] int, all 0)``.
    """
    if num_candidates < 2:
        raise ValueError(f"`num_candidates` must be >= 2 (a positive and a negative), got {num_candidates}")
    if not xi > 0:
        raise ValueError(f"`xi` must be > 0, got {xi!r}")
    generator = torch.Generator().manual_seed(seed)
    weights = -torch.log(torch.rand(rows, num_candidates - 1, generator=generator, dtype=torch.float64))
    weights = weights / weights.sum(dim=1, keepdim=True)
    negatives = positive_score + torch.log(xi * weights)
    scores = torch.cat([torch.full((rows, 1), positive_score, dtype=torch.float64), negatives], dim=1)
    return scores, torch.zeros(rows, dtype=torch.long)


def info_nce_exact(scores: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """InfoNCE computed as ``softplus(log ξ)`` (= ``log(1 + ξ)``): no cancellation at any ξ.

    The usual form, ``logsumexp(all) − s_t``, subtracts two nearly equal numbers once ξ is below
    the dtype's epsilon, and its gradient ``p_t − 1`` rounds the same way. Here ``log ξ`` comes from
    the negatives alone (FlatNCE's term) and the gradient is ``sigmoid(log ξ) · ∇log ξ``, accurate to
    the last digit for every ξ. It is the exact reference for InfoNCE's gradient, in float64 the
    control arm that removes the float error and nothing else.
    """
    terms = pair_terms(scores, targets, mask, "info_nce_exact")
    return terms.mean(F.softplus(terms.log_xi))


def _scores_and_log_xi(anchors: Tensor, positives: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """float64 in-batch cosine scores ``[B, B]`` (positive on the diagonal), targets, each anchor's ``log ξ``."""
    scores = similarity_scores(anchors.detach().double(), positives.detach().double(), "cosine", scale)
    targets = torch.arange(len(scores), device=scores.device)
    return scores, targets, pair_terms(scores, targets).log_xi


def batch_gradient_error(anchors: Tensor, positives: Tensor, scale: float) -> tuple[float, float]:
    """How far InfoNCE's float32 gradient w.r.t. a training batch's scores is from the exact one.

    The batch is scored as :class:`~kexue.contrastive.InfoNCELoss` scores it (cosine, in-batch
    negatives, positive on the diagonal) and rounded to float32; the gradient of :func:`info_nce`
    there (the form the loss module trains with) is compared with :func:`info_nce_exact`'s in
    float64 at the same rounded scores.

    Returns:
        ``(relative error of the whole normalised [B, B] gradient, log10 of the median anchor's ξ)``.
    """
    scores, targets, log_xi = _scores_and_log_xi(anchors, positives, scale)
    rounded = scores.float()
    low = _gradient(lambda values: info_nce(values, targets), rounded)
    exact = _gradient(lambda values: info_nce_exact(values, targets), rounded.double())
    return _compare("info_nce", low, exact).relative_error, float(log_xi.median() / math.log(10))


def _cosine(first: Tensor, second: Tensor) -> float:
    return float((first * second).sum() / (first.norm() * second.norm()))


def update_direction_cosines(anchors: Tensor, positives: Tensor, scale: float,
                             dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    """Cosine between InfoNCE's and FlatNCE's gradients w.r.t. the embeddings of one batch.

    The post's argument: FlatNCE's gradient is InfoNCE's times ``(1 + ξ)/ξ``, a factor that differs
    from anchor to anchor. So each anchor's own term has the same gradient direction under both
    losses (cosine 1 in exact arithmetic), while the batch's gradient, a sum over anchors, is
    reweighted: InfoNCE weights anchor i's direction by about ξ_i, FlatNCE by about 1.

    Args:
        anchors, positives: ``[B, D]`` embeddings (in-batch negatives, cosine scores).
        scale: ``1 / temperature``.
        dtype: the precision of the per-anchor and ``"batch"`` gradients (usual InfoNCE form).

    Returns:
        ``{"batch": cosine of the batch gradients in dtype, "batch_exact": the same with InfoNCE from
        :func:`info_nce_exact` and both in float64, "per_anchor": [B] cosines of each anchor's term in
        dtype, "log10_xi": [B] each anchor's log10 ξ}``.
    """
    def gradients(loss_fn: Callable[[Tensor, Tensor], Tensor], precision: torch.dtype) -> Tensor:
        leaf_anchors = anchors.detach().to(precision).requires_grad_(True)
        leaf_positives = positives.detach().to(precision).requires_grad_(True)
        scores = similarity_scores(leaf_anchors, leaf_positives, "cosine", scale)
        targets = torch.arange(len(scores), device=scores.device)
        per_anchor = [torch.cat(torch.autograd.grad(loss_fn(scores[row: row + 1], targets[row: row + 1]),
                                                    (leaf_anchors, leaf_positives), retain_graph=True)).flatten()
                      for row in range(len(scores))]
        return torch.stack(per_anchor).double()  # [B, 2 B D]; the batch gradient is the mean over rows

    info, flat = gradients(info_nce, dtype), gradients(flat_nce, dtype)
    exact, flat64 = gradients(info_nce_exact, torch.float64), gradients(flat_nce, torch.float64)
    log_xi = _scores_and_log_xi(anchors, positives, scale)[2]
    return {"batch": _cosine(info.mean(0), flat.mean(0)), "batch_exact": _cosine(exact.mean(0), flat64.mean(0)),
            "per_anchor": [_cosine(i, f) for i, f in zip(info, flat)],
            "log10_xi": (log_xi / math.log(10)).tolist()}


def adam_eps_damping(optimizer: torch.optim.Optimizer) -> float:
    """How much Adam's eps shrinks its current update: ``‖m̂/(√v̂ + eps)‖ / ‖m̂/√v̂‖``.

    1 means eps is negligible (the update is scale-invariant, as the post assumes); near 0 means
    the gradients are so small next to eps that Adam behaves like SGD with a tiny rate. Read from
    the optimizer's state (``exp_avg``, ``exp_avg_sq``, ``step``: Adam and AdamW).
    """
    damped, undamped = 0.0, 0.0
    for group in optimizer.param_groups:
        beta1, beta2 = group["betas"]
        for parameter in group["params"]:
            state = optimizer.state.get(parameter)
            if not state:
                continue
            step = float(state["step"])
            m_hat = state["exp_avg"].double() / (1 - beta1 ** step)
            root_v_hat = (state["exp_avg_sq"].double() / (1 - beta2 ** step)).sqrt()
            seen = root_v_hat > 0  # entries that never had a gradient move under neither
            damped += float((m_hat[seen] / (root_v_hat[seen] + group["eps"])).pow(2).sum())
            undamped += float((m_hat[seen] / root_v_hat[seen]).pow(2).sum())
    if undamped == 0.0:
        raise ValueError("`optimizer` has no Adam state yet: take a step first")
    return math.sqrt(damped / undamped)
