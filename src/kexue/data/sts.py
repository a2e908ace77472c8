"""Chinese semantic-similarity sets (the "senteval_cn" layout of CoSENT / BERT-whitening).

Files ``sts_zh/<name>/<name>.<split>.data``: TSV ``sentence1<TAB>sentence2<TAB>label``, no header.
STS-B (translated) has ``train`` and ``valid`` with integer scores 0-5; ATEC, BQ, LCQMC and PAWSX
have only ``valid`` here, with binary labels (1 = paraphrase). The usual metric is the Spearman
correlation between the cosine similarity of the two sentence embeddings and the label.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from kexue.data.clue import pair_builder
from kexue.data.readers import read_tsv
from kexue.data.records import SentencePair
from kexue.data.root import data_path

__all__ = ["STS_ZH_SPLITS", "read_sts_zh"]

STS_ZH_SPLITS = {
    "STS-B": ("train", "valid"),
    "ATEC": ("valid",),
    "BQ": ("valid",),
    "LCQMC": ("valid",),
    "PAWSX": ("valid",),
}
_SCORES = {"STS-B": tuple(str(score) for score in range(6))}


def read_sts_zh(name: str, split: str = "valid", root: str | Path | None = None) -> Iterator[SentencePair]:
    """Lazily read a Chinese STS set as :class:`SentencePair` with an ``int`` label.

    Args:
        name: ``"STS-B"``, ``"ATEC"``, ``"BQ"``, ``"LCQMC"`` or ``"PAWSX"``.
        split: ``"valid"``, or ``"train"`` for STS-B (test splits are withheld).
        root: the data root; None resolves it.

    Raises:
        ValueError: unknown name or split.
        DataNotFoundError: the file does not exist.
        DataFormatError: a malformed line or a label outside 0-5 (STS-B) / 0-1 (others).
    """
    if name not in STS_ZH_SPLITS:
        raise ValueError(f"`name` must be one of {tuple(STS_ZH_SPLITS)}, got {name!r}")
    if split not in STS_ZH_SPLITS[name]:
        raise ValueError(f"`split` of {name} must be one of {STS_ZH_SPLITS[name]}, got {split!r}")
    build = pair_builder(_SCORES.get(name, ("0", "1")), int)
    return read_tsv(data_path(f"sts_zh/{name}/{name}.{split}.data", root), build, fields=3)
