"""Fast, seeded Bernoulli keep-masks for gradient and update dropout.

A mask ``M ~ Bernoulli(p)`` is drawn for every element of every masked tensor at every step, so
its cost competes with the optimizer step itself. Drawing it the obvious way
(``torch.rand_like(g) < p`` or ``Bernoulli(p).sample()`` as the AliceMind code does) allocates a
fresh full-size float tensor and spends 32 random bits per element; on a CPU that alone takes
about twice as long as a foreach AdamW step over the same parameters. Here:

- each element gets **16 random bits**, read as a uniform integer ``u`` in ``[0, 65536)``, and is
  kept when ``u < round(65536 p)``. The realised keep probability is therefore
  ``q = round(65536 p) / 65536`` (``|q - p| <= 2^-17``), and the rescale uses ``1/q``, so the
  masked gradient stays exactly unbiased;
- the work is done in chunks of :data:`CHUNK_ELEMENTS` elements through small scratch buffers that
  stay in cache, so each masked tensor is read and written once.

The random bits come from one ``torch.Generator`` per device, seeded explicitly: two processes
with the same seed that mask the same tensors in the same order draw the same masks, which is what
data-parallel replicas need (each replica must drop the same coordinates, or they drift apart).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["BernoulliMaskSampler", "CHUNK_ELEMENTS", "flat_chunks"]

CHUNK_ELEMENTS = 1 << 18  # 1 MiB of float32: the scratch buffers stay in L2 cache
_RANDOM_BITS = 16
_LEVELS = 1 << _RANDOM_BITS


def flat_chunks(*tensors: Tensor, size: int = CHUNK_ELEMENTS) -> Iterator[tuple[Tensor, ...]]:
    """Aligned flat slices of same-shaped tensors, ``size`` elements at a time (views, not copies).

    Non-contiguous tensors cannot be flattened into a view, so they are yielded whole.
    """
    if not all(t.is_contiguous() for t in tensors) or tensors[0].device.type != "cpu":
        yield tensors
        return
    flats = [t.view(-1) for t in tensors]
    for start in range(0, flats[0].numel(), size):
        yield tuple(f[start:start + size] for f in flats)


class BernoulliMaskSampler:
    """Keep-multipliers ``M / q`` with ``M ~ Bernoulli(q)``, ``q = round(65536 p) / 65536``.

    Args:
        keep_probability: the requested ``p`` in ``(0, 1]``.
        seed: seeds one generator per device.
        rescale: multiply kept elements by ``1/q`` (dropout's convention) or leave them at 1.

    Example:
        >>> sampler = BernoulliMaskSampler(0.5, seed=0)
        >>> multiplier = sampler.sample(100_000)
        >>> sorted(multiplier.unique().tolist())
        [0.0, 2.0]
        >>> round(float((multiplier > 0).float().mean()), 2)
        0.5
    """

    def __init__(self, keep_probability: float, seed: int, rescale: bool = True) -> None:
        levels = round(keep_probability * _LEVELS)
        if not 1 <= levels <= _LEVELS:
            raise ValueError(f"`keep_probability` must be in [2^-16, 1], got {keep_probability}")
        self.threshold = levels - _LEVELS // 2  # compare against signed int16 bits
        self.keep_probability = levels / _LEVELS
        self.scale = 1.0 / self.keep_probability if rescale else 1.0
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._bits: dict[str, Tensor] = {}
        self._scratch: dict[str, Tensor] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def _random_int16(self, count: int, device: torch.device) -> Tensor:
        """``count`` uniform signed 16-bit integers, drawn as full-range int64 words."""
        key = str(device)
        words = self._bits.get(key)
        needed = (count + 3) // 4
        if words is None or words.numel() < needed:
            words = self._bits[key] = torch.empty(max(needed, CHUNK_ELEMENTS // 4), dtype=torch.int64,
                                                  device=device)
        # random_() without bounds leaves the sign bit at 0; the explicit range covers all 64 bits
        words[:needed].random_(-2 ** 63, 2 ** 63 - 1, generator=self._generator(device))
        return words[:needed].view(torch.int16)[:count]

    def sample(self, count: int, device: torch.device | str = "cpu") -> Tensor:
        """``count`` fresh float32 multipliers in ``{0, scale}`` on ``device``.

        The result is a view of a scratch buffer, valid until the next call: use it at once.
        """
        device = torch.device(device)
        bits = self._random_int16(count, device)
        key = str(device)
        scratch = self._scratch.get(key)
        if scratch is None or scratch.numel() < count:
            scratch = self._scratch[key] = torch.empty(max(count, CHUNK_ELEMENTS), device=device)
        multipliers = scratch[:count]
        multipliers.copy_(bits)  # float32 holds every int16 exactly
        torch.lt(multipliers, self.threshold, out=multipliers)
        if self.scale != 1.0:
            multipliers.mul_(self.scale)
        return multipliers

    def state_dict(self) -> dict:
        """Generator states by device, so that a resumed run draws the masks it would have drawn."""
        return {"seed": self.seed, "generators": {k: g.get_state() for k, g in self._generators.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]
        self._generators = {}
        for device, generator_state in state["generators"].items():
            self._generator(torch.device(device)).set_state(generator_state.cpu())
