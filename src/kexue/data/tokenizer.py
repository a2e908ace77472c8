"""Loading a BERT WordPiece tokenizer from a vocabulary file or a checkpoint folder.

Chinese text is split into single characters before WordPiece (``tokenize_chinese_chars``),
as in Google's BERT and ``bert-base-chinese``; every Chinese model in kexue uses the
bert-base-chinese vocabulary (:func:`default_chinese_vocab`).

Lower-casing, when not given: a checkpoint's ``tokenizer_config.json`` decides (``do_lower_case``);
otherwise the vocabulary does. A vocabulary without any upper-case ASCII token (outside bracketed
markers such as ``[CLS]``, ``[unused0]`` and bert-base-chinese's ``<S>`` and ``<T>``) cannot
represent upper case, so it is lower-cased; this matches bert-base-uncased and bert-base-chinese.
Without it, every word with a Latin capital letter becomes ``[UNK]`` under bert-base-chinese.

:func:`save_tokenizer_files` writes ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json``
into a model folder, so that ``transformers.AutoTokenizer`` and :func:`load_tokenizer` agree on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from kexue.data.readers import DataFormatError, DataNotFoundError, iter_lines
from kexue.data.root import resolve_data_root

if TYPE_CHECKING:
    from transformers import BertTokenizerFast

__all__ = ["read_vocab", "load_tokenizer", "save_tokenizer_files", "default_chinese_vocab", "CHINESE_VOCAB",
           "ENGLISH_UNCASED_VOCAB"]

CHINESE_VOCAB = "vocab/bert-base-chinese-vocab.txt"
ENGLISH_UNCASED_VOCAB = "vocab/bert-base-uncased-vocab.txt"


def read_vocab(path: str | Path) -> list[str]:
    """Read a WordPiece vocabulary: one token per line, the 0-based line index is the token id.

    Raises:
        DataNotFoundError: the file does not exist.
        DataFormatError: an empty line (it would shift every later id) or a repeated token.
    """
    tokens: list[str] = []
    seen: dict[str, int] = {}
    for line_number, token in iter_lines(path, skip_blank=False):
        if not token:
            raise DataFormatError(path, line_number, "empty line in a vocabulary (token ids are line indices)")
        if token in seen:
            raise DataFormatError(path, line_number, f"token {token!r} repeats line {seen[token]}")
        seen[token] = line_number
        tokens.append(token)
    return tokens


def _is_marker(token: str) -> bool:
    return len(token) > 2 and token[0] + token[-1] in ("[]", "<>")


def _infer_lowercase(tokens: list[str]) -> bool:
    return not any(any("A" <= char <= "Z" for char in token) for token in tokens if not _is_marker(token))


def _from_vocab(path: Path, lowercase: bool | None) -> BertTokenizerFast:
    from transformers import BertTokenizerFast

    tokens = read_vocab(path)
    if lowercase is None:
        lowercase = _infer_lowercase(tokens)
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=lowercase, tokenize_chinese_chars=True)
    if len(tokenizer) != len(tokens):  # transformers < 5 ignores `vocab=`; never return a wrong tokenizer
        raise RuntimeError(f"tokenizer built from {path} has {len(tokenizer)} tokens, expected {len(tokens)}")
    return tokenizer


def _config_lowercase(folder: Path) -> bool | None:
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text(encoding="utf-8")).get("do_lower_case")
    return value if isinstance(value, bool) else None


def load_tokenizer(vocab_or_checkpoint: str | Path, lowercase: bool | None = None) -> BertTokenizerFast:
    """Return a ``transformers.BertTokenizerFast`` splitting Chinese per character.

    Args:
        vocab_or_checkpoint: a ``vocab.txt``-style file, or a folder holding ``vocab.txt``
            and/or ``tokenizer.json`` (a Hugging Face BERT checkpoint).
        lowercase: lower-case (and strip accents from) the input; None decides as described
            in the module docstring.

    Raises:
        DataNotFoundError: the path does not exist, or the folder has neither file.

    Example:
        >>> import tempfile, pathlib
        >>> vocab = pathlib.Path(tempfile.mkdtemp()) / "vocab.txt"
        >>> _ = vocab.write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "我", "爱", "你"]))
        >>> load_tokenizer(vocab).tokenize("我爱你")
        ['我', '爱', '你']
    """
    path = Path(vocab_or_checkpoint)
    if path.is_file():
        return _from_vocab(path, lowercase)
    if not path.is_dir():
        raise DataNotFoundError(f"vocabulary file or checkpoint folder {path} does not exist", path)
    if (path / "vocab.txt").is_file():
        return _from_vocab(path / "vocab.txt", lowercase if lowercase is not None else _config_lowercase(path))
    if (path / "tokenizer.json").is_file():
        from tokenizers import normalizers
        from transformers import BertTokenizerFast

        tokenizer = BertTokenizerFast.from_pretrained(str(path), local_files_only=True)
        if lowercase is not None:
            tokenizer.backend_tokenizer.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
            )
        return tokenizer
    raise DataNotFoundError(f"checkpoint folder {path} has neither vocab.txt nor tokenizer.json", path)


def save_tokenizer_files(tokenizer: BertTokenizerFast | str | Path, directory: str | Path) -> None:
    """Write ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory``.

    transformers 5 saves ``tokenizer.json`` without ``vocab.txt``, and without a
    ``tokenizer_config.json`` naming the class ``AutoTokenizer`` picks the model type's own
    tokenizer (RoFormer's needs rjieba). Writing all three makes ``AutoTokenizer.from_pretrained``
    and :func:`load_tokenizer` give the same ids for the folder.

    Args:
        tokenizer: a tokenizer from :func:`load_tokenizer`, or what it accepts (a vocabulary file or folder).
        directory: the model folder (created if missing).
    """
    if isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    (directory / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config.update(tokenizer_class="BertTokenizer", do_lower_case=_normalizer_lowercase(tokenizer),
                  tokenize_chinese_chars=True)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _normalizer_lowercase(tokenizer: BertTokenizerFast) -> bool:
    state = json.loads(tokenizer.backend_tokenizer.normalizer.__getstate__())
    return bool(state.get("lowercase", False))


def default_chinese_vocab(root: str | Path | None = None) -> Path:
    """Return the path of the bert-base-chinese vocabulary in the data root.

    Raises:
        DataNotFoundError: the data root or the vocabulary file does not exist.
    """
    path = resolve_data_root(root) / CHINESE_VOCAB
    if not path.is_file():
        raise DataNotFoundError(f"Chinese vocabulary {path} does not exist", path)
    return path
