"""InfoNCE and FlatNCE as ``nn.Module`` losses over embeddings (kexue.fm/archives/8586).

Both classes score the batch with the same helper, :func:`score_batch`, and differ only in the term
they differentiate (post eq. 1 vs eq. 5, see :mod:`kexue.contrastive.functional`). Both return a
:class:`ContrastiveOutput` holding the loss and, detached for logging, the InfoNCE and FlatNCE values
of the same batch, so a FlatNCE run can be monitored on the familiar (non-negative) InfoNCE scale.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.contrastive.functional import SIMILARITIES, pair_terms, similarity_scores

__all__ = ["ContrastiveOutput", "InfoNCELoss", "FlatNCELoss", "score_batch"]

_CITATION = """@article{chen2021flatnce,
  title={Simpler, Faster, Stronger: Breaking The log-K Curse On Contrastive Learners With FlatNCE},
  author={Chen, Junya and Gan, Zhe and Li, Xuan and Guo, Qing and Chen, Liqun and Gao, Shuyang and
          Chung, Tagyoung and Xu, Yi and Zeng, Belinda and Lu, Wenlian and Li, Fan and Carin, Lawrence
          and Tao, Chenyang},
  journal={arXiv preprint arXiv:2107.01152},
  year={2021}
}"""


class ContrastiveOutput(NamedTuple):
    """What the losses return.

    Attributes:
        loss: scalar to call ``backward()`` on.
        info_nce: detached InfoNCE value of the batch (>= 0), computed as ``softplus(log ξ)`` so
            that it stays exact when ξ is below machine epsilon.
        flat_nce: detached FlatNCE value, the mean ``log ξ`` (may be negative).
    """

    loss: Tensor
    info_nce: Tensor
    flat_nce: Tensor


def _check_embeddings(name: str, loss_name: str, value: Tensor, width: int | None = None) -> None:
    if value.dim() != 2:
        raise ValueError(f"{loss_name}: `{name}` must be 2-D [batch, dim], got shape {tuple(value.shape)}")
    if width is not None and value.shape[1] != width:
        raise ValueError(f"{loss_name}: `{name}` has dimension {value.shape[1]}, `anchors` has {width}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{loss_name}: `{name}` contains NaN or inf")


def score_batch(anchors: Tensor, positives: Tensor, negatives: Tensor | None, labels: Tensor | None,
                mask: Tensor | None, similarity: str, scale: float, symmetric: bool,
                loss_name: str) -> list[tuple[Tensor, Tensor, Tensor | None]]:
    """The score matrices of a batch, one per direction, as ``(scores, targets, mask)``.

    Forward direction: anchor i against the candidates ``[positives; negatives]`` (``[B, B + M]``),
    its positive is column i (or, with ``labels``, every column j < B with ``labels[j] == labels[i]``).
    Backward direction (``symmetric``): positive i against the anchors (``[B, B]``), with the same
    positives and ``mask[:, :B].T``.
    """
    batch = anchors.shape[0]
    _check_embeddings("anchors", loss_name, anchors)
    _check_embeddings("positives", loss_name, positives, anchors.shape[1])
    if positives.shape[0] != batch:
        raise ValueError(f"{loss_name}: `positives` must have one row per anchor ({batch}), got {positives.shape[0]}")
    candidates = positives
    if negatives is not None:
        _check_embeddings("negatives", loss_name, negatives, anchors.shape[1])
        candidates = torch.cat([positives, negatives])
    if labels is None:
        targets = torch.arange(batch, device=anchors.device)
    else:
        if labels.shape != (batch,):
            raise ValueError(f"{loss_name}: `labels` must have shape [{batch}], got {tuple(labels.shape)}")
        same = labels[:, None] == labels[None, :]  # [B, B]
        targets = torch.cat([same, same.new_zeros(batch, candidates.shape[0] - batch)], dim=1)
    if mask is not None and mask.shape != (batch, candidates.shape[0]):
        raise ValueError(f"{loss_name}: `mask` must have shape [{batch}, {candidates.shape[0]}] "
                         f"(anchors x [positives; negatives]), got {tuple(mask.shape)}")
    directions = [(similarity_scores(anchors, candidates, similarity, scale), targets, mask)]
    if symmetric:
        backward_targets = targets if labels is None else targets[:, :batch].T
        backward_mask = None if mask is None else mask[:, :batch].T
        directions.append((similarity_scores(positives, anchors, similarity, scale), backward_targets,
                           backward_mask))
    return directions


def _check_temperature(temperature: float) -> None:
    if not isinstance(temperature, (int, float)) or not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"`temperature` must be a finite number > 0, got {temperature!r}")


class _ContrastiveLoss(nn.Module):
    """Shared body of :class:`InfoNCELoss` and :class:`FlatNCELoss`; ``objective`` picks the term."""

    objective: str  # "info_nce" (post eq. 1) or "flat_nce" (post eq. 5)

    def __init__(self, temperature: float = 0.05, similarity: str = "cosine", symmetric: bool = False) -> None:
        super().__init__()
        _check_temperature(temperature)
        if similarity not in SIMILARITIES:
            raise ValueError(f"`similarity` must be one of {SIMILARITIES}, got {similarity!r}")
        self.temperature = float(temperature)
        self.scale = 1.0 / self.temperature  # scale = 1 / temperature
        self.similarity = similarity
        self.symmetric = bool(symmetric)

    def forward(self, anchors: Tensor, positives: Tensor, negatives: Tensor | None = None,
                labels: Tensor | None = None, mask: Tensor | None = None) -> ContrastiveOutput:
        name = type(self).__name__
        directions = score_batch(anchors, positives, negatives, labels, mask, self.similarity, self.scale,
                                 self.symmetric, name)
        losses, info, flat = [], [], []
        for scores, targets, direction_mask in directions:
            terms = pair_terms(scores, targets, direction_mask, name)
            differentiated = terms.log_xi if self.objective == "flat_nce" else terms.log_one_plus_xi
            losses.append(terms.mean(differentiated))
            log_xi = terms.log_xi.detach()
            # softplus(log ξ) = log(1 + ξ) keeps its digits when ξ < machine epsilon, where the
            # cross-entropy value rounds to 0: a finer monitor than the InfoNCE loss itself.
            info.append(terms.mean(F.softplus(log_xi)))
            flat.append(terms.mean(log_xi))
        count = len(directions)
        return ContrastiveOutput(sum(losses) / count, sum(info) / count, sum(flat) / count)

    def get_config_dict(self) -> dict[str, Any]:
        """The settings that define this loss, for logs and model cards."""
        return {"temperature": self.temperature, "scale": self.scale, "similarity": self.similarity,
                "symmetric": self.symmetric}

    @property
    def citation(self) -> str:
        """BibTeX of the FlatNCE paper (the post is kexue.fm/archives/8586)."""
        return _CITATION

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.get_config_dict().items())


_SHARED_DOC = """
    Args:
        temperature: τ > 0; scores are ``s = sim / τ``, i.e. ``scale = 1 / temperature``
            (0.05 as in SimCSE; sentence-transformers' default ``scale=20`` is the same).
        similarity: ``"cosine"`` (L2-normalised) or ``"dot"``.
        symmetric: also score each positive against the anchors and average the two directions.

    Inputs (``forward(anchors, positives, negatives=None, labels=None, mask=None)``):

        ==================  ===============  ==========================================================
        argument            shape            meaning
        ==================  ===============  ==========================================================
        anchors             [B, D]           one row per anchor
        positives           [B, D]           ``positives[i]`` is anchor i's positive; the others are
                                             in-batch negatives
        negatives           [M, D] or None   extra negatives shared by every anchor (hard negatives)
        labels              [B] or None      supervised: every ``positives[j]`` with
                                             ``labels[j] == labels[i]`` is a positive of anchor i
        mask                [B, B+M] bool    True where (anchor, candidate) takes part; False pairs
                                             are ignored (duplicates, padding)
        ==================  ===============  ==========================================================

        Any batch size works, including a short last batch; a batch with no negative (B = 1 and
        no ``negatives``) is an error.

    Returns:
        :class:`ContrastiveOutput` ``(loss, info_nce, flat_nce)``; the last two are detached.

    Raises:
        ValueError: mismatched shapes, ``temperature <= 0``, NaN/inf embeddings or scores, no
            negative for an anchor; the message names the loss.

    References: Chen et al. 2021, arXiv 2107.01152; Su, "FlatNCE", kexue.fm/archives/8586.
"""


class InfoNCELoss(_ContrastiveLoss):
    """InfoNCE (a.k.a. NT-Xent, MultipleNegativesRankingLoss, SimCSE's loss) over embeddings.

    For anchor i with candidates scored ``s_j = sim(a_i, c_j) / τ`` and positive t:
    ``loss_i = log Σ_j e^{s_j} − s_t = log(1 + ξ)``, ``ξ = Σ_{j≠t} e^{s_j − s_t}`` (post eq. 1).
    {shared}
    Relations: :class:`FlatNCELoss` drops the positive from the logsumexp; its gradient has the same
    direction per anchor and no rounding loss when ξ is tiny (small batches).

    Example:
        >>> import torch
        >>> from kexue.contrastive import InfoNCELoss
        >>> anchors, positives = torch.randn(8, 16), torch.randn(8, 16)
        >>> out = InfoNCELoss(temperature=0.05)(anchors, positives)
        >>> out.loss.shape, bool(torch.isclose(out.loss, out.info_nce))
        (torch.Size([]), True)
    """

    objective = "info_nce"


class FlatNCELoss(_ContrastiveLoss):
    """FlatNCE over embeddings: InfoNCE with the positive removed from the logsumexp.

    For anchor i with candidates scored ``s_j = sim(a_i, c_j) / τ`` and positive t:
    ``loss_i = log Σ_{j≠t} e^{s_j} − s_t = log ξ`` (post eq. 5), whose gradient equals that of the
    paper's ``ξ / sg(ξ)`` (eq. 3, 4). The value can be negative: log ``out.info_nce`` to watch
    training on the usual scale.
    {shared}
    Relations: same functional form as DCL (Yeh et al. 2021, arXiv 2110.06848); with one positive
    per anchor, ``InfoNCE = softplus(FlatNCE)`` pair by pair.

    Example:
        >>> import torch
        >>> from kexue.contrastive import FlatNCELoss
        >>> loss_fn = FlatNCELoss(temperature=0.05, symmetric=True)
        >>> anchors = torch.randn(8, 16, requires_grad=True)
        >>> out = loss_fn(anchors, anchors.detach() + 0.1 * torch.randn(8, 16))
        >>> out.loss.backward()
        >>> bool(out.info_nce >= 0), anchors.grad.shape
        (True, torch.Size([8, 16]))
    """

    objective = "flat_nce"


for _loss_class in (InfoNCELoss, FlatNCELoss):
    _loss_class.__doc__ = _loss_class.__doc__.replace("{shared}", _SHARED_DOC)
