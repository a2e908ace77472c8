"""UniVAE: one Transformer as a multi-scale sentence VAE (kexue.fm/archives/8475).

The sentence goes in twice, ``[x; x]``; attention masks make the first copy an encoder and the
second a decoder that sees the encoder only through the [CLS] vectors of the top ``L - k`` layers,
each squeezed through a ``d``-dimensional latent (vMF, Gaussian or VQ). See :mod:`.model` for the
layout and loss, :mod:`.latent` for the families and the KL schedule, :mod:`.decoding` for
KV-cached generation and :mod:`.text` for the sentence-level API.

Example:
    >>> from kexue.univae import UniVAE, UniVAEConfig, KLSchedule
    >>> UniVAEConfig(latent="gaussian").latent_dims
    16
"""

from kexue.univae.decoding import choose_tokens, generate
from kexue.univae.latent import (Bottleneck, BottleneckOutput, GaussianBottleneck, KLSchedule, VMFBottleneck,
                                 VQBottleneck, make_bottleneck)
from kexue.univae.model import UniVAE, UniVAEConfig, UniVAEOutput
from kexue.univae.text import SentenceVAE, tokens_to_text
from kexue.univae.train import SentenceBatches, question_sentences, train_univae, univae_loss_fn
from kexue.univae.vmf import log_bessel_iv, vmf_kl, vmf_mean_cosine, vmf_sample, wood_sample_w

__all__ = [
    "UniVAE", "UniVAEConfig", "UniVAEOutput", "SentenceVAE", "tokens_to_text", "generate", "choose_tokens",
    "Bottleneck", "BottleneckOutput", "VMFBottleneck", "GaussianBottleneck", "VQBottleneck", "KLSchedule",
    "make_bottleneck", "SentenceBatches", "univae_loss_fn", "train_univae", "question_sentences",
    "log_bessel_iv", "vmf_kl", "vmf_mean_cosine", "vmf_sample", "wood_sample_w",
]
