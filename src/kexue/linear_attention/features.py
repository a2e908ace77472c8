"""Feature maps ``φ`` with ``φ(q)·φ(k) ≈ e^{q·k}`` (kexue.fm/archives/8601, eqs. 5, 9 and 11).

**Symmetric tensor powers.** ``(q·k)^m = Σ_{i_1..i_m} (q_{i_1}⋯q_{i_m})(k_{i_1}⋯k_{i_m})`` (eq. 7) sums
``d^m`` products, but a product depends only on the multiset ``{i_1..i_m}``. Grouping equal
multisets, with counts ``c_1..c_d`` (``Σ c_i = m``)::

    (q·k)^m = Σ_{multisets} (m! / Π c_i!) · q^c k^c,    q^c = Π_i q_i^{c_i}

so the ``C(d+m−1, m)`` features ``sqrt(m!/Π c_i!) · x^c`` reproduce ``(q·k)^m`` exactly. For any
polynomial kernel ``κ(s) = Σ_m a_m s^m`` with ``a_m ≥ 0`` (:class:`PolynomialFeatures`), stacking
``sqrt(a_m)`` times the order-``m`` block gives ``φ(q)·φ(k) = κ(q·k)``:

- Taylor order ``p`` (eq. 9): ``a_m = 1/m!``, ``m ≤ p``; a feature weighs ``1/sqrt(Π c_i!)``;
- ExpLimit ``n`` (eq. 11): ``(1 + s/n)^n = Σ_m C(n,m) s^m / n^m``, so ``a_m = C(n,m)/n^m``. The same
  features as ``⊗^n [1; x/√n]`` with the duplicates merged.

Both have ``Σ_{m≤p} C(d+m−1, m) = C(d+p, p)`` features (d^p-size maps: Σ d^m and (d+1)^n).
Monomials are built level by level: each order-``m`` monomial is an order-``m−1`` monomial times
one coordinate ``x_i`` with ``i`` at least its last index (one gather and one product per level).

**Positivity.** Normalised attention needs ``κ(s) ≥ 0`` for every real ``s``. Even-order Taylor
truncations are > 0 (order 2: ``κ ≥ 1/2``); ``(1 + s/n)^n`` is ≥ 0 for even ``n`` (zero at ``s = −n``).
Odd orders go negative for ``s`` far enough below 0 (Taylor 1: ``s < −1``; ExpLimit n odd:
``s < −n``). :attr:`FeatureMap.positive` says which; :func:`kexue.linear_attention.linear_attention`
refuses a signed kernel unless the caller opts in. Performer features are positive by construction.

**Performer stabiliser.** ``φ(x) = m^{-1/2} exp(h(x))`` with ``h = Wx − ‖x‖²/2`` overflows for large
``x``. :meth:`FeatureMap.log_features` returns ``exp(h − c(x))`` and ``c(x) = max_i h_i(x)``
(detached). For queries ``c`` is a per-row factor of numerator and denominator alike and cancels;
for keys the attention rescales every key to one common reference (the max over keys, kept as a
running max in the causal case), which cancels exactly and never looks at future positions.

dtype: features are computed in the input's dtype; linear attention calls them in float32 (float64
for float64 input).
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["FeatureMap", "PolynomialFeatures", "TaylorFeatures", "ExpLimitFeatures", "PerformerFeatures",
           "feature_map_from_name"]


class FeatureMap(nn.Module):
    """Interface: ``forward(x [..., d]) -> φ(x) [..., m]`` with ``φ(q)·φ(k) ≈ e^{q·k}``.

    Attributes:
        positive: ``φ(q)·φ(k) ≥ 0`` for every ``q, k`` (normalised attention is then safe).
    """

    positive: bool = True

    def feature_dim(self, head_size: int) -> int:
        """Number of features ``m`` for inputs of width ``head_size``."""
        raise NotImplementedError

    def kernel(self, dots: Tensor) -> Tensor:
        """The kernel ``κ(q·k)`` that ``φ(q)·φ(k)`` equals (deterministic maps) or estimates (random)."""
        raise NotImplementedError

    def log_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(ψ, c)`` with ``φ(x) = ψ · exp(c)``; ``c`` is ``[..., 1]`` or None when ``ψ = φ(x)``."""
        return self(x), None


class PolynomialFeatures(FeatureMap):
    """Exact features of ``κ(s) = Σ_m a_m s^m`` (``a_m ≥ 0``) by symmetric tensor powers.

    Args:
        coefficients: ``a_0 .. a_p``, each finite and ``≥ 0``, ``a_p > 0``.

    Raises:
        ValueError: an empty list, a negative, non-finite or trailing-zero coefficient.

    Relations: :class:`TaylorFeatures` and :class:`ExpLimitFeatures` are this with fixed ``a_m``.

    Example:
        >>> square = PolynomialFeatures([0.0, 0.0, 1.0])  # κ(s) = s²: the degree-2 monomials only
        >>> q, k = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([3.0, -1.0], dtype=torch.float64)
        >>> square.feature_dim(2), round(float(square(q) @ square(k)), 9), float((q @ k) ** 2)
        (3, 1.0, 1.0)
    """

    def __init__(self, coefficients: Sequence[float]) -> None:
        super().__init__()
        values = [float(a) for a in coefficients]
        if not values or values[-1] <= 0 or any(not math.isfinite(a) or a < 0 for a in values):
            raise ValueError(f"`coefficients` must be finite, >= 0, with a positive last one, got {values}")
        self.coefficients = tuple(values)
        self.positive = _nonnegative_polynomial(self.coefficients)
        self._tables: dict[tuple[int, str], list[tuple[Tensor, Tensor, Tensor]]] = {}

    @property
    def order(self) -> int:
        """The degree ``p`` of the kernel polynomial."""
        return len(self.coefficients) - 1

    def feature_dim(self, head_size: int) -> int:
        return sum(math.comb(head_size + m - 1, m) for m, a in enumerate(self.coefficients) if a > 0)

    def kernel(self, dots: Tensor) -> Tensor:
        result = torch.zeros_like(dots)
        for a in reversed(self.coefficients):  # Horner
            result = result * dots + a
        return result

    def _levels(self, head_size: int, device: torch.device) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per order ``m ≥ 1``: parent monomial index, new coordinate, and float64 ``sqrt(a_m m!/Π c_i!)``."""
        key = (head_size, str(device))
        if key not in self._tables:
            levels = []
            last, run, multinomial = np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1)
            for m in range(1, self.order + 1):
                children = head_size - last  # parent with last index l takes coordinates l .. d-1
                parent = np.repeat(np.arange(len(last)), children)
                offset = np.arange(len(parent)) - np.repeat(np.cumsum(children) - children, children)
                new_last = last[parent] + offset
                run = np.where((new_last == last[parent]) & (m > 1), run[parent] + 1, 1)
                multinomial = multinomial[parent] * m / run  # m!/Π c_i! from (m-1)!/Π c_i!
                last = new_last
                weight = np.sqrt(self.coefficients[m] * multinomial)
                levels.append(tuple(torch.from_numpy(a).to(device) for a in (parent, last, weight)))
            self._tables[key] = levels
        return self._tables[key]

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., d]`` → ``φ(x) [..., feature_dim(d)]`` in ``x``'s dtype."""
        ones = x.new_ones(*x.shape[:-1], 1)
        blocks = [ones * math.sqrt(self.coefficients[0])] if self.coefficients[0] > 0 else []
        monomials = ones
        for m, (parent, coordinate, weight) in enumerate(self._levels(x.shape[-1], x.device), start=1):
            monomials = monomials.index_select(-1, parent) * x.index_select(-1, coordinate)
            if self.coefficients[m] > 0:
                blocks.append(monomials * weight.to(x.dtype))
        return torch.cat(blocks, dim=-1)

    def extra_repr(self) -> str:
        return f"coefficients={self.coefficients}, positive={self.positive}"


def _nonnegative_polynomial(coefficients: tuple[float, ...]) -> bool:
    """Whether ``Σ a_m s^m ≥ 0`` for all real ``s``: even degree and no negative value at a critical point."""
    if (len(coefficients) - 1) % 2:
        return False
    polynomial = np.polynomial.Polynomial(coefficients)
    critical = polynomial.deriv().roots()
    real = critical[np.abs(critical.imag) < 1e-9].real
    return bool(np.all(polynomial(real) >= -1e-12 * max(coefficients)))


class TaylorFeatures(PolynomialFeatures):
    """Taylor features of order ``p`` (eq. 9): ``φ(q)·φ(k) = Σ_{m≤p} (q·k)^m / m!`` exactly.

    ``C(d+p, p)`` features; the kernel is positive for even ``p`` only.

    Args:
        order: ``p ≥ 1``.

    Raises:
        ValueError: ``order`` is not an int ``≥ 1``.

    Example:
        >>> taylor = TaylorFeatures(2)
        >>> q, k = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.25])
        >>> taylor.feature_dim(2), taylor.positive, round(float(taylor(q) @ taylor(k)), 6)  # s = 0.75
        (6, True, 2.03125)
    """

    def __init__(self, order: int) -> None:
        _check_positive_int("order", order)
        super().__init__([1.0 / math.factorial(m) for m in range(order + 1)])

    def extra_repr(self) -> str:
        return f"order={self.order}, positive={self.positive}"


class ExpLimitFeatures(PolynomialFeatures):
    """Features of ``e^s = lim (1 + s/n)^n`` (eq. 11): ``φ(q)·φ(k) = (1 + q·k/n)^n`` exactly.

    ``C(d+n, n)`` features (``⊗^n [1; x/√n]`` has ``(d+1)^n``); the kernel is ≥ 0 for even ``n``.

    Args:
        n: ``n ≥ 1``.

    Raises:
        ValueError: ``n`` is not an int ``≥ 1``.

    Example:
        >>> limit = ExpLimitFeatures(2)
        >>> q, k = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.25])
        >>> round(float(limit(q) @ limit(k)), 6), (1 + 0.75 / 2) ** 2
        (1.890625, 1.890625)
    """

    def __init__(self, n: int) -> None:
        _check_positive_int("n", n)
        super().__init__([math.comb(n, m) / n ** m for m in range(n + 1)])

    def extra_repr(self) -> str:
        return f"n={self.order}, positive={self.positive}"


class PerformerFeatures(FeatureMap):
    """Positive orthogonal random features of Performer (FAVOR+, eq. 5): ``E[φ(q)·φ(k)] = e^{q·k}``.

    ``φ(x) = m^{-1/2} exp(Wx − ‖x‖²/2)``. The rows of ``W [m, d]`` come in blocks of ``d``
    orthonormal directions (QR of a Gaussian matrix) with chi-distributed lengths, so each row is
    marginally ``N(0, I)`` while rows in a block are orthogonal (lower variance than i.i.d.).
    ``W`` is a persistent buffer (saved with the model's state dict); :meth:`redraw` draws a new one.
    See the module docstring for the stabiliser.

    Args:
        head_size: ``d``.
        num_features: ``m``; default ``round(d ln d)`` as performer-pytorch.
        orthogonal: orthogonal blocks (True) or i.i.d. Gaussian rows.
        seed: seed of the draws; None uses torch's global generator.

    Raises:
        ValueError: ``head_size`` or ``num_features`` not a positive int.

    Example:
        >>> performer = PerformerFeatures(head_size=4, num_features=4096, seed=1)
        >>> q, k = torch.full((4,), 0.25), torch.full((4,), 0.5)  # q·k = 0.5
        >>> round(float(performer(q) @ performer(k)) / math.exp(0.5), 1)  # unbiased: ratio near 1
        1.0
    """

    positive = True

    def __init__(self, head_size: int, num_features: int | None = None, orthogonal: bool = True,
                 seed: int | None = None) -> None:
        super().__init__()
        _check_positive_int("head_size", head_size)
        num_features = max(1, round(head_size * math.log(head_size))) if num_features is None else num_features
        _check_positive_int("num_features", num_features)
        self.head_size, self.num_features, self.orthogonal = head_size, num_features, orthogonal
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.register_buffer("projection", self._draw())

    def _draw(self) -> Tensor:
        d, m = self.head_size, self.num_features
        gaussian = torch.randn(m, d, generator=self.generator, dtype=torch.float64)
        if not self.orthogonal:
            return gaussian.float()
        blocks = []
        for start in range(0, m, d):
            square = torch.randn(d, d, generator=self.generator, dtype=torch.float64)
            q, r = torch.linalg.qr(square)
            blocks.append((q * r.diagonal().sign()).T[: m - start])  # signs fixed: Haar, so unbiased
        directions = torch.cat(blocks)
        return (directions * gaussian.norm(dim=1, keepdim=True)).float()  # chi(d) lengths

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw a new ``W`` in place (same device), e.g. every few hundred training steps."""
        self.projection.copy_(self._draw().to(self.projection.device))

    def feature_dim(self, head_size: int) -> int:
        if head_size != self.head_size:
            raise ValueError(f"PerformerFeatures was built for head_size {self.head_size}, got {head_size}")
        return self.num_features

    def kernel(self, dots: Tensor) -> Tensor:
        return dots.exp()

    def _exponent(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.head_size:
            raise ValueError(f"PerformerFeatures was built for head_size {self.head_size}, got width {x.shape[-1]}")
        return x @ self.projection.to(x.dtype).T - 0.5 * (x * x).sum(-1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., d]`` → ``φ(x) [..., m]``, unstabilised (may overflow for large ``x``)."""
        return self._exponent(x).exp() / math.sqrt(self.num_features)

    def log_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        exponent = self._exponent(x)
        shift = exponent.amax(-1, keepdim=True).detach()
        return (exponent - shift).exp() / math.sqrt(self.num_features), shift

    def extra_repr(self) -> str:
        return f"head_size={self.head_size}, num_features={self.num_features}, orthogonal={self.orthogonal}"


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")


_NAME = re.compile(r"(taylor|explimit|performer)(\d*)")


def feature_map_from_name(name: str, head_size: int) -> FeatureMap:
    """Build a feature map from ``taylor<p>``, ``explimit<n>``, ``performer`` or ``performer<m>``.

    Raises:
        ValueError: any other name (``taylor`` and ``explimit`` need their number).

    Example:
        >>> feature_map_from_name("taylor2", head_size=16).feature_dim(16)
        153
    """
    match = _NAME.fullmatch(name)
    if match is None or (match[1] != "performer" and not match[2]):
        raise ValueError(f"unknown feature map {name!r}; use taylor<order>, explimit<n>, performer or performer<m>")
    number = int(match[2]) if match[2] else None
    if match[1] == "taylor":
        return TaylorFeatures(number)
    if match[1] == "explimit":
        return ExpLimitFeatures(number)
    return PerformerFeatures(head_size, number)
