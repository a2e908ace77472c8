"""The dataset catalogue: every staged file, its expected row count and the reader for it.

The counts are those of the data catalogue (``shared/data/README.md`` and each folder's
``SOURCE.md``). A *row* is one record as the reader yields it: a non-blank line, less the header
of SST-2; one book for ``corpus_zh/raw``; one token for a vocabulary; one label for a label file.
The data audit (``kexue reproduce data-audit``) counts every file and checks these numbers.

Example:
    >>> entry = DATASETS["kgclue/dev"]
    >>> entry.path, entry.rows
    ('kgclue/dev.json', 2000)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kexue.data.clue import read_afqmc, read_cmnli, read_ocnli
from kexue.data.corpus import CORPUS_ZH_MODERN_FILES, iter_corpus_zh, iter_corpus_zh_modern, iter_corpus_zh_raw
from kexue.data.english import read_sst2, read_stsb_en
from kexue.data.fewclue import FEWCLUE_TASKS, fewclue_labels, read_fewclue
from kexue.data.kgclue import read_kgclue
from kexue.data.readers import iter_lines
from kexue.data.sts import read_sts_zh
from kexue.data.tokenizer import CHINESE_VOCAB, ENGLISH_UNCASED_VOCAB, read_vocab

__all__ = ["CatalogueEntry", "DATASETS", "FEWCLUE_ROWS"]

Reader = Callable[[Path], Iterable[Any]]


@dataclass(frozen=True)
class CatalogueEntry:
    """One staged file (or folder, for ``corpus_zh/raw``).

    ``path`` is relative to the data root; ``rows`` the catalogue's count; ``read(root)`` returns
    the records; ``group`` names the dataset, so that splits of one task can be compared.
    """

    path: str
    rows: int
    read: Reader
    group: str


# FewCLUE sizes: (train_i, dev_i, train_few_all, dev_few_all, unlabeled or None).
FEWCLUE_ROWS: dict[str, tuple[int, int, int, int, int | None]] = {
    "eprstmt": (32, 32, 160, 160, 19_565),
    "tnews": (240, 240, 1_185, 1_098, 20_000),
    "csldcp": (536, 536, 2_036, 2_068, None),
    "iflytek": (928, 690, 3_024, 1_373, None),
    "bustm": (32, 32, 160, 160, 4_251),
    "ocnli": (32, 32, 160, 160, None),
    "csl": (32, 32, 160, 160, None),
    "cluewsc": (32, 32, 160, 159, None),
    "chid": (42, 42, 202, 202, 7_585),
}
_FEWCLUE_LABEL_ROWS = {"tnews": 15, "csldcp": 67, "iflytek": 119}
_CORPUS_ZH_MODERN_ROWS = (306, 1_556, 1_799, 108, 7_757, 11_976, 62_390)


def _fewclue_entries() -> dict[str, CatalogueEntry]:
    entries = {}
    for task in FEWCLUE_TASKS:
        train, dev, train_all, dev_all, unlabeled = FEWCLUE_ROWS[task]
        sizes = {**{f"train_{i}": train for i in range(5)}, **{f"dev_{i}": dev for i in range(5)},
                 "train_few_all": train_all, "dev_few_all": dev_all}
        if unlabeled is not None:
            sizes["unlabeled"] = unlabeled
        for split, rows in sizes.items():
            read = lambda root, task=task, split=split: read_fewclue(task, split, root)  # noqa: E731
            entries[f"fewclue/{task}/{split}"] = CatalogueEntry(f"fewclue/{task}/{split}.json", rows, read,
                                                                f"fewclue/{task}")
    for task, rows in _FEWCLUE_LABEL_ROWS.items():
        path = f"fewclue/{task}/{'label_index2en2zh.json' if task == 'tnews' else 'labels.json'}"
        read = lambda root, task=task: fewclue_labels(task, root)  # noqa: E731
        entries[f"fewclue/{task}/labels"] = CatalogueEntry(path, rows, read, "labels")
    labels_all = "fewclue/csldcp/labels_all.txt"
    entries["fewclue/csldcp/labels_all"] = CatalogueEntry(
        labels_all, 67, lambda root: (text for _, text in iter_lines(root / labels_all)), "labels")
    return entries


DATASETS: dict[str, CatalogueEntry] = {
    "kgclue/train": CatalogueEntry("kgclue/train.json", 18_000, lambda root: read_kgclue("train", root), "kgclue"),
    "kgclue/dev": CatalogueEntry("kgclue/dev.json", 2_000, lambda root: read_kgclue("dev", root), "kgclue"),
    **_fewclue_entries(),
    "clue/afqmc/train": CatalogueEntry("clue/afqmc/train.txt", 34_334, lambda root: read_afqmc("train", root), "clue/afqmc"),
    "clue/afqmc/dev": CatalogueEntry("clue/afqmc/dev.txt", 4_316, lambda root: read_afqmc("dev", root), "clue/afqmc"),
    "clue/cmnli/dev": CatalogueEntry("clue/cmnli/dev.txt", 12_241, lambda root: read_cmnli("dev", root), "clue/cmnli"),
    **{
        f"clue/ocnli/{split}": CatalogueEntry(f"clue/ocnli/{split}.json", rows, lambda root, s=split: read_ocnli(s, root),
                                      "clue/ocnli")
        for split, rows in (("train.3k", 3_000), ("train.10k", 10_000), ("dev_minus_fewclue_test", 480))
    },
    **{
        f"sts_zh/{name}/{split}": CatalogueEntry(f"sts_zh/{name}/{name}.{split}.data", rows,
                                         lambda root, n=name, s=split: read_sts_zh(n, s, root), f"sts_zh/{name}")
        for name, split, rows in (("STS-B", "train", 5_231), ("STS-B", "valid", 1_458), ("ATEC", "valid", 20_000),
                                  ("BQ", "valid", 10_000), ("LCQMC", "valid", 8_802), ("PAWSX", "valid", 2_000))
    },
    "en/sst2/train": CatalogueEntry("en/sst2/train.tsv", 67_349, lambda root: read_sst2("train", root), "en/sst2"),
    "en/sst2/dev": CatalogueEntry("en/sst2/dev.tsv", 872, lambda root: read_sst2("dev", root), "en/sst2"),
    "en/stsb/train": CatalogueEntry("en/stsb/sts-train.tsv", 5_749, lambda root: read_stsb_en("train", root), "en/stsb"),
    "en/stsb/dev": CatalogueEntry("en/stsb/sts-dev.tsv", 1_500, lambda root: read_stsb_en("dev", root), "en/stsb"),
    "corpus_zh/docs": CatalogueEntry("corpus_zh/docs.jsonl", 627, lambda root: iter_corpus_zh(root=root), "corpus_zh"),
    "corpus_zh/raw": CatalogueEntry("corpus_zh/raw", 13, lambda root: iter_corpus_zh_raw(root=root), "corpus_zh"),
    **{
        f"corpus_zh_modern/{name}": CatalogueEntry(f"corpus_zh_modern/{name}.jsonl", rows,
                                           lambda root, n=name: iter_corpus_zh_modern([n], root), "corpus_zh_modern")
        for name, rows in zip(CORPUS_ZH_MODERN_FILES, _CORPUS_ZH_MODERN_ROWS)
    },
    "vocab/bert-base-chinese": CatalogueEntry(CHINESE_VOCAB, 21_128, lambda root: read_vocab(root / CHINESE_VOCAB), "vocab"),
    "vocab/bert-base-uncased": CatalogueEntry(ENGLISH_UNCASED_VOCAB, 30_522,
                                      lambda root: read_vocab(root / ENGLISH_UNCASED_VOCAB), "vocab"),
}
