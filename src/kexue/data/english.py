"""English sets: SST-2 (binary sentiment) and the STS Benchmark.

- ``en/sst2/{train,dev}.tsv``: TSV with a header (``label<TAB>sentence``, dev: ``label<TAB>content``),
  label first, 0 = negative, 1 = positive.
- ``en/stsb/sts-{train,dev}.tsv``: the original stsbenchmark TSV, no header,
  ``genre, file, year, id, score, sentence1, sentence2``. Some lines carry extra trailing source
  fields; only the first 7 are read, with quotes taken literally (``csv.QUOTE_NONE``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from kexue.data.readers import RecordError, read_tsv, require_label
from kexue.data.records import LabeledText, StsbExample
from kexue.data.root import data_path

__all__ = ["SST2_SPLITS", "STSB_EN_SPLITS", "read_sst2", "read_stsb_en"]

SST2_SPLITS = ("train", "dev")
STSB_EN_SPLITS = ("train", "dev")


def _check_split(dataset: str, split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise ValueError(f"`split` of {dataset} must be one of {splits}, got {split!r}")


def _sst2(fields: Sequence[str]) -> LabeledText:
    label, text = fields
    return LabeledText(text=text, label=int(require_label(label, ("0", "1"))))


def read_sst2(split: str, root: str | Path | None = None) -> Iterator[LabeledText]:
    """Lazily read SST-2 (``"train"`` or ``"dev"``) as :class:`LabeledText` with an ``int`` label."""
    _check_split("SST-2", split, SST2_SPLITS)
    return read_tsv(data_path(f"en/sst2/{split}.tsv", root), _sst2, fields=2, header="label")


def _stsb(fields: Sequence[str]) -> StsbExample:
    genre, file, year, sentence_id, score_text, sentence1, sentence2 = fields
    try:
        score = float(score_text)
    except ValueError:
        raise RecordError(f"bad score {score_text!r}: expected a number in [0, 5]") from None
    if not (math.isfinite(score) and 0.0 <= score <= 5.0):
        raise RecordError(f"bad score {score_text!r}: expected a number in [0, 5]")
    return StsbExample(genre=genre, file=file, year=year, id=sentence_id, score=score,
                       sentence1=sentence1, sentence2=sentence2)


def read_stsb_en(split: str, root: str | Path | None = None) -> Iterator[StsbExample]:
    """Lazily read the English STS Benchmark (``"train"`` or ``"dev"``)."""
    _check_split("STS-B (English)", split, STSB_EN_SPLITS)
    return read_tsv(data_path(f"en/stsb/sts-{split}.tsv", root), _stsb, fields=7, extra_fields=True)
