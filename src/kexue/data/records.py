"""Typed, immutable records produced by the dataset readers: one dataclass per record shape.

Every record has a ``texts()`` method returning its natural-language fields (what a tokenizer
would see), and a ``label`` (``None`` for unlabelled data), so generic code such as the data audit
can measure lengths and label balance without knowing the dataset.

Classification labels are kept as strings exactly as the files spell them (``"Positive"``,
``"102"``, ``"entailment"``), with two exceptions that are numbers by nature: similarity scores
(:class:`SentencePair` of the STS sets, :class:`StsbExample`) and the ChID answer index.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "KgclueExample",
    "SentencePair",
    "LabeledText",
    "StsbExample",
    "TnewsExample",
    "IflytekExample",
    "NliExample",
    "CslExample",
    "CluewscTarget",
    "CluewscExample",
    "ChidExample",
    "LabelInfo",
    "Document",
]


@dataclass(frozen=True)
class KgclueExample:
    """A KgCLUE question with its answer triple, the subject split into name and meaning.

    ``subject`` is the full knowledge-base subject, e.g. ``刘晓华（广东工业大学教授）``;
    ``subject_name`` is the part outside the final full-width parentheses (``刘晓华``) and
    ``meaning`` the part inside (``广东工业大学教授``), or None when the subject has no meaning
    suffix. Post 8802 treats a fact as the quadruple (S, M, P, O) this way.
    """

    id: int
    question: str
    subject: str
    subject_name: str
    meaning: str | None
    predicate: str
    object: str

    @property
    def answer(self) -> str:
        """The answer in the file's format, ``"S ||| P ||| O"``."""
        return f"{self.subject} ||| {self.predicate} ||| {self.object}"

    @property
    def label(self) -> str:
        """The predicate, the closest thing to a class label a KBQA example has."""
        return self.predicate

    def texts(self) -> tuple[str, ...]:
        return (self.question,)


@dataclass(frozen=True)
class SentencePair:
    """Two sentences and their relation: a 0/1 match, an NLI class or a similarity score.

    Used by AFQMC (``int`` 0/1), CMNLI (``str`` NLI class), the Chinese STS sets (``int``: 0-5 for
    STS-B, 0/1 otherwise) and FewCLUE bustm (``str`` "0"/"1", with the official ``id``).
    """

    sentence1: str
    sentence2: str
    label: int | float | str | None
    id: int | None = None

    def texts(self) -> tuple[str, ...]:
        return (self.sentence1, self.sentence2)


@dataclass(frozen=True)
class LabeledText:
    """One text with a class label: SST-2 (``int`` 0/1), FewCLUE eprstmt and csldcp (``str``)."""

    text: str
    label: int | str | None
    id: int | None = None

    def texts(self) -> tuple[str, ...]:
        return (self.text,)


@dataclass(frozen=True)
class StsbExample:
    """A line of the English STS Benchmark: its first 7 fields, the score in [0, 5]."""

    genre: str
    file: str
    year: str
    id: str
    score: float
    sentence1: str
    sentence2: str

    @property
    def label(self) -> float:
        return self.score

    def texts(self) -> tuple[str, ...]:
        return (self.sentence1, self.sentence2)


@dataclass(frozen=True)
class TnewsExample:
    """FewCLUE tnews: a news title; ``label`` is the code as a string (``"102"``)."""

    id: int
    sentence: str
    keywords: str
    label: str | None
    label_desc: str | None

    def texts(self) -> tuple[str, ...]:
        return (self.sentence,)


@dataclass(frozen=True)
class IflytekExample:
    """FewCLUE iflytek: an app description; ``label`` is the category index as a string."""

    id: int
    sentence: str
    label: str | None
    label_des: str | None

    def texts(self) -> tuple[str, ...]:
        return (self.sentence,)


@dataclass(frozen=True)
class NliExample:
    """OCNLI (FewCLUE and CLUE): premise ``sentence1``, hypothesis ``sentence2``.

    ``label`` is entailment / neutral / contradiction, or ``"-"`` in CLUE OCNLI where the five
    annotators reached no majority; ``label0``..``label4`` are the annotator labels (often null).
    """

    id: int
    sentence1: str
    sentence2: str
    label: str | None
    level: str
    genre: str
    prem_id: str
    label0: str | None
    label1: str | None
    label2: str | None
    label3: str | None
    label4: str | None

    def texts(self) -> tuple[str, ...]:
        return (self.sentence1, self.sentence2)


@dataclass(frozen=True)
class CslExample:
    """FewCLUE csl: an abstract and a keyword list; label "1" if the keywords are genuine."""

    id: int
    abst: str
    keyword: tuple[str, ...]
    label: str | None

    def texts(self) -> tuple[str, ...]:
        return (self.abst,)


@dataclass(frozen=True)
class CluewscTarget:
    """The two spans of a CLUEWSC example: a noun phrase and the pronoun that may refer to it."""

    span1_index: int
    span1_text: str
    span2_index: int
    span2_text: str


@dataclass(frozen=True)
class CluewscExample:
    """FewCLUE cluewsc: label "true" if ``target.span2_text`` refers to ``target.span1_text``."""

    idx: int
    text: str
    target: CluewscTarget
    label: str | None

    def texts(self) -> tuple[str, ...]:
        return (self.text,)


@dataclass(frozen=True)
class ChidExample:
    """FewCLUE chid: a passage with a ``#idiom#`` blank, 7 candidate idioms, the answer index."""

    id: int
    candidates: tuple[str, ...]
    content: str
    answer: int | None

    @property
    def label(self) -> int | None:
        return self.answer

    def texts(self) -> tuple[str, ...]:
        return (self.content,)


@dataclass(frozen=True)
class LabelInfo:
    """One class of a classification task.

    ``label`` is the value records carry, ``description`` its human-readable name (Chinese
    where the task has one), ``tag`` the official 2-character short form used in prompts.
    """

    label: str
    description: str
    tag: str | None = None
    english: str | None = None


@dataclass(frozen=True)
class Document:
    """A document of a pretraining corpus.

    ``source`` is the book (corpus_zh) or the source tag (corpus_zh_modern, e.g.
    ``luxun:呐喊``), ``title`` a chapter heading or title when there is one, ``index`` the
    position of the document within its source file or book.
    """

    source: str
    title: str | None
    text: str
    index: int

    @property
    def label(self) -> None:
        return None

    def texts(self) -> tuple[str, ...]:
        return (self.text,)
