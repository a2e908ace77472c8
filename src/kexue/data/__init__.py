"""Dataset readers for everything in the shared data root (see ``shared/data/README.md``).

Every reader is lazy (a generator over the lines of a file), yields frozen dataclasses from
:mod:`kexue.data.records`, finds the data with :func:`resolve_data_root` when ``root`` is None,
and reports a malformed line as ``DataFormatError("<file>:<line>: <what is wrong>")``.

Example:
    >>> from kexue.data import split_subject
    >>> split_subject("牛郎织女（中国著名民间故事）")
    ('牛郎织女', '中国著名民间故事')
"""

from kexue.data.catalogue import DATASETS, CatalogueEntry
from kexue.data.clue import read_afqmc, read_clue, read_cmnli, read_ocnli
from kexue.data.corpus import CORPUS_ZH_MODERN_FILES, iter_corpus_zh, iter_corpus_zh_modern, iter_corpus_zh_raw
from kexue.data.english import read_sst2, read_stsb_en
from kexue.data.fewclue import FEWCLUE_SPLITS, FEWCLUE_TASKS, fewclue_labels, read_fewclue
from kexue.data.kgclue import read_kgclue, read_kgclue_questions, split_subject
from kexue.data.readers import DataFormatError, DataNotFoundError, KexueDataError, read_jsonl, read_tsv
from kexue.data.records import (
    ChidExample,
    CluewscExample,
    CluewscTarget,
    CslExample,
    Document,
    IflytekExample,
    KgclueExample,
    LabeledText,
    LabelInfo,
    NliExample,
    SentencePair,
    StsbExample,
    TnewsExample,
)
from kexue.data.root import DATA_ENV_VAR, resolve_data_root
from kexue.data.sts import read_sts_zh
from kexue.data.tokenizer import default_chinese_vocab, load_tokenizer, read_vocab

__all__ = [
    "DATASETS",
    "CatalogueEntry",
    "read_afqmc",
    "read_clue",
    "read_cmnli",
    "read_ocnli",
    "CORPUS_ZH_MODERN_FILES",
    "iter_corpus_zh",
    "iter_corpus_zh_modern",
    "iter_corpus_zh_raw",
    "read_sst2",
    "read_stsb_en",
    "FEWCLUE_SPLITS",
    "FEWCLUE_TASKS",
    "fewclue_labels",
    "read_fewclue",
    "read_kgclue",
    "read_kgclue_questions",
    "split_subject",
    "DataFormatError",
    "DataNotFoundError",
    "KexueDataError",
    "read_jsonl",
    "read_tsv",
    "ChidExample",
    "CluewscExample",
    "CluewscTarget",
    "CslExample",
    "Document",
    "IflytekExample",
    "KgclueExample",
    "LabeledText",
    "LabelInfo",
    "NliExample",
    "SentencePair",
    "StsbExample",
    "TnewsExample",
    "DATA_ENV_VAR",
    "resolve_data_root",
    "read_sts_zh",
    "default_chinese_vocab",
    "load_tokenizer",
    "read_vocab",
]
