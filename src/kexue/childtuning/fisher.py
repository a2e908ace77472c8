"""Fisher information of the parameters and ChildTuning-D's top-p mask.

Post 8764, eq. (1)::

    F_i = 1/n Σ_j (∂ log p(y_j | x_j; θ) / ∂θ_i)²

- ``per_example=True`` is that formula: one squared gradient per example, computed for a whole
  batch at once with ``torch.func`` (``vmap`` over ``grad``).
- ``per_example=False`` (the official ChildTuning-D code, and much cheaper) squares the gradient of
  each mini-batch's mean loss and averages over batches: an empirical Fisher of mini-batch
  gradients, which weights the mean gradient more and the per-example spread less.

The mask keeps the ``k = round(p · N)`` elements with the largest ``F_i`` over *all* tensors
together (a global, not per-tensor, top-p). The threshold is found exactly by bisection on the
bit patterns of the float32 values (for non-negative floats, integer order is float order):
about 31 counting passes over the Fisher tensors, no sort, no concatenated copy of all
parameters (the official code builds one NumPy array with repeated ``np.append``).
"""

from __future__ import annotations

import warnings

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

__all__ = ["fisher_information", "fisher_mask"]

LossFn = Callable[[nn.Module, Any], Tensor]


class _LossModule(nn.Module):
    """``loss_fn(model, batch)`` as a module, so ``torch.func.functional_call`` can swap its parameters."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.model, batch)


def _batch_size(batch: Any) -> int:
    leaves = [t for t in torch.utils._pytree.tree_leaves(batch) if isinstance(t, Tensor)]
    if not leaves:
        raise ValueError("per-example Fisher needs batches of tensors with a leading batch dimension")
    return leaves[0].shape[0]


def fisher_information(model: nn.Module, data: Iterable[Any], loss_fn: LossFn, *, per_example: bool = False,
                       named_parameters: Iterable[tuple[str, nn.Parameter]] | None = None,
                       examples_per_call: int = 8) -> dict[str, Tensor]:
    """Streaming empirical Fisher information, float32, keyed by parameter name.

    Args:
        model: the model; its mode (train/eval) is left as the caller set it.
        data: batches; each is passed to ``loss_fn`` as is (move it to the device beforehand).
        loss_fn: ``loss_fn(model, batch) -> scalar``, the mean negative log-likelihood of the
            batch (e.g. cross-entropy). With ``per_example=True`` it is called on batches of one
            example, so it must not depend on the batch size otherwise.
        per_example: squared per-example gradients (eq. 1) instead of squared mini-batch gradients.
        named_parameters: the tensors to score (default: every parameter that requires grad).
        examples_per_call: per-example mode: examples whose gradients are held at once.

    Returns:
        ``{name: F}`` with ``F`` the mean squared gradient, shaped like the parameter.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> data = [(torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))]
        >>> loss = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])
        >>> fisher = fisher_information(model, data, loss, per_example=True)
        >>> sorted(fisher), tuple(fisher["weight"].shape)
        (['bias', 'weight'], (2, 3))
    """
    named = dict(named_parameters if named_parameters is not None
                 else ((n, p) for n, p in model.named_parameters() if p.requires_grad))
    sums = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in named.items()}
    count = 0
    for batch in data:
        if per_example:
            count += _add_per_example_squares(model, batch, loss_fn, named, sums, examples_per_call)
        else:
            grads = torch.autograd.grad(loss_fn(model, batch), list(named.values()), allow_unused=True)
            for name, grad in zip(named, grads):
                if grad is not None:
                    sums[name].add_(grad.float().square())
            count += 1
    if count == 0:
        raise ValueError("`data` yielded no batches")
    return {n: s.div_(count) for n, s in sums.items()}


def _add_per_example_squares(model: nn.Module, batch: Any, loss_fn: LossFn, named: Mapping[str, nn.Parameter],
                             sums: dict[str, Tensor], examples_per_call: int) -> int:
    from torch.func import functional_call, grad, vmap

    module = _LossModule(model, loss_fn)
    buffers = {f"model.{n}": b for n, b in model.named_buffers()}
    frozen = {f"model.{n}": p.detach() for n, p in model.named_parameters() if n not in named}
    trained = {n: p.detach() for n, p in named.items()}

    def example_loss(params: dict[str, Tensor], example: Any) -> Tensor:
        batch_of_one = tree_map(lambda t: t.unsqueeze(0) if isinstance(t, Tensor) else t, example)
        state = {**buffers, **frozen, **{f"model.{n}": t for n, t in params.items()}}
        return functional_call(module, state, (batch_of_one,))

    per_example_grad = vmap(grad(example_loss), in_dims=(None, 0), randomness="different")
    size = _batch_size(batch)
    for start in range(0, size, examples_per_call):
        chunk = tree_map(lambda t: t[start:start + examples_per_call] if isinstance(t, Tensor) else t, batch)
        with warnings.catch_warnings():  # CPU SDPA's backward has no batching rule yet: a loop, still exact
            warnings.filterwarnings("ignore", message="There is a performance drop")
            gradients = per_example_grad(trained, chunk)
        for name, g in gradients.items():
            sums[name].add_(g.float().square().sum(0))
    return size


def fisher_mask(fisher: Mapping[str, Tensor], reserve_p: float) -> dict[str, Tensor]:
    """Keep the top ``k = round(reserve_p · N)`` elements by Fisher value, over all tensors together.

    Ties: every element strictly above the threshold value is kept; among elements *equal* to it,
    the earliest win (in the mapping's order, then row-major), so exactly ``k`` are kept.

    Args:
        fisher: ``{name: F}`` with ``F >= 0`` (from :func:`fisher_information`).
        reserve_p: the fraction to keep, in ``(0, 1]``.

    Returns:
        ``{name: bool tensor}``, True = train this element.

    Raises:
        ValueError: on ``reserve_p`` outside ``(0, 1]``, an empty mapping, or negative/NaN values.

    Example:
        >>> masks = fisher_mask({"a": torch.tensor([0.1, 0.5]), "b": torch.tensor([0.3, 0.0, 0.9])}, 0.4)
        >>> masks["a"].tolist(), masks["b"].tolist()
        ([False, True], [False, False, True])
    """
    if not 0.0 < reserve_p <= 1.0:
        raise ValueError(f"`reserve_p` must be in (0, 1], got {reserve_p}")
    if not fisher:
        raise ValueError("`fisher` is empty")
    bits = {}
    for name, values in fisher.items():
        values = values.detach().float().contiguous()
        if bool((values < 0).any()) or bool(values.isnan().any()):
            raise ValueError(f"`fisher[{name!r}]` has negative or NaN values")
        bits[name] = values.view(torch.int32)  # order-preserving for non-negative floats
    total = sum(b.numel() for b in bits.values())
    keep = max(1, min(total, round(reserve_p * total)))

    def at_least(threshold: int) -> int:
        return sum(int((b >= threshold).sum()) for b in bits.values())

    low, high = 0, max(int(b.max()) for b in bits.values()) + 1  # at_least(low) >= keep > at_least(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if at_least(middle) >= keep else (low, middle)
    ties_left = keep - at_least(low + 1)  # elements equal to the threshold still to keep
    masks = {}
    for name, b in bits.items():
        mask = b > low
        if ties_left > 0:
            ties = (b == low).view(-1)
            chosen = ties & (ties.cumsum(0) <= ties_left)
            ties_left -= int(chosen.sum())
            mask |= chosen.view(b.shape)
        masks[name] = mask
    assert sum(int(m.sum()) for m in masks.values()) == keep
    return masks
