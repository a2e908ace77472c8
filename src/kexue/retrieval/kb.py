"""A knowledge base of (subject, meaning, predicate, object) facts in SQLite.

Post 8802 (kexue.fm/archives/8802, section KgCLUE) treats each KgCLUE fact as a quadruple
(S, M, P, O): the meaning M disambiguates homonymous subjects and is written in full-width
parentheses after the name (``牛郎织女（中国著名民间故事）``). Question answering decodes
(S, P, M) and looks the object up::

    O = objects(S, P, M)[0]      (the first stored object, as the reference evaluation does)

Facts live in one table with an index on (subject, predicate, meaning); the trie's payload is the
smallest row id of each distinct (S, P, M) key, so a decoded path maps back to exact strings.
Facts come from KgCLUE QA files, from raw triple files (``S ||| P ||| O`` per line, the format of
the official 20M-triple knowledge file; tab-separated lines are accepted too) or from
:meth:`KnowledgeBase.add`; importing more never needs code changes.

:meth:`KnowledgeBase.add_distractors` builds the pseudo-KB of the reproduction: for each subject,
K (predicate, object) pairs of other subjects of the same *kind* (the last two characters of the
meaning, e.g. 教授, 歌曲, 图书; a global pool for subjects without one), seeded per subject.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kexue.data.kgclue import KGCLUE_SPLITS, parse_kgclue, read_kgclue, split_subject
from kexue.data.readers import DataFormatError, iter_lines, read_jsonl

__all__ = ["Fact", "KnowledgeBase", "subject_kind"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    meaning TEXT NOT NULL DEFAULT '',
    predicate TEXT NOT NULL,
    object TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (subject, meaning, predicate, object)
);
CREATE INDEX IF NOT EXISTS facts_spm ON facts (subject, predicate, meaning);
"""
_TRIPLE_SEPARATOR = " ||| "


@dataclass(frozen=True)
class Fact:
    """One fact; ``meaning`` is ``""`` when the subject has none."""

    subject: str
    predicate: str
    object: str
    meaning: str = ""

    @property
    def full_subject(self) -> str:
        """The subject as KgCLUE writes it: ``name（meaning）``."""
        return f"{self.subject}（{self.meaning}）" if self.meaning else self.subject

    @classmethod
    def from_triple(cls, subject: str, predicate: str, object: str) -> "Fact":
        name, meaning = split_subject(subject)
        return cls(name, predicate, object, meaning or "")


def subject_kind(meaning: str) -> str | None:
    """The kind of a subject: the last two characters of its meaning, nested parentheses removed.

    Example:
        >>> subject_kind("广东工业大学教授"), subject_kind("韩国女演员（2000年出生）"), subject_kind("")
        ('教授', '演员', None)
    """
    while meaning.endswith("）") and "（" in meaning:
        meaning = meaning[:meaning.rfind("（")]
    meaning = meaning.strip()
    return meaning[-2:] if len(meaning) >= 2 else None


def parse_triple(line: str) -> tuple[str, str, str]:
    """Split ``S ||| P ||| O`` (or ``S<TAB>P<TAB>O``); raises ValueError on any other shape."""
    parts = line.split(_TRIPLE_SEPARATOR) if _TRIPLE_SEPARATOR in line else line.split("\t")
    if len(parts) != 3 or not all(part.strip() for part in parts):
        raise ValueError(f"expected 'subject ||| predicate ||| object' with 3 non-empty fields, got {len(parts)} "
                         f"field(s) in {line[:80]!r}")
    return parts[0].strip(), parts[1].strip(), parts[2].strip()


class KnowledgeBase:
    """SQLite-backed facts; a context manager. ``path=":memory:"`` keeps it in memory.

    Example:
        >>> kb = KnowledgeBase(":memory:")
        >>> kb.add(Fact.from_triple("刘晓华（广东工业大学教授）", "毕业院校", "华南理工大学"))
        True
        >>> kb.objects("刘晓华", "毕业院校", "广东工业大学教授")
        ['华南理工大学']
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path)
        self.connection.executescript(_SCHEMA)

    def __enter__(self) -> "KnowledgeBase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def __len__(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM facts").fetchone()[0]

    # ------------------------------------------------------------------ writing
    def add(self, fact: Fact, source: str = "user") -> bool:
        """Insert one fact; False when it was already stored."""
        return self.add_many([fact], source) == 1

    def add_many(self, facts: Iterable[Fact], source: str) -> int:
        """Insert facts in one transaction, skipping exact duplicates; returns how many were new."""
        before = self.connection.total_changes
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO facts (subject, meaning, predicate, object, source) VALUES (?, ?, ?, ?, ?)",
                ((f.subject, f.meaning, f.predicate, f.object, source) for f in facts))
        return self.connection.total_changes - before

    def import_kgclue(self, split_or_path: str | Path, root: str | Path | None = None) -> int:
        """Import the answer triples of a KgCLUE QA file (``"train"``, ``"dev"`` or a JSONL path)."""
        if str(split_or_path) in KGCLUE_SPLITS and not Path(split_or_path).is_file():
            examples = read_kgclue(str(split_or_path), root)
        else:
            examples = read_jsonl(split_or_path, parse_kgclue)
        return self.add_many((Fact(e.subject_name, e.predicate, e.object, e.meaning or "") for e in examples),
                             source="kgclue")

    def import_triples(self, path: str | Path) -> int:
        """Import a raw triple file, one ``S ||| P ||| O`` per line.

        Raises:
            DataFormatError: a malformed line, as ``<file>:<line>: <what is wrong>``.
        """
        def facts() -> Iterator[Fact]:
            for line_number, line in iter_lines(path):
                try:
                    yield Fact.from_triple(*parse_triple(line))
                except ValueError as exc:
                    raise DataFormatError(path, line_number, str(exc)) from None

        return self.add_many(facts(), source="triples")

    def add_distractors(self, per_subject: int, seed: int = 0) -> int:
        """Add ``per_subject`` (predicate, object) pairs of same-kind subjects to every subject.

        Pairs are drawn from the facts not added as distractors, never repeating a predicate the
        subject already has; the random generator of each subject is seeded with ``(seed, subject,
        meaning)``, so a subject's distractors do not depend on the order of the other subjects.
        """
        if per_subject < 0:
            raise ValueError(f"`per_subject` must be >= 0, got {per_subject}")
        rows = self.connection.execute(
            "SELECT subject, meaning, predicate, object FROM facts WHERE source != 'distractor' "
            "ORDER BY id").fetchall()
        pools: dict[str | None, list[tuple[str, str]]] = defaultdict(list)
        predicates: dict[tuple[str, str], set[str]] = defaultdict(set)
        for subject, meaning, predicate, object_ in rows:
            pools[subject_kind(meaning)].append((predicate, object_))
            predicates[subject, meaning].add(predicate)
        everything = pools[None] + [pair for kind, pool in pools.items() if kind is not None for pair in pool]
        new = []
        for (subject, meaning), own in sorted(predicates.items()):
            rng = random.Random(f"{seed}\t{subject}\t{meaning}")
            taken = set(own)
            for pool in (pools.get(subject_kind(meaning)) or [], everything):
                for predicate, object_ in rng.sample(pool, min(len(pool), 4 * per_subject + 8)):
                    if len(taken) - len(own) >= per_subject:
                        break
                    if predicate not in taken:
                        taken.add(predicate)
                        new.append(Fact(subject, predicate, object_, meaning))
        return self.add_many(new, source="distractor")

    # ------------------------------------------------------------------ reading
    def objects(self, subject: str, predicate: str, meaning: str = "") -> list[str]:
        """Objects of (S, P, M) in insertion order (uses the index)."""
        rows = self.connection.execute(
            "SELECT object FROM facts WHERE subject = ? AND predicate = ? AND meaning = ? ORDER BY id",
            (subject, predicate, meaning or ""))
        return [row[0] for row in rows]

    def fact(self, row_id: int) -> Fact:
        """The fact stored at ``row_id``; KeyError when there is none."""
        row = self.connection.execute("SELECT subject, predicate, object, meaning FROM facts WHERE id = ?",
                                      (row_id,)).fetchone()
        if row is None:
            raise KeyError(f"no fact with id {row_id} in {self.path}")
        return Fact(*row)

    def keys(self) -> Iterator[tuple[int, str, str, str]]:
        """``(row id, subject, predicate, meaning)`` of every distinct (S, P, M), smallest row id each."""
        yield from self.connection.execute(
            "SELECT MIN(id), subject, predicate, meaning FROM facts GROUP BY subject, predicate, meaning "
            "ORDER BY MIN(id)")

    def counts(self) -> dict[str, int]:
        """Facts per source, distinct (S, P, M) keys and distinct subjects."""
        result = dict(self.connection.execute("SELECT source, COUNT(*) FROM facts GROUP BY source").fetchall())
        result["keys"] = self.connection.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM facts GROUP BY subject, predicate, meaning)").fetchone()[0]
        result["subjects"] = self.connection.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM facts GROUP BY subject, meaning)").fetchone()[0]
        return result
