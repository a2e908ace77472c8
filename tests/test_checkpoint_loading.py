"""Checkpoints in both directions: fine-tuned HF folders load with ``strict=False``; folders kexue
saves load in transformers with ``AutoTokenizer`` / ``AutoModel`` and give the same token ids."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from kexue.models import Transformer, TransformerConfig

FIXTURES = Path(__file__).parent / "fixtures" / "pretrain"
TEXTS = ["我爱北京天安门。", "Hello World, 你好！", "机器学习 machine learning 2021"]


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory) -> Path:
    """A random tiny ``BertForSequenceClassification`` saved by transformers (``classifier.*`` keys, id2label)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=3,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    folder = tmp_path_factory.mktemp("classifier")
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    return folder


def test_a_fine_tuned_classifier_loads_with_strict_false_and_lists_what_it_skipped(classifier_folder, caplog):
    from transformers import BertModel

    with pytest.raises(ValueError, match=r"unexpected checkpoint key\(s\) \['classifier.bias', 'classifier.weight'\].*strict=False"):
        Transformer.from_pretrained(classifier_folder)
    with caplog.at_level(logging.WARNING, logger="kexue.models.checkpoint"):
        model = Transformer.from_pretrained(classifier_folder, strict=False)
    assert "['classifier.bias', 'classifier.weight']" in caplog.text
    ids = torch.tensor([[2, 7, 9, 11, 3, 0]])
    mask = ids != 0
    reference = BertModel.from_pretrained(classifier_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask.long()).last_hidden_state
        actual = model(ids, attention_mask=mask).hidden_states
    assert torch.allclose(actual[mask], expected[mask], atol=1e-5)  # the backbone is the classifier's
    assert Transformer.from_pretrained(classifier_folder, ignore_keys=["classifier.*"]).config.hidden_size == 16


def test_extra_config_keys_load_with_strict_false(classifier_folder, tmp_path, caplog):
    import shutil

    folder = tmp_path / "extra"
    shutil.copytree(classifier_folder, folder)
    config = json.loads((folder / "config.json").read_text()) | {"my_run_notes": "lr 2e-5"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="my_run_notes"):
        Transformer.from_pretrained(folder, ignore_keys=["classifier.*"])
    with caplog.at_level(logging.WARNING, logger="kexue.models.checkpoint"):
        Transformer.from_pretrained(folder, strict=False)
    assert "['my_run_notes']" in caplog.text


def tiny_model(position: str = "rope") -> Transformer:
    torch.manual_seed(0)
    vocab_size = len((FIXTURES / "vocab.txt").read_text(encoding="utf-8").splitlines())
    return Transformer(TransformerConfig(vocab_size=vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                                         intermediate_size=32, position=position, dropout=0.0, attention_dropout=0.0))


@pytest.mark.parametrize("position", ["rope", "absolute"])
def test_auto_tokenizer_and_auto_model_load_a_kexue_checkpoint(tmp_path, position):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from kexue.data.tokenizer import load_tokenizer

    folder = tmp_path / "model"
    model = tiny_model(position)
    model.save_pretrained(folder, vocab_file=FIXTURES / "vocab.txt")
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "README.md"} <= {p.name for p in folder.iterdir()}
    auto = AutoTokenizer.from_pretrained(folder)
    ours = load_tokenizer(folder)
    assert auto(TEXTS)["input_ids"] == ours(TEXTS)["input_ids"] == load_tokenizer(FIXTURES / "vocab.txt")(TEXTS)["input_ids"]
    hf = AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32).eval()
    encoded = auto(TEXTS, padding=True, return_tensors="pt")
    mask = encoded["attention_mask"].bool()
    with torch.no_grad():
        expected = hf(**encoded).logits
        actual = model.eval()(encoded["input_ids"], token_type_ids=encoded["token_type_ids"], attention_mask=mask,
                              mlm_positions="all").mlm_logits.view_as(expected)
    assert torch.allclose(actual[mask], expected[mask], atol=1e-4)


def test_a_backbone_with_only_tokenizer_json_saves_every_tokenizer_file(tmp_path):
    from kexue.data.tokenizer import load_tokenizer

    only_json = tmp_path / "only-json"
    load_tokenizer(FIXTURES / "vocab.txt").save_pretrained(only_json)  # transformers 5: no vocab.txt
    (only_json / "vocab.txt").unlink(missing_ok=True)
    assert (only_json / "tokenizer.json").is_file() and not (only_json / "vocab.txt").exists()
    out = tmp_path / "out"
    tiny_model().save_pretrained(out, vocab_file=only_json)
    assert (out / "vocab.txt").read_text(encoding="utf-8") == (FIXTURES / "vocab.txt").read_text(encoding="utf-8")
    assert load_tokenizer(out)(TEXTS)["input_ids"] == load_tokenizer(only_json)(TEXTS)["input_ids"]


def test_fp16_checkpoints_say_to_load_in_float32(tmp_path):
    tiny_model().half().save_pretrained(tmp_path / "fp16", vocab_file=FIXTURES / "vocab.txt")
    tiny_model().save_pretrained(tmp_path / "fp32")
    assert "dtype=torch.float32" in (tmp_path / "fp16" / "README.md").read_text()
    assert "dtype=torch.float32" not in (tmp_path / "fp32" / "README.md").read_text()


@pytest.fixture
def tokenizer_json_only_backbone(tmp_path) -> Path:
    """A 3-layer backbone folder whose tokenizer is only ``tokenizer.json`` (as transformers 5 saves it)."""
    torch.manual_seed(0)
    vocab_size = len((FIXTURES / "vocab.txt").read_text(encoding="utf-8").splitlines())
    model = Transformer(TransformerConfig(vocab_size=vocab_size, hidden_size=16, num_layers=3, num_heads=2,
                                          intermediate_size=32, max_positions=64))
    folder = tmp_path / "backbone"
    model.save_pretrained(folder, vocab_file=FIXTURES / "vocab.txt")
    for name in ("vocab.txt", "tokenizer_config.json", "README.md"):
        (folder / name).unlink()
    return folder


def assert_tokenizer_files(folder: Path) -> None:
    from kexue.data.tokenizer import load_tokenizer

    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    assert load_tokenizer(folder)(TEXTS)["input_ids"] == load_tokenizer(FIXTURES / "vocab.txt")(TEXTS)["input_ids"]


def test_kbqa_train_from_a_backbone_with_only_tokenizer_json(tmp_path, tokenizer_json_only_backbone):
    from kexue.cli import main

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"id": i, "question": f"{name}的身高是什么",
                                             "answer": f"{name} ||| 身高 ||| {i}"}, ensure_ascii=False) + "\n"
                                 for i, name in enumerate(["我爱", "北京", "天安", "门的", "机器", "学习"])),
                         encoding="utf-8")
    assert main(["kbqa", "train", "--out", str(tmp_path / "run"), "--model", str(tokenizer_json_only_backbone),
                 "--questions", str(questions), "--max-steps", "2", "--batch-size", "4"]) == 0
    assert_tokenizer_files(tmp_path / "run" / "final")


def test_univae_train_from_a_backbone_with_only_tokenizer_json(tmp_path, tokenizer_json_only_backbone):
    from kexue.cli import main

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(TEXTS * 3) + "\n", encoding="utf-8")
    assert main(["univae", "train", "--out", str(tmp_path / "vae"), "--model", str(tokenizer_json_only_backbone),
                 "--sentences", str(sentences), "--independent-layers", "1", "--latent", "gaussian",
                 "--max-steps", "2", "--batch-size", "4", "--max-length", "16"]) == 0
    assert_tokenizer_files(tmp_path / "vae" / "model")
