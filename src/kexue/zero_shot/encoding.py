"""Segment-pair encoding shared by the NSP and MLM scorers: ``[CLS] A [SEP] B [SEP]`` with explicit types.

Token types are 0 for ``[CLS] A [SEP]`` and 1 for ``B [SEP]``, always passed by keyword: passing them
positionally as the attention mask is the pitfall behind transformers #1788 and google-research/bert
#908 (unrelated pairs scored as IsNext).

Truncation is longest-first to ``max_length`` tokens, as bert4keras and transformers do, with one
refinement: a segment holding an *anchor* (a cloze blank, or the first ``[MASK]`` of a PET slot) is
cut on both sides around the anchor instead of from its end, so the part a prediction depends on
is never truncated away.

Soft positions (NSP-BERT's ChID setting): when the second segment contains the ``blank`` marker,
the marker is removed and the first segment's tokens get the positions of the blank, so
``[CLS] idiom [SEP] left right [SEP]`` is positioned as ``[CLS] [SEP] left idiom right [SEP]``.

Batches are length-bucketed: pairs are sorted by length and cut into batches of at most
``max_tokens`` padded tokens, so padding is small and the batch size adapts to the length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EncodedPair", "PairEncoder", "bucket_batches", "collate"]


@dataclass(frozen=True)
class EncodedPair:
    """One ``[CLS] A [SEP] B [SEP]`` sequence; ``position_ids`` None means ``0..L-1``."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    position_ids: tuple[int, ...] | None = None


def _fit(ids: list[int], anchor: int | None, keep: int) -> tuple[list[int], int | None]:
    """Cut ``ids`` to ``keep`` tokens: from the end, or around ``anchor`` (kept, centred)."""
    if len(ids) <= keep:
        return ids, anchor
    if anchor is None:
        return ids[:keep], None
    start = min(max(anchor - keep // 2, 0), len(ids) - keep)
    return ids[start:start + keep], anchor - start


def _budgets(first: int, second: int, room: int) -> tuple[int, int]:
    """Longest-first: shorten the longer segment one token at a time until both fit in ``room``."""
    while first + second > room:
        if first > second:
            first -= 1
        else:
            second -= 1
    return first, second


class PairEncoder:
    """Tokenize segment pairs once per distinct string and build ids, types and positions.

    Args:
        tokenizer: a transformers BERT tokenizer (``cls_token_id``, ``sep_token_id``, ``pad_token_id``).
        max_length: the most tokens per sequence, special tokens included (the paper uses 128).
        anchor_token_id: a token id whose first occurrence in a segment is an anchor for truncation
            (the MLM scorer passes ``[MASK]``); None for none.

    Example:
        >>> from kexue.data import load_tokenizer
        >>> import tempfile, pathlib
        >>> vocab = pathlib.Path(tempfile.mkdtemp()) / "vocab.txt"
        >>> _ = vocab.write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "好", "差", "评"]))
        >>> encoder = PairEncoder(load_tokenizer(vocab), max_length=16)
        >>> pair = encoder.encode_many([("好评", "差")])[0]
        >>> pair.input_ids, pair.token_type_ids
        ((2, 5, 7, 3, 6, 3), (0, 0, 0, 0, 1, 1))
    """

    def __init__(self, tokenizer, max_length: int = 128, anchor_token_id: int | None = None) -> None:
        if max_length < 4:
            raise ValueError(f"`max_length` must be at least 4 (three special tokens and text), got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.anchor_token_id = anchor_token_id
        self._cache: dict[str, list[int]] = {}

    def _tokenize_all(self, texts: Sequence[str]) -> None:
        new = sorted({text for text in texts if text not in self._cache})
        if new:
            ids = self.tokenizer(new, add_special_tokens=False)["input_ids"]
            self._cache.update(zip(new, ids))

    def _anchor(self, ids: list[int]) -> int | None:
        if self.anchor_token_id is None or self.anchor_token_id not in ids:
            return None
        return ids.index(self.anchor_token_id)

    def encode_many(self, pairs: Sequence[tuple[str, str]], blank: str | None = None) -> list[EncodedPair]:
        """Encode ``(first, second)`` pairs; see the module docstring for ``blank`` (soft positions)."""
        splits = [_split_blank(second, blank) for _, second in pairs]
        self._tokenize_all([first for first, _ in pairs] + [part for split in splits for part in split])
        return [self._encode(first, split) for (first, _), split in zip(pairs, splits)]

    def _encode(self, first: str, second_parts: tuple[str, ...]) -> EncodedPair:
        ids_a = self._cache[first]
        parts = [self._cache[part] for part in second_parts]
        ids_b = [token for part in parts for token in part]
        soft = len(parts) == 2
        anchor_b = len(parts[0]) if soft else self._anchor(ids_b)
        keep_a, keep_b = _budgets(len(ids_a), len(ids_b), self.max_length - 3)
        ids_a, _ = _fit(ids_a, self._anchor(ids_a), keep_a)
        ids_b, anchor_b = _fit(ids_b, anchor_b, keep_b)
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        input_ids = (cls, *ids_a, sep, *ids_b, sep)
        types = (0,) * (len(ids_a) + 2) + (1,) * (len(ids_b) + 1)
        positions = _soft_positions(len(ids_a), len(ids_b), anchor_b) if soft else None
        return EncodedPair(input_ids, types, positions)


def _split_blank(second: str, blank: str | None) -> tuple[str, ...]:
    if blank is None or blank not in second:
        return (second,)
    left, right = second.split(blank, 1)
    return (left, right)


def _soft_positions(first: int, second: int, blank: int) -> tuple[int, ...]:
    """Positions of ``[CLS] A [SEP] left right [SEP]`` read as ``[CLS] [SEP] left A right [SEP]``."""
    left = tuple(range(2, 2 + blank))
    inserted = tuple(range(2 + blank, 2 + blank + first))
    right = tuple(range(2 + blank + first, 2 + first + second))
    return (0, *inserted, 1, *left, *right, 2 + first + second)


def bucket_batches(lengths: Sequence[int], max_tokens: int) -> Iterator[list[int]]:
    """Indices sorted by length, cut so each batch's ``size × longest`` stays within ``max_tokens``.

    Example:
        >>> list(bucket_batches([5, 2, 9, 3], max_tokens=10))
        [[1, 3], [0], [2]]
    """
    if max_tokens < 1:
        raise ValueError(f"`max_tokens` must be positive, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    batch: list[int] = []
    for index in order:
        if batch and (len(batch) + 1) * lengths[index] > max_tokens:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def collate(pairs: Sequence[EncodedPair], pad_token_id: int, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Pad a batch: ``input_ids``, ``token_type_ids``, ``attention_mask`` ``[B, L]`` (+ ``position_ids``)."""
    width = max(len(pair.input_ids) for pair in pairs)
    ids = torch.full((len(pairs), width), pad_token_id, dtype=torch.long)
    types = torch.zeros((len(pairs), width), dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    positions = torch.arange(width).repeat(len(pairs), 1)
    for row, pair in enumerate(pairs):
        length = len(pair.input_ids)
        ids[row, :length] = torch.tensor(pair.input_ids)
        types[row, :length] = torch.tensor(pair.token_type_ids)
        mask[row, :length] = 1
        if pair.position_ids is not None:
            positions[row, :length] = torch.tensor(pair.position_ids)
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    if any(pair.position_ids is not None for pair in pairs):
        batch["position_ids"] = positions
    return {name: tensor.to(device) for name, tensor in batch.items()}
