"""The :class:`ChildTuning` wrapper: gradient dropout (F), Fisher masks (D) and update dropout.

See :mod:`kexue.childtuning` for the math. This file is the mechanics: which tensors are masked,
when the masks are applied around the wrapped optimizer's ``step()``, and the state that must
survive a checkpoint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer

from kexue.childtuning.sampling import BernoulliMaskSampler, flat_chunks

__all__ = ["ChildTuning", "MODES"]

logger = logging.getLogger(__name__)

MODES = ("F", "D", "update")


def _shared_seed(seed: int | None, device: torch.device) -> int:
    """``seed``, or one drawn from torch's global RNG and, under torch.distributed, taken from rank 0."""
    if seed is not None:
        return int(seed)
    drawn = torch.randint(0, 2 ** 62, (1,), dtype=torch.int64)
    if dist.is_available() and dist.is_initialized():
        drawn = drawn.to(device)
        dist.broadcast(drawn, src=0)
    return int(drawn.item())


class ChildTuning(Optimizer):
    """Train a child network each step: ChildTuning-F, ChildTuning-D or update dropout, around any optimizer.

    Modes (``M`` is a 0/1 mask with keep rate ``p = reserve_p``, ``q`` the realised rate, see
    :class:`kexue.childtuning.sampling.BernoulliMaskSampler`):

    - ``"F"`` (task-free, gradient dropout): ``g <- g * M / q`` with a fresh ``M`` every step,
      applied before the optimizer sees ``g`` (so before Adam's moments, as in the paper's code).
    - ``"D"`` (task-dependent): ``g <- g * M / p`` with a fixed ``M`` (from
      :func:`kexue.childtuning.fisher_mask`). The ``/p`` follows post 8764, which writes
      ``g ⊗ M / p`` for both modes; the official code omits it in D mode. With Adam the
      rescale hardly matters (Adam is nearly invariant to a constant factor on ``g``); with SGD
      it keeps the update's size. ``rescale=False`` reproduces the official code.
    - ``"update"`` (Su's "incre drop"): the optimizer steps on the full gradient, then each element
      keeps its update with probability ``q``: ``θ <- θ_old + (θ_new - θ_old) * M / q``. A dropped
      element does not move this step: it keeps its value exactly (compares equal).

    Args:
        optimizer: any ``torch.optim.Optimizer`` (AdamW, SGD with momentum, Adafactor, ...). Its
            parameter groups, state and learning rate stay its own; schedulers and
            ``accelerate`` work on the wrapper unchanged.
        mode: ``"F"``, ``"D"`` or ``"update"``.
        reserve_p: the keep probability ``p`` in ``(0, 1]`` (the paper's name). Used by F and
            update, and by D for the rescale.
        named_parameters: ``model.named_parameters()``; needed for ``exclude`` and for D, whose
            mask is keyed by name.
        exclude: regular expressions (``re.search``) on parameter names; matching tensors are never
            masked and train normally (e.g. ``("embeddings", "LayerNorm|norm", "classifier")``).
        gradient_mask: D only: ``{name: bool tensor}``, True = train. Tensors without an entry
            train normally.
        rescale: divide by the keep probability (default, the post's formula) or not.
        decay_frozen: D only. False (default): elements outside the mask never move, even
            under weight decay (each step restores them). True: the optimizer's weight decay still
            shrinks them, as in the official code.
        seed: seeds the masks. Replicas with the same seed draw the same masks (needed under
            data parallelism). Default: drawn from torch's global RNG and, under
            ``torch.distributed``, broadcast from rank 0.

    Raises:
        ValueError: on an unknown mode, ``reserve_p`` outside ``(0, 1]``, a mask for an unknown
            name or of the wrong shape, or ``exclude``/D without ``named_parameters``.
        TypeError: if ``optimizer`` is not a ``torch.optim.Optimizer``.

    dtypes: parameters and gradients may be fp32, bf16 or fp16; masks are drawn in fp32 and the
    products are rounded to the gradient's dtype (``1/q`` is not exact in bf16: the mean of a
    bf16 masked gradient is off by that rounding, at most 2^-9 relative).

    References:
        Xu et al., "Raise a Child in Large Language Model", EMNLP 2021 (arXiv 2109.05687);
        kexue.fm/archives/8764.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> optimizer = ChildTuning(torch.optim.AdamW(model.parameters(), lr=1e-2), mode="F",
        ...                         reserve_p=0.3, seed=0)
        >>> model(torch.randn(8, 4)).pow(2).mean().backward()
        >>> optimizer.step(); optimizer.zero_grad()
        >>> sorted(optimizer.state_dict())
        ['child_tuning', 'optimizer']
    """

    def __init__(self, optimizer: Optimizer, mode: str = "F", reserve_p: float = 0.3, *,
                 named_parameters: Iterable[tuple[str, nn.Parameter]] | None = None,
                 exclude: Iterable[str] = (), gradient_mask: Mapping[str, Tensor] | None = None,
                 rescale: bool = True, decay_frozen: bool = False, seed: int | None = None) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"`optimizer` must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
        if not 0.0 < reserve_p <= 1.0:
            raise ValueError(f"`reserve_p` must be in (0, 1], got {reserve_p}")
        if mode == "D" and gradient_mask is None:
            raise ValueError("mode 'D' needs `gradient_mask` (see kexue.childtuning.fisher_mask)")
        if mode != "D" and gradient_mask is not None:
            raise ValueError(f"`gradient_mask` is for mode 'D', got mode {mode!r}")
        names = {p: n for n, p in named_parameters} if named_parameters is not None else None
        if names is None and (tuple(exclude) or mode == "D"):
            raise ValueError("`exclude` and mode 'D' need `named_parameters` (model.named_parameters())")
        super().__init__(optimizer.param_groups, optimizer.defaults)
        # share, don't copy: lr schedulers and the wrapped optimizer must see the same groups
        self.param_groups, self.state, self.defaults = optimizer.param_groups, optimizer.state, optimizer.defaults
        self.optimizer, self.mode, self.reserve_p = optimizer, mode, reserve_p
        self.rescale, self.decay_frozen = rescale, decay_frozen
        self.exclude, self._names = tuple(exclude), names
        self._masks = self._check_masks(gradient_mask) if mode == "D" else {}
        self._select_masked()
        first = next(iter(self.optimizer.param_groups[0]["params"]))
        self.sampler = BernoulliMaskSampler(reserve_p, _shared_seed(seed, first.device), rescale)
        self._snapshots: dict[nn.Parameter, Tensor] = {}
        self._scratch: dict[str, Tensor] = {}

    # ----------------------------------------------------------------- set-up
    def _check_masks(self, gradient_mask: Mapping[str, Tensor]) -> dict[nn.Parameter, Tensor]:
        by_name = {n: p for p, n in self._names.items()}
        masks = {}
        for name, mask in gradient_mask.items():
            if name not in by_name:
                raise ValueError(f"`gradient_mask` has {name!r}, which is not among `named_parameters`")
            parameter = by_name[name]
            if mask.shape != parameter.shape:
                raise ValueError(f"`gradient_mask[{name!r}]` has shape {tuple(mask.shape)}, "
                                 f"the parameter {tuple(parameter.shape)}")
            masks[parameter] = mask.to(device=parameter.device, dtype=torch.bool)
        return masks

    def _select_masked(self) -> None:
        """The parameters this wrapper masks, in group order (the order masks are drawn in)."""
        def excluded(parameter: nn.Parameter) -> bool:
            name = self._names.get(parameter, "") if self._names is not None else ""
            return any(re.search(pattern, name) for pattern in self.exclude)

        self._masked = [p for group in self.param_groups for p in group["params"]
                        if not excluded(p) and (self.mode != "D" or p in self._masks)]

    def add_param_group(self, param_group: dict) -> None:
        """Add a group to the wrapped optimizer; its tensors are masked like the others."""
        if not hasattr(self, "optimizer"):  # called by Optimizer.__init__ for the existing groups
            return super().add_param_group(param_group)
        self.optimizer.add_param_group(param_group)
        self._select_masked()

    # ----------------------------------------------------------------- the step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Mask, step the wrapped optimizer, restore what must not move; returns the closure's loss."""
        loss = None
        if closure is not None:  # gradients must exist before they are masked
            with torch.enable_grad():
                loss = closure()
        targets = [p for p in self._masked if p.grad is not None]
        for parameter in targets:
            if parameter.grad.is_sparse:
                raise ValueError("ChildTuning does not support sparse gradients")
        if self.mode == "F":
            for parameter in targets:
                for (grad,) in flat_chunks(parameter.grad):
                    grad.mul_(self.sampler.sample(grad.numel(), grad.device).view(grad.shape))
        elif self.mode == "D":
            scale = 1.0 / self.reserve_p if self.rescale else 1.0
            for parameter in targets:
                for grad, mask in flat_chunks(parameter.grad, self._masks[parameter]):
                    grad.mul_(self._as_float(mask, scale))
        restores = self.mode == "update" or (self.mode == "D" and not self.decay_frozen)
        if restores:
            self._snapshot(targets)
        self.optimizer.step()
        if self.mode == "update":
            self._drop_updates(targets)
        elif restores:
            self._restore_frozen(targets)
        return loss

    def _snapshot(self, parameters: list[nn.Parameter]) -> None:
        for parameter in parameters:
            if parameter not in self._snapshots:  # allocated once: fresh big tensors cost page faults
                self._snapshots[parameter] = torch.empty_like(parameter, memory_format=torch.preserve_format)
            for old, new in flat_chunks(self._snapshots[parameter], parameter.data):
                old.copy_(new)

    def _drop_updates(self, parameters: list[nn.Parameter]) -> None:
        """``θ <- θ_old + (θ_new - θ_old) * M / q``: dropped elements get ``θ_old + 0 = θ_old``."""
        for parameter in parameters:
            for new, old in flat_chunks(parameter.data, self._snapshots[parameter]):
                keep = self.sampler.sample(new.numel(), new.device).view(new.shape)
                new.sub_(old).mul_(keep).add_(old)

    def _restore_frozen(self, parameters: list[nn.Parameter]) -> None:
        """``θ <- lerp(θ_new, θ_old, 1 - M)``: weight 1 returns ``θ_old`` exactly, weight 0 ``θ_new``."""
        for parameter in parameters:
            for new, old, mask in flat_chunks(parameter.data, self._snapshots[parameter], self._masks[parameter]):
                frozen = self._as_float(mask, -1.0).add_(1.0)  # 1 - M; lerp is 2.5x faster than a bool where
                torch.lerp(new, old, frozen.to(new.dtype), out=new)

    def _as_float(self, mask: Tensor, scale: float) -> Tensor:
        """``mask * scale`` as float32 in a reused scratch buffer (bool arithmetic is slow on CPUs)."""
        key = str(mask.device)
        if key not in self._scratch or self._scratch[key].numel() < mask.numel():
            self._scratch[key] = torch.empty(mask.numel(), device=mask.device)
        values = self._scratch[key][:mask.numel()].view(mask.shape)
        return values.copy_(mask).mul_(scale)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """The wrapped optimizer's state plus the mask generator (and the D masks, by position)."""
        masks = [self._masks[p].cpu() for p in self._masked] if self.mode == "D" else None
        return {"optimizer": self.optimizer.state_dict(),
                "child_tuning": {"mode": self.mode, "reserve_p": self.reserve_p, "rescale": self.rescale,
                                 "sampler": self.sampler.state_dict(), "gradient_mask": masks}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` saved; the mode and ``reserve_p`` must match."""
        saved = state_dict["child_tuning"]
        if (saved["mode"], saved["reserve_p"]) != (self.mode, self.reserve_p):
            raise ValueError(f"checkpoint was saved with mode {saved['mode']!r}, reserve_p "
                             f"{saved['reserve_p']}; this wrapper has {self.mode!r}, {self.reserve_p}")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.param_groups, self.state = self.optimizer.param_groups, self.optimizer.state
        self.sampler.load_state_dict(saved["sampler"])
        if saved["gradient_mask"] is not None:
            self._masks = {p: m.to(device=p.device, dtype=torch.bool)
                           for p, m in zip(self._masked, saved["gradient_mask"], strict=True)}

    def __repr__(self) -> str:
        return (f"ChildTuning(mode={self.mode!r}, reserve_p={self.reserve_p}, "
                f"masked_tensors={len(self._masked)}, optimizer={self.optimizer!r})")

