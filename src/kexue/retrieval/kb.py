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

**Identity.** A kexue KB carries a ``kexue_kb`` table with its format and a content hash, a chain
over every fact in row-id order (``h_i = sha256(h_{i-1} | id, S, M, P, O)``), kept up to date by
every write through this class. Caches derived from a KB (the trie) are keyed by this hash, so a
KB rebuilt with another seed never reuses a stale trie. Opening with ``read_only=True`` (what
``kexue kbqa ask`` / ``eval`` do) never writes, and a file that is not a kexue KB is refused in
either mode instead of having tables added to it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kexue.data.kgclue import read_kgclue_questions, split_subject
from kexue.data.readers import DataFormatError, iter_lines

__all__ = ["Fact", "KnowledgeBase", "subject_kind"]

# The KgCLUE repository's question files (datasets/<split>.json); test_public has answers, test does not.

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
CREATE TABLE IF NOT EXISTS kexue_kb (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FACT_COLUMNS = ("id", "subject", "meaning", "predicate", "object", "source")
_FORMAT = "kexue-kb/1"
_EMPTY_HASH = hashlib.sha256(b"kexue-kb").hexdigest()
logger = logging.getLogger(__name__)
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

    Args:
        path: the SQLite file; created (with the schema) when missing, unless ``read_only``.
        read_only: open without ever writing (answering questions); writes raise ValueError.

    Raises:
        FileNotFoundError: ``read_only`` and the file does not exist.
        ValueError: the file is not a kexue KB (not SQLite, or SQLite without the ``facts`` table).

    Example:
        >>> kb = KnowledgeBase(":memory:")
        >>> kb.add(Fact.from_triple("刘晓华（广东工业大学教授）", "毕业院校", "华南理工大学"))
        True
        >>> kb.objects("刘晓华", "毕业院校", "广东工业大学教授")
        ['华南理工大学']
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path, self.read_only = str(path), read_only
        if read_only:
            if not Path(self.path).is_file():
                raise FileNotFoundError(f"knowledge base {self.path} does not exist; create it with "
                                        "`kexue kbqa build-kb`")
            self.connection = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True)
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(self.path)
        try:
            self._check_format()
        except BaseException:
            self.connection.close()
            raise

    def _check_format(self) -> None:
        """Refuse anything but a kexue KB; a new (empty) file gets the schema when writable."""
        try:
            tables = {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path} is not a kexue knowledge base ({exc}); create one with "
                             "`kexue kbqa build-kb`") from None
        if not tables and not self.read_only:
            self.connection.executescript(_SCHEMA)
            self._set_meta(format=_FORMAT)
            return
        columns = tuple(row[1] for row in self.connection.execute("PRAGMA table_info(facts)"))
        if sorted(columns) != sorted(_FACT_COLUMNS):
            raise ValueError(f"{self.path} is an SQLite file but not a kexue knowledge base (no `facts` table with "
                             f"columns {', '.join(_FACT_COLUMNS)}); create one with `kexue kbqa build-kb`")
        found = self._meta().get("format", _FORMAT)  # KBs written before the kexue_kb table are format 1
        if found != _FORMAT:
            raise ValueError(f"{self.path}: unsupported knowledge-base format {found!r}, expected {_FORMAT!r}")
        if "kexue_kb" not in tables and not self.read_only:
            self.connection.executescript(_SCHEMA)
            self._set_meta(format=_FORMAT)

    def _meta(self) -> dict[str, str]:
        try:
            return dict(self.connection.execute("SELECT name, value FROM kexue_kb").fetchall())
        except sqlite3.OperationalError:  # no kexue_kb table: a KB from before it existed
            return {}

    def _set_meta(self, **values: str) -> None:
        with self.connection:
            self.connection.executemany("INSERT OR REPLACE INTO kexue_kb (name, value) VALUES (?, ?)",
                                        [(name, str(value)) for name, value in values.items()])

    def content_hash(self) -> str:
        """sha256 chain over every fact in row-id order (hex); stored, so a read costs two lookups.

        The stored hash is trusted when the row count and largest id still match it; otherwise
        (facts changed outside this class) it is recomputed from all rows.
        """
        meta = self._meta()
        rows, last_id = self.connection.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM facts").fetchone()
        if meta.get("hashed_rows") == str(rows) and meta.get("hashed_max_id") == str(last_id):
            return meta["content_hash"]
        digest, _ = self._chain(_EMPTY_HASH, 0)
        if not self.read_only:
            self._set_meta(content_hash=digest, hashed_rows=rows, hashed_max_id=last_id)
        else:
            logger.warning("%s has no up-to-date stored content hash; hashing its %d facts (once per call). "
                           "`kexue kbqa build-kb --kb %s` stores it", self.path, rows, self.path)
        return digest

    def _chain(self, digest: str, after_id: int) -> tuple[str, int]:
        """Extend the hash chain by every fact with id > ``after_id``; returns (hash, last id)."""
        last_id = after_id
        state = bytes.fromhex(digest)
        for row in self.connection.execute("SELECT id, subject, meaning, predicate, object FROM facts "
                                           "WHERE id > ? ORDER BY id", (after_id,)):
            state = hashlib.sha256(state + "\x1f".join(map(str, row)).encode("utf-8")).digest()
            last_id = row[0]
        return state.hex(), last_id

    def _update_hash(self) -> None:
        """After a write: extend the stored chain by the new rows (ids only grow; nothing is deleted)."""
        meta = self._meta()
        hashed = int(meta.get("hashed_max_id", -1))
        if "content_hash" not in meta or str(self.connection.execute(
                "SELECT COUNT(*) FROM facts WHERE id <= ?", (hashed,)).fetchone()[0]) != meta["hashed_rows"]:
            self.content_hash()  # no stored chain, or the hashed rows changed: start over
            return
        digest, last_id = self._chain(meta["content_hash"], hashed)
        rows = self.connection.execute("SELECT COUNT(*) FROM facts").fetchone()[0]
        self._set_meta(content_hash=digest, hashed_rows=rows, hashed_max_id=last_id)

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
        if self.read_only:
            raise ValueError(f"knowledge base {self.path} was opened read-only")
        before = self.connection.total_changes
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO facts (subject, meaning, predicate, object, source) VALUES (?, ?, ?, ?, ?)",
                ((f.subject, f.meaning, f.predicate, f.object, source) for f in facts))
        added = self.connection.total_changes - before
        self._update_hash()
        return added

    def import_kgclue(self, split_or_path: str | Path, root: str | Path | None = None) -> int:
        """Import the answer triples of a KgCLUE QA file (a split name or a JSONL path, as in
        :func:`read_kgclue_questions`)."""
        examples = read_kgclue_questions(split_or_path, root)
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
