"""Every dataset reader against the fixture data root (tests/fixtures/data) and malformed files."""

from pathlib import Path

import pytest

from kexue.data import (
    DATASETS,
    ChidExample,
    CluewscExample,
    CslExample,
    DataFormatError,
    DataNotFoundError,
    IflytekExample,
    LabeledText,
    NliExample,
    SentencePair,
    TnewsExample,
    fewclue_labels,
    iter_corpus_zh,
    iter_corpus_zh_modern,
    iter_corpus_zh_raw,
    read_afqmc,
    read_clue,
    read_cmnli,
    read_fewclue,
    read_kgclue,
    read_ocnli,
    read_sst2,
    read_sts_zh,
    read_stsb_en,
    split_subject,
)
from kexue.data.catalogue import FEWCLUE_ROWS

ROOT = Path(__file__).parent / "fixtures" / "data"
BAD = Path(__file__).parent / "fixtures" / "data_malformed"


@pytest.mark.parametrize(
    ("subject", "name", "meaning"),
    [
        ("刘晓华（广东工业大学教授）", "刘晓华", "广东工业大学教授"),
        ("郑多彬（韩国女演员（2000年出生））", "郑多彬", "韩国女演员（2000年出生）"),
        ("Stay With Me（太阳(Bigbang)《RISE》专辑歌曲）", "Stay With Me", "太阳(Bigbang)《RISE》专辑歌曲"),
        ("完美（中国）有限公司", "完美（中国）有限公司", None),
        ("0+1=1(I Promise You)", "0+1=1(I Promise You)", None),  # half-width: not a meaning
        ("（游戏）", "（游戏）", None),  # no name before the parentheses
        ("坏）", "坏）", None),  # unbalanced
    ],
)
def test_split_subject(subject, name, meaning):
    assert split_subject(subject) == (name, meaning)


def test_kgclue_reads_quadruples_and_rebuilds_the_answer():
    train = list(read_kgclue("train", ROOT))
    assert len(train) == 4
    first = train[1]
    assert (first.id, first.subject, first.subject_name, first.meaning) == (
        1, "刘晓华（广东工业大学教授）", "刘晓华", "广东工业大学教授")
    assert (first.predicate, first.object) == ("毕业院校", "华南理工大学")
    assert first.answer == "刘晓华（广东工业大学教授） ||| 毕业院校 ||| 华南理工大学"
    assert train[2].meaning is None and train[2].subject_name == "完美（中国）有限公司"
    with pytest.raises(ValueError, match=r"`split` must be one of \('train', 'dev'\), got 'test'"):
        read_kgclue("test", ROOT)


def test_kgclue_malformed_lines_name_file_and_line():
    with pytest.raises(DataFormatError) as info:
        list(read_kgclue("train", BAD))
    assert str(info.value) == f"{BAD / 'kgclue/train.json'}:4: answer must have 3 fields separated by ' ||| ', got 2"
    rows = read_kgclue("dev", BAD)  # CRLF file, line 2 is truncated JSON
    assert next(rows).question == "好"
    with pytest.raises(DataFormatError, match=r"dev\.json:2: bad JSON: Unterminated string"):
        next(rows)


EXPECTED_TYPES = {
    "eprstmt": LabeledText, "tnews": TnewsExample, "csldcp": LabeledText, "iflytek": IflytekExample,
    "bustm": SentencePair, "ocnli": NliExample, "csl": CslExample, "cluewsc": CluewscExample, "chid": ChidExample,
}


@pytest.mark.parametrize("task", sorted(EXPECTED_TYPES))
def test_fewclue_every_task_reads_train_and_dev(task):
    for split in ("train_0", "dev_0"):
        records = list(read_fewclue(task, split, ROOT))
        assert records and all(type(record) is EXPECTED_TYPES[task] for record in records)
        assert all(record.label is not None and all(record.texts()) for record in records)


def test_fewclue_field_values():
    tnews = list(read_fewclue("tnews", "train_0", ROOT))
    assert tnews[0] == TnewsExample(id=5890, sentence="为何网红收入高？", keywords="", label="102",
                                    label_desc="news_entertainment")
    iflytek = next(read_fewclue("iflytek", "train_0", ROOT))
    assert iflytek.label == "8" and iflytek.sentence.endswith("\u2028极速购票")
    csl = next(read_fewclue("csl", "train_0", ROOT))
    assert csl.keyword == ("无线传感器网络", "隐私保护") and csl.label == "1"
    wsc = next(read_fewclue("cluewsc", "train_0", ROOT))
    assert (wsc.target.span1_text, wsc.target.span2_index, wsc.label) == ("树叶", 14, "false")
    chid = next(read_fewclue("chid", "dev_0", ROOT))
    assert chid.candidates[chid.answer] == "天方夜谭" and chid.label == 5
    ocnli = list(read_fewclue("ocnli", "train_0", ROOT))
    assert ocnli[0].label0 == "entailment" and ocnli[1].label4 is None and ocnli[1].prem_id == "lit_1"


def test_fewclue_unlabeled_has_no_labels():
    for task in ("eprstmt", "tnews", "bustm", "chid"):
        records = list(read_fewclue(task, "unlabeled", ROOT))
        assert records and all(record.label is None for record in records)


def test_fewclue_label_sets():
    tnews = fewclue_labels("tnews", ROOT)
    assert [(info.label, info.description, info.english) for info in tnews][:2] == [
        ("100", "故事", "news_story"), ("101", "文化", "news_culture")]
    assert [info.tag for info in fewclue_labels("csldcp", ROOT)] == ["材料", "作物", "口腔"]
    assert [info.label for info in fewclue_labels("iflytek", ROOT)] == ["0", "1", "8"]
    assert [info.label for info in fewclue_labels("cluewsc", ROOT)] == ["false", "true"]
    with pytest.raises(ValueError, match="chid has no fixed label set"):
        fewclue_labels("chid", ROOT)
    with pytest.raises(ValueError, match=r"`task` must be one of"):
        fewclue_labels("afqmc", ROOT)


def test_fewclue_missing_label_file_names_it():
    expected = BAD / "fewclue" / "tnews" / "label_index2en2zh.json"
    with pytest.raises(DataNotFoundError, match=f"label file {expected} for FewCLUE tnews does not exist"):
        read_fewclue("tnews", "train_0", BAD)


def test_fewclue_bad_label_and_missing_split():
    with pytest.raises(DataFormatError, match=r"iflytek/train_0\.json:2: bad label '5': expected one of 1 labels \('0'\)"):
        list(read_fewclue("iflytek", "train_0", BAD))
    with pytest.raises(DataNotFoundError, match=r"csldcp/unlabeled\.json does not exist"):
        read_fewclue("csldcp", "unlabeled", ROOT)
    with pytest.raises(ValueError, match=r"`split` must be one of"):
        read_fewclue("tnews", "test", ROOT)


def test_clue_readers():
    afqmc = list(read_afqmc("train", ROOT))
    assert afqmc[0] == SentencePair("双十一花呗提额在哪", "里可以提花呗额度", 0) and afqmc[1].label == 1
    assert [pair.label for pair in read_cmnli("dev", ROOT)] == ["entailment", "contradiction", "neutral"]
    ocnli = list(read_ocnli("train.3k", ROOT))
    assert [example.label for example in ocnli] == ["contradiction", "-"]  # "-": no annotator majority
    assert len(list(read_clue("ocnli", "dev_minus_fewclue_test", ROOT))) == 1
    with pytest.raises(ValueError, match=r"`split` of CLUE cmnli must be one of \('dev',\), got 'train'"):
        read_cmnli("train", ROOT)


def test_clue_malformed_and_empty_files():
    assert list(read_afqmc("dev", BAD)) == []
    with pytest.raises(DataFormatError, match=r"afqmc/train\.txt:2: expected 3 tab-separated fields, got 2"):
        list(read_afqmc("train", BAD))


def test_sts_zh():
    train = list(read_sts_zh("STS-B", "train", ROOT))
    assert [pair.label for pair in train] == [5, 1]
    pawsx = list(read_sts_zh("PAWSX", "valid", ROOT))
    assert pawsx[1].sentence1 == '他说"你好' and pawsx[1].label == 0
    with pytest.raises(ValueError, match="`split` of ATEC must be one of"):
        read_sts_zh("ATEC", "train", ROOT)
    with pytest.raises(DataFormatError, match=r"BQ\.valid\.data:2: not valid UTF-8"):
        list(read_sts_zh("BQ", "valid", BAD))


def test_sst2_and_stsb_english():
    assert list(read_sst2("dev", ROOT))[0] == LabeledText("it 's a charming journey .", 1)
    assert len(list(read_sst2("train", ROOT))) == 2  # header skipped
    with pytest.raises(DataFormatError, match=r"sst2/dev\.tsv:1: expected a header starting with 'label', got '0'"):
        list(read_sst2("dev", BAD))
    train = list(read_stsb_en("train", ROOT))
    assert train[0].score == 5.0 and train[0].id == "0001"
    assert train[1].sentence1 == 'US "Supreme Court limits power' and train[1].sentence2 == "High court checks power"
    rows = read_stsb_en("dev", BAD)
    with pytest.raises(DataFormatError, match=r"sts-dev\.tsv:1: bad score 'five'"):
        next(rows)


def test_corpora():
    docs = list(iter_corpus_zh(root=ROOT))
    assert [(doc.source, doc.index, doc.title) for doc in docs] == [("红楼梦", 0, "第一回  甄士隐梦幻识通灵"), ("庄子", 0, None)]
    assert [doc.source for doc in iter_corpus_zh(books=["庄子"], root=ROOT)] == ["庄子"]
    raw = list(iter_corpus_zh_raw(root=ROOT))
    assert [doc.source for doc in raw] == ["庄子", "红楼梦"] and raw[0].text == "逍遥游\n北冥有鱼，其名为鲲。"
    with pytest.raises(DataNotFoundError, match=r"水浒传\.txt does not exist"):
        iter_corpus_zh_raw(books=["水浒传"], root=ROOT)
    modern = list(iter_corpus_zh_modern(["luxun", "reviews_waimai.jsonl"], ROOT))
    assert [(doc.source, doc.index) for doc in modern] == [("luxun:呐喊", 0), ("waimai", 0), ("waimai", 1)]
    assert modern[0].title == "呐喊·狂人日记" and modern[1].title is None
    with pytest.raises(DataNotFoundError, match=r"news_msra\.jsonl does not exist"):
        iter_corpus_zh_modern(root=ROOT)
    with pytest.raises(ValueError, match="`files` must be among"):
        iter_corpus_zh_modern(["wiki"], ROOT)


def test_catalogue_covers_every_fewclue_file_with_readers_that_run():
    assert len(DATASETS) == 145
    assert DATASETS["fewclue/cluewsc/dev_few_all"].rows == 159 and FEWCLUE_ROWS["iflytek"][1] == 690
    present = [name for name, entry in DATASETS.items() if (ROOT / entry.path).exists()]
    assert len(present) == 49
    for name in present:
        assert sum(1 for _ in DATASETS[name].read(ROOT)) >= 1, name
