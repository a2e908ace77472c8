"""``NSPScorer``: P(IsNext | A, B) from any BERT-family model with a next-sentence-prediction head.

NSP-BERT (kexue.fm/archives/8671; arXiv 2109.03564) scores a segment pair by the NSP head::

    P(IsNext | A, B) = softmax(W_nsp tanh(W_pool h_[CLS]))[0]

Index 0 is IsNext in Google's BERT, in transformers' ``BertForNextSentencePrediction`` and in
kexue's :class:`~kexue.models.Transformer` (getting it backwards is Ask2Transformers #5). Token
types (0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``) are always passed by keyword.

Models accepted: kexue's :class:`~kexue.models.Transformer` with ``nsp_head`` (our checkpoints, or
Hugging Face BERT checkpoints loaded into it), and transformers' ``BertForPreTraining`` /
``BertForNextSentencePrediction`` (any ``*ForPreTraining`` whose output has
``seq_relationship_logits``, any ``*ForNextSentencePrediction``).

dtype: the model runs in its own dtype (fp32, bf16 or fp16); the two logits are cast to float32
before the log-softmax, so scores are float32 whatever the model's dtype.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from kexue.zero_shot.encoding import PairEncoder, bucket_batches, collate

__all__ = ["NSPScorer", "NoNSPHeadError", "NSP_CHECKPOINTS", "IS_NEXT"]

IS_NEXT = 0  # index of IsNext in every NSP head kexue knows (Google BERT, transformers, kexue)

NSP_CHECKPOINTS = (
    "checkpoints that have a trained NSP head: Google BERT (bert-base/large-uncased/cased, "
    "bert-base-multilingual-*, bert-base-chinese), UER mixed-corpus BERT (the NSP-BERT paper's), "
    "hfl/chinese-bert-wwm(-ext), kexue-small-zh; models pretrained without NSP (RoBERTa, "
    "hfl/chinese-roberta-wwm-ext*, MacBERT, ALBERT's SOP head, ELECTRA, DeBERTa, all-MiniLM) cannot be "
    "used: a BERT-format file of theirs may carry seq_relationship weights, but they were never trained"
)


class NoNSPHeadError(ValueError):
    """The model or checkpoint has no next-sentence-prediction head."""


def _hf_nsp_kind(model: nn.Module) -> str | None:
    name = type(model).__name__
    if name.endswith("ForNextSentencePrediction"):
        return "logits"
    if name.endswith("ForPreTraining"):
        return "seq_relationship_logits"
    return None


class NSPScorer:
    """Batched P(IsNext) for segment pairs.

    Args:
        model: a kexue :class:`~kexue.models.Transformer` with an NSP head, or a transformers
            ``BertForPreTraining`` / ``BertForNextSentencePrediction``.
        tokenizer: its BERT tokenizer (e.g. :func:`kexue.data.load_tokenizer`).
        max_length: tokens per pair, special tokens included (128 as in the paper).
        max_tokens: padded tokens per forward pass (batch size × longest pair); length bucketing
            fills each batch with pairs of similar length.
        progress: show a tqdm bar over batches.

    Raises:
        NoNSPHeadError: the model has no NSP head; the message names checkpoints that have one.

    Relations:
        :class:`~kexue.zero_shot.NSPZeroShotClassifier` builds prompt pairs and calls this;
        :class:`~kexue.zero_shot.MLMScorer` is the PET-style sibling over the MLM head.

    Example:
        >>> import torch, tempfile, pathlib
        >>> from kexue.data import load_tokenizer
        >>> from kexue.models import Transformer, TransformerConfig
        >>> vocab = pathlib.Path(tempfile.mkdtemp()) / "vocab.txt"
        >>> _ = vocab.write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"好差评这是新闻"]))
        >>> torch.manual_seed(0) and None
        >>> model = Transformer(TransformerConfig(vocab_size=12, hidden_size=16, num_layers=1, num_heads=2,
        ...                                       intermediate_size=32, max_positions=32))
        >>> scorer = NSPScorer(model.eval(), load_tokenizer(vocab))
        >>> probabilities = scorer.score([("这是好评", "好"), ("这是差评", "好")])
        >>> probabilities.shape, probabilities.dtype, bool(((probabilities > 0) & (probabilities < 1)).all())
        (torch.Size([2]), torch.float32, True)
    """

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 128, max_tokens: int = 16384,
                 progress: bool = False) -> None:
        self.model = model
        self._output_field = self._check_head(model)
        self.encoder = PairEncoder(tokenizer, max_length)
        self.max_tokens = max_tokens
        self.progress = progress

    @staticmethod
    def _check_head(model: nn.Module) -> str | None:
        from kexue.models import Transformer

        if isinstance(model, Transformer):
            if model.nsp is None:
                raise NoNSPHeadError(f"this kexue Transformer has no NSP head (config.nsp_head=False); "
                                     f"{NSP_CHECKPOINTS}")
            return None
        kind = _hf_nsp_kind(model)
        if kind is None:
            raise NoNSPHeadError(f"`model` is a {type(model).__name__}, which has no NSP head; pass a kexue "
                                 f"Transformer, BertForPreTraining or BertForNextSentencePrediction. {NSP_CHECKPOINTS}")
        return kind

    @classmethod
    def from_pretrained(cls, path: str | Path, **options) -> "NSPScorer":
        """Load a local BERT / RoFormer checkpoint folder into kexue's Transformer, with its tokenizer.

        Raises:
            NoNSPHeadError: the folder is not BERT/RoFormer, or its weights have no NSP head.
        """
        from kexue.data import load_tokenizer
        from kexue.models import Transformer

        path = Path(path)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"checkpoint folder {path} has no config.json")
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
        if model_type not in ("bert", "roformer"):
            raise NoNSPHeadError(f"{path}: model_type {model_type!r} has no NSP head; {NSP_CHECKPOINTS}")
        model = Transformer.from_pretrained(path, dropout=0.0, attention_dropout=0.0)
        if model.nsp is None:
            raise NoNSPHeadError(f"{path}: the weights have no NSP head (cls.seq_relationship.*); {NSP_CHECKPOINTS}")
        return cls(model, load_tokenizer(path), **options)

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _nsp_logits(self, batch: dict[str, Tensor]) -> Tensor:
        if self._output_field is None:
            return self.model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                              attention_mask=batch["attention_mask"], position_ids=batch.get("position_ids")).nsp_logits
        return getattr(self.model(**batch), self._output_field)

    @torch.inference_mode()
    def logits(self, pairs: Sequence[tuple[str, str]], blank: str | None = None) -> Tensor:
        """NSP logits ``[N, 2]`` (float32; column :data:`IS_NEXT` is IsNext) of ``(first, second)`` pairs.

        Args:
            pairs: ``(first segment, second segment)`` strings.
            blank: a marker in the second segment where the first belongs (soft positions, ChID).
        """
        from tqdm.auto import tqdm

        encoded = self.encoder.encode_many(pairs, blank=blank)
        out = torch.empty(len(encoded), 2, dtype=torch.float32)
        batches = list(bucket_batches([len(pair.input_ids) for pair in encoded], self.max_tokens))
        pad = self.tokenizer.pad_token_id
        for indices in tqdm(batches, disable=not self.progress, desc="NSP", leave=False):
            batch = collate([encoded[index] for index in indices], pad, self.device)
            out[torch.tensor(indices)] = self._nsp_logits(batch).float().cpu()
        return out

    def log_prob(self, pairs: Sequence[tuple[str, str]], blank: str | None = None) -> Tensor:
        """log P(IsNext) ``[N]``, float32."""
        return torch.log_softmax(self.logits(pairs, blank), dim=-1)[:, IS_NEXT]

    def score(self, pairs: Sequence[tuple[str, str]], blank: str | None = None) -> Tensor:
        """P(IsNext) ``[N]``, float32."""
        return self.log_prob(pairs, blank).exp()

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())
