"""The von Mises-Fisher distribution on the unit sphere ``S^{d-1}``: log-Bessel, KL, Wood's sampler.

Density (post 8404, the vMF-VAE behind UniVAE, kexue.fm/archives/8475)::

    p(z | mu, kappa) = C_d(kappa) exp(kappa mu.z),   C_d(kappa) = kappa^{d/2-1} / ((2 pi)^{d/2} I_{d/2-1}(kappa))

KL to the uniform prior on the sphere (area ``|S^{d-1}| = 2 pi^{d/2} / Gamma(d/2)``)::

    KL = kappa A_d(kappa) + log C_d(kappa) + log |S^{d-1}|,   A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)

It does not depend on ``mu``: with a fixed ``kappa`` it is a constant (the reference trains with
the reconstruction loss only). ``log I_nu(x)`` is the log-sum-exp of its power series
``sum_m (x/2)^{2m+nu} / (m! Gamma(m+nu+1))`` in float64, so it is differentiable in ``x`` and needs
no SciPy.

Sampling (Wood 1994): draw ``w = mu.z`` by rejection from a Beta proposal, then ``z = w mu +
sqrt(1-w^2) v`` with ``v`` uniform on the tangent sphere. No lookup table (the reference
precomputes 10^7 draws of ``w``, 40 MB stored in the weights). Gradients reach ``mu`` through
``z`` and ``kappa`` through the accepted proposal ``w = h(eps, kappa)`` (Naesseth et al. 2017;
the correction term is left out, as in Davidson et al. 2018's code).

dtype: every function computes in float64 internally (``kappa`` up to a few thousand); the sample
``z`` comes back in the dtype of ``mu``.

Example:
    >>> import torch
    >>> mu = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    >>> z = vmf_sample(mu, torch.tensor(32.0))
    >>> z.shape, torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-5)
    (torch.Size([4, 16]), True)
    >>> round(float(vmf_kl(torch.tensor(32.0), 16)), 4) > 0
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["log_bessel_iv", "vmf_mean_cosine", "vmf_kl", "vmf_sample", "wood_sample_w"]


def log_bessel_iv(order: float, x: Tensor) -> Tensor:
    """``log I_order(x)`` for ``x > 0`` (modified Bessel function of the first kind), float64 series.

    Args:
        order: ``nu >= 0``.
        x: positive tensor, any shape; differentiable.

    Returns:
        float64 tensor of ``x``'s shape.

    Raises:
        ValueError: ``order < 0`` or a non-positive ``x``.
    """
    if order < 0:
        raise ValueError(f"`order` must be >= 0, got {order}")
    x = x.to(torch.float64)
    if bool((x <= 0).any()):
        raise ValueError(f"`x` must be positive, got min {float(x.detach().min())}")
    largest = float(x.detach().max())
    terms = int(largest / 2 + 10 * math.sqrt(largest) + 40)  # the terms peak near m = x/2, width ~ sqrt(x)
    m = torch.arange(terms, dtype=torch.float64, device=x.device)
    log_terms = ((2 * m + order) * torch.log(x / 2)[..., None] - torch.lgamma(m + 1)
                 - torch.lgamma(m + order + 1))
    return torch.logsumexp(log_terms, dim=-1)


def vmf_mean_cosine(kappa: Tensor, dims: int) -> Tensor:
    """``A_d(kappa) = E[mu.z] = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` (float64)."""
    return torch.exp(log_bessel_iv(dims / 2, kappa) - log_bessel_iv(dims / 2 - 1, kappa))


def vmf_kl(kappa: Tensor, dims: int) -> Tensor:
    """``KL(vMF(mu, kappa) || Uniform(S^{d-1}))`` in nats (float64), the same for every ``mu``.

    Args:
        kappa: positive concentration(s), any shape.
        dims: ``d >= 2``, the dimension of the ambient space.

    Example:
        >>> float(vmf_kl(torch.tensor(1e-3), 3)) < 1e-6  # kappa -> 0: the uniform distribution
        True
    """
    if dims < 2:
        raise ValueError(f"`dims` must be >= 2, got {dims}")
    kappa = kappa.to(torch.float64)
    nu = dims / 2 - 1
    log_normaliser = nu * torch.log(kappa) - dims / 2 * math.log(2 * math.pi) - log_bessel_iv(nu, kappa)
    log_area = math.log(2) + dims / 2 * math.log(math.pi) - math.lgamma(dims / 2)
    return kappa * vmf_mean_cosine(kappa, dims) + log_normaliser + log_area


def wood_sample_w(kappa: Tensor, dims: int, max_rounds: int = 1000) -> Tensor:
    """Draw ``w = mu.z`` of ``vMF(mu, kappa)`` on ``S^{dims-1}`` by Wood's rejection sampler.

    Args:
        kappa: positive concentrations ``[N]`` (one draw each); gradients flow through ``w = h(eps, kappa)``.
        dims: ``d >= 2``.
        max_rounds: safety bound on proposal rounds (acceptance is above 0.5 for every ``kappa``).

    Returns:
        float64 ``[N]`` in ``(-1, 1)``.
    """
    kappa = kappa.to(torch.float64)
    m1 = dims - 1.0
    b = m1 / (2 * kappa + torch.sqrt(4 * kappa ** 2 + m1 ** 2))  # (-2k + sqrt(4k^2 + m1^2)) / m1, stably
    with torch.no_grad():
        b0 = b.detach()
        x0 = (1 - b0) / (1 + b0)
        c = kappa.detach() * x0 + m1 * torch.log1p(-x0 ** 2)
        beta = torch.distributions.Beta(torch.tensor(m1 / 2, dtype=torch.float64),
                                        torch.tensor(m1 / 2, dtype=torch.float64))
        eps = torch.zeros_like(kappa)
        pending = torch.ones_like(kappa, dtype=torch.bool)
        for _ in range(max_rounds):
            if not bool(pending.any()):
                break
            proposal = beta.sample(kappa.shape).to(kappa.device)
            w = (1 - (1 + b0) * proposal) / (1 - (1 - b0) * proposal)
            uniform = torch.rand_like(kappa)
            accept = kappa.detach() * w + m1 * torch.log(1 - x0 * w) - c >= torch.log(uniform)
            newly = pending & accept
            eps = torch.where(newly, proposal, eps)
            pending = pending & ~accept
        if bool(pending.any()):
            raise RuntimeError(f"Wood's sampler did not accept within {max_rounds} rounds")
    return (1 - (1 + b) * eps) / (1 - (1 - b) * eps)


def vmf_sample(mu: Tensor, kappa: Tensor) -> Tensor:
    """One draw ``z ~ vMF(mu, kappa)`` per row: ``z = w mu + sqrt(1 - w^2) v``, ``v`` uniform, ``v ⟂ mu``.

    Args:
        mu: unit mean directions ``[B, d]``.
        kappa: concentration, a scalar or ``[B]``.

    Returns:
        ``[B, d]`` unit vectors in ``mu``'s dtype.
    """
    batch, dims = mu.shape
    mean = mu.to(torch.float64)
    w = wood_sample_w(kappa.to(mu.device).expand(batch), dims)[:, None]
    noise = torch.randn_like(mean)
    tangent = noise - (noise * mean).sum(-1, keepdim=True) * mean
    tangent = tangent / tangent.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (w * mean + torch.sqrt((1 - w ** 2).clamp_min(0)) * tangent).to(mu.dtype)
