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

so the mask for a batch of prefix states is one gather over contiguous slices (vectorised, on any
torch device), ``child(n, t)`` is a binary search, and the memory is 8 bytes per node plus 16
per sequence (int32 ids below 2^31 nodes), against ~200 bytes per node for a dict.

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
        self.tokens, self.first_child = tokens, first_child
        self.terminal_nodes, self.terminal_payloads = terminal_nodes, terminal_payloads
        self.vocab_size = int(vocab_size)
        self.info = dict(info)
        self.max_branching = _max_children(first_child)
        self._device_arrays: dict[str, tuple[Tensor, ...]] = {}

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
    def _arrays(self, device: torch.device) -> tuple[Tensor, ...]:
        """The arrays as tensors on ``device`` (shared with numpy on the CPU; cached)."""
        key = str(device)
        if key not in self._device_arrays:
            self._device_arrays[key] = tuple(torch.from_numpy(np.asarray(getattr(self, name))).to(device)
                                             for name in _ARRAYS)
        return self._device_arrays[key]

    def step(self, states: Tensor, tokens: Tensor) -> Tensor:
        """Child of each state along its token (vectorised binary search); -1 where there is none.

        Args:
            states: long ``[B]`` node ids (-1 stays -1).
            tokens: long ``[B]`` token ids.
        """
        node_tokens, first_child, _, _ = self._arrays(states.device)
        valid = states >= 0
        parent = states.clamp(min=0)
        low, high = first_child[parent].long(), first_child[parent + 1].long()
        end = high.clone()
        widest = int((high - low).max()) if len(states) else 0  # one sync; most nodes have few children
        for _ in range(max(widest, 1).bit_length()):
            active = low < high
            middle = (low + high) // 2
            right = active & (node_tokens[middle.clamp(max=self.num_nodes - 1)] < tokens)
            low = torch.where(right, middle + 1, low)
            high = torch.where(active & ~right, middle, high)
        found = valid & (low < end) & (node_tokens[low.clamp(max=self.num_nodes - 1)] == tokens)
        return torch.where(found, low, torch.full_like(low, -1))

    def walk(self, prefixes: Sequence[Sequence[int]] | Tensor, device: torch.device | str | None = None) -> Tensor:
        """States reached by whole prefixes (rows of a ``[B, L]`` tensor, or a ragged list).

        Returns:
            long ``[B]``: node ids, -1 where a prefix is not in the trie; the root for ``[]``.
        """
        if isinstance(prefixes, Tensor):
            rows = prefixes.long()
            lengths = torch.full((rows.shape[0],), rows.shape[1], device=rows.device)
        else:
            longest = max((len(p) for p in prefixes), default=0)
            padded = np.zeros((len(prefixes), longest), dtype=np.int64)
            for i, prefix in enumerate(prefixes):
                padded[i, :len(prefix)] = prefix
            rows = torch.from_numpy(padded).to(device)
            lengths = torch.tensor([len(p) for p in prefixes], device=rows.device)
        states = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
        for column in range(rows.shape[1]):
            moved = self.step(states, rows[:, column])
            states = torch.where(column < lengths, moved, states)
        return states

    def allowed_next(self, states: Tensor, end_token_id: int | None = None) -> Tensor:
        """Boolean mask of the tokens that may follow each state.

        Args:
            states: long ``[B]`` node ids; -1 (off the trie) gives an all-False row.
            end_token_id: if given, also allowed where the state ends a stored sequence.

        Returns:
            bool ``[B, vocab_size]`` on ``states.device``.
        """
        node_tokens, first_child, _, _ = self._arrays(states.device)
        batch = states.shape[0]
        valid = states >= 0
        parent = states.clamp(min=0)
        low = first_child[parent].long()
        counts = torch.where(valid, first_child[parent + 1].long() - low, torch.zeros_like(low))
        total = int(counts.sum())
        rows = torch.repeat_interleave(torch.arange(batch, device=states.device), counts, output_size=total)
        starts = torch.repeat_interleave(low - (torch.cumsum(counts, 0) - counts), counts, output_size=total)
        columns = node_tokens[starts + torch.arange(total, device=states.device)].long()
        mask = torch.zeros(batch, self.vocab_size, dtype=torch.bool, device=states.device)
        mask[rows, columns] = True
        if end_token_id is not None:
            mask[:, end_token_id] |= self.payloads(states) >= 0
        return mask

    def payloads(self, states: Tensor) -> Tensor:
        """Payload id of the sequence ending at each state; -1 where none ends there."""
        _, _, terminal_nodes, terminal_payloads = self._arrays(states.device)
        index = torch.searchsorted(terminal_nodes, states.to(terminal_nodes.dtype)).clamp(max=len(self) - 1)
        hit = (terminal_nodes[index].long() == states) & (states >= 0)
        return torch.where(hit, terminal_payloads[index], torch.full_like(states, -1))

    def num_children(self, states: Tensor) -> Tensor:
        """Number of allowed continuation tokens per state (0 off the trie)."""
        _, first_child, _, _ = self._arrays(states.device)
        parent = states.clamp(min=0)
        counts = first_child[parent + 1].long() - first_child[parent].long()
        return torch.where(states >= 0, counts, torch.zeros_like(counts))

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
        return np.where(self.terminal_nodes[index] == nodes, self.terminal_payloads[index], -1)

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
