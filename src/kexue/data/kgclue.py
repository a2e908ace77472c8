"""KgCLUE one-hop KBQA: questions with their answer triple ``S ||| P ||| O``.

Post 8802 ("Seq2Seq + prefix tree", kexue.fm/archives/8802) treats each fact as a quadruple
(S, M, P, O): the knowledge base writes a subject's *meaning* (its disambiguation) in full-width
parentheses after the name, ``牛郎织女（中国著名民间故事）``, and a question usually mentions only
the name. :func:`split_subject` separates the two; the Seq2Seq target is then ``S [SEP] P [SEP] M``.

Files: ``kgclue/train.json`` (18,000) and ``kgclue/dev.json`` (2,000), JSON Lines with keys
``id``, ``question``, ``answer``. Fields are kept byte-exact (some objects start with U+00A0),
so :attr:`KgclueExample.answer` rebuilds the original string.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kexue.data.readers import RecordError, read_jsonl, require
from kexue.data.records import KgclueExample
from kexue.data.root import data_path

__all__ = ["KGCLUE_SPLITS", "KGCLUE_QUESTION_SPLITS", "split_subject", "parse_kgclue", "read_kgclue",
           "read_kgclue_questions"]

KGCLUE_SPLITS = ("train", "dev")
# Split names a user may hold locally: the public test set is not shipped here, but its file has the same format.
KGCLUE_QUESTION_SPLITS = (*KGCLUE_SPLITS, "test_public")
ANSWER_SEPARATOR = " ||| "
_PARENTHESIS_DEPTH = {"）": 1, "（": -1}


def split_subject(subject: str) -> tuple[str, str | None]:
    """Split a subject into its name and its meaning in trailing full-width parentheses.

    The meaning is the balanced ``（…）`` group that ends the subject, so nested parentheses stay
    inside it, and parentheses in the middle of a name (``完美（中国）有限公司``) are not a meaning.

    Args:
        subject: the S of a triple.

    Returns:
        ``(name, meaning)``; meaning is None when the subject does not end with a balanced group
        that follows a non-empty name.

    Example:
        >>> split_subject("刘晓华（广东工业大学教授）")
        ('刘晓华', '广东工业大学教授')
        >>> split_subject("郑多彬（韩国女演员（2000年出生））")
        ('郑多彬', '韩国女演员（2000年出生）')
        >>> split_subject("完美（中国）有限公司")
        ('完美（中国）有限公司', None)
    """
    if not subject.endswith("）"):
        return subject, None
    opening = subject.rfind("（")
    if opening > 0 and "）" not in subject[opening + 1 : -1]:  # the common, unnested case
        return subject[:opening], subject[opening + 1 : -1]
    depth = 0
    for position in range(len(subject) - 1, -1, -1):
        depth += _PARENTHESIS_DEPTH.get(subject[position], 0)
        if depth == 0:
            if position == 0:
                return subject, None
            return subject[:position], subject[position + 1 : -1]
    return subject, None  # unbalanced: no recognisable meaning


def parse_kgclue(obj: Mapping[str, Any]) -> KgclueExample:
    """Build a :class:`KgclueExample` from one parsed line; raises :class:`RecordError`."""
    answer = require(obj, "answer")
    parts = answer.split(ANSWER_SEPARATOR)
    if len(parts) != 3:
        raise RecordError(f"answer must have 3 fields separated by {ANSWER_SEPARATOR!r}, got {len(parts)}")
    subject, predicate, object_ = parts
    subject_name, meaning = split_subject(subject)
    return KgclueExample(
        id=require(obj, "id", int),
        question=require(obj, "question"),
        subject=subject,
        subject_name=subject_name,
        meaning=meaning,
        predicate=predicate,
        object=object_,
    )


def read_kgclue(split: str, root: str | Path | None = None) -> Iterator[KgclueExample]:
    """Lazily read a KgCLUE split.

    Args:
        split: ``"train"`` or ``"dev"`` (the test splits are withheld).
        root: the data root; None resolves it (``KEXUE_DATA`` or ``../shared/data``).

    Raises:
        ValueError: unknown split.
        DataNotFoundError: the file does not exist.
        DataFormatError: a malformed line (while iterating).
    """
    if split not in KGCLUE_SPLITS:
        raise ValueError(f"`split` must be one of {KGCLUE_SPLITS}, got {split!r}")
    return read_jsonl(data_path(f"kgclue/{split}.json", root), parse_kgclue)


def read_kgclue_questions(split_or_path: str | Path, root: str | Path | None = None) -> Iterator[KgclueExample]:
    """KgCLUE questions from a split name (``train``, ``dev``, ``test_public``) or a JSONL file.

    An existing file wins over a split of the same name; a split is read from
    ``<data root>/kgclue/<split>.json``.

    Raises:
        DataNotFoundError: the split's file is not in the data root, or the path does not exist.
        ValueError: neither a file nor a split name.
    """
    path = Path(split_or_path)
    if path.is_file():
        return read_jsonl(path, parse_kgclue)
    name = str(split_or_path)
    if name in KGCLUE_QUESTION_SPLITS:
        return read_jsonl(data_path(f"kgclue/{name}.json", root), parse_kgclue)
    if path.suffix or len(path.parts) > 1:
        return read_jsonl(path, parse_kgclue)  # raises DataNotFoundError naming the file
    raise ValueError(f"{name!r} is neither a file nor a KgCLUE split ({', '.join(KGCLUE_QUESTION_SPLITS)})")
