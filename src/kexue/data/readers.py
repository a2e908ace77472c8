"""Low-level line readers for the dataset files, and the errors every reader raises.

All dataset files are line oriented: JSON Lines or tab-separated values. The two generic readers
here, :func:`read_jsonl` and :func:`read_tsv`, turn a file into a lazy stream of typed records by
calling a *record builder* on each line. Builders only look at one parsed line and raise
:class:`RecordError` when it is wrong; the readers add the file and the 1-based line number, so every
malformed line surfaces as a :class:`DataFormatError` such as::

    ../shared/data/kgclue/train.json:17: answer must have 3 fields separated by ' ||| ', got 2

Line handling, shared by both readers (see :func:`iter_lines`):

- files are read as bytes and split on ``\\n`` only. ``str.splitlines`` would also split on
  U+2028 and U+0085, which occur *inside* JSON strings of the real FewCLUE iflytek files;
- each line is decoded as UTF-8 on its own, so invalid bytes are reported with their line number;
- a trailing ``\\r`` (CRLF files) and a UTF-8 byte-order mark on the first line are removed;
- blank lines are skipped; an empty file yields nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "KexueDataError",
    "DataNotFoundError",
    "DataFormatError",
    "RecordError",
    "iter_lines",
    "read_jsonl",
    "read_tsv",
    "require",
    "optional",
    "require_label",
]

T = TypeVar("T")


class KexueDataError(Exception):
    """Base class of every error raised by :mod:`kexue.data`."""


class DataNotFoundError(KexueDataError, FileNotFoundError):
    """A data root, data file or label file does not exist.

    The message names the missing path and, where useful, how to point kexue at the data.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class DataFormatError(KexueDataError, ValueError):
    """A line of a data file is malformed.

    Args:
        path: the file, as the reader was given it.
        line_number: 1-based line number in the file (blank lines count).
        message: how the line is wrong.
    """

    def __init__(self, path: str | Path, line_number: int, message: str) -> None:
        super().__init__(f"{path}:{line_number}: {message}")
        self.path = Path(path)
        self.line_number = line_number
        self.message = message


class RecordError(ValueError):
    """Raised by record builders; the readers turn it into a :class:`DataFormatError`."""


def _check_file(path: Path) -> None:
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataNotFoundError(f"data file {path} {what}", path)


def iter_lines(path: str | Path, skip_blank: bool = True) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of a UTF-8 text file, blank lines skipped.

    The existence check runs at call time (not at the first ``next``), so a wrong path fails
    where the reader is created.

    Args:
        path: the file to read.
        skip_blank: skip lines that are empty or only whitespace. False keeps every line (a
            vocabulary needs that: bert-base-chinese has the token U+2028 on a line of its own).

    Returns:
        A lazy iterator of 1-based line numbers and lines without their ``\\r\\n``.

    Raises:
        DataNotFoundError: the file does not exist.
        DataFormatError: a line is not valid UTF-8 (raised while iterating).
    """
    path = Path(path)
    _check_file(path)
    return _lines(path, skip_blank)


def _lines(path: Path, skip_blank: bool) -> Iterator[tuple[int, str]]:
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                bad = raw[error.start : error.end]
                raise DataFormatError(
                    path, line_number, f"not valid UTF-8: bytes {bad!r} at byte offset {error.start} of the line"
                ) from None
            if line_number == 1:
                text = text.removeprefix("\ufeff")
            text = text.rstrip("\r\n")
            if text.strip() or not skip_blank:
                yield line_number, text


def read_jsonl(path: str | Path, build: Callable[[Mapping[str, Any]], T]) -> Iterator[T]:
    """Lazily read a JSON Lines file, one record per JSON object.

    Args:
        path: the ``.json``/``.jsonl`` file.
        build: turns one parsed object into a record; raises :class:`RecordError` if it is wrong.

    Raises:
        DataNotFoundError: the file does not exist (at call time).
        DataFormatError: bad UTF-8, bad JSON, a non-object line or a builder error (while iterating).
    """
    lines = iter_lines(path)

    def records() -> Iterator[T]:
        for line_number, text in lines:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataFormatError(path, line_number, f"bad JSON: {error.msg} at column {error.colno}") from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, line_number, f"expected a JSON object, got {type(obj).__name__}")
            try:
                yield build(obj)
            except RecordError as error:
                raise DataFormatError(path, line_number, str(error)) from None

    return records()


def read_tsv(
    path: str | Path,
    build: Callable[[Sequence[str]], T],
    *,
    fields: int,
    extra_fields: bool = False,
    header: str | None = None,
) -> Iterator[T]:
    """Lazily read a tab-separated file with no quoting, one record per line.

    Splitting on ``\\t`` with quotes kept literally is what ``csv.QUOTE_NONE`` does; it matters
    for STS-B and PAWS-X, whose sentences contain unbalanced ``"``.

    Args:
        path: the file.
        build: turns the list of fields into a record; raises :class:`RecordError` if it is wrong.
        fields: the number of fields each line must have.
        extra_fields: if True, lines may have more fields; only the first ``fields`` are passed on.
        header: if given, the first non-blank line is a header whose first field must equal it.

    Raises:
        DataNotFoundError: the file does not exist (at call time).
        DataFormatError: bad UTF-8, a wrong field count, a missing header or a builder error.
    """
    lines = iter_lines(path)

    def records() -> Iterator[T]:
        expect_header = header is not None
        for line_number, text in lines:
            values = text.split("\t")
            if expect_header:
                expect_header = False
                if values[0] != header:
                    raise DataFormatError(path, line_number, f"expected a header starting with {header!r}, got {values[0]!r}")
                continue
            if len(values) < fields or (len(values) > fields and not extra_fields):
                at_least = "at least " if extra_fields else ""
                raise DataFormatError(
                    path, line_number, f"expected {at_least}{fields} tab-separated fields, got {len(values)}"
                )
            try:
                yield build(values[:fields])
            except RecordError as error:
                raise DataFormatError(path, line_number, str(error)) from None

    return records()


def require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    """Return ``obj[key]``, raising :class:`RecordError` if it is missing or of the wrong type."""
    if key not in obj:
        raise RecordError(f"missing key {key!r}")
    return _typed(obj[key], key, kind)


def optional(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    """Return ``obj[key]``, or None when the key is missing or null; check the type otherwise."""
    value = obj.get(key)
    return None if value is None else _typed(value, key, kind)


def _typed(value: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    # bool is an int subclass; a JSON true is never a valid id or label index.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RecordError(f"key {key!r} must be {names}, got {type(value).__name__} {value!r}")
    return value


def require_label(value: str, allowed: Sequence[str] | frozenset[str], what: str = "label") -> str:
    """Return ``value`` if it is one of ``allowed``, else raise :class:`RecordError` listing them."""
    if value not in allowed:
        shown = ", ".join(repr(label) for label in list(allowed)[:8]) + (" ..." if len(allowed) > 8 else "")
        raise RecordError(f"bad {what} {value!r}: expected one of {len(allowed)} labels ({shown})")
    return value
