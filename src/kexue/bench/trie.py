"""``kexue bench trie``: the flat-array :class:`~kexue.retrieval.TokenTrie` against GENRE-style tries.

Synthetic KB-like sequences over the bert-base-chinese vocabulary size (21128): ``S [SEP] P [SEP] M``
with subjects shared by several entries, predicates from a small pool and meanings per subject,
8-30 tokens long. Cases:

1. build time and build peak memory (growth of the resident set while building, temporaries
   included; each side in a fresh interpreter, so that neither reuses memory the other freed)
   against GENRE's nested-dict ``Trie`` (a dict per node, keyed by token id) and, when installed
   (``bench`` extra), a ``marisa_trie.Trie`` over the sequences mapped to characters (GENRE's
   ``MarisaTrie``). Goal: our build peak at most 1/10 of the dict trie's (``memory_ratio`` <= 0.1);
   the size of our finished arrays is ``trie_mib`` in the facts.
2. one decoding step for a batch of 64 prefixes (random lengths, from stored sequences): our
   ``step`` + batched ``allowed_next`` from the previous states, against the per-prefix lookups
   from the root that a ``prefix_allowed_tokens_fn`` callback does, plus filling the same
   ``[64, V]`` mask.
3. greedy decoding of a random kexue-small-zh-sized UniLM (L4/H256) with and without the trie
   constraint. Goal: constrained at most 1.2x the time.
4. full mode only: 10^7 entries built alone. Goal: under 3 minutes within 2 GB.

Sizes: ``--quick`` 10^5 entries; the default 10^6 (about 3 minutes on 2 cores, most of it building
the dict and marisa anchors); 10^7 only when ``KEXUE_BENCH_TRIE_FULL=1`` is set, since building it
takes minutes and gigabytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from kexue.bench.harness import Comparison, Timing, compare, peak_memory_mib, register_benchmark
from kexue.retrieval import TokenTrie, TrieBuilder, trie_beam_search

__all__ = ["synthetic_kb_sequences", "nested_dict_trie", "run"]

VOCAB = 21128
SEP = 102
BATCH = 64
MEMORY_GOAL = 10.0  # dict trie's build peak / ours
DECODE_GOAL = 1.2  # constrained / unconstrained greedy time


def _pieces(rng: np.random.Generator, count: int, low: int, high: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` random token strings with lengths in [low, high): (flat tokens, starts, lengths)."""
    lengths = rng.integers(low, high, count)
    starts = np.cumsum(lengths) - lengths
    return rng.integers(1000, VOCAB, int(lengths.sum())).astype(np.int32), starts, lengths


def synthetic_kb_sequences(count: int, seed: int = 0, chunk: int = 10**6) -> tuple[np.ndarray, np.ndarray]:
    """``count`` KB-like sequences ``S [SEP] P [SEP] M x`` as (flat int32 tokens, int64 lengths).

    About 8 entries per subject (name of 2-8 tokens, one meaning of 1-9 tokens), predicates from a
    pool of 500 (2-6 tokens), a random tail of 0-11 tokens; cut to 30 tokens, padded to 8 with the
    token 999. Vectorised in chunks of entries; a few sequences may repeat (build with
    ``duplicates="first"``).
    """
    rng = np.random.default_rng(seed)
    subjects = max(count // 8, 1)
    names, name_starts, name_lengths = _pieces(rng, subjects, 2, 9)
    meanings, meaning_starts, meaning_lengths = _pieces(rng, subjects, 1, 10)
    predicates, predicate_starts, predicate_lengths = _pieces(rng, 500, 2, 7)
    token_chunks, length_chunks = [], []
    for first in range(0, count, chunk):
        size = min(chunk, count - first)
        subject = np.sort(rng.integers(0, subjects, size))
        predicate = rng.integers(0, 500, size)
        ends = np.cumsum(np.stack([name_lengths[subject], np.ones(size, np.int64), predicate_lengths[predicate],
                                   np.ones(size, np.int64), meaning_lengths[subject], rng.integers(0, 12, size)]), axis=0)
        lengths = np.clip(ends[-1], 8, 30)
        entry = np.repeat(np.arange(size), lengths)
        j = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        b = ends[:, entry]
        tail = rng.integers(1000, VOCAB, len(j)).astype(np.int32)
        pieces = [names[np.minimum(name_starts[subject][entry] + j, len(names) - 1)], np.int32(SEP),
                  predicates[np.minimum(predicate_starts[predicate][entry] + j - b[0] - 1, len(predicates) - 1)],
                  np.int32(SEP), meanings[np.minimum(meaning_starts[subject][entry] + j - b[2] - 1, len(meanings) - 1)],
                  tail]
        tokens = np.select([j < b[k] for k in range(6)], pieces, default=np.int32(999)).astype(np.int32)
        token_chunks.append(tokens)
        length_chunks.append(lengths.astype(np.int64))
    return np.concatenate(token_chunks), np.concatenate(length_chunks)


def _as_lists(tokens: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    return [row.tolist() for row in np.split(tokens, np.cumsum(lengths)[:-1])]


def nested_dict_trie(sequences: Iterable[Sequence[int]]) -> dict:
    """GENRE's dict trie: nested ``{token: {...}}`` with a leaf ``{}`` (iterative insertion)."""
    root: dict = {}
    for sequence in sequences:
        node = root
        for token in sequence:
            node = node.setdefault(token, {})
    return root


def _dict_allowed(trie: dict, prefix: Sequence[int]) -> list[int]:
    node = trie
    for token in prefix:
        node = node.get(token)
        if node is None:
            return []
    return list(node)


def _marisa(sequences: list[list[int]]):
    try:
        import marisa_trie
    except ImportError:
        return None
    return marisa_trie.Trie("".join(chr(t + 0x10000) for t in s) for s in sequences)  # past the surrogates


def _marisa_allowed(trie, prefix: Sequence[int]) -> list[int]:
    key = "".join(chr(t + 0x10000) for t in prefix)
    return sorted({ord(k[len(key)]) - 0x10000 for k in trie.keys(key) if len(k) > len(key)})


def _prefixes(sequences: list[list[int]], seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(sequences), BATCH, replace=False)
    return [sequences[i][:rng.integers(1, len(sequences[i]))] for i in picked]


def _mask_from_lists(allowed: list[list[int]]) -> torch.Tensor:
    mask = torch.zeros(len(allowed), VOCAB, dtype=torch.bool)
    for row, tokens in enumerate(allowed):
        mask[row, tokens] = True
    return mask


def _build(tokens: np.ndarray, lengths: np.ndarray) -> TokenTrie:
    builder = TrieBuilder(vocab_size=VOCAB, duplicates="first")
    builder.add_flat(tokens, lengths)
    return builder.build()


def _timed_peak(fn) -> Timing:
    """One call: its seconds and the growth of the resident set while it ran."""
    started = time.perf_counter()
    peak = peak_memory_mib(fn)
    seconds = time.perf_counter() - started
    return Timing(seconds, seconds, seconds, 1, peak)


def build_peak(side: str, count: int) -> dict[str, float | None]:
    """Build one structure over ``count`` synthetic entries; its seconds and resident growth (MiB).

    The input (token arrays; for the anchors also the Python lists they are built from) exists
    before the measurement starts, so only the structure and its build temporaries count.
    """
    if side not in ("ours", "dict", "marisa"):
        raise ValueError(f"`side` must be 'ours', 'dict' or 'marisa', got {side!r}")
    tokens, lengths = synthetic_kb_sequences(count)
    sequences = _as_lists(tokens, lengths) if side != "ours" else None

    def build():
        if side == "ours":
            return _build(tokens, lengths)
        return nested_dict_trie(sequences) if side == "dict" else _marisa(sequences)

    started = time.perf_counter()
    peak = peak_memory_mib(build)
    return {"seconds": time.perf_counter() - started, "peak_mib": peak}


def _build_in_subprocess(side: str, count: int) -> Timing:
    """:func:`build_peak` in a fresh interpreter, so neither side reuses memory the other freed."""
    code = f"import json; from kexue.bench.trie import build_peak; print(json.dumps(build_peak({side!r}, {count})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return Timing(measured["seconds"], measured["seconds"], measured["seconds"], 1, measured["peak_mib"])


def _build_case(count: int, anchor_side: str, anchor_name: str, goal: bool, **facts) -> Comparison:
    """Builds are measured once each (time and memory in the same call): they take seconds to minutes."""
    comparison = Comparison(f"build, {count:.0e} entries (build peak, fresh process per side)", anchor_name,
                            _build_in_subprocess("ours", count), _build_in_subprocess(anchor_side, count),
                            goal=f"build peak <= 1/{MEMORY_GOAL:g} of the dict trie's" if goal else None, extra=facts)
    if goal:
        ratio = comparison.memory_ratio
        comparison = Comparison(**{**comparison.__dict__, "goal_met": ratio is not None and ratio <= 1 / MEMORY_GOAL})
    return comparison


def _structure_cases(count: int, repeats: int) -> list[Comparison]:
    tokens, lengths = synthetic_kb_sequences(count)
    sequences = _as_lists(tokens, lengths)
    trie = _build(tokens, lengths)
    facts = dict(entries=len(sequences), nodes=trie.num_nodes, trie_mib=round(trie.nbytes() / 2**20, 1),
                 bytes_per_sequence=round(trie.stats()["bytes_per_sequence"], 1))
    cases = [_build_case(len(sequences), "dict", "GENRE nested-dict Trie", goal=True, **facts)]
    dict_trie = nested_dict_trie(sequences)
    prefixes = _prefixes(sequences, 1)
    states = trie.walk([p[:-1] for p in prefixes])
    last = torch.tensor([p[-1] for p in prefixes])

    def ours() -> torch.Tensor:  # one decoding step: advance every state by its token, then the mask
        return trie.allowed_next(trie.step(states, last))

    cases.append(compare(f"decoding step (step + allowed_next), batch {BATCH}, {len(sequences):.0e} entries", ours,
                         "GENRE dict Trie.get per prefix + mask",
                         lambda: _mask_from_lists([_dict_allowed(dict_trie, p) for p in prefixes]), repeats=repeats))
    del dict_trie
    marisa = _marisa(sequences)
    if marisa is not None:
        cases.append(_build_case(len(sequences), "marisa", "marisa-trie (GENRE MarisaTrie)", goal=False, **facts))
        cases.append(compare(f"decoding step, batch {BATCH}, {len(sequences):.0e} entries", ours,
                             "marisa-trie keys(prefix) per prefix + mask",
                             lambda: _mask_from_lists([_marisa_allowed(marisa, p) for p in prefixes]),
                             repeats=max(repeats // 5, 1)))
    return cases


def _decode_case(count: int, repeats: int) -> Comparison:
    """Greedy search over a trie whose sequences all have 30 tokens, so both runs take 31 steps."""
    from kexue.models import Transformer, TransformerConfig

    tokens, lengths = synthetic_kb_sequences(count, seed=2)
    rows = [np.pad(r, (0, 30 - len(r)), constant_values=999) for r in np.split(tokens, np.cumsum(lengths)[:-1])]
    trie = TokenTrie.build(list(dict.fromkeys(tuple(r.tolist()) for r in rows)), vocab_size=VOCAB)
    config = TransformerConfig(vocab_size=VOCAB, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
                               position="rope")
    model = Transformer(config).eval()
    # no [SEP] in the sources' last position is needed: the random model decodes whatever it likes
    sources = [[101, *np.random.default_rng(i).integers(1000, VOCAB, 20).tolist(), SEP] for i in range(16)]
    end = 0  # [PAD]: never chosen by the unconstrained run, so it runs max_length steps too
    return compare(f"greedy decoding, 16 questions x 31 steps, L4/H256, {len(trie):.0e} entries",
                   lambda: trie_beam_search(model, sources, trie, end, 1),
                   "unconstrained greedy (same loop, no trie)",
                   lambda: trie_beam_search(model, sources, None, end, 1, max_length=31), repeats=repeats,
                   goal=f"constrained <= {DECODE_GOAL}x unconstrained", goal_met=lambda c: 1 / c.speedup <= DECODE_GOAL)


def _ten_million_case() -> Comparison:
    """10^7 entries built alone; the "anchor" is the goal's budget (180 s, 2048 MiB)."""
    tokens, lengths = synthetic_kb_sequences(10**7, seed=3)
    ours = _timed_peak(lambda: _build(tokens, lengths))
    return Comparison("build, 1e+07 entries", "goal budget: 180 s, 2048 MiB", ours, Timing(180.0, 180.0, 180.0, 1, 2048.0),
                      goal="built in < 180 s within 2 GB", goal_met=ours.median < 180 and (ours.peak_mib or 0) < 2048)


@register_benchmark("trie", anchor="GENRE nested-dict Trie, marisa-trie (GENRE MarisaTrie)",
                    summary="flat-array TokenTrie: build, memory, batched allowed_next, constrained greedy")
def run(quick: bool) -> list[Comparison]:
    cases = _structure_cases(10**5 if quick else 10**6, repeats=10 if quick else 20)
    cases.append(_decode_case(10**4, repeats=2 if quick else 3))
    if not quick and os.environ.get("KEXUE_BENCH_TRIE_FULL") == "1":
        cases.append(_ten_million_case())
    return cases
