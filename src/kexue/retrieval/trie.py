"""A token prefix tree in flat arrays: batched next-token masks for constrained decoding.

Post 8802 ("Seq2Seq + prefix tree", kexue.fm/archives/8802, section 前缀解码) stores every
retrievable sequence ``s = (s_1, ..., s_n)`` in a prefix tree and lets a decoder emit token ``t``
after prefix ``p`` only if ``p + t`` is a prefix of some stored sequence::

    allowed(p) = { s_{|p|+1} : s stored, s_1..s_|p| = p }

Here the tree is four flat arrays instead of nested dicts (GENRE, bert4keras KgCLUE). Nodes are
numbered breadth first and the children of a node are contiguous and sorted by token:

    children(n)  = node ids first_child[n] .. first_child[n+1] - 1
    token[c]     = the token on the edge into node c
    payload      = terminal_payloads[k] for the sequence ending at node terminal_nodes[k] (sorted)

so the mask for a batch of prefix states is one gather over contiguous slices and ``child(n, t)``
a binary search, both vectorised over the batch (numpy on the host arrays, results on any torch
device), and the memory is 8 bytes per node plus 16 per sequence (int32 ids below 2^31 nodes),
against ~200 bytes per node for a dict.

Building streams sequences into one flat token buffer, then creates the tree level by level:
the nodes at depth d+1 are the distinct pairs ``(node at depth d, s_{d+1})``, found by
``np.unique(parent * V + token)``, which directly yields the breadth-first, token-sorted order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["TokenTrie"]

_FORMAT_VERSION = 1
_ARRAYS = ("tokens", "first_child", "terminal_nodes", "terminal_payloads")


def _host(values: Tensor) -> np.ndarray:
    """int64 numpy view of a tensor (no copy for a CPU long tensor)."""
    return values.detach().cpu().long().numpy()


def _max_children(first_child: np.ndarray, chunk: int = 1 << 22) -> int:
    """The largest child count, in chunks: one ``np.diff`` would be a node-sized temporary (0.6 GB at 10^7 entries)."""
    return max((int(np.diff(first_child[i:i + chunk + 1]).max()) for i in range(0, len(first_child) - 1, chunk)),
               default=0)


class TokenTrie:
    """A static prefix tree over token-id sequences, each complete path carrying a payload id.

    Build with :meth:`build` (or :class:`~kexue.retrieval.builder.TrieBuilder`), persist with :meth:`save` /
    :meth:`load` (``.npy`` files, memory-mapped). States are node ids (``0`` = root, ``-1`` =
    "left the trie"); every batched method takes and returns ``long`` tensors on any device.

    Example:
        >>> trie = TokenTrie.build([[1, 2, 3], [1, 2, 4], [5]], payloads=[10, 11, 12])
        >>> states = trie.walk([[1, 2], [7]])
        >>> states.tolist()
        [3, -1]
        >>> mask = trie.allowed_next(states)
        >>> mask[0].nonzero().flatten().tolist(), mask[1].any().item()
        ([3, 4], False)
        >>> trie.completions([1])
        [([2, 3], 10), ([2, 4], 11)]
    """

    def __init__(self, tokens: np.ndarray, first_child: np.ndarray, terminal_nodes: np.ndarray,
                 terminal_payloads: np.ndarray, vocab_size: int, info: dict) -> None:
        # plain ndarray views: numpy wraps every result computed from an np.memmap, a cost per operation
        self.tokens, self.first_child = np.asarray(tokens), np.asarray(first_child)
        self.terminal_nodes, self.terminal_payloads = np.asarray(terminal_nodes), np.asarray(terminal_payloads)
        self.vocab_size = int(vocab_size)
        self.info = dict(info)
        self.max_branching = _max_children(first_child)
        self._root_children = np.zeros(self.vocab_size, dtype=np.int64)  # token -> child of the root, 0 = none
        self._root_children[self.tokens[1:self.first_child[1]]] = np.arange(1, self.first_child[1])

    @classmethod
    def build(cls, sequences: Iterable[Sequence[int]], payloads: Iterable[int] | None = None,
              vocab_size: int | None = None, pad_token_id: int | None = None,
              duplicates: str = "error") -> "TokenTrie":
        """Build from an iterable of sequences; arguments as in :class:`TrieBuilder`.

        Raises:
            ValueError: no sequences, an empty sequence, a pad / out-of-range token, or a
                duplicate under ``duplicates="error"`` (each message names the sequence index).
        """
        from kexue.retrieval.builder import TrieBuilder

        builder = TrieBuilder(vocab_size, pad_token_id, duplicates)
        builder.extend(sequences, payloads)
        return builder.build()

    # ------------------------------------------------------------------ sizes
    @property
    def num_nodes(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        """Number of stored sequences."""
        return len(self.terminal_nodes)

    @property
    def max_depth(self) -> int:
        """Length of the longest stored sequence."""
        return int(self.info["max_depth"])

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _ARRAYS)

    def stats(self) -> dict[str, float | int]:
        """Sequences, nodes, bytes, bytes per sequence, depth, branching, duplicates dropped."""
        return {"num_sequences": len(self), "num_nodes": self.num_nodes, "bytes": self.nbytes(),
                "bytes_per_sequence": self.nbytes() / max(len(self), 1), "max_depth": self.max_depth,
                "max_branching": self.max_branching, "vocab_size": self.vocab_size,
                "duplicates_dropped": int(self.info.get("duplicates_dropped", 0))}

    # ------------------------------------------------------------------ batched queries
    # The queries run in numpy on the host arrays (memory-mapped when loaded) and return tensors
    # on the states' device. A decoding step is a few dozen operations on batch-sized vectors:
    # numpy does each in about a microsecond, torch's dispatcher takes several times that, and
    # on a GPU the host arrays need no device copy (the mask is uploaded once per step).
    def step(self, states: Tensor, tokens: Tensor) -> Tensor:
        """Child of each state along its token; -1 where there is none.

        Args:
            states: long ``[B]`` node ids (-1 stays -1).
            tokens: long ``[B]`` token ids.
        """
        return torch.from_numpy(self._step(_host(states), _host(tokens))).to(states.device)

    def _step(self, states: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Branch-free lower bound in every row's sorted children at once (no Python per row).

        The root, by far the widest node (one child per distinct first token), is a table lookup,
        so the rounds of the search are log2 of the widest *other* node in the batch.
        """
        last = self.num_nodes - 1
        parent = np.maximum(states, 0)
        end = self.first_child[parent + 1].astype(np.int64)
        count = np.where(states > 0, end - self.first_child[parent], 0)
        searched = count > 0
        base = np.where(searched, end - count, 0)
        for _ in range(max(int(count.max(initial=0)) - 1, 0).bit_length()):  # ceil(log2): the answer stays in [base, base + count]
            half = count >> 1
            middle = base + half
            base = np.where(self.tokens[middle] < tokens, middle, base)
            count -= half
        position = np.minimum(base + (self.tokens[base] < tokens), last)
        found = searched & (position < end) & (self.tokens[position] == tokens)
        from_root = self._root_children[np.clip(tokens, 0, self.vocab_size - 1)]
        found_at_root = (states == 0) & (from_root > 0) & (self.tokens[from_root] == tokens)
        return np.where(found, position, np.where(found_at_root, from_root, -1))

    def walk(self, prefixes: Sequence[Sequence[int]] | Tensor, device: torch.device | str | None = None) -> Tensor:
        """States reached by whole prefixes (rows of a ``[B, L]`` tensor, or a ragged list).

        Returns:
            long ``[B]``: node ids, -1 where a prefix is not in the trie; the root for ``[]``.
        """
        if isinstance(prefixes, Tensor):
            rows, device = _host(prefixes.long()), prefixes.device
            lengths = np.full(rows.shape[0], rows.shape[1])
        else:
            lengths = np.array([len(p) for p in prefixes], dtype=np.int64)
            rows = np.zeros((len(prefixes), int(lengths.max(initial=0))), dtype=np.int64)
            for i, prefix in enumerate(prefixes):
                rows[i, :len(prefix)] = prefix
        states = np.zeros(rows.shape[0], dtype=np.int64)
        for column in range(rows.shape[1]):
            states = np.where(column < lengths, self._step(states, rows[:, column]), states)
        return torch.from_numpy(states).to(device)

    def allowed_next(self, states: Tensor, end_token_id: int | None = None) -> Tensor:
        """Boolean mask of the tokens that may follow each state.

        Args:
            states: long ``[B]`` node ids; -1 (off the trie) gives an all-False row.
            end_token_id: if given, also allowed where the state ends a stored sequence.

        Returns:
            bool ``[B, vocab_size]`` on ``states.device``.
        """
        host = _host(states)
        batch = len(host)
        low, counts = self._children(host)
        total = int(counts.sum())
        children = np.repeat(low - (np.cumsum(counts) - counts), counts) + np.arange(total)
        mask = np.zeros(batch * self.vocab_size, dtype=bool)
        mask[np.repeat(np.arange(batch) * self.vocab_size, counts) + self.tokens[children]] = True
        if end_token_id is not None:
            mask[np.arange(batch) * self.vocab_size + end_token_id] |= self._payloads_np(host) >= 0
        return torch.from_numpy(mask.reshape(batch, self.vocab_size)).to(states.device)

    def _children(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First child and number of children of each state (0 off the trie)."""
        parent = np.maximum(states, 0)
        low = self.first_child[parent].astype(np.int64)
        return low, np.where(states >= 0, self.first_child[parent + 1] - low, 0)

    def payloads(self, states: Tensor) -> Tensor:
        """Payload id of the sequence ending at each state; -1 where none ends there."""
        return torch.from_numpy(self._payloads_np(_host(states))).to(states.device)

    def num_children(self, states: Tensor) -> Tensor:
        """Number of allowed continuation tokens per state (0 off the trie)."""
        return torch.from_numpy(self._children(_host(states))[1].astype(np.int64)).to(states.device)

    # ------------------------------------------------------------------ lookahead support
    def completion_arrays(self, state: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Every stored continuation below one state, breadth first (shortest first).

        Returns:
            ``(paths, payloads, complete)``: int32 ``[C, depth]`` padded with -1, int64 ``[C]``,
            and False when the enumeration stopped at ``limit`` completions.
        """
        if state < 0:
            return np.zeros((0, 0), np.int32), np.zeros(0, np.int64), True
        found_paths, found_payloads, found = [], [], 0
        frontier, paths = np.array([state], dtype=np.int64), np.zeros((1, 0), dtype=np.int32)
        complete = True
        while len(frontier):
            payloads = self._payloads_np(frontier)
            terminal = payloads >= 0
            if terminal.any():
                found_paths.append(paths[terminal])
                found_payloads.append(payloads[terminal])
                found += int(terminal.sum())
            low = self.first_child[frontier].astype(np.int64)
            counts = self.first_child[frontier + 1].astype(np.int64) - low
            total = int(counts.sum())
            if limit is not None and found + total > limit and total:
                complete = False
                break
            children = np.repeat(low - (np.cumsum(counts) - counts), counts) + np.arange(total)
            paths = np.concatenate([np.repeat(paths, counts, axis=0), self.tokens[children][:, None]], axis=1)
            frontier = children
        width = max((p.shape[1] for p in found_paths), default=0)
        padded = [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1) for p in found_paths]
        out_paths = np.concatenate(padded) if padded else np.zeros((0, 0), np.int32)
        out_payloads = np.concatenate(found_payloads) if found_payloads else np.zeros(0, np.int64)
        return out_paths, out_payloads, complete

    def _payloads_np(self, nodes: np.ndarray) -> np.ndarray:
        index = np.minimum(np.searchsorted(self.terminal_nodes, nodes), len(self) - 1)
        return np.where((self.terminal_nodes[index] == nodes) & (nodes >= 0), self.terminal_payloads[index], -1)

    def completions(self, prefix: Sequence[int], limit: int | None = None) -> list[tuple[list[int], int]]:
        """``(continuation tokens, payload)`` of every stored sequence starting with ``prefix``.

        An empty continuation means ``prefix`` itself is stored. At most ``limit`` entries.
        """
        state = int(self.walk([list(prefix)])[0])
        paths, payloads, _ = self.completion_arrays(state, limit)
        return [([int(t) for t in row if t >= 0], int(p)) for row, p in zip(paths, payloads)]

    def __contains__(self, sequence: Sequence[int]) -> bool:
        return bool(self.payloads(self.walk([list(sequence)]))[0] >= 0)

    def get(self, sequence: Sequence[int], default: int | None = None) -> int | None:
        """Payload of a stored sequence, else ``default``."""
        payload = int(self.payloads(self.walk([list(sequence)]))[0])
        return default if payload < 0 else payload

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``<folder>/{tokens,first_child,terminal_nodes,terminal_payloads}.npy`` and ``trie.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(folder / f"{name}.npy", np.asarray(getattr(self, name)))
        meta = {"format_version": _FORMAT_VERSION, "vocab_size": self.vocab_size, **self.info}
        (folder / "trie.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "TokenTrie":
        """Load a saved trie; with ``mmap`` the arrays are memory-mapped (copy-on-write), not read.

        Raises:
            FileNotFoundError: a file is missing.
            ValueError: an unknown format version.
        """
        folder = Path(folder)
        meta_path = folder / "trie.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} does not exist: not a saved TokenTrie")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.pop("format_version", None) != _FORMAT_VERSION:
            raise ValueError(f"{meta_path}: unsupported trie format; expected version {_FORMAT_VERSION}")
        arrays = [np.load(folder / f"{name}.npy", mmap_mode="c" if mmap else None) for name in _ARRAYS]
        return cls(*arrays, meta.pop("vocab_size"), meta)
