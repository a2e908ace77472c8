"""Streaming construction of a :class:`~kexue.retrieval.trie.TokenTrie`.

Sequences are appended to flat token / length / payload buffers (no Python object per
sequence), then the tree is built level by level: the nodes at depth d+1 are the distinct pairs
``(node at depth d, s_{d+1})``, found by ``np.unique(parent * V + token)``, which yields the
breadth-first, token-sorted numbering of :mod:`kexue.retrieval.trie` directly. Sequences are
sorted longest first, so those still alive at depth d are a prefix of the order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from kexue.retrieval.trie import TokenTrie

__all__ = ["TrieBuilder"]

_CHUNK = 65536  # sequences collected in Python lists before they are packed into numpy


class TrieBuilder:
    """Collects token sequences (and payload ids) into flat buffers; :meth:`build` makes the trie.

    Args:
        vocab_size: token ids must be in ``[0, vocab_size)``; None takes ``max id + 1``.
        pad_token_id: a token that may not occur in a sequence (a padded batch leaked in).
        duplicates: ``"error"`` raises on a repeated sequence; ``"first"`` keeps the payload of
            its first occurrence (counted in :meth:`TokenTrie.stats` as ``duplicates_dropped``).

    Example:
        >>> builder = TrieBuilder()
        >>> builder.add([5, 6, 7], payload=10)
        >>> builder.add([5, 8])
        >>> builder.build().stats()["num_sequences"]
        2
    """

    def __init__(self, vocab_size: int | None = None, pad_token_id: int | None = None,
                 duplicates: str = "error") -> None:
        if duplicates not in ("error", "first"):
            raise ValueError(f"`duplicates` must be 'error' or 'first', got {duplicates!r}")
        if vocab_size is not None and vocab_size < 1:
            raise ValueError(f"`vocab_size` must be >= 1, got {vocab_size}")
        self.vocab_size, self.pad_token_id, self.duplicates = vocab_size, pad_token_id, duplicates
        self._tokens: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._payloads: list[np.ndarray] = []
        self._pending: tuple[list[int], list[int], list[int]] = ([], [], [])
        self._count = 0

    def add(self, sequence: Sequence[int], payload: int | None = None) -> None:
        """Add one sequence; its payload defaults to its 0-based insertion index."""
        if len(sequence) == 0:
            raise ValueError(f"sequence {self._count} is empty; a trie path needs at least one token")
        tokens, lengths, payloads = self._pending
        tokens.extend(sequence)
        lengths.append(len(sequence))
        payloads.append(self._count if payload is None else int(payload))
        self._count += 1
        if len(lengths) >= _CHUNK:
            self._flush()

    def extend(self, sequences: Iterable[Sequence[int]], payloads: Iterable[int] | None = None) -> None:
        """Add many sequences (streamed; nothing is kept as Python lists beyond one chunk)."""
        payload_iter = iter(payloads) if payloads is not None else None
        for sequence in sequences:
            self.add(sequence, None if payload_iter is None else next(payload_iter))

    def add_flat(self, tokens: np.ndarray, lengths: np.ndarray, payloads: np.ndarray | None = None) -> None:
        """Add sequences already packed as one token array and their lengths (no copy per sequence)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(tokens):
            raise ValueError(f"`lengths` sum to {int(lengths.sum())} but `tokens` has {len(tokens)} entries")
        if (lengths <= 0).any():
            first = int(np.flatnonzero(lengths <= 0)[0])
            raise ValueError(f"sequence {self._count + first} is empty; a trie path needs at least one token")
        self._flush()
        if payloads is None:
            payloads = np.arange(self._count, self._count + len(lengths), dtype=np.int64)
        self._tokens.append(np.asarray(tokens, dtype=np.int32))
        self._lengths.append(lengths)
        self._payloads.append(np.asarray(payloads, dtype=np.int64))
        self._count += len(lengths)

    def _flush(self) -> None:
        tokens, lengths, payloads = self._pending
        if lengths:
            self._tokens.append(np.asarray(tokens, dtype=np.int64).astype(np.int32))
            self._lengths.append(np.asarray(lengths, dtype=np.int64))
            self._payloads.append(np.asarray(payloads, dtype=np.int64))
        self._pending = ([], [], [])

    def build(self) -> TokenTrie:
        """Validate the collected sequences and build the :class:`TokenTrie`."""
        self._flush()
        if not self._lengths:
            raise ValueError("no sequences were added; a trie needs at least one")
        tokens = np.concatenate(self._tokens) if len(self._tokens) > 1 else self._tokens[0]
        lengths = np.concatenate(self._lengths)
        payloads = np.concatenate(self._payloads)
        self._tokens, self._lengths, self._payloads = [], [], []
        self._check_tokens(tokens, lengths)
        vocab_size = self.vocab_size if self.vocab_size is not None else int(tokens.max()) + 1
        return _build_levels(tokens, lengths, payloads, vocab_size, self.duplicates)

    def _check_tokens(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        in_range = tokens.min() >= 0 and (self.vocab_size is None or tokens.max() < self.vocab_size)
        if in_range and (self.pad_token_id is None or not (tokens == self.pad_token_id).any()):
            return  # the common case, without token-sized temporaries
        bad = tokens < 0 if self.vocab_size is None else (tokens < 0) | (tokens >= self.vocab_size)
        if self.pad_token_id is not None:
            bad |= tokens == self.pad_token_id
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            sequence = int(np.searchsorted(np.cumsum(lengths), position, side="right"))
            token = int(tokens[position])
            what = ("the pad id" if token == self.pad_token_id
                    else f"outside [0, vocab_size={self.vocab_size})" if self.vocab_size else "negative")
            raise ValueError(f"sequence {sequence} holds token {token}, {what}")


def _build_levels(flat: np.ndarray, lengths: np.ndarray, payloads: np.ndarray, vocab_size: int,
                  duplicates: str) -> TokenTrie:
    """Breadth-first construction; see the module docstring."""
    index_type = np.int32 if len(flat) < 2**31 - 2 else np.int64  # nodes <= tokens + 1
    # Per-sequence arrays in index_type: at 10^7 entries each int64 array is 80 MB of the peak.
    order = np.argsort(-lengths, kind="stable").astype(index_type)  # longest first: the sequences alive at depth d
    starts = (np.cumsum(lengths) - lengths)[order].astype(index_type)  # are a prefix of the order
    sorted_lengths = lengths[order].astype(index_type)
    node = np.zeros(len(lengths), dtype=index_type)
    # Upper-bound allocations written level by level: pages never touched are never resident,
    # so the peak is the final arrays plus one level's temporaries (no concatenation copies).
    tokens = np.empty(len(flat) + 1, dtype=np.int32)
    first_child = np.empty(len(flat) + 2, dtype=index_type)
    tokens[0], first_child[0] = -1, 1
    num_nodes, level_start = 1, 0
    for depth in range(int(sorted_lengths[0])):
        alive = int(np.searchsorted(-sorted_lengths, -depth, side="left"))  # lengths > depth
        keys = node[:alive].astype(np.int64) * vocab_size + flat[starts[:alive] + depth]
        unique, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(unique // vocab_size - level_start, minlength=num_nodes - level_start)
        # first_child[n + 1] = first_child[n] + (children of n), over the parent level
        first_child[level_start + 1:num_nodes + 1] = first_child[level_start] + np.cumsum(counts)
        tokens[num_nodes:num_nodes + len(unique)] = unique % vocab_size
        node[:alive] = num_nodes + inverse.reshape(-1)
        level_start, num_nodes = num_nodes, num_nodes + len(unique)
    first_child[level_start + 1:num_nodes + 1] = first_child[level_start]  # the deepest level has no children
    tokens, first_child = tokens[:num_nodes], first_child[:num_nodes + 1]
    max_depth = int(sorted_lengths[0])
    del starts, sorted_lengths
    end_nodes = np.empty_like(node)
    end_nodes[order] = node
    del node, order
    by_node = np.argsort(end_nodes, kind="stable")  # stable: the first occurrence comes first
    sorted_end = end_nodes[by_node]
    repeated = np.concatenate([[False], sorted_end[1:] == sorted_end[:-1]])
    if repeated.any() and duplicates == "error":
        later = int(by_node[np.flatnonzero(repeated)[0]])
        earlier = int(by_node[np.flatnonzero(repeated)[0] - 1])
        raise ValueError(f"sequence {later} duplicates sequence {earlier}; pass duplicates='first' to keep the first")
    keep = ~repeated
    return TokenTrie(tokens, first_child, sorted_end[keep].astype(index_type),
                     payloads[by_node[keep]], vocab_size,
                     {"duplicates_dropped": int(repeated.sum()), "max_depth": max_depth})
