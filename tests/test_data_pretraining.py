"""The Chinese pretraining corpus: allowed sources only, never dev text."""

import json
from pathlib import Path

import pytest

from kexue.data import read_afqmc, read_kgclue
from kexue.data.pretraining import chinese_pretraining_documents, write_documents_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_sources_and_no_dev_text(tmp_path):
    documents = list(chinese_pretraining_documents(FIXTURES, sources=("fewclue_unlabeled", "afqmc_train", "kgclue_train")))
    sources = {document.source for document in documents}
    assert {"afqmc:train", "kgclue:train"} <= sources and any(s.startswith("fewclue:") for s in sources)
    texts = "\n".join(document.text for document in documents)
    for example in read_kgclue("dev", FIXTURES):
        assert example.question not in texts
    afqmc = [document.text for document in documents if document.source == "afqmc:train"]
    assert afqmc == [f"{pair.sentence1}\n{pair.sentence2}" for pair in read_afqmc("train", FIXTURES)]
    assert "#idiom#" not in texts
    path = tmp_path / "corpus.jsonl"
    assert write_documents_jsonl(iter(documents), path) == len(documents)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"source", "text"}


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="wikipedia"):
        list(chinese_pretraining_documents(FIXTURES, sources=("wikipedia",)))


def test_unlabeled_records_that_occur_in_dev_are_left_out(tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    unlabeled = root / "fewclue" / "eprstmt" / "unlabeled.json"
    dev_sentence = json.loads((root / "fewclue" / "eprstmt" / "dev_0.json").read_text(encoding="utf-8").splitlines()[0])["sentence"]
    with unlabeled.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": 999, "sentence": dev_sentence}, ensure_ascii=False) + "\n")
    texts = [d.text for d in chinese_pretraining_documents(root, sources=("fewclue_unlabeled",))]
    assert dev_sentence not in texts and len(texts) > 0
