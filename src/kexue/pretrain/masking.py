"""Dynamic MLM masking (BERT, Devlin et al. 2019, §3.1 and Appendix A.1).

For each sequence, ``n = max(1, round(p · #candidates))`` candidate tokens are chosen (candidates
exclude [CLS], [SEP] and [PAD]); of the chosen tokens 80% become [MASK], 10% a random vocabulary
token and 10% stay unchanged, and all of them are predicted. With whole-word masking (BERT-wwm,
Cui et al. 2019) whole words are chosen in random order until ``n`` tokens are covered, skipping a
word that would overshoot (as in BERT's ``create_pretraining_data.py``); the 80/10/10 rule is then
applied per token. The draw comes from the ``rng`` passed in, so masks are re-drawn every time a
sequence is seen and are reproducible for a fixed seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE_INDEX", "mask_tokens"]

IGNORE_INDEX = -100  # label of positions that are not predicted (torch cross_entropy's default)


def _choose_positions(candidates: np.ndarray, word_ids: np.ndarray | None, n: int,
                      rng: np.random.Generator) -> np.ndarray:
    if word_ids is None:
        return rng.choice(candidates, size=n, replace=False)
    words = word_ids[candidates]
    unique_words = rng.permutation(np.unique(words))
    chosen: list[np.ndarray] = []
    covered = 0
    for word in unique_words:
        members = candidates[words == word]
        if covered + len(members) > n:
            continue
        chosen.append(members)
        covered += len(members)
        if covered >= n:
            break
    return np.concatenate(chosen) if chosen else rng.choice(candidates, size=1)


def mask_tokens(input_ids: np.ndarray, candidates: np.ndarray, rng: np.random.Generator, mask_id: int,
                random_ids: np.ndarray, mlm_prob: float = 0.15,
                word_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mask a batch of sequences.

    Args:
        input_ids: int ``[B, L]``.
        candidates: bool ``[B, L]``, True where a token may be masked (not special, not padding).
        rng: the generator to draw from.
        mask_id: id of ``[MASK]``.
        random_ids: ids a token may be replaced with (the vocabulary without special tokens).
        mlm_prob: fraction of candidates to predict.
        word_ids: optional int ``[B, L]`` word index per token for whole-word masking.

    Returns:
        ``(masked_ids [B, L], labels [B, L])`` with ``labels = IGNORE_INDEX`` where nothing is predicted.

    Example:
        >>> ids = np.array([[101, 5, 6, 7, 8, 9, 10, 11, 12, 13, 102]])
        >>> masked, labels = mask_tokens(ids, (ids != 101) & (ids != 102), np.random.default_rng(0),
        ...                              mask_id=103, random_ids=np.arange(200, 300))
        >>> int((labels != IGNORE_INDEX).sum())  # round(0.15 * 9) = 1
        1
    """
    if not 0.0 < mlm_prob < 1.0:
        raise ValueError(f"`mlm_prob` must be in (0, 1), got {mlm_prob}")
    masked = input_ids.copy()
    labels = np.full_like(input_ids, IGNORE_INDEX)
    for row in range(input_ids.shape[0]):
        row_candidates = np.flatnonzero(candidates[row])
        if len(row_candidates) == 0:
            continue
        n = max(1, int(round(mlm_prob * len(row_candidates))))
        positions = _choose_positions(row_candidates, None if word_ids is None else word_ids[row], n, rng)
        labels[row, positions] = input_ids[row, positions]
        action = rng.random(len(positions))
        masked[row, positions[action < 0.8]] = mask_id
        replaced = positions[(action >= 0.8) & (action < 0.9)]
        masked[row, replaced] = rng.choice(random_ids, size=len(replaced))
    return masked, labels
