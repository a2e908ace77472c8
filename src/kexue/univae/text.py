"""Sentences in, sentences out: encode, decode, sample, reconstruct, interpolate and edit with UniVAE.

:class:`SentenceVAE` pairs a :class:`~kexue.univae.model.UniVAE` with its tokenizer. Latents are
``[B, n_latent, d]``; layer 0 is the lowest latent layer. :meth:`SentenceVAE.edit` resamples the
latents of chosen layers, or chosen dimensions of the concatenated latent (layer-major, so the post's
"replace the first 32 dims" is ``dims=range(32)`` and "the last 16" is ``layers=[-1]`` with d = 16),
from the prior, then projects back (renormalises vMF latents, snaps VQ latents to codes).
Interpolation is linear, then projected (for vMF: normalised linear interpolation on each sphere).

Example:
    >>> import torch
    >>> from kexue.models import Transformer, TransformerConfig
    >>> from kexue.univae.model import UniVAE, UniVAEConfig
    >>> from transformers import BertTokenizerFast
    >>> import tempfile, pathlib
    >>> vocab = pathlib.Path(tempfile.mkdtemp()) / "vocab.txt"
    >>> _ = vocab.write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"你好吗我很"]))
    >>> tokenizer = BertTokenizerFast(str(vocab))
    >>> backbone = Transformer(TransformerConfig(vocab_size=10, hidden_size=32, num_layers=2, num_heads=4,
    ...                                          intermediate_size=64, nsp_head=False, pooler=False))
    >>> vae = SentenceVAE(UniVAE(backbone, UniVAEConfig(num_independent_layers=1, latent_dims=4, max_length=8)),
    ...                   tokenizer)
    >>> vae.encode(["你好吗"]).shape
    torch.Size([1, 1, 4])
    >>> len(vae.edit("你好吗", layers=[0], count=2, max_new_tokens=4))
    2
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from kexue.univae.decoding import generate
from kexue.univae.model import UniVAE

__all__ = ["SentenceVAE", "tokens_to_text"]


def tokens_to_text(tokens: Iterable[str]) -> str:
    """Join WordPiece tokens without spaces (Chinese), gluing ``##`` continuations."""
    return "".join(token[2:] if token.startswith("##") else token for token in tokens)


class SentenceVAE:
    """A UniVAE and its tokenizer; every method runs in eval mode without gradients.

    Args:
        model: the :class:`UniVAE`.
        tokenizer: a Hugging Face BERT tokenizer with ``[CLS]``, ``[SEP]`` and ``[PAD]``.
    """

    def __init__(self, model: UniVAE, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.special = dict(bos_id=tokenizer.cls_token_id, eos_id=tokenizer.sep_token_id,
                            pad_id=tokenizer.pad_token_id)

    def tokenize(self, sentences: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(input_ids, attention_mask)`` ``[B, T]``, truncated to ``max_length``."""
        if isinstance(sentences, str):
            raise TypeError("`sentences` must be a list of strings, got a single string")
        encoded = self.tokenizer(list(sentences), truncation=True, max_length=self.model.config.max_length,
                                 padding=True, return_tensors="pt")
        device = self.model.training_step.device
        return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)

    @torch.no_grad()
    def encode(self, sentences: Sequence[str]) -> Tensor:
        """Posterior means (VQ: codes) ``[B, n_latent, d]``."""
        self.model.eval()
        return self.model.encode(*self.tokenize(sentences))

    def lengths(self, sentences: Sequence[str]) -> Tensor:
        """Encoder lengths (tokens with [CLS] and [SEP]), the condition under ``length_leakage="condition"``."""
        return self.tokenize(sentences)[1].sum(1)

    @torch.no_grad()
    def decode(self, z: Tensor, lengths: Tensor | None = None, **decoding) -> list[str]:
        """Latents ``[B, n_latent, d]`` -> sentences; ``decoding``: see :func:`~kexue.univae.decoding.generate`."""
        self.model.eval()
        ids = generate(self.model, z, lengths=lengths, **self.special, **decoding)
        texts = []
        for row in ids.tolist():
            end = row.index(self.special["eos_id"]) if self.special["eos_id"] in row else len(row)
            texts.append(tokens_to_text(self.tokenizer.convert_ids_to_tokens(row[:end])))
        return texts

    def sample(self, count: int, generator: torch.Generator | None = None, lengths: Tensor | None = None,
               **decoding) -> list[str]:
        """``count`` sentences decoded from prior draws."""
        return self.decode(self.model.prior(count, generator), lengths, generator=generator, **decoding)

    def reconstruct(self, sentences: Sequence[str], **decoding) -> list[str]:
        """Encode and decode (greedy by default)."""
        return self.decode(self.encode(sentences), self.lengths(sentences), **decoding)

    def interpolate(self, start: str, end: str, steps: int = 5, **decoding) -> list[str]:
        """Sentences along ``project((1 - t) z_start + t z_end)`` for ``steps`` values of t in [0, 1]."""
        if steps < 2:
            raise ValueError(f"`steps` must be >= 2, got {steps}")
        z = self.encode([start, end])
        t = torch.linspace(0, 1, steps, device=z.device)[:, None, None]
        path = self.model.project((1 - t) * z[:1] + t * z[1:])
        lengths = self.lengths([start, end])
        return self.decode(path, torch.round((1 - t[:, 0, 0]) * lengths[0] + t[:, 0, 0] * lengths[1]).long(),
                           **decoding)

    def edit(self, sentence: str, layers: Sequence[int] = (), dims: Sequence[int] = (), count: int = 6,
             generator: torch.Generator | None = None, **decoding) -> list[str]:
        """``count`` variants of ``sentence`` with the latents of ``layers`` / ``dims`` drawn from the prior.

        Args:
            sentence: the original.
            layers: latent layers to resample (0 = lowest; negative counts from the top).
            dims: positions in the concatenated latent ``[n_latent * d]`` to resample.
            count: number of variants.
            generator: for the prior draws (and sampling, if ``temperature > 0``).
            decoding: see :func:`~kexue.univae.decoding.generate` (greedy by default).

        Raises:
            ValueError: nothing to resample, or a layer / dim out of range.
        """
        n, size = self.model.num_latent_layers, self.model.latent_size
        if not layers and not dims:
            raise ValueError("give `layers` or `dims` to resample")
        bad_layers = [layer for layer in layers if not -n <= layer < n]
        bad_dims = [dim for dim in dims if not 0 <= dim < size]
        if bad_layers or bad_dims:
            raise ValueError(f"`layers` must be in [-{n}, {n}) and `dims` in [0, {size}), got layers "
                             f"{bad_layers} and dims {bad_dims}")
        z = self.encode([sentence]).expand(count, -1, -1)
        chosen = torch.zeros(n, self.model.config.latent_dims, dtype=torch.bool, device=z.device)
        chosen[list(layers)] = True
        chosen.view(-1)[list(dims)] = True
        edited = self.model.project(torch.where(chosen, self.model.prior(count, generator), z))
        return self.decode(edited, self.lengths([sentence]).expand(count), generator=generator, **decoding)
