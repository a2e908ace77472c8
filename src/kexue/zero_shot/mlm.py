"""``MLMScorer``: PET-style zero-shot scores of label words through the MLM head (the baseline).

PET (Schick & Schütze 2021; kexue.fm/archives/7764) fills a slot in a template with as many
``[MASK]`` tokens as the label word has tokens and scores the word ``w = w_1 .. w_n`` by::

    score(w) = (1/n) Σ_j log P_MLM(w_j | masked input)

(all masks predicted in one pass, independently). Words of different lengths need different
inputs, so each (pair, length) is one sequence; words sharing a length share its forward pass.
The MLM head runs only at the masked positions (kexue's ``mlm_positions``), which is where
CPU time goes.

Models accepted: kexue's :class:`~kexue.models.Transformer` with ``mlm_head``, and transformers'
``*ForMaskedLM`` / ``*ForPreTraining``. dtype: the model runs in its own dtype; the logits are
cast to float32 before the log-softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from kexue.zero_shot.encoding import PairEncoder, bucket_batches, collate
from kexue.zero_shot.templates import LABEL_SLOT

__all__ = ["MLMScorer"]


class MLMScorer:
    """Mean log-probability of candidate words at a ``{label}`` slot turned into ``[MASK]`` tokens.

    Args:
        model: a kexue Transformer with an MLM head, or a transformers ``*ForMaskedLM`` / ``*ForPreTraining``.
        tokenizer: its BERT tokenizer.
        max_length: tokens per pair (the slot's segment is cut around the slot, never through it).
        max_tokens: padded tokens per forward pass.
        progress: show a tqdm bar over batches.

    Example:
        >>> import torch, tempfile, pathlib
        >>> from kexue.data import load_tokenizer
        >>> from kexue.models import Transformer, TransformerConfig
        >>> vocab = pathlib.Path(tempfile.mkdtemp()) / "vocab.txt"
        >>> _ = vocab.write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"好差评很东西"]))
        >>> torch.manual_seed(0) and None
        >>> model = Transformer(TransformerConfig(vocab_size=11, hidden_size=16, num_layers=1, num_heads=2,
        ...                                       intermediate_size=32, max_positions=32)).eval()
        >>> scorer = MLMScorer(model, load_tokenizer(vocab))
        >>> scores = scorer.word_log_probs([("东西很{label}", "好")], [["好", "差", "很好"]])
        >>> scores.shape, bool((scores < 0).all())
        (torch.Size([1, 3]), True)
    """

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 128, max_tokens: int = 16384,
                 progress: bool = False) -> None:
        from kexue.models import Transformer

        self.model = model
        self._kexue = isinstance(model, Transformer)
        if self._kexue and model.mlm is None:
            raise ValueError("this kexue Transformer has no MLM head (config.mlm_head=False)")
        if not self._kexue and not type(model).__name__.endswith(("ForMaskedLM", "ForPreTraining")):
            raise ValueError(f"`model` is a {type(model).__name__}, which has no MLM head")
        self.mask_id = tokenizer.mask_token_id
        self.encoder = PairEncoder(tokenizer, max_length, anchor_token_id=self.mask_id)
        self.max_tokens = max_tokens
        self.progress = progress

    @classmethod
    def from_pretrained(cls, path: str | Path, **options) -> "MLMScorer":
        """Load a local BERT / RoFormer folder into kexue's Transformer, with its tokenizer."""
        from kexue.data import load_tokenizer
        from kexue.models import Transformer

        model = Transformer.from_pretrained(path, dropout=0.0, attention_dropout=0.0)
        return cls(model, load_tokenizer(path), **options)

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    def _mask_log_probs(self, batch: dict[str, Tensor]) -> Tensor:
        """log-softmax ``[M, V]`` at the ``[MASK]`` positions, row-major."""
        masked = batch["input_ids"] == self.mask_id
        if self._kexue:
            logits = self.model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                                attention_mask=batch["attention_mask"], position_ids=batch.get("position_ids"),
                                mlm_positions=masked).mlm_logits
        else:
            output = self.model(**batch)
            logits = getattr(output, "prediction_logits", None)
            logits = (output.logits if logits is None else logits)[masked]
        return torch.log_softmax(logits.float(), dim=-1)

    @torch.inference_mode()
    def word_log_probs(self, pairs: Sequence[tuple[str, str]], words: Sequence[Sequence[str]]) -> Tensor:
        """Score ``words[i]`` in the ``{label}`` slot of ``pairs[i]`` (in either segment).

        Args:
            pairs: ``(first, second)`` strings; exactly one of them holds ``{label}`` once.
            words: candidate words per pair (any number, any token lengths).

        Returns:
            ``[N, K_max]`` float32 mean log-probabilities, ``-inf`` where pair i has fewer words.

        Raises:
            ValueError: a pair without exactly one slot, a word of no tokens, or a slot truncated away.
        """
        from tqdm.auto import tqdm

        if len(pairs) != len(words):
            raise ValueError(f"`pairs` ({len(pairs)}) and `words` ({len(words)}) differ in length")
        token_ids = self._word_ids(words)
        queries = [(index, length) for index, ids in enumerate(token_ids) for length in sorted({len(w) for w in ids})]
        filled = [_fill(pairs[index], "[MASK]" * length) for index, length in queries]
        encoded = self.encoder.encode_many(filled)
        out = torch.full((len(pairs), max(map(len, words), default=0)), float("-inf"))
        batches = bucket_batches([len(pair.input_ids) for pair in encoded], self.max_tokens)
        for indices in tqdm(list(batches), disable=not self.progress, desc="MLM", leave=False):
            batch = collate([encoded[i] for i in indices], self.tokenizer.pad_token_id, next(self.model.parameters()).device)
            log_probs = self._mask_log_probs(batch).cpu()
            counts = (batch["input_ids"] == self.mask_id).sum(dim=1).tolist()
            for row, (query, offset) in enumerate(zip(indices, _offsets(counts))):
                index, length = queries[query]
                if counts[row] != length:
                    raise ValueError(f"pair {index}: {counts[row]} [MASK] tokens survive, expected {length} "
                                     "(the slot was truncated, or the text holds [MASK] itself)")
                columns, ids = _of_length(token_ids[index], length)
                out[index, columns] = log_probs[offset + torch.arange(length), ids].mean(dim=-1)
        return out

    def _word_ids(self, words: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        distinct = sorted({word for candidates in words for word in candidates})
        ids = dict(zip(distinct, self.tokenizer(distinct, add_special_tokens=False)["input_ids"])) if distinct else {}
        empty = [word for word in distinct if not ids[word]]
        if empty:
            raise ValueError(f"label word(s) {empty} tokenize to nothing")
        return [[ids[word] for word in candidates] for candidates in words]


def _fill(pair: tuple[str, str], masks: str) -> tuple[str, str]:
    first, second = pair
    if (first + second).count(LABEL_SLOT) != 1:
        raise ValueError(f"pair {pair!r} must hold exactly one {LABEL_SLOT} slot")
    return first.replace(LABEL_SLOT, masks), second.replace(LABEL_SLOT, masks)


def _of_length(candidates: list[list[int]], length: int) -> tuple[Tensor, Tensor]:
    """Indices ``[k]`` of the candidates with ``length`` tokens, and their ids ``[k, length]``."""
    columns = [k for k, ids in enumerate(candidates) if len(ids) == length]
    return torch.tensor(columns), torch.tensor([candidates[k] for k in columns])


def _offsets(counts: list[int]) -> list[int]:
    offsets, total = [], 0
    for count in counts:
        offsets.append(total)
        total += count
    return offsets
