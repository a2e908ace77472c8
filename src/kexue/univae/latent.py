"""Per-layer latent bottlenecks of UniVAE: vMF, Gaussian and VQ, and the KL schedule.

In every latent layer the encoder's [CLS] vector ``h`` is squeezed to a ``d``-dimensional latent
and expanded back (post 8475, "Reducing dimensionality")::

    z = q(W_down h),   h_cls <- W_up z

and the decoder half sees the encoder only through this ``W_up z``. The families:

- :class:`VMFBottleneck`: ``mu = W_down h / |W_down h|``, ``z ~ vMF(mu, kappa)`` (the reference's
  choice, post 8404), ``kappa`` fixed or learned; KL to the uniform prior on the sphere.
- :class:`GaussianBottleneck`: ``(m, log s^2) = W_down h``, ``z = m + s eps`` (reparameterisation);
  ``KL = 1/2 sum_i (m_i^2 + s_i^2 - 1 - log s_i^2)`` to ``N(0, I)``.
- :class:`VQBottleneck`: the VQ-VAE the post mentions; ``z_e = W_down h`` and the codebook are
  L2-normalised (cosine codes, Yu et al. 2021, keeps the codebook in use); ``z_q`` = nearest
  code, straight-through ``z = z_e + sg(z_q - z_e)``; loss ``|sg(z_e) - z_q|^2 + beta |z_e - sg(z_q)|^2``.

Regularisers are per layer, summed over latent dims and averaged over the batch. KL annealing and
free bits live in :class:`KLSchedule`, not in the model. dtype: the latent math runs in float32
(float64 inside the vMF sampler) whatever the backbone's dtype; ``expand`` returns the dtype of
its input hidden states' layer.

Example:
    >>> import torch
    >>> bottleneck = GaussianBottleneck(hidden_size=8, dims=4)
    >>> out = bottleneck(torch.randn(3, 8), sample=True)
    >>> out.z.shape, out.regulariser.shape, bottleneck.expand(out.z).shape
    (torch.Size([3, 4]), torch.Size([]), torch.Size([3, 8]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.univae.vmf import vmf_kl, vmf_sample

__all__ = ["BottleneckOutput", "Bottleneck", "VMFBottleneck", "GaussianBottleneck", "VQBottleneck",
           "KLSchedule", "LATENT_FAMILIES", "make_bottleneck"]


@dataclass
class BottleneckOutput:
    """``z`` ``[B, d]``; ``regulariser`` (KL or VQ loss, scalar batch mean); ``codes`` ``[B]`` for VQ."""

    z: Tensor
    regulariser: Tensor
    codes: Tensor | None = None


class Bottleneck(nn.Module):
    """Base: ``W_up`` and the prior; subclasses define ``forward``, ``prior`` and ``project``."""

    kind = "kl"  # "kl": regulariser is a KL scaled by KLSchedule; "vq": a VQ loss added as is

    def __init__(self, hidden_size: int, dims: int) -> None:
        super().__init__()
        if dims < 2:
            raise ValueError(f"`dims` must be >= 2, got {dims}")
        self.dims = dims
        self.up = nn.Linear(dims, hidden_size)

    def project_down(self, hidden: Tensor) -> Tensor:
        """``W_down h`` in float32, also under autocast (the latent math needs the precision)."""
        with torch.autocast(hidden.device.type, enabled=False):
            return self.down(hidden.float())

    def expand(self, z: Tensor) -> Tensor:
        """``W_up z``: ``[B, d]`` -> ``[B, hidden]``."""
        return self.up(z.to(self.up.weight.dtype))

    def forward(self, hidden: Tensor, sample: bool) -> BottleneckOutput:
        raise NotImplementedError

    def prior(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` draws ``[count, d]`` from the prior."""
        raise NotImplementedError

    def project(self, z: Tensor) -> Tensor:
        """Map an edited or interpolated ``z`` back onto the latent space (identity by default)."""
        return z


class VMFBottleneck(Bottleneck):
    """vMF latent on ``S^{d-1}`` with concentration ``kappa`` (fixed, or learned as ``exp(log_kappa)``)."""

    def __init__(self, hidden_size: int, dims: int, kappa: float = 32.0, learn_kappa: bool = False) -> None:
        super().__init__(hidden_size, dims)
        if kappa <= 0:
            raise ValueError(f"`kappa` must be > 0, got {kappa}")
        self.down = nn.Linear(hidden_size, dims)
        log_kappa = torch.tensor(math.log(kappa))
        if learn_kappa:
            self.log_kappa = nn.Parameter(log_kappa)
        else:
            self.register_buffer("log_kappa", log_kappa)

    @property
    def kappa(self) -> Tensor:
        return self.log_kappa.exp()

    def forward(self, hidden: Tensor, sample: bool) -> BottleneckOutput:
        """``hidden`` ``[B, H]`` -> ``mu`` (eval) or a vMF draw (``sample``); KL is the same for every row."""
        mu = F.normalize(self.project_down(hidden), dim=-1)
        z = vmf_sample(mu, self.kappa.float()) if sample else mu
        return BottleneckOutput(z, vmf_kl(self.kappa, self.dims).float())

    def prior(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        draws = torch.randn(count, self.dims, generator=generator).to(self.up.weight.device)
        return F.normalize(draws, dim=-1)

    def project(self, z: Tensor) -> Tensor:
        return F.normalize(z, dim=-1)


class GaussianBottleneck(Bottleneck):
    """Diagonal Gaussian posterior, standard normal prior."""

    def __init__(self, hidden_size: int, dims: int) -> None:
        super().__init__(hidden_size, dims)
        self.down = nn.Linear(hidden_size, 2 * dims)

    def forward(self, hidden: Tensor, sample: bool) -> BottleneckOutput:
        mean, log_variance = self.project_down(hidden).chunk(2, dim=-1)
        z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean) if sample else mean
        kl = 0.5 * (mean ** 2 + log_variance.exp() - 1 - log_variance).sum(-1).mean()
        return BottleneckOutput(z, kl)

    def prior(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(count, self.dims, generator=generator).to(self.up.weight.device)


class VQBottleneck(Bottleneck):
    """Cosine vector quantisation with a ``codebook_size x d`` codebook and commitment weight ``beta``.

    ``usage`` counts the codes chosen in training; the prior draws codes in proportion to it
    (uniformly before any training), so random samples avoid dead codes.
    """

    kind = "vq"

    def __init__(self, hidden_size: int, dims: int, codebook_size: int = 64, commitment: float = 0.25) -> None:
        super().__init__(hidden_size, dims)
        if codebook_size < 2:
            raise ValueError(f"`codebook_size` must be >= 2, got {codebook_size}")
        if commitment < 0:
            raise ValueError(f"`commitment` must be >= 0, got {commitment}")
        self.down = nn.Linear(hidden_size, dims)
        self.codebook = nn.Parameter(torch.randn(codebook_size, dims))
        self.commitment = commitment
        self.register_buffer("usage", torch.zeros(codebook_size))

    def codes(self) -> Tensor:
        """The normalised codebook ``[K, d]``."""
        return F.normalize(self.codebook.float(), dim=-1)

    def quantise(self, z_e: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest code (largest cosine) for each row of ``z_e``: ``(z_q [B, d], index [B])``."""
        index = (z_e @ self.codes().T).argmax(-1)
        return self.codes()[index], index

    def forward(self, hidden: Tensor, sample: bool) -> BottleneckOutput:
        z_e = F.normalize(self.project_down(hidden), dim=-1)
        z_q, index = self.quantise(z_e)
        loss = ((z_q - z_e.detach()) ** 2).sum(-1).mean() + self.commitment * ((z_e - z_q.detach()) ** 2).sum(-1).mean()
        if self.training:
            self.usage += torch.bincount(index, minlength=self.usage.numel()).to(self.usage.dtype)
        return BottleneckOutput(z_e + (z_q - z_e).detach(), loss, index)

    def prior(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        weights = self.usage.cpu() if float(self.usage.sum()) > 0 else torch.ones_like(self.usage.cpu())
        index = torch.multinomial(weights, count, replacement=True, generator=generator)
        return self.codes()[index.to(self.codebook.device)]

    def project(self, z: Tensor) -> Tensor:
        return self.quantise(F.normalize(z.float(), dim=-1))[0]

    def usage_stats(self) -> dict[str, float]:
        """Fraction of codes ever used and the perplexity ``exp(H(usage))`` of the code distribution."""
        total = float(self.usage.sum())
        if total == 0:
            return {"used_fraction": 0.0, "perplexity": 0.0}
        p = self.usage / total
        entropy = -float((p[p > 0] * p[p > 0].log()).sum())
        return {"used_fraction": float((self.usage > 0).float().mean()), "perplexity": math.exp(entropy)}


LATENT_FAMILIES = ("vmf", "gaussian", "vq")


def make_bottleneck(family: str, hidden_size: int, dims: int, kappa: float = 32.0, learn_kappa: bool = False,
                    codebook_size: int = 64, commitment: float = 0.25) -> Bottleneck:
    """Build one latent layer's bottleneck by family name (``"vmf"``, ``"gaussian"``, ``"vq"``)."""
    if family == "vmf":
        return VMFBottleneck(hidden_size, dims, kappa, learn_kappa)
    if family == "gaussian":
        return GaussianBottleneck(hidden_size, dims)
    if family == "vq":
        return VQBottleneck(hidden_size, dims, codebook_size, commitment)
    raise ValueError(f"`latent` must be one of {LATENT_FAMILIES}, got {family!r}")


@dataclass(frozen=True)
class KLSchedule:
    """KL weight ``beta(t)`` (linear annealing) and free bits, applied per latent layer.

    ``penalty = beta(t) * sum_l max(KL_l, free_bits)`` with ``beta(t) = start + (1 - start) *
    min(1, t / warmup_steps)`` (Bowman et al. 2016; free bits: Kingma et al. 2016, per layer).

    Args:
        warmup_steps: steps of linear annealing (0: ``beta = 1`` from the start).
        start_weight: ``beta(0)``.
        free_bits: nats per latent layer below which the KL is not penalised.

    Example:
        >>> schedule = KLSchedule(warmup_steps=10, free_bits=1.0)
        >>> schedule.weight(5), float(schedule.penalty(torch.tensor([0.5, 3.0]), step=10))
        (0.5, 4.0)
    """

    warmup_steps: int = 0
    start_weight: float = 0.0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.start_weight <= 1:
            raise ValueError(f"`start_weight` must be in [0, 1], got {self.start_weight}")
        if self.free_bits < 0:
            raise ValueError(f"`free_bits` must be >= 0, got {self.free_bits}")

    def weight(self, step: int) -> float:
        if self.warmup_steps == 0:
            return 1.0
        return self.start_weight + (1 - self.start_weight) * min(1.0, step / self.warmup_steps)

    def penalty(self, kl_per_layer: Tensor, step: int) -> Tensor:
        """``beta(step) * sum_l max(KL_l, free_bits)`` from the per-layer KL ``[n_layers]``."""
        return self.weight(step) * kl_per_layer.clamp_min(self.free_bits).sum()
