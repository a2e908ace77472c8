"""The Chinese pretraining corpus: allowed sources only, never dev text."""

import json
from pathlib import Path

import pytest

from kexue.data import read_afqmc, read_kgclue
from kexue.data.pretraining import chinese_pretraining_documents, evaluation_texts, write_documents_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_sources_and_no_dev_text(tmp_path):
    documents = list(chinese_pretraining_documents(FIXTURES, sources=("fewclue_unlabeled", "afqmc_train", "kgclue_train")))
    sources = {document.source for document in documents}
    assert {"afqmc:train", "kgclue:train"} <= sources and any(s.startswith("fewclue:") for s in sources)
    texts = "\n".join(document.text for document in documents)
    for example in read_kgclue("dev", FIXTURES):
        assert example.question not in texts
    afqmc = [document.text for document in documents if document.source == "afqmc:train"]
    evaluation = evaluation_texts(FIXTURES)
    kept = [pair for pair in read_afqmc("train", FIXTURES) if evaluation.isdisjoint(pair.texts())]
    assert 0 < len(kept) < len(list(read_afqmc("train", FIXTURES)))  # the fixture has a train pair also in dev
    assert afqmc == [f"{pair.sentence1}\n{pair.sentence2}" for pair in kept]
    assert "#idiom#" not in texts
    path = tmp_path / "corpus.jsonl"
    assert write_documents_jsonl(iter(documents), path) == len(documents)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"source", "text"}


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="wikipedia"):
        list(chinese_pretraining_documents(FIXTURES, sources=("wikipedia",)))


def test_records_that_occur_in_any_evaluation_set_are_left_out(tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    unlabeled = root / "fewclue" / "tnews" / "unlabeled.json"
    # A tnews unlabeled record carrying a KgCLUE dev question: another task's dev set must still exclude it.
    dev_question = next(iter(read_kgclue("dev", root))).question
    with unlabeled.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": 999, "sentence": dev_question, "keywords": ""}, ensure_ascii=False) + "\n")
    texts = [d.text for d in chinese_pretraining_documents(root, sources=("fewclue_unlabeled",))]
    assert dev_question not in texts and len(texts) > 0
    assert dev_question in evaluation_texts(root)


def test_unlabeled_sets_that_overlap_official_tests_stay_out():
    sources = {d.source for d in chinese_pretraining_documents(FIXTURES, sources=("fewclue_unlabeled",))}
    assert sources == {"fewclue:tnews", "fewclue:chid"}  # eprstmt's and bustm's overlap their test sets


def test_clue_and_sts_training_pairs_are_two_line_documents():
    documents = list(chinese_pretraining_documents(FIXTURES, sources=("ocnli_train", "stsb_train")))
    assert {d.source for d in documents} == {"ocnli:train", "stsb:train"}
    assert all(len(d.text.split("\n")) == 2 for d in documents)
