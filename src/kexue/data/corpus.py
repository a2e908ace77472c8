"""Chinese pretraining text: classical books (``corpus_zh``) and modern text (``corpus_zh_modern``).

- ``corpus_zh/docs.jsonl``: 627 documents of at least 2,000 characters cut from 13 public-domain
  books at chapter headings; keys ``book``, ``doc_index``, ``heading`` (or null), ``text``.
- ``corpus_zh/raw/<book>.txt``: the 13 books as plain text.
- ``corpus_zh_modern/<name>.jsonl``: 85,892 modern documents in 7 files; keys ``source``,
  ``title`` (optional), ``text``.

All iterators are lazy and yield :class:`~kexue.data.records.Document`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import count
from pathlib import Path
from typing import Any

from kexue.data.readers import DataNotFoundError, iter_lines, optional, read_jsonl, require
from kexue.data.records import Document
from kexue.data.root import resolve_data_root

__all__ = ["CORPUS_ZH_MODERN_FILES", "iter_corpus_zh", "iter_corpus_zh_raw", "iter_corpus_zh_modern"]

CORPUS_ZH_MODERN_FILES = (
    "luxun",
    "news_msra",
    "news_boson",
    "rust_book_zh",
    "reviews_hotel",
    "reviews_waimai",
    "reviews_online_shopping",
)


def _book_document(obj: Mapping[str, Any]) -> Document:
    return Document(source=require(obj, "book"), title=optional(obj, "heading"), text=require(obj, "text"),
                    index=require(obj, "doc_index", int))


def iter_corpus_zh(books: Iterable[str] | None = None, root: str | Path | None = None) -> Iterator[Document]:
    """Lazily read ``corpus_zh/docs.jsonl``: chapter-sized documents of the classical books.

    Args:
        books: keep only these books (e.g. ``["红楼梦"]``); None keeps all.
        root: the data root; None resolves it.
    """
    documents = read_jsonl(resolve_data_root(root) / "corpus_zh" / "docs.jsonl", _book_document)
    if books is None:
        return documents
    wanted = frozenset(books)
    return (document for document in documents if document.source in wanted)


def iter_corpus_zh_raw(books: Iterable[str] | None = None, root: str | Path | None = None) -> Iterator[Document]:
    """Lazily read ``corpus_zh/raw/*.txt``, one :class:`Document` per book, in file-name order.

    Blank lines are dropped and the remaining lines joined with ``\\n``.

    Args:
        books: book names (file stems) to read; None reads every ``.txt`` file.
        root: the data root; None resolves it.

    Raises:
        DataNotFoundError: the ``raw`` folder or a named book does not exist.
    """
    raw = resolve_data_root(root) / "corpus_zh" / "raw"
    if not raw.is_dir():
        raise DataNotFoundError(f"corpus folder {raw} does not exist", raw)
    paths = sorted(raw.glob("*.txt")) if books is None else [raw / f"{book}.txt" for book in books]
    line_streams = [iter_lines(path) for path in paths]  # checks every file now
    return (
        Document(source=path.stem, title=path.stem, text="\n".join(text for _, text in lines), index=index)
        for index, (path, lines) in enumerate(zip(paths, line_streams))
    )


def _modern_document_builder() -> Callable[[Mapping[str, Any]], Document]:
    positions = count()

    def build(obj: Mapping[str, Any]) -> Document:
        return Document(source=require(obj, "source"), title=optional(obj, "title"), text=require(obj, "text"),
                        index=next(positions))

    return build


def iter_corpus_zh_modern(files: Iterable[str] | None = None, root: str | Path | None = None) -> Iterator[Document]:
    """Lazily read ``corpus_zh_modern``: one :class:`Document` per line, file after file.

    Args:
        files: names from :data:`CORPUS_ZH_MODERN_FILES` (with or without ``.jsonl``); None
            reads all seven in that order.
        root: the data root; None resolves it.

    Raises:
        ValueError: an unknown file name.
        DataNotFoundError: a file does not exist (at call time).
    """
    names = [name.removesuffix(".jsonl") for name in (CORPUS_ZH_MODERN_FILES if files is None else files)]
    unknown = [name for name in names if name not in CORPUS_ZH_MODERN_FILES]
    if unknown:
        raise ValueError(f"`files` must be among {CORPUS_ZH_MODERN_FILES}, got {unknown!r}")
    folder = resolve_data_root(root) / "corpus_zh_modern"
    streams = [read_jsonl(folder / f"{name}.jsonl", _modern_document_builder()) for name in names]
    return (document for stream in streams for document in stream)
