"""UniVAE: one Transformer as a multi-scale sentence VAE (kexue.fm/archives/8475).

Input ``[x; x]``: the sentence twice, segment 0 (encoder) then segment 1 (decoder). Attention:

- layers ``0 .. k-1``: the *independent* mask, each half sees only itself (decoder causally);
- layers ``k .. L-1`` (the latent layers): the *UniAE* mask, the decoder also sees the encoder's
  [CLS] column, and nothing else of the encoder.

Before each latent layer ``l`` the [CLS] hidden state ``h`` is replaced by ``W_up,l z_l`` with
``z_l = q_l(W_down,l h)`` (:mod:`kexue.univae.latent`), so the decoder depends on the sentence only
through ``z = (z_k, .., z_{L-1})``, ``(L-k) d`` numbers. The loss (one ELBO term per latent layer)::

    loss = -sum_t log p(x_t | x_<t, z)  +  sum_l R_l   (R_l: KL, annealed by KLSchedule, or VQ loss)

Length leakage (post: "Other details"): the decoder's first position is ``max_length`` for every
sentence (``length_leakage="fixed"``, the reference's fixed padding, done with position ids and a
padding mask instead of pad tokens), or right after the encoder's tokens (``"condition"``: the
length becomes an input, chosen at sampling time).

Example:
    >>> import torch
    >>> from kexue.models import Transformer, TransformerConfig
    >>> backbone = Transformer(TransformerConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
    ...                                          intermediate_size=64, nsp_head=False, pooler=False))
    >>> model = UniVAE(backbone, UniVAEConfig(num_independent_layers=1, latent_dims=4, max_length=8))
    >>> ids = torch.tensor([[2, 7, 9, 3], [2, 8, 3, 0]])
    >>> out = model(ids, ids != 0)
    >>> out.z.shape, out.regulariser.shape, out.reconstruction.ndim
    (torch.Size([2, 1, 4]), torch.Size([1]), 0)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.data.tokenizer import save_tokenizer_files
from kexue.models import Transformer, TransformerConfig, masks
from kexue.univae.latent import LATENT_FAMILIES, Bottleneck, make_bottleneck

__all__ = ["UniVAEConfig", "UniVAE", "UniVAEOutput", "Layout"]

CONFIG_FILE = "univae_config.json"
WEIGHTS_FILE = "univae.safetensors"


@dataclass
class UniVAEConfig:
    num_independent_layers: int = 2  # k: bottom layers with the independent mask (post: 8 of 12); >= 1
    latent: str = "vmf"              # "vmf" | "gaussian" | "vq"
    latent_dims: int = 16            # d per latent layer (the reference: 16)
    kappa: float = 32.0              # vMF concentration (the reference: 32, fixed); initial value if learned
    learn_kappa: bool = False
    codebook_size: int = 64          # VQ codes per latent layer
    commitment: float = 0.25         # VQ beta
    max_length: int = 32             # tokens per half, [CLS] and [SEP] included
    length_leakage: str = "fixed"    # "fixed" | "condition"

    def __post_init__(self) -> None:
        if self.latent not in LATENT_FAMILIES:
            raise ValueError(f"`latent` must be one of {LATENT_FAMILIES}, got {self.latent!r}")
        if self.length_leakage not in ("fixed", "condition"):
            raise ValueError(f"`length_leakage` must be 'fixed' or 'condition', got {self.length_leakage!r}")
        if self.max_length < 3:
            raise ValueError(f"`max_length` must be >= 3, got {self.max_length}")


@dataclass
class Layout:
    """The ``[x; x]`` sequence: ids, segments, positions and real-token mask, all ``[B, 2T]``."""

    input_ids: Tensor
    token_type_ids: Tensor
    position_ids: Tensor
    real: Tensor


@dataclass
class UniVAEOutput:
    """Named parts of the loss and what the model saw.

    Attributes:
        reconstruction: mean token cross-entropy of the decoder half (nats).
        regulariser: ``[n_latent]`` per-layer KL (vMF, Gaussian) or VQ loss.
        token_accuracy: teacher-forced next-token accuracy.
        z: ``[B, n_latent, d]`` the latents the decoder got.
        codes: ``[B, n_latent]`` VQ code indices, else None.
        kind: "kl" or "vq".
    """

    reconstruction: Tensor
    regulariser: Tensor
    token_accuracy: Tensor
    z: Tensor
    codes: Tensor | None
    kind: str


LatentFn = Callable[[int, Tensor], Tensor]  # (latent layer, [CLS] hidden [B, H]) -> z [B, d]


class UniVAE(nn.Module):
    """A :class:`~kexue.models.Transformer` with an MLM/LM head, made a multi-scale sentence VAE.

    Args:
        transformer: the backbone; its MLM head (tied to the embeddings) is the decoder's LM head.
        config: a :class:`UniVAEConfig`.

    Raises:
        ValueError: no MLM head, or ``num_independent_layers`` outside ``[1, num_layers - 1]``.
    """

    def __init__(self, transformer: Transformer, config: UniVAEConfig) -> None:
        super().__init__()
        layers = transformer.config.num_layers
        if transformer.mlm is None:
            raise ValueError("UniVAE needs the backbone's MLM head as its LM head (config.mlm_head=True)")
        if not 1 <= config.num_independent_layers <= layers - 1:
            raise ValueError(f"`num_independent_layers` must be in [1, {layers - 1}] for {layers} layers, "
                             f"got {config.num_independent_layers}")
        if transformer.config.type_vocab_size < 2:
            raise ValueError("UniVAE needs two segment ids (type_vocab_size >= 2)")
        self.transformer, self.config = transformer, config
        hidden = transformer.config.hidden_size
        self.bottlenecks = nn.ModuleList(
            make_bottleneck(config.latent, hidden, config.latent_dims, config.kappa, config.learn_kappa,
                            config.codebook_size, config.commitment) for _ in range(self.num_latent_layers))
        self.register_buffer("training_step", torch.zeros((), dtype=torch.long))  # drives KLSchedule; resumes

    @property
    def num_latent_layers(self) -> int:
        return self.transformer.config.num_layers - self.config.num_independent_layers

    @property
    def latent_size(self) -> int:
        """Numbers in the whole latent: ``n_latent * d``."""
        return self.num_latent_layers * self.config.latent_dims

    # ------------------------------------------------------------------ masks and layout
    def layer_masks(self, token_type_ids: Tensor, real: Tensor) -> list[Tensor]:
        """Per-layer bool masks ``[B, 1, 2T, 2T]``: independent below ``k``, UniAE above, pads hidden."""
        keys = masks.padding_mask(real)
        # the decoder is causal in every layer: unilm_mask adds that to the block-diagonal mask
        independent = masks.independent_mask(token_type_ids) & masks.unilm_mask(token_type_ids) & keys
        latent = masks.uniae_mask(token_type_ids) & keys
        k = self.config.num_independent_layers
        return [independent] * k + [latent] * self.num_latent_layers

    def decoder_offset(self, lengths: Tensor) -> Tensor:
        """Position of the decoder's first token: ``max_length`` ("fixed") or the encoder length."""
        if self.config.length_leakage == "fixed":
            return torch.full_like(lengths, self.config.max_length)
        return lengths

    def layout(self, input_ids: Tensor, attention_mask: Tensor) -> Layout:
        """Build ``[x; x]`` from tokenised sentences ``[B, T]`` (``[CLS] x [SEP]`` then padding)."""
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"`input_ids` and `attention_mask` must be equal 2-D shapes, got "
                             f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
        batch, length = input_ids.shape
        if length > self.config.max_length:
            raise ValueError(f"sentences of {length} tokens exceed `max_length`={self.config.max_length}")
        real = attention_mask.bool()
        arange = torch.arange(length, device=input_ids.device)[None].expand(batch, length)
        offset = self.decoder_offset(real.sum(1))[:, None]
        return Layout(input_ids=torch.cat([input_ids, input_ids], 1),
                      token_type_ids=torch.cat([torch.zeros_like(input_ids), torch.ones_like(input_ids)], 1),
                      position_ids=torch.cat([arange, offset + arange], 1),
                      real=torch.cat([real, real], 1))

    # ------------------------------------------------------------------ latent injection
    def latent_hook(self, latent_fn: LatentFn) -> Callable[[int, Tensor], Tensor | None]:
        """A ``layer_hook`` replacing the [CLS] column by ``W_up z_l`` before every latent layer."""
        k = self.config.num_independent_layers

        def hook(index: int, hidden: Tensor) -> Tensor | None:
            latent_layer = index + 1 - k
            if not 0 <= latent_layer < self.num_latent_layers:
                return None
            z = latent_fn(latent_layer, hidden[:, 0])
            cls = self.bottlenecks[latent_layer].expand(z).to(hidden.dtype)
            return torch.cat([cls[:, None], hidden[:, 1:]], dim=1)

        return hook

    def _posterior_fn(self, record: list) -> LatentFn:
        def latent_fn(latent_layer: int, cls: Tensor) -> Tensor:
            out = self.bottlenecks[latent_layer](cls, sample=self.training)
            record.append(out)
            return out.z
        return latent_fn

    # ------------------------------------------------------------------ forward / encode
    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> UniVAEOutput:
        """Teacher-forced reconstruction of ``input_ids`` ``[B, T]`` through the latent bottleneck."""
        layout = self.layout(input_ids, attention_mask)
        record: list = []
        length = input_ids.shape[1]
        real = attention_mask.bool()
        predicts = torch.zeros_like(layout.real)
        predicts[:, length:-1] = real[:, 1:]  # decoder position t predicts token t + 1
        out = self.transformer(layout.input_ids, layout.token_type_ids,
                               self.layer_masks(layout.token_type_ids, layout.real), layout.position_ids,
                               mlm_positions=predicts, layer_hook=self.latent_hook(self._posterior_fn(record)))
        labels = torch.cat([input_ids[:, 1:], input_ids[:, :1]], 1)  # decoder token t+1 (last column unused)
        labels = torch.cat([torch.zeros_like(input_ids), labels], 1)[predicts]
        logits = out.mlm_logits.float()
        return UniVAEOutput(
            reconstruction=F.cross_entropy(logits, labels),
            regulariser=torch.stack([r.regulariser for r in record]),
            token_accuracy=(logits.argmax(-1) == labels).float().mean(),
            z=torch.stack([r.z for r in record], 1),
            codes=torch.stack([r.codes for r in record], 1) if record[0].codes is not None else None,
            kind=self.bottlenecks[0].kind)

    def encode(self, input_ids: Tensor, attention_mask: Tensor, sample: bool = False) -> Tensor:
        """Latents ``[B, n_latent, d]`` of sentences (posterior mean / code, or a draw with ``sample``).

        Runs the encoder half alone: it never attends to the decoder half.
        """
        record: list = []

        def latent_fn(latent_layer: int, cls: Tensor) -> Tensor:
            out = self.bottlenecks[latent_layer](cls, sample=sample)
            record.append(out.z)
            return out.z

        was_training = self.training
        self.bottlenecks.eval()  # no VQ usage counting while encoding
        try:
            self.transformer(input_ids, torch.zeros_like(input_ids), attention_mask.long(),
                             layer_hook=self.latent_hook(latent_fn))
        finally:
            self.bottlenecks.train(was_training)
        return torch.stack(record, 1)

    def prior(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` latents ``[count, n_latent, d]`` from the prior of every layer."""
        return torch.stack([b.prior(count, generator) for b in self.bottlenecks], 1)

    def project(self, z: Tensor) -> Tensor:
        """Map edited / interpolated latents ``[B, n_latent, d]`` back onto each layer's latent space."""
        return torch.stack([b.project(z[:, i]) for i, b in enumerate(self.bottlenecks)], 1)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, path: str | Path, vocab_file: str | Path | None = None) -> None:
        """Write ``univae_config.json`` (both configs), ``univae.safetensors`` and the vocabulary."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        configs = {"univae": dataclasses.asdict(self.config),
                   "transformer": dataclasses.asdict(self.transformer.config)}
        (path / CONFIG_FILE).write_text(json.dumps(configs, indent=2), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / WEIGHTS_FILE))
        if vocab_file is not None:
            save_tokenizer_files(vocab_file, path)

    @classmethod
    def load(cls, path: str | Path) -> "UniVAE":
        """Load what :meth:`save_pretrained` wrote; returns the model in eval mode."""
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path}: no {CONFIG_FILE}; is this a UniVAE folder (kexue univae train)?")
        configs = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        model = cls(Transformer(TransformerConfig(**configs["transformer"])), UniVAEConfig(**configs["univae"]))
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
        return model.eval()

    @classmethod
    def from_pretrained(cls, backbone_path: str | Path, config: UniVAEConfig, **overrides) -> "UniVAE":
        """A new UniVAE on a Hugging Face BERT / RoFormer checkpoint (e.g. ``kexue-small-zh``).

        The pooler and NSP head are dropped; the MLM head becomes the LM head. ``overrides`` are
        :class:`~kexue.models.TransformerConfig` fields (e.g. ``dropout=0.0``).
        """
        backbone = Transformer.from_pretrained(backbone_path, pooler=False, nsp_head=False, mlm_head=True,
                                               **overrides)
        return cls(backbone, config)
